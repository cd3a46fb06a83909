r"""What every claim module shares: the verdict, the claim record, and the statistics a
criterion may use.

A claim's *criterion* is a pure function of its stored results table that returns a
:class:`Verdict`: one of :data:`REPRODUCED`, :data:`NOT_REPRODUCED` or :data:`UNDECIDED`,
with the statistic it decided on, a confidence interval (bootstrap over seeds or
instances), and how many runs reached the target. It is fixed before the claim's full
run; an earlier formulation is kept in the module's ``HISTORY`` (and in
docs/theory.md) with the reason it changed.

UNDECIDED is the honest answer whenever the table cannot decide: a run the statistic
needs never reached its target or diverged, there are too few seeds for an interval,
the budget is below the claim's full budget (``--quick``, a demo), or nothing is
stored. :func:`undecided_reasons` collects those reasons in one place so that every
criterion words them alike. No run is dropped silently: every verdict states
``n_reached`` of ``n_runs``.

Intervals use :func:`scipy.stats.bootstrap` (percentile method, seeded), the maintained
implementation, rather than a hand-written resampler.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["REPRODUCED", "NOT_REPRODUCED", "UNDECIDED", "OUTCOMES", "Verdict", "Claim", "ok_rows",
           "bootstrap_ci", "spearman_ci", "undecided_reasons", "decide", "fmt_ci", "BOOT_RESAMPLES", "LEVEL"]

REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
UNDECIDED = "UNDECIDED"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, UNDECIDED)
#: Bootstrap resamples and confidence level of every interval.
BOOT_RESAMPLES = 2000
LEVEL = 0.95


@dataclasses.dataclass
class Verdict:
    """A claim's outcome on one stored table.

    Attributes:
        claim: the label (``"C1"``) and title: what is claimed, in a few words.
        outcome: :data:`REPRODUCED`, :data:`NOT_REPRODUCED` or :data:`UNDECIDED`.
        criterion: the fixed pass rule, in words, with its thresholds.
        statistic: the name of the number the rule decides on; ``value`` and ``ci`` its
            point estimate and :data:`LEVEL` interval (``None`` when there is none).
        n_reached, n_runs: runs whose target was reached, of all runs the statistic uses.
        factor: for comparisons with controls, which factor carries the effect, with numbers.
        details: further numbers (per group statistics, ...).
        reasons: why the outcome is UNDECIDED (empty otherwise).
        table: the per-group statistics behind the verdict (not printed).
    """

    claim: str
    title: str
    outcome: str
    criterion: str
    statistic: str
    value: float
    ci: tuple[float, float] | None
    n_reached: int
    n_runs: int
    factor: str = ""
    details: str = ""
    reasons: tuple[str, ...] = ()
    table: pd.DataFrame | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}; got {self.outcome!r}")
        if self.outcome == UNDECIDED and not self.reasons:
            raise ValueError("an UNDECIDED verdict must say why (reasons)")

    @property
    def reproduced(self) -> bool | None:
        """True, False, or None for UNDECIDED."""
        return {REPRODUCED: True, NOT_REPRODUCED: False, UNDECIDED: None}[self.outcome]

    def __str__(self) -> str:
        lines = [f"{self.claim} {self.title}: {self.outcome}", f"  criterion: {self.criterion}",
                 f"  statistic: {self.statistic} = {_num(self.value)}{fmt_ci(self.ci)}; "
                 f"n_reached {self.n_reached}/{self.n_runs}"]
        if self.reasons:
            lines.append("  undecided because: " + "; ".join(self.reasons))
        if self.factor:
            lines.append(f"  factor: {self.factor}")
        if self.details:
            lines.append(f"  {self.details}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-ready fields (no table)."""
        d = dataclasses.asdict(dataclasses.replace(self, table=None))
        d.pop("table")
        d["ci"] = list(self.ci) if self.ci is not None else None
        d["reasons"] = list(self.reasons)
        d["value"] = None if not math.isfinite(self.value) else self.value
        return d


def _num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return str(v)
    return f"{v:.3g}"


def fmt_ci(ci) -> str:
    """`` [lo, hi] (95% CI)`` or nothing."""
    if ci is None:
        return ""
    return f" [{_num(ci[0])}, {_num(ci[1])}] ({LEVEL:.0%} CI)"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of docs/theory.md: its study (grid + measure -> stored table), its fixed
    criterion (table -> :class:`Verdict`) and its figure (table -> matplotlib Figure).

    ``grid(quick=False)`` returns the sweep grid (a dict of lists or a list of them);
    ``zip`` pairs keys as in :func:`heterosim.sweep.expand`. Claims measured by the
    bridge (C7, C8) have ``command`` set to the ``heterosim bridge`` command that stores
    their table, and no ``measure``."""

    label: str
    title: str
    study: str
    criterion: Callable[[pd.DataFrame], Verdict]
    figure: Callable[[pd.DataFrame], Any]
    grid: Callable[..., Any] | None = None
    measure: Callable[[dict], Any] | None = None
    zip: tuple = ()
    command: str | None = None
    experiment: str | None = None

    def how_to_run(self, quick: bool = False) -> str:
        """The command that stores this claim's table."""
        if self.experiment:
            return f"heterosim sweep experiments/{self.experiment}{' --quick' if quick else ''}"
        return self.command or "(no command)"


# ----------------------------------------------------------------------------- statistics
def ok_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows whose config finished (``status == "ok"``)."""
    return table[table["status"] == "ok"] if "status" in table.columns else table


def n_failed(table: pd.DataFrame) -> int:
    """How many rows of ``table`` come from a config that failed (``status != "ok"``)."""
    return int((table["status"] != "ok").sum()) if "status" in table.columns else 0


def bootstrap_ci(data: Sequence | tuple, statistic: Callable, *, paired: bool = False, seed: int = 0,
                 n_resamples: int = BOOT_RESAMPLES, level: float = LEVEL,
                 vectorized: bool = False) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic`` (scipy.stats.bootstrap, seeded).

    ``data`` is one sample (a 1-d sequence) or a tuple of samples (``paired``: resampled
    together, e.g. (x, y) for a correlation). ``vectorized``: ``statistic`` takes an ``axis``
    keyword and reduces along it (``np.mean``, ``np.median``), which lets scipy evaluate all
    resamples at once (about 50x faster). ``None`` when there are fewer than 2 observations
    or the statistic is not finite on the data."""
    from scipy import stats
    samples = tuple(np.asarray(d, float) for d in (data if isinstance(data, tuple) else (data,)))
    if min(len(s) for s in samples) < 2:
        return None
    if not np.isfinite(statistic(*samples)):
        return None
    res = stats.bootstrap(samples, statistic, paired=paired, vectorized=vectorized, n_resamples=n_resamples,
                          confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _rank_corr(x, y, axis=-1):
    """Spearman's rho along ``axis`` (Pearson of the ranks, ties averaged), vectorised so
    that the bootstrap evaluates all resamples at once."""
    from scipy import stats
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=axis) / np.where(den > 0, den, 1.0), np.nan)


def spearman_ci(x, y, seed: int = 0, n_resamples: int = BOOT_RESAMPLES,
                level: float = LEVEL) -> tuple[float, tuple[float, float] | None]:
    """Spearman's rank correlation of (x, y) and its paired percentile-bootstrap interval
    (scipy.stats.bootstrap, vectorised). Fewer than 4 pairs, or resamples whose x or y is
    constant (no correlation defined), give no interval (None)."""
    from scipy import stats
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return math.nan, None
    value = float(_rank_corr(x, y))
    if not math.isfinite(value) or len(x) < 4:
        return value, None
    res = stats.bootstrap((x, y), _rank_corr, paired=True, vectorized=True, n_resamples=n_resamples,
                          confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return value, ((lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None)


def undecided_reasons(*, n_runs: int, n_unreached: int = 0, n_failed: int = 0, n_seeds: int | None = None,
                      min_seeds: int = 0, budget: float | None = None, full_budget: float | None = None,
                      budget_name: str = "steps", extra: Sequence[str] = ()) -> list[str]:
    """The reasons a table cannot decide a claim, worded alike for every claim."""
    out = []
    if n_runs == 0:
        out.append("no finished runs in the table")
    if n_failed:
        out.append(f"{n_failed} config(s) failed (see their error column)")
    if n_unreached:
        out.append(f"{n_unreached} run(s) the statistic needs did not reach the target or diverged")
    if n_seeds is not None and n_seeds < min_seeds:
        out.append(f"{n_seeds} seed(s); the criterion needs >= {min_seeds}")
    if budget is not None and full_budget is not None and budget < full_budget:
        out.append(f"reduced budget ({budget_name} {budget:g} < the full run's {full_budget:g})")
    out.extend(extra)
    return out


def decide(passed: bool, reasons: Sequence[str]) -> str:
    """The outcome: UNDECIDED when there is any reason, else REPRODUCED / NOT REPRODUCED."""
    if reasons:
        return UNDECIDED
    return REPRODUCED if passed else NOT_REPRODUCED
