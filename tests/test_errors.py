"""Error messages say what went wrong and what is allowed (issue 11, item 7), and a failing
property test shows its problem in a form that rebuilds it exactly.

Every check reads the message: the argument's name, the value given (and its type), the
allowed set or range, and where a rule needs the problem, the call that builds it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import heterosim as hs
from heterosim.optimizers import RuleOptimizer
from heterosim.testing import block_quadratics, softmax_problems, with_initial_points

NS = {"hs": hs}  # the namespace a reader has after `import heterosim as hs`
FAILING = settings(max_examples=30, deadline=None, derandomize=True, database=None)


def _report(test) -> str:
    """Run a hypothesis test that must fail; return its whole failure report."""
    with pytest.raises(AssertionError) as info:
        test()
    return "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])


def _same_quadratic(p, q):
    assert torch.equal(p.hessian(), q.hessian())
    assert torch.equal(p.x_star, q.x_star) and p.f_star == q.f_star
    assert torch.equal(p.initial_point(3), q.initial_point(3))
    assert p.blocks.sizes == q.blocks.sizes and p.Linf == q.Linf and p.name == q.name
    assert (p.sigma is None) == (q.sigma is None) and (p.sigma is None or torch.equal(p.sigma, q.sigma))


def _same_softmax(p, q):
    assert torch.equal(p.features, q.features) and torch.equal(p.labels, q.labels)
    assert (p.ridge, p.blocking, p.batch_size, p.C) == (q.ridge, q.blocking, q.batch_size, q.C)
    assert torch.equal(p.L_blocks, q.L_blocks) and p.Linf == q.Linf


# ------------------------------------------------------------- reproducible counterexamples
def test_failing_quadratic_property_reports_spectra_and_seed_that_rebuild_it():
    seen = []

    @FAILING
    @given(block_quadratics(n_blocks=(2, 3), block_size=(2, 3), rotate=True, sigma=0.25))
    def prop(problem):
        seen.append(problem)
        assert problem.d < 5 or problem.recipe.kwargs["seed"] == 0, "on purpose, with a seed that matters"

    report = _report(prop)
    p = seen[-1]
    shown = repr(p)
    assert shown in report                                       # the falsifying example shows the call
    assert shown.startswith("hs.problems.BlockQuadratic.from_spectra([[")
    spectra, seed = p.recipe.args[0], p.recipe.kwargs["seed"]
    assert seed != 0 and f"seed={seed}" in report                # a real, drawn seed
    assert spectra == [s.tolist() for s in p.block_spectra]      # every eigenvalue, exactly
    assert all(repr(v) in report for s in spectra for v in s)
    _same_quadratic(eval(shown, NS), p)


def test_failing_softmax_property_reports_knobs_and_seed_that_rebuild_it():
    seen = []

    @FAILING
    @given(softmax_problems(n=(16, 24), p=(2, 3), C=(2, 3)))
    def prop(problem):
        seen.append(problem)
        assert problem.d < 6 or problem.knobs["seed"] == 0, "on purpose, with a seed that matters"

    report = _report(prop)
    p = seen[-1]
    shown = repr(p)
    assert shown in report and shown.startswith("hs.problems.make('softmax', ")
    assert f"seed={p.knobs['seed']}" in report and p.knobs["seed"] != 0
    for knob in ("n", "p", "C", "alpha", "feature_mean", "ridge", "blocks", "batch_size"):
        assert f"{knob}=" in shown
    _same_softmax(eval(shown, NS), p)


def test_failing_property_reports_the_starting_point_as_a_call():
    seen = []

    @FAILING
    @given(with_initial_points(block_quadratics(n_blocks=(1, 2), block_size=(1, 2))))
    def prop(pair):
        seen.append(pair)
        problem, x0 = pair
        assert float(problem.loss(x0)[0]) < problem.f_star, "on purpose"

    report = _report(prop)
    p, x0 = seen[-1]
    line = next(ln for ln in report.splitlines() if ln.startswith("x0 = hs.testing.start_point("))
    assert repr(p) in line and "seed=" in line and "scale=" in line
    assert torch.equal(eval(line[len("x0 = "):], NS), x0)


@pytest.mark.parametrize("name, knobs", [
    ("zhang_case", dict(case=2, n_blocks=2, block_size=3, seed=5)),
    ("block_scale", dict(spread=2.0, n_blocks=3, block_size=2, rotate=False, seed=4)),
    ("hessian_only", dict(n_blocks=2, block_size=2, seed=1)),
    ("gradient_only", dict(n_blocks=2, block_size=3, seed=2)),
    ("kunstner_diag", dict(n_classes=3, h=2, freqs=torch.tensor([0.5, 0.3, 0.2]))),
    ("quadratic", dict(spectra=[[1.0, 3.0], [0.1 + 0.2]], seed=9, sigma=[0.5, 0.25], x_star=[1.0, -2.0, 1 / 3])),
])
def test_every_quadratic_family_shows_a_call_that_rebuilds_it(name, knobs):
    p = hs.problems.make(name, **knobs)
    shown = repr(p)
    assert shown.startswith(f"hs.problems.make({name!r}, ")
    for k in knobs:
        assert f"{k}=" in shown
    _same_quadratic(eval(shown, NS), p)


def test_softmax_families_show_a_call_that_rebuilds_them():
    for p in (hs.problems.make("softmax", n=20, p=3, C=3, feature_scales=[1.0, 0.5, 0.25], feature_groups=3, seed=7),
              hs.problems.softmax.kunstner(2, ridge=0.01, blocks="single", seed=3)):
        _same_softmax(eval(repr(p), NS), p)


def test_a_problem_built_from_raw_data_says_what_it_is():
    p = hs.problems.SoftmaxRegression(torch.eye(3), torch.tensor([0, 1, 1]), ridge=0.1)
    assert p.recipe is None and repr(p).startswith("<SoftmaxRegression softmax: d=6")


# ---------------------------------------------------------------- optimizers.make
def test_make_blames_only_names_the_rule_does_not_take():
    with pytest.raises(ValueError) as e:
        hs.optimizers.make("adam", gamma=3, foo=1, eps=1e-6)
    msg = str(e.value)
    assert "does not take the hyperparameters foo, gamma;" in msg
    assert msg.endswith("it takes: betas, eps, weight_decay")
    with pytest.raises(ValueError, match="normalized_gd' does not take the hyperparameter momentum; it takes none"):
        hs.optimizers.make("normalized_gd", momentum=0.9)
    with pytest.raises(ValueError, match=r"lr; it takes: momentum.*pass it to engine\.run"):
        hs.optimizers.make("sgd", lr=0.1)


@pytest.mark.parametrize("hyper, expected", [
    (dict(betas=0.9), "betas must be a pair (beta1, beta2) of numbers in [0, 1); got 0.9 (float)"),
    (dict(betas=(0.9, 1.0)), "betas[1] (beta2) must be a finite number in [0, 1); got 1.0 (float)"),
    (dict(betas="ab"), "betas must be a pair (beta1, beta2) of numbers in [0, 1); got 'ab' (str)"),
    (dict(eps="abc"), "eps must be a finite number >= 0; got 'abc' (str)"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0; got nan (float)"),
])
def test_a_bad_value_of_an_allowed_name_is_reported_as_a_bad_value(hyper, expected):
    with pytest.raises(ValueError) as e:
        hs.optimizers.make("adam", **hyper)
    assert str(e.value) == expected  # not "unexpected hyperparameter"


def _hyper_params():
    for name in hs.optimizers.names():
        for k in inspect.signature(hs.optimizers._REGISTRY[name]).parameters:
            yield name, k


@pytest.mark.parametrize("name, hyper", list(_hyper_params()))
def test_every_hyperparameter_names_itself_the_value_and_the_allowed_set(name, hyper):
    with pytest.raises(ValueError) as e:
        hs.optimizers.make(name, **{hyper: "abc"})
    msg = str(e.value)
    assert msg.startswith(f"{hyper} ") or msg.startswith(f"{hyper}[") or msg.startswith(f"{hyper} (")
    assert "must be" in msg and msg.endswith("got 'abc' (str)")
    if hyper in ("nesterov", "centered"):
        assert "must be True or False" in msg


def test_learning_rates_name_the_argument():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError) as e:
        RuleOptimizer(net.parameters(), "sgd", lr="abc")
    assert str(e.value) == "lr must be a finite number > 0 or an array of them (learning rates); got 'abc' (str)"
    with pytest.raises(ValueError) as e:
        hs.optimizers.validate_lr([0.1, -1.0])
    assert str(e.value) == "learning rates must be finite numbers > 0; got lrs = [0.1, -1.0] (1 of 2 not finite and > 0)"


# ------------------------------------------------- rules that read the problem's constants
@pytest.mark.parametrize("rule, hyper, attr", [("blockwise_gd", "L", "L_blocks"), ("steepest_linf", "Linf", "Linf")])
def test_rules_that_need_the_problem_point_to_for_problem(rule, hyper, attr):
    problem = hs.problems.make("block_scale", n_blocks=2, block_size=2)
    advice = f"hs.optimizers.for_problem({rule!r}, problem)"
    for call in (lambda: hs.engine.run(problem, rule, lrs=[1.0], steps=2),
                 lambda: hs.engine.tune(problem, rule, eps=1e-3, lrs=[0.5, 1.0], steps=5)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert advice in msg and f"{hyper} = problem.{attr}" in msg
    # the advice is a real call that works where the name did not
    assert list(inspect.signature(hs.optimizers.for_problem).parameters)[:2] == ["name", "problem"]
    opt = eval(advice, {"hs": hs, "problem": problem})
    assert opt.name == rule
    res = hs.engine.run(problem, opt, lrs=[1.0], steps=2, record="loss")
    loss = np.asarray(res.curves["loss"])[0]
    assert loss.shape == (3,) and np.all(np.isfinite(loss))
    if rule == "blockwise_gd":   # steps 1/L_b: each step decreases f by at least sum_b ||g_b||^2 / (2 L_b) > 0
        assert loss[2] < loss[1] < loss[0]


# ------------------------------------------------------------------- problems.make
def test_unknown_knob_is_a_value_error_listing_the_knobs():
    with pytest.raises(ValueError) as e:
        hs.problems.make("zhang_case", kapa=10.0, foo=1)
    assert str(e.value) == ("problem 'zhang_case' has no knobs foo, kapa; "
                            "its knobs: case, kappa, n_blocks, block_size, rotate, seed, global_rotation")
    with pytest.raises(ValueError, match="'kunstner_diag' has no knob seed; its knobs: n_classes, h, alpha, freqs"):
        hs.problems.make("kunstner_diag", seed=1)
    with pytest.raises(ValueError, match="'quadratic' needs the knob spectra; its knobs: spectra, rotate, seed"):
        hs.problems.make("quadratic")


SMALL = {"zhang_case": dict(n_blocks=2, block_size=2), "block_scale": dict(n_blocks=2, block_size=2),
         "hessian_only": dict(n_blocks=2, block_size=2), "gradient_only": dict(n_blocks=2, block_size=2),
         "kunstner_diag": dict(n_classes=3), "quadratic": dict(spectra=[[1.0, 2.0]]),
         "softmax": dict(n=16, p=2, C=2), "kunstner_softmax": dict(m=2)}
NOT_NUMBERS = {"name", "block_names"}  # any text is a valid name; block names are checked by Blocks


def _knobs():
    for name in hs.problems.names():
        for k in hs.problems.knob_names(name):
            if k not in NOT_NUMBERS:
                yield name, k


def test_the_knob_table_covers_every_registered_problem():
    assert set(SMALL) == set(hs.problems.names())


@pytest.mark.parametrize("name, knob", list(_knobs()))
def test_every_knob_names_itself_the_value_and_the_allowed_set(name, knob):
    with pytest.raises(ValueError) as e:
        hs.problems.make(name, **{**SMALL[name], knob: "abc"})
    msg = str(e.value)
    assert msg.startswith(f"{knob} ") or msg.startswith(f"{knob}["), msg
    assert "must be" in msg and msg.endswith("'abc' (str)"), msg


@pytest.mark.parametrize("name, knobs, expected", [
    ("zhang_case", dict(case=5), "case must be an integer in 1..4; got 5 (int)"),
    ("zhang_case", dict(kappa=0.5), "kappa must be a finite number >= 1; got 0.5 (float)"),
    ("block_scale", dict(n_blocks=2.5), "n_blocks must be an integer >= 1; got 2.5 (float)"),
    ("block_scale", dict(rotate="no"), "rotate must be True or False; got 'no' (str)"),
    ("quadratic", dict(spectra=[[1.0, "a"]]), "spectra[0] must be eigenvalues > 0; got [1.0, 'a'] (list)"),
    ("quadratic", dict(spectra=[[1.0]], init_target="loss"),
     "init_target must be one of 'error', 'grad'; got 'loss' (str)"),
    ("softmax", dict(blocks="rows"),
     "blocks must be one of 'class', 'feature', 'class_feature', 'single'; got 'rows' (str)"),
    ("softmax", dict(n=10, batch_size=11), "batch_size (n = 10) must be an integer in 1..10; got 11 (int)"),
    ("softmax", dict(ridge=-1e-3), "ridge must be a finite number >= 0; got -0.001 (float)"),
])
def test_knob_messages_state_the_allowed_range(name, knobs, expected):
    with pytest.raises(ValueError) as e:
        hs.problems.make(name, **knobs)
    assert str(e.value) == expected
