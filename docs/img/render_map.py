"""Render docs/img/map.png: a site's true-colour image under slidemap's probability map and polygons, drawn by
PyQGIS with the styles slidemap writes (the .qml sidecars and the GeoPackage's layer_styles), as QGIS shows them.

Run with the system Python that has PyQGIS (Debian python3-qgis), after training and mapping (docs/mapping.md):

    /usr/bin/python3 docs/img/render_map.py SITE_DIR MAPS_DIR NAME OUT.png [WIDTH]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PIL import Image  # noqa: E402
from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer,  # noqa: E402
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def main(site: Path, maps: Path, name: str, out: Path, width: int) -> None:
    app = QgsApplication([], False)
    app.initQgis()
    image = QgsRasterLayer(str(site / "s2.tif"), "s2")
    probability = QgsRasterLayer(str(maps / f"{name}_probability.tif"), "probability")
    polygons = QgsVectorLayer(f"{maps / f'{name}_landslides.gpkg'}|layername=landslides", "landslides", "ogr")
    assert all(layer.isValid() for layer in (image, probability, polygons))
    settings = QgsMapSettings()
    settings.setLayers([polygons, probability, image])  # first = top
    settings.setDestinationCrs(image.crs())
    settings.setExtent(image.extent())
    settings.setOutputSize(QSize(width, round(width * image.height() / image.width())))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    tmp = out.with_suffix(".full.png")
    job.renderedImage().save(str(tmp), "PNG")
    # 96 colours keep the committed file small (< 150 KB) with no visible change at this size
    Image.open(tmp).convert("RGB").quantize(96).save(out, optimize=True)
    tmp.unlink()
    sys.stdout.flush()
    os._exit(0)  # exitQgis() with layers still referenced can crash on the way out


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]),
         int(sys.argv[5]) if len(sys.argv) > 5 else 544)
