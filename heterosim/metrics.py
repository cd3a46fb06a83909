r"""The one vocabulary of metric names: every metric the package speaks of, defined once.

A metric is a quantity measured along a run (at the iterate x_t, or of a trained classifier)
that a target ``eps``, a bound or a results table refers to by name. :data:`TABLE` holds each
one with

* ``definition``: the formula in words;
* ``symbol``: a short label for tables and figures;
* ``record``: whether the engine records it (``heterosim.engine.run(record=...)``);
* ``target``: whether the engine can stop on it and tune for it (``Target``, ``tune``);
* ``per_block``: a vector with one entry per block (curves of shape (B, K, n)), not a scalar;
* ``bounds``: the labels of the bounds of :mod:`heterosim.bounds` stated in it (docs/theory.md);
* ``derived_from``: the engine metric :mod:`heterosim.verify` computes it from, where the engine
  does not record it itself;
* ``kind``: ``"run"`` (measured at the iterate of an optimisation run) or ``"held-out"`` (the
  evaluation of a classifier on held-out data, a results-table column).

Everything else is a view of the table, in its order: :data:`RECORDED` (the engine's
``METRICS``), :data:`TARGETS` (the engine's ``SCALAR_METRICS``), :data:`BOUNDED` (the bounds'
``METRICS``), :data:`MEASURABLE` (what the verify harness can measure), :data:`HELD_OUT`, and
:func:`of_bound` (the metrics one bound may be stated in). :func:`check` is the one validation,
with one message listing the allowed names.

This module imports nothing heavier than the standard library, so every part of the package
can read it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "TABLE", "NAMES", "RECORDED", "TARGETS", "BOUNDED", "MEASURABLE", "HELD_OUT",
           "select", "of_bound", "get", "check"]


@dataclass(frozen=True)
class Metric:
    """One metric of the vocabulary (see the module doc for the fields)."""

    name: str
    definition: str
    symbol: str
    record: bool = False
    target: bool = False
    per_block: bool = False
    bounds: tuple[str, ...] = ()
    derived_from: str | None = None
    kind: str = "run"


_ROWS = (
    Metric("loss", "f(x_t): the objective at the iterate (for a stochastic run the true objective, not the "
                   "minibatch's)", "f", record=True, target=True),
    Metric("subopt", "f(x_t) - f*: the suboptimality gap to the minimum value", "f - f*", record=True, target=True,
           bounds=("Q1", "Q2", "Q3", "Q3-zhang", "Q3-gd-lower", "Q4")),
    Metric("grad_l2", "||grad f(x_t)||_2: the Euclidean norm of the full gradient", "||g||_2", record=True,
           target=True, bounds=("B1", "S1")),
    Metric("grad_l1", "||grad f(x_t)||_1: the sum of the absolute values of the gradient's entries", "||g||_1",
           record=True, target=True, bounds=("B2", "B3", "B5", "S2", "A1")),
    Metric("dist", "||x_t - x*||_2: the Euclidean distance to the minimiser (problems with a known x*)",
           "||x - x*||", record=True, target=True, bounds=("Q1", "Q2", "Q5")),
    Metric("blocks", "(||g_{t,1}||_2, ..., ||g_{t,n}||_2): the Euclidean norm of each block of the gradient",
           "||g_b||_2", record=True, per_block=True),
    Metric("grad_Linv", "(sum_b ||g_{t,b}||_2^2 / L_b)^(1/2): the gradient in the dual norm of block-wise GD "
                        "(L_b the smoothness constant of block b)", "||g||_{L^-1}", bounds=("B4",),
           derived_from="blocks"),
    Metric("dist_P", "||P^(-1/2) (x_t - x*)||_2: the distance to the minimiser in the norm in which GD "
                     "preconditioned by P contracts", "||x - x*||_{P^-1}", bounds=("Q3", "Q4")),
    Metric("head_frob_dist", "||W_t - W_0||_F: the Frobenius distance a linear head has moved from its start "
                             "(measured as dist with x* = x_0)", "||W - W_0||_F", bounds=("head-growth",),
           derived_from="dist"),
    Metric("test_acc", "the fraction of held-out samples whose largest logit is their label", "acc",
           kind="held-out"),
    Metric("test_nll", "-(1/n) sum_i log softmax(z_i)_{y_i}: the mean cross-entropy on the held-out samples "
                       "(nats)", "NLL", kind="held-out"),
    Metric("test_ece", "sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|: the expected calibration error of the "
                       "top-label prediction over equal-width confidence bins B_b", "ECE", kind="held-out"),
)

#: Every metric by name, in one order (the engine's first).
TABLE: dict[str, Metric] = {m.name: m for m in _ROWS}
#: Every metric name.
NAMES: tuple[str, ...] = tuple(TABLE)


def select(*, record: bool | None = None, target: bool | None = None, per_block: bool | None = None,
           bounded: bool | None = None, kind: str | None = None) -> tuple[str, ...]:
    """The names (in table order) whose fields match every condition given (None: any)."""
    return tuple(m.name for m in _ROWS
                 if (record is None or m.record == record) and (target is None or m.target == target)
                 and (per_block is None or m.per_block == per_block)
                 and (bounded is None or bool(m.bounds) == bounded) and (kind is None or m.kind == kind))


#: What the engine records (``heterosim.engine.METRICS``).
RECORDED = select(record=True)
#: What the engine can stop on and tune for: its scalar metrics (``heterosim.engine.SCALAR_METRICS``).
TARGETS = select(target=True)
#: What the bounds of :mod:`heterosim.bounds` are stated in (``heterosim.bounds.METRICS``).
BOUNDED = select(bounded=True)
#: What the verify harness can measure a curve of: the engine's scalar metrics and those it
#: derives from an engine metric.
MEASURABLE = tuple(m.name for m in _ROWS if (m.record and not m.per_block) or m.derived_from)
#: The held-out evaluation of a classifier (results-table columns).
HELD_OUT = select(kind="held-out")


def of_bound(label: str) -> tuple[str, ...]:
    """The metrics (in table order) the bound ``label`` ("B1", "Q3", ...) may be stated in."""
    out = tuple(m.name for m in _ROWS if label in m.bounds)
    if not out:
        known = sorted({b for m in _ROWS for b in m.bounds})
        raise ValueError(f"no metric names the bound {label!r}; bounds with a metric: {', '.join(known)}")
    return out


def check(name, allowed=None, what: str = "metric") -> str:
    """``name`` if it is one of ``allowed`` (default: every name), else ``ValueError`` listing them."""
    allowed = NAMES if allowed is None else tuple(allowed)
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(allowed)}")
    return name


def get(name) -> Metric:
    """The :class:`Metric` called ``name`` (``ValueError`` listing every name otherwise)."""
    return TABLE[check(name)]
