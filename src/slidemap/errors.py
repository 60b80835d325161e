"""The one exception type for bad input, so every entry point can print it as a single line."""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """Bad user input: names the offending file (or setting) and the problem.

    Entry points catch it and print ``str(err)`` as one line, exiting non-zero, instead of a traceback
    from deep inside rasterio or torch.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
