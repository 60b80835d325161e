"""Shared behaviour of the Hydra entry points: bad input is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import slidemap.runs  # noqa: F401 -- registers the run_suffix resolver that names sweep jobs
from slidemap.errors import InputError


def guarded(func: Callable[[Any], Any], cfg: Any) -> Any:
    """Call ``func(cfg)``; an InputError exits with status 2 and its one-line message, not a traceback."""
    try:
        return func(cfg)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
