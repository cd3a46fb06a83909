r"""Exact worst cases by performance estimation (PEP), solved with PEPit.

A bound of :mod:`heterosim.bounds` holds for every function of a class (L-smooth, convex,
strongly convex, quadratic). How much of its slack is the bound's own, and how much comes
from the instance it is measured on, is told by the *exact* worst case over the class: the
largest value the bounded quantity can take after ``T`` steps of the method, over every
function of the class and every start with the same initial gap. Drori & Teboulle (2014,
Math. Program. 145) showed that this worst case is the value of a semidefinite program
over the Gram matrix of the iterates and gradients; Taylor, Hendrickx & Glineur (2017,
Math. Program. 161) made it exact through interpolation conditions, and PEPit (Goujaud,
Moucer, Glineur, Hendrickx, Taylor & Dieuleveut 2024, Math. Program. Comput.) builds and
solves that program from a description of the method. This module describes each method of
the package to PEPit once, in normalized units (L = 1, initial gap = 1), and caches the answers.

Problems (:class:`PEPProblem`), all with L = 1:

=============  ==========================  =====================================  ============================
method         function class              initial condition (<= 1)               performance (maximised)
=============  ==========================  =====================================  ============================
``gd``         ``smooth`` (nonconvex)      f(x_0) - f(x_T)                        min_{t<T} ||g_t||^2
``gd``         ``smooth_convex``           f(x_0) - f(x*)                         min_{t<T} ||g_t||^2
``gd``         ``smooth_strongly_convex``  f(x_0) - f* or ||x_0 - x*||^2          f(x_T) - f* or ||x_T - x*||^2
``gd``         ``quadratic``               as above                               as above
``heavy_ball`` ``quadratic`` or sc class   ||x_0 - x*||^2 (x_{-1} = x_0)          ||x_T - x*||^2
``gd_step``    ``smooth`` / convex         ||g_0||^2 >= 1                         f(x_1) - f(x_0)  (minus the decrease)
=============  ==========================  =====================================  ============================

For the nonconvex class, f(x_0) - f(x_T) <= 1 relaxes f(x_0) - inf f <= 1 (inf f <= f(x_T)),
so the value is an upper bound on the worst case with the true infimum; at step 1/L it equals the
closed form 4/(3T - 1) of Abbaszadehpeivasti, de Klerk & Zamani (2022), which is attained, so
nothing is lost (``tests/test_pep.py`` pins it).

Solver: cvxpy with Clarabel (an interior-point SDP solver bundled with cvxpy, no licence, no
network), SCS as the fallback. PEPit's dual value is returned: an upper bound on the worst
case, equal to it up to the solver's tolerance (about 1e-8 relative here).

Cache: each answer is stored as JSON under :func:`cache_dir` (``~/.cache/heterosim/pep`` or
``$XDG_CACHE_HOME/heterosim/pep``, overridden by ``$HETEROSIM_PEP_CACHE``), a folder of mode
0700 that only its owner may read, one file per problem, keyed by a hash of the problem, the
PEPit version and the solver. A corrupt or foreign file is ignored and solved again.
"""
from __future__ import annotations

import functools

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEPProblem", "PEPResult", "solve", "cache_dir", "CLASSES", "METHODS", "SOLVERS",
           "gd_nonconvex_closed_form"]

#: Function classes: name -> what PEPit calls it.
CLASSES = {
    "smooth": "SmoothFunction",                         # L-smooth, possibly nonconvex
    "smooth_convex": "SmoothConvexFunction",
    "smooth_strongly_convex": "SmoothStronglyConvexFunction",
    "quadratic": "SmoothStronglyConvexQuadraticFunction",   # 1/2 x^T Q x with mu I <= Q <= L I
}
METHODS = ("gd", "heavy_ball", "gd_step")
#: SDP solvers tried in order (both ship with cvxpy).
SOLVERS = ("CLARABEL", "SCS")


@functools.lru_cache(maxsize=1)
def pepit_version() -> str:
    """The installed PEPit's version (part of every cache key)."""
    from importlib.metadata import version
    return version("pepit")


_INITIAL = ("f0_minus_fT", "subopt", "dist", "grad")
_PERFORMANCE = ("min_grad_sq", "subopt", "dist_sq", "neg_decrease")


def gd_nonconvex_closed_form(T: int, h: float = 1.0) -> float:
    r"""The exact worst case of min_{t<T} ||g_t||^2 for GD at step 1/L on L-smooth functions with
    f(x_0) - inf f <= 1 and L = 1: 4 / (3T - 1) (Abbaszadehpeivasti, de Klerk & Zamani 2022,
    Optim. Lett. 16, the case h = 1 of their step-size formula). Only h = 1 is implemented."""
    if h != 1.0:
        raise ValueError(f"the closed form is implemented for the step 1/L only (h = 1); got h = {h}")
    if int(T) != T or T < 1:
        raise ValueError(f"T must be an integer >= 1; got {T!r}")
    return 4.0 / (3.0 * T - 1.0)


@dataclass(frozen=True)
class PEPProblem:
    """One performance-estimation problem in normalized units (L = 1, initial quantity <= 1).

    ``method``: ``gd``, ``heavy_ball`` or ``gd_step`` (one step, for per-step certificates);
    ``function_class``: a key of :data:`CLASSES`; ``T`` steps; ``step`` = eta L; ``momentum``
    (heavy ball's beta); ``mu`` = mu / L (strongly convex and quadratic classes);
    ``initial`` / ``performance``: see the module table."""

    method: str
    function_class: str
    T: int
    step: float
    initial: str
    performance: str
    momentum: float = 0.0
    mu: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown PEP method {self.method!r}; known: {', '.join(METHODS)}")
        if self.function_class not in CLASSES:
            raise ValueError(f"unknown function class {self.function_class!r}; known: {', '.join(CLASSES)}")
        if int(self.T) != self.T or self.T < 1:
            raise ValueError(f"T must be an integer >= 1; got {self.T!r}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step (eta L) must be > 0; got {self.step}")
        if self.initial not in _INITIAL or self.performance not in _PERFORMANCE:
            raise ValueError(f"initial must be one of {_INITIAL} and performance one of {_PERFORMANCE}; "
                             f"got {self.initial!r}, {self.performance!r}")
        strongly = self.function_class in ("smooth_strongly_convex", "quadratic")
        if strongly and not (0 < self.mu < 1):
            raise ValueError(f"class {self.function_class} needs 0 < mu/L < 1; got mu = {self.mu}")
        if not strongly and self.mu != 0:
            raise ValueError(f"class {self.function_class} has no mu; got mu = {self.mu}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self, solver: str) -> str:
        """The cache key: a hash of the problem, PEPit's version and the solver."""
        blob = json.dumps({"problem": self.as_dict(), "pepit": pepit_version(), "solver": solver,
                           "format": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PEPResult:
    """A solved :class:`PEPProblem`: ``value`` (the worst case, normalized), the solver's
    ``status``, ``solver``, the solve time in ``seconds`` and whether it came from the cache."""

    problem: PEPProblem
    value: float
    status: str
    solver: str
    seconds: float
    cached: bool = False


# ------------------------------------------------------------------ the PEPs themselves
def _declare(pb, problem: PEPProblem):
    import PEPit.functions as F
    cls = getattr(F, CLASSES[problem.function_class])
    if problem.function_class in ("smooth_strongly_convex", "quadratic"):
        return pb.declare_function(cls, mu=problem.mu, L=1.0)
    return pb.declare_function(cls, L=1.0)


def _optimum(f):
    """x* and f* for the convex classes (PEPit's stationary point)."""
    xs = f.stationary_point()
    return xs, f(xs)


def _build_gd(pb, f, problem: PEPProblem):
    """T steps of x_{t+1} = x_t - h g_t; the performance measure and initial condition of ``problem``."""
    x0 = pb.set_initial_point()
    x, grads = x0, []
    for _ in range(problem.T):
        g = f.gradient(x)
        grads.append(g)
        x = x - problem.step * g
    if problem.performance == "min_grad_sq":          # PEPit maximises the minimum of the metrics
        for g in grads:
            pb.set_performance_metric(g ** 2)
    if problem.function_class == "smooth":
        if problem.initial != "f0_minus_fT":
            raise ValueError("the nonconvex class takes the initial condition f(x_0) - f(x_T) <= 1")
        pb.set_initial_condition(f(x0) - f(x) <= 1)
        return
    xs, fs = _optimum(f)
    _initial(pb, f, problem, x0, xs, fs)
    if problem.performance == "subopt":
        pb.set_performance_metric(f(x) - fs)
    elif problem.performance == "dist_sq":
        pb.set_performance_metric((x - xs) ** 2)


def _initial(pb, f, problem, x0, xs, fs):
    if problem.initial == "subopt":
        pb.set_initial_condition(f(x0) - fs <= 1)
    elif problem.initial == "dist":
        pb.set_initial_condition((x0 - xs) ** 2 <= 1)
    else:
        raise ValueError(f"initial condition {problem.initial!r} does not apply to {problem.function_class}")


def _build_heavy_ball(pb, f, problem: PEPProblem):
    """x_{t+1} = x_t - h g_t + beta (x_t - x_{t-1}) with x_{-1} = x_0 (torch.optim.SGD's first step)."""
    if problem.performance != "dist_sq" or problem.initial != "dist":
        raise ValueError("the heavy-ball PEP bounds ||x_T - x*||^2 given ||x_0 - x*||^2 <= 1")
    xs, fs = _optimum(f)
    x0 = pb.set_initial_point()
    _initial(pb, f, problem, x0, xs, fs)
    prev, x = x0, x0
    for _ in range(problem.T):
        prev, x = x, x - problem.step * f.gradient(x) + problem.momentum * (x - prev)
    pb.set_performance_metric((x - xs) ** 2)


def _build_gd_step(pb, f, problem: PEPProblem):
    """One step from x_0 with ||g_0||^2 >= 1: the largest f(x_1) - f(x_0), i.e. minus the smallest decrease."""
    if problem.T != 1 or problem.performance != "neg_decrease" or problem.initial != "grad":
        raise ValueError("the one-step PEP has T = 1, initial 'grad' and performance 'neg_decrease'")
    x0 = pb.set_initial_point()
    g0, f0 = f.oracle(x0)
    x1 = x0 - problem.step * g0
    pb.set_initial_condition(g0 ** 2 >= 1)
    pb.set_performance_metric(f(x1) - f0)


_BUILDERS = {"gd": _build_gd, "heavy_ball": _build_heavy_ball, "gd_step": _build_gd_step}


def _solve_now(problem: PEPProblem) -> PEPResult:
    import cvxpy as cp
    from PEPit import PEP
    last = None
    for solver in SOLVERS:
        if solver not in cp.installed_solvers():
            continue
        pb = PEP()
        f = _declare(pb, problem)
        _BUILDERS[problem.method](pb, f, problem)
        t0 = time.perf_counter()
        said = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(said):
            warnings.simplefilter("ignore")      # cvxpy's "solution may be inaccurate": judged by the status
            try:                                 # PEPit prints its own warnings: kept in the status, off stdout
                value = pb.solve(verbose=0, solver=solver)
            except Exception as e:               # a solver failure: try the next one
                last = f"{solver}: {e}"
                continue
        status = str(pb.wrapper.prob.status)
        if "duality gap" in said.getvalue():
            status += " (PEPit: large negative duality gap; value within the solver's tolerance)"
        if value is not None and math.isfinite(value) and status.split(" ")[0] in ("optimal", "optimal_inaccurate"):
            return PEPResult(problem, float(value), status, solver, time.perf_counter() - t0)
        last = f"{solver}: status {status}, value {value}"
    raise RuntimeError(f"no SDP solver solved the PEP {problem}: {last or 'none of ' + str(SOLVERS) + ' installed'}")


# ------------------------------------------------------------------------------ cache
def cache_dir() -> Path | None:
    """The private folder of cached PEP values (created with mode 0700), or None when it cannot
    be made private (not ours, or not writable): then nothing is cached on disk."""
    env = os.environ.get("HETEROSIM_PEP_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "heterosim" / "pep"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return None
        if stat.S_IMODE(st.st_mode) & 0o077:
            path.chmod(0o700)
    except OSError:
        return None
    return path


def _read(path: Path, problem: PEPProblem, solver: str) -> PEPResult | None:
    try:
        data = json.loads(path.read_text())
        if data.get("problem") != problem.as_dict() or data.get("solver") != solver:
            return None
        value = float(data["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not math.isfinite(value):
        return None
    return PEPResult(problem, value, str(data.get("status", "")), solver, float(data.get("seconds", 0.0)), True)


def _write(path: Path, res: PEPResult) -> None:
    data = {"problem": res.problem.as_dict(), "value": res.value, "status": res.status, "solver": res.solver,
            "seconds": res.seconds, "pepit": pepit_version()}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:       # a read-only or full disk only costs the next solve
        pass


_MEMORY: dict[PEPProblem, PEPResult] = {}


def solve(problem: PEPProblem, *, cache: bool = True) -> PEPResult:
    """The worst case of ``problem`` (normalized units), from the cache when it is there.

    The in-process memo and the disk cache are both keyed by the problem; ``cache=False``
    solves afresh and stores nothing."""
    if cache and problem in _MEMORY:
        return _MEMORY[problem]
    folder = cache_dir() if cache else None
    if folder is not None:
        for solver in SOLVERS:
            hit = _read(folder / f"{problem.key(solver)}.json", problem, solver)
            if hit is not None:
                _MEMORY[problem] = hit
                return hit
    res = _solve_now(problem)
    if cache:
        _MEMORY[problem] = res
        if folder is not None:
            _write(folder / f"{problem.key(res.solver)}.json", res)
    return res
