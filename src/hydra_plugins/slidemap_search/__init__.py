"""slidemap's resumable Optuna sweeper as a Hydra plugin (Hydra builds sweepers only from ``hydra_plugins``).

The work is :class:`slidemap.search.ResumableSearch`; this shell only makes it discoverable, importing it lazily so
Hydra's plugin scan at every start stays cheap. Config: ``conf/hydra/sweeper/search.yaml``.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ResumableOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's options (sampler, direction, storage, study_name, n_trials, n_jobs, params, ...)."""

    def __init__(self, **options: Any) -> None:
        from slidemap.search import ResumableSearch

        self.search = ResumableSearch(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.search.sweep(arguments)
