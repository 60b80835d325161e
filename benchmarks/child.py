"""What the benchmarks that time a command need: one child process's wall time and peak memory, and the CPU's name
(every figure is quoted with it)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


def timed_child(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``cmd`` with its stderr in ``log``; (wall seconds, peak RSS GiB, exit code).

    ``os.wait4`` gives this child's own peak RSS (its process tree's largest member: children it waits for count
    too), not the largest of every child so far as ``getrusage(RUSAGE_CHILDREN)`` would.
    """
    with open(log, "w") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 2**20, os.waitstatus_to_exitcode(status)  # ru_maxrss is in KiB on Linux


def cpu_name() -> str:
    """The CPU model line of /proc/cpuinfo (``lscpu``'s "Model name"), else the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
