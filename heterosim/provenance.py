"""Provenance of a result: the package version and the git revision of the checkout.

Every row a sweep writes carries :func:`provenance` (``heterosim_version``,
``git_rev``, ``git_dirty``), so a table always says which code produced it
(modded-nanogpt logs its source with each record; nanoGPT stores its config in the
checkpoint). The revision is read once per process with ``git rev-parse HEAD`` in
the package's directory; outside a git checkout (an installed wheel) it is
``"unknown"``. ``HETEROSIM_GIT_REV`` in the environment overrides it (useful on
cluster workers that run from a copy without ``.git``).
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__all__ = ["version", "git_revision", "git_dirty", "provenance"]

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


def provenance() -> dict:
    """``{"heterosim_version", "git_rev", "git_dirty"}`` for a results row."""
    return {"heterosim_version": version(), "git_rev": git_revision(), "git_dirty": git_dirty()}
