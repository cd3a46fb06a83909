r"""Hypothesis strategies for heterosim's problems, and helpers to property-test a bound.

For users who want to check their own bound (or their own optimizer against a known
one) on many random instances, the way heterosim's tests check docs/theory.md's bounds.
Needs ``hypothesis`` (the ``dev`` extra: ``pip install heterosim[dev]``).

Strategies (all sizes bounded, every random draw seeded by a drawn integer, so a
failing example replays exactly, and shows how to rebuild it: a drawn problem's ``repr``
is the call that builds it, spectra or knobs and seed included, e.g.
``hs.problems.BlockQuadratic.from_spectra([[0.5, 2.0], [10.0]], rotate=True, seed=17, ...)``,
and a drawn starting point is reported (``hypothesis.note``) as
``x0 = hs.testing.start_point(<the problem's repr>, seed=..., scale=...)``):

- :func:`block_spectra`: per-block eigenvalues with bounded block count, block sizes and
  global condition number.
- :func:`block_quadratics`: :class:`~heterosim.problems.quadratic.BlockQuadratic`, rotated
  or axis-aligned, optionally with a gradient-noise oracle.
- :func:`softmax_problems`: small :class:`~heterosim.problems.softmax.SoftmaxRegression`
  instances (a linear head on Gaussian features, Zipf class frequencies).
- :func:`seeds`, :func:`initial_points` (starting points for one problem),
  :func:`with_initial_points` (problem, x0) pairs; :func:`start_point` rebuilds a drawn point.

Helpers (from :mod:`heterosim.verify`, re-exported here):

- :func:`check_bound` / :func:`assert_bound_holds`: run an optimizer at the step size a
  :class:`~heterosim.bounds.Bound` prescribes and compare: T(eps) <= the bound's
  iterations, and the bounded aggregate <= value(T) at every T (for a bound on an
  expectation: the mean over >= 32 noise seeds, less 3 standard errors).
- :func:`check_step_inequality` / :func:`assert_step_inequality`: a per-step certificate
  f(x_t) - f(x_{t+1}) >= guarantee(x_t) at every step.

Example, to paste into your own tests::

    import math
    from hypothesis import given, settings
    import heterosim.bounds as hb
    from heterosim.testing import block_quadratics, assert_bound_holds

    @settings(max_examples=10, deadline=None)
    @given(block_quadratics(max_kappa=10.0))
    def test_gd_reaches_eps_within_my_bound(problem):
        # my bound: GD at eta = 1/L_2 needs at most 2 L_2 Delta / eps^2 steps to ||g|| <= eps
        def my_bound(problem, start):
            eps = 0.1 * start.grad_l2
            return hb.Bound(name="mine", iterations=2 * problem.L2 * start.delta / eps ** 2,
                            lr=1.0 / problem.L2, metric="grad_l2", aggregate="min", eps=eps,
                            statement="min_t ||g_t|| <= eps after 2 L2 Delta / eps^2 steps",
                            reference="my notes", form="sublinear",
                            coef=(2 * problem.L2 * start.delta, 0.0, 0.5))
        assert_bound_holds(problem, "gd", my_bound, seeds=[0, 1])

A bound written as a plain function of the constants works the same way: build the
:class:`~heterosim.bounds.Bound` with ``form``/``coef`` so that ``value(T)`` is the
guarantee after T steps (or use the constructors of :mod:`heterosim.bounds`).
"""
from __future__ import annotations

import math

try:
    from hypothesis import note
    from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - hypothesis is a dev dependency
    raise ImportError("heterosim.testing needs hypothesis: pip install 'heterosim[dev]' "
                      "(or pip install hypothesis)") from e
import torch

from heterosim.verify import (BoundCheck, Start, StepCheck, centred, check_bound, check_step_inequality,
                              starts)

__all__ = [
    "block_spectra", "block_quadratics", "softmax_problems", "seeds", "initial_points",
    "with_initial_points", "start_point", "check_bound", "assert_bound_holds", "check_step_inequality",
    "assert_step_inequality", "BoundCheck", "StepCheck", "Start", "starts", "centred",
]

#: Largest rotated block the quadratic strategy draws by default: up to 16 the problem's
#: L_inf is exact by vertex enumeration (2^(d_b - 1) sign vectors); beyond it an SDP is solved.
MAX_BLOCK_SIZE = 16


def _range(name, value, lo, hi=None, integer=False):
    """A (min, max) pair within [lo, hi]."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max); got {value!r}") from None
    cast = int if integer else float
    if integer and (int(a) != a or int(b) != b):
        raise ValueError(f"{name} must be a pair of integers; got {value!r}")
    a, b = cast(a), cast(b)
    if not (a <= b) or a < lo or (hi is not None and b > hi) or not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"{name} must satisfy {lo} <= min <= max{'' if hi is None else f' <= {hi}'}; got {value!r}")
    return a, b


def seeds() -> st.SearchStrategy[int]:
    """Seeds for torch.Generator and the problems' ``seed`` knobs: integers in [0, 2^31)."""
    return st.integers(0, 2 ** 31 - 1)


@st.composite
def block_spectra(draw, n_blocks=(1, 4), block_size=(1, 6), min_kappa: float = 1.0, max_kappa: float = 1e3,
                  scale=(-2.0, 2.0)):
    r"""Per-block spectra: a list of lists of positive eigenvalues, one list per block.

    The global condition number kappa = max / min is drawn log-uniformly in
    [min_kappa, max_kappa] and attained exactly (when d >= 2 the smallest eigenvalue is
    10^c and the largest 10^c kappa, c drawn from ``scale``); every other eigenvalue lies
    log-uniformly between them, then the d eigenvalues are dealt to the blocks in the
    drawn order (so blocks are sometimes homogeneous, sometimes each in its own range).
    With min_kappa > 1 a draw of a single eigenvalue is widened to two.

    Args: ``n_blocks`` and ``block_size``: (min, max) integer ranges (block_size <= 64);
    ``min_kappa`` >= 1, ``max_kappa`` <= 1e8; ``scale``: (min, max) of log10 of the smallest
    eigenvalue.
    """
    nb = _range("n_blocks", n_blocks, 1, 64, integer=True)
    bs = _range("block_size", block_size, 1, 64, integer=True)
    lk = _range("(min_kappa, max_kappa)", (min_kappa, max_kappa), 1.0, 1e8)
    sc = _range("scale", scale, -12.0, 12.0)
    if lk[0] > 1 and nb[1] * bs[1] < 2:
        raise ValueError(f"min_kappa = {lk[0]} > 1 needs room for two eigenvalues; n_blocks = {n_blocks} and "
                         f"block_size = {block_size} allow only one")
    n = draw(st.integers(*nb))
    sizes = draw(st.lists(st.integers(*bs), min_size=n, max_size=n))
    if lk[0] > 1 and sum(sizes) < 2:                   # one eigenvalue cannot have kappa > 1
        if bs[1] >= 2:
            sizes[0] = 2
        else:
            sizes.append(1)
    d = sum(sizes)
    log_kappa = draw(st.floats(math.log10(lk[0]), math.log10(lk[1])))
    c = draw(st.floats(*sc))
    w = draw(st.lists(st.floats(0.0, 1.0), min_size=d, max_size=d))
    if d >= 2:
        w[0], w[-1] = 0.0, 1.0                          # pin the extremes: kappa is attained
        order = draw(st.permutations(range(d)))
        w = [w[i] for i in order]
    eig = [10.0 ** (c + log_kappa * wi) for wi in w]
    out, start = [], 0
    for s in sizes:
        out.append(eig[start:start + s])
        start += s
    return out


@st.composite
def block_quadratics(draw, spectra=None, rotate=None, x_star: str = "random", sigma=None,
                     init_target: str = "error", **spectra_kw):
    """:class:`~heterosim.problems.quadratic.BlockQuadratic` instances.

    Args:
        spectra: a strategy of per-block spectra (default :func:`block_spectra` with ``spectra_kw``).
        rotate: True (Haar-random bases), False (axis-aligned), or None to draw either.
        x_star: "random" (the package default, N(0, I) from the seed) or "zero" (x* = 0: errors
            x_t - x* keep full relative precision, for exact rate checks).
        sigma: None (no oracle), a float (per-coordinate noise std) or a strategy of floats.
        init_target: the problems' ``init_target`` ("error" or "grad").
    """
    if x_star not in ("random", "zero"):
        raise ValueError(f"x_star must be 'random' or 'zero'; got {x_star!r}")
    from heterosim.problems.quadratic import BlockQuadratic
    spec = draw(spectra if spectra is not None else block_spectra(**spectra_kw))
    rot = draw(st.booleans()) if rotate is None else bool(rotate)
    if rot and max(len(s) for s in spec) > MAX_BLOCK_SIZE:
        raise ValueError(f"rotated blocks larger than {MAX_BLOCK_SIZE} need an SDP for L_inf (slow in "
                         "property tests); lower block_size or pass rotate=False")
    seed = draw(st.integers(0, 2 ** 16))
    sig = draw(sigma) if isinstance(sigma, st.SearchStrategy) else sigma
    d = sum(len(s) for s in spec)
    xs = torch.zeros(d, dtype=torch.float64) if x_star == "zero" else None
    return BlockQuadratic.from_spectra(spec, rotate=rot, seed=seed, x_star=xs, sigma=sig,
                                       init_target=init_target, name="hypothesis_quadratic")


@st.composite
def softmax_problems(draw, n=(16, 64), p=(2, 6), C=(2, 5), feature_mean=(-1.0, 1.0), alpha=(0.0, 1.5),
                     ridge=(1e-3, 1e-1), blocks=("class", "single"), batch_size=None):
    """Small softmax regressions (:func:`heterosim.problems.softmax.synthetic`): n samples, p
    features, C classes with Zipf(alpha) frequencies, features N(feature_mean, I), a ridge
    term (so f* is attained and certified), one of the ``blocks`` partitions. f* is computed
    (L-BFGS) the first time it is read."""
    from heterosim.problems.softmax import synthetic
    n_ = draw(st.integers(*_range("n", n, 1, 4096, integer=True)))
    p_ = draw(st.integers(*_range("p", p, 1, 64, integer=True)))
    C_ = draw(st.integers(*_range("C", C, 2, 256, integer=True)))
    mean = draw(st.floats(*_range("feature_mean", feature_mean, -100.0, 100.0)))
    a = draw(st.floats(*_range("alpha", alpha, 0.0, 10.0)))
    lo, hi = _range("ridge", ridge, 0.0)
    rg = draw(st.floats(lo, hi)) if hi > 0 else 0.0
    blk = draw(st.sampled_from(list(blocks)))
    seed = draw(st.integers(0, 2 ** 16))
    bsz = min(n_, 32) if batch_size is None else draw(st.integers(1, n_)) if batch_size == "draw" else batch_size
    return synthetic(n=n_, p=p_, C=C_, alpha=a, feature_mean=mean, ridge=rg, blocks=blk, batch_size=bsz, seed=seed)


def start_point(problem, seed: int, scale: float) -> torch.Tensor:
    """x* + scale z (x* = 0 when the problem has none), z ~ N(0, I_d) drawn from ``seed``: the
    point :func:`initial_points` draws (and reports) for ``seed`` and ``scale``; a (d,) float64 tensor."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(problem.d, generator=g, dtype=torch.float64)
    center = getattr(problem, "x_star", None)
    center = torch.zeros(problem.d, dtype=torch.float64) if center is None else center
    return center + scale * z


@st.composite
def _points(draw, problem, lo, hi):
    seed, s = draw(seeds()), draw(st.floats(lo, hi))
    note(f"x0 = hs.testing.start_point({problem!r}, seed={seed}, scale={s!r})")
    return start_point(problem, seed, s)


def initial_points(problem, scale=(0.1, 10.0)) -> st.SearchStrategy[torch.Tensor]:
    """Starting points for ``problem``: x* + s z (x* = 0 when the problem has none), z ~ N(0, I_d)
    from a drawn seed and s drawn in ``scale``; a (d,) float64 tensor. A failing example
    reports the point as ``x0 = hs.testing.start_point(<problem>, seed=..., scale=...)``."""
    lo, hi = _range("scale", scale, 0.0)
    return _points(problem, lo, hi)


def with_initial_points(problems, scale=(0.1, 10.0)):
    """(problem, x0) pairs: a problem from the strategy ``problems``, a point from
    :func:`initial_points` for it."""
    lo, hi = _range("scale", scale, 0.0)

    @st.composite
    def pairs(draw):
        problem = draw(problems)
        return problem, draw(_points(problem, lo, hi))

    return pairs()


def assert_bound_holds(problem, optimizer, bound, **kwargs) -> BoundCheck:
    """:func:`check_bound`, raising ``AssertionError`` with the measured-vs-bound message when
    the measurement violates the bound; returns the :class:`BoundCheck` otherwise."""
    chk = check_bound(problem, optimizer, bound, **kwargs)
    if not chk.holds:
        raise AssertionError(chk.message)
    return chk


def assert_step_inequality(problem, optimizer, lr, guarantee, **kwargs) -> StepCheck:
    """:func:`check_step_inequality`, raising ``AssertionError`` at the first violated step."""
    chk = check_step_inequality(problem, optimizer, lr, guarantee, **kwargs)
    if not chk.holds:
        run, t = chk.worst
        raise AssertionError(f"{chk.message}; worst at run {run}, step {t}")
    return chk
