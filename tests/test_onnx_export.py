"""`slidemap export` and `slidemap map --engine onnxruntime` (issue 27, items 4-5): the exported model maps as the
checkpoint does (within 1e-4 in fp32), carries its facts in its metadata, is refused on scenes the checkpoint would be
refused on, and tags its maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import torch
import yaml
from torch import nn

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'slidemap[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'slidemap[onnx]')")

import fake_sites as fs  # noqa: E402
from checkpoints import save_checkpoint, unet_config  # noqa: E402
from slidemap.cli import main  # noqa: E402
from slidemap.data.sites.reader import read_site  # noqa: E402
from slidemap.data.tiling.split import split_sites  # noqa: E402
from slidemap.mapping.checkpoint import load_checkpoint  # noqa: E402
from slidemap.mapping.ensemble import Ensemble  # noqa: E402
from slidemap.mapping.maps import map_area  # noqa: E402
from slidemap.mapping.model_card import file_fingerprint  # noqa: E402
from slidemap.mapping.onnx_engine import OnnxModel  # noqa: E402


class KthNet(nn.Module):
    """A network with an operator ONNX has no form for (``aten::kthvalue``)."""

    def __init__(self, in_channels: int = 5, out_channels: int = 1) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        return y - torch.kthvalue(y, 2, dim=-1, keepdim=True).values


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, command: str, *argv: str) -> str:
    """A failing command: exit 2, one line on stderr; the message after the prefix."""
    code, out, err = run(capsys, command, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    prefix = f"slidemap {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> tuple[Path, Path]:
    """The session's tiny trained run and its fp32 export."""
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    return ckpt, out


@pytest.fixture(scope="module")
def scene(synthetic_root, tmp_path_factory) -> Path:
    """The synthetic japan site without its inventory (a synthetic scene: a synthetic model may map it)."""
    folder = tmp_path_factory.mktemp("scenes") / "iburi"
    folder.mkdir()
    for name in ("s2.tif", "dem.tif", "site.yaml"):
        shutil.copy(synthetic_root / "japan" / name, folder / name)
    return folder


@pytest.mark.slow
def test_fp32_export_maps_a_whole_test_area_as_torch_does(exported, synthetic_root, tmp_path):
    ckpt, onnx_file = exported
    site = read_site(synthetic_root / "china")
    block = split_sites({"china": site})["china"].test
    torch_map = map_area(load_checkpoint(ckpt), site, tmp_path / "torch", block=block, progress=False)
    onnx_map = map_area(OnnxModel(onnx_file), site, tmp_path / "onnx", block=block, progress=False)
    assert onnx_map.probability.shape == (block.rows, block.cols)
    valid = np.isfinite(torch_map.probability)
    assert valid.mean() > 0.9 and np.array_equal(valid, np.isfinite(onnx_map.probability))
    assert np.abs(onnx_map.probability - torch_map.probability)[valid].max() < 1e-4
    near = np.abs(torch_map.probability - 0.5) < 1e-4  # only a pixel on the threshold may change class
    assert np.array_equal(onnx_map.binary[~near], torch_map.binary[~near])


def test_metadata_holds_what_the_checkpoint_holds(exported):
    ckpt, onnx_file = exported
    model = load_checkpoint(ckpt)
    proto = onnx.load(str(onnx_file))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["slidemap.channels"]) == ["blue", "green", "red", "nir", "slope"] == list(model.channels)
    assert json.loads(props["slidemap.units"]) == list(model.units)
    assert json.loads(props["slidemap.normaliser"]) == model.normaliser.to_dict()
    assert json.loads(props["slidemap.temperature"]) == [model.temperature] and model.temperature != 1.0
    assert json.loads(props["slidemap.threshold"]) == 0.5 and props["slidemap.window"] == "64"
    assert props["slidemap.quantization"] == "none (fp32)"
    (member,) = json.loads(props["slidemap.members"])
    assert member["fingerprint"] == file_fingerprint(ckpt) and member["checkpoint"] == str(ckpt.resolve())
    assert member["card"] == json.loads(json.dumps(model.card)) and member["data_kind"] == "synthetic"
    assert member["distribution"] == model.distribution.to_dict()
    # batch, height and width are dynamic: named dimensions, not numbers
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True] and dims[1].dim_value == 5
    assert [o.name for o in proto.graph.output] == ["probability"]  # one member: no spread


@pytest.mark.slow
def test_onnxruntime_map_equals_torch_and_carries_the_tags(capsys, exported, scene, tmp_path):
    ckpt, onnx_file = exported
    code, out, err = run(capsys, "map", "--engine", "onnxruntime", "--model", str(onnx_file), "--scene", str(scene),
                         "--out", str(tmp_path / "onnx"))
    assert code == 0, err
    assert out.split() == [str(tmp_path / "onnx" / f"iburi{s}") for s in
                           ("_probability.tif", "_binary.tif", "_landslides.gpkg")]
    assert main(["map", "--ckpt", str(ckpt), "--precision", "32", "--scene", str(scene), "--out",
                 str(tmp_path / "torch")]) == 0
    with rasterio.open(tmp_path / "onnx" / "iburi_probability.tif") as a, \
            rasterio.open(tmp_path / "torch" / "iburi_probability.tif") as b:
        tags, p_onnx, p_torch = a.tags(), a.read(1), b.read(1)
        assert a.transform == b.transform and a.crs == b.crs
    assert np.nanmax(np.abs(p_onnx - p_torch)) < 1e-4
    assert tags["SLIDEMAP_ENGINE"] == "onnxruntime" and tags["SLIDEMAP_QUANTIZATION"] == "none (fp32)"
    assert tags["SLIDEMAP_ONNX_MODEL"] == str(onnx_file.resolve())
    assert tags["SLIDEMAP_ONNX_FINGERPRINT"] == file_fingerprint(onnx_file)
    assert tags["SLIDEMAP_CHECKPOINTS"] == str(ckpt.resolve())
    assert tags["SLIDEMAP_CHECKPOINT_FINGERPRINTS"] == file_fingerprint(ckpt)
    assert tags["SLIDEMAP_TRAINING_DATA"] == "synthetic" and tags["SLIDEMAP_THRESHOLD"] == "0.5"
    assert float(tags["SLIDEMAP_TEMPERATURES"]) == pytest.approx(load_checkpoint(ckpt).temperature, rel=1e-5)
    _, _, _, (keys, values) = pyogrio.raw.read(tmp_path / "onnx" / "iburi_landslides.gpkg", layer="provenance")
    assert dict(zip(keys, values)) == {k: v for k, v in tags.items() if k.startswith("SLIDEMAP_")}


def test_an_ensemble_with_views_predicts_as_the_torch_ensemble(tmp_path):
    torch.manual_seed(3)
    ckpts = [save_checkpoint(tmp_path / f"seed{i}.ckpt", unet_config(5, 4)) for i in range(2)]
    assert main(["export", *map(str, ckpts), "--out", str(tmp_path / "pair.onnx")]) == 0
    tiles = np.random.default_rng(0).standard_normal((3, 5, 64, 64)).astype(np.float32)
    for tta in ("none", "flips"):
        want_mean, want_sd = Ensemble([load_checkpoint(c) for c in ckpts], tta)(tiles)
        model = OnnxModel(tmp_path / "pair.onnx", tta)
        got_mean, got_sd = model(tiles)
        assert model.size == 2 * (4 if tta == "flips" else 1) and want_sd.max() > 1e-3
        assert np.abs(got_mean - want_mean).max() < 1e-5 and np.abs(got_sd - want_sd).max() < 1e-5
    outputs = [o.name for o in onnx.load(str(tmp_path / "pair.onnx")).graph.output]
    assert outputs == ["probability", "sd"]
    # a tile that is not a multiple of 32 px is padded and cropped as the network pads it
    odd = tiles[:, :, :40, :40]
    assert np.abs(OnnxModel(tmp_path / "pair.onnx")(odd)[0] - Ensemble([load_checkpoint(c) for c in ckpts])(odd)[0]
                  ).max() < 1e-5


def test_the_ensemble_checks_of_slidemap_map_apply(capsys, tmp_path):
    ckpt = save_checkpoint(tmp_path / "a.ckpt", unet_config(5, 4))
    shutil.copy(ckpt, tmp_path / "copy.ckpt")
    msg = error_line(capsys, "export", str(ckpt), str(tmp_path / "copy.ckpt"), "--out", str(tmp_path / "m.onnx"))
    assert msg == f"{tmp_path / 'copy.ckpt'}: is the same weights as {ckpt}: an ensemble needs distinct members " \
                  "(each seed once)"
    assert not (tmp_path / "m.onnx").exists()


def test_a_network_that_cannot_be_exported_names_the_operator(capsys, tmp_path):
    ckpt = save_checkpoint(tmp_path / "kth.ckpt", {"_target_": "test_onnx_export.KthNet", "in_channels": 5,
                                                   "out_channels": 1})
    msg = error_line(capsys, "export", str(ckpt), "--out", str(tmp_path / "kth.onnx"))
    assert msg == f"{ckpt}: cannot be exported to ONNX: operator aten::kthvalue (in KthNet) has no ONNX form at " \
                  "opset 17"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kth.ckpt"]


@pytest.mark.parametrize("argv, message", [
    (["--out", "model.pt"], "--out: must name an .onnx file, got 'model.pt'"),
    (["--out", "m.onnx", "--calibration", "sites"], "--calibration: goes with --quantize int8"),
    (["--out", "m.onnx", "--quantize", "int8", "--calibration-tiles", "0"],
     "--calibration-tiles: must be a positive number of tiles, got 0"),
])
def test_export_option_errors(capsys, tmp_path, argv, message):
    assert error_line(capsys, "export", str(tmp_path / "none.ckpt"), *argv) == message


@pytest.mark.parametrize("argv, message", [
    (["--engine", "torch", "--model", "m.onnx"], "--model: is an ONNX model for --engine onnxruntime"),
    (["--engine", "onnxruntime", "--ckpt", "a.ckpt"], "--ckpt: --engine onnxruntime maps an exported model"),
    (["--model", "m.onnx", "--precision", "bf16"], "--precision: is the torch engine's"),
    (["--engine", "onnxruntime"], "--model: missing"),
])
def test_map_engine_option_errors(capsys, tmp_path, argv, message):
    scene = fs.make_site(tmp_path / "scene", labels=None)
    msg = error_line(capsys, "map", "--scene", str(scene), "--out", str(tmp_path / "maps"), *argv)
    assert msg.startswith(message), msg
    assert not (tmp_path / "maps").exists()


def test_missing_corrupt_and_foreign_onnx_files(capsys, tmp_path):
    scene = fs.make_site(tmp_path / "scene", labels=None)
    base = ["--scene", str(scene), "--out", str(tmp_path / "maps")]
    assert error_line(capsys, "map", "--model", str(tmp_path / "none.onnx"), *base) == \
        f"{tmp_path / 'none.onnx'}: ONNX model not found"
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    assert "cannot read ONNX model" in error_line(capsys, "map", "--model", str(tmp_path / "bad.onnx"), *base)
    foreign = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5, 8, 8])]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    assert error_line(capsys, "map", "--model", str(tmp_path / "foreign.onnx"), *base) == \
        f"{tmp_path / 'foreign.onnx'}: not a slidemap ONNX model of this version (metadata 'slidemap.format' is None, " \
        "expected '1'): export it again"
    assert not (tmp_path / "maps").exists()


def test_an_exported_model_whose_channels_the_scene_lacks_is_refused(capsys, tmp_path):
    odd = save_checkpoint(tmp_path / "odd.ckpt", unet_config(5, 4), channels=["B2", "B3", "B4", "B11", "slope"])
    assert run(capsys, "export", str(odd), "--out", str(tmp_path / "odd.onnx"))[0] == 0
    scene = fs.make_site(tmp_path / "scenes" / "event", labels=None)
    args = ["--scene", str(scene), "--out", str(tmp_path / "maps")]
    by_ckpt = error_line(capsys, "map", "--ckpt", str(odd), *args)
    by_onnx = error_line(capsys, "map", "--model", str(tmp_path / "odd.onnx"), *args)
    assert by_onnx == by_ckpt and "site 'event' has no swir16 band; its bands: blue, green, red, nir" in by_onnx


@pytest.mark.slow
@pytest.mark.parametrize("mistake, expected", [("band order", "red and nir look swapped"), ("km", "slope: p99")])
def test_the_units_guard_refuses_a_scene_exactly_as_for_the_checkpoint(capsys, exported, synthetic_root, tmp_path,
                                                                       mistake, expected):
    ckpt, onnx_file = exported
    scene = tmp_path / "japan"
    shutil.copytree(synthetic_root / "japan", scene)
    meta = yaml.safe_load((scene / "site.yaml").read_text())
    if mistake == "band order":
        meta["bands"] = ["B2", "B3", "B8", "B4"]
    else:
        with rasterio.open(scene / "dem.tif") as f:
            profile, dem = f.profile, f.read(1)
        with rasterio.open(scene / "dem.tif", "w", **profile) as f:
            f.write(np.where(dem == profile["nodata"], dem, dem / 1000), 1)
    (scene / "site.yaml").write_text(yaml.safe_dump(meta))
    args = ["--scene", str(scene), "--out", str(tmp_path / "maps")]
    by_onnx = error_line(capsys, "map", "--model", str(onnx_file), *args)
    assert by_onnx == error_line(capsys, "map", "--ckpt", str(ckpt), *args)
    assert by_onnx.startswith(f"{scene}") and expected in by_onnx
    assert not (tmp_path / "maps").exists()


@pytest.mark.slow
def test_a_synthetic_model_exported_is_still_refused_on_a_real_scene(capsys, exported, tmp_path):
    _, onnx_file = exported
    scene = fs.make_site(tmp_path / "scene")  # not written by slidemap synth
    args = ["--model", str(onnx_file), "--scene", str(scene), "--out", str(tmp_path / "maps")]
    msg = error_line(capsys, "map", *args)
    assert msg.startswith(f"{onnx_file}: was trained only on the built-in synthetic sites")
    assert main(["map", *args, "--allow-synthetic-model"]) == 0
    with rasterio.open(tmp_path / "maps" / "scene_binary.tif") as src:
        assert "not a map of the real ground" in src.tags()["SLIDEMAP_WARNING"]


def test_a_per_patch_model_is_refused_rather_than_exported_without_its_standardisation(tmp_path):
    import dataclasses

    from slidemap.errors import InputError
    from slidemap.mapping.onnx_export import export_onnx

    model = dataclasses.replace(load_checkpoint(save_checkpoint(tmp_path / "p.ckpt", unet_config(5, 4))),
                                per_patch=True, patch_size=32)
    ensemble = Ensemble.__new__(Ensemble)  # the members as slidemap map holds them, without its mapping checks
    ensemble.models, ensemble.views, ensemble.tta = [model], ((0, False),), "none"
    with pytest.raises(InputError, match="normalise: per_patch.*does not carry that step yet; map it with --ckpt"):
        export_onnx(ensemble, tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()
