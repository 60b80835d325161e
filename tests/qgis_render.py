"""Open slidemap's outputs in PyQGIS as a user's QGIS would, report the styles it applied and render them.

Run by tests/test_styles.py with the system Python (Debian's python3-qgis is not in the project's venv):

    /usr/bin/python3 tests/qgis_render.py OUT_FOLDER FILE...

For each file (GeoTIFF or GeoPackage), the layer is opened with QGIS's default options (which load the default
style: the ``.qml`` sidecar, or the GeoPackage's ``layer_styles`` row), rendered alone at one image pixel per
raster pixel over a transparent background to ``OUT_FOLDER/<stem>.png``, and described in
``OUT_FOLDER/layers.json``. All layers together (first file at the bottom) go to ``OUT_FOLDER/all.png``.
Exit 3 when QGIS cannot be imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
try:
    from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer,
                           QgsVectorLayer)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor
except ImportError as err:
    print(f"no PyQGIS: {err}", file=sys.stderr)
    sys.exit(3)


def describe(layer) -> dict:
    """What QGIS made of the layer's style: renderer type and its colours/bands."""
    renderer = layer.renderer()
    out = {"valid": layer.isValid(), "renderer": renderer.type() if renderer else None}
    if isinstance(layer, QgsVectorLayer):
        symbol_layer = renderer.symbol().symbolLayer(0)
        out.update(fill=symbol_layer.color().getRgb(), outline=symbol_layer.strokeColor().getRgb(),
                   outline_width=symbol_layer.strokeWidth(), features=layer.featureCount())
        return out
    kind = renderer.type()
    if kind == "singlebandpseudocolor":
        shader = renderer.shader().rasterShaderFunction()
        out.update(band=renderer.band(), min=shader.minimumValue(), max=shader.maximumValue(),
                   items=[[i.value, *i.color.getRgb()] for i in shader.colorRampItemList()])
    elif kind == "paletted":
        out.update(band=renderer.band(), classes=[[c.value, *c.color.getRgb()] for c in renderer.classes()])
    elif kind == "multibandcolor":
        out.update(bands=[renderer.redBand(), renderer.greenBand(), renderer.blueBand()],
                   ranges=[[e.minimumValue(), e.maximumValue()] for e in (renderer.redContrastEnhancement(),
                                                                        renderer.greenContrastEnhancement(),
                                                                        renderer.blueContrastEnhancement())])
    return out


def render(layers: list, extent, size: QSize, path: Path) -> None:
    settings = QgsMapSettings()
    settings.setLayers(layers)  # first = top
    settings.setDestinationCrs(layers[-1].crs())
    settings.setExtent(extent)
    settings.setOutputSize(size)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(str(path), "PNG")


def main(out: Path, files: list[str]) -> None:
    app = QgsApplication([], False)
    app.initQgis()
    layers, report = [], {}
    for name in files:
        path = Path(name)
        layer = (QgsVectorLayer(f"{path}|layername=landslides", path.stem, "ogr") if path.suffix == ".gpkg"
                 else QgsRasterLayer(str(path), path.stem))
        report[path.name] = describe(layer)
        layers.append(layer)
    base = next(layer for layer in layers if isinstance(layer, QgsRasterLayer))
    size = QSize(base.width(), base.height())
    for path, layer in zip(files, layers):
        render([layer], base.extent(), size, out / f"{Path(path).stem}.png")
    render(layers[::-1], base.extent(), QSize(base.width() * 4, base.height() * 4), out / "all.png")
    (out / "layers.json").write_text(json.dumps(report, indent=1))
    sys.stdout.flush()
    os._exit(0)  # exitQgis() with layers still referenced from Python can crash on the way out


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
