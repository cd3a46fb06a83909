r"""The built-in suite of ``heterosim verify``: problems, the tags that pick their checks, and budgets.

Every quadratic is a :func:`~heterosim.verify.harness.centred` copy (x* = 0), so errors keep full
relative precision. ``seed`` moves every random draw, so ``heterosim verify --seed 7`` checks
instances nobody has seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from heterosim.verify.harness import centred, is_quadratic

__all__ = ["Budget", "FULL", "QUICK", "Case", "default_suite", "make_case", "as_cases", "SOFTMAX_CERT_STEPS"]

#: Steps over which the per-step certificates of softmax regression are checked: its smoothness
#: constants are upper bounds (not exact values), so the certificates are exercised long enough for
#: the iterate to travel far from x_0.
SOFTMAX_CERT_STEPS = 1000


@dataclass(frozen=True)
class Budget:
    """How much each check runs. ``T``: the iteration count every sublinear bound is given
    (eps is chosen so that the bound asks for T steps); ``seeds``: starting points per
    deterministic check; ``T_stoch``: S1's iteration count; ``noise_seeds``: runs per stochastic
    check (>= 32); ``K``: S2's batch and step count; ``rate_steps``: steps of the quadratic rate
    checks from random starts; ``exact_steps``: steps from eigenvector starts; ``pep_T``: the
    horizon of the exact worst cases by PEP (PEPit; the SDP grows like T^2)."""

    T: int = 800
    T_stoch: int = 250
    seeds: int = 3
    noise_seeds: int = 64
    K: int = 150
    rate_steps: int = 300
    exact_steps: int = 40
    pep_T: int = 10

    def __post_init__(self):
        for k in ("T", "T_stoch", "seeds", "K", "rate_steps", "exact_steps", "pep_T"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"Budget.{k} must be an integer >= 1; got {getattr(self, k)!r}")
        if self.noise_seeds < 2:
            raise ValueError(f"Budget.noise_seeds must be >= 2 (use >= 32); got {self.noise_seeds}")


FULL = Budget()
QUICK = Budget(T=300, T_stoch=150, seeds=2, noise_seeds=32, K=100, rate_steps=150, exact_steps=25, pep_T=6)


@dataclass
class Case:
    """A problem of the suite, with the tags that select its checks:
    ``deterministic`` (B1-B5, A1), ``quadratic`` (Q1-Q5), ``stochastic`` (S1, S2),
    ``kunstner`` (closed forms), ``head`` (sign-update head growth); ``pair``: the name of
    a case with the same spectrum arranged differently (Q1's block-arrangement blindness);
    ``cert_steps``: the least number of steps of its per-step certificates."""

    name: str
    problem: object
    tags: frozenset
    pair: str | None = None
    base: int = 0
    note: str = ""
    cert_steps: int = 0

    def seeds(self, budget: Budget) -> list[int]:
        """Seeds of the starting points: base, base + 1, ..."""
        return [self.base + i for i in range(budget.seeds)]


def _auto_tags(problem) -> frozenset:
    tags = set()
    if is_quadratic(problem):
        tags |= {"deterministic", "quadratic"}
        if problem.sigma is not None:
            tags.add("stochastic")
        if problem.name == "kunstner_diag":
            tags.add("kunstner")
    elif hasattr(problem, "features"):
        tags |= {"deterministic", "head"}
    else:
        tags.add("deterministic")
    return frozenset(tags)


def make_case(name, problem, tags=None, **kw) -> Case:
    """A :class:`Case` (quadratics centred; tags from the problem's kind unless given)."""
    if is_quadratic(problem):
        problem = centred(problem)
    if "cert_steps" not in kw and hasattr(problem, "features"):
        kw["cert_steps"] = SOFTMAX_CERT_STEPS
    return Case(name, problem, frozenset(tags) if tags is not None else _auto_tags(problem), **kw)


def _noisy(s: int, sigma: float, init_scale: float, name: str):
    """3 rotated blocks of 4 (scales 1, 10, 100, within-block kappa <= 5) with Gaussian gradient noise."""
    from heterosim.problems.quadratic import BlockQuadratic
    g = torch.Generator().manual_seed(s + 5)
    spectra = [float(10.0 ** b) * torch.exp(torch.rand(4, generator=g, dtype=torch.float64) * math.log(5.0))
               for b in range(3)]
    return BlockQuadratic.from_spectra(spectra, rotate=True, seed=s, sigma=sigma, init_scale=init_scale, name=name)


def default_suite(quick: bool = False, seed: int = 0) -> list[Case]:
    """The built-in problems. ``seed`` moves every rotation, spectrum draw and data set.

    - zhang1 / zhang2: Zhang et al.'s heterogeneous / homogeneous block quadratics,
      kappa = 5000, 4 rotated blocks of 12; zhang3 / zhang4 (full suite): one shared
      spectrum arranged contiguously / interleaved (GD must not see the difference).
    - block_scale: 4 rotated blocks of 8 spread over 2 decades, equal loss per block (gamma 1/2);
      block_scale_axis (full): the same, axis-aligned; hessian_only (full).
    - noisy: 3 rotated blocks of 4 (scales 1, 10, 100) with gradient noise of std 1 per coordinate,
      started at init_scale 0.3 (S1, S2).
    - noisy_s2: the same spectrum, noise std 2, started near x* (init_scale 0.02), so that the noise
      term 2 ||sigma||_1 is more than half of S2's bound (the regime where the theorem's noise
      analysis, not its deterministic part, carries the bound).
    - kunstner: Kunstner's diagonal model, 16 classes with Zipf frequencies.
    - softmax: a 6-class linear head on non-centred features (mean 1), n = 128, p = 8; its per-step
      certificates run :data:`SOFTMAX_CERT_STEPS` steps.
    """
    from heterosim.problems import make
    s = int(seed)
    base = 1000 * s                                       # seeds of the starting points

    def case(name, problem, tags=None, **kw):
        return make_case(name, problem, tags, base=base, **kw)

    cases = [
        case("zhang1", make("zhang_case", case=1, n_blocks=4, block_size=12, seed=s)),
        case("zhang2", make("zhang_case", case=2, n_blocks=4, block_size=12, seed=s)),
        case("block_scale", make("block_scale", spread=2.0, gamma=0.5, n_blocks=4, block_size=8, seed=s)),
    ]
    if not quick:
        cases += [
            case("zhang3", make("zhang_case", case=3, n_blocks=4, block_size=12, seed=s), pair="zhang4"),
            case("zhang4", make("zhang_case", case=4, n_blocks=4, block_size=12, seed=s), tags={"quadratic"}),
            case("block_scale_axis", make("block_scale", spread=2.0, gamma=0.5, n_blocks=4, block_size=8,
                                          rotate=False, seed=s)),
            case("hessian_only", make("hessian_only", spread=2.0, n_blocks=4, block_size=8, seed=s)),
        ]
    cases += [
        # start close enough (init_scale 0.3) that the noise term of S1 and S2 is not negligible
        case("noisy", _noisy(s, 1.0, 0.3, "noisy"), tags={"stochastic"}),
        case("noisy_s2", _noisy(s, 2.0, 0.02, "noisy_s2"), tags={"stochastic"}),
        case("kunstner", make("kunstner_diag", n_classes=16, h=4, alpha=1.0), tags={"kunstner"}),
        case("softmax", make("softmax", n=128, p=8, C=6, feature_mean=1.0, seed=s)),
    ]
    return cases


def as_cases(suite, quick, seed) -> list[Case]:
    """``"default"`` or a list of problems, (name, problem) pairs or :class:`Case` objects."""
    if isinstance(suite, str):
        if suite != "default":
            raise ValueError(f"unknown suite {suite!r}; use 'default' or a list of problems / Case objects")
        return default_suite(quick=quick, seed=seed)
    out = []
    for i, item in enumerate(suite):
        if isinstance(item, Case):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(make_case(str(item[0]), item[1]))
        else:
            out.append(make_case(f"{getattr(item, 'name', 'problem')}{i}", item))
    if not out:
        raise ValueError("the suite is empty")
    return out
