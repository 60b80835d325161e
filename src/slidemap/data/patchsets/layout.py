"""Where a patch dataset's files are: split folders, image and mask folders, and how an image finds its mask.

Public landslide datasets arrive in many layouts: ``train/val/test``, ``train/validation/test``, ``train/valid/test``
or no split folders at all; ``images/`` + ``masks/``, ``img/`` + ``mask/`` or ``images/`` + ``labels/``; an image and
its mask with the same name (``12.png`` / ``12.png``) or the same number under other names (``image_12`` /
``mask_12``, ``Landslide012`` / ``LandslideLabel012``, ``12.png`` / ``12_mask.png``). :class:`Layout` holds the
dataset.yaml keys that say which (``splits``, ``images``, ``masks``, ``pairing``); :func:`find_layout` guesses
them for ``slidemap dataset``; :func:`pair_split` pairs one split's files, reporting every problem at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidemap.errors import InputError

ROLES: tuple[str, ...] = ("train", "val", "test")
SPLIT_NAMES: dict[str, tuple[str, ...]] = {"train": ("train", "training", "traindata"),
                                           "val": ("val", "valid", "validation", "validdata"),
                                           "test": ("test", "testing", "testdata")}
"""Split folder names seen in public releases (lower case), per role, in order of preference (Landslide4Sense:
TrainData, ValidData, TestData)."""

IMAGE_DIRS: tuple[str, ...] = ("images", "image", "img", "imgs")
MASK_DIRS: tuple[str, ...] = ("masks", "mask", "labels", "label", "gt", "annotations")
PAIRINGS: tuple[str, ...] = ("stem", "number")
HERE = "."
"""A split folder of ``.``: the dataset folder itself holds the image and mask folders (no split folders)."""

PATCH_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".h5", ".hdf5")
SIDECARS: tuple[str, ...] = (".aux.xml", ".ovr", ".msk", ".pgw", ".pngw", ".tfw", ".tifw", ".wld", ".prj", ".jgw",
                             ".jpgw", ".xml", ".txt", ".json")
"""GDAL, world-file and metadata sidecars next to a patch (statistics, overviews, georeference): not patches."""
SYSTEM_FILES: tuple[str, ...] = ("thumbs.db", "desktop.ini", "ehthumbs.db")
"""Files operating systems leave in folders (Windows thumbnails and folder settings; macOS's start with a dot)."""

_NUMBER = re.compile(r"(\d+)")
MAX_LISTED = 3


@dataclass(frozen=True)
class Layout:
    """Which folders hold what and how files pair (dataset.yaml ``splits``, ``images``, ``masks``, ``pairing``).

    Attributes:
        splits: Role -> folder under the dataset root (``.`` = the root itself); a role not listed is drawn from
            train by the seeded split.
        images, masks: The image and mask folder inside each split folder.
        pairing: ``stem`` (same file name without suffix) or ``number`` (the same last number in the name,
            compared as an integer, whatever the prefix or suffix).
        explicit: Whether ``splits`` came from dataset.yaml (then each listed folder must exist); by default a
            split folder that is absent is drawn from train.
    """

    splits: dict[str, str] = field(default_factory=lambda: {r: r for r in ROLES})
    images: str = "images"
    masks: str = "masks"
    pairing: str = "stem"
    explicit: bool = False


def parse_layout(path: Path, meta: dict[str, Any]) -> Layout:
    """The layout keys of a dataset.yaml (``path``), checked; absent keys keep the original layout."""
    splits = meta.get("splits")
    if splits is not None:
        if not isinstance(splits, dict) or not splits or not all(
                k in ROLES and isinstance(v, str) and v for k, v in splits.items()):
            raise InputError(path, f"'splits' maps roles ({', '.join(ROLES)}) to folders, e.g. {{train: train, "
                                   f"val: validation, test: test}} or {{train: .}} without split folders; got "
                                   f"{splits!r}")
        if "train" not in splits:
            raise InputError(path, "'splits' must name the train folder (val and test may be drawn from it)")
    for key in ("images", "masks"):
        if key in meta and (not isinstance(meta[key], str) or not meta[key]):
            raise InputError(path, f"'{key}' is the folder name inside each split, e.g. {key}, got {meta[key]!r}")
    pairing = meta.get("pairing", "stem")
    if pairing not in PAIRINGS:
        raise InputError(path, f"'pairing' must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    return Layout(dict(splits) if splits else {r: r for r in ROLES}, meta.get("images", "images"),
                  meta.get("masks", "masks"), pairing, splits is not None)


def is_patch_name(path: Path) -> bool:
    """Whether a directory entry is a candidate patch (not hidden, not a sidecar)."""
    name = path.name.lower()
    return not name.startswith(".") and not name.endswith(SIDECARS) and name not in SYSTEM_FILES


def list_patches(folder: Path) -> tuple[list[Path], list[InputError]]:
    """The folder's candidate patch files, naturally sorted, and one problem per broken link among them."""
    files, problems = [], []
    for path in sorted(folder.iterdir(), key=natural_key):
        if not is_patch_name(path):
            continue
        if path.is_symlink() and not path.exists():
            problems.append(InputError(path, f"broken link (to {path.readlink()}): restore its target or remove it"))
        elif path.is_file():
            files.append(path)
    return files, problems


def natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key: patch_2 before patch_10, as numbered releases list them."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in _NUMBER.split(path.stem))


def pair_key(path: Path, pairing: str) -> str | int | None:
    """What an image shares with its mask: the stem, or the last number in the name (None: the name has none)."""
    if pairing == "stem":
        return path.stem
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else None


def _first(paths: list[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:MAX_LISTED])
    return shown + (", ..." if len(paths) > MAX_LISTED else "")


def _by_key(files: list[Path], pairing: str, problems: list[InputError]) -> dict[Any, Path]:
    keyed: dict[Any, Path] = {}
    for path in files:
        key = pair_key(path, pairing)
        if key is None:
            problems.append(InputError(path, "has no number in its name to pair by ('pairing: number'); use "
                                             "'pairing: stem'"))
        elif key in keyed:
            fix = "'pairing: stem'" if pairing == "number" else "one file per patch"
            problems.append(InputError(path, f"two files of one patch: {keyed[key].name} and {path.name} "
                                             f"(pairing: {pairing}); use {fix}"))
        else:
            keyed[key] = path
    return keyed


def pair_files(images: list[Path], masks: list[Path], pairing: str,
               spec: object = "dataset.yaml") -> tuple[list[tuple[Path, Path]], list[InputError]]:
    """Pairs of one split under ``pairing``, and every problem: unpaired images and masks are each one problem
    with their count and the first three names (a wrong rule leaves them all unpaired, not one at a time)."""
    problems: list[InputError] = []
    image_keys, mask_keys = _by_key(images, pairing, problems), _by_key(masks, pairing, problems)
    pairs = [(path, mask_keys[key]) for key, path in image_keys.items() if key in mask_keys]
    rule = "same stem" if pairing == "stem" else "same number"
    alone = [p for k, p in image_keys.items() if k not in mask_keys]
    if alone:
        folder = masks[0].parent if masks else "the masks folder"
        problems.append(InputError(alone[0], f"has no mask in {folder} by 'pairing: {pairing}' ({rule}); "
                                             f"{len(alone)} of {len(image_keys)} image(s) have none: {_first(alone)}"))
    orphans = [p for k, p in mask_keys.items() if k not in image_keys]
    if orphans:
        problems.append(InputError(orphans[0], f"has no image by 'pairing: {pairing}' ({rule}); {len(orphans)} "
                                               f"mask(s) have none: {_first(orphans)}"))
    return pairs, problems


def split_folders(root: Path, layout: Layout) -> tuple[dict[str, Path], list[InputError]]:
    """The split folders present (role -> folder) and the problems: train missing, an explicit folder missing."""
    present, problems = {}, []
    for role, name in layout.splits.items():
        folder = root if name == HERE else root / name
        if folder.is_dir():
            present[role] = folder
        elif layout.explicit or role == "train":
            problems.append(InputError(folder, f"missing: dataset.yaml 'splits' names it for {role}" if
                                       layout.explicit else "missing: a patch dataset needs train/{images,masks}/ "
                                       "(val/ and test/ are drawn from it when absent; 'splits' names other "
                                       "folders)"))
    return present, problems


def pair_split(folder: Path, layout: Layout) -> tuple[list[tuple[Path, Path]], list[InputError]]:
    """One split folder's (image, mask) pairs and every problem found while listing and pairing them."""
    images, masks = folder / layout.images, folder / layout.masks
    problems = [InputError(f, f"missing: a split holds {layout.images}/ and {layout.masks}/ (dataset.yaml "
                              f"'images', 'masks')") for f in (images, masks) if not f.is_dir()]
    if problems:
        return [], problems
    image_files, broken = list_patches(images)
    mask_files, broken_masks = list_patches(masks)
    problems += broken + broken_masks
    odd = [p for p in image_files + mask_files if p.suffix.lower() not in PATCH_SUFFIXES]
    problems += [InputError(p, f"unknown format {p.suffix or '(no suffix)'}: patches are "
                               f"{', '.join(PATCH_SUFFIXES)}") for p in odd]
    image_files = [p for p in image_files if p not in odd]
    mask_files = [p for p in mask_files if p not in odd]
    if not image_files and not broken:
        problems.append(InputError(images, f"empty split: no patches ({', '.join(PATCH_SUFFIXES)})"))
        return [], problems
    pairs, pairing_problems = pair_files(image_files, mask_files, layout.pairing)
    return pairs, problems + pairing_problems


def plan_pairs(root: Path, layout: Layout) -> tuple[dict[str, list[tuple[Path, Path]]], list[InputError]]:
    """Every present split's pairs (role -> pairs) and all layout problems of the dataset."""
    folders, problems = split_folders(root, layout)
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for role, folder in folders.items():
        pairs[role], found = pair_split(folder, layout)
        problems += found
    return pairs, problems


def _pick(folder: Path, names: tuple[str, ...]) -> str | None:
    entries = {p.name.lower(): p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else {}
    return next((entries[n] for n in names if n in entries), None)


def find_layout(root: Path) -> tuple[Layout, dict[str, str]]:
    """The layout of a folder as published, and what each key was inferred from (for ``slidemap dataset``).

    Split folders by their common names (else none: ``splits: {train: .}``), image and mask folders by theirs,
    pairing by stem if every image pairs so, else by number if that pairs more.
    """
    notes: dict[str, str] = {}
    splits = {role: name for role in ROLES if (name := _pick(root, SPLIT_NAMES[role]))}
    if "train" not in splits:
        splits = {"train": HERE}
        notes["splits"] = "no split folders: val and test are drawn from all pairs by the seeded 3:1:1 split"
    else:
        drawn = [r for r in ROLES if r not in splits]
        notes["splits"] = "split folders " + ", ".join(f"{splits[r]}/" for r in ROLES if r in splits) + (
            f"; {' and '.join(drawn)} drawn from train" if drawn else "")
    first = root / splits["train"] if splits["train"] != HERE else root
    images, masks = _pick(first, IMAGE_DIRS) or "images", _pick(first, MASK_DIRS) or "masks"
    notes["images"] = f"{images}/ in {splits['train']}/" if (first / images).is_dir() else "not found"
    notes["masks"] = f"{masks}/ in {splits['train']}/" if (first / masks).is_dir() else "not found"
    best: tuple[int, str] = (-1, "stem")
    for pairing in PAIRINGS:
        layout = Layout(splits, images, masks, pairing, True)
        count = sum(len(p) for p in plan_pairs(root, layout)[0].values())
        if count > best[0]:
            best = (count, pairing)
    notes["pairing"] = {"stem": "an image and its mask have the same name",
                        "number": "an image and its mask share the last number in their names"}[best[1]]
    return Layout(splits, images, masks, best[1], True), notes
