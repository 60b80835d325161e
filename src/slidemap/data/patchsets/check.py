"""The structure of a whole patch dataset checked before any training data is read: every problem at once.

Pairs (:mod:`~slidemap.data.patchsets.layout`), image headers (bands, size; :mod:`~slidemap.data.patchsets.headers`) and
every mask's values (:mod:`~slidemap.data.patchsets.masks`) are checked against dataset.yaml in seconds, so a run does
not read for a minute and then stop at the first bad file, one problem per attempt. ``slidemap dataset`` lists the
problems (the key or the file that fixes each); ``data=patches`` stops at the first with the same line.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import rasterio

from slidemap.data.patchsets.files import FORMATS, PatchSpec, npy_layout_problem
from slidemap.data.patchsets.h5 import H5Keys
from slidemap.data.patchsets.headers import ARRAY_FORMATS, Header, read_header
from slidemap.data.patchsets.layout import Layout, plan_pairs
from slidemap.data.patchsets.masks import Labels, histogram, mask_codes
from slidemap.errors import InputError

MAX_SHOWN = 20
"""Problems listed one by one; the rest are counted."""


@dataclass
class Scan:
    """What one pass over the dataset found: pairs per role, image headers, each mask's code histogram (codes as
    colours when ``colours``), and the problems."""

    pairs: dict[str, list[tuple[Path, Path]]]
    headers: dict[Path, Header] = field(default_factory=dict)
    masks: dict[Path, dict[int, int]] = field(default_factory=dict)
    mask_shapes: dict[Path, tuple[int, int]] = field(default_factory=dict)
    colours: bool = False
    problems: list[InputError] = field(default_factory=list)

    def totals(self) -> Counter[int]:
        """Pixels per code over every mask."""
        total: Counter[int] = Counter()
        for hist in self.masks.values():
            total.update(hist)
        return total

    def shape(self) -> tuple[int, int] | None:
        """(rows, cols) of the first train mask: the dataset's patch size."""
        first = next(iter(self.pairs.get("train") or []), None)
        return self.mask_shapes.get(first[1]) if first else None


def _grey_as_colour(hist: dict[int, int]) -> dict[int, int]:
    return {(v << 16) | (v << 8) | v if v >= 0 else v: n for v, n in hist.items()}


def scan(root: Path, layout: Layout, formats: dict[str, str], colours: bool | None = None,
         keys: H5Keys = H5Keys()) -> Scan:
    """Pair the files, read every image header and every mask (``colours``: read masks as colours; None: decide
    from the masks, colour as soon as one mask's channels differ; ``keys``: the HDF5 datasets to read)."""
    pairs, problems = plan_pairs(root, layout)
    result = Scan(pairs, problems=problems)
    found_colour = bool(colours)
    with rasterio.Env():  # one GDAL environment for thousands of opens, not one each
        _scan_pairs(pairs, formats, colours, keys, result)
    found_colour |= result.colours
    if found_colour and not colours:
        result.masks = {m: _grey_as_colour(h) if max(h) <= 255 else h for m, h in result.masks.items()}
    result.colours = found_colour
    return result


def _scan_pairs(pairs: dict[str, list[tuple[Path, Path]]], formats: dict[str, str], colours: bool | None,
                keys: H5Keys, result: Scan) -> None:
    for role_pairs in pairs.values():
        for image, mask in role_pairs:
            for path in (image, mask):
                if path.suffix.lower() not in formats:
                    result.problems.append(InputError(path, f"unknown format {path.suffix or '(no suffix)'}: "
                                                            f"patches are {', '.join(sorted(formats))}"))
            if image.suffix.lower() not in formats or mask.suffix.lower() not in formats:
                continue
            try:
                result.headers[image] = read_header(image, formats[image.suffix.lower()], keys)
                codes, is_colour = mask_codes(mask, bool(colours), keys.masks)
            except InputError as err:
                result.problems.append(err)
                continue
            result.colours |= is_colour
            result.masks[mask] = histogram(codes)
            result.mask_shapes[mask] = (int(codes.shape[0]), int(codes.shape[1]))


def check_images(found: Scan, spec: PatchSpec) -> None:
    """Every image has the dataset's channel count (an alpha band over it is allowed) and the first train
    image's size; an array (NumPy, HDF5) stored otherwise than ``npy_layout`` says is named with that key."""
    channels = len(spec.channels)
    shape = None
    masks = {image: mask for pairs in found.pairs.values() for image, mask in pairs}
    for image, header in found.headers.items():
        rows, cols, bands = header.rows, header.cols, header.bands
        if header.fmt in ARRAY_FORMATS:
            problem = npy_layout_problem(image, header.shape3, spec)
            if problem is not None:
                found.problems.append(problem)
                continue
            if spec.hwc and len(header.shape3) == 3:
                rows, cols, bands = header.shape3
        bands -= 1 if header.alpha and bands == channels + 1 else 0
        if bands != channels:
            found.problems.append(InputError(image, f"has {bands} channel(s); {spec.path} lists {channels} "
                                                    f"({', '.join(spec.channels)})"))
        elif shape is not None and (rows, cols) != shape:
            found.problems.append(InputError(image, f"is {rows} x {cols} px; the dataset's patches are "
                                                    f"{shape[0]} x {shape[1]} px (the first training image's)"))
        elif found.mask_shapes.get(masks[image], (rows, cols)) != (rows, cols):
            h, w = found.mask_shapes[masks[image]]
            found.problems.append(InputError(masks[image], f"mask is {h} x {w} px, its image {rows} x {cols} px"))
        shape = shape or (rows, cols)


def check_masks(found: Scan, labels: Labels, spec_path: Path) -> None:
    """Every mask code is landslide, background or unlabelled (each unknown code once, with its file count and
    first file); every declared landslide and background code occurs in some mask."""
    if found.colours and not labels.colours:
        first = next((m for m, h in found.masks.items() if any(c > 255 for c in h)), spec_path)
        found.problems.append(InputError(first, f"masks are colour images: give 'labels' in {spec_path} as "
                                                "[r, g, b] colours"))
        return
    known = set(labels.landslide + labels.background + labels.unlabelled) | {-1}
    unknown: dict[int, list[Path]] = defaultdict(list)
    if not labels.other_unlabelled:
        for mask, hist in found.masks.items():
            for code in hist:
                if code not in known:
                    unknown[code].append(mask)
    for code, masks in sorted(unknown.items(), key=lambda kv: -len(kv[1]))[:MAX_SHOWN]:
        found.problems.append(InputError(masks[0], f"mask {'colour' if labels.colours else 'value'} "
                                                   f"{labels.show(code)} (in {len(masks)} mask(s)) is neither "
                                                   f"landslide nor background nor unlabelled: add it to 'labels' in "
                                                   f"{spec_path} (or 'unlabelled: other')"))
    totals = found.totals()
    for key in ("landslide", "background"):
        for code in getattr(labels, key):
            if labels.given and totals.get(code, 0) == 0 and found.masks:
                found.problems.append(InputError(spec_path, f"labels.{key} {labels.show(code)} occurs in no mask "
                                                            f"of the dataset ({len(found.masks)} read)"))


def check_dataset(root: Path, spec: PatchSpec) -> Scan:
    """Scan and check a dataset against its dataset.yaml; the scan holds every problem found."""
    found = scan(root, spec.layout, FORMATS, spec.labels.colours, spec.h5)
    check_images(found, spec)
    check_masks(found, spec.labels, spec.path)
    return found


def summary(problems: list[InputError]) -> list[str]:
    """The problems as lines: the first :data:`MAX_SHOWN`, then how many more."""
    lines = [str(p) for p in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        lines.append(f"... and {len(problems) - MAX_SHOWN} more problem(s)")
    return lines
