"""Output files and folders: written under temporary names and committed whole, so a reader never sees half of an
output, an interrupted run leaves nothing behind and a killed one's leftovers are removed by the next run.

Every temporary name carries :data:`TMP_TAG`, this host and the writing process id. :func:`remove_stale` deletes the
temporaries of processes that no longer run (a run killed by SIGKILL or a power cut); SIGINT, SIGTERM and
exceptions remove their own in ``finally`` blocks (the entry points turn SIGTERM into an exception).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slidemap.errors import InputError

log = logging.getLogger(__name__)

TMP_TAG = ".slidemap-tmp-"
"""Marks every temporary file or folder slidemap writes: ``.<name>.slidemap-tmp-<host>-<pid>-<random>``."""

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TMP_NAME = re.compile(re.escape(TMP_TAG) + r"([0-9a-f]{8})-(\d+)-")


def tmp_prefix(name: str) -> str:
    """The prefix of this process's temporaries for ``name`` (see :data:`TMP_TAG`)."""
    return f".{name}{TMP_TAG}{_HOST}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(path: Path) -> bool:
    """Whether ``path`` is a temporary of a process on this host that no longer runs.

    Temporaries of other hosts (a shared file system under SLURM) are never judged: their process may be alive.
    """
    match = _TMP_NAME.search(path.name)
    if not match or match.group(1) != _HOST:
        return False
    pid = int(match.group(2))
    return pid != os.getpid() and not _alive(pid)


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the stale temporaries (:func:`is_stale`) directly inside ``folder``; returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_stale(entry):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # another process cleans it at the same moment
        removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) of a killed run in %s", len(removed), folder)
    return removed


@contextmanager
def scratch_dir(near: str | os.PathLike[str], name: str = "scratch") -> Iterator[Path]:
    """A temporary folder inside ``near`` (same file system as the outputs), removed whatever happens."""
    folder = Path(near)
    with tempfile.TemporaryDirectory(prefix=tmp_prefix(name), dir=folder) as tmp:
        yield Path(tmp)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a few renames commit outputs: they arrive, and act, right after."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(target.name), suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp makes it private; outputs are ordinary shared files
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces ``path`` only when the block completes.

    With ``overwrite=False`` a folder that appeared meanwhile (another process of a parallel sweep finished the
    same work first) is kept and ours discarded, so nobody deletes files another process may be reading.
    Callers check first that ``path`` holds nothing but their own earlier output (:func:`check_replaceable`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(target.name), suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    try:
        yield tmp
        with signals_deferred():
            if target.exists():
                if not overwrite:
                    return
                shutil.rmtree(target)
            try:
                os.replace(tmp, target)
            except OSError:
                if overwrite or not target.exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_replaceable(out: str | os.PathLike[str], own: Iterable[str], what: str) -> None:
    """Refuse to replace ``out`` unless it is missing, empty, or holds only entries that match ``own`` (names or
    glob patterns such as ``*.csv``: what ``what`` writes there).

    A command that swaps its whole output folder would otherwise delete whatever else the user keeps there.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "exists and is a file; the output must be a folder")
    check_parents(folder)
    if not folder.is_dir():
        return
    patterns = list(own)
    foreign = sorted(p.name for p in folder.iterdir()
                     if not any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns) and not is_stale(p))
    if foreign:
        raise InputError(folder, f"holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which "
                                 f"{what} did not write; refusing to replace it (choose an empty or new folder)")


def check_parents(folder: Path) -> None:
    """Refuse an output folder below an existing file (``afile/sub``): it could never be made."""
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(parent, f"is a file, not a folder: {folder} cannot be made below it")
            return


def _missing_parents(folder: Path) -> list[Path]:
    """``folder``'s ancestors that do not exist yet, nearest first."""
    missing = []
    for parent in folder.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


@contextmanager
def output_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder whose files all land in ``out`` together when the block completes.

    A new ``out`` is the staging folder renamed (one rename); into an existing one the files are renamed one by one
    with SIGINT/SIGTERM held, replacing same-named earlier outputs and nothing else. If the block fails or is
    interrupted, ``out`` is as it was: an existing one untouched, a new one (and its new parents) never created.
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(target, "output folder is an existing file")
    check_parents(target)
    existed = target.is_dir()
    created = [] if existed else _missing_parents(target)
    home = target if existed else target.parent
    try:
        home.mkdir(parents=True, exist_ok=True)
        remove_stale(home)
        stage = Path(tempfile.mkdtemp(prefix=tmp_prefix(target.name), dir=home))
    except OSError as err:
        raise InputError(target, f"output folder not writable: {err.strerror or err}") from err
    stage.chmod(0o755)
    done = False
    try:
        yield stage
        with signals_deferred():
            if existed:
                for entry in sorted(stage.iterdir()):
                    os.replace(entry, target / entry.name)
                stage.rmdir()
            else:
                os.replace(stage, target)
        done = True
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if not done:
            for parent in created:  # nearest first: only the empty folders this call made
                try:
                    parent.rmdir()
                except OSError:
                    break


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write JSON atomically (indented, stable key order as given)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
