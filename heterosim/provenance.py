"""Provenance of a result: the package version, the git revision of the checkout, the
engine path that ran it and the CPU it ran on.

Every row a sweep writes carries :func:`provenance` (``heterosim_version``,
``git_rev``, ``git_dirty``), so a table always says which code produced it
(modded-nanogpt logs its source with each record; nanoGPT stores its config in the
checkpoint). The revision is read once per process with ``git rev-parse HEAD`` in
the package's directory; outside a git checkout (an installed wheel) it is
``"unknown"``. ``HETEROSIM_GIT_REV`` in the environment overrides it (useful on
cluster workers that run from a copy without ``.git``). ``engine_path`` names the
engine's default path in the process that measured the row
(:func:`heterosim.engine.engine_path`), and ``cpu`` the processor model, since the
same code may round differently on another path or CPU. The code that decides a row
(and so its cache key) is recorded by :mod:`heterosim.codekey`.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__all__ = ["version", "git_revision", "git_dirty", "cpu_model", "engine_path", "provenance"]

_GIT_TIMEOUT_S = 5.0  # a broken or slow git must never stall a sweep


def version() -> str:
    """The installed package version (``heterosim.__version__``)."""
    import heterosim
    return heterosim.__version__


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The full commit hash of the checkout holding the package, or ``"unknown"``."""
    env = os.environ.get("HETEROSIM_GIT_REV")
    if env:
        return env
    return _git("rev-parse", "HEAD") or "unknown"


@functools.lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """True when tracked files of the checkout differ from the commit (the numbers may
    then come from uncommitted code); None outside a checkout."""
    if os.environ.get("HETEROSIM_GIT_REV"):
        return None
    out = _git("status", "--porcelain", "--untracked-files=no")
    return None if out is None else bool(out)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else :mod:`platform`)."""
    import platform
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def engine_path() -> str:
    """The engine path this process runs by default (:func:`heterosim.engine.engine_path`).
    Read in every process that measures rows, whether or not its measure function used the
    engine, so that serial, joblib and Dask runs of one sweep record the same value (the
    first call in a process loads the C kernels, or says why they are off)."""
    from heterosim import engine
    return engine.engine_path()


def provenance() -> dict:
    """``{"heterosim_version", "git_rev", "git_dirty", "engine_path", "cpu"}`` for a results row."""
    return {"heterosim_version": version(), "git_rev": git_revision(), "git_dirty": git_dirty(),
            "engine_path": engine_path(), "cpu": cpu_model()}
