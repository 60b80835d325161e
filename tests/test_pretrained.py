"""Pretrained encoder weights from a local file (torchgeo/timm ResNet layout), matched to the channels by name;
mismatches refused in one line; ``freeze_encoder`` trains the decoder only."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import REPO, compose_config, hydra_run

from slidemap.errors import InputError
from slidemap.models import SmpModel
from slidemap.training.encoder_weights import apply_encoder_options

TORCHGEO_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08A", "B09", "B10", "B11", "B12"]
CHANNELS = ["blue", "green", "red", "nir", "slope"]  # the paper's inputs: B02, B03, B04, B08, slope


def fabricated_weights(path, arch=torchvision.models.resnet18, bands: int = 13):
    """A torchgeo-style Sentinel-2 ResNet state dict: timm keys, conv1 [64, bands, 7, 7] whose band b filters hold
    100 * b + a distinct pattern, an ImageNet-sized fc head."""
    net = arch()
    net.conv1 = torch.nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    state = net.state_dict()
    pattern = torch.arange(64 * 49, dtype=torch.float32).reshape(64, 1, 7, 7) / 1e4
    state["conv1.weight"] = torch.stack([100.0 * b + pattern[:, 0] for b in range(bands)], dim=1)
    torch.save(state, path)
    return state


def options(path, **extra):
    return {"weights": str(path), "weights_bands": TORCHGEO_BANDS, **extra}


def test_filters_land_on_the_channels_of_their_band_name(tmp_path):
    state = fabricated_weights(tmp_path / "s2.pth")
    net = SmpModel("Unet", "resnet18", None, in_channels=5)
    record = apply_encoder_options(net, options(tmp_path / "s2.pth", new_channel_scale=0.5), CHANNELS)
    conv = net.encoder_module().conv1.weight.detach()
    w = state["conv1.weight"]
    for channel, band in enumerate([1, 2, 3, 7]):  # B02, B03, B04, B08 in torchgeo's order
        assert torch.equal(conv[:, channel], w[:, band]), channel
        assert conv[0, channel, 0, 0].item() == pytest.approx(100.0 * band)
    # slope: the mean of the 13 bands' filters (100 * mean(0..12) = 600, plus the pattern), times 0.5
    assert torch.allclose(conv[:, 4], 0.5 * w.mean(dim=1))
    assert conv[0, 4, 0, 0].item() == pytest.approx(0.5 * 600.0)
    encoder = net.encoder_module().state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in state.items() if k != "conv1.weight" and not k.startswith("fc"))
    assert record == {"keys": len(state) - 2, "from_weights": CHANNELS[:4], "mean_filter": ["slope"]}


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update({"extra.weight": torch.zeros(1)}), "extra.weight: unknown key"),
    (lambda s: s.update({"layer1.0.conv1.weight": torch.zeros(64, 64, 5, 5)}),
     "layer1.0.conv1.weight: has shape (64, 64, 5, 5) in the weights but (64, 64, 3, 3) in the encoder"),
    (lambda s: s.pop("layer4.1.bn2.running_var"), "layer4.1.bn2.running_var: missing from the weights file"),
    (lambda s: s.update({"conv1.weight": torch.zeros(64, 4, 7, 7)}),
     "conv1.weight: has shape (64, 4, 7, 7), but model.weights_bands names 13 bands"),
])
def test_a_mismatch_is_refused_naming_the_key(tmp_path, change, message):
    state = fabricated_weights(tmp_path / "s2.pth")
    change(state)
    torch.save(state, tmp_path / "s2.pth")
    with pytest.raises(InputError) as err:
        apply_encoder_options(SmpModel("Unet", "resnet18", None, 5), options(tmp_path / "s2.pth"), CHANNELS)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_other_architectures_band_names_and_files_are_refused(tmp_path):
    fabricated_weights(tmp_path / "r50.pth", arch=torchvision.models.resnet50)
    net = SmpModel("Unet", "resnet18", None, 5)
    with pytest.raises(InputError, match=r"r50.pth: layer1.0.conv3.weight: unknown key"):
        apply_encoder_options(net, options(tmp_path / "r50.pth"), CHANNELS)
    fabricated_weights(tmp_path / "s2.pth")
    with pytest.raises(InputError, match=r"model.weights_bands: .*B99"):
        apply_encoder_options(net, options(tmp_path / "s2.pth", weights_bands=TORCHGEO_BANDS[:12] + ["B99"]),
                              CHANNELS)
    with pytest.raises(InputError, match="model.weights_bands: missing"):
        apply_encoder_options(net, {"weights": str(tmp_path / "s2.pth")}, CHANNELS)
    with pytest.raises(InputError, match="nope.pth: no such file"):
        apply_encoder_options(net, options(tmp_path / "nope.pth"), CHANNELS)
    with pytest.raises(InputError, match="model.weights: UNet has no encoder"):
        from slidemap.models import UNet
        apply_encoder_options(UNet(5, base_filters=8), options(tmp_path / "s2.pth"), CHANNELS)


def test_train_py_refuses_in_one_line(tmp_path):
    fabricated_weights(tmp_path / "r50.pth", arch=torchvision.models.resnet50)
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "logger=none", "model=smp_resnet",
                           f"model.weights={tmp_path / 'r50.pth'}", f"model.weights_bands=[{','.join(TORCHGEO_BANDS)}]",
                           f"data.root={tmp_path / 'sites'}", "data.synthetic.scale=0.05"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[-1].startswith("error: ") and "layer1.0.conv3.weight: unknown key" in lines[-1]


@pytest.mark.slow
def test_freeze_encoder_trains_only_the_decoder(cfg_train, tmp_path):
    from slidemap.training.run import run

    state = fabricated_weights(tmp_path / "s2.pth")
    cfg = cfg_train("model=smp_resnet", f"model.weights={tmp_path / 's2.pth'}",
                    f"model.weights_bands=[{','.join(TORCHGEO_BANDS)}]", "model.freeze_encoder=true", "window=32",
                    "scenario=china", "+trainer.limit_test_batches=1")
    with hydra_run(cfg):
        run(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    weights = ckpt["state_dict"]
    prefix = "net.net.encoder."
    encoder = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    params = dict(SmpModel("Unet", "resnet18", None, 5).net.encoder.named_parameters())
    assert set(params) <= set(encoder)
    for key in params:  # parameters unchanged (batch-norm running statistics are buffers, not parameters)
        expected = state[key] if key != "conv1.weight" else None
        if expected is not None:
            assert torch.equal(encoder[key], expected), key
    fresh = SmpModel("Unet", "resnet18", None, 5)
    apply_encoder_options(fresh, {"weights": str(tmp_path / "s2.pth"), "weights_bands": TORCHGEO_BANDS},
                          ["blue", "green", "red", "nir", "slope"])
    assert torch.equal(encoder["conv1.weight"], fresh.encoder_module().conv1.weight)
    decoder = {k: v for k, v in weights.items() if k.startswith("net.net.decoder.") and v.is_floating_point()}
    initial = {f"net.net.decoder.{k}": v for k, v in fresh.net.decoder.state_dict().items()}
    assert decoder and any(not torch.equal(v, initial[k]) for k, v in decoder.items())  # the decoder learned


def test_a_pre_event_band_takes_its_bands_filter_and_damaged_weights_are_refused(tmp_path):
    state = fabricated_weights(tmp_path / "s2.pth")
    net = SmpModel("Unet", "resnet18", None, in_channels=3)
    record = apply_encoder_options(net, options(tmp_path / "s2.pth"), ["blue", "blue_pre", "slope"])
    conv = net.encoder_module().conv1.weight.detach()
    assert torch.equal(conv[:, 1], state["conv1.weight"][:, 1])  # B02 on the other date: the same band's filter
    assert record["from_weights"] == ["blue", "blue_pre"] and record["mean_filter"] == ["slope"]
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(InputError, match=r"layer1.0.conv1.weight: holds 1 NaN or infinite value\(s\)"):
        apply_encoder_options(net, options(tmp_path / "nan.pth"), ["blue", "blue_pre", "slope"])
    with pytest.raises(InputError, match=r"^model.weights_bands: names blue twice$"):
        apply_encoder_options(net, {"weights": str(tmp_path / "s2.pth"),
                                    "weights_bands": [b if b != "B03" else "blue" for b in TORCHGEO_BANDS]},
                              ["blue", "blue_pre", "slope"])
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")  # a whole pickled module, not its state dict
    with pytest.raises(InputError) as err:
        apply_encoder_options(net, options(tmp_path / "model.pth"), ["blue", "blue_pre", "slope"])
    assert str(err.value).count("model.pth") == 1 and "holds pickled Python objects" in str(err.value)
