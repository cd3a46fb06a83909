"""One metric vocabulary (heterosim.metrics): every metric name the engine records, the bounds are
stated in, verify measures and the claims tabulate is in its table, with a definition, and the
public lists of names are views of it."""
import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import heterosim as hs
import heterosim.bounds as hb
from heterosim import metrics
from heterosim.verify import checks, harness

# sample arguments for every bound of heterosim.bounds that returns a Bound (a new bound needs a
# row here: test_every_bound_is_sampled says so)
SAMPLES = {
    "gd_nonconvex": dict(L2=2.0, delta=1.0, eps=0.1),
    "signgd_nonconvex": dict(Linf=2.0, delta=1.0, eps=0.5),
    "steepest_linf_nonconvex": dict(Linf=2.0, delta=1.0, eps=0.1),
    "blockwise_gd_nonconvex": dict(L_blocks=[1.0, 4.0], delta=1.0, eps=0.1),
    "gd_nonconvex_l1": dict(L2=2.0, delta=1.0, eps=0.1, d=4),
    "sgd_nonconvex": dict(L2=2.0, delta=1.0, sigma2=0.1, eps=0.5),
    "signsgd_bernstein": dict(L_vec=[1.0, 2.0], sigma_vec=[0.1, 0.1], delta=1.0, K=100),
    "gd_quadratic_rate": dict(L=2.0, mu=1.0, eps=0.1),
    "blockwise_gd_quadratic_rate": dict(L_blocks=[2.0, 4.0], mu_blocks=[1.0, 1.0], eps=0.1),
    "fixed_diagonal_precond_rate": dict(H=np.diag([1.0, 4.0]), p=[1.0, 0.25], eps=0.1),
    "zhang_adam_rate": dict(kappa_blocks=[2.0, 3.0], r=1.5, eps=0.1),
    "gd_lower_bound_rate": dict(kappa=10.0, eps=0.1),
    "optimal_diagonal_precond_rate": dict(kappa_star=2.0, eps=0.1),
    "heavy_ball_quadratic_rate": dict(L=2.0, mu=1.0, eps=0.1),
    "sign_head_growth": dict(eta=0.1, C=3, h=4),
    "adam_linf_nonconvex": dict(Linf=2.0, delta=1.0, beta2=0.99, eps=1.0),
}


def _returns(fn, kind) -> bool:
    return inspect.isfunction(fn) and inspect.signature(fn).return_annotation in (kind.__name__, kind)


def _bound_functions() -> dict:
    """Every function of heterosim.bounds that returns a Bound: the public ones and those the verify
    registry judges."""
    fns = {n: getattr(hb, n) for n in hb.__all__ if _returns(getattr(hb, n), hb.Bound)}
    for entry in checks.REGISTRY.values():
        fns.update({f.__name__: f for f in entry.bounds if _returns(f, hb.Bound)})
    return fns


def _built_bounds() -> list:
    """(function, Bound) for every bound function, once per metric it accepts."""
    out = []
    for name, fn in _bound_functions().items():
        takes_metric = "metric" in inspect.signature(fn).parameters
        for m in (metrics.NAMES if takes_metric else (None,)):
            try:
                b = fn(**SAMPLES[name], **({"metric": m} if m else {}))
            except ValueError as e:
                if "metric must be one of" in str(e):
                    continue
                raise
            out.append((name, b))
    return out


# ------------------------------------------------------------------ the table itself
def test_every_metric_has_a_definition():
    assert metrics.NAMES and len(set(metrics.NAMES)) == len(metrics.NAMES)
    for name, m in metrics.TABLE.items():
        assert m.name == name and m.definition.strip() and m.symbol.strip(), name
        assert m.kind in ("run", "held-out"), name
        assert not m.target or (m.record and not m.per_block), f"{name}: a target is a scalar the engine records"
        assert m.derived_from is None or m.derived_from in metrics.RECORDED, name
        assert not (m.record and m.derived_from), name
        assert m.kind == "run" or not (m.record or m.bounds), name
        assert metrics.get(name) is m


def test_check_lists_the_allowed_names():
    assert metrics.check("grad_l2") == "grad_l2"
    with pytest.raises(ValueError, match="unknown metric 'nope'; allowed: " + ", ".join(metrics.NAMES)):
        metrics.check("nope")
    with pytest.raises(ValueError, match="allowed: loss, subopt"):
        metrics.check("blocks", metrics.TARGETS)
    with pytest.raises(ValueError, match="bounds with a metric"):
        metrics.of_bound("Z9")


def test_public_lists_are_views_of_the_table():
    assert hs.engine.METRICS == ("loss", "subopt", "grad_l2", "grad_l1", "dist", "blocks")
    assert hs.engine.SCALAR_METRICS == ("loss", "subopt", "grad_l2", "grad_l1", "dist")
    assert set(hb.METRICS) == {"grad_l2", "grad_l1", "grad_Linv", "subopt", "dist", "dist_P", "head_frob_dist"}
    assert hs.engine.METRICS == metrics.RECORDED == metrics.select(record=True)
    assert hs.engine.SCALAR_METRICS == metrics.TARGETS == metrics.select(target=True)
    assert hb.METRICS == metrics.BOUNDED == metrics.select(bounded=True)
    assert harness._MEASURABLE == metrics.MEASURABLE
    assert set(harness._RECORD) <= set(metrics.RECORDED)
    from heterosim.claims import c6_head_growth
    assert c6_head_growth._METRICS == (("test_acc", "acc"), ("test_nll", "NLL"), ("test_ece", "ECE"))
    assert tuple(n for n, _ in c6_head_growth._METRICS) == metrics.HELD_OUT


# ------------------------------------------------------------------ the engine
def test_every_name_the_engine_records_is_in_the_table():
    p = hs.problems.make("block_scale", spread=1.0)
    res = hs.engine.run(p, "gd", [0.1], steps=3, record=",".join(hs.engine.METRICS))
    assert set(res.curves) == set(hs.engine.METRICS)
    for name, curve in res.curves.items():
        m = metrics.TABLE[name]
        assert m.record and m.definition
        assert curve.ndim == (3 if m.per_block else 2), name
    for name in metrics.TARGETS:       # every target is accepted, and gives a first hit
        r = hs.engine.run(p, "gd", [0.1], steps=3, record="none", target=(name, 1e-30, True), stop_early=False)
        assert r.iterations_to(1e-30, name, relative=True).shape == (1,)
    for name in set(metrics.NAMES) - set(metrics.TARGETS):
        with pytest.raises(ValueError, match="allowed: " + ", ".join(metrics.TARGETS)):
            hs.engine.Target(name, 0.1)
    with pytest.raises(ValueError, match=", ".join(metrics.RECORDED)):
        hs.engine.run(p, "gd", [0.1], steps=1, record="grad_Linv")


# ------------------------------------------------------------------ the bounds
def test_every_bound_is_sampled():
    missing = sorted(set(_bound_functions()) - set(SAMPLES))
    assert not missing, f"add sample arguments for {missing} to SAMPLES"


def test_every_metric_a_bound_uses_is_in_the_table():
    built = _built_bounds()
    assert {b.name for _, b in built} >= {"B1", "B2", "B3", "B4", "B5", "S1", "S2", "Q1", "Q2", "Q3", "Q4", "Q5",
                                          "A1", "head-growth"}
    for fn, b in built:
        assert b.metric in metrics.TABLE, (fn, b.metric)
        m = metrics.TABLE[b.metric]
        assert m.definition and b.metric in hb.METRICS
        assert b.name in m.bounds, f"{fn} gives {b.name} in {b.metric}; add {b.name!r} to its bounds in the table"
    # and the table claims no bound-metric pair the bounds do not give
    pairs = {(b.name, b.metric) for _, b in built}
    claimed = {(label, name) for name, m in metrics.TABLE.items() for label in m.bounds}
    assert claimed == pairs
    for label in {lab for lab, _ in pairs}:
        assert set(metrics.of_bound(label)) == {m for lab, m in pairs if lab == label}


def test_worst_starts_speak_the_vocabulary():
    for fn in (hb.gd_worst_start, hb.blockwise_gd_worst_start, hb.heavy_ball_worst_start):
        assert inspect.signature(fn).parameters["metric"].default in hb.METRICS
    ws = hb.gd_worst_start(eigenvalues=[1.0, 2.0], eta=0.5, eps=0.1, metric="subopt")
    assert ws.metric in metrics.TABLE


def test_every_metric_literal_of_the_bounds_source_is_in_the_table():
    """A backstop for bounds built outside the samples: every string given as ``metric=`` or as
    the default of a ``metric`` parameter in heterosim/bounds.py."""
    tree = ast.parse(Path(hb.__file__).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "metric" and isinstance(node.value, ast.Constant):
            found.add(node.value.value)
        if isinstance(node, ast.FunctionDef):
            args = node.args.kwonlyargs
            for a, d in zip(args, node.args.kw_defaults):
                if a.arg == "metric" and isinstance(d, ast.Constant) and d.value is not None:
                    found.add(d.value)
    assert found and found <= set(hb.METRICS), sorted(found - set(hb.METRICS))


def test_a_bound_rejects_a_metric_outside_the_vocabulary():
    b = hb.gd_nonconvex(L2=2.0, delta=1.0, eps=0.1)
    import dataclasses
    with pytest.raises(ValueError, match="unknown bound metric 'loss'; allowed: " + ", ".join(hb.METRICS)):
        dataclasses.replace(b, metric="loss")
    with pytest.raises(ValueError, match="metric must be one of"):
        hb.gd_quadratic_rate(L=2.0, mu=1.0, metric="grad_l1")


# ------------------------------------------------------------------ verify and the claims
def test_every_metric_verify_checks_is_in_the_table():
    for name in harness._MEASURABLE + harness._RECORD:
        assert metrics.TABLE[name].definition
    for name in harness._MEASURABLE:
        m = metrics.TABLE[name]
        assert (m.record and not m.per_block) or m.derived_from, name
    p = hs.problems.make("block_scale", spread=1.0)
    with pytest.raises(ValueError, match="measurable: " + ", ".join(metrics.MEASURABLE)):
        harness.measure(p, "gd", [0.1], p.initial_point(0).unsqueeze(0), 2, "dist_P")
    # every measurable metric of a block quadratic gives a curve per row
    X0 = p.initial_point(0).unsqueeze(0)
    for name in harness._MEASURABLE:
        curve, _ = harness.measure(p, "gd", [0.1], X0, 2, name)
        assert curve.shape == (1, 3), name


def test_the_claims_metric_names_are_in_the_table():
    from heterosim.claims import c5_sign_lr, c9_zhang_mechanism, c10_sign_vs_gd
    for m, _, _ in c5_sign_lr.CRITERIA:
        assert m in metrics.TARGETS
    assert c9_zhang_mechanism.METRIC in metrics.TARGETS and c10_sign_vs_gd.METRIC in metrics.TARGETS
