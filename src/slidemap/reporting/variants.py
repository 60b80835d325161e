"""A cell's variant: its input set, plus the augmentation and the loss it trained with when not the paper's.

The report's cells are (model, window, scenario, variant). The variant string is ``inputs[:loss][+augment]``
(``post``, ``post+d4``, ``post:dice``, ``post:dice+d4``), so a run trained with another loss or augmentation is
never taken as a seed of the paper's cell, the augmentation comparison (which splits at ``+``) pairs runs of one
loss, and every table tells the variants apart by one column.
"""

from __future__ import annotations

from typing import Any

from slidemap.runs import PAPER_LOSS

DEFAULT_INPUTS = "post"  # what a run from before the `inputs` group used
NO_AUGMENT = "none"  # the paper's training; what a run from before the `augment` group used


def variant(inputs: Any, augment: Any, loss: Any = None) -> str:
    """``inputs``, then ``:loss`` when not ``bce``, then ``+augment`` when not ``none``."""
    inputs, augment, loss = str(inputs or DEFAULT_INPUTS), str(augment or NO_AUGMENT), str(loss or PAPER_LOSS)
    name = inputs if loss == PAPER_LOSS else f"{inputs}:{loss}"
    return name if augment == NO_AUGMENT else f"{name}+{augment}"


def split_variant(name: str) -> tuple[str, str, str]:
    """(inputs, augment, loss) of a variant string (:func:`variant`'s inverse)."""
    head, _, augment = name.partition("+")
    inputs, _, loss = head.partition(":")
    return inputs, augment or NO_AUGMENT, loss or PAPER_LOSS


def variant_overrides(name: str) -> str:
    """The overrides that select a variant (`` inputs=x``, `` loss=y``, `` augment=z`` where not the default)."""
    inputs, augment, loss = split_variant(name)
    return ("" if inputs == DEFAULT_INPUTS else f" inputs={inputs}") + ("" if loss == PAPER_LOSS else f" loss={loss}") \
        + ("" if augment == NO_AUGMENT else f" augment={augment}")
