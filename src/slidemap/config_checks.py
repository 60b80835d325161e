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
        if self.high == math.inf:  # a half-line reads as a comparison: "> 0", ">= 0"
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


RANGES: dict[str, Range] = {
    "threshold": Range(0.0, 1.0, low_open=True, high_open=True),  # 0 or 1 would map everything or nothing
    "overlap": Range(0.0, 1.0, high_open=True),  # share of a tile shared with its neighbour
    "positive": Range(0.0, math.inf, low_open=True),  # learning rate, eps, pos_weight: 0 or less means nothing
    "non_negative": Range(0.0, math.inf),  # weight decay, augmentation strengths
    "beta": Range(0.0, 1.0, high_open=True),  # Adam's moment decay rates
}
"""Every bounded setting once: the configs' keys and the CLI's options of the same name use these."""


def check_value(kind: str, value: Any, key: str | None = None) -> float:
    """``value`` as a float inside ``RANGES[kind]``; else an InputError naming ``key`` (default ``kind``)."""
    key = key or kind
    interval = RANGES[kind]
    half_line = interval.high == math.inf  # "must be > 0" reads better than "must lie in > 0"
    try:
        if isinstance(value, bool):  # float(True) is 1.0: a flag is not a number
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(key, f"must be a number {'' if half_line else 'in '}{interval}, got {value!r}") from None
    if math.isnan(number) or math.isinf(number) or number not in interval:
        raise InputError(key, f"must {'be' if half_line else 'lie in'} {interval}, got {value!r}")
    return number


def check_count(key: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an integer of at least ``minimum`` (batch sizes, tile sizes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


MAX_SEED = 2**32 - 1
"""NumPy's and Lightning's seeds are 32-bit unsigned integers."""


def check_seed(key: str, value: Any) -> int:
    """``value`` as a seed: an integer in [0, 2**32 - 1] (NumPy refuses others deep inside)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InputError(key, f"must be an integer in [0, {MAX_SEED}], got {value!r}")
    return value


def check_pair(kind: str, key: str, value: Any) -> Any:
    """A list of two numbers each inside ``RANGES[kind]`` (Adam's betas)."""
    if not hasattr(value, "__len__") or isinstance(value, str) or len(value) != 2:
        raise InputError(key, f"must be a list of two numbers in {RANGES[kind]}, got {value!r}")
    for i, item in enumerate(value):
        check_value(kind, item, f"{key}[{i}]")
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


def _count_from(minimum: int) -> Rule:
    return lambda key, value: check_count(key, value, minimum)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(key, f"must be true or false, got {value!r}")
    return value


MONITORED = ("val/loss", "val/f1", "train/loss")
"""What a run logs per epoch, so what early stopping and the checkpoint callback can watch."""


def _auto_or_flag(key: str, value: Any) -> Any:
    if str(value).lower() == "auto" or isinstance(value, bool):
        return value
    raise InputError(key, f"must be auto, true or false, got {value!r}")


def _names(key: str, value: Any, allow_none: bool = False, what: str = "name") -> Any:
    """A non-empty list of names (channels, training sites); None where ``allow_none`` (e.g. every site)."""
    if value is None and allow_none:
        return value
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) == 0 \
            or not all(isinstance(v, str) and v for v in value):
        hint = " (null for every site)" if allow_none else ""
        raise InputError(key, f"must be a non-empty list of {what}s{hint}, got {value!r}")
    return value


def _devices(key: str, value: Any) -> Any:
    """Lightning's devices: a count >= 1, ``auto``, or a list of device ids."""
    if str(value) == "auto" or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) > 0):
        return value
    return check_count(key, value)


def _auto_or_threshold(key: str, value: Any) -> Any:
    """A probability threshold, or ``auto``: the F1-optimal one on the validation area (train.py)."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise InputError(key, f"must be auto or a number in {RANGES['threshold']}, got {value!r}")
    return check_value("threshold", value, key)


TRAIN: dict[str, Rule] = {
    "threshold": _auto_or_threshold,
    "seed": check_seed,
    "data.split_seed": _optional(check_seed),
    "data.synthetic.seed": _optional(check_seed),
    "data.synthetic.scale": _optional(_in("positive")),
    "previews": _count_from(0),
    "window": check_count,  # an integer here; which windows the data accepts, the training run checks
    "data.batch_size": check_count,
    "data.eval_batch_size": _optional(check_count),
    "data.num_workers": _optional(_count_from(0)),
    "data.min_samples_per_epoch": _optional(_count_from(0)),
    "data.stream": _optional(_auto_or_flag),
    "data.stream_sample": _optional(_count_from(0)),
    "optimizer.lr": _optional(_in("positive")),
    "optimizer.eps": _optional(_in("positive")),
    "optimizer.weight_decay": _optional(_in("non_negative")),
    "optimizer.betas": _optional(lambda key, value: check_pair("beta", key, value)),
    "module.pos_weight": _optional(_in("positive")),
    "model.encoder_lr_scale": _optional(_in("positive")),
    "model.new_channel_scale": _optional(_in("non_negative")),
    "model.freeze_encoder": _optional(_flag),
    "trainer.max_epochs": _optional(check_count),  # 0 epochs would score an untrained network
    "trainer.min_epochs": _optional(_count_from(0)),
    "callbacks.early_stopping.patience": _optional(_count_from(0)),
    "augment.flips": _optional(_flag),
    "augment.offsets": _optional(_flag),
    "augment.gain": _optional(lambda key, value: check_value("beta", value, key)),  # a gain of 1 can zero a band
    "augment.haze": _optional(_in("non_negative")),
    "resume": _optional(_flag),
    "trainer.enable_progress_bar": _optional(_auto_or_flag),
    "channels_last": _optional(_auto_or_flag),
    "trainer.devices": _optional(_devices),
    "trainer.gradient_clip_val": _optional(_in("non_negative")),
    "callbacks.early_stopping.monitor": _optional(lambda key, value: check_choice(key, value, MONITORED)),
    "callbacks.model_checkpoint.monitor": _optional(lambda key, value: check_choice(key, value, MONITORED)),
    "inputs.channels": lambda key, value: _names(key, value, what="channel"),
    "scenario.train_sites": lambda key, value: _names(key, value, allow_none=True, what="site"),
}
"""train.py's checked settings, type and range (which windows the data accepts, the training run checks)."""

EVAL: dict[str, Rule] = {
    "threshold": _optional(_in("threshold")),
    "allow_synthetic_model": _optional(_flag),
    "calibrated": _flag,
    "check_normaliser": _flag,
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


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """The keys left ``???``, found without resolving any interpolation (OmegaConf's own resolves them all, and a
    ``${hydra:...}`` cannot be resolved before a job runs)."""
    found = []
    for key in cfg.keys():
        if OmegaConf.is_missing(cfg, key):
            found.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(cfg, key) and isinstance(cfg[key], DictConfig):
            found += missing_keys(cfg[key], f"{prefix}{key}.")
    return found


def check_config(cfg: DictConfig, rules: dict[str, Rule], skip: Iterable[str] = (), resolve: bool = True) -> None:
    """Refuse a composed config with a required value left out (``???``), a reference that does not resolve,
    or a value outside its rule; one InputError naming the key.

    ``skip``: keys (and config groups) a sweep gives several values; each job checks its own (a sweep's shared
    settings are checked once before any job starts, :mod:`slidemap.sweep_status`). ``resolve=False``: only the
    checked keys are resolved, and one that cannot be yet (``${hydra:...}`` before a job runs) is left to the job.
    """
    skip = tuple(skip)
    for key in sorted(missing_keys(cfg)):
        if any(key == s or key.startswith(f"{s}.") for s in skip):
            continue
        raise InputError(key, MISSING.get(key, f"missing: this config needs a value, e.g. {key}=VALUE"))
    try:
        if resolve:
            OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or None
        raise InputError(key, f"cannot be resolved: {str(err).splitlines()[0]}") from None
    for key, rule in rules.items():
        if any(key == s or key.startswith(f"{s}.") for s in skip):
            continue
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except OmegaConfBaseException:
            if resolve:
                raise
            continue
        rule(key, value)
