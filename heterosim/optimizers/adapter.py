r"""The torch.optim adapter: any rule on a model's parameters, stepping them in place.

:class:`RuleOptimizer` is a ``torch.optim.Optimizer`` that runs a rule's own primitives (the
chain of :mod:`heterosim.optimizers.primitives`) on a :class:`TensorList`, a list of the
model's tensors whose ``+ - * /`` and :mod:`~heterosim.optimizers.ops` functions are torch's
foreach kernels (``torch._foreach_add``, ``_foreach_lerp``, ...). The same ``update`` that the
engine runs on a (B, d) batch runs here on the parameters: nothing is copied into one flat row,
the state is kept per parameter (``opt.state[p]["exp_avg"]``, ...), and the step is added with
``torch._foreach_add_(params, step)``.

Rounding
--------
Every operation of a TensorList rounds as the same operation on a tensor does (the engine's
reference path): ``s - tl`` is computed as ``(-tl) + s`` (exact), ``s / tl`` as torch computes
``s / tensor`` (``reciprocal() * s``), ``sqrt`` is :func:`heterosim.optimizers.ops.sqrt`'s
(numpy's correctly rounded kernel for float32/float64 CPU tensors, torch's elsewhere). An
operation that cannot be done exactly (``lerp`` towards a number, a weight that is not a
number, an operand that is neither a number, a 0-dim tensor nor a TensorList of the same length)
raises ``TypeError``.

Evaluation
----------
A TensorList is lazy: an operation records a node, and the values are computed when they are
needed (a block reduction, ``.tensors``, the end of the step). Because the whole step is known
when it is computed, a temporary that nothing can read any more (no live TensorList refers to
it, its last consumer is the current operation) is overwritten in place (``_foreach_mul_``,
``lerp_``, a kernel's ``out=``), and so is the previous state, which the step replaces, as
torch.optim updates its state in place. Each state field of a bucket of parameters is stored in
one contiguous buffer whose per-parameter views are the tensors of ``opt.state[p]``; an operation
between such buffers (the second moment, the bias corrections, the division) is one kernel over
the buffer instead of one per parameter. On the CPU a finished temporary is recycled for the next
operation and the next step (at most two buffers of a bucket's size are kept), since a fresh
buffer of a model's size costs more in page faults than the arithmetic: Adam's step then
allocates nothing. None of this changes a value: each operation is the same IEEE operation on the
same operands as on a tensor.

Caveat for the "row": a reduction over all the parameters (``row_norm``, ``row_abs_sum``,
``blocks="single"``) spans the parameters that step together (a bucket of one device, dtype and
step count), which is the whole group unless some parameters skipped steps or differ in device
or dtype.
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import threading
import weakref
from typing import Sequence

import numpy as np
import torch

from heterosim.blocks import Blocks
from heterosim.optimizers.checks import validate_lr
from heterosim.optimizers.primitives import RuleState, chain_update
from heterosim.optimizers.rules import _REGISTRY, Optimizer, make

__all__ = ["RuleOptimizer", "TensorList", "ParamBlocks"]

Tensor = torch.Tensor


# =============================================================================== layouts and buffers
class _Layout:
    """The shapes of a list of tensors, and how a flat buffer of ``total`` entries splits into them."""

    __slots__ = ("shapes", "numels", "total")

    def __init__(self, shapes):
        self.shapes = shapes
        self.numels = tuple(math.prod(s) for s in shapes)
        self.total = sum(self.numels)


_LAYOUTS: dict = {}


def _layout(shapes: tuple) -> _Layout:
    """The interned layout of ``shapes`` (a tuple of torch.Size): equal shapes give the same object."""
    lay = _LAYOUTS.get(shapes)
    if lay is None:
        if len(_LAYOUTS) > 4096:
            _LAYOUTS.clear()
        lay = _LAYOUTS[shapes] = _Layout(shapes)
    return lay


def _same_layout(a: _Layout, b: _Layout) -> bool:
    return a is b or a.shapes == b.shapes


def _views(flat: Tensor, lay: _Layout) -> list:
    return [v.view(s) for v, s in zip(flat.split(lay.numels), lay.shapes)]


class _Buf:
    """Values of a list of tensors: ``ts`` (the tensors) and, when they are the consecutive views of
    one contiguous buffer, ``flat`` (the buffer; then ``ts`` is built only when asked for)."""

    __slots__ = ("ts", "flat", "layout", "_dtype", "fresh")

    def __init__(self, ts=None, flat=None, layout=None, fresh=False):
        self.ts = ts
        self.flat = flat
        self.layout = layout if layout is not None else _layout(tuple(t.shape for t in ts))
        self._dtype = False
        self.fresh = fresh  # allocated by this step's arithmetic: nothing outside may hold it

    def views(self) -> list:
        if self.ts is None:
            self.ts = _views(self.flat, self.layout)
        return self.ts

    def first(self) -> Tensor | None:
        if self.flat is not None:
            return self.flat
        return self.ts[0] if self.ts else None

    def dtype(self):
        """The common dtype and device of the tensors, or None when they differ."""
        if self._dtype is False:
            if self.flat is not None:
                self._dtype = (self.flat.dtype, self.flat.device)
            elif not self.ts:
                self._dtype = None
            else:
                d = (self.ts[0].dtype, self.ts[0].device)
                self._dtype = d if all(t.dtype == d[0] and t.device == d[1] for t in self.ts) else None
        return self._dtype


def _pack(ts: Sequence[Tensor], layout: _Layout | None = None):
    """A new contiguous buffer holding copies of ``ts`` (one dtype and device), and its views."""
    layout = layout if layout is not None else _layout(tuple(t.shape for t in ts))
    flat = torch.empty(layout.total, dtype=ts[0].dtype, device=ts[0].device)
    views = _views(flat, layout)
    if views:
        torch._foreach_copy_(views, list(ts))
    return flat, views, layout


# =============================================================================== the lazy graph
class _Node:
    """One operation of a step (or a leaf: ``op`` None, ``val`` set).

    ``owned``: the buffer may be overwritten once nothing else can read it; ``nuse``: consumers
    recorded and not yet computed; ``wref``: the TensorList that shows this node (a node whose
    TensorList is gone can get no new consumer)."""

    __slots__ = ("op", "args", "val", "owned", "nuse", "wref", "size")

    def __init__(self, op, args, size, val=None, owned=False):
        self.op = op
        self.args = args
        self.val = val
        self.owned = owned
        self.nuse = 0
        self.wref = None
        self.size = size


def _free(n: _Node) -> bool:
    """``n``'s buffer may be overwritten by the consumer being computed."""
    return n.owned and n.nuse == 1 and n.wref() is None and n.val is not None


class _Pool:
    """Buffers of finished temporaries, kept for the next operations and steps (CPU only: a fresh
    buffer of a model's size costs page faults on every step, more than the arithmetic). At most
    ``per_layout`` buffers per bucket layout are kept, and only for layouts the last step used."""

    def __init__(self, per_layout: int = 2):
        self.per_layout = per_layout
        self.free: list = []
        self.used: set = set()

    def take(self, layout: _Layout, dtype, device) -> _Buf:
        self.used.add(layout.shapes)
        for i, b in enumerate(self.free):
            f = b.flat
            if _same_layout(b.layout, layout) and f.dtype == dtype and f.device == device:
                return self.free.pop(i)
        return _Buf(None, torch.empty(layout.total, dtype=dtype, device=device), layout, fresh=True)

    def give(self, buf: _Buf) -> None:
        if buf.flat is None or not buf.fresh:
            return
        same = [i for i, b in enumerate(self.free) if _same_layout(b.layout, buf.layout)]
        if len(same) >= self.per_layout:
            self.free.pop(same[0])
        self.free.append(buf)

    def trim(self) -> None:
        """After a step: forget the buffers of layouts that step did not use."""
        self.free = [b for b in self.free if b.layout.shapes in self.used]
        self.used = set()


_LOCAL = threading.local()  # .pool: the pool of the step being computed on this thread


def _run(targets, pool: _Pool | None = None) -> None:
    """Compute the nodes ``targets`` and what they depend on (inputs first)."""
    if pool is None:
        pool = getattr(_LOCAL, "pool", None)
    order, seen = [], set()
    stack = [(t, False) for t in reversed(targets) if t.val is None]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if n.val is not None or id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        for a in n.args:
            if isinstance(a, _Node) and a.val is None and id(a) not in seen:
                stack.append((a, False))
    for n in order:
        _COMPUTE[n.op](n, pool)
        for a in n.args:
            if isinstance(a, _Node):
                a.nuse -= 1
                if a.nuse <= 0 and a.wref() is None and a.val is not None:
                    if pool is not None and a.owned:
                        pool.give(a.val)  # nothing can read it any more (given only if fresh)
                    a.val = None
        n.args = ()


def _scalar_for(v, buf: _Buf):
    """A 0-dim tensor operand as the kernels take it: kept where it lies on the list's device,
    else its value (the kernels read a 0-dim operand's value and round it to the list's dtype,
    as they round a Python number, so both give the same result)."""
    if isinstance(v, Tensor):
        f = buf.first()
        if f is None or v.device != f.device:
            return v.item()
    return v


# op: (torch function with out=, foreach, in-place foreach, commutative)
_EW = {
    "add": (torch.add, torch._foreach_add, torch._foreach_add_, True),
    "sub": (torch.sub, torch._foreach_sub, torch._foreach_sub_, False),
    "mul": (torch.mul, torch._foreach_mul, torch._foreach_mul_, True),
    "div": (torch.div, torch._foreach_div, torch._foreach_div_, False),
    "neg": (torch.neg, torch._foreach_neg, torch._foreach_neg_, False),
    "abs": (torch.abs, torch._foreach_abs, torch._foreach_abs_, False),
    "sign": (torch.sign, torch._foreach_sign, torch._foreach_sign_, False),
    "reciprocal": (torch.reciprocal, torch._foreach_reciprocal, torch._foreach_reciprocal_, False),
    "clamp_min": (torch.clamp_min, torch._foreach_clamp_min, torch._foreach_clamp_min_, False),
    "pow": (torch.pow, torch._foreach_pow, torch._foreach_pow_, False),
    "lerp": (torch.lerp, torch._foreach_lerp, torch._foreach_lerp_, False),
    "maximum": (torch.maximum, torch._foreach_maximum, torch._foreach_maximum_, True),
}


def _c_ew(n: _Node, pool) -> None:
    """An elementwise operation ``op(a[, b], *numbers)``, each tensor computed by the same torch
    kernel as on a tensor. Where the result goes, fastest first: into a's buffer (a is free), into
    b's (b is free: ``b op a`` for a commutative op, else the kernel's ``out=b``), into a recycled
    buffer (CPU), into a new one. A flat path (one kernel over the buffers) is taken when every
    list operand is one buffer of the same layout."""
    fn, fe, fe_, comm = _EW[n.op]
    a = n.args[0]
    A = a.val
    b = n.args[1] if len(n.args) > 1 and isinstance(n.args[1], _Node) else None
    consts = [_scalar_for(c, A) for c in n.args[(2 if b is not None else 1):]]
    B = b.val if b is not None else None
    if B is not None and not _same_layout(A.layout, B.layout):  # broadcasting: tensor by tensor, as torch
        n.val, n.owned = _Buf(list(fe(A.views(), B.views(), *consts)), fresh=True), True
        return
    d = A.dtype()
    keep = (d is not None and d[0].is_floating_point and bool(A.layout.shapes)
            and (B is None or B.dtype() == d)
            and all(torch.result_type(A.first(), c) == d[0] for c in consts if n.op not in ("lerp", "pow")))
    flat = A.flat is not None and (B is None or B.flat is not None)
    bs = () if B is None else (B,)
    tgt = None
    if keep:
        if _free(a):
            tgt = a
        elif b is not None and _free(b) and (comm or flat or pool is not None):
            tgt = b
    if tgt is a:
        R = A
        if flat:
            fn(A.flat, *[x.flat for x in bs], *consts, out=A.flat)
        else:
            fe_(A.views(), *[x.views() for x in bs], *consts)
    elif tgt is not None:  # tgt is b
        R = B
        if comm:  # b op a == a op b exactly
            if flat:
                fn(B.flat, A.flat, *consts, out=B.flat)
            else:
                fe_(B.views(), A.views(), *consts)
        elif flat:
            fn(A.flat, B.flat, *consts, out=B.flat)
        else:
            for x, y in zip(A.views(), B.views()):
                fn(x, y, *consts, out=y)
    elif keep and pool is not None:
        R = pool.take(A.layout, *d)
        if flat:
            fn(A.flat, *[x.flat for x in bs], *consts, out=R.flat)
        else:
            for x, *y in zip(A.views(), *[x.views() for x in bs], R.views()):
                fn(x, *y[:-1], *consts, out=y[-1])
    elif flat:
        R = _Buf(None, fn(A.flat, *[x.flat for x in bs], *consts), A.layout, fresh=True)
    else:
        R = _Buf(list(fe(A.views(), *[x.views() for x in bs], *consts)), None, A.layout, fresh=True)
    if tgt is not None:
        tgt.val = None
    n.val, n.owned = R, True


def _numpy_sqrt(t: Tensor) -> bool:
    """Whether :func:`heterosim.optimizers.ops.sqrt` takes numpy's kernel for this tensor."""
    return t.device.type == "cpu" and t.dtype in (torch.float64, torch.float32) and not t.requires_grad


def _sqrt_into(x: Tensor, out: Tensor) -> None:
    if _numpy_sqrt(x) and _numpy_sqrt(out):
        np.sqrt(x.numpy(), out=out.numpy())
    else:
        torch.sqrt(x, out=out)


def _sqrt_new(x: Tensor) -> Tensor:
    return torch.from_numpy(np.sqrt(x.numpy())) if _numpy_sqrt(x) else torch.sqrt(x)


def _c_sqrt(n: _Node, pool) -> None:
    """ops.sqrt on every tensor: numpy's correctly rounded kernel on float CPU tensors (as the
    tensor path), torch.sqrt elsewhere; in place, into a recycled buffer or a new one."""
    (a,) = n.args
    A = a.val
    d = A.dtype()
    keep = d is not None and d[0].is_floating_point and bool(A.layout.shapes)
    if keep and _free(a):
        R = A
    elif keep and pool is not None:
        R = pool.take(A.layout, *d)
    else:
        R = None
    if R is not None:
        if A.flat is not None and R.flat is not None:
            _sqrt_into(A.flat, R.flat)
        else:
            for x, r in zip(A.views(), R.views()):
                _sqrt_into(x, r)
        if R is A:
            a.val = None
    elif A.flat is not None:
        R = _Buf(None, _sqrt_new(A.flat), A.layout, fresh=True)
    else:
        R = _Buf([_sqrt_new(t) for t in A.views()], None, A.layout, fresh=True)
    n.val, n.owned = R, True


def _then_scalar(n: _Node, pool, first_op: str, op: str) -> None:
    """``op(first_op(a), s)``: the first operation into a free or new buffer, the second in place."""
    a, s = n.args
    tmp = _Node(first_op, (a,), n.size)
    _c_ew(tmp, pool)
    R = tmp.val
    s = _scalar_for(s, R)
    fn, fe, fe_, _ = _EW[op]
    d = R.dtype()
    if d is not None and torch.result_type(R.first(), s) == d[0]:
        if R.flat is not None:
            fn(R.flat, s, out=R.flat)
        else:
            fe_(R.views(), s)
    else:
        R = _Buf(list(fe(R.views(), s)), None, R.layout, fresh=True)
    n.val, n.owned = R, True


def _c_rsub(n: _Node, pool) -> None:
    """s - a, computed as (-a) + s: the same IEEE operation (a sum with -a), no reciprocal."""
    _then_scalar(n, pool, "neg", "add")


def _c_rdiv(n: _Node, pool) -> None:
    """s / a as torch computes ``s / tensor``: ``a.reciprocal() * s`` for a Python number s (torch's
    ``Tensor.__rtruediv__``), a true division ``torch.div(s, a)`` for a 0-dim tensor s."""
    a, s = n.args
    if isinstance(s, Tensor):
        A = a.val
        if A.flat is not None and s.device == A.flat.device:
            n.val = _Buf(None, torch.div(s, A.flat), A.layout, fresh=True)
        else:
            n.val = _Buf([torch.div(s.to(t.device), t) for t in A.views()], None, A.layout, fresh=True)
        n.owned = True
        return
    _then_scalar(n, pool, "reciprocal", "mul")


_COMPUTE: dict = {op: _c_ew for op in _EW}
_COMPUTE.update(sqrt=_c_sqrt, rsub=_c_rsub, rdiv=_c_rdiv)


# =============================================================================== TensorList
def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, Tensor)


class TensorList:
    """A list of tensors with the arithmetic of one tensor, computed by torch's foreach kernels.

    ``tl + other``, ``- * /`` (other: a Python number, a 0-dim tensor or a TensorList of the same
    length), unary ``-``, ``abs``, and the methods :mod:`heterosim.optimizers.ops` dispatches to
    (``sqrt``, ``sign``, ``lerp``, ``zeros_like``, ``full_like``, ``clamp_min``, ``row_norm``,
    ``row_abs_sum``; ``maximum``, ``pow``). Each rounds as the same operation on each tensor (module
    doc). Values are computed when needed; :attr:`tensors` returns them.

    Example::

        tl = TensorList([torch.ones(3), torch.full((2, 2), 4.0)])
        (1 - tl.sqrt() / 2).tensors          # [tensor([0.5, 0.5, 0.5]), tensor([[0., 0.], [0., 0.]])]
    """

    __slots__ = ("_node", "__weakref__")

    def __init__(self, tensors):
        ts = list(tensors)
        bad = [type(t).__name__ for t in ts if not isinstance(t, Tensor)]
        if bad:
            raise TypeError(f"a TensorList holds tensors; got {', '.join(bad)}")
        node = _Node(None, (), len(ts), _Buf(ts), owned=False)
        self._node = node
        node.wref = weakref.ref(self)

    @classmethod
    def _of(cls, node: _Node) -> "TensorList":
        obj = cls.__new__(cls)
        obj._node = node
        node.wref = weakref.ref(obj)
        return obj

    @classmethod
    def _leaf(cls, buf: _Buf, owned: bool) -> "TensorList":
        return cls._of(_Node(None, (), len(buf.layout.shapes), buf, owned))

    # ------------------------------------------------------------------ plumbing
    @property
    def tensors(self) -> list:
        """The values (computed now if they are not yet). The tensors handed out are never
        overwritten by a later operation."""
        buf = self._buf()
        self._node.owned = False
        return list(buf.views())

    def _buf(self) -> _Buf:
        if self._node.val is None:
            _run([self._node])
        return self._node.val

    def __len__(self) -> int:
        return self._node.size

    @property
    def dtype(self):
        """The dtype of the tensors (computed now if they are not yet; the first tensor's if
        they differ)."""
        first = self._buf().first()
        return first.dtype if first is not None else torch.get_default_dtype()

    def __repr__(self) -> str:
        return f"TensorList({len(self)} tensors)"

    def __bool__(self):
        raise TypeError("a TensorList has no truth value (a primitive may branch only on numbers of p)")

    def _operand(self, v, what: str):
        if isinstance(v, TensorList):
            if len(v) != len(self):
                raise ValueError(f"TensorLists of different lengths ({len(self)} and {len(v)}) in {what}")
            return v._node
        if _number(v):
            return v if isinstance(v, (int, float)) else float(v)
        if isinstance(v, Tensor) and v.numel() == 1 and v.dim() <= 2:
            return v.reshape(())
        raise TypeError(f"a TensorList {what} takes a number, a 0-dim tensor or a TensorList of the same length; "
                        f"got {type(v).__name__}{tuple(v.shape) if isinstance(v, Tensor) else ''}")

    def _new(self, op, *args) -> "TensorList":
        for a in args:
            if isinstance(a, _Node):
                a.nuse += 1
        return TensorList._of(_Node(op, args, len(self)))

    def _bin(self, op, other):
        return self._new(op, self._node, self._operand(other, op))

    # ------------------------------------------------------------------ operators
    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):  # o + tl == tl + o exactly (addition commutes in IEEE 754)
        return self._bin("add", o)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._new("rsub", self._node, self._operand(o, "subtraction"))

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o)

    def __truediv__(self, o):
        return self._bin("div", o)

    def __rtruediv__(self, o):
        return self._new("rdiv", self._node, self._operand(o, "division"))

    def __neg__(self):
        return self._new("neg", self._node)

    def __abs__(self):
        return self._new("abs", self._node)

    def __pow__(self, e):
        if not _number(e):
            raise TypeError(f"a TensorList's power takes a number exponent; got {type(e).__name__}")
        return self._new("pow", self._node, e)

    # ------------------------------------------------------------------ the functions of ops
    def abs(self) -> "TensorList":
        return self._new("abs", self._node)

    def sqrt(self) -> "TensorList":
        return self._new("sqrt", self._node)

    def sign(self) -> "TensorList":
        return self._new("sign", self._node)

    def lerp(self, end, weight) -> "TensorList":
        if not isinstance(end, TensorList):
            raise TypeError(f"TensorList.lerp takes a TensorList end (as torch.lerp takes a tensor); got "
                            f"{type(end).__name__}")
        if not _number(weight):
            raise TypeError(f"TensorList.lerp takes a number weight; got {type(weight).__name__}")
        return self._new("lerp", self._node, self._operand(end, "lerp"), float(weight))

    def clamp_min(self, lo) -> "TensorList":
        if not _number(lo):
            raise TypeError(f"TensorList.clamp_min takes a number; got {type(lo).__name__}")
        return self._new("clamp_min", self._node, lo)

    def maximum(self, other: "TensorList") -> "TensorList":
        if not isinstance(other, TensorList):
            raise TypeError(f"TensorList.maximum takes a TensorList; got {type(other).__name__}")
        return self._new("maximum", self._node, self._operand(other, "maximum"))

    def zeros_like(self) -> "TensorList":
        return self.full_like(0.0)

    def full_like(self, value) -> "TensorList":
        buf = self._node.val if self._node.val is not None else self._buf()
        d = buf.dtype()
        if d is not None and len(self):
            flat = torch.full((buf.layout.total,), value, dtype=d[0], device=d[1])
            return TensorList._leaf(_Buf(None, flat, buf.layout, fresh=True), owned=True)
        ts = [torch.full_like(t, value) for t in buf.views()]
        return TensorList._leaf(_Buf(ts, None, buf.layout, fresh=True), owned=True)

    def row_norm(self) -> Tensor:
        """||u||_2 over all the tensors (the adapter's row: the parameters stepping together), a
        0-dim tensor."""
        buf = self._buf()
        if buf.flat is not None:
            return torch.linalg.vector_norm(buf.flat)
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(buf.views())))

    def row_abs_sum(self) -> Tensor:
        """||u||_1 over all the tensors, a 0-dim tensor."""
        buf = self._buf()
        if buf.flat is not None:
            return torch.linalg.vector_norm(buf.flat, 1)
        return torch.stack(torch._foreach_norm(buf.views(), 1)).sum()


# =============================================================================== block partitions
_HOWS = ("tensor", "rows", "single")


def _check_how(how):
    if how in _HOWS or callable(how):
        return how
    raise ValueError(f"blocks must be 'tensor', 'rows', 'single' or a callable param -> sizes; got {how!r}")


def _param_sizes(how, p: Tensor) -> list[int]:
    """The block sizes of one parameter (in the order of its flattened entries)."""
    n = p.numel()
    if how == "tensor" or how == "single":
        return [n]
    if how == "rows":
        rows = p.shape[0] if p.dim() >= 2 else 1
        return [n // rows] * rows
    sizes = [int(v) for v in how(p)]
    if sum(sizes) != n or any(s <= 0 for s in sizes):
        raise ValueError(f"blocks callable returned sizes {sizes} (sum {sum(sizes)}) for a parameter of {n} "
                         "entries; they must be positive and sum to its number of entries")
    return sizes


class ParamBlocks:
    """The block partition of a parameter group, over a :class:`TensorList` of its parameters.

    ``how``: ``"tensor"`` (one block per parameter tensor), ``"rows"`` (one block per output row of
    each matrix, a vector is one block), ``"single"`` (one block spanning the parameters) or a
    callable ``param -> list of sizes`` (consecutive blocks of the flattened parameter).

    A per-block value is a TensorList with one small tensor per parameter, holding that
    parameter's blocks (shape ``(n_blocks_of_param,)``); for ``"single"`` each parameter holds the
    group's one value (replicated, so state stays per parameter). ``params`` are the parameters
    stepping together (a bucket); ``group`` all the group's parameters (``n``, ``sizes`` and the
    order of a 1-D tensor of all block values refer to it). ``mean``, ``norms`` and ``"single"``
    reduce over ``params``.
    """

    def __init__(self, how, params: Sequence[Tensor], group: Sequence[Tensor] | None = None):
        self.how = _check_how(how)
        self.params = list(params)
        self.group = list(group) if group is not None else self.params
        self._sizes = None
        self._offsets = None

    # ------------------------------------------------------------------ the partition
    def _per_param(self) -> list[list[int]]:
        if self._sizes is None:
            self._sizes = [_param_sizes(self.how, p) for p in self.params]
        return self._sizes

    @property
    def single(self) -> bool:
        return self.how == "single"

    @property
    def n(self) -> int:
        """The number of blocks of the group."""
        if self.single:
            return 1
        return sum(len(_param_sizes(self.how, p)) for p in self.group)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The block sizes of the group, in order."""
        if self.single:
            return (sum(p.numel() for p in self.group),)
        return tuple(s for p in self.group for s in _param_sizes(self.how, p))

    def _block_layout(self) -> _Layout:
        return _layout(tuple(torch.Size([1 if self.single else len(s)]) for s in self._per_param()))

    def _like(self):
        p = self.params[0]
        return p.dtype, p.device

    def _perblock(self, flat: Tensor) -> TensorList:
        return TensorList._leaf(_Buf(None, flat, self._block_layout(), fresh=True), owned=True)

    def _replicated(self, value: Tensor) -> TensorList:
        return self._perblock(value.reshape(1).expand(len(self.params)).contiguous())

    # ------------------------------------------------------------------ reductions
    def zeros(self, x) -> TensorList:
        """Zeros, one per block of each parameter (a per-block state)."""
        dtype, device = self._like()
        return self._perblock(torch.zeros(self._block_layout().total, dtype=dtype, device=device))

    def _sums(self, ts, square: bool) -> Tensor:
        """Per-block sums of ts (of ts**2 when ``square``), flat over the bucket's blocks."""
        lay = self._block_layout()
        f = ts[0]
        out = torch.empty(lay.total, dtype=f.dtype, device=f.device)
        views = _views(out, lay)
        for t, sizes, o in zip(ts, self._per_param(), views):
            v = t * t if square else t
            k = len(sizes)
            if k == 1:
                torch.sum(v.reshape(1, -1), 1, out=o)
            elif len(set(sizes)) == 1:
                torch.sum(v.reshape(k, -1), 1, out=o)
            else:
                idx = torch.repeat_interleave(torch.arange(k, device=f.device), torch.tensor(sizes, device=f.device))
                o.zero_().index_add_(0, idx, v.reshape(-1))
        return out

    def mean(self, v: TensorList) -> TensorList:
        """Per-block means of v: sum_b(v) / d_b (as :meth:`heterosim.blocks.Blocks.mean`)."""
        ts = v.tensors
        if self.single:
            total = torch.stack([t.sum() for t in ts]).sum()
            return self._replicated(total / sum(t.numel() for t in ts))
        sums = self._sums(ts, square=False)
        sizes = torch.tensor([s for ss in self._per_param() for s in ss], dtype=sums.dtype, device=sums.device)
        return self._perblock(sums / sizes)

    def norms(self, v: TensorList) -> TensorList:
        """Per-block l2 norms ||v_b||_2."""
        ts = v.tensors
        if self.single:
            return self._replicated(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(ts))))
        if all(len(s) == 1 for s in self._per_param()):
            return self._perblock(torch.stack(torch._foreach_norm(ts)))
        return self._perblock(self._sums(ts, square=True).sqrt())

    def expand(self, per_block) -> TensorList:
        """Per-block values broadcast to the parameters' shapes: a per-block TensorList (as
        :meth:`mean` returns), or a 1-D tensor of the group's n block values in order."""
        dtype, device = self._like()
        if isinstance(per_block, TensorList):
            vals = per_block.tensors
        elif isinstance(per_block, Tensor) and per_block.dim() == 1 and per_block.numel() == self.n:
            c = per_block.to(device=device, dtype=dtype)
            if self.single:
                vals = [c] * len(self.params)
            else:
                if self._offsets is None:
                    offs, o = {}, 0
                    for p in self.group:
                        offs[id(p)] = o
                        o += len(_param_sizes(self.how, p))
                    self._offsets = offs
                vals = [c[self._offsets[id(p)]:self._offsets[id(p)] + len(s)]
                        for p, s in zip(self.params, self._per_param())]
        else:
            raise TypeError(f"ParamBlocks.expand takes a per-block TensorList or a 1-D tensor of the group's "
                            f"{self.n} block values; got {type(per_block).__name__}")
        out = []
        for p, b, sizes in zip(self.params, vals, self._per_param()):
            k = 1 if self.single else len(sizes)
            if k == 1:
                out.append(b.reshape([1] * p.dim()).expand(p.shape) if p.dim() else b.reshape(()))
            elif p.dim() >= 2 and k == p.shape[0] and len(set(sizes)) == 1:
                out.append(b.reshape(k, *[1] * (p.dim() - 1)).expand(p.shape))
            else:
                out.append(torch.repeat_interleave(b, torch.tensor(sizes, device=b.device)).reshape(p.shape))
        return TensorList._leaf(_Buf(out, None, _layout(tuple(p.shape for p in self.params))), owned=False)

    def blocks(self, names=None) -> Blocks:
        """The group's partition as a :class:`heterosim.blocks.Blocks` (sizes and names)."""
        return _group_blocks(self.how, self.group, names)


def _group_blocks(how, params, names=None) -> Blocks:
    if how == "single":
        return Blocks.single(sum(p.numel() for p in params))
    sizes, bnames = [], []
    for p, nm in zip(params, names or [None] * len(params)):
        s = _param_sizes(how, p)
        sizes += s
        if how == "tensor":
            bnames.append(nm)
        elif how == "rows":
            bnames += [f"{nm}[{r}]" for r in range(len(s))] if len(s) > 1 else [nm]
    use_names = names is not None and how in ("tensor", "rows")
    return Blocks.from_sizes(sizes, names=bnames if use_names else None)


# =============================================================================== the optimizer
def _freeze(v):
    """A hashable form of a hyperparameter value (for the cache of built rules)."""
    if isinstance(v, Tensor):
        return ("tensor", tuple(v.flatten().tolist()))
    if isinstance(v, np.ndarray):
        return ("array", tuple(v.flatten().tolist()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(u) for u in v)
    return v


def _factory_defaults(name: str) -> dict:
    """The keyword arguments of a registered rule's factory and their defaults (torch.optim's names)."""
    sig = inspect.signature(_REGISTRY[name])
    return {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in sig.parameters.items()}


_STEP = "step"
_RESERVED = ("params", "lr", "param_names")


class _Structure:
    """How a chain's state maps to per-parameter keys: per primitive, its state type and the keys of
    its fields (a name repeated within the chain gets the primitive's index, as RuleState.fields)."""

    def __init__(self, state: RuleState):
        self.parts = []
        seen = set()
        for i, part in enumerate(state.parts):
            fields = getattr(type(part), "_fields", None)
            if fields is None:
                raise TypeError(f"RuleOptimizer stores a primitive's state by field name; primitive {i} returned "
                                f"a {type(part).__name__}, not a NamedTuple")
            keys = []
            for f in fields:
                k = f if f not in seen and f != _STEP else f"{i}.{f}"
                seen.add(k)
                keys.append(k)
            self.parts.append((type(part), tuple(keys)))
        self.keys = tuple(k for _, ks in self.parts for k in ks)


class RuleOptimizer(torch.optim.Optimizer):
    """Run any registered rule (or a chain of primitives) on a model's parameters, as a
    ``torch.optim.Optimizer``.

    ``rule``: a registered name (hyperparameters as keyword arguments, torch.optim's names) or a
    built :class:`~heterosim.optimizers.Optimizer`. ``blocks``: the block partition the rule sees
    (:class:`ParamBlocks`: ``"tensor"``, ``"rows"``, ``"single"`` or a callable
    ``param -> list of sizes``); ``names``: the parameters' names (for :meth:`blocks`).

    - State per parameter, as torch.optim: ``opt.state[p]`` holds ``step`` (a float tensor) and the
      fields of the primitives' states by name (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``,
      ``square_avg``, ``grad_avg``, ``sum``, ``v0``; per-block ones have one entry per block of
      the parameter). ``state_dict()`` / ``load_state_dict()`` round-trip, also through
      ``torch.save`` and ``torch.load(weights_only=True)``; a resumed run equals an uninterrupted
      one bit for bit.
    - Each step runs the chain's primitives on :class:`TensorList` s of the parameters, gradients
      and state, then ``torch._foreach_add_(params, step)``. A group's parameters are stepped in
      buckets of one (device, dtype, step count), as torch.optim does; a reduction over the
      "row" (``normalized_gd``, ``steepest_linf``, ``blocks="single"``) spans a bucket, which is
      the whole group when its parameters step together.
    - A parameter whose ``.grad`` is None is skipped (no state change; its count does not advance).
      Sparse gradients are a ``ValueError``.
    - Per-group hyperparameters: every group carries the rule's hyperparameters (``betas``,
      ``eps``, ``weight_decay``, ``momentum``, ...), filled from the constructor's values; a
      group with other values (``add_param_group``, or set later) runs ``make(name, **values)``.
      Unknown keys are a ``ValueError``; a built rule's hyperparameters cannot be overridden.
    - A plain (init, update) rule without transforms is called per parameter on ``p.view(1, -1)``
      (blocks of that parameter alone; ``"single"`` is then the parameter).
    - Memory: on the CPU up to two buffers of a bucket's size are kept between steps for the
      temporaries (Adam uses one: the memory torch.optim.Adam allocates anew on every step).

    Example::

        opt = RuleOptimizer(model.parameters(), "adam", lr=1e-3, betas=(0.9, 0.999))
        loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params, rule="adam", lr: float = 1e-3, blocks="tensor", names=None, **hyper):
        if isinstance(rule, str):
            if rule not in _REGISTRY:
                make(rule)  # the registry's error, naming the registered rules
            self._rule_name = rule
            self._fixed_rule = None
            base = _factory_defaults(rule)
            unknown = sorted(set(hyper) - set(base))
            if unknown:
                make(rule, **hyper)  # the registry's error, naming what the rule takes
            base.update(hyper)
            self._hyper_names = tuple(base)
        else:
            if not isinstance(rule, Optimizer):
                raise ValueError(f"rule must be a registered name or a heterosim Optimizer; got {rule!r}")
            if hyper:
                raise ValueError("pass hyperparameters either to make() or here, not both")
            self._rule_name = None
            self._fixed_rule = rule
            base = {}
            self._hyper_names = ()
        validate_lr(lr, "lr")
        self._blocks_how = _check_how(blocks)
        self._rules: dict = {}
        self._structs: dict = {}
        self._packs: dict = {}
        self._pool = _Pool()
        self._names: dict = {}
        defaults = dict(lr=lr, **base)
        if self._rule_name is not None:
            self._rule_for(defaults)  # build once: a bad value is an error now
        super().__init__(params, defaults)
        if names is not None:
            names = list(names)
            allp = [p for g in self.param_groups for p in g["params"]]
            if len(names) != len(allp):
                raise ValueError(f"got {len(names)} parameter names for {len(allp)} parameters")
            self._names = {id(p): str(n) for p, n in zip(allp, names)}

    # ------------------------------------------------------------------ groups and rules
    @property
    def rule(self) -> Optimizer:
        """The rule with the constructor's hyperparameters (a group may run other values)."""
        return self._rule_for(self.defaults)

    def add_param_group(self, param_group: dict) -> None:
        extra = sorted(set(param_group) - set(_RESERVED) - set(self._hyper_names))
        if extra:
            if self._fixed_rule is not None:
                raise ValueError(f"a parameter group of a RuleOptimizer built from a heterosim Optimizer cannot set "
                                 f"{', '.join(extra)}: the rule's hyperparameters are fixed; pass a registered name "
                                 "to set them per group")
            raise ValueError(f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)} in a parameter group of "
                             f"rule {self._rule_name!r}; a group takes params, lr and the rule's hyperparameters: "
                             f"{', '.join(self._hyper_names) or 'none'}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        validate_lr(group["lr"], "lr")
        self._rule_for(group)

    def _rule_for(self, group) -> Optimizer:
        if self._fixed_rule is not None:
            return self._fixed_rule
        key = tuple(_freeze(group[k]) for k in self._hyper_names)
        rule = self._rules.get(key)
        if rule is None:
            rule = make(self._rule_name, **{k: group[k] for k in self._hyper_names if group[k] is not None})
            if len(self._rules) >= 16:
                self._rules.pop(next(iter(self._rules)))
            self._rules[key] = rule
        return rule

    def _param_name(self, gi: int, i: int, p: Tensor, group: dict) -> str:
        nm = self._names.get(id(p))
        if nm is None and "param_names" in group and i < len(group["param_names"]):
            nm = group["param_names"][i]
        return nm if nm is not None else f"group{gi}.param{i}"

    def blocks(self, group: int = 0) -> Blocks:
        """The block partition a parameter group's rule sees, with sizes and names."""
        g = self.param_groups[group]
        names = [self._param_name(group, i, p, g) for i, p in enumerate(g["params"])]
        return _group_blocks(self._blocks_how, g["params"], names)

    # ------------------------------------------------------------------ state buffers
    def _gather(self, states, key, ids, ps=None) -> _Buf:
        """The bucket's tensors of one state field, as one buffer (packed into one when they are not)."""
        ts = [st[key] for st in states]
        pk = self._packs.get((key, ids))
        if pk is not None and all(a is b for a, b in zip(pk[1], ts)):
            return _Buf(list(pk[1]), pk[0], pk[2])
        if any(not isinstance(t, Tensor) for t in ts):
            raise TypeError(f"optimizer state {key!r} must hold tensors; got {type(ts[0]).__name__}")
        d = (ts[0].dtype, ts[0].device)
        if ps is not None and ts[0].shape == ps[0].shape:
            d = (ps[0].dtype, ps[0].device)  # a per-coordinate field lives as its parameter
        ts = [t.to(dtype=d[0], device=d[1]) for t in ts]
        flat, views, lay = _pack(ts)
        for st, v in zip(states, views):
            st[key] = v
        self._forget_packs(ids)
        self._packs[(key, ids)] = (flat, tuple(views), lay)
        return _Buf(list(views), flat, lay)

    def _store(self, states, key, ids, buf: _Buf, owned: bool, claimed: set) -> None:
        """Write a new state field back per parameter: the buffer's views when it is ours alone,
        else a packed copy."""
        pk = self._packs.get((key, ids))
        f = buf.flat
        buf.fresh = False  # it is state now
        if f is not None and owned and id(f) not in claimed and buf.dtype() is not None:
            claimed.add(id(f))
            if pk is not None and pk[0] is f:
                return
            views = buf.views()
        else:
            f, views, _ = _pack(buf.views(), buf.layout)
        for st, v in zip(states, views):
            st[key] = v
        if pk is None:
            self._forget_packs(ids)
        self._packs[(key, ids)] = (f, tuple(views), buf.layout)

    def _forget_packs(self, ids) -> None:
        members = set(ids)
        for k in [k for k in self._packs if k[1] != ids and members.intersection(k[1])]:
            del self._packs[k]

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, closure=None):
        """One step of every group's rule on the parameters that have a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            rule = self._rule_for(group)
            buckets: dict = {}
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse or g.layout != torch.strided:
                    raise ValueError("RuleOptimizer does not support sparse gradients")
                st = self.state[p]
                s = st.get(_STEP)
                count = 0 if s is None else int(s.item())
                buckets.setdefault((p.device, p.dtype, count), []).append(p)
            for (_, _, count), ps in buckets.items():
                if rule.transforms is None:
                    self._step_plain(rule, group, ps, count)
                else:
                    self._step_chain(rule, group, ps, count)
        self._pool.trim()
        return loss

    def _steps(self, states, ids, count: int) -> None:
        """Advance the bucket's step counters (one buffer: one add)."""
        if count == 0:
            for st in states:
                st[_STEP] = torch.zeros((), dtype=_scalar_dtype())
        buf = self._gather(states, _STEP, ids)
        buf.flat.add_(1)

    def _step_chain(self, rule: Optimizer, group: dict, ps: list, count: int) -> None:
        ids = tuple(id(p) for p in ps)
        lay = _layout(tuple(p.shape for p in ps))
        states = [self.state[p] for p in ps]
        pblocks = ParamBlocks(self._blocks_how, ps, group["params"])
        x = TensorList._leaf(_Buf(ps, None, lay), owned=False)
        g = TensorList._leaf(_Buf([p.grad for p in ps], None, lay), owned=False)
        pool = self._pool if ps[0].device.type == "cpu" else None
        _LOCAL.pool = pool
        try:
            new_step, new_state, keys = self._run_chain(rule, group, ps, states, ids, count, x, g, pblocks)
            if len(new_state) != len(keys):
                raise TypeError(f"rule {rule.name!r} returned a state of {len(new_state)} fields after an init of "
                                f"{len(keys)}")
            _run([new_step._node] + [v._node for v in new_state if isinstance(v, TensorList)], pool)
        finally:
            _LOCAL.pool = None
        claimed: set = set()
        for k, v in zip(keys, new_state):
            if isinstance(v, TensorList):
                self._store(states, k, ids, v._node.val, v._node.owned, claimed)
            elif _number(v):
                for st in states:
                    st[k] = v
            else:
                raise TypeError(f"a primitive's state field {k!r} must be a TensorList or a number in the adapter; "
                                f"got {type(v).__name__}")
        node = new_step._node
        step = node.val
        torch._foreach_add_(ps, step.views())
        if pool is not None and node.owned and id(step.flat) not in claimed:
            pool.give(step)
        self._steps(states, ids, count)

    def _run_chain(self, rule, group, ps, states, ids, count, x, g, pblocks):
        """The chain's update on the bucket: (step, new state fields, their keys). The old state's
        TensorLists die with this frame, so computing the step may overwrite their buffers."""
        struct = self._structure_known(rule)
        fresh = None
        if count == 0 or struct is None or any(k not in st for st in states for k in struct.keys):
            init = rule.init(x, pblocks)
            if not isinstance(init, RuleState):
                raise TypeError(f"a chain's init must return a RuleState; got {type(init).__name__}")
            struct = self._remember(rule, _Structure(init))
            fresh = {k: v for (_, ks), part in zip(struct.parts, init.parts) for k, v in zip(ks, part)}
            del init
        parts, vals = [], []
        for typ, ks in struct.parts:
            vals = []
            for k in ks:
                have = [k in st for st in states]
                if not all(have):
                    v = fresh[k]
                    if not any(have):  # a new state: the init's values, as they are
                        vals.append(v)
                        continue
                    new_vals = v.tensors if isinstance(v, TensorList) else [v] * len(states)
                    for st, h, t in zip(states, have, new_vals):
                        if not h:
                            st[k] = t
                first = states[0][k]
                if _number(first):
                    vals.append(first)
                else:
                    vals.append(TensorList._leaf(self._gather(states, k, ids, ps), owned=True))
            parts.append(typ(*vals))
        rs = RuleState(count, tuple(parts))
        del parts, vals, fresh
        step, new = chain_update(rule.transforms, g, rs, x, group["lr"], pblocks)
        del rs
        return step, [v for part in new.parts for v in part], struct.keys

    def _structure_known(self, rule):
        hit = self._structs.get(id(rule))
        return hit[1] if hit is not None and hit[0] is rule else None

    def _remember(self, rule, struct):
        if len(self._structs) >= 32:
            self._structs.pop(next(iter(self._structs)))
        self._structs[id(rule)] = (rule, struct)
        return struct

    # ------------------------------------------------------------------ plain rules
    def _step_plain(self, rule: Optimizer, group: dict, ps: list, count: int) -> None:
        """A rule without transforms: its own update on each parameter as a (1, numel) row, with the
        blocks of that parameter alone (``"single"``: the parameter is one block)."""
        for p in ps:
            st = self.state[p]
            x = p.reshape(1, -1)
            blocks = (Blocks.single(p.numel()) if self._blocks_how == "single"
                      else Blocks.from_sizes(_param_sizes(self._blocks_how, p)))
            state = rule.init(x, blocks) if count == 0 else self._plain_load(rule, st, x, blocks, count)
            step, state = rule.update(p.grad.reshape(1, -1), state, x, group["lr"], blocks)
            p.add_(step.reshape(p.shape))
            self._plain_store(rule, st, state)
            if count == 0:
                st[_STEP] = torch.zeros((), dtype=_scalar_dtype())
            st[_STEP].add_(1)

    def _plain_store(self, rule, st: dict, state) -> None:
        """A plain rule's state per parameter: a RuleState or a NamedTuple of tensors by field name,
        anything else as it is under ``"rule_state"``."""
        if isinstance(state, RuleState):
            struct = self._structure_known(rule) or self._remember(rule, _Structure(state))
            for (_, ks), part in zip(struct.parts, state.parts):
                st.update(zip(ks, part))
        elif hasattr(type(state), "_fields") and all(isinstance(v, Tensor) for v in state):
            self._remember(rule, type(state))
            st.update(zip(type(state)._fields, state))
        else:
            st["rule_state"] = state

    def _plain_load(self, rule, st: dict, x, blocks, count: int):
        if "rule_state" in st:
            return st["rule_state"]
        known = self._structure_known(rule)
        if known is None:
            init = rule.init(x, blocks)
            known = self._remember(rule, _Structure(init) if isinstance(init, RuleState) else type(init))
        if isinstance(known, _Structure):
            return RuleState(count, tuple(typ(*[st[k] for k in ks]) for typ, ks in known.parts))
        return known(*[st[k] for k in known._fields])

    # ------------------------------------------------------------------ state_dict
    def load_state_dict(self, state_dict: dict) -> None:
        """torch.optim's, on a copy of the given state (stepping in place never writes into it)."""
        state_dict = dict(state_dict)
        state_dict["state"] = copy.deepcopy(state_dict["state"])
        super().load_state_dict(state_dict)
        self._packs = {}
        for group in self.param_groups:
            self._rule_for(group)

    def rule_state(self, group: int = 0):
        """The group's state as the rule sees it on the group's flat row (a read-out for tests, not
        used by :meth:`step`): a RuleState whose tensors are the (1, D) concatenations of the
        per-parameter states in parameter order (per-block fields: (1, n)); parameters without
        state contribute the rule's initial state; the count is the largest. None before any step."""
        g = self.param_groups[group]
        ps = list(g["params"])
        if not any(_STEP in self.state.get(p, {}) for p in ps):
            return None
        rule = self._rule_for(g)
        if rule.transforms is None:
            raise TypeError("rule_state reads out a chain's state; this rule has no transforms")
        count = max(int(self.state[p][_STEP].item()) for p in ps if _STEP in self.state.get(p, {}))
        struct = self._structure_known(rule)
        per_param = []
        for p in ps:
            st = self.state.get(p, {})
            if struct is None or any(k not in st for k in struct.keys):
                x = TensorList([p.detach()])
                init = rule.init(x, ParamBlocks(self._blocks_how, [p], ps))
                struct = struct or _Structure(init)
                vals = {k: v for (_, ks), part in zip(struct.parts, init.parts) for k, v in zip(ks, part)}
                vals = {k: (v.tensors[0] if isinstance(v, TensorList) else v) for k, v in vals.items()}
                vals.update({k: st[k] for k in struct.keys if k in st})
            else:
                vals = {k: st[k] for k in struct.keys}
            per_param.append(vals)
        parts = []
        for typ, ks in struct.parts:
            fields = []
            for k in ks:
                vs = [d[k] for d in per_param]
                if not isinstance(vs[0], Tensor):
                    fields.append(vs[0])
                elif self._blocks_how == "single" and any(v.shape != p.shape for v, p in zip(vs, ps)):
                    fields.append(vs[0].reshape(1, -1).clone())  # one value, replicated per parameter
                else:
                    fields.append(torch.cat([v.reshape(-1) for v in vs]).unsqueeze(0))
            parts.append(typ(*fields))
        return RuleState(count, tuple(parts))


def _scalar_dtype():
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
