"""QGIS styles: every map and site image opens styled (a .qml sidecar; the GeoPackage's default style in its
``layer_styles`` table), checked on the QML itself and, where PyQGIS is installed, by rendering in QGIS."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp

from slidemap.cli import main
from slidemap.data.sites.grid import Grid
from slidemap.errors import InputError
from slidemap.ingest.site_files import write_s2
from slidemap.mapping.polygons import vectorise, write_gpkg
from slidemap.mapping.polygons_streamed import write_polygons_streamed
from slidemap.mapping.rasters import write_maps
from slidemap.styles import style_kind, write_gpkg_style, write_raster_style

import fake_sites as fs
from checkpoints import save_checkpoint, unet_config

CRS51 = CRS.from_epsg(32651)
T = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 2_600_000.0)
H, W = 20, 30
SYSTEM_PYTHON = "/usr/bin/python3"
RENDER = Path(__file__).with_name("qgis_render.py")


def renderer(qml: Path) -> ET.Element:
    root = ET.parse(qml).getroot()
    assert root.tag == "qgis"
    found = root.find("pipe/rasterrenderer")
    return found if found is not None else root.find("renderer-v2")


def ramp(r: ET.Element) -> list[tuple[float, str, int]]:
    return [(float(i.get("value")), i.get("color"), int(i.get("alpha")))
            for i in r.findall("rastershader/colorrampshader/item")]


def symbol_props(r: ET.Element) -> dict[str, str]:
    layer = r.find("symbols/symbol/layer")
    assert layer.get("class") == "SimpleFill"
    return {o.get("name"): o.get("value") for o in layer.findall("Option/Option")}


def probability_map() -> np.ndarray:
    """Columns 0..29 rise linearly from 0 to 1; the top-left 3 x 3 px are nodata."""
    prob = np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))
    prob[:3, :3] = np.nan
    return prob


def reflectance() -> np.ndarray:
    """B2, B3, B4, B8: band b holds (b + 1) * 0.01 * [0, 1, ..., 599] / 599 in raster order (known quantiles)."""
    ramp_values = np.arange(H * W, dtype=np.float32).reshape(H, W) / (H * W - 1)
    return np.stack([(b + 1) * 0.01 * ramp_values for b in range(4)]).astype(np.float32)


@pytest.fixture
def outputs(tmp_path: Path) -> dict[str, Path]:
    """A probability and binary map, their polygons, an uncertainty map and s2.tif, all through the real writers."""
    out = tmp_path / "maps"
    prob = probability_map()
    _, binary, paths = write_maps(out, "event", [(0, prob)], (H, W), T, CRS51, 0.5)
    gpkg = write_gpkg(out / "event_landslides.gpkg", vectorise(binary, T, CRS51, prob), CRS51)
    sd = np.tile(np.linspace(0, 0.5, W, dtype=np.float32), (H, 1))
    uncertainty = out / "event_uncertainty.tif"
    with rasterio.open(uncertainty, "w", driver="GTiff", width=W, height=H, count=1, dtype="float32", crs=CRS51,
                       transform=T, nodata=float("nan")) as dst:
        dst.write(sd, 1)
    write_raster_style(uncertainty)  # by its name, as the ensemble writer calls it
    s2 = write_s2(out / "s2.tif", reflectance(), Grid(CRS51, T, (H, W)))
    return {"probability": paths[0], "binary": paths[1], "gpkg": gpkg, "uncertainty": uncertainty, "s2": s2}


def test_probability_is_a_transparent_to_red_ramp_over_0_1(outputs):
    qml = outputs["probability"].with_suffix(".qml")
    assert qml.name == "event_probability.qml"
    r = renderer(qml)
    assert (r.get("type"), r.get("band")) == ("singlebandpseudocolor", "1")
    shader = r.find("rastershader/colorrampshader")
    assert (shader.get("colorRampType"), shader.get("minimumValue"), shader.get("maximumValue")) == (
        "INTERPOLATED", "0", "1")
    stops = ramp(r)
    assert [v for v, _, _ in stops] == [0.0, 0.5, 1.0]
    assert [a for _, _, a in stops] == [0, 170, 255]  # invisible at 0, opaque at 1
    red, green, blue = (int(stops[-1][1][i:i + 2], 16) for i in (1, 3, 5))
    assert red > 150 and green < 30 and blue < 60  # dark red


def test_binary_is_red_over_transparent(outputs):
    r = renderer(outputs["binary"].with_suffix(".qml"))
    assert (r.get("type"), r.get("band")) == ("paletted", "1")
    entries = {e.get("value"): (e.get("color"), int(e.get("alpha"))) for e in r.findall("colorPalette/paletteEntry")}
    assert entries == {"0": ("#ffffff", 0), "1": ("#e31a1c", 255)}  # 255 is nodata: transparent anyway


def test_uncertainty_has_its_own_ramp_by_name(outputs):
    assert style_kind(outputs["uncertainty"]) == "uncertainty"
    r = renderer(outputs["uncertainty"].with_suffix(".qml"))
    assert r.get("type") == "singlebandpseudocolor"
    stops = ramp(r)
    assert [v for v, _, _ in stops] == [0.0, 0.25, 0.5] and stops[0][2] == 0 and stops[-1][2] == 255
    assert stops[-1][1] == "#54278f"  # purple, not the probability's red


def test_s2_has_colour_interpretation_and_a_true_colour_stretch(outputs):
    with rasterio.open(outputs["s2"]) as src:
        assert src.descriptions == ("B2", "B3", "B4", "B8")
        assert src.colorinterp == (ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined)
    r = renderer(outputs["s2"].with_suffix(".qml"))
    assert r.get("type") == "multibandcolor"
    assert (r.get("redBand"), r.get("greenBand"), r.get("blueBand")) == ("3", "2", "1")  # B4, B3, B2
    # band b holds (b + 1) * 0.01 * k / 599, k = 0..599: the 2% quantile is at k = 0.02 * 599 = 11.98
    for colour, b in (("red", 2), ("green", 1), ("blue", 0)):
        e = r.find(f"{colour}ContrastEnhancement")
        scale = (b + 1) * 0.01 / 599
        assert float(e.find("minValue").text) == pytest.approx(11.98 * scale, rel=1e-4)
        assert float(e.find("maxValue").text) == pytest.approx(587.02 * scale, rel=1e-4)
        assert e.find("algorithm").text == "StretchToMinimumMaximum"


def test_s2_bands_are_found_by_name_in_any_order(tmp_path):
    path = tmp_path / "s2.tif"
    dn = np.arange(4 * 4 * 5, dtype=np.uint16).reshape(4, 4, 5) + 1
    with rasterio.open(path, "w", driver="GTiff", width=5, height=4, count=4, dtype="uint16", crs=CRS51,
                       transform=T, nodata=0) as dst:
        dst.write(dn)
        for i, name in enumerate(("B8", "B4", "B3", "B2"), start=1):
            dst.set_band_description(i, name)
    r = renderer(write_raster_style(path))
    assert (r.get("redBand"), r.get("greenBand"), r.get("blueBand")) == ("2", "3", "4")
    with rasterio.open(path) as src:
        assert src.colorinterp == (ColorInterp.undefined, ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert src.descriptions == ("B8", "B4", "B3", "B2") and (src.read() == dn).all()


def layer_styles(gpkg: Path) -> list[tuple]:
    with sqlite3.connect(gpkg) as con:
        return con.execute("SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
                           "useAsDefault, styleQML FROM layer_styles").fetchall()


def test_geopackage_holds_its_default_style(outputs):
    gpkg = outputs["gpkg"]
    rows = layer_styles(gpkg)
    assert [row[:6] for row in rows] == [("", "", "landslides", "geom", "landslides", 1)]
    r = ET.fromstring(rows[0][6]).find("renderer-v2")
    props = symbol_props(r)
    assert r.get("type") == "singleSymbol"
    assert props["outline_color"] == "227,26,28,255" and props["color"] == "227,26,28,40"  # red outline, light fill
    assert gpkg.with_suffix(".qml").read_text() == rows[0][6]  # the same style as a sidecar
    # a valid GeoPackage: layer_styles is a registered attribute table; the polygons stay the first layer
    assert [tuple(x) for x in pyogrio.list_layers(gpkg)] == [("landslides", "Polygon"), ("layer_styles", None)]
    assert pyogrio.read_info(gpkg, layer="landslides")["features"] == 1  # columns 15..29 (p > 0.5): one slide
    write_gpkg_style(gpkg, "landslides")  # styling again replaces, never duplicates, the default
    assert [row[:6] for row in layer_styles(gpkg)] == [rows[0][:6]]


def test_streamed_polygons_get_the_same_style(outputs, tmp_path):
    gpkg = tmp_path / "streamed_landslides.gpkg"
    write_polygons_streamed(outputs["binary"], gpkg, outputs["probability"], strip_rows=7)
    assert [row[:6] for row in layer_styles(gpkg)] == [("", "", "landslides", "geom", "landslides", 1)]
    assert gpkg.with_suffix(".qml").is_file()


def test_slidemap_map_writes_every_style(capsys, tmp_path):
    ckpt = save_checkpoint(tmp_path / "tiny.ckpt", unet_config(5, 4))
    scene = fs.make_site(tmp_path / "scenes" / "event", labels=None)
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(f"event{s}" for s in (
        "_probability.tif", "_probability.qml", "_binary.tif", "_binary.qml", "_landslides.gpkg",
        "_landslides.qml"))
    assert [row[2:6] for row in layer_styles(out / "event_landslides.gpkg")] == [("landslides", "geom",
                                                                                   "landslides", 1)]


def test_synthetic_sites_open_in_true_colour(synthetic_root):
    for name in ("s2.tif", "s2_pre.tif"):
        path = synthetic_root / "taiwan" / name
        r = renderer(path.with_suffix(".qml"))
        assert (r.get("type"), r.get("redBand"), r.get("greenBand"), r.get("blueBand")) == (
            "multibandcolor", "3", "2", "1")
        lo, hi = (float(r.find(f"redContrastEnhancement/{k}").text) for k in ("minValue", "maxValue"))
        with rasterio.open(path) as src:
            assert src.colorinterp[:3] == (ColorInterp.blue, ColorInterp.green, ColorInterp.red)
            red = src.read(3)
        red = red[red > 0]  # DN, nodata 0
        assert lo == pytest.approx(np.quantile(red, 0.02), rel=0.05) and hi == pytest.approx(
            np.quantile(red, 0.98), rel=0.05)


@pytest.mark.parametrize("name, problem", [("dem.tif", "no QGIS style for this file name"),
                                           ("s2.tif", "band B4, B3, B2 not named in the band descriptions")])
def test_unstylable_rasters_are_one_line_errors(tmp_path, name, problem):
    path = tmp_path / name
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=4, dtype="uint16", crs=CRS51,
                       transform=T) as dst:
        dst.write(np.ones((4, 2, 2), np.uint16))
    with pytest.raises(InputError) as err:
        write_raster_style(path)
    assert err.value.path == str(path) and problem in err.value.problem and "\n" not in str(err.value)
    assert not path.with_suffix(".qml").exists()


def test_styling_a_missing_layer_is_a_one_line_error(outputs):
    with pytest.raises(InputError, match="no geometry layer 'roads' to style"):
        write_gpkg_style(outputs["gpkg"], "roads")
    assert len(layer_styles(outputs["gpkg"])) == 1


def qgis_importable() -> bool:
    if not Path(SYSTEM_PYTHON).is_file():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}).returncode == 0


def render(out: Path, *files: Path) -> dict:
    out.mkdir()
    done = subprocess.run([SYSTEM_PYTHON, str(RENDER), str(out), *map(str, files)], capture_output=True, text=True,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(out)},
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "layers.json").read_text())


def pixels(png: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGBA")).astype(int)


@pytest.mark.skipif(not qgis_importable(), reason=f"PyQGIS not importable by {SYSTEM_PYTHON} "
                                                   "(apt-get install python3-qgis to run the QGIS render test)")
def test_qgis_opens_and_draws_every_output_styled(outputs, tmp_path):
    files = [outputs[k] for k in ("s2", "probability", "uncertainty", "binary", "gpkg")]
    layers = render(tmp_path / "render", *files)
    prob = layers["event_probability.tif"]
    assert prob["renderer"] == "singlebandpseudocolor" and (prob["min"], prob["max"]) == (0, 1)
    assert [item[0] for item in prob["items"]] == [0, 0.5, 1] and prob["items"][-1][1:] == [177, 0, 38, 255]
    assert layers["event_uncertainty.tif"]["items"][-1] == [0.5, 84, 39, 143, 255]
    assert layers["event_binary.tif"]["classes"] == [[0, 255, 255, 255, 0], [1, 227, 26, 28, 255]]
    s2 = layers["s2.tif"]
    assert s2["renderer"] == "multibandcolor" and s2["bands"] == [3, 2, 1]
    assert s2["ranges"][0] == pytest.approx([11.98 * 0.03 / 599, 587.02 * 0.03 / 599], rel=1e-3)
    assert layers["event_landslides.gpkg"]["outline"] == [227, 26, 28, 255]

    # drawn: one image pixel per raster pixel, transparent background
    p = pixels(tmp_path / "render" / "event_probability.png")
    assert p[10, 0, 3] == 0 and p[1, 1, 3] == 0  # probability 0 and nodata: nothing drawn
    assert p[10, -1].tolist() == [177, 0, 38, 255]  # probability 1: opaque dark red
    mid = p[10, 15]  # probability 15/29 = 0.517: between the 0.5 and 1 stops
    assert 165 <= mid[3] <= 180 and mid[0] > 200 and mid[1] < 90
    b = pixels(tmp_path / "render" / "event_binary.png")
    assert b[10, 14, 3] == 0 and b[10, 15].tolist() == [227, 26, 28, 255]  # 14/29 < 0.5 < 15/29
    s = pixels(tmp_path / "render" / "s2.png")
    assert s[0, 0, :3].tolist() == [0, 0, 0] and s[-1, -1, :3].tolist() == [255, 255, 255]  # stretched 2-98%
    g = pixels(tmp_path / "render" / "event_landslides.png")
    assert g[10, 15, 0] > 200 and g[10, 15, 3] == 255 and g[10, 22, 3] < 100  # red outline, light fill inside

    # the GeoPackage alone (no sidecar next to it): QGIS takes the default style from its layer_styles table
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(outputs["gpkg"], alone)
    shutil.copy(outputs["s2"], alone)
    layers = render(tmp_path / "render-alone", alone / "s2.tif", alone / outputs["gpkg"].name)
    assert layers["event_landslides.gpkg"]["renderer"] == "singleSymbol"
    assert layers["event_landslides.gpkg"]["outline"] == [227, 26, 28, 255]
