r"""``heterosim verify``: every bound of docs/theory.md checked against the engine's measurements.

A bound (:mod:`heterosim.bounds`) is returned beside the measurement it bounds, and the two meet
here, in four parts:

* :mod:`~heterosim.verify.harness`: the one check harness, :func:`check_bound` (an iteration or
  value bound; statuses pass / FAIL / INCONCLUSIVE; one statistic for stochastic bounds: seed mean
  less 3 standard errors) and :func:`check_step_inequality` (a per-step certificate, with the
  curvature it paid against what it charged). The C2 study and :mod:`heterosim.testing` call them too.
* :mod:`~heterosim.verify.checks`: every bound beside its check, in one :data:`REGISTRY`, with the
  exact worst case over the bound's function class (PEPit) and the exact worst start on the
  problem's own spectrum beside the measurement.
* :mod:`~heterosim.verify.suite`: the built-in problems and budgets.
* :mod:`~heterosim.verify.cli`: :func:`verify` (a table) and ``heterosim verify``.

===========  ================================================  ==========================
kind         measured                                          passes when
===========  ================================================  ==========================
iterations   T(eps) = first t with metric(x_t) <= eps          T(eps) <= bound T, and the
             (eps chosen so that the bound is ``budget.T``)    aggregate (min / running
                                                               mean) <= value(T) at every T
per step     f(x_t) - f(x_{t+1}) and the guaranteed decrease   decrease >= guarantee at
             from the metrics measured at x_t                  every step of every run
rate         per-step contraction of f - f* (or ||x - x*||)    equal to the predicted rate
                                                               to ``RATE_RTOL`` where exact,
                                                               >= a lower bound
stochastic   the mean over >= 32 noise seeds                   mean - ``SIGMA_MARGIN``
                                                               standard errors <= bound
===========  ================================================  ==========================

A run capped before its bound's iteration count that has not reached eps is INCONCLUSIVE: never
a pass, counted apart, and the command exits 3 when it is the only problem (1 on a violation).

Example::

    from heterosim.verify import verify
    table = verify(quick=True)                    # pandas.DataFrame, one row per (bound, problem)
    assert (table["status"] == "pass").all()

    $ heterosim verify --quick            # prints the table; exit code 1 on a violation
    $ heterosim verify --json             # a list of row dicts, each with "pass" and "status"
"""
from heterosim.verify.checks import (ADAM_BETA2, BOUND_NAMES, CHECKS, COLUMNS, RATE_ATOL, RATE_RTOL, REGISTRY,
                                     Context, Entry, check_adam, check_blockwise, check_blockwise_quadratic,
                                     check_gd, check_gd_blind, check_gd_quadratic, check_head_growth,
                                     check_heavy_ball, check_kunstner, check_optimal_precond,
                                     check_precond_quadratic, check_sgd_stochastic, check_signgd,
                                     check_signsgd_stochastic, check_steepest, pep_columns, worst_start_T)
from heterosim.verify.cli import (EXIT_INCONCLUSIVE, EXIT_VIOLATED, cli_main, format_table, rows_as_json,
                                  summary_line, verify, _json_safe)
from heterosim.verify.harness import (FAIL, INCONCLUSIVE, MAX_STEPS, PASS, SIGMA_MARGIN, STATUSES, STEP_RTOL,
                                      VALUE_ATOL, VALUE_RTOL, Anchored, BoundCheck, Start, StepCheck, centred,
                                      check_bound, check_step_inequality, eps_for_budget, f_star_lower,
                                      judge_steps, starts)
from heterosim.verify.suite import FULL, QUICK, SOFTMAX_CERT_STEPS, Budget, Case, default_suite, make_case

__all__ = [
    "verify", "cli_main", "default_suite", "make_case", "format_table", "rows_as_json", "summary_line",
    "Case", "Budget", "FULL", "QUICK", "CHECKS", "REGISTRY", "Entry", "BOUND_NAMES", "COLUMNS", "Context",
    "check_bound", "check_step_inequality", "judge_steps", "BoundCheck", "StepCheck", "Start", "starts",
    "eps_for_budget", "centred", "Anchored", "f_star_lower", "pep_columns", "worst_start_T",
    "check_gd", "check_signgd", "check_steepest", "check_blockwise", "check_adam", "check_sgd_stochastic",
    "check_signsgd_stochastic", "check_gd_quadratic", "check_gd_blind", "check_blockwise_quadratic",
    "check_precond_quadratic", "check_optimal_precond", "check_heavy_ball", "check_kunstner", "check_head_growth",
    "PASS", "FAIL", "INCONCLUSIVE", "STATUSES", "EXIT_VIOLATED", "EXIT_INCONCLUSIVE", "SOFTMAX_CERT_STEPS",
    "SIGMA_MARGIN", "RATE_RTOL", "RATE_ATOL", "VALUE_RTOL", "VALUE_ATOL", "STEP_RTOL", "MAX_STEPS", "ADAM_BETA2",
]
