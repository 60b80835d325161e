"""eval.py: seamless mosaics, polygons and object scores, checkpoints, and full runs on a tiny trained U-Net."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from hydra import compose, initialize_config_dir
from rasterio.crs import CRS
from scipy import ndimage
from torch import nn

from slidemap.data.sites.reader import read_site
from slidemap.data.tiling.patches import cut_patches
from slidemap.data.tiling.split import split_sites
from slidemap.data.tiling.split import Block
from slidemap.errors import InputError
from slidemap.evaluation.objects import object_counts, object_scores
from slidemap.mapping.checkpoint import load_checkpoint
from slidemap.mapping.mosaic import iter_mosaic, predict_mosaic, taper, tile_starts
from slidemap.mapping.polygons import vectorise, write_gpkg
from slidemap.mapping.rasters import stitch
from slidemap.models import SmpModel, UNet

from checkpoints import CHANNELS, save_checkpoint, unet_config

REPO = Path(__file__).resolve().parents[1]
SITES = ("china", "japan", "taiwan")


# ---------------------------------------------------------------- mosaic


class ToyNet(nn.Module):
    """One 3x3 conv (zero padding): translation-equivariant, wrong only on a tile's outermost pixels."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def full_image(net: nn.Module, stack: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(stack)[None]))[0, 0].numpy()


def test_tile_starts_by_hand():
    # 100 px, tiles of 32, 50% overlap: steps of 16, last tile flush with the end (68 = 100 - 32).
    assert tile_starts(100, 32, "blend", 0.5) == [0, 16, 32, 48, 64, 68]
    assert tile_starts(100, 32, "blend", 0.25) == [0, 24, 48, 68]  # steps of 24
    assert tile_starts(20, 32, "blend") == [0]  # shorter than a tile: one padded tile
    assert tile_starts(100, 32, "grid") == [0, 32, 64, 96]  # the paper's grid, the last tile padded


def test_taper_is_zero_at_inner_borders_and_flat_on_the_area_border():
    s = math.sin(math.pi / 8) ** 2  # sin^2(22.5 deg) = (1 - cos 45 deg) / 2 = 0.1464
    ramp = [0.0, s, 0.5, 1 - s]
    assert taper(8, 4, False, False) == pytest.approx(ramp + ramp[::-1], abs=1e-6)
    assert taper(8, 4, True, False) == pytest.approx([1, 1, 1, 1] + ramp[::-1], abs=1e-6)
    assert taper(8, 4, True, True) == pytest.approx([1] * 8)


@pytest.mark.parametrize("overlap", [0.5, 0.25, 0.75])
@pytest.mark.parametrize("shape", [(45, 70), (16, 50), (33, 33)])
def test_blended_mosaic_has_no_seams(overlap, shape):
    """A translation-equivariant net gives the same value at a pixel whatever tile it falls in."""
    net = ToyNet()
    stack = np.random.default_rng(1).normal(size=(3, *shape)).astype(np.float32)
    blended = predict_mosaic(net, stack, np.ones(shape, bool), 16, overlap=overlap, batch_size=3)
    expected = full_image(net, stack)
    np.testing.assert_allclose(blended[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-6)
    np.testing.assert_allclose(blended, expected, atol=1e-6)  # holds at the scene edge too: no taper there


def test_grid_mosaic_is_the_training_patch_grid():
    """grid = the patches training tests on (cut_patches: zero-padded past the edge) stitched back."""
    net = ToyNet()
    rng = np.random.default_rng(2)
    stack = rng.normal(size=(3, 40, 50)).astype(np.float32)
    valid = np.ones((40, 50), bool)
    valid[0:16, 0:16] = False  # a whole tile of nodata: no patch, NaN
    valid[30, 7] = False
    stack[:, ~valid] = 0.0
    grid = predict_mosaic(net, stack, valid, 16, mode="grid")
    block = Block(0, 0, 40, 50)
    patches = cut_patches(stack, np.zeros((40, 50), np.uint8), valid, block, 16)
    with torch.no_grad():
        probs = torch.sigmoid(net(torch.from_numpy(patches.x)))[:, 0].numpy()
    per_tile = stitch(patches, probs, block)
    np.testing.assert_allclose(grid[valid], per_tile[valid], atol=1e-6)
    assert np.isnan(grid[~valid]).all()
    assert np.abs(grid[valid] - full_image(net, stack)[valid]).max() > 1e-3  # the grid's seams are real


def test_mosaic_reads_and_yields_row_bands_only():
    net = ToyNet()
    stack = np.random.default_rng(3).normal(size=(3, 100, 30)).astype(np.float32)
    reads: list[tuple[int, int]] = []

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        reads.append((r0, r1))
        return stack[:, r0:r1], np.ones((r1 - r0, 30), bool)

    chunks = list(iter_mosaic(net, read, (100, 30), 32, overlap=0.5))
    assert reads == [(0, 32), (16, 48), (32, 64), (48, 80), (64, 96), (68, 100)]
    rows = [(r0, r0 + part.shape[0]) for r0, part in chunks]
    assert rows == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 68), (68, 100)]  # consecutive, all rows


def test_tiles_without_valid_pixels_are_not_run():
    calls = []

    class Counting(ToyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return super().forward(x)

    valid = np.ones((64, 64), bool)
    valid[:32, :32] = False
    predict_mosaic(Counting(), np.zeros((3, 64, 64), np.float32), valid, 32, mode="grid")
    assert sum(calls) == 3


# ---------------------------------------------------------------- polygons and object scores

T10 = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 2_500_000.0)
UTM51 = CRS.from_epsg(32651)


def hand_map() -> tuple[np.ndarray, np.ndarray]:
    """Four predicted 4-connected regions, four 8-connected inventory landslides (two hit)."""
    b = np.zeros((6, 8), np.uint8)
    b[0:2, 0:2] = 1  # A: 4 px (ids by raster scan: A=1)
    b[1:3, 5] = 1  # C: 2 px (id 2)
    b[2, 2] = 1  # B: 1 px, only diagonal to A: its own polygon (id 3)
    b[4, 4:7] = 1  # D: 3 px (id 4)
    b[0, 7] = 255  # nodata
    label = np.zeros((6, 8), np.uint8)
    label[0:2, 0] = 1  # L1 inside A: hit
    label[3, 2:4] = 1  # L2 next to B, no common pixel: missed
    label[4, 6] = 1  # L3 inside D: hit
    label[1, 7] = label[2, 6] = 1  # L4: two diagonal pixels = one landslide; next to C: missed
    return b, label


def test_polygons_areas_and_geopackage(tmp_path):
    binary, label = hand_map()
    slides = vectorise(binary, T10, UTM51, probability=np.full(binary.shape, 0.75, np.float32), label=label)
    assert slides.pixels.tolist() == [4, 2, 1, 3]
    assert slides.area_m2.tolist() == [400.0, 200.0, 100.0, 300.0]  # pixels x 10 m x 10 m
    assert slides.hits_inventory.tolist() == [True, False, False, True]
    path = write_gpkg(tmp_path / "x_landslides.gpkg", slides, UTM51)
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:32651" and info["features"] == 4 and info["geometry_type"] == "Polygon"
    meta, _, wkb, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    geoms = shapely.from_wkb(wkb)
    assert shapely.area(geoms).tolist() == [400.0, 200.0, 100.0, 300.0]
    assert fields[names.index("area_m2")].tolist() == [400.0, 200.0, 100.0, 300.0]
    assert fields[names.index("mean_probability")].tolist() == [0.75] * 4
    # A's outline: cols 0-1, rows 0-1 -> x 500000..500020, y 2499980..2500000
    assert shapely.bounds(geoms[0]).tolist() == [500_000.0, 2_499_980.0, 500_020.0, 2_500_000.0]
    assert not list(tmp_path.glob(".*tmp*"))


def test_empty_map_gives_an_empty_layer(tmp_path):
    path = write_gpkg(tmp_path / "e.gpkg", vectorise(np.zeros((4, 4), np.uint8), T10, UTM51), UTM51)
    assert pyogrio.read_info(path)["features"] == 0


def test_object_scores_by_hand():
    binary, label = hand_map()
    got = object_scores(object_counts(binary, label))
    # 4 landslides (L1..L4), 2 hit -> 0.5; 4 polygons, B and C touch no label -> 2 false alarms, 0.5
    assert got == {"landslides": 4, "landslides_hit": 2, "polygons": 4, "false_alarms": 2,
                   "hit_rate": 0.5, "false_alarm_rate": 0.5}
    valid = np.ones_like(label, bool)
    valid[4, 6] = False  # L3 and D's pixel there no longer count: L3 vanishes, D becomes a false alarm
    got = object_counts(binary, label, valid)
    assert (got["landslides"], got["landslides_hit"], got["false_alarms"]) == (3, 1, 3)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_run_folder(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", unet_config(5, 4), window=64)
    saved = torch.load(path, weights_only=True)["state_dict"]
    model = load_checkpoint(tmp_path / "run")  # a run folder stands for its best checkpoint
    # the checkpoint records Sentinel-2 ids (B2, ...) as older slidemaps wrote them; they load as common names
    assert CHANNELS == ["B2", "B3", "B4", "B8", "slope"]
    assert (model.model_name, model.channels, model.window, model.threshold) == \
        ("unet", ("blue", "green", "red", "nir", "slope"), 64, 0.5)
    assert model.path == path and not model.net.training
    assert isinstance(model.net, UNet) and model.net.encoder[0][0].out_channels == 4  # base_filters of the config
    for key, value in model.net.state_dict().items():  # the saved weights, not a fresh initialisation
        torch.testing.assert_close(value, saved[f"net.{key}"])


def test_smp_unet_checkpoint_loads(tmp_path):
    config = {"_target_": "slidemap.models.SmpModel", "arch": "Unet", "encoder_name": "resnet18",
              "encoder_weights": None, "in_channels": 5}
    model = load_checkpoint(save_checkpoint(tmp_path / "smp.ckpt", config, name="smp_unet"))
    assert isinstance(model.net, SmpModel) and model.model_name == "smp_unet"
    encoder = model.net.net.encoder
    assert type(encoder).__name__ == "ResNetEncoder" and len(encoder.layer4) == 2  # two blocks: resnet18


def bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty_run").mkdir()
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, foreign)
    wide = save_checkpoint(tmp_path / "wide.ckpt", unet_config(6, 4))  # 6 in, 5 channels
    shapes = save_checkpoint(tmp_path / "shapes.ckpt", unet_config(5, 4))
    ckpt = torch.load(shapes, weights_only=True)
    ckpt["hyper_parameters"]["model"]["net"]["base_filters"] = 8
    torch.save(ckpt, shapes)
    old = save_checkpoint(tmp_path / "old.ckpt", unet_config(5, 4))
    ckpt = torch.load(old, weights_only=True)  # the layout before models were built from their config
    hp = ckpt["hyper_parameters"]
    hp["model_name"], hp["net_hparams"] = "unet", {"in_channels": 5, "base_filters": 4, "out_channels": 1}
    del hp["model"]
    torch.save(ckpt, old)
    evil = save_checkpoint(tmp_path / "evil.ckpt", unet_config(5, 4))
    ckpt = torch.load(evil, weights_only=True)
    ckpt["hyper_parameters"]["model"]["net"] = {"_target_": "os.system", "command": "echo hi"}
    torch.save(ckpt, evil)
    return {
        "missing": (tmp_path / "nope.ckpt", "checkpoint not found"),
        "folder": (tmp_path / "empty_run", "without checkpoints/best.ckpt"),
        "corrupt": (corrupt, "cannot read checkpoint"),
        "foreign": (foreign, "not a slidemap checkpoint"),
        "channels": (wide, "the network takes 6 channels but 5 are recorded"),
        "weights": (shapes, "weights do not fit model 'unet'"),
        "old": (old, "checkpoint from an older slidemap .* retrain it"),
        "not a network": (evil, "cannot rebuild model 'unet': 'os.system' is not a torch.nn.Module class"),
    }


@pytest.mark.parametrize("seed", [0, 17, 54, 62, 941])
def test_random_bytes_are_a_one_line_input_error_whatever_the_unpickler_raises(tmp_path, seed):
    """2000 random bytes make torch.load fail in several ways; these seeds hit UnpicklingError, IndexError,
    UnicodeDecodeError, KeyError and RuntimeError (about 6.5% of random files raise IndexError)."""
    path = tmp_path / "random.ckpt"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    with pytest.raises(InputError, match="cannot read checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("seed", range(12))
def test_a_damaged_checkpoint_is_a_one_line_input_error(tmp_path, seed):
    """A real checkpoint cut short never loads; one with bytes flipped either loads or fails with the same error."""
    rng = np.random.default_rng(seed)
    real = save_checkpoint(tmp_path / "real.ckpt", unet_config(5, 4)).read_bytes()
    path = tmp_path / "damaged.ckpt"
    if seed % 2 == 0:
        path.write_bytes(real[:int(rng.integers(1, len(real)))])
        with pytest.raises(InputError, match="cannot read checkpoint") as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        return
    damaged = bytearray(real)
    for i in rng.integers(0, len(real), 20):
        damaged[i] ^= 0xFF
    path.write_bytes(bytes(damaged))
    try:  # flips that miss every checked part of the zip may still load: nothing to report then
        load_checkpoint(path)
    except InputError as err:
        assert str(path) in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("case", ["missing", "folder", "corrupt", "foreign", "channels", "weights", "old",
                                  "not a network"])
def test_bad_checkpoints_are_one_line_input_errors(tmp_path, case):
    path, message = bad_checkpoints(tmp_path)[case]
    with pytest.raises(InputError, match=message) as err:
        load_checkpoint(path)
    assert err.value.path == str(path) and "\n" not in str(err.value)


# ---------------------------------------------------------------- eval.py on a tiny trained U-Net


def eval_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def blended(trained, synthetic_root, tmp_path_factory) -> Path:
    """eval.py run as a user runs it (subprocess, Hydra run dir), default blended inference."""
    out = tmp_path_factory.mktemp("eval") / "blend"
    done = subprocess.run([sys.executable, str(REPO / "eval.py"), f"ckpt_path={trained}/checkpoints/best.ckpt",
                           f"data.root={synthetic_root}", f"hydra.run.dir={out}"], cwd=out.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def sites(synthetic_root):
    read = {name: read_site(synthetic_root / name) for name in SITES}
    return read, split_sites(read)


@pytest.mark.slow
def test_metrics_json_equals_metrics_recomputed_from_the_written_maps(blended, sites):
    metrics = json.loads((blended / "metrics.json").read_text())
    assert (metrics["model"], metrics["window"], metrics["inference"], metrics["overlap"]) == ("unet", 64, "blend", 0.5)
    read, splits = sites
    total = np.zeros(4, np.int64)
    for name in SITES:
        site, block = read[name], splits[name].test
        with rasterio.open(blended / f"{name}_binary.tif") as src:
            pred = src.read(1) == 1
        label, valid = site.label[block.slices] == 1, site.valid[block.slices]
        tp, fp, fn = ((pred & label & valid).sum(), (pred & ~label & valid).sum(), (~pred & label & valid).sum())
        tn = (~pred & ~label & valid).sum()
        area = metrics["areas"][name]
        assert (area["tp"], area["fp"], area["fn"], area["tn"]) == (tp, fp, fn, tn)
        assert area["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        total += (tp, fp, fn, tn)
        # object level: each 8-connected inventory landslide with a predicted pixel counts as hit
        components, m = ndimage.label(label & valid, structure=np.ones((3, 3)))
        hit = sum(bool(pred[components == k].any()) for k in range(1, m + 1))
        assert (metrics["objects"][name]["landslides"], metrics["objects"][name]["landslides_hit"]) == (m, hit)
    tp, fp, fn, tn = total
    assert tuple(metrics["areas"]["all"][k] for k in ("tp", "fp", "fn", "tn")) == (tp, fp, fn, tn)
    assert metrics["areas"]["all"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert set(metrics["areas"]["all"]) == {"precision", "recall", "f1", "iou", "mcc", "tp", "fp", "fn", "tn", "ece",
                                            "average_precision", "objects"}
    assert metrics["areas"]["all"]["objects"]["landslides"] == sum(metrics["objects"][n]["landslides"] for n in SITES)


@pytest.mark.slow
def test_maps_are_georeferenced_tiled_compressed_with_overviews(blended, sites):
    read, splits = sites
    for name in SITES:
        site, block = read[name], splits[name].test
        t = site.transform
        left, top = t.c + block.col0 * t.a, t.f + block.row0 * t.e
        expected = (left, top + block.rows * t.e, left + block.cols * t.a, top)
        with rasterio.open(blended / f"{name}_probability.tif") as p, \
                rasterio.open(blended / f"{name}_binary.tif") as b:
            for src in (p, b):
                assert src.crs == site.crs and (src.height, src.width) == (block.rows, block.cols)
                assert tuple(src.bounds) == pytest.approx(expected)
                assert src.compression.name.lower() == "deflate" and src.block_shapes == [(256, 256)]
                assert src.overviews(1), f"{src.name} has no overviews"
            assert p.dtypes[0] == "float32" and math.isnan(p.nodata) and b.dtypes[0] == "uint8" and b.nodata == 255
            prob, binary = p.read(1), b.read(1)
        valid = site.valid[block.slices]
        assert np.isnan(prob[~valid]).all() and (binary[~valid] == 255).all()
        assert np.isfinite(prob[valid]).all()
        assert np.array_equal(binary[valid], (prob[valid] > 0.5).astype(np.uint8))


@pytest.mark.slow
def test_polygons_cover_exactly_the_landslide_pixels(blended, sites):
    read, _ = sites
    for name in SITES:
        with rasterio.open(blended / f"{name}_binary.tif") as src:
            binary = src.read(1)
        info = pyogrio.read_info(blended / f"{name}_landslides.gpkg")
        assert CRS.from_user_input(info["crs"]) == read[name].crs
        _, n = ndimage.label(binary == 1)  # 4-connected regions
        assert info["features"] == n
        if n:
            meta, _, wkb, fields = pyogrio.raw.read(blended / f"{name}_landslides.gpkg")
            area = fields[list(meta["fields"]).index("area_m2")]
            assert shapely.area(shapely.from_wkb(wkb)) == pytest.approx(area)
            assert area.sum() == pytest.approx((binary == 1).sum() * 100.0)  # 10 m pixels


@pytest.mark.slow
def test_grid_inference_reproduces_training_predictions(trained, synthetic_root, sites, tmp_path):
    from slidemap.evaluation.evaluate import run

    cfg = eval_cfg(f"ckpt_path={trained}", f"data.root={synthetic_root}", "inference=grid",
                   f"paths.output_dir={tmp_path}")
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    training = json.loads((trained / "metrics.json").read_text())
    read, splits = sites
    for name in SITES:
        valid = read[name].valid[splits[name].test.slices]
        with rasterio.open(tmp_path / f"{name}_probability.tif") as a, \
                rasterio.open(trained / "predictions" / f"{name}_probability.tif") as b:
            np.testing.assert_allclose(a.read(1)[valid], b.read(1)[valid], atol=1e-5)
        got, want = metrics["areas"][name], training["areas"][name]
        assert abs(got["tp"] - want["tp"]) + abs(got["fp"] - want["fp"]) + abs(got["fn"] - want["fn"]) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    (["ckpt_path=/nowhere/best.ckpt"], "checkpoint not found"),
    (["data.channels=[B2,B3,B4,B8,ndvi]"], "channel mismatch: trained on [blue, green, red, nir, slope]"),
    (["scenario=china"], "normalisation mismatch"),
    (["inference=tiles"], "unknown inference 'tiles'; choose one of blend, grid"),
])
def test_eval_bad_input(trained, synthetic_root, tmp_path, overrides, message):
    from slidemap.evaluation.evaluate import run

    cfg = eval_cfg(f"ckpt_path={trained}", f"data.root={synthetic_root}", f"paths.output_dir={tmp_path}", *overrides)
    with pytest.raises(InputError) as err:
        run(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    if overrides == ["scenario=china"]:  # names the training areas that do give the checkpoint's statistics
        assert "matches the training areas of ['china', 'japan', 'taiwan']" in str(err.value)
    assert not (tmp_path / "metrics.json").exists()


def test_eval_py_without_checkpoint_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "eval.py"), f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == \
        "error: ckpt_path: no checkpoint given: python eval.py ckpt_path=RUN_DIR/checkpoints/best.ckpt"
