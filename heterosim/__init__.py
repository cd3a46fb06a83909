"""heterosim: gradient and Hessian heterogeneity, and why Adam beats SGD on transformers.

Submodules: ``problems``, ``optimizers``, ``engine``, ``bounds``, ``measures``,
``precondition``, ``sweep``, ``claims``, ``plots``, ``bridge``, ``testing``, ``codekey``. They are imported
on first use (``hs.engine`` works after ``import heterosim as hs``).
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_SUBMODULES = {"problems", "optimizers", "engine", "bounds", "measures", "precondition",
               "sweep", "plots", "bridge", "testing", "blocks", "cli", "provenance", "verify", "demo",
               "claims", "codekey"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"heterosim.{name}")
    raise AttributeError(f"module 'heterosim' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
