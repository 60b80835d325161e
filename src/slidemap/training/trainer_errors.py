"""Lightning checks some trainer settings only once ``fit`` starts (``val_check_interval`` against the number of
training batches, limits, devices): those refusals are about the user's settings and are reported in one line naming
``trainer``, not as a slidemap bug with a traceback."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning_fabric.utilities.exceptions import MisconfigurationException

from slidemap.errors import InputError

SETTING_CHECKS = (("pytorch_lightning", "loops"), ("pytorch_lightning", "trainer"))
"""Where in Lightning a ValueError raised directly is a check of the trainer's settings."""


def raised_by_setting_check(err: BaseException) -> bool:
    """A MisconfigurationException, or a ValueError raised in Lightning's own loop or trainer code."""
    if isinstance(err, MisconfigurationException):
        return True
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, ValueError) or not frames:
        return False
    parts = Path(frames[-1].filename).parts
    return any(parts[i:i + 2] == pair for pair in SETTING_CHECKS for i in range(len(parts) - 1))


@contextmanager
def trainer_setting_errors() -> Iterator[None]:
    """Turn Lightning's refusals of trainer settings inside the block into one InputError naming ``trainer``."""
    try:
        yield
    except (MisconfigurationException, ValueError) as err:
        if not raised_by_setting_check(err):
            raise
        raise InputError("trainer", f"Lightning refuses the settings: {' '.join(str(err).split())[:300]}") from err
