"""Synthetic problems whose gradient and Hessian heterogeneity are set by knobs.

``make(name, **knobs)`` builds a registered problem; ``names()`` lists them. A problem a
registered factory builds records that call as its ``recipe`` and shows it as its ``repr``
(``hs.problems.make('zhang_case', case=1, ...)``), so ``eval(repr(problem))`` rebuilds it.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable

from heterosim.problems.base import Problem, Recipe, check_batch

_REGISTRY: dict[str, Callable[..., Problem]] = {}


def register(name: str):
    """Decorator: register a problem factory ``factory(**knobs) -> Problem`` under ``name``.

    The decorated factory (what the decorator returns, and what :func:`make` calls) records
    on the problem it returns the call that rebuilds it, ``hs.problems.make(name, **knobs)``
    with every knob whose value is not None (defaults included), as its ``recipe``."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"problem {name!r} is registered twice")
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def factory(*args, **knobs):
            problem = fn(*args, **knobs)
            bound = sig.bind(*args, **knobs)
            bound.apply_defaults()
            kwargs = {}
            for k, v in bound.arguments.items():
                kind = sig.parameters[k].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    kwargs.update(v)
                elif kind is not inspect.Parameter.VAR_POSITIONAL and v is not None:
                    kwargs[k] = v
            try:
                problem.recipe = Recipe("hs.problems.make", (name,), kwargs)
            except AttributeError:  # a problem that takes no attributes: it keeps its own repr
                pass
            return problem

        _REGISTRY[name] = factory
        return factory
    return deco


def names() -> list[str]:
    """Names accepted by :func:`make`."""
    return sorted(_REGISTRY)


def knob_names(name: str) -> list[str]:
    """The knobs the registered problem ``name`` takes (the keyword arguments of its factory)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; registered problems: {', '.join(names())}")
    return [k for k, p in inspect.signature(_REGISTRY[name]).parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def make(name: str, /, **knobs) -> Problem:
    """Build the registered problem ``name`` with its knobs (keyword arguments).

    An unknown knob, or a missing one without a default, is a ``ValueError`` naming it and
    listing the knobs the problem takes; a bad value is a ``ValueError`` naming the knob."""
    allowed = knob_names(name)
    sig = inspect.signature(_REGISTRY[name])
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [] if takes_any else sorted(set(knobs) - set(allowed))
    if unknown:
        raise ValueError(f"problem {name!r} has no knob{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"its knobs: {', '.join(allowed) if allowed else 'none'}")
    missing = [k for k, p in sig.parameters.items() if p.default is inspect.Parameter.empty
               and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
               and k not in knobs]
    if missing:
        raise ValueError(f"problem {name!r} needs the knob{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                         f"its knobs: {', '.join(allowed)}")
    return _REGISTRY[name](**knobs)


from heterosim.problems import quadratic as _quadratic  # noqa: E402,F401  (registers)
from heterosim.problems.quadratic import BlockQuadratic  # noqa: E402

import importlib.util as _ilu  # noqa: E402

if _ilu.find_spec("heterosim.problems.softmax") is not None:  # registers itself
    from heterosim.problems import softmax as _softmax  # noqa: E402,F401
    from heterosim.problems.softmax import SoftmaxRegression  # noqa: E402,F401

__all__ = ["Problem", "BlockQuadratic", "SoftmaxRegression", "Recipe", "make", "names", "knob_names", "register",
           "check_batch"]
