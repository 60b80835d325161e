"""Data layer, in rooms: ``sites`` (a site folder -> ``Site``), ``tiling`` (split, patches, the normaliser),
``loading`` (DataModule, loaders, augmentation, scene strips), ``patchsets`` (Landslide4Sense, patch folders) and
``synthetic`` (the built-in sites); docs/architecture.md describes each.

The modules lived directly in ``slidemap.data`` before: their old names still import, as the very same modules, so
configs and scripts written before the move keep working (a run's ``.hydra/config.yaml`` names
``slidemap.data.datamodule.SiteDataModule``). Checkpoints name no data module: they are read with
``weights_only=True`` and hold plain dicts and tensors.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "bands": "sites.bands", "channels": "sites.channels", "grid": "sites.grid", "indices": "sites.indices",
    "labels": "sites.labels", "pre_event": "sites.pre_event", "raster": "sites.raster", "reader": "sites.reader",
    "reflectance": "sites.reflectance", "site": "sites.site", "terrain": "sites.terrain", "units": "sites.units",
    "split": "tiling.split", "patches": "tiling.patches", "offsets": "tiling.offsets",
    "datamodule": "loading.datamodule", "loaders": "loading.loaders", "augment": "loading.augment",
    "scene": "loading.scene", "patch_check": "patchsets.check", "patch_files": "patchsets.files",
    "patch_folder": "patchsets.folder", "patch_h5": "patchsets.h5", "patch_headers": "patchsets.headers",
    "patch_infer": "patchsets.infer", "patch_layout": "patchsets.layout", "patch_masks": "patchsets.masks",
    "patch_set": "patchsets.base", "patch_stream": "patchsets.stream", "esri_export": "patchsets.esri_export",
    "l4s_release": "patchsets.l4s_release", "landslide4sense": "patchsets.landslide4sense",
    "mask_infer": "patchsets.mask_infer",
}
"""Old module name (under ``slidemap.data``) -> where it lives now."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``slidemap.data.<old>`` as the module it became (which replaces it in ``sys.modules``)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.rpartition(".")
        return importlib.util.spec_from_loader(fullname, self) if package == __name__ and old in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module, replaced in exec_module

    def exec_module(self, module: ModuleType) -> None:
        new = f"{__name__}.{MOVED[module.__name__.rpartition('.')[2]]}"
        warnings.warn(f"{module.__name__} is now {new}", DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
