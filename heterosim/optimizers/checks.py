"""Argument checks shared by every rule and every problem knob, so that each message has one
wording: the argument's name, the value given with its type, and what is allowed
(``eps must be a finite number >= 0; got 'abc' (str)``)."""
from __future__ import annotations

import math

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["describe", "check_real", "check_int", "check_numbers", "check_flag", "check_choice", "validate_lr"]


def validate_lr(lr, name: str = "lrs") -> None:
    """Check learning rates: a number or an array of numbers, each finite and > 0; otherwise a
    ``ValueError`` naming the argument ``name``, what was given and what is allowed."""
    t = check_numbers(name, lr, "a finite number > 0 or an array of them (learning rates)")
    bad = ~(torch.isfinite(t) & (t > 0))
    if bool(bad.any()):
        shown = t.tolist()
        raise ValueError(f"learning rates must be finite numbers > 0; got {name} = {shown[:8]}"
                         f"{' ...' if len(shown) > 8 else ''} ({int(bad.sum())} of {len(shown)} not finite and > 0)")


def describe(v) -> str:
    """A value as an error message shows it: its repr (shortened) and its type."""
    r = repr(v)
    return f"{r if len(r) <= 80 else r[:77] + '...'} ({type(v).__name__})"


def _range_text(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def check_real(name: str, v, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
               hi_open: bool = False) -> float:
    """``v`` as a float when it is a finite real number within the bounds (open or closed);
    otherwise a ``ValueError`` naming ``name``, the value and type given, and the range allowed.
    Strings and bools are not numbers here."""
    x = None
    if not isinstance(v, (str, bytes, bool, np.bool_)):
        try:
            x = float(v)
        except (TypeError, ValueError, RuntimeError):
            x = None
    if (x is None or not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo))
            or (hi is not None and (x >= hi if hi_open else x > hi))):
        raise ValueError(f"{name} must be a finite number{_range_text(lo, hi, lo_open, hi_open)}; got {describe(v)}")
    return x


def check_int(name: str, v, lo: int | None = None, hi: int | None = None) -> int:
    """``v`` as an int when it is an integer (an integral float such as 4.0 counts) within
    [lo, hi]; otherwise a ``ValueError`` naming ``name``, what was given and what is allowed."""
    x = None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        x = int(v)
    elif not isinstance(v, (str, bytes, bool, np.bool_)):
        try:
            f = float(v)
            x = int(f) if math.isfinite(f) and f == int(f) else None
        except (TypeError, ValueError, RuntimeError):
            x = None
    if x is None or (lo is not None and x < lo) or (hi is not None and x > hi):
        allowed = (f" in {lo}..{hi}" if lo is not None and hi is not None else f" >= {lo}" if lo is not None
                   else f" <= {hi}" if hi is not None else "")
        raise ValueError(f"{name} must be an integer{allowed}; got {describe(v)}")
    return x


def check_numbers(name: str, v, allowed: str) -> Tensor:
    """``v`` (a number, a sequence of numbers or a tensor) as a flat float64 CPU tensor; a
    ``ValueError`` naming ``name``, the value given and ``allowed`` when it holds anything else
    (text, bools, complex numbers, ragged lists). Ranges are the caller's to check."""
    if isinstance(v, Tensor):
        if not (v.dtype.is_complex or v.dtype == torch.bool):
            return v.detach().to(device="cpu", dtype=torch.float64).flatten()
    elif not isinstance(v, (str, bytes)):
        try:
            a = np.asarray(v)
        except (TypeError, ValueError, RuntimeError):  # ragged, or not numbers
            a = None
        if a is not None and a.dtype.kind in "iuf":
            return torch.as_tensor(a.astype(np.float64)).flatten()
    raise ValueError(f"{name} must be {allowed}; got {describe(v)}")


def check_flag(name: str, v) -> bool:
    """``v`` as a bool when it is True or False (or the integer 0 or 1); else a ``ValueError``."""
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
        return bool(v)
    raise ValueError(f"{name} must be True or False; got {describe(v)}")


def check_choice(name: str, v, choices):
    """``v`` when it is one of ``choices``; else a ``ValueError`` listing them."""
    for c in choices:
        if isinstance(v, type(c)) and v == c:
            return c
    raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {describe(v)}")


def _in01(name, v, closed_right=False):
    return check_real(name, v, 0.0, 1.0, hi_open=not closed_right)


def _nonneg(name, v):
    return check_real(name, v, 0.0)


def _betas(betas, beta2_closed=False):
    try:
        pair = None if isinstance(betas, (str, bytes)) else tuple(betas)
    except TypeError:
        pair = None
    if pair is None or len(pair) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2) of numbers in [0, 1); got {describe(betas)}")
    return (_in01("betas[0] (beta1)", pair[0]),
            _in01("betas[1] (beta2)", pair[1], closed_right=beta2_closed))


def _positive_vector(name, v) -> Tensor:
    """A flat float64 tensor of finite values > 0, one or more (e.g. the constants L_b)."""
    t = check_numbers(name, v, "finite numbers > 0")
    if t.numel() == 0 or not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"{name} must be finite numbers > 0; got {t.tolist()}")
    return t


