"""How every entry point ends: bad input is one line and exit 2, Ctrl-C or SIGTERM one line ("interrupted") and
exit 128 + the signal, and only a bug prints a traceback, with a request to report it.

Both the ``slidemap`` command and the Hydra entry points (train.py, eval.py) run through :func:`run_reported`.
SIGTERM is turned into :class:`Interrupted` (a KeyboardInterrupt), so the ``finally`` blocks that remove
temporary files run for it as for Ctrl-C.
"""

from __future__ import annotations

import errno
import importlib
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

import slidemap.runs  # noqa: F401 -- registers the run_suffix resolver that names sweep jobs
from slidemap.config_checks import SCHEMAS, check_config
from slidemap.errors import InputError
from slidemap.sweep_status import record_failure

REPORT_HINT = ("this is a bug in slidemap, not in your input: please report it with the command you ran and the "
               "traceback above")

BARE_RUN = (".hydra", "run.json", "wandb_run_id.txt", "wandb")
"""What a run folder holds (besides logs) before any training or evaluation result: safe to remove on failure
(the W&B run id and W&B's own folder are made when the loggers start, before the first step)."""

OUTPUT_ERRNOS = (errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EDQUOT)
"""Errors of the machine, not of slidemap, that name no file (printing to a full disk or a closed pipe)."""

_received: list[int] = []  # the signals that interrupted this process


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every ``finally`` cleans up."""


def _interrupt(signum: int, _frame: Any) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
    except ValueError:  # not the main thread (e.g. a launcher's worker thread)
        pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_reported(call: Callable[[], Any], prog: str = "", errors: list[str] | None = None) -> tuple[int, Any]:
    """Run ``call()``; returns ``(exit status, its result)``, having printed any failure as described above,
    each line starting with ``prog: `` (the Hydra entry points print bare ``error: ...`` lines). The failure's
    line (without ``prog``) is appended to ``errors`` when given: a sweep job records it."""
    install_signal_handlers()
    _received.clear()  # an earlier in-process call's signal is not this call's
    prog = f"{prog}: " if prog else ""
    lines = errors if errors is not None else []

    def say(line: str) -> None:
        lines.append(line)
        print(f"{prog}{line}", file=sys.stderr)

    try:
        return 0, call()
    except InputError as err:
        say(f"error: {_one_line(str(err))}")
        return 2, None
    except KeyboardInterrupt:
        say("interrupted")
        return 128 + (_received[0] if _received else signal.SIGINT), None
    except SystemExit:
        if _received:  # Lightning ends a fit interrupted by Ctrl-C with sys.exit(1)
            say("interrupted")
            return 128 + _received[0], None
        raise
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        say(f"error: {key + ': ' if key else ''}{_one_line(str(err).splitlines()[0])}")
        return 2, None
    except OSError as err:
        if err.filename is None and err.errno not in OUTPUT_ERRNOS:
            raise
        say(f"error: {err.filename or 'the output'}: {err.strerror or err}")
        return 1, None
    except Exception as err:
        if isinstance(err, InstantiationException) and isinstance(err.__cause__, InputError):
            say(f"error: {_one_line(str(err.__cause__))}")  # refused by a constructor
            return 2, None
        if isinstance(err, InstantiationException) and not _our_target(err):
            say(f"error: {instantiation_line(err)}")  # a config's class or arguments refused by its library
            return 2, None
        traceback.print_exc()
        lines.append(f"internal error: {type(err).__name__}: {_one_line(str(err))[:200]}")
        print(f"{prog}internal error: {REPORT_HINT}", file=sys.stderr)
        return 1, None


def _target_of(err: InstantiationException) -> str:
    text = str(err)
    return text.split("'")[1] if text.count("'") >= 2 else ""


def _our_target(err: InstantiationException) -> bool:
    """Whether the class Hydra failed to build is slidemap's own (then the failure is a bug: its constructors
    refuse bad input with an InputError)."""
    return _target_of(err).startswith("slidemap.") and "Error locating target" not in str(err)


def instantiation_line(err: InstantiationException) -> str:
    """``<config key>: cannot build <class>: <the library's reason>`` from Hydra's several-line message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    target = _target_of(err)
    if "Error locating target" in str(err):
        return f"{key + '._target_: ' if key else ''}cannot find the class {target!r} (check its module and name)"
    cause = err.__cause__
    reason = _one_line(f"{type(cause).__name__}: {cause}") if cause is not None else _one_line(lines[1] if
                                                                                           len(lines) > 1 else "")
    return f"{key + ': ' if key else ''}cannot build {target}: {reason[:300]}"


def _load(target: str) -> Callable[[Any], Any]:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def guarded(target: str, cfg: Any, schema: str | None = None) -> Any:
    """Check ``cfg`` against its schema (:mod:`slidemap.config_checks`), then call ``module:function`` on it;
    any failure ends the process as :func:`run_reported` describes."""
    def call() -> Any:
        if schema is not None:
            check_added_keys(schema)
            check_config(cfg, SCHEMAS[schema])
        return _load(target)(cfg)

    errors: list[str] = []
    status, result = run_reported(call, "", errors)
    if status and in_sweep() and status < 128:  # the sweep goes on: this job's folder says why it failed
        record_job_failure(cfg, errors[-1] if errors else f"exit status {status}")
        return float("nan")  # a sweeper's objective for a failed trial
    if status:
        drop_bare_run_dir(cfg)
        sys.exit(status)
    return result


def check_added_keys(schema: str) -> None:
    """Refuse a new top-level key added with ``+`` (``+loss=bogus``): train.py and eval.py read a fixed set of
    top-level settings, so it would be recorded and silently ignored. A config group added so (``+group=option``)
    is kept."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    groups = set(HydraConfig.get().runtime.choices)
    for override in slidemap.runs.job_overrides():
        key = override.split("=", 1)[0]
        if key.startswith("+") and "." not in key and key.lstrip("+") not in groups:
            raise InputError(key.lstrip("+"), f"is no setting {schema}.py reads: a new top-level key would be "
                                              f"recorded and ignored (see conf/{schema}.yaml for the settings)")


def in_sweep() -> bool:
    """Whether this process runs a job of a Hydra multirun (any launcher)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_job_failure(cfg: Any, error: str) -> None:
    """Write the failed job's status and one-line error into its run.json (:mod:`slidemap.sweep_status`)."""
    try:
        cell: str | None = slidemap.runs.run_cell(cfg)
    except Exception:  # the failure may be the very setting the cell is made of (window=big)
        cell = None
    record_failure(slidemap.runs.output_dir(cfg), slidemap.runs.shaping_overrides(slidemap.runs.job_overrides()), cell,
                   error)


def drop_bare_run_dir(cfg: Any) -> None:
    """Remove the run folder of a run that failed before it wrote any result: Hydra made it (``.hydra/`` and the
    job's log, then the run's ``run.json``) before the input was checked. A folder per typo would bury the real
    runs, and its ``run.json`` would refuse the corrected command into the same ``hydra.run.dir``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = slidemap.runs.output_dir(cfg)
    try:
        entries = list(out.iterdir())
    except OSError:
        return
    if not (out / ".hydra").is_dir() or any(e.name not in BARE_RUN and e.suffix != ".log" for e in entries):
        return
    shutil.rmtree(out, ignore_errors=True)
    here = Path.cwd().resolve()
    for parent in list(out.resolve().parents)[:2]:  # outputs/<date>/<time>: outputs/<date>, outputs/ if now empty
        if parent == here or not parent.is_relative_to(here):
            break
        try:
            parent.rmdir()
        except OSError:
            break
