"""What every benchmark measures the same way: CPU time, a timed process, the machine.

Imported by the scripts of this folder (``from benchmarks.measure import ...``
once the repository root is on ``sys.path``), so that their figures, recorded
side by side in ``docs/benchmarks.md``, are taken and described alike.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def say(message: str) -> None:
    """Progress, on stderr: stdout carries only the figures."""
    print(message, file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (git, gitreg, openssl, gpg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class TimedRun:
    """One process run to its end: wall time, CPU time (with its children), result."""

    wall: float
    cpu: float
    done: subprocess.CompletedProcess[str]


def run_timed(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> TimedRun:
    """Run ``argv`` to its end, capturing its output as text, and time it."""
    started, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                          env=None if env is None else dict(env))
    return TimedRun(time.perf_counter() - started, cpu_seconds() - cpu, done)


def _first_line(*command: str) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """The machine and the versions a figure depends on, as recorded with it."""
    from importlib.metadata import version

    import cryptography
    import pygit2

    return {"cpu": _cpu_model(), "cores": str(os.cpu_count()), "system": platform.platform(),
            "python": platform.python_version(), "pygit2": version("pygit2"),
            "libgit2": pygit2.LIBGIT2_VERSION, "cryptography": cryptography.__version__,
            "git": _first_line("git", "--version"), "openssl": _first_line("openssl", "version"),
            "gpg": _first_line("gpg", "--version"),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
