"""Provenance in every map, and the guard that keeps synthetic-trained models on synthetic scenes.

A GeoTIFF passed on by e-mail must say which model(s), threshold and views made it: its metadata tags (``gdalinfo``
lists them) and the GeoPackage's ``provenance`` attributes table hold the same record. A model trained only on the
built-in synthetic sites says nothing true about a real scene; mapping one is refused unless the user asks for it
(``--allow-synthetic-model``), and then every output says so.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from slidemap.errors import InputError
from slidemap.mapping.model_card import data_kind, file_fingerprint

log = logging.getLogger(__name__)

TAG_PREFIX = "SLIDEMAP_"
SYNTHETIC_WARNING = "made with a model trained only on the built-in synthetic sites: not a map of the real ground"


def slidemap_version() -> str:
    try:
        return version("slidemap")
    except PackageNotFoundError:
        return "unknown"


def members_of(model: Any) -> list[Any]:
    """The checkpoints behind a model: itself, an ensemble's members, or a list of them."""
    return list(model) if isinstance(model, list) else list(getattr(model, "models", [model]))


def trained_on(model: Any) -> str | None:
    """The kind of data that trained a checkpoint: its card's, else the kind every checkpoint records from its
    first save (an interrupted run has no card); None for a checkpoint from before either."""
    return data_kind(getattr(model, "card", None)) or getattr(model, "data_kind", None)


def is_synthetic_scene(meta: dict[str, Any]) -> bool:
    """A scene (site folder) written by ``slidemap synth``: its site.yaml records the generator."""
    return "synthetic" in (meta or {})


def check_synthetic_model(model: Any, scene_meta: dict[str, Any], source: object, allow: bool) -> bool:
    """Refuse a model trained only on synthetic sites for a scene that is not one, unless ``allow``; returns
    whether the outputs must carry the synthetic-model warning."""
    unknown = [str(m.path) for m in members_of(model) if trained_on(m) is None]
    if unknown:
        log.warning("%s: what trained %s is not recorded (a checkpoint from before slidemap recorded it): make sure "
                    "it was trained on real data", source, ", ".join(unknown))
    synthetic = [m for m in members_of(model) if trained_on(m) == "synthetic"]
    if not synthetic or is_synthetic_scene(scene_meta):
        return False
    if not allow:
        raise InputError(synthetic[0].path, f"was trained only on the built-in synthetic sites; {source} is not one, "
                                            "and such a map would mean nothing: train on real data (your own sites, "
                                            "Landslide4Sense, a patch dataset) or pass --allow-synthetic-model")
    log.warning("%s: %s", source, SYNTHETIC_WARNING)
    return True


def provenance_tags(model: Any, threshold: float, tile: int, synthetic_model: bool = False) -> dict[str, str]:
    """The record every map carries: slidemap version, each checkpoint's file and fingerprint, the data kind that
    trained it, threshold, temperatures, ensemble size and views, tile and the UTC date; an exported model's members
    name the checkpoints they were exported from, and the model adds its engine, file and quantisation."""
    members = members_of(model)
    tags = {
        "VERSION": slidemap_version(),
        "CHECKPOINTS": ";".join(getattr(m, "checkpoint", None) or str(Path(m.path).resolve()) for m in members),
        "CHECKPOINT_FINGERPRINTS": ";".join(getattr(m, "fingerprint", None) or file_fingerprint(Path(m.path))
                                            for m in members),
        "TRAINING_DATA": ";".join(trained_on(m) or "unknown" for m in members),
        "THRESHOLD": f"{float(threshold):g}",
        "TEMPERATURES": ";".join(f"{m.temperature:g}" for m in members),
        "ENSEMBLE_MEMBERS": str(len(members)),
        "VIEWS": str(getattr(model, "tta", "none")),
        "TILE": str(int(tile)),
        "DATE": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    tags.update(getattr(model, "provenance", {}))  # another engine's facts (the ONNX file, its quantisation)
    if synthetic_model:
        tags["WARNING"] = SYNTHETIC_WARNING
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def write_gpkg_provenance(gpkg: Path, tags: dict[str, str]) -> None:
    """Add a ``provenance`` attributes table (key, value) to a GeoPackage, registered in ``gpkg_contents`` as the
    GeoPackage specification has non-spatial tables (data_type ``attributes``)."""
    with closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("DROP TABLE IF EXISTS provenance")
        db.execute("DELETE FROM gpkg_contents WHERE table_name = 'provenance'")
        db.execute("CREATE TABLE provenance (fid INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value TEXT)")
        db.executemany("INSERT INTO provenance (key, value) VALUES (?, ?)", sorted(tags.items()))
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                   "VALUES ('provenance', 'attributes', 'provenance', 'slidemap: the model(s) and settings that "
                   "made these maps', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")
