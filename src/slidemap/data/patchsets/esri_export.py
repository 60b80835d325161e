"""ArcGIS Pro "Export Training Data For Deep Learning" exports: the model definition (.emd) and world files (.tfw).

A "Classified Tiles" export holds ``images/*.tif`` with ``.tfw`` world files, ``labels/*.tif`` class maps (0 = no
class: unlabelled) and ``esri_model_definition.emd``, a JSON file whose ``Classes`` list each class's ``Value``,
``Name`` and ``Color``, with ``MetaDataMode``, tile size (``ImageHeight``/``ImageWidth``), cell size
(``MinCellSize`` with its spatial reference) and ``InputRastersProps.BandNames``. This module reads what they say
and nothing more; :mod:`slidemap.data.patchsets.infer` decides what it means for dataset.yaml.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from slidemap.errors import InputError

EMD_FILE = "esri_model_definition.emd"
METRES_PER_DEGREE = 2 * math.pi * 6378137.0 / 360.0
"""Metres per degree along the WGS 84 equator (111,319.49 m): the factor ArcGIS uses to state a metric cell size in
degrees (10 m = 8.9831528e-05 degrees)."""

GEOGRAPHIC_WKIDS = {4326, 4269, 4258, 4490, 4283}
"""Geographic (degree) spatial references common in exports: WGS 84, NAD83, ETRS89, CGCS2000, GDA94."""


@dataclass(frozen=True)
class EsriClass:
    value: int
    name: str
    colour: tuple[int, ...]


@dataclass(frozen=True)
class ModelDefinition:
    """What an .emd says: its metadata mode, classes, tile size, cell size (and its unit) and band names."""

    path: Path
    mode: str
    classes: tuple[EsriClass, ...]
    tile: tuple[int, int] | None
    cell_size: float | None
    cell_unit: str
    band_names: tuple[str, ...]

    def cell_size_metres(self) -> float | None:
        """The cell size in metres: as stated in a projected reference, converted at the equator from degrees."""
        if self.cell_size is None:
            return None
        return self.cell_size * METRES_PER_DEGREE if self.cell_unit == "degree" else self.cell_size


def read_emd(path: Path) -> ModelDefinition:
    """Parse an Esri model definition (JSON); one line naming the file if it is not one."""
    try:
        emd = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the Esri model definition: {' '.join(str(err).split())[:200]}") from err
    if not isinstance(emd, dict):
        raise InputError(path, "an Esri model definition is a JSON object")
    classes = []
    for entry in emd.get("Classes") or []:
        value = entry.get("Value", entry.get("ClassValue"))
        if isinstance(value, int):
            colour = tuple(int(c) for c in entry.get("Color") or ())
            classes.append(EsriClass(value, str(entry.get("Name", entry.get("ClassName", value))), colour))
    height, width = emd.get("ImageHeight"), emd.get("ImageWidth")
    tile = (int(height), int(width)) if isinstance(height, int) and isinstance(width, int) else None
    cell = emd.get("MinCellSize") if isinstance(emd.get("MinCellSize"), dict) else {}
    size = cell.get("x") if isinstance(cell.get("x"), int | float) else None
    wkid = (cell.get("spatialReference") or {}).get("latestWkid") or (cell.get("spatialReference") or {}).get("wkid")
    unit = "degree" if wkid in GEOGRAPHIC_WKIDS else "metre"
    props = emd.get("InputRastersProps") if isinstance(emd.get("InputRastersProps"), dict) else {}
    names = tuple(str(n) for n in props.get("BandNames") or ())
    return ModelDefinition(path, str(emd.get("MetaDataMode", "")), tuple(classes), tile,
                           float(size) if size is not None else None, unit, names)


def read_world_file(path: Path) -> tuple[float, float, float, float, float, float]:
    """A world file's six lines (Esri's order: A x-size, D rotation, B rotation, E y-size (negative), C and F the
    centre of the upper-left pixel)."""
    try:
        values = tuple(float(line) for line in path.read_text().split()[:6])
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the world file: {err}") from err
    if len(values) != 6:
        raise InputError(path, "a world file has six lines (A, D, B, E, C, F)")
    return values  # type: ignore[return-value]
