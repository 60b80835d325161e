"""QGIS styles for the maps and site images slidemap writes, so they open in QGIS drawn the way a responder reads them.

Every styled GeoTIFF gets a ``<name>.qml`` sidecar (QGIS loads ``<name>.qml`` next to ``<name>.tif`` by itself);
a GeoPackage gets the same sidecar and its default style in the ``layer_styles`` table (QGIS's convention for
styles stored in the data source). Kinds:

- ``probability``: transparent at 0 to dark red at 1 (:data:`PROBABILITY_RAMP`);
- ``binary``: landslides red, everything else transparent;
- ``uncertainty``: the per-pixel standard deviation of an ensemble, transparent at 0 to purple at 0.5;
- ``s2``: true colour (red = B4, green = B3, blue = B2, found by band description), a 2-98% cumulative stretch
  computed from the data; the bands also get GDAL's colour interpretation (blue, green, red, undefined);
- ``polygons``: red outline, light red fill.

This module sits in the base layer: the site writers (``data``, ``ingest``) and the map writers (``mapping``) all
style what they write, and a lower layer cannot import a higher one.
"""

from __future__ import annotations

import math
import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling

from slidemap.errors import InputError
from slidemap.io import atomic_path

Stop = tuple[float, tuple[int, int, int, int]]
"""A colour ramp stop: value and (red, green, blue, alpha), 0-255."""

PROBABILITY_RAMP: tuple[Stop, ...] = ((0.0, (255, 237, 160, 0)), (0.5, (252, 78, 42, 170)),
                                      (1.0, (177, 0, 38, 255)))
"""Probability 0 is invisible, 0.5 (the usual threshold) a clear orange-red, 1 opaque dark red."""

UNCERTAINTY_RAMP: tuple[Stop, ...] = ((0.0, (252, 251, 253, 0)), (0.25, (158, 154, 200, 170)),
                                      (0.5, (84, 39, 143, 255)))
"""Standard deviation 0 is invisible, 0.5 (the largest a probability can have) opaque purple."""

LANDSLIDE_RGB = (227, 26, 28)
"""The red of a landslide pixel and of a landslide polygon's outline."""

TRUE_COLOUR = ("B4", "B3", "B2")
"""The bands drawn as red, green and blue."""

CUMULATIVE_CUT = (0.02, 0.98)
"""The true-colour stretch: each band from its 2% to its 98% quantile (QGIS's own default cut)."""

STRETCH_SAMPLE_PX = 1024
"""The stretch is computed on a decimated read at most this many pixels across (an overview when there is one)."""

RASTER_KINDS = ("probability", "binary", "uncertainty", "s2")
QGIS_VERSION = "3.22.16-Białowieża"
"""The QGIS release these styles are written for and tested with (Debian bookworm's python3-qgis)."""
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"

LAYER_STYLES_SQL = """CREATE TABLE IF NOT EXISTS "layer_styles" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "f_table_catalog" TEXT(256), "f_table_schema" TEXT(256),
    "f_table_name" TEXT(256), "f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT,
    "styleSLD" TEXT, "useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30),
    "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"""
"""The table as QGIS creates it (through OGR) when a user saves a style into a GeoPackage."""


def style_kind(path: str | os.PathLike[str]) -> str:
    """The style a file gets by its name: ``*_probability``, ``*_binary``, ``*_uncertainty``, ``s2``/``s2_pre``."""
    stem = Path(path).stem
    for kind in ("probability", "binary", "uncertainty"):
        if stem.endswith(f"_{kind}"):
            return kind
    if stem in ("s2", "s2_pre"):
        return "s2"
    raise InputError(path, f"no QGIS style for this file name; name the kind ({', '.join(RASTER_KINDS)})")


def _rgba(colour: Sequence[int]) -> str:
    return ",".join(str(int(c)) for c in colour)


def _hex(colour: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour[:3])


def _document() -> ET.Element:
    """The QML root element QGIS writes for a style with every category."""
    return ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "AllStyleCategories",
                               "hasScaleBasedVisibilityFlag": "0", "minScale": "1e+08", "maxScale": "0"})


def _text(root: ET.Element) -> str:
    ET.indent(root)
    return DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _options(parent: ET.Element, props: dict[str, str]) -> None:
    """Symbol layer properties in both forms QGIS reads: the ``Option`` map (3.x) and ``prop`` pairs (older)."""
    option = ET.SubElement(parent, "Option", type="Map")
    for key, value in props.items():
        ET.SubElement(option, "Option", type="QString", name=key, value=value)
    for key, value in props.items():
        ET.SubElement(parent, "prop", k=key, v=value)


def _min_max_origin(parent: ET.Element, limits: str) -> None:
    origin = ET.SubElement(parent, "minMaxOrigin")
    for tag, value in (("limits", limits), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                       ("cumulativeCutLower", str(CUMULATIVE_CUT[0])), ("cumulativeCutUpper", str(CUMULATIVE_CUT[1])),
                       ("stdDevFactor", "2")):
        ET.SubElement(origin, tag).text = value


def _raster_pipe(renderer_attrs: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    """A raster style's root and its (empty) renderer: nearest-neighbour resampling, no transparency list."""
    root = _document()
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", enabled="false", maxOversampling="2",
                  zoomedInResamplingMethod="nearestNeighbour", zoomedOutResamplingMethod="nearestNeighbour")
    renderer = ET.SubElement(pipe, "rasterrenderer", {"opacity": "1", "alphaBand": "-1", "nodataColor": "",
                                                      **renderer_attrs})
    ET.SubElement(renderer, "rasterTransparency")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0", colorizeRed="255",
                  colorizeGreen="128", colorizeBlue="128", colorizeStrength="100", invertColors="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    return root, renderer


def pseudocolor_qml(stops: Sequence[Stop], label: str, band: int = 1) -> str:
    """Single-band pseudocolour: colours interpolated between ``stops``; values past the last stop take its colour."""
    lo, hi = float(stops[0][0]), float(stops[-1][0])
    root, renderer = _raster_pipe({"type": "singlebandpseudocolor", "band": str(band),
                                   "classificationMin": f"{lo:g}", "classificationMax": f"{hi:g}"})
    _min_max_origin(renderer, "None")
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader", colorRampType="INTERPOLATED",
                           classificationMode="1", clip="0", minimumValue=f"{lo:g}", maximumValue=f"{hi:g}",
                           labelPrecision="2")
    ramp = ET.SubElement(shader, "colorramp", type="gradient", name="[source]")
    inner = ";".join(f"{(v - lo) / (hi - lo):g};{_rgba(c)}" for v, c in stops[1:-1])
    _options(ramp, {"color1": _rgba(stops[0][1]), "color2": _rgba(stops[-1][1]), "discrete": "0",
                    "rampType": "gradient", **({"stops": inner} if inner else {})})
    for value, colour in stops:
        ET.SubElement(shader, "item", value=f"{value:g}", color=_hex(colour), alpha=str(colour[3]),
                      label=f"{label} {value:g}")
    return _text(root)


def paletted_qml(entries: Sequence[tuple[int, tuple[int, int, int, int], str]], band: int = 1) -> str:
    """Paletted (unique values): one colour per class value, e.g. 1 = landslide red, 0 = transparent."""
    root, renderer = _raster_pipe({"type": "paletted", "band": str(band)})
    _min_max_origin(renderer, "None")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, colour, label in entries:
        ET.SubElement(palette, "paletteEntry", value=str(value), color=_hex(colour), alpha=str(colour[3]),
                      label=label)
    return _text(root)


def true_colour_qml(rgb_bands: Sequence[int], ranges: Sequence[tuple[float, float]]) -> str:
    """Multiband colour: ``rgb_bands`` (1-based) into red, green, blue, each stretched over its (min, max)."""
    red, green, blue = (str(b) for b in rgb_bands)
    root, renderer = _raster_pipe({"type": "multibandcolor", "redBand": red, "greenBand": green,
                                   "blueBand": blue})
    _min_max_origin(renderer, "CumulativeCut")
    for colour, (lo, hi) in zip(("red", "green", "blue"), ranges):
        enhancement = ET.SubElement(renderer, f"{colour}ContrastEnhancement")
        ET.SubElement(enhancement, "minValue").text = f"{lo:.6g}"
        ET.SubElement(enhancement, "maxValue").text = f"{hi:.6g}"
        ET.SubElement(enhancement, "algorithm").text = "StretchToMinimumMaximum"
    return _text(root)


def polygon_qml(outline: Sequence[int] = LANDSLIDE_RGB, fill_alpha: int = 40, width_mm: float = 0.6) -> str:
    """Single-symbol fill: a red outline over a light red fill, so the image below stays readable."""
    root = _document()
    renderer = ET.SubElement(root, "renderer-v2", type="singleSymbol", symbollevels="0", enableorderby="0",
                             forceraster="0", referencescale="-1")
    symbol = ET.SubElement(ET.SubElement(renderer, "symbols"), "symbol", type="fill", name="0", alpha="1",
                           clip_to_extent="1", force_rhr="0")
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    _options(layer, {"color": _rgba((*outline[:3], fill_alpha)), "style": "solid", "joinstyle": "bevel",
                     "outline_color": _rgba((*outline[:3], 255)), "outline_style": "solid",
                     "outline_width": f"{width_mm:g}", "outline_width_unit": "MM", "offset": "0,0",
                     "offset_unit": "MM", "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
                     "offset_map_unit_scale": "3x:0,0,0,0,0,0"})
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerOpacity").text = "1"
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygon
    return _text(root)


def colour_interpretation(band_names: Sequence[str | None]) -> list[ColorInterp]:
    """GDAL colour interpretation of bands named B2, B3, B4 (blue, green, red); any other band is undefined."""
    by_name = {"B2": ColorInterp.blue, "B3": ColorInterp.green, "B4": ColorInterp.red}
    return [by_name.get(str(n), ColorInterp.undefined) for n in band_names]


def cumulative_range(src: rasterio.io.DatasetReader, band: int) -> tuple[float, float]:
    """The band's 2% and 98% quantiles over its valid pixels, from a read at most ``STRETCH_SAMPLE_PX`` across.

    A band without a valid pixel gets the fixed reflectance range 0-0.3 (0-3000 for integers on the 1e4 scale).
    """
    step = max(1, math.ceil(max(src.width, src.height) / STRETCH_SAMPLE_PX))
    shape = (math.ceil(src.height / step), math.ceil(src.width / step))
    data = src.read(band, out_shape=shape, masked=True, resampling=Resampling.nearest)
    values = np.asarray(data.compressed(), np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 0.3) if np.dtype(src.dtypes[band - 1]).kind == "f" else (0.0, 3000.0)
    lo, hi = (float(q) for q in np.quantile(values, CUMULATIVE_CUT))
    return lo, hi if hi > lo else lo + max(abs(lo) * 1e-3, 1e-6)


def s2_style(path: Path) -> str:
    """The true-colour style of a Sentinel-2 image, setting its bands' colour interpretation if they lack it."""
    with rasterio.open(path) as src:
        names = [str(d).strip() if d else None for d in src.descriptions]
        missing = [b for b in TRUE_COLOUR if b not in names]
        if missing:
            raise InputError(path, f"band {', '.join(missing)} not named in the band descriptions "
                                   f"[{', '.join(n or '?' for n in names)}]; cannot draw true colour")
        bands = [names.index(b) + 1 for b in TRUE_COLOUR]
        ranges = [cumulative_range(src, b) for b in bands]
        wanted = colour_interpretation(names)
        needs_interpretation = tuple(src.colorinterp) != tuple(wanted)
    if needs_interpretation:
        with rasterio.open(path, "r+") as dst:
            dst.colorinterp = wanted
    return true_colour_qml(bands, ranges)


def raster_qml(path: Path, kind: str) -> str:
    """The QML text of a raster of ``kind`` (see the module docstring)."""
    if kind == "probability":
        return pseudocolor_qml(PROBABILITY_RAMP, "probability")
    if kind == "uncertainty":
        return pseudocolor_qml(UNCERTAINTY_RAMP, "sd")
    if kind == "binary":
        return paletted_qml([(0, (255, 255, 255, 0), "no landslide"), (1, (*LANDSLIDE_RGB, 255), "landslide")])
    if kind == "s2":
        return s2_style(path)
    raise InputError(path, f"unknown raster style {kind!r}; choose one of {', '.join(RASTER_KINDS)}")


def write_qml(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as the ``.qml`` sidecar of ``path`` (same folder and base name), atomically."""
    qml = Path(path).with_suffix(".qml")
    with atomic_path(qml) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return qml


def write_raster_style(path: str | os.PathLike[str], kind: str | None = None) -> Path:
    """Give a written GeoTIFF its QGIS style sidecar; ``kind`` defaults to the one its name says (:func:`style_kind`).

    Returns the ``.qml`` path.
    """
    path = Path(path)
    return write_qml(path, raster_qml(path, kind or style_kind(path)))


def write_gpkg_style(gpkg: str | os.PathLike[str], layer: str, kind: str = "polygons") -> Path:
    """Store the layer's default QGIS style in the GeoPackage's ``layer_styles`` table, and as a ``.qml`` sidecar.

    One transaction: the GeoPackage holds the style completely or not at all. A style of the same name for the
    layer is replaced, and it becomes the only default. Returns the sidecar's path.
    """
    gpkg = Path(gpkg)
    if kind != "polygons":
        raise InputError(gpkg, f"unknown vector style {kind!r}; choose polygons")
    text = polygon_qml()
    con = sqlite3.connect(gpkg)
    try:
        with con:
            row = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
            if row is None:
                raise InputError(gpkg, f"no geometry layer {layer!r} to style")
            con.execute(LAYER_STYLES_SQL)
            con.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, "
                        "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', '', "
                        "strftime('%Y-%m-%dT%H:%M:%fZ','now'))")
            con.execute("DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?", (layer, layer))
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (layer,))
            con.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                        "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui) "
                        "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL)",
                        (layer, row[0], layer, text, f"slidemap {kind} style"))
    except sqlite3.Error as err:
        raise InputError(gpkg, f"cannot store the QGIS style: {err}") from err
    finally:
        con.close()
    return write_qml(gpkg, text)
