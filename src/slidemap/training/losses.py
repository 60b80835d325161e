"""Training losses from the ``loss`` config group: a weighted sum of terms, none of which sees an unlabelled pixel.

A term is any loss built from a ``_target_``: the paper's masked BCE (:class:`MaskedBCE`, the default),
segmentation-models-pytorch's losses in ``mode: binary`` (Dice, Focal, Lovasz, Tversky, Jaccard), or a pointwise
torch loss. Pixels that are nodata or unlabelled (``valid`` False, or a per-pixel weight of 0) never contribute:
smp losses get them as ``ignore_index`` (-1), which every term must declare; a torch loss without
``ignore_index`` gets the valid pixels only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

IGNORE = -1
"""The target value of pixels that take no part in the loss (smp's ``ignore_index``)."""


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               pos_weight: float | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits averaged over valid pixels only (nodata never teaches the model).

    Args:
        logits, target, valid: (N, H, W); target in {0, 1}, valid bool.
        pos_weight: optional weight of the landslide class (imbalanced data).
        weight: optional per-pixel weight map (N, H, W), as in the paper's weighted loss.
    """
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
    w = valid.to(logits.dtype)
    if weight is not None:
        w = w * weight
    return (loss * w).sum() / w.sum().clamp_min(1.0)


class MaskedBCE(nn.Module):
    """The paper's loss: :func:`masked_bce`, with the positive-class weight ``module.pos_weight`` and the per-pixel
    weight map where the data gives one."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        return masked_bce(logits, target, valid, self.pos_weight, weight)


class WeightedLoss(nn.Module):
    """``sum(weight_i * term_i)`` over valid, labelled pixels.

    Args:
        terms: ``(weight, loss)`` pairs; a loss other than :class:`MaskedBCE` is called ``loss(logits, target)``
            on (N, 1, H, W) tensors whose ignored pixels hold :data:`IGNORE` (it must declare
            ``ignore_index = -1``), or, without an ``ignore_index`` attribute (a torch loss), on the valid pixels.

    Raises:
        ValueError: a term whose ``ignore_index`` is not -1 (unlabelled pixels would count), or no term.
    """

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("no loss term: give at least one")
        for i, (_, fn) in enumerate(terms):
            if hasattr(fn, "ignore_index") and not isinstance(fn, MaskedBCE) and fn.ignore_index != IGNORE:
                raise ValueError(f"terms[{i}]: {type(fn).__name__} has ignore_index={fn.ignore_index!r}; it must be "
                                 f"{IGNORE}, or unlabelled and nodata pixels would count in the loss")
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList(fn for _, fn in terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of logits (N, H, W) against 0/1 ``target`` on ``valid`` pixels (a ``weight`` of 0 = ignored)."""
        keep = valid if weight is None else valid & (weight > 0)
        if not bool(keep.any()):  # no labelled pixel: nothing to learn (smp's focal loss would average nothing: NaN)
            return logits.sum() * 0.0
        total = logits.new_zeros(())
        for w, fn in zip(self.weights, self.terms):
            if isinstance(fn, MaskedBCE):
                part = fn(logits, target, valid, weight)
            elif hasattr(fn, "ignore_index"):
                if weight is not None and bool(((weight > 0) & (weight != 1) & valid).any()):
                    raise ValueError(f"{type(fn).__name__} takes no per-pixel weight map other than 0/1")
                masked = torch.where(keep, target, torch.full_like(target, float(IGNORE)))
                part = fn(logits.unsqueeze(1), masked.unsqueeze(1))
            else:
                part = fn(logits[keep], target[keep])
            total = total + w * part
        return total


def build_loss(config: Mapping[str, Any] | None, pos_weight: float | None = None) -> WeightedLoss:
    """The loss of a ``loss`` config (``terms``: a list of ``{weight, fn: {_target_, ...}}``); None = the paper's
    BCE with ``pos_weight``.

    Raises:
        ValueError: naming the term that cannot be built or would see ignored pixels.
    """
    if not config:
        return WeightedLoss([(1.0, MaskedBCE(pos_weight))])
    terms = []
    for i, term in enumerate(config.get("terms") or []):
        try:
            weight = float(term.get("weight", 1.0))
            fn = instantiate(term["fn"])
        except Exception as err:  # noqa: BLE001 -- any failure is the configured term's, named in one line
            raise ValueError(f"terms[{i}]: cannot build it: {type(err).__name__}: "
                             f"{' '.join(str(err).split())[:200]}") from err
        if not isinstance(fn, nn.Module):
            raise ValueError(f"terms[{i}]: {type(fn).__name__} is not a loss module (torch.nn.Module)")
        check_term(i, weight, fn, term["fn"])
        terms.append((weight, fn))
    if terms and not sum(w for w, _ in terms) > 0:
        raise ValueError("every term's weight is 0: nothing would be learned")
    return WeightedLoss(terms)


def check_term(i: int, weight: float, fn: nn.Module, settings: Mapping[str, Any]) -> None:
    """Refuse settings with which a term would optimise something else than landslide segmentation: a negative or
    non-finite weight, an smp loss not in binary mode or fed probabilities where logits come, negative exponents or
    class weights, a focal ``alpha`` outside [0, 1]."""
    name = type(fn).__name__
    if not (weight >= 0 and weight < float("inf")):
        raise ValueError(f"terms[{i}].weight: must be a finite number >= 0, got {weight}")
    if getattr(fn, "mode", "binary") != "binary":
        raise ValueError(f"terms[{i}].fn.mode: {name} must run in mode binary (one landslide logit per pixel), "
                         f"got {fn.mode!r}")
    if getattr(fn, "from_logits", True) is False:
        raise ValueError(f"terms[{i}].fn.from_logits: must be true: the network gives logits, not probabilities")
    for key in ("alpha", "beta", "gamma"):
        value = settings.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < float("inf")):
            raise ValueError(f"terms[{i}].fn.{key}: must be a finite number >= 0, got {value!r}")
        if key == "alpha" and name == "FocalLoss" and value > 1:
            raise ValueError(f"terms[{i}].fn.alpha: the landslide class's weight in the focal loss lies in [0, 1], "
                             f"got {value}")
