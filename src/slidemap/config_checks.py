"""The one validation layer for settings: ranges, choices, names and required values, checked before any work.

``train.py`` and ``eval.py`` check their composed config against :data:`TRAIN` / :data:`EVAL` (through
:func:`slidemap.entrypoints.guarded`); the ``slidemap`` command checks its options with the same
:func:`check_value`, so a threshold means the same and is refused alike everywhere, with one line that names the
key and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slidemap.errors import InputError


@dataclass(frozen=True)
class Range:
    """A closed or open interval of a number, e.g. ``(0, 1)`` for a probability threshold."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


RANGES: dict[str, Range] = {
    "threshold": Range(0.0, 1.0, low_open=True, high_open=True),  # 0 or 1 would map everything or nothing
    "overlap": Range(0.0, 1.0, high_open=True),  # share of a tile shared with its neighbour
}
"""Every bounded setting once: the configs' keys and the CLI's options of the same name use these."""


def check_value(kind: str, value: Any, key: str | None = None) -> float:
    """``value`` as a float inside ``RANGES[kind]``; else an InputError naming ``key`` (default ``kind``)."""
    key = key or kind
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(key, f"must be a number in {RANGES[kind]}, got {value!r}") from None
    if math.isnan(number) or number not in RANGES[kind]:
        raise InputError(key, f"must lie in {RANGES[kind]}, got {value!r}")
    return number


def check_count(key: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an integer of at least ``minimum`` (batch sizes, tile sizes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(key: str, value: Any, choices: Iterable[Any], word: str = "unknown") -> Any:
    """``value`` if it is one of ``choices``, else the list of choices (as Hydra lists a group's options)."""
    options = list(choices)
    if not any(value == o and type(value) is type(o) for o in options):  # 64.0 or True is not the window 64
        name = key.rsplit(".", 1)[-1]
        raise InputError(key, f"{word} {name} {value!r}; choose one of {', '.join(map(str, options))}")
    return value


def check_file_name(key: str, name: str) -> str:
    """``name`` as a plain file-name prefix: no folder part, so outputs stay inside the output folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise InputError(key, f"must be a plain name without folders or a leading dot, got {name!r}")
    return name


Rule = Callable[[str, Any], Any]


def _in(kind: str) -> Rule:
    return lambda key, value: check_value(kind, value, key)


def _optional(rule: Rule) -> Rule:
    return lambda key, value: None if value is None else rule(key, value)


TRAIN: dict[str, Rule] = {
    "threshold": _in("threshold"),
    "seed": lambda key, value: check_count(key, value, 0),
    "previews": lambda key, value: check_count(key, value, 0),
    "data.batch_size": check_count,
}
"""train.py's checked settings (the window is checked against the data layer's list by the training run)."""

EVAL: dict[str, Rule] = {
    "threshold": _optional(_in("threshold")),
    "overlap": _in("overlap"),
    "tile": _optional(check_count),
    "batch_size": check_count,
}
"""eval.py's checked settings (the inference mode is checked against the mosaic's list by the evaluation)."""

SCHEMAS = {"train": TRAIN, "eval": EVAL}

MISSING = {
    "data.root": "missing: give the folder of your site folders, e.g. data.root=/path/to/sites",
    "ckpt_path": "no checkpoint given: python eval.py ckpt_path=RUN_DIR/checkpoints/best.ckpt",
    "model.net._target_": "missing: give the network's class, e.g. "
                          "'model.net._target_=segmentation_models_pytorch.FPN'",
}
"""What to say about a required value left out (``???`` in conf/), per key; other keys get a generic line."""


def check_config(cfg: DictConfig, rules: dict[str, Rule]) -> None:
    """Refuse a composed config with a required value left out (``???``), a reference that does not resolve,
    or a value outside its rule; one InputError naming the key."""
    for key in sorted(OmegaConf.missing_keys(cfg)):
        raise InputError(key, MISSING.get(key, f"missing: this config needs a value, e.g. {key}=VALUE"))
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or None
        raise InputError(key, f"cannot be resolved: {str(err).splitlines()[0]}") from None
    for key, rule in rules.items():
        rule(key, OmegaConf.select(cfg, key, default=None))
