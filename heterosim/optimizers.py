r"""Optimizers written once, as pure ``(init, update)`` rules over an explicit state.

A rule acts on a batch of iterates ``x`` of shape (B, d) (one row per run) with a
block partition ``blocks`` of the d coordinates::

    state = opt.init(x, blocks)
    step, state = opt.update(g, state, x, lr, blocks)    # new iterate: x + step

``lr`` is a float or a (B, 1) tensor (one learning rate per row). Nothing is
mutated: the state goes in and a new state comes out, so runs can be replayed and
compared step by step. The same rule drives the batched engine
(:mod:`heterosim.engine`) and a model's parameters through one
``torch.optim.Optimizer`` adapter, :class:`RuleOptimizer`, which flattens each
parameter group into one row whose blocks are the parameter tensors.

Hyperparameters take torch.optim's names (momentum, dampening, nesterov, betas,
eps, weight_decay, alpha, lr_decay, initial_accumulator_value, centered) and
where torch.optim has the rule the arithmetic follows it operation for operation,
so the two agree to rounding in float64 (tests/test_optimizers.py).

Every registered rule also carries ``update_``, an in-place twin (the engine no
longer calls it: its fast path uses the pure ``update`` or a C kernel checked bit for
bit against it, :func:`heterosim._native.stepper`; issue 14 retires the twins): ``new_state = opt.update_(g, state, x, lr, blocks, out, tmp)`` writes
``out = x + step``, updates the state's tensors in place and uses ``tmp`` (shaped
like x) as scratch; it never writes ``g`` or ``x`` (and ``out`` and ``tmp`` must not
overlap them). It does the arithmetic of
``update`` in fewer passes over memory, so the two agree to rounding, and
tests/test_engine_fast.py pins one to the other, state included. Users call
``update``; only buffers the engine owns go through ``update_``. Rules whose step
commutes with block rotations (``equivariant=True``: for a block-diagonal
orthogonal Q, the rule maps (Q g, Q state, Q x) to Q step) may be run by the
engine in a quadratic's eigenbasis.

Registry: :func:`make` ``(name, **hyper)`` and :func:`names`.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch

from heterosim import _native
from heterosim.blocks import Blocks

__all__ = ["Optimizer", "make", "for_problem", "names", "register", "RuleOptimizer", "validate_lr"]

Tensor = torch.Tensor
_TINY = 1e-300  # guards 0/0 in normalised steps: a zero gradient gives a zero step


@dataclass(frozen=True)
class Optimizer:
    """A pure optimizer rule: ``init(x, blocks) -> state`` and
    ``update(g, state, x, lr, blocks) -> (step, new_state)``.

    ``update_`` (optional) is the rule's in-place twin for buffers the engine owns:
    ``update_(g, state, x, lr, blocks, out, tmp) -> new_state`` writes ``out = x + step``
    and mutates the state's tensors (module doc). ``equivariant`` declares that the step
    commutes with block-diagonal rotations, so a quadratic may be run in its eigenbasis."""

    name: str
    init: Callable[[Tensor, Blocks], Any]
    update: Callable[..., tuple[Tensor, Any]]
    hyper: Mapping[str, Any] = field(default_factory=dict)
    update_: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    equivariant: bool = False

    def __repr__(self) -> str:
        h = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items() if k != "L")
        return f"Optimizer({self.name}{', ' + h if h else ''})"

    def label(self) -> str:
        """A short, stable text naming the rule and its hyperparameters (for tables)."""
        h = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.hyper.items()) if k != "L")
        return f"{self.name}({h})" if h else self.name


def _short(v):
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_short(u) for u in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


_REGISTRY: dict[str, Callable[..., Optimizer]] = {}


def register(name: str):
    """Decorator: register a rule factory ``factory(**hyper) -> Optimizer`` under ``name``."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn
    return deco


def names() -> list[str]:
    """Names accepted by :func:`make` (aliases included)."""
    return sorted(_REGISTRY)


def make(name: str, /, **hyper) -> Optimizer:
    """Build the registered rule ``name`` with hyperparameters ``hyper`` (torch.optim's names).

    An :class:`Optimizer` passes through unchanged (hyperparameters then are an error). A
    keyword the rule does not take is a ``ValueError`` naming it and the ones the rule takes;
    a value out of range or of the wrong type is a ``ValueError`` naming the hyperparameter,
    the value given and the values allowed."""
    if isinstance(name, Optimizer):
        if hyper:
            raise ValueError(f"got the built optimizer {name!r} and hyperparameters {sorted(hyper)}; pass "
                             "hyperparameters with a registered name, make(name, **hyper)")
        return name
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered optimizers: {', '.join(names())}")
    fn = _REGISTRY[name]
    allowed = list(inspect.signature(fn).parameters)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        takes = f"it takes: {', '.join(allowed)}" if allowed else "it takes none"
        lr = ("; the learning rate is not a hyperparameter of the rule: pass it to engine.run(..., lrs=...), "
              "to update(...) or to RuleOptimizer(..., lr=...)") if "lr" in unknown else ""
        raise ValueError(f"optimizer {name!r} does not take the hyperparameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; {takes}{lr}")
    try:
        return fn(**hyper)
    except TypeError as e:  # every value goes through the checks below, so this is a value no check foresaw
        raise ValueError(f"optimizer {name!r} could not be built from "
                         f"{', '.join(f'{k}={v!r}' for k, v in hyper.items())}: {e}") from e


# hyperparameters that some rules read from the problem's ground truth
_FROM_PROBLEM = {"blockwise_gd": {"L": "L_blocks"}, "steepest_linf": {"Linf": "Linf"}}


def _needs_problem(name: str, hyper: str, attr: str) -> str:
    """The advice of the error a rule raises when built without the constant it reads from the problem."""
    return (f"{name} needs {hyper} (the problem's {attr}); build it with "
            f"hs.optimizers.for_problem({name!r}, problem), which sets {hyper} = problem.{attr}, and pass "
            f"that optimizer (not the name {name!r}) to engine.run / engine.tune, or give {hyper}=... to make")


def for_problem(name: str, problem, **hyper) -> Optimizer:
    """:func:`make` with the hyperparameters a rule reads from the problem filled in
    (blockwise_gd: ``L = problem.L_blocks``; steepest_linf: ``Linf = problem.Linf``).

    Example::

        opt = hs.optimizers.for_problem("blockwise_gd", problem)
        hs.engine.run(problem, opt, lrs=[1.0])
    """
    if isinstance(name, Optimizer):
        return make(name, **hyper)
    filled = {k: getattr(problem, attr) for k, attr in _FROM_PROBLEM.get(name, {}).items() if k not in hyper}
    return make(name, **filled, **hyper)


def validate_lr(lr, name: str = "lrs") -> None:
    """Check learning rates: a number or an array of numbers, each finite and > 0; otherwise a
    ``ValueError`` naming the argument ``name``, what was given and what is allowed."""
    t = check_numbers(name, lr, "a finite number > 0 or an array of them (learning rates)")
    bad = ~(torch.isfinite(t) & (t > 0))
    if bool(bad.any()):
        shown = t.tolist()
        raise ValueError(f"learning rates must be finite numbers > 0; got {name} = {shown[:8]}"
                         f"{' ...' if len(shown) > 8 else ''} ({int(bad.sum())} of {len(shown)} not finite and > 0)")


# --------------------------------------------------------------------------
# argument checks: every hyperparameter here, and every knob of heterosim.problems, goes
# through them, so each message has one wording: the argument's name, the value given with
# its type, and what is allowed ("eps must be a finite number >= 0; got 'abc' (str)")
# --------------------------------------------------------------------------
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


def _decay(g, x, weight_decay):
    """Coupled (L2) weight decay, torch.optim's convention: g + wd * x."""
    return g + weight_decay * x if weight_decay else g


# --------------------------------------------------------------------------
# helpers of the in-place twins (``update_``): each writes into a buffer it is given
# --------------------------------------------------------------------------
def _decay_into(tmp, g, x, weight_decay):
    """g + wd * x written into ``tmp`` (g itself when wd = 0: nothing is written)."""
    return torch.add(g, x, alpha=weight_decay, out=tmp) if weight_decay else g


def _axpy(out, x, a, y):
    """out <- x + a * y, with ``a`` a float or a per-row (B, 1) tensor: the last pass of every rule."""
    if isinstance(a, Tensor):
        return torch.addcmul(x, y, a, out=out)
    return torch.add(x, y, alpha=a, out=out)


def _sqrt_into(out, v):
    """out <- sqrt(v), elementwise. IEEE sqrt is correctly rounded, so numpy and torch give the
    same bits; on CPU numpy's kernel is the faster one (about 2x for float64 on AVX2 machines),
    and it runs wherever the memory is plain contiguous CPU memory."""
    if (out.device.type == "cpu" and v.device.type == "cpu" and out.dtype == v.dtype
            and out.dtype in (torch.float64, torch.float32) and out.is_contiguous() and v.is_contiguous()
            and not out.requires_grad and not v.requires_grad):
        np.sqrt(v.numpy(), out=out.numpy())
        return out
    return torch.sqrt(v, out=out)


def _kernels(lr, *tensors):
    """The fused C kernels of :mod:`heterosim._native` when they apply: all buffers CPU float64,
    contiguous, of one (R, d) shape, lr a float or R values. None otherwise (torch path)."""
    k = _native.lib()
    if k is None or tensors[0].dim() != 2 or not _native.usable(*tensors):
        return None
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors):
        return None
    if isinstance(lr, Tensor) and (lr.numel() != shape[0] or not _native.usable(lr)):
        return None
    return k


def _lr_rows(lr):
    """The learning rates as a kernel reads them: (tensor holding them, stride between rows);
    a float is one value read by every row (stride 0). Keep the tensor alive over the call."""
    if isinstance(lr, Tensor):
        return lr, 1
    return torch.tensor([float(lr)], dtype=torch.float64), 0


def _scratch(tmp, taken):
    """``tmp`` unless it already holds a live value (``taken``); then a fresh buffer."""
    return torch.empty_like(tmp) if taken is tmp else tmp


def _blockwise(op, out, v, per_block, blocks):
    """out <- op(v, per_block expanded to coordinates): per-block scaling without building the
    expanded (B, d) tensor when the blocks are contiguous and of equal size."""
    if blocks._equal_contiguous and v.is_contiguous() and out.is_contiguous():
        shape = (*v.shape[:-1], blocks.n, blocks.sizes[0])
        op(v.view(shape), per_block.unsqueeze(-1), out=out.view(shape))
        return out
    return op(v, blocks.expand(per_block), out=out)


# --------------------------------------------------------------------------
# states
# --------------------------------------------------------------------------
class CountState(NamedTuple):
    count: int


class MomentumState(NamedTuple):
    count: int
    buf: Tensor  # momentum buffer (B, d)


class AdamState(NamedTuple):
    count: int
    exp_avg: Tensor     # m, (B, d)
    exp_avg_sq: Tensor  # v, (B, d) or (B, n) for block rules


class RMSpropState(NamedTuple):
    count: int
    square_avg: Tensor
    grad_avg: Tensor | None
    momentum_buffer: Tensor | None


class AdagradState(NamedTuple):
    count: int
    sum: Tensor


class PrecondState(NamedTuple):
    count: int
    v0: Tensor  # g_0^2, frozen after the first step


# --------------------------------------------------------------------------
# SGD family
# --------------------------------------------------------------------------
def _sgd(name, lr_default_momentum):
    def factory(momentum: float = lr_default_momentum, dampening: float = 0.0, nesterov: bool = name == "nesterov",
                weight_decay: float = 0.0) -> Optimizer:
        r"""SGD with torch.optim.SGD's momentum convention (heavy ball for nesterov=False):

        .. math::
            g \leftarrow g + \lambda x,\quad b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
            x_{t+1} = x_t - \eta\,(g_t + \mu b_t \text{ if nesterov else } b_t)

        With momentum = 0 this is (stochastic) gradient descent. Polyak 1964 (heavy ball);
        Sutskever et al. 2013 (Nesterov form); torch.optim.SGD.
        """
        mu = _nonneg("momentum", momentum)
        tau = _nonneg("dampening", dampening)
        wd = _nonneg("weight_decay", weight_decay)
        nesterov = check_flag("nesterov", nesterov)
        if nesterov and (mu <= 0 or tau != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0; got momentum={mu:g}, "
                             f"dampening={tau:g}")

        def init(x, blocks):
            return MomentumState(0, torch.zeros_like(x)) if mu else CountState(0)

        def update(g, state, x, lr, blocks):
            g = _decay(g, x, wd)
            if not mu:
                return -lr * g, CountState(state.count + 1)
            buf = g if state.count == 0 else mu * state.buf + (1 - tau) * g
            d = g + mu * buf if nesterov else buf
            return -lr * d, MomentumState(state.count + 1, buf)

        def update_(g, state, x, lr, blocks, out, tmp):
            bufs = (state.buf,) if mu else ()
            k = _kernels(lr, g, x, out, *bufs)
            if k is not None:
                R, d = x.shape
                lrt, ls = _lr_rows(lr)  # held: the kernel reads its memory
                _native.rows(k.sgd_step, R, R * d, d, x.data_ptr(), g.data_ptr(), state.buf.data_ptr() if mu else None,
                             out.data_ptr(), lrt.data_ptr(), ls, mu, 1 - tau, int(nesterov), wd, int(state.count == 0))
                return MomentumState(state.count + 1, state.buf) if mu else CountState(state.count + 1)
            g = _decay_into(tmp, g, x, wd)
            if not mu:
                _axpy(out, x, -lr, g)
                return CountState(state.count + 1)
            buf = state.buf
            if state.count == 0:
                buf.copy_(g)
            else:
                buf.mul_(mu).add_(g, alpha=1 - tau)
            d = torch.add(g, buf, alpha=mu, out=tmp) if nesterov else buf
            _axpy(out, x, -lr, d)
            return MomentumState(state.count + 1, buf)

        return Optimizer(name, init, update, dict(momentum=mu, dampening=tau, nesterov=bool(nesterov),
                                                   weight_decay=wd) if mu or wd else {},
                         update_=update_, equivariant=True)
    return factory


register("sgd")(_sgd("sgd", 0.0))
register("gd")(_sgd("gd", 0.0))
register("sgd_momentum")(_sgd("sgd_momentum", 0.9))
register("nesterov")(_sgd("nesterov", 0.9))


@register("blockwise_gd")
def blockwise_gd(L=None) -> Optimizer:
    r"""Block-wise learning rates eta_b = lr / L_b:  x_b <- x_b - (lr / L_b) g_b.

    ``L``: the per-block smoothness constants (the problem's ``L_blocks``), one per block.
    With lr = 1 this is the block-Lipschitz step of docs/theory.md B4/Q2 (Nesterov 2012,
    block coordinate descent with step 1/L_b, applied to all blocks at once).
    """
    if L is None:
        raise ValueError(_needs_problem("blockwise_gd", "L", "L_blocks"))
    Lt = _positive_vector("L (blockwise_gd's per-block constants L_b)", L)

    def init(x, blocks):
        if blocks.n != Lt.numel():
            raise ValueError(f"blockwise_gd has {Lt.numel()} constants L_b for {blocks.n} blocks")
        return CountState(0)

    def update(g, state, x, lr, blocks):
        inv = blocks.expand(1.0 / Lt.to(device=g.device, dtype=g.dtype))
        return -lr * g * inv, CountState(state.count + 1)

    def update_(g, state, x, lr, blocks, out, tmp):
        inv_L = (1.0 / Lt).to(device=g.device, dtype=g.dtype)
        _axpy(out, x, -lr, _blockwise(torch.mul, tmp, g, inv_L.expand(*g.shape[:-1], -1), blocks))
        return CountState(state.count + 1)

    return Optimizer("blockwise_gd", init, update, dict(L=tuple(Lt.tolist())), update_=update_,
                     equivariant=True)


# --------------------------------------------------------------------------
# sign and normalised methods
# --------------------------------------------------------------------------
@register("signsgd")
def signsgd(weight_decay: float = 0.0) -> Optimizer:
    r"""SignSGD: x <- x - eta sign(g) (steepest descent in l_inf with a constant step).
    Bernstein et al. 2018, "signSGD: Compressed optimisation for non-convex problems", Alg. 1."""
    wd = _nonneg("weight_decay", weight_decay)

    def init(x, blocks):
        return CountState(0)

    def update(g, state, x, lr, blocks):
        return -lr * (torch.sign(g) + wd * x if wd else torch.sign(g)), CountState(state.count + 1)

    def update_(g, state, x, lr, blocks, out, tmp):
        k = _kernels(lr, g, x, out)
        if k is not None:
            lrt, ls = _lr_rows(lr)
            _native.rows(k.sign_step, x.shape[0], x.numel(), x.shape[1], x.data_ptr(), g.data_ptr(), None,
                         out.data_ptr(), lrt.data_ptr(), ls, 0, 0.0, wd)
            return CountState(state.count + 1)
        d = torch.sign(g, out=tmp)
        if wd:
            d.add_(x, alpha=wd)
        _axpy(out, x, -lr, d)
        return CountState(state.count + 1)

    return Optimizer("signsgd", init, update, dict(weight_decay=wd) if wd else {}, update_=update_)


@register("signum")
def signum(beta: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    r"""Signum, the sign of the momentum: m_t = beta m_{t-1} + (1 - beta) g_t (m_0 = 0),
    x <- x - eta (sign(m_t) + lambda x). Bernstein et al. 2018, Alg. 3."""
    b = _in01("beta", beta)
    wd = _nonneg("weight_decay", weight_decay)

    def init(x, blocks):
        return MomentumState(0, torch.zeros_like(x))

    def update(g, state, x, lr, blocks):
        m = b * state.buf + (1 - b) * g
        d = torch.sign(m)
        return -lr * (d + wd * x if wd else d), MomentumState(state.count + 1, m)

    def update_(g, state, x, lr, blocks, out, tmp):
        k = _kernels(lr, g, x, out, state.buf)
        if k is not None:
            lrt, ls = _lr_rows(lr)
            _native.rows(k.sign_step, x.shape[0], x.numel(), x.shape[1], x.data_ptr(), g.data_ptr(),
                         state.buf.data_ptr(), out.data_ptr(), lrt.data_ptr(), ls, 1, b, wd)
            return MomentumState(state.count + 1, state.buf)
        m = state.buf.mul_(b).add_(g, alpha=1 - b)
        d = torch.sign(m, out=tmp)
        if wd:
            d.add_(x, alpha=wd)
        _axpy(out, x, -lr, d)
        return MomentumState(state.count + 1, m)

    return Optimizer("signum", init, update, dict(beta=b, weight_decay=wd) if wd else dict(beta=b),
                     update_=update_)


@register("sign_momentum")
def sign_momentum(beta: float = 0.9) -> Optimizer:
    r"""Momentum of the signs (not Signum): m_t = beta m_{t-1} + (1 - beta) sign(g_t) (m_0 = 0),
    x <- x - eta m_t. The step is an average of past sign vectors, so it is no longer a sign;
    kept apart from :func:`signum` because the two behave differently (docs/theory.md C6)."""
    b = _in01("beta", beta)

    def init(x, blocks):
        return MomentumState(0, torch.zeros_like(x))

    def update(g, state, x, lr, blocks):
        m = b * state.buf + (1 - b) * torch.sign(g)
        return -lr * m, MomentumState(state.count + 1, m)

    def update_(g, state, x, lr, blocks, out, tmp):
        k = _kernels(lr, g, x, out, state.buf)
        if k is not None:
            lrt, ls = _lr_rows(lr)
            _native.rows(k.sign_step, x.shape[0], x.numel(), x.shape[1], x.data_ptr(), g.data_ptr(),
                         state.buf.data_ptr(), out.data_ptr(), lrt.data_ptr(), ls, 2, b, 0.0)
            return MomentumState(state.count + 1, state.buf)
        m = state.buf.mul_(b).add_(torch.sign(g, out=tmp), alpha=1 - b)
        _axpy(out, x, -lr, m)
        return MomentumState(state.count + 1, m)

    return Optimizer("sign_momentum", init, update, dict(beta=b), update_=update_)


@register("steepest_linf")
def steepest_linf(Linf=None) -> Optimizer:
    r"""Steepest descent in l_inf with the step of the quadratic upper model:
    x <- x - lr (||g||_1 / L_inf) sign(g). With lr = 1 each step decreases f by at least
    ||g||_1^2 / (2 L_inf) (docs/theory.md B3; Kelner et al. 2014 and Bernstein et al. 2018 use the
    same l_inf steepest-descent step). ``Linf``: the problem's L_inf (or an upper bound)."""
    if Linf is None:
        raise ValueError(_needs_problem("steepest_linf", "Linf", "Linf"))
    Li = check_real("Linf", Linf, 0.0, lo_open=True)

    def init(x, blocks):
        return CountState(0)

    def update(g, state, x, lr, blocks):
        scale = g.abs().sum(-1, keepdim=True) / Li
        return -lr * scale * torch.sign(g), CountState(state.count + 1)

    def update_(g, state, x, lr, blocks, out, tmp):
        scale = torch.linalg.vector_norm(g, 1, dim=-1, keepdim=True) / Li
        _axpy(out, x, -lr * scale, torch.sign(g, out=tmp))
        return CountState(state.count + 1)

    return Optimizer("steepest_linf", init, update, dict(Linf=Li), update_=update_)


@register("normalized_gd")
def normalized_gd() -> Optimizer:
    r"""Normalised GD: x <- x - eta g / ||g||_2 (steepest descent in l_2 with a fixed step length)."""
    def init(x, blocks):
        return CountState(0)

    def update(g, state, x, lr, blocks):
        n = torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min(_TINY)
        return -lr * g / n, CountState(state.count + 1)

    def update_(g, state, x, lr, blocks, out, tmp):
        n = torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min(_TINY)
        _axpy(out, x, -lr / n, g)
        return CountState(state.count + 1)

    return Optimizer("normalized_gd", init, update, {}, update_=update_, equivariant=True)


@register("block_normalized_gd")
def block_normalized_gd() -> Optimizer:
    r"""Block-normalised GD: x_b <- x_b - eta g_b / ||g_b||_2 for every block b
    (every block moves by eta in l_2, whatever its gradient scale; LARS-like, You et al. 2017)."""
    def init(x, blocks):
        return CountState(0)

    def update(g, state, x, lr, blocks):
        n = blocks.expand(blocks.norms(g)).clamp_min(_TINY)
        return -lr * g / n, CountState(state.count + 1)

    def update_(g, state, x, lr, blocks, out, tmp):
        _axpy(out, x, -lr, _blockwise(torch.div, tmp, g, blocks.norms(g).clamp_min(_TINY), blocks))
        return CountState(state.count + 1)

    return Optimizer("block_normalized_gd", init, update, {}, update_=update_, equivariant=True)


# --------------------------------------------------------------------------
# adaptive methods
# --------------------------------------------------------------------------
def _adam_direction(m, v, count, beta1, beta2, eps):
    """torch.optim.Adam's single-tensor arithmetic: m_hat / (sqrt(v_hat) + eps) times (1 - beta1^t)."""
    bc1 = 1 - beta1 ** count
    bc2_sqrt = (1 - beta2 ** count) ** 0.5
    denom = v.sqrt() / bc2_sqrt + eps
    return m / denom, bc1


def _adam(name, decoupled):
    def factory(betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2 if decoupled else 0.0) -> Optimizer:
        r"""Adam (Kingma & Ba 2015, Alg. 1), torch.optim.Adam's arithmetic:

.. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\ v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\
    x_{t+1} = x_t - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

``weight_decay`` is coupled (added to g), as in torch.optim.Adam; ``adamw`` decouples it
(x <- x - eta lambda x; Loshchilov & Hutter 2019)."""
        b1, b2 = _betas(betas)
        e = _nonneg("eps", eps)
        wd = _nonneg("weight_decay", weight_decay)

        def init(x, blocks):
            return AdamState(0, torch.zeros_like(x), torch.zeros_like(x))

        def update(g, state, x, lr, blocks):
            if not decoupled:
                g = _decay(g, x, wd)
            t = state.count + 1
            m = torch.lerp(state.exp_avg, g, 1 - b1)
            v = b2 * state.exp_avg_sq + (1 - b2) * (g * g)
            direction, bc1 = _adam_direction(m, v, t, b1, b2, e)
            step = -(lr / bc1) * direction
            if decoupled and wd:
                step = step - lr * wd * x
            return step, AdamState(t, m, v)

        def update_(g, state, x, lr, blocks, out, tmp):
            # m / (sqrt(v)/c + eps) = c m / (sqrt(v) + c eps), c = sqrt(1 - beta2^t): one pass fewer
            t = state.count + 1
            c = (1 - b2 ** t) ** 0.5
            k = _kernels(lr, g, x, out, state.exp_avg, state.exp_avg_sq)
            if k is not None:
                R, d = x.shape
                lrt, ls = _lr_rows(lr)  # held: the kernel reads its memory
                _native.rows(k.adam_step, R, R * d, d, x.data_ptr(), g.data_ptr(), state.exp_avg.data_ptr(),
                             state.exp_avg_sq.data_ptr(), out.data_ptr(), lrt.data_ptr(), ls, -c / (1 - b1 ** t),
                             -wd if decoupled else 0.0, 1 - b1, b2, 1 - b2, e * c, 0.0 if decoupled else wd)
                return AdamState(t, state.exp_avg, state.exp_avg_sq)
            if not decoupled:
                g = _decay_into(tmp, g, x, wd)
            m = state.exp_avg.lerp_(g, 1 - b1)
            v = state.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            den = _sqrt_into(tmp, v).add_(e * c)
            _axpy(out, x, lr * (-c / (1 - b1 ** t)), torch.div(m, den, out=den))
            if decoupled and wd:
                _axpy(out, out, -lr * wd, x)
            return AdamState(t, m, v)

        return Optimizer(name, init, update, dict(betas=(b1, b2), eps=e, weight_decay=wd), update_=update_)
    return factory


register("adam")(_adam("adam", decoupled=False))
register("adamw")(_adam("adamw", decoupled=True))



@register("block_adam")
def block_adam(betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> Optimizer:
    r"""Adam with one second moment per block (Adam-mini; Zhang et al. 2024, arXiv 2406.16793):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_{t,b} = \beta_2 v_{t-1,b} + (1-\beta_2)\,\tfrac{1}{d_b}\|g_{t,b}\|^2,\quad
        x_{t+1,b} = x_{t,b} - \frac{\eta}{1-\beta_1^t}\frac{m_{t,b}}{\sqrt{v_{t,b}/(1-\beta_2^t)}+\epsilon}

    Its step depends on the block partition; with one coordinate per block it is Adam.
    """
    b1, b2 = _betas(betas)
    e = _nonneg("eps", eps)
    wd = _nonneg("weight_decay", weight_decay)

    def init(x, blocks):
        return AdamState(0, torch.zeros_like(x), x.new_zeros(*x.shape[:-1], blocks.n))

    def update(g, state, x, lr, blocks):
        g = _decay(g, x, wd)
        t = state.count + 1
        m = torch.lerp(state.exp_avg, g, 1 - b1)
        v = b2 * state.exp_avg_sq + (1 - b2) * blocks.mean(g * g)
        direction, bc1 = _adam_direction(m, blocks.expand(v), t, b1, b2, e)
        return -(lr / bc1) * direction, AdamState(t, m, v)

    def update_(g, state, x, lr, blocks, out, tmp):
        g = _decay_into(tmp, g, x, wd)
        t = state.count + 1
        m = state.exp_avg.lerp_(g, 1 - b1)
        v = state.exp_avg_sq.mul_(b2).add_(blocks.mean(torch.mul(g, g, out=tmp)), alpha=1 - b2)
        c = (1 - b2 ** t) ** 0.5
        den = v.sqrt().add_(e * c)  # (B, n): c times the per-block denominator
        _axpy(out, x, -lr * (c / (1 - b1 ** t)), _blockwise(torch.div, tmp, m, den, blocks))
        return AdamState(t, m, v)

    return Optimizer("block_adam", init, update, dict(betas=(b1, b2), eps=e, weight_decay=wd),
                     update_=update_, equivariant=True)


@register("adam_fixed_precond")
def adam_fixed_precond(eps: float = 0.0) -> Optimizer:
    r"""Adam with beta1 = 0, beta2 = 1 and v_0 = g_0^2, the variant Zhang et al. 2024
    (arXiv 2402.16788, Sec. 4) analyse: a fixed diagonal preconditioner
    P = diag(1 / (|g_0| + eps)), x_{t+1} = x_t - eta P g_t. Its rate on a quadratic is set by
    kappa(P^{1/2} H P^{1/2}) (docs/theory.md Q3). A zero first-gradient coordinate needs eps > 0."""
    e = _nonneg("eps", eps)

    def init(x, blocks):
        return PrecondState(0, torch.zeros_like(x))

    def update(g, state, x, lr, blocks):
        v0 = g * g if state.count == 0 else state.v0
        return -lr * g / (v0.sqrt() + e), PrecondState(state.count + 1, v0)

    def update_(g, state, x, lr, blocks, out, tmp):
        v0 = torch.mul(g, g, out=state.v0) if state.count == 0 else state.v0
        den = _sqrt_into(tmp, v0).add_(e)
        _axpy(out, x, -lr, torch.div(g, den, out=den))
        return PrecondState(state.count + 1, v0)

    return Optimizer("adam_fixed_precond", init, update, dict(eps=e), update_=update_)


@register("rmsprop")
def rmsprop(alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
            centered: bool = False) -> Optimizer:
    r"""RMSprop (Tieleman & Hinton 2012, lecture 6.5), torch.optim.RMSprop's arithmetic:
    v_t = alpha v_{t-1} + (1 - alpha) g_t^2, x <- x - eta g_t / (sqrt(v_t) + eps);
    ``centered`` subtracts the squared running mean of g; ``momentum`` accumulates
    b_t = mu b_{t-1} + g_t / (sqrt(v_t) + eps) and steps along b_t."""
    a = _in01("alpha", alpha, closed_right=True)
    e = _nonneg("eps", eps)
    wd = _nonneg("weight_decay", weight_decay)
    mu = _nonneg("momentum", momentum)
    centered = check_flag("centered", centered)

    def init(x, blocks):
        z = torch.zeros_like(x)
        return RMSpropState(0, z, z if centered else None, z if mu else None)

    def update(g, state, x, lr, blocks):
        g = _decay(g, x, wd)
        sq = a * state.square_avg + (1 - a) * (g * g)
        gavg = None
        if centered:
            gavg = torch.lerp(state.grad_avg, g, 1 - a)
            avg = (sq - gavg * gavg).sqrt() + e
        else:
            avg = sq.sqrt() + e
        if mu:
            buf = mu * state.momentum_buffer + g / avg
            return -lr * buf, RMSpropState(state.count + 1, sq, gavg, buf)
        return -lr * (g / avg), RMSpropState(state.count + 1, sq, gavg, None)

    def update_(g, state, x, lr, blocks, out, tmp):
        g = _decay_into(tmp, g, x, wd)
        sq = state.square_avg.mul_(a).addcmul_(g, g, value=1 - a)
        avg = _scratch(tmp, g)
        gavg = None
        if centered:
            gavg = state.grad_avg.lerp_(g, 1 - a)
            _sqrt_into(avg, torch.addcmul(sq, gavg, gavg, value=-1, out=avg))
        else:
            _sqrt_into(avg, sq)
        q = torch.div(g, avg.add_(e), out=avg)
        if mu:
            buf = state.momentum_buffer.mul_(mu).add_(q)
            _axpy(out, x, -lr, buf)
            return RMSpropState(state.count + 1, sq, gavg, buf)
        _axpy(out, x, -lr, q)
        return RMSpropState(state.count + 1, sq, gavg, None)

    return Optimizer("rmsprop", init, update, dict(alpha=a, eps=e, weight_decay=wd, momentum=mu,
                                                    centered=bool(centered)), update_=update_)


@register("adagrad")
def adagrad(lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10) -> Optimizer:
    r"""Adagrad (Duchi et al. 2011), torch.optim.Adagrad's arithmetic:
    s_t = s_{t-1} + g_t^2, x <- x - eta_t g_t / (sqrt(s_t) + eps), eta_t = eta / (1 + (t-1) lr_decay)."""
    dec = _nonneg("lr_decay", lr_decay)
    wd = _nonneg("weight_decay", weight_decay)
    acc = _nonneg("initial_accumulator_value", initial_accumulator_value)
    e = _nonneg("eps", eps)

    def init(x, blocks):
        return AdagradState(0, torch.full_like(x, acc))

    def update(g, state, x, lr, blocks):
        g = _decay(g, x, wd)
        t = state.count + 1
        clr = lr / (1 + (t - 1) * dec)
        s = state.sum + g * g
        return -clr * (g / (s.sqrt() + e)), AdagradState(t, s)

    def update_(g, state, x, lr, blocks, out, tmp):
        g = _decay_into(tmp, g, x, wd)
        t = state.count + 1
        clr = lr / (1 + (t - 1) * dec)
        s = state.sum.addcmul_(g, g)
        den = _sqrt_into(_scratch(tmp, g), s).add_(e)
        _axpy(out, x, -clr, torch.div(g, den, out=den))
        return AdagradState(t, s)

    return Optimizer("adagrad", init, update, dict(lr_decay=dec, weight_decay=wd,
                                                    initial_accumulator_value=acc, eps=e), update_=update_)


# --------------------------------------------------------------------------
# the torch.optim adapter
# --------------------------------------------------------------------------
def _param_blocks(params, names, how) -> Blocks:
    if how == "tensor":
        return Blocks.from_sizes([p.numel() for p in params], names=names)
    if how == "single":
        return Blocks.single(sum(p.numel() for p in params))
    if how == "rows":  # one block per output row of a matrix (per neuron), a vector is one block
        sizes, bnames = [], []
        for p, nm in zip(params, names):
            rows = p.shape[0] if p.dim() >= 2 else 1
            sizes += [p.numel() // rows] * rows
            bnames += [f"{nm}[{r}]" for r in range(rows)] if rows > 1 else [nm]
        return Blocks.from_sizes(sizes, names=bnames)
    if callable(how):
        sizes = []
        for p in params:
            s = [int(v) for v in how(p)]
            if sum(s) != p.numel():
                raise ValueError(f"blocks callable returned sizes summing to {sum(s)} for a parameter of {p.numel()} entries")
            sizes += s
        return Blocks.from_sizes(sizes)
    raise ValueError(f"blocks must be 'tensor', 'rows', 'single' or a callable param -> sizes; got {how!r}")


class RuleOptimizer(torch.optim.Optimizer):
    """Run any registered rule on a model's parameters, as a ``torch.optim.Optimizer``.

    Each parameter group is one row: its parameters are flattened and concatenated into a
    (1, D) vector, the rule's ``update`` is applied once, and the step is written back. The
    blocks of the row are the parameter tensors (``blocks="tensor"``), each row of every
    matrix (``"rows"``, Adam-mini-like), a single block (``"single"``), or a callable
    ``param -> list of sizes``. The set of parameters a group updates is fixed at the
    first step: parameters with no gradient then are left out for good (as torch.optim
    skips them); a kept parameter that later has no gradient takes a zero gradient.

    Example::

        opt = RuleOptimizer(model.parameters(), "adam", lr=1e-3, betas=(0.9, 0.999))
        loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params, rule="adam", lr: float = 1e-3, blocks="tensor", names=None, **hyper):
        self.rule = make(rule, **hyper) if isinstance(rule, str) else rule
        if hyper and not isinstance(rule, str):
            raise ValueError("pass hyperparameters either to make() or here, not both")
        validate_lr(lr, "lr")
        self._blocks_how = blocks
        super().__init__(params, dict(lr=lr))
        if names is not None:
            names = list(names)
            total = sum(len(g["params"]) for g in self.param_groups)
            if len(names) != total:
                raise ValueError(f"got {len(names)} parameter names for {total} parameters")
        self._names = names

    def _layout(self, gi, group):
        key = group["params"][0]
        st = self.state[key]
        if "heterosim_active" not in st:
            active = [i for i, p in enumerate(group["params"]) if p.grad is not None]
            if not active:
                return None
            offset = sum(len(g["params"]) for g in self.param_groups[:gi])
            params = [group["params"][i] for i in active]
            nm = [self._names[offset + i] if self._names else f"group{gi}.param{i}" for i in active]
            st["heterosim_active"] = active
            st["heterosim_blocks"] = _param_blocks(params, nm, self._blocks_how).to(params[0].device)
        return st

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            st = self._layout(gi, group)
            if st is None:
                continue
            params = [group["params"][i] for i in st["heterosim_active"]]
            outside = [i for i, p in enumerate(group["params"])
                       if p.grad is not None and i not in st["heterosim_active"]]
            if outside:
                raise ValueError("a parameter that had no gradient at the first step has one now; "
                                 "RuleOptimizer fixes the set of updated parameters at the first step")
            x = torch.cat([p.reshape(-1) for p in params]).unsqueeze(0)
            g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                           for p in params]).unsqueeze(0)
            blocks = st["heterosim_blocks"]
            rs = st.get("rule_state")
            if rs is None:
                rs = self.rule.init(x, blocks)
            step, rs = self.rule.update(g, rs, x, group["lr"], blocks)
            st["rule_state"] = rs
            offset = 0
            for p in params:
                n = p.numel()
                p.add_(step[0, offset:offset + n].view_as(p))
                offset += n
        return loss

    def rule_state(self, group: int = 0):
        """The rule's state for a parameter group (flat (1, D) tensors, in parameter order)."""
        return self.state[self.param_groups[group]["params"][0]].get("rule_state")

    def blocks(self, group: int = 0) -> Blocks | None:
        return self.state[self.param_groups[group]["params"][0]].get("heterosim_blocks")
