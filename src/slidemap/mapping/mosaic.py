"""Predict a whole area by tiles: overlapping windows blended smoothly (no seams) or the paper's plain grid.

A network trained on w x w patches is run on w x w tiles of the area and the tiles are put back together:

* ``blend`` (default): tiles overlap (50% by default) and each tile's probabilities are weighted by a 2-D
  taper that falls to exactly zero at the tile's inner borders, where a network sees padding instead of the
  neighbouring pixels; weights are summed and divided out. Sides that lie on the area's own border are not
  tapered (no tile sees further there), so every pixel keeps a positive weight. For a translation-equivariant
  network whose receptive field fits in the zero-weight border, the mosaic equals the full-image prediction.
* ``grid``: the non-overlapping grid anchored at the area's corner, edge tiles zero-padded past the area --
  exactly the patches training is tested on (:func:`slidemap.data.tiling.patches.cut_patches`).

Memory stays bounded: rows are read band by band through a reader, and finished rows are yielded as soon as
no later tile can touch them, so a caller can stream them to disk.

Instead of a network, a :class:`Predictor` (an ensemble of checkpoints and test-time views,
:class:`slidemap.mapping.ensemble.Ensemble`) may give each tile a mean probability and a standard deviation. The
mosaic then blends the first and second moments (``mean`` and ``sd**2 + mean**2``) with the same weights and takes
``sd = sqrt(E[p**2] - E[p]**2)`` at the end: the spread of every prediction that reaches a pixel, members, views
and overlapping tiles alike (the law of total variance), with no seam where a tile's weight ramps down.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from slidemap.data.patchsets.stream import standardise_patch
from slidemap.data.sites.site import Site
from slidemap.data.tiling.patches import Normaliser
from slidemap.data.tiling.split import Block
from slidemap.mapping.tiles import BLEND_MARGIN, MAP_TILE, TILE_MULTIPLE  # noqa: F401 -- also read from here

MODES = ("blend", "grid")

RowReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
"""``read(r0, r1)`` -> the normalised input rows ``[r0, r1)`` of the area, float32 (C, r1 - r0, W) with zeros at
invalid pixels (as the training patches), and their valid mask, bool (r1 - r0, W). Rows are asked for in
increasing order, each band of tile rows once, so a reader can stream a scene from disk."""


@runtime_checkable
class Predictor(Protocol):
    """Tiles (N, C, h, w) -> mean probabilities (N, h, w) and their standard deviation (None when ``spread`` is
    False: a single prediction per pixel)."""

    spread: bool

    def __call__(self, tiles: np.ndarray,
                 autocast: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray | None]: ...


def tile_starts(length: int, tile: int, mode: str = "blend", overlap: float = 0.5) -> list[int]:
    """First pixel of each tile along one axis.

    ``grid``: 0, tile, 2 tile, ... (the last may run past the end). ``blend``: steps of
    ``round(tile * (1 - overlap))`` with the last tile aligned to the end, so no tile runs past the area
    unless the area is shorter than one tile.
    """
    if mode == "grid":
        return list(range(0, length, tile))
    if length <= tile:
        return [0]
    stride = stride_px(tile, overlap)
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def default_overlap(tile: int) -> float:
    """The overlap whose ramp spans :data:`BLEND_MARGIN` px, at most half the tile: 0.5 for the training windows
    (32, 64, 128 px: the mosaic as it always was), 0.125 for a 512 px tile (each pixel computed 1.3 times, not 4)."""
    return min(0.5, BLEND_MARGIN / tile)


def fit_tile(tile: int, shape: tuple[int, int]) -> int:
    """``tile``, or less for an area smaller than it: the area's longer side rounded up to :data:`TILE_MULTIPLE`
    (a 512 px tile on a 120 px scene would compute 18 times its pixels, all but 1/18 of them padding)."""
    return min(tile, -(-max(shape) // TILE_MULTIPLE) * TILE_MULTIPLE)


def stride_px(tile: int, overlap: float) -> int:
    """Step between blended tiles (at least one pixel)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, int(round(tile * (1.0 - overlap))))


def taper(tile: int, ramp: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D tile weights: sin^2 ramps of ``ramp`` px from exactly 0 at each inner border up to 1.

    A side on the area's border (``at_start`` / ``at_end``) stays at 1. Ramps shorter than 2 px are dropped
    (tiles that barely overlap are simply averaged).
    """
    w = np.ones(tile, np.float32)
    ramp = min(ramp, tile // 2)
    if ramp < 2:
        return w
    up = np.sin(0.5 * np.pi * np.arange(ramp) / ramp).astype(np.float32) ** 2
    if not at_start:
        w[:ramp] = up
    if not at_end:
        w[tile - ramp:] = up[::-1]
    return w


def _profiles(length: int, starts: list[int], tile: int, mode: str, overlap: float) -> list[np.ndarray]:
    if mode == "grid":
        return [np.ones(tile, np.float32) for _ in starts]
    ramp = tile - stride_px(tile, overlap)
    return [taper(tile, ramp, s == 0, s + tile >= length) for s in starts]


def _device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict_tiles(net: nn.Module, tiles: np.ndarray, autocast: torch.dtype | None = None,
                  temperature: float = 1.0) -> np.ndarray:
    """Probabilities ``sigmoid(logit / temperature)`` (N, h, w) of a network that maps (N, C, h, w) to logits
    (N, 1, h, w); ``temperature`` is the checkpoint's calibration.

    With ``autocast`` (e.g. ``torch.bfloat16``) the forward pass runs in that precision with channels-last
    inputs, the fast path of CPUs with bf16 units; probabilities are float32 either way.
    """
    device = _device(net)
    x = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
    if autocast is None:
        return torch.sigmoid(net(x)[:, 0].float() / temperature).cpu().numpy()
    with torch.autocast(device.type, dtype=autocast):
        logits = net(x.contiguous(memory_format=torch.channels_last))
    return torch.sigmoid(logits[:, 0].float() / temperature).cpu().numpy()


def as_predictor(net: nn.Module | Predictor) -> Predictor:
    """A network as a predictor of one probability per pixel (no spread); a predictor as it is."""
    if isinstance(net, Predictor):
        return net
    net.eval()

    class Single:
        spread = False

        def __call__(self, tiles: np.ndarray, autocast: torch.dtype | None = None) -> tuple[np.ndarray, None]:
            return predict_tiles(net, tiles, autocast), None

    return Single()


def iter_mosaic(net: nn.Module | Predictor, read: RowReader, shape: tuple[int, int], tile: int, mode: str = "blend",
                overlap: float = 0.5, batch_size: int = 16, progress: bool | None = None,
                desc: str = "mosaic", autocast: torch.dtype | None = None) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield ``(row0, probabilities)`` for consecutive finished row ranges covering the whole area, or
    ``(row0, mean probabilities, standard deviations)`` for a :class:`Predictor` with ``spread``.

    Args:
        net: Maps (N, C, tile, tile) to logits (N, 1, tile, tile), put in eval mode here; or a :class:`Predictor`.
        read: Reader of normalised input rows and their valid mask (:data:`RowReader`); invalid pixels come out
            NaN, and tiles without a valid pixel are skipped.
        shape: (H, W) of the area.
        tile: Tile size in pixels (the training window, or larger).
        mode: ``blend`` or ``grid``.
        overlap: Share of a tile shared with its neighbour in ``blend`` mode.
        batch_size: Tiles per forward pass.
        progress: Show a tqdm bar (None: only on a terminal).
        autocast: Run the network in this precision (:func:`predict_tiles`); None = float32.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mosaic mode {mode!r}; choose one of {', '.join(MODES)}")
    predict = as_predictor(net)
    spread = bool(predict.spread)
    standardise: Normaliser | None = getattr(predict, "standardise", None)
    rows, cols = shape
    r_starts = tile_starts(rows, tile, mode, overlap)
    c_starts = tile_starts(cols, tile, mode, overlap)
    r_w = _profiles(rows, r_starts, tile, mode, overlap)
    c_w = _profiles(cols, c_starts, tile, mode, overlap)
    dtype = np.float64 if spread else np.float32  # E[p^2] - E[p]^2 cancels: float64 keeps small sds exact
    acc = np.zeros((tile, cols), dtype)  # rows [base, base + tile): the only rows tiles still touch
    acc2 = np.zeros((tile, cols) if spread else (0, cols), dtype)  # second moments (spread only)
    wsum = np.zeros((tile, cols), np.float32)
    vbuf = np.zeros((tile, cols), bool)  # valid mask of the same rows
    base = 0

    def finished(n: int) -> tuple[np.ndarray, ...]:
        ok = vbuf[:n] & (wsum[:n] > 0)
        mean = np.divide(acc[:n], wsum[:n], out=np.zeros((n, cols), dtype), where=ok)
        if not spread:
            return np.where(ok, mean, np.nan).astype(np.float32, copy=False),
        second = np.divide(acc2[:n], wsum[:n], out=np.zeros((n, cols), dtype), where=ok)
        sd = np.sqrt(np.maximum(second - mean * mean, 0.0))
        return np.where(ok, mean, np.nan).astype(np.float32), np.where(ok, sd, np.nan).astype(np.float32)

    bar = tqdm(total=len(r_starts) * len(c_starts), unit="tile", desc=desc, leave=False, mininterval=1.0,
               disable=None if progress is None else not progress)
    heights = [min(tile, rows - r) for r in r_starts]
    with bar, ThreadPoolExecutor(max_workers=1) as reader:
        # the next band of rows is read (decompressed, resampled) while the network runs on this one; one reader
        # thread keeps the reads in increasing order, as the RowReader contract asks
        pending = reader.submit(read, r_starts[0], r_starts[0] + heights[0]) if r_starts else None
        for i, (r, rw) in enumerate(zip(r_starts, r_w)):
            if r > base:  # rows above this band are final
                d = r - base
                yield base, *finished(d)
                acc[:-d], wsum[:-d], vbuf[:-d] = acc[d:].copy(), wsum[d:].copy(), vbuf[d:].copy()
                acc[-d:], wsum[-d:], vbuf[-d:] = 0.0, 0.0, False
                if spread:
                    acc2[:-d] = acc2[d:].copy()
                    acc2[-d:] = 0.0
                base = r
            h = heights[i]
            band, band_valid = pending.result()
            if i + 1 < len(r_starts):
                pending = reader.submit(read, r_starts[i + 1], r_starts[i + 1] + heights[i + 1])
            vbuf[:h] = band_valid
            todo = [(c, cw) for c, cw in zip(c_starts, c_w) if band_valid[:, c:c + tile].any()]
            bar.update(len(c_starts) - len(todo))
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                x = np.zeros((len(chunk), band.shape[0], tile, tile), np.float32)
                for k, (c, _) in enumerate(chunk):
                    w = min(tile, cols - c)
                    x[k, :, :h, :w] = band[:, :, c:c + w]
                    if standardise is not None:  # per-patch model: each tile standardised as a training patch
                        v = np.zeros((tile, tile), bool)
                        v[:h, :w] = band_valid[:, c:c + w]
                        x[k] = standardise(standardise_patch(x[k], v), v)
                probs, sds = predict(x, autocast)
                for k, (c, cw) in enumerate(chunk):
                    w = min(tile, cols - c)
                    weight = rw[:h, None] * cw[None, :w]
                    p = probs[k, :h, :w]
                    acc[:h, c:c + w] += p * weight
                    wsum[:h, c:c + w] += weight
                    if spread:
                        acc2[:h, c:c + w] += (sds[k, :h, :w].astype(dtype) ** 2 + p.astype(dtype) ** 2) * weight
                bar.update(len(chunk))
        yield base, *finished(rows - base)


def predict_mosaic(net: nn.Module | Predictor, stack: np.ndarray, valid: np.ndarray, tile: int,
                   **kwargs) -> np.ndarray:
    """Probabilities (H, W) of an in-memory normalised stack (C, H, W); NaN at invalid pixels.

    A predictor with ``spread`` gives (2, H, W): the mean probabilities and their standard deviations.
    """
    out: np.ndarray | None = None
    for r0, *parts in iter_mosaic(net, lambda a, b: (stack[:, a:b], valid[a:b]), valid.shape, tile, **kwargs):
        if out is None:
            out = np.full((len(parts), *valid.shape), np.nan, np.float32)
        out[:, r0:r0 + parts[0].shape[0]] = parts
    assert out is not None
    return out[0] if out.shape[0] == 1 else out


def site_reader(site: Site, normaliser: Normaliser, block: Block | None = None) -> tuple[RowReader, np.ndarray]:
    """A row reader of the normalised channels of ``site`` (within ``block``) and the matching valid mask.

    Stored channels are read as views; a derived one (NDVI) is computed once. Only the rows asked for are
    normalised, so no full-scene copy of the input stack is made.
    """
    rows, cols = block.slices if block is not None else (slice(None), slice(None))
    arrays = [site.channel(name)[rows, cols] for name in normaliser.channels]
    valid = site.valid[rows, cols]

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        return normaliser(np.stack([a[r0:r1] for a in arrays]), valid[r0:r1]), valid[r0:r1]

    return read, valid


def tile_count(shape: tuple[int, int], tile: int, mode: str = "blend", overlap: float = 0.5) -> int:
    """Number of tiles a mosaic of ``shape`` runs (for logs)."""
    return math.prod(len(tile_starts(n, tile, mode, overlap)) for n in shape)
