"""Distributed (DDP) runs under Hydra: child processes join the job's own run directory.

Lightning's DDP launcher starts ranks 1..N-1 by re-running the script. Under Hydra it re-uses ``sys.argv`` and
``hydra.run.dir`` -- which re-launches the whole sweep from a ``-m`` command, and re-evaluates ``${now:...}`` into
a second output directory (the known Hydra + DDP pitfall). :func:`install_hydra_child_command` replaces that
command with the job's own overrides and its resolved output directory, so every rank works in one run folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist



def hydra_child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that starts DDP rank ``local_rank`` as a single Hydra run in this job's output directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hc = HydraConfig.get()
    script = Path(sys.argv[0])
    script = script if script.is_absolute() else Path(get_original_cwd()) / script
    command = [sys.executable, str(script)] if __main__.__spec__ is None else [sys.executable, "-m",
                                                                               __main__.__spec__.name]
    command += list(hc.overrides.task)
    command += [f"hydra.run.dir={hc.runtime.output_dir}", "hydra.output_subdir=null",
                f"hydra.job.name={hc.job.name}_rank{local_rank}"]
    return command, get_original_cwd()


def install_hydra_child_command() -> None:
    """Make Lightning's subprocess launcher start DDP ranks with :func:`hydra_child_command`."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = hydra_child_command


_LAUNCH_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def distributed_session() -> Iterator[None]:
    """Run one job's DDP processes, then leave this process as it was, so a sweep can start the next job.

    Lightning leaves the process group open and its launch variables (LOCAL_RANK, MASTER_PORT, ...) in the
    environment; the next job of a sweep would then take itself for a child rank and wait on dead peers.
    """
    saved = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
