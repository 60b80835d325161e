"""`slidemap map`: maps of a scene without inventory from a checkpoint; bad input is one line, nothing half-written."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
from scipy import ndimage

import fake_sites as fs
from slidemap.cli import main
from checkpoints import save_checkpoint, unet_config

OUTPUTS = ("_probability.tif", "_binary.tif", "_landslides.gpkg")
FILES = (*OUTPUTS, "_probability.qml", "_binary.qml", "_landslides.qml")  # the outputs and their QGIS styles


def run_map(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["map", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv: str) -> str:
    """Run a failing `slidemap map`: exit 2, nothing on stdout, one line on stderr; return the message."""
    code, out, err = run_map(capsys, *argv)
    assert code == 2 and out == "", err
    prefix = "slidemap map: error: "
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained U-Net checkpoint (window 32): enough to exercise every path quickly."""
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", unet_config(5, 4))


@pytest.fixture
def scene(tmp_path) -> Path:
    """The 16 x 20 px fake site without labels."""
    return fs.make_site(tmp_path / "scenes" / "event", labels=None)


# ---------------------------------------------------------------- happy paths


def test_map_tiny_scene(capsys, ckpt, scene, tmp_path, caplog):
    out = tmp_path / "maps"
    with caplog.at_level(logging.INFO):
        code, stdout, _ = run_map(capsys, "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out))
    assert code == 0
    assert stdout.split() == [str(out / f"event{s}") for s in OUTPUTS]
    assert leftovers(out) == sorted(f"event{s}" for s in FILES)  # no temporary files
    with rasterio.open(out / "event_binary.tif") as src:
        assert src.crs == rasterio.crs.CRS.from_string(fs.S2_CRS) and src.transform == fs.s2_transform()
        assert (src.height, src.width) == fs.SHAPE
    assert any("mapped event (16 x 20 px)" in r.getMessage() and " s:" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def synthetic_scene(synthetic_root, tmp_path_factory) -> Path:
    """The synthetic china site copied without its inventory: what a responder has after an event (its site.yaml
    says it is synthetic, so a synthetic-trained model may map it)."""
    scene = tmp_path_factory.mktemp("scenes") / "jiuzhaigou"
    scene.mkdir()
    for name in ("s2.tif", "dem.tif", "site.yaml"):
        shutil.copy(synthetic_root / "china" / name, scene / name)
    return scene


@pytest.mark.slow
def test_map_synthetic_scene_with_a_trained_checkpoint(capsys, tiny_run, synthetic_scene, tmp_path):
    run = tiny_run
    out = tmp_path / "maps"
    code, _, err = run_map(capsys, "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--scene", str(synthetic_scene),
                           "--out", str(out))
    assert code == 0, err
    assert leftovers(out) == sorted(f"jiuzhaigou{s}" for s in FILES)
    with rasterio.open(synthetic_scene / "s2.tif") as s2:
        crs, bounds, shape = s2.crs, s2.bounds, (s2.height, s2.width)
    with rasterio.open(out / "jiuzhaigou_probability.tif") as p, rasterio.open(out / "jiuzhaigou_binary.tif") as b:
        for src in (p, b):  # the whole scene, on the scene's own grid
            assert src.crs == crs and src.bounds == bounds and (src.height, src.width) == shape
            assert src.overviews(1)
        prob, binary = p.read(1), b.read(1)
    assert np.isfinite(prob).all() and np.array_equal(binary, (prob > 0.5).astype(np.uint8))
    gpkg = out / "jiuzhaigou_landslides.gpkg"
    meta, _, wkb, fields = pyogrio.raw.read(gpkg)
    assert "hits_inventory" not in list(meta["fields"])  # no inventory, no such column
    assert len(wkb) == ndimage.label(binary == 1)[1]
    area = fields[list(meta["fields"]).index("area_m2")]
    assert area.sum() == pytest.approx((binary == 1).sum() * 100.0)
    assert shapely.area(shapely.from_wkb(wkb)) == pytest.approx(area)


# ---------------------------------------------------------------- bad input


def test_missing_and_corrupt_checkpoints(capsys, scene, tmp_path):
    out = tmp_path / "maps"
    missing = tmp_path / "none.ckpt"
    assert error_line(capsys, "--ckpt", str(missing), "--scene", str(scene), "--out", str(out)) == \
        f"{missing}: checkpoint not found"
    corrupt = tmp_path / "bad.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    assert "cannot read checkpoint" in error_line(capsys, "--ckpt", str(corrupt), "--scene", str(scene),
                                                  "--out", str(out))
    assert leftovers(out) == []


def test_checkpoint_whose_channels_do_not_fit(capsys, scene, tmp_path):
    wide = save_checkpoint(tmp_path / "wide.ckpt", unet_config(6, 4))
    msg = error_line(capsys, "--ckpt", str(wide), "--scene", str(scene), "--out", str(tmp_path / "maps"))
    assert msg == f"{wide}: channel mismatch inside the checkpoint: the network takes 6 channels but 5 are " \
                  "recorded (blue, green, red, nir, slope)"
    odd = save_checkpoint(tmp_path / "odd.ckpt", unet_config(5, 4),
                          channels=["B2", "B3", "B4", "B11", "slope"])
    # B11 is swir16, a real band the scene lacks: one line naming the scene and the band
    line = error_line(capsys, "--ckpt", str(odd), "--scene", str(scene), "--out", str(tmp_path / "maps"))
    assert "site 'event' has no swir16 band; its bands: blue, green, red, nir" in line


def test_scene_missing_a_band_the_dem_or_its_crs(capsys, ckpt, tmp_path):
    three = fs.make_site(tmp_path / "three", labels=None, bands=fs.constant_bands(fs.DN[:3]))
    out = tmp_path / "maps"
    assert "has 3 band(s); need at least 4" in error_line(capsys, "--ckpt", str(ckpt), "--scene", str(three),
                                                          "--out", str(out))
    no_dem = fs.make_site(tmp_path / "nodem", labels=None)
    (no_dem / "dem.tif").unlink()
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(no_dem), "--out", str(out)).startswith(
        f"{no_dem / 'dem.tif'}: missing")
    no_crs = tmp_path / "nocrs"
    fs.write_raster(no_crs / "s2.tif", fs.constant_bands(fs.DN), None, fs.s2_transform())
    shutil.copy(no_dem.parent / "three" / "dem.tif", no_crs / "dem.tif")
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(no_crs), "--out", str(out)) == \
        f"{no_crs / 's2.tif'}: has no CRS; every input must be georeferenced"
    assert leftovers(out) == []


def test_output_folder_not_writable(capsys, ckpt, scene, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(a_file)) == \
        f"{a_file}: output folder is an existing file"
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(a_file / "maps")) == \
        f"{a_file}: is a file, not a folder: {a_file / 'maps'} cannot be made below it"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(capsys, ckpt, scene, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(locked)).startswith(
        f"{locked}: output folder not writable")


def test_nothing_half_written_when_prediction_fails(capsys, ckpt, monkeypatch, tmp_path):
    """A failure mid-mosaic leaves neither the maps nor their temporary files behind."""
    scene, shape, t = tmp_path / "big", (70, 20), fs.s2_transform()  # three row bands of 32 px tiles
    fs.write_raster(scene / "s2.tif", fs.constant_bands(fs.DN, shape=shape), fs.S2_CRS, t, nodata=0)
    fs.write_dem_geographic(scene / "dem.tif", fs.S2_CRS, t, shape, fs.plane(0.1, 0.0))
    calls = []

    def flaky(net, tiles, autocast=None, temperature=1.0):
        calls.append(len(tiles))
        if len(calls) > 1:
            raise RuntimeError("out of memory")
        return np.zeros(tiles.shape[:1] + tiles.shape[2:], np.float32)

    monkeypatch.setattr("slidemap.mapping.mosaic.predict_tiles", flaky)
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out), "--tile", "32"]) == 1  # a bug
    assert "out of memory" in capsys.readouterr().err
    assert len(calls) == 2 and leftovers(out) == [] and not out.exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--threshold", "1.5", "--threshold: must lie in (0, 1), got 1.5"),
    ("--overlap", "1", "--overlap: must lie in [0, 1), got 1.0"),
    ("--tile", "100", "--tile: must be a multiple of 32 px (e.g. 256, 512, 1024), got 100"),
])
def test_bad_threshold_or_overlap(capsys, ckpt, scene, tmp_path, flag, value, message):
    assert error_line(capsys, "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "m"),
                      flag, value) == message


# ---------------------------------------------------------------- whole scenes by strips


def test_scene_strips_read_exactly_what_the_site_reader_reads(synthetic_root):
    from slidemap.data.sites.reader import read_site
    from slidemap.data.loading.scene import SceneStrips

    site = read_site(synthetic_root / "japan")  # UTM site, DEM on another grid, a nodata wedge
    scene = SceneStrips(synthetic_root / "japan", strip_rows=37)  # strip edges fall everywhere
    assert scene.shape == site.shape and scene.transform == site.transform and scene.crs == site.crs
    for r0 in range(0, site.shape[0], 37):
        r1 = min(site.shape[0], r0 + 37)
        strip = scene.read(r0, r1)
        np.testing.assert_array_equal(strip.valid, site.valid[r0:r1])
        np.testing.assert_allclose(strip.bands, site.bands[:, r0:r1], rtol=0, atol=0)
        np.testing.assert_allclose(strip.dem, site.dem[r0:r1], rtol=1e-6, atol=1e-3)
        np.testing.assert_allclose(strip.slope, site.slope[r0:r1], rtol=1e-5, atol=1e-4)  # real neighbours


@pytest.mark.parametrize("crs", ["EPSG:32654", "EPSG:4326"])  # projected, and geographic (area per row)
def test_streamed_polygons_equal_in_memory_polygons(tmp_path, crs):
    from slidemap.mapping.polygons import vectorise
    from slidemap.mapping.polygons_streamed import write_polygons_streamed
    from slidemap.mapping.rasters import write_maps

    rng = np.random.default_rng(5)
    prob = ndimage.uniform_filter(rng.random((90, 70)), 7).astype(np.float32)
    prob[:10, :10] = np.nan  # nodata is no polygon
    prob[:, 30] = 0.9  # one landslide running through every strip, joined across the strip borders
    transform = (rasterio.Affine(10, 0, 500000, 0, -10, 4000000) if crs != "EPSG:4326"
                 else rasterio.Affine(1e-4, 0, 141.0, 0, -1e-4, 42.8))
    sd = np.abs(prob - 0.5).astype(np.float32)  # an uncertainty layer, NaN where the probability is
    chunks = [(0, prob[:40], sd[:40]), (40, prob[40:], sd[40:])]
    _, binary, paths = write_maps(tmp_path, "x", chunks, prob.shape, transform, crs, 0.5, uncertainty=True)
    assert [p.name for p in paths] == ["x_probability.tif", "x_binary.tif", "x_uncertainty.tif"]
    with rasterio.open(paths[2]) as src:
        np.testing.assert_array_equal(src.read(1), sd)
    mem = vectorise(binary, transform, crs, prob, uncertainty=sd)
    count, area = write_polygons_streamed(paths[1], tmp_path / "x.gpkg", paths[0], strip_rows=13,
                                          uncertainty_path=paths[2])
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "x.gpkg")
    ids, pixels, area_m2, mean_p, mean_sd = fields
    assert count == len(mem) == len(ids) > 5 and area == pytest.approx(mem.area_m2.sum())
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], np.arange(1, count + 1))  # the in-memory numbering (raster order)
    np.testing.assert_array_equal(pixels[order], mem.pixels)
    np.testing.assert_allclose(area_m2[order], mem.area_m2, rtol=1e-9)
    np.testing.assert_allclose(mean_p[order], np.round(mem.mean_probability, 4), atol=1e-9)
    np.testing.assert_allclose(mean_sd[order], np.round(mem.mean_uncertainty, 4), atol=1e-9)
    np.testing.assert_allclose(mem.mean_uncertainty, mem.mean_probability - 0.5, atol=1e-6)  # all above 0.5
    for wkb, expected in zip(geometry[order], mem.geometry):
        assert shapely.from_wkb(wkb).normalize().equals_exact(expected.normalize(), 1e-9)


def test_map_streams_a_scene_larger_than_one_strip(capsys, ckpt, tmp_path, monkeypatch, synthetic_root):
    """slidemap map reads by strips; the maps equal those of the in-memory mosaic of the whole site."""
    from slidemap.data.loading import scene as scene_module
    from slidemap.data.sites.reader import read_site
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.mosaic import predict_mosaic, site_reader

    monkeypatch.setattr(scene_module.SceneStrips.__init__, "__defaults__", (50,))  # 215 rows: 5 strips
    folder = tmp_path / "scenes" / "china"
    shutil.copytree(synthetic_root / "china", folder)
    for inv in folder.glob("inventory.*"):
        inv.unlink()
    # a post-event model does not read s2_pre.tif (nor mask its clouds): compare with a scene that has none
    (folder / "s2_pre.tif").unlink()
    out = tmp_path / "maps"
    code, _, _ = run_map(capsys, "--ckpt", str(ckpt), "--scene", str(folder), "--out", str(out), "--precision", "32",
                         "--tile", "64")  # several rows of tiles across the strips
    assert code == 0
    model = load_checkpoint(ckpt)
    site = read_site(folder, require_label=False)
    read, valid = site_reader(site, model.normaliser)
    expected = predict_mosaic(model.net, read(0, site.shape[0])[0], valid, 64, overlap=0.5)
    with rasterio.open(out / "china_probability.tif") as src:
        np.testing.assert_allclose(src.read(1), expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    info = pyogrio.read_info(out / "china_landslides.gpkg")
    assert info["features"] == int(ndimage.label(np.nan_to_num(expected) > 0.5,
                                                 structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])[1])


# ---------------------------------------------------------------- straight from a Sentinel-2 product


def test_map_from_a_safe_zip_and_dem_tiles_masks_clouds(capsys, ckpt, tmp_path):
    import ingest_fixtures as fx

    from slidemap.data.sites.reader import read_site
    from slidemap.ingest.site_builder import build_site

    product = fx.zip_safe(fx.write_safe(tmp_path / "dl"))
    dem = fx.split_dem(tmp_path / "dl")
    out = tmp_path / "maps"
    code, stdout, _ = run_map(capsys, "--ckpt", str(ckpt), "--s2", str(product), "--dem", *map(str, dem),
                              "--out", str(out))
    assert code == 0, stdout
    name = product.name.removesuffix(".zip")
    assert leftovers(out) == sorted(f"{name}{s}" for s in FILES)  # the temporary site is gone
    site = read_site(Path(build_site(product, dem, tmp_path / "site")["site"]), require_label=False)
    assert (~site.valid).sum() > 100  # the fixture's cloud and shadow
    with rasterio.open(out / f"{name}_binary.tif") as src:
        binary = src.read(1)
        assert src.crs == site.crs and src.transform == site.transform  # the product's own 10 m grid
    with rasterio.open(out / f"{name}_probability.tif") as src:
        prob = src.read(1)
    np.testing.assert_array_equal(binary == 255, ~site.valid)  # clouds are no-data, never "no landslide"
    np.testing.assert_array_equal(np.isnan(prob), ~site.valid)
    polygons = pyogrio.raw.read(out / f"{name}_landslides.gpkg")[2]
    cloud = shapely.union_all([shapely.box(*site.transform * (c, r + 1), *site.transform * (c + 1, r))
                               for r, c in zip(*np.nonzero(~site.valid))])
    assert not any(shapely.from_wkb(g).intersection(cloud).area > 1e-6 for g in polygons)


def test_map_needs_a_scene_or_products(capsys, ckpt, tmp_path):
    line = error_line(capsys, "--ckpt", str(ckpt), "--out", str(tmp_path / "m"))
    assert "missing: give --scene SITE_DIR, or Sentinel-2 products with --s2 and DEM files with --dem" in line
    line = error_line(capsys, "--ckpt", str(ckpt), "--s2", "x.zip", "--out", str(tmp_path / "m"))
    assert line.startswith("--dem: missing")


def test_binary_map_is_strictly_above_the_threshold_like_the_scored_metrics():
    """torchmetrics scores prob > threshold; a probability of exactly 0.5 (a bf16 logit of 0) is not a landslide."""
    from slidemap.mapping.rasters import binarise

    prob = np.array([0.5, np.nextafter(np.float32(0.5), np.float32(1)), 0.2, np.nan], np.float32)
    np.testing.assert_array_equal(binarise(prob, 0.5), [0, 1, 0, 255])


# ---------------------------------------------------------------- large tiles and overlapped reading / writing


def test_default_tile_is_the_large_map_tile(capsys, ckpt, tmp_path, caplog):
    """A scene taller than 512 px maps with 512 px tiles (64 px ramp) by default, not the 32 px training window,
    and the map is that mosaic of the whole scene."""
    from slidemap.data.sites.reader import read_site
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.mosaic import MAP_TILE, predict_mosaic, site_reader

    shape = (544, 64)
    rng = np.random.default_rng(3)
    bands = (rng.uniform(0.5, 1.5, (4, *shape)) * np.array(fs.DN)[:, None, None]).astype(np.uint16)
    folder = tmp_path / "tall"
    fs.write_raster(folder / "s2.tif", bands, fs.S2_CRS, fs.s2_transform(), nodata=0)
    fs.write_dem_geographic(folder / "dem.tif", fs.S2_CRS, fs.s2_transform(), shape, fs.plane(0.3, 0.1))
    out = tmp_path / "maps"
    with caplog.at_level(logging.INFO):
        code, _, err = run_map(capsys, "--ckpt", str(ckpt), "--scene", str(folder), "--out", str(out),
                               "--precision", "32")
    assert code == 0, err
    assert MAP_TILE == 512
    assert any("(512 px tiles, overlap 0.125)" in r.getMessage() for r in caplog.records)
    model = load_checkpoint(ckpt)
    site = read_site(folder, require_label=False)
    read, valid = site_reader(site, model.normaliser)
    expected = predict_mosaic(model.net, read(0, shape[0])[0], valid, 512, overlap=0.125)
    with rasterio.open(out / "tall_probability.tif") as src:
        np.testing.assert_allclose(src.read(1), expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    training_window = predict_mosaic(model.net, read(0, shape[0])[0], valid, 32, overlap=0.5)
    assert not np.allclose(training_window, expected, atol=1e-6)  # the default really changed the tiles


def test_the_mosaic_reads_each_band_of_rows_once_in_order_while_predicting_ahead():
    """The next band of rows is read in a thread while the network runs: still once each, in increasing order."""
    import threading

    from slidemap.mapping.mosaic import iter_mosaic, tile_starts

    rows, cols, tile = 150, 40, 32
    stack = np.random.default_rng(0).normal(size=(2, rows, cols)).astype(np.float32)
    calls, threads = [], set()

    def read(r0: int, r1: int):
        calls.append((r0, r1))
        threads.add(threading.current_thread().name)
        return stack[:, r0:r1], np.ones((r1 - r0, cols), bool)

    net = __import__("torch").nn.Conv2d(2, 1, 3, padding=1)
    parts = list(iter_mosaic(net, read, (rows, cols), tile, overlap=0.5, batch_size=4))
    starts = tile_starts(rows, tile, "blend", 0.5)
    assert calls == [(r, min(rows, r + tile)) for r in starts]
    assert threading.current_thread().name not in threads  # read in the reader thread, not the caller's
    assert sum(p[1].shape[0] for p in parts) == rows and [p[0] for p in parts] == sorted(p[0] for p in parts)


def test_produced_ahead_keeps_order_reraises_and_stops_early():
    from slidemap.mapping.maps import produced_ahead

    assert list(produced_ahead(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        yield 2
        raise ValueError("disk full")

    got = []
    with pytest.raises(ValueError, match="disk full"):
        for item in produced_ahead(failing()):
            got.append(item)
    assert got == [1, 2]

    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    ahead = produced_ahead(endless())
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()  # the consumer stopped (an error while writing): the producer stops too, a few items on at most
    time.sleep(0.5)
    settled = len(made)
    time.sleep(0.3)
    assert len(made) == settled <= 5
