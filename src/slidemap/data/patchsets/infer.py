"""``slidemap dataset``: the dataset.yaml a patch folder needs, inferred from the folder as its authors published it.

One pass reads every header and every mask (:func:`~slidemap.data.patchsets.check.scan`) and a sample of images for
value ranges (:data:`SAMPLE`), never every image pixel, so 2,000 patches take seconds. Each key comes with what it
was inferred from; a key that stays a guess is written commented out, so training stops on it until the user
sets it; the problems found are checked the way ``data=patches`` checks them, all at once.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from slidemap.data.patchsets.check import Scan, check_images, check_masks, scan
from slidemap.data.patchsets.esri_export import EMD_FILE, ModelDefinition, read_emd, read_world_file
from slidemap.data.patchsets.files import FORMATS, SPEC_FILE, PatchSpec
from slidemap.data.patchsets.h5 import H5Keys, parse_h5_key, read_h5
from slidemap.data.patchsets.headers import ARRAY_FORMATS
from slidemap.data.patchsets.l4s_release import IMAGE_KEY, PATCH, STORED, is_release, physical_factors
from slidemap.data.patchsets.layout import ROLES, find_layout
from slidemap.data.patchsets.mask_infer import Entry, infer_labels
from slidemap.data.patchsets.masks import OTHER, parse_labels
from slidemap.data.sites.channels import band_common_name
from slidemap.data.sites.raster import reading
from slidemap.data.sites.reflectance import L2A_DN_SCALE, MAX_MEDIAN_REFLECTANCE
from slidemap.data.tiling.split import WINDOWS
from slidemap.errors import InputError

SAMPLE = 24
"""Images read whole for value ranges, evenly spread over the dataset."""
STRETCHED_SHARE = 0.6
"""8-bit patches look stretched one by one when at least this share reach both 0 and 255 in every band."""
NODATA_SHARE = 0.01
"""All-zero pixels (every band 0) above this share of the sampled pixels are taken for no-data fill."""


@dataclass
class Inference:
    """The inferred keys in dataset.yaml order, the warnings, and the problems a run on them would stop at."""

    root: Path
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)

    def unknown(self) -> list[Entry]:
        return [e for e in self.entries if not e.certain]


def _sample(found: Scan, keys: H5Keys) -> list[tuple[np.ndarray, tuple[Any, ...], tuple[str | None, ...]]]:
    """A few images whole: (bands, H, W) (arrays as stored), colour interpretation and band descriptions."""
    images = list(found.headers)
    picks = [images[i] for i in np.unique(np.linspace(0, len(images) - 1, min(SAMPLE, len(images))).astype(int))]
    out = []
    for path in picks:
        fmt = found.headers[path].fmt
        if fmt in ARRAY_FORMATS:
            data = np.load(path, allow_pickle=False) if fmt == "NumPy" else read_h5(path, keys.images)
            out.append((data if data.ndim == 3 else data[None], (), ()))
            continue
        with reading(path), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                out.append((src.read(), tuple(src.colorinterp), tuple(src.descriptions), ))
    return out


def _channels(sample: list, bands: int, emd: ModelDefinition | None) -> Entry:
    data, interp, descriptions = sample[0]
    names = [band_common_name(d) if d else None for d in descriptions]
    if names and all(names) and len(names) == bands:
        return Entry("channels", names, "the GeoTIFF band descriptions")
    if emd is not None and len(emd.band_names) == bands and all(band_common_name(n) for n in emd.band_names):
        return Entry("channels", [band_common_name(n) for n in emd.band_names], f"{EMD_FILE} BandNames")
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if tuple(interp[:3]) == rgb and bands == 3:
        alpha = " (the alpha band is validity, not a channel)" if len(interp) == 4 else ""
        return Entry("channels", ["red", "green", "blue"], f"colour interpretation red, green, blue{alpha}")
    proposal = {3: ["red", "green", "blue"], 4: ["red", "green", "blue", "nir"]}.get(bands)
    said = f"{EMD_FILE} BandNames are empty" if emd is not None else "the files name no bands"
    medians = [float(np.median(data[b][data[b] > 0])) if (data[b] > 0).any() else 0.0 for b in range(min(bands, 4))]
    nir = bands == 4 and medians[3] > 1.5 * max(medians[:3])
    return Entry("channels", proposal, f"GUESS: {bands} band(s) and {said}; list them in file order" +
                 (f" (band medians {', '.join(f'{m:.4g}' for m in medians)}: the 4th far above the others, as near "
                  "infrared over vegetation)" if nir else ""), False)


def _values(sample: list, bands: int, dtype: str, entries: list[Entry], notes: list[str]) -> None:
    """units, scale, nodata and normalise from the sampled values."""
    stack = [d[:bands].reshape(bands, -1) for d, _, _ in sample]
    pixels = np.concatenate(stack, axis=1)
    zero = (pixels == 0).all(axis=0)
    ok = ~zero & np.isfinite(pixels).all(axis=0)
    median = float(np.median(pixels[:, ok])) if ok.any() else 0.0
    high = float(np.percentile(pixels[:, ok], 99)) if ok.any() else 0.0
    kind = np.dtype(dtype).kind
    if dtype == "uint8":
        entries.append(Entry("units", "brightness", "8-bit values: a rendering, brightness 0-255 read as 0-1"))
        stretched = sum(all(d[b].min() == 0 and d[b].max() == 255 for b in range(bands)) for d, _, _ in sample)
        if stretched >= STRETCHED_SHARE * len(sample):
            entries.append(Entry("normalise", "per_patch", f"{stretched} of {len(sample)} sampled patches reach "
                                 "both 0 and 255 in every band: stretched one by one, brightness not comparable "
                                 "between patches; each is standardised on its own"))
            notes.append(f"patches look individually stretched ({stretched} of {len(sample)} sampled reach 0 and "
                         "255 in every band): 'normalise: per_patch' set")
    elif kind == "f" and median > MAX_MEDIAN_REFLECTANCE:
        entries.append(Entry("units", "reflectance", f"{dtype} values, median {median:.4g}, 99th percentile "
                                                     f"{high:.4g}"))
        entries.append(Entry("scale", L2A_DN_SCALE, "digital numbers stored as floats: reflectance x 10000"))
    elif kind in "ui":
        entries.append(Entry("units", "reflectance", f"{dtype} values, median {median:.4g}: digital numbers, "
                                                     "reflectance x 10000 (the default scale 0.0001)"))
    else:
        entries.append(Entry("units", "reflectance", f"{dtype} values, median {median:.4g}: reflectance as stored"))
    share = float(zero.mean()) if zero.size else 0.0
    if share > NODATA_SHARE:
        entries.append(Entry("nodata", 0, f"{100 * share:.3g}% of sampled pixels are 0 in every band: no-data fill "
                                          "(no loss, no score)"))


def _pixel_size(found: Scan, emd: ModelDefinition | None) -> Entry | None:
    if emd is not None and emd.cell_size_metres():
        unit = "degrees at the equator" if emd.cell_unit == "degree" else "metres"
        return Entry("pixel_size", round(float(emd.cell_size_metres()), 3),
                     f"{EMD_FILE} MinCellSize {emd.cell_size:.6g} ({unit})")
    first = next(iter(found.headers), None)
    world = first.with_suffix(".tfw") if first else None
    if world is not None and world.is_file():
        size = abs(read_world_file(world)[0])
        if size > 0.5:  # a projected world file (metres); degrees would be far below
            return Entry("pixel_size", size, f"world file {world.name}")
    return None


def _export_note(root: Path, emd: ModelDefinition, found: Scan) -> str:
    """What the ArcGIS export says of itself, and whether its map.txt lists the pairs found."""
    note = f"ArcGIS Pro export, {EMD_FILE} MetaDataMode {emd.mode or '?'}"
    if emd.tile:
        note += f", tiles {emd.tile[0]} x {emd.tile[1]} px"
    listing = root / "map.txt"
    if listing.is_file():
        listed = {Path(line.split()[0].replace("\\", "/")).name for line in listing.read_text().splitlines()
                  if line.strip()}
        images = {image.name for pairs in found.pairs.values() for image, _ in pairs}
        note += f"; map.txt lists {len(listed)} pairs, {len(listed & images)} found"
    return note


def _release(stored: str) -> list[Entry]:
    """channels, units and scale of the Landslide4Sense release, recognised by its image dataset and shape."""
    return [Entry("channels", list(STORED), f"{stored}: the Landslide4Sense release ('{IMAGE_KEY}' "
                  f"{PATCH} x {PATCH} x {len(STORED)}: B1-B12, slope, DEM)"),
            Entry("units", "reflectance", "Sentinel-2 bands"),
            Entry("scale", list(physical_factors()), "the release divided each channel by the authors' mean "
                  "(iarai/Landslide4Sense-2022 issue 4): stored x factor = reflectance (mean x 1e-4), slope in "
                  "degrees, DEM in metres, as data=landslide4sense reads them")]


def given_h5_keys(root: Path) -> H5Keys:
    """The ``h5_key`` of a dataset.yaml already in ``root``: the user's answer to "several datasets in a file",
    which no file tells."""
    path = root / SPEC_FILE
    try:
        meta = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return H5Keys()
    return parse_h5_key(path, meta.get("h5_key")) if isinstance(meta, dict) else H5Keys()


def infer(root: Path) -> Inference:
    """Every key of dataset.yaml that the folder tells, and the problems a run would meet."""
    if not root.is_dir():
        raise InputError(root, "not a folder")
    result = Inference(root)
    layout, notes = find_layout(root)
    emd_path = root / EMD_FILE
    emd = read_emd(emd_path) if emd_path.is_file() else None
    keys = given_h5_keys(root)
    found = scan(root, layout, FORMATS, keys=keys)
    if not found.headers:
        result.problems = found.problems
        if not any(found.pairs.values()):
            result.problems.append(InputError(root, "no image/mask pair found: name the folders ('splits', "
                                                    "'images', 'masks') and the 'pairing' by hand"))
        return result
    if emd is not None:
        result.entries.append(Entry("# export", None, _export_note(root, emd, found)))
    counts = ", ".join(f"{r} {len(found.pairs[r])}" for r in ROLES if r in found.pairs)
    split_value = {r: layout.splits[r] for r in ROLES if r in layout.splits}
    result.entries += [Entry("splits", split_value, notes["splits"]), Entry("images", layout.images, notes["images"]),
                       Entry("masks", layout.masks, notes["masks"]),
                       Entry("pairing", layout.pairing, f"{notes['pairing']}: {counts} pairs")]
    headers = list(found.headers.values())
    fmts, dtypes = Counter(h.fmt for h in headers), Counter(h.dtype for h in headers)
    first = headers[0]
    hwc = first.fmt in ARRAY_FORMATS and len(first.shape3) == 3 and first.shape3[-1] < min(first.shape3[:2])
    bands = first.shape3[-1] if hwc else first.bands - (1 if first.alpha else 0)
    sample = [(np.moveaxis(d, -1, 0), i, n) if hwc else (d, i, n) for d, i, n in _sample(found, keys)]
    sample = [s for s in sample if s[0].shape[0] >= bands] or sample  # an odd image is a problem listed below
    names = sorted({h.key for h in headers if h.key})
    stored = f"{'/'.join(fmts)} {'/'.join(dtypes)}" + (f" (dataset {', '.join(names)})" if names else "") + \
        f", {bands} band(s)" + (" + alpha" if first.alpha else "")
    if keys != H5Keys():
        given = {k: v for k, v in (("images", keys.images), ("masks", keys.masks)) if v}
        result.entries.append(Entry("h5_key", given, f"as {SPEC_FILE} gives it (files hold several datasets)"))
    if first.fmt == "HDF5" and is_release(first.key, first.shape3):
        result.entries += _release(stored)
    else:
        channels = _channels(sample, bands, emd)
        channels.source = f"{stored}; {channels.source}"
        result.entries.append(channels)
        _values(sample, bands, first.dtype, result.entries, result.warnings)
    if hwc:
        result.entries.append(Entry("npy_layout", "hwc", f"{first.fmt} arrays stored {first.shape3}: channels last"))
    shape = found.shape() or (first.rows, first.cols)
    size = Entry("pixel_size", None, "")
    size = _pixel_size(found, emd) or size
    if size.value is not None:
        result.entries.append(size)
    if not any(shape[0] % w == 0 and shape[1] % w == 0 for w in WINDOWS):
        result.entries.append(Entry("windows", [shape[0]] if shape[0] == shape[1] else None,
                                    f"patches {shape[0]} x {shape[1]} px: none of the windows "
                                    f"{', '.join(map(str, WINDOWS))} tiles them", shape[0] == shape[1]))
    _labels(result, found, emd, shape)
    _check(result, found)
    return result


def _labels(result: Inference, found: Scan, emd: ModelDefinition | None, shape: tuple[int, int]) -> None:
    totals = found.totals()
    presence: Counter[int] = Counter()
    for hist in found.masks.values():
        presence.update(hist.keys())
    entries = infer_labels(totals, presence, len(found.masks), found.colours, emd)
    result.entries += entries
    slide = next((e.value for e in entries if e.key == "labels.landslide"), None)
    if slide:
        codes = [int(v[0]) << 16 | int(v[1]) << 8 | int(v[2]) if isinstance(v, list) else int(v) for v in slide]
        ground = next(e.value for e in entries if e.key == "labels.background") or []
        gcodes = [int(v[0]) << 16 | int(v[1]) << 8 | int(v[2]) if isinstance(v, list) else int(v) for v in ground]
        landslide = sum(totals.get(c, 0) for c in codes)
        labelled = landslide + sum(totals.get(c, 0) for c in gcodes)
        empty = sum(1 for h in found.masks.values() if not any(h.get(c, 0) for c in codes))
        result.entries.append(Entry("# landslide", None, f"{100 * landslide / max(labelled, 1):.3g}% of labelled "
                                    f"pixels; {100 * labelled / max(sum(totals.values()), 1):.3g}% of mask pixels "
                                    f"labelled; {empty} of {len(found.masks)} masks without landslide; patches "
                                    f"{shape[0]} x {shape[1]} px"))


def entries_as_meta(entries: list[Entry]) -> dict[str, Any]:
    """The certain keys as dataset.yaml's mapping (``labels.x`` nested)."""
    meta: dict[str, Any] = {}
    for e in entries:
        if not e.certain or e.value is None or e.key.startswith("#"):
            continue
        if e.key.startswith("labels."):
            meta.setdefault("labels", {})[e.key.split(".", 1)[1]] = e.value
        else:
            meta[e.key] = e.value
    return meta


def check_like_most(found: Scan, hwc: bool) -> None:
    """Every image has the band count and size most images have (the odd one is named, not the others)."""
    def size_of(h: Any) -> tuple[int, int]:
        return (int(h.shape3[0]), int(h.shape3[1])) if hwc and len(h.shape3) == 3 else (h.rows, h.cols)

    def bands_of(h: Any) -> int:
        return int(h.shape3[-1]) if hwc and len(h.shape3) == 3 else h.bands - (1 if h.alpha else 0)

    headers = found.headers
    (bands, n_bands), = Counter(bands_of(h) for h in headers.values()).most_common(1)
    (size, n_size), = Counter(size_of(h) for h in headers.values()).most_common(1)
    for image, header in headers.items():
        if bands_of(header) != bands:
            found.problems.append(InputError(image, f"has {bands_of(header)} band(s); {n_bands} of the "
                                                    f"{len(headers)} images have {bands}"))
        elif size_of(header) != size:
            rows, cols = size_of(header)
            found.problems.append(InputError(image, f"is {rows} x {cols} px; {n_size} of the {len(headers)} images "
                                                    f"are {size[0]} x {size[1]} px"))


def _check(result: Inference, found: Scan) -> None:
    """The checks ``data=patches`` runs, on the inferred keys (masks only once the labels are known)."""
    meta = entries_as_meta(result.entries)
    path = result.root / "dataset.yaml"
    if "channels" in meta:
        spec = PatchSpec(path, tuple(meta["channels"]), hwc=meta.get("npy_layout") == "hwc",
                         h5=parse_h5_key(path, meta.get("h5_key")))
        check_images(found, spec)
    else:  # channels still to be set: sizes and band counts are checked against most images'
        check_like_most(found, meta.get("npy_layout") == "hwc")
    labels = meta.get("labels", {})
    if "landslide" in labels and "background" in labels:
        check_masks(found, parse_labels(path, labels), path)
    result.problems = found.problems
    if labels.get("unlabelled") == OTHER:
        result.warnings.append("mask values other than landslide and background are unlabelled ('unlabelled: "
                               "other'): check the faint colours are edge blends, not a class")
