"""The normaliser pretrained weights expect (``model.weights_card``): read from the card in the contract's unit,
folded exactly into the network's input map, refused in one line where it cannot apply, kept in the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, hydra_run
from test_pretrained import TORCHGEO_BANDS, fabricated_weights

from slidemap.errors import InputError
from slidemap.models import SmpModel
from slidemap.training.encoder_weights import CARD_RECORD, with_weights_normaliser
from slidemap.training.weights_card import input_affine, read_card

TORCHGEO_MOCO = (REPO / "docs" / "weights_cards" / "torchgeo_sentinel2_ssl4eo.yaml").read_text()
"""The card the docs ship for torchgeo's SSL4EO-S12 Sentinel-2 ResNets."""
INFO = {"channels": ["blue", "green", "red", "nir", "slope"],
        "units": ["reflectance"] * 4 + ["degrees"],
        "normaliser": {"channels": ["blue", "green", "red", "nir", "slope"],
                       "mean": [0.05, 0.06, 0.07, 0.30, 20.0], "std": [0.02, 0.02, 0.03, 0.10, 10.0]}}


def card(tmp_path, text=TORCHGEO_MOCO, name="card.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_torchgeo_moco_card_gives_reflectance_as_it_is(tmp_path):
    read = read_card(card(tmp_path), None)
    assert read.mean["blue"] == 0.0 and read.std["blue"] == 1.0 and len(read.std) == 13  # 10000 dn / 10000
    scale, shift, record = input_affine(read, INFO)
    # blue: z * 0.02 + (0.05 - 0) / 1 ; slope: untouched
    assert scale == pytest.approx([0.02, 0.02, 0.03, 0.10, 1.0]) and shift == pytest.approx([0.05, 0.06, 0.07, 0.30, 0])
    assert record["from_card"] == ["blue", "green", "red", "nir"] and record["from_train"] == ["slope"]
    # the map is exact: slidemap's z of any pixel becomes the reflectance the weights were trained on
    x = np.random.default_rng(0).uniform(0, 0.6, (4, 8, 8))
    m, s = np.array(INFO["normaliser"]["mean"][:4]), np.array(INFO["normaliser"]["std"][:4])
    z = (x - m[:, None, None]) / s[:, None, None]
    assert np.allclose(z * np.array(scale[:4])[:, None, None] + np.array(shift[:4])[:, None, None], x)


def test_a_per_band_card_in_reflectance_standardises_as_it_says(tmp_path):
    path = card(tmp_path, "units: reflectance\nbands: [B04, B03]\nmean: [0.1, 0.2]\nstd: [0.05, 0.04]\n", "c.json")
    path.write_text('{"units": "reflectance", "bands": ["B04", "B03"], "mean": [0.1, 0.2], "std": [0.05, 0.04]}')
    scale, shift, record = input_affine(read_card(path, None), INFO)
    assert scale == pytest.approx([1.0, 0.02 / 0.04, 0.03 / 0.05, 1.0, 1.0])
    assert shift == pytest.approx([0.0, (0.06 - 0.2) / 0.04, (0.07 - 0.1) / 0.05, 0.0, 0.0])
    assert record["from_card"] == ["green", "red"]


def test_the_network_applies_the_map_before_its_encoder(tmp_path):
    net = SmpModel("Unet", "resnet18", None, in_channels=2, input_scale=[2.0, 1.0], input_shift=[0.5, -1.0])
    x = torch.randn(1, 2, 32, 32)
    seen = {}
    net.net.encoder.conv1.register_forward_pre_hook(lambda m, i: seen.update(x=i[0]))
    net.eval()(x)
    assert torch.allclose(seen["x"][0, 0], x[0, 0] * 2 + 0.5) and torch.allclose(seen["x"][0, 1], x[0, 1] - 1)
    assert set(net.state_dict()) >= {"input_affine.scale", "input_affine.shift"}
    with pytest.raises(ValueError, match="one value per input channel"):
        SmpModel("Unet", "resnet18", None, in_channels=3, input_scale=[1.0])


@pytest.mark.parametrize("text, message", [
    ("units: dn\nmean: 0\nstd: 10000\n", "'scale' missing"),
    ("units: toa\nscale: 1\nmean: 0\nstd: 1\n", "'units' is 'toa'"),
    ("units: reflectance\nmean: [0, 1]\nstd: 1\n", "'mean' has 2 values for 13 bands"),
    ("units: reflectance\nmean: 0\nstd: 0\n", "'std' must be positive"),
    ("units: reflectance\nmean: 0\n", "'std' missing"),
    ("units: reflectance\nmean: 0\nstd: 1\nnormalize: true\n", "unknown key 'normalize'"),
    ("units: reflectance\nbands: [B99]\nmean: 0\nstd: 1\n", "'bands':"),
    ("[1, 2", "not a YAML/JSON card"),
    ("units: dn\nscale: 0\nmean: 0\nstd: 10000\n", "'scale' must be a positive number, got 0"),
    ("units: dn\nscale: abc\nmean: 0\nstd: 10000\n", "'scale' must be finite numbers, got 'abc'"),
    ("units: dn\nscale: [1, 2]\nmean: 0\nstd: 10000\n", "'scale' must be finite numbers, got [1, 2]"),
    ("units: reflectance\nscale: 10000\nmean: 0\nstd: 1\n", "'scale' is for units dn"),
    ("units: reflectance\nmean: true\nstd: 1\n", "'mean' must be finite numbers, got True"),
    ("units: reflectance\nbands: [B02, B2]\nmean: 0\nstd: 1\n", "'bands' names blue twice"),
    ("units: reflectance\nbands: B02\nmean: 0\nstd: 1\n", "'bands' must be a list of band names"),
])
def test_a_bad_card_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = card(tmp_path, text)
    with pytest.raises(InputError, match="card.yaml") as err:
        read_card(path, TORCHGEO_BANDS)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"normalise": "per_patch"}, "standardised per patch"),
    ({"units": ["brightness"] * 4 + ["degrees"]}, "channel blue is in brightness"),
    ({"channels": ["slope"], "units": ["degrees"], "normaliser": {"mean": [1], "std": [1]}}, "names none of"),
])
def test_data_the_card_cannot_describe_are_refused(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        input_affine(read_card(card(tmp_path), None), {**INFO, **change})


def test_a_card_needs_weights_and_a_network_that_takes_it(tmp_path):
    model = {"net": {"_target_": "slidemap.models.SmpModel"}, "weights_card": str(card(tmp_path))}
    with pytest.raises(InputError, match="model.weights_card: given without model.weights"):
        with_weights_normaliser(model, INFO)
    with pytest.raises(InputError, match="slidemap.models.UNet takes no input normaliser"):
        with_weights_normaliser({**model, "weights": "w.pth", "net": {"_target_": "slidemap.models.UNet"}}, INFO)
    done = with_weights_normaliser({**model, "weights": "w.pth"}, INFO)
    assert done["net"]["input_scale"][0] == pytest.approx(0.02) and done[CARD_RECORD]["from_train"] == ["slope"]


@pytest.mark.slow
def test_a_run_with_a_card_keeps_the_map_in_its_checkpoint_and_card(cfg_train, tmp_path):
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.training.run import run

    fabricated_weights(tmp_path / "s2.pth")
    cfg = cfg_train("model=smp_resnet", f"model.weights={tmp_path / 's2.pth'}",
                    f"model.weights_bands=[{','.join(TORCHGEO_BANDS)}]", f"model.weights_card={card(tmp_path)}",
                    "window=32", "scenario=china", "+trainer.limit_test_batches=1")
    with hydra_run(cfg):
        run(cfg)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    model = load_checkpoint(best)
    norm = model.normaliser
    affine = model.net.input_affine
    optical = [i for i, c in enumerate(model.channels) if c != "slope"]
    assert torch.allclose(affine.scale.flatten()[optical], torch.tensor(norm.std[optical]))  # std_w = 1
    assert torch.allclose(affine.shift.flatten()[optical], torch.tensor(norm.mean[optical]))  # mean_w = 0
    slope = model.channels.index("slope")
    assert affine.scale.flatten()[slope] == 1 and affine.shift.flatten()[slope] == 0
    text = (best.parent / "model_card.md").read_text()
    assert "normalised as its pretrained weights expect" in text and "SSL4EO-S12" in text
