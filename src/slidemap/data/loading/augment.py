"""Training-batch augmentation: the 8 flips and 90-degree rotations (D4) and a mild photometric jitter.

Applied to whole batches after they reach the device (:meth:`slidemap.data.loading.datamodule.PatchDataModule.
on_after_batch_transfer`), with plain tensor ops: a batch of 4 small patches is cheaper to transform in place with
``torch.rot90``/``flip`` on index groups than through a per-sample pipeline (Kornia/albumentations would add a
dependency and per-call overhead for the same 8 operations). Image, label and validity get the same geometric
transform; the jitter touches optical bands only, never slope, DEM or NDVI/change channels. Every random draw comes
from a generator seeded by the run's seed and the optimiser step, so a seed gives the same batches, resumed or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slidemap.data.sites.channels import PRE_SUFFIX, canonical, is_band
from slidemap.errors import InputError


def optical_groups(channels: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Positions of the post-event bands (jittered together: one atmosphere) and of the pre-event bands (another
    date, another atmosphere, so their own jitter); terrain and indices are never jittered."""
    names = [canonical(c) for c in channels]
    post = [i for i, c in enumerate(names) if is_band(c)]
    pre = [i for i, c in enumerate(names) if c.endswith(PRE_SUFFIX) and is_band(c.removesuffix(PRE_SUFFIX))]
    return post, pre

D4 = 8
"""Elements of the dihedral group of the square: k quarter turns (0-3), each with or without a flip."""


@dataclass(frozen=True)
class Augmentation:
    """What the ``augment`` config group asks for (conf/augment/*.yaml).

    Args:
        name: The group's choice (none, d4, offsets, full); run names carry it when it is not ``none``.
        flips: Each training patch gets one of the 8 D4 transforms, drawn uniformly.
        offsets: Training patches are drawn at random positions inside the training areas each epoch
            (:mod:`slidemap.data.tiling.offsets`) instead of the paper's fixed grid.
        gain: Photometric jitter: optical reflectance is multiplied by a factor drawn in [1 - gain, 1 + gain]
            per patch (illumination, sun angle); 0 = off.
        haze: ... and a reflectance offset drawn in [0, haze] is added per patch (thin haze); 0 = off.
    """

    name: str = "none"
    flips: bool = False
    offsets: bool = False
    gain: float = 0.0
    haze: float = 0.0

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None) -> "Augmentation":
        """From the ``augment`` mapping (None: the paper's no augmentation); one-line errors for bad values."""
        if raw is None:
            return cls()
        raw = dict(raw)
        raw.pop("suffix", None)
        unknown = set(raw) - {"name", "flips", "offsets", "gain", "haze"}
        if unknown:
            raise InputError("augment", f"unknown key(s) {sorted(unknown)}; known: name, flips, offsets, gain, haze")
        for key in ("flips", "offsets"):
            if key in raw and not isinstance(raw[key], bool):
                raise InputError(f"augment.{key}", f"must be true or false, got {raw[key]!r}")
        for key, top in (("gain", 0.5), ("haze", 0.1)):
            value = raw.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise InputError(f"augment.{key}", f"must be a number in [0, {top}], got {value!r}")
        return cls(**raw)

    @property
    def on_batches(self) -> bool:
        """Whether anything is done to a batch on the device (flips or jitter)."""
        return self.flips or self.gain > 0 or self.haze > 0


def generator_for(seed: int, step: int) -> torch.Generator:
    """The draws of one training batch: a function of the seed and the optimiser step only."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))


def d4_transform(t: torch.Tensor, k: int) -> torch.Tensor:
    """D4 element ``k`` (0-7) of the last two axes: ``k % 4`` quarter turns, then a left-right flip if k >= 4."""
    out = torch.rot90(t, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def random_d4(tensors: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """The same random D4 transform for each sample of every tensor (N, ..., H, W); square patches only."""
    n = tensors[0].shape[0]
    ks = torch.randint(0, D4, (n,), generator=generator)
    out = [t.clone() for t in tensors]
    for k in ks.unique().tolist():
        idx = (ks == k).nonzero().flatten().to(tensors[0].device)
        for src, dst in zip(tensors, out):
            dst[idx] = d4_transform(src[idx], int(k))
    return out


def jitter(x: torch.Tensor, valid: torch.Tensor, bands: list[int], mean: np.ndarray, std: np.ndarray, gain: float,
           haze: float, generator: torch.Generator) -> torch.Tensor:
    """Reflectance r -> r * g + h per sample on ``bands`` of the normalised input ``x`` (N, C, H, W).

    In normalised units z = (r - mean) / std this is z * g + ((g - 1) * mean + h) / std; invalid pixels stay 0.
    """
    if not bands or (gain == 0 and haze == 0):
        return x
    n = x.shape[0]
    g = 1 + (torch.rand(n, generator=generator) * 2 - 1) * gain
    h = torch.rand(n, generator=generator) * haze
    idx = torch.as_tensor(bands)
    m = torch.as_tensor(mean[bands], dtype=torch.float32)
    s = torch.as_tensor(std[bands], dtype=torch.float32)
    scale = g[:, None].expand(n, len(bands))
    shift = ((g[:, None] - 1) * m[None] + h[:, None]) / s[None]
    out = x.clone()
    sub = x[:, idx] * scale[..., None, None].to(x) + shift[..., None, None].to(x)
    out[:, idx] = torch.where(valid[:, None], sub, torch.zeros((), dtype=x.dtype, device=x.device))
    return out


def augment_batch(batch: tuple[torch.Tensor, ...] | list[torch.Tensor], aug: Augmentation, channels: tuple[str, ...],
                  mean: np.ndarray, std: np.ndarray, generator: torch.Generator) -> list[torch.Tensor]:
    """One training batch (x, y, valid[, weight]) augmented: jitter of the optical bands, then one D4 transform
    per sample applied alike to every tensor of the batch."""
    x, *rest = batch
    valid = rest[1]
    if aug.gain > 0 or aug.haze > 0:
        for bands in optical_groups(channels):
            x = jitter(x, valid, bands, mean, std, aug.gain, aug.haze, generator)
    tensors = [x, *rest]
    if aug.flips:
        tensors = random_d4(tensors, generator)
    return tensors
