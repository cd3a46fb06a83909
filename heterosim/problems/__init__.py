"""Synthetic problems whose gradient and Hessian heterogeneity are set by knobs.

``make(name, **knobs)`` builds a registered problem; ``names()`` lists them.
"""
from __future__ import annotations

from typing import Callable

from heterosim.problems.base import Problem, check_batch

_REGISTRY: dict[str, Callable[..., Problem]] = {}


def register(name: str):
    """Decorator: register a problem factory under ``name``."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"problem {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn
    return deco


def names() -> list[str]:
    """Names accepted by :func:`make`."""
    return sorted(_REGISTRY)


def make(name: str, **knobs) -> Problem:
    """Build the registered problem ``name`` with its knobs (keyword arguments)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; registered problems: {', '.join(names())}")
    return _REGISTRY[name](**knobs)


from heterosim.problems import quadratic as _quadratic  # noqa: E402,F401  (registers)
from heterosim.problems.quadratic import BlockQuadratic  # noqa: E402

import importlib.util as _ilu  # noqa: E402

if _ilu.find_spec("heterosim.problems.softmax") is not None:  # registers itself
    from heterosim.problems import softmax as _softmax  # noqa: E402,F401
    from heterosim.problems.softmax import SoftmaxRegression  # noqa: E402,F401

__all__ = ["Problem", "BlockQuadratic", "SoftmaxRegression", "make", "names", "register", "check_batch"]
