"""How the C kernels are built, cached and guarded (heterosim._native): built by cffi into a
private cache (0700, never loaded from a directory or file another user could write),
generic units by ``compile_unit``, a ValueError (never a crash) for buffers the C code cannot
take, and one RuntimeWarning when the kernels are off for a reason the user did not choose."""
from __future__ import annotations

import os
import re
import stat
import sys
import warnings

import pytest
import torch

import heterosim as hs
from heterosim import _native

_CDEF = """
double sum_squares(int64_t n, intptr_t x);
void iota_cubes(int64_t n, intptr_t out);
"""


def _source(tag: str) -> str:
    """A small unit (its own bits for each tag, so each test builds its own module)."""
    return f"""
#include <stdint.h>
/* {tag} */
double sum_squares(int64_t n, intptr_t x) {{
    const double *v = (const double *)x;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    return s;
}}
void iota_cubes(int64_t n, intptr_t out) {{
    double *o = (double *)out;
    for (int64_t i = 0; i < n; i++) o[i] = (double)i * (double)i * (double)i;
}}
"""


def _needs_compiler():
    if _native._compiler() is None or _native.lib() is None:
        pytest.skip(f"no working C build here ({_native.why_off()})")


def _check_unit(k, n=100):
    """What the unit's C says, against closed forms (exact in float64 at this size)."""
    x = torch.arange(n, dtype=torch.float64)
    assert k.sum_squares(n, x.data_ptr()) == (n - 1) * n * (2 * n - 1) // 6
    out = torch.empty(n, dtype=torch.float64)
    k.iota_cubes(n, out.data_ptr())
    assert torch.equal(out, x ** 3)
    assert float(out.sum()) == ((n - 1) * n // 2) ** 2


def test_compile_unit_computes_what_its_c_says_in_a_0700_cache(tmp_path, monkeypatch):
    _needs_compiler()
    cache = tmp_path / "fresh" / "native"
    monkeypatch.setenv("HETEROSIM_CACHE", str(cache))
    k = _native.compile_unit("closed_form", _source(str(tmp_path)), _CDEF)
    assert k is not None, _native.unit_why_off("closed_form")
    assert _native.unit_why_off("closed_form") is None
    _check_unit(k)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    built = [f for f in os.listdir(cache) if f.startswith("_hs_closed_form_")]
    assert len(built) == 1 and not [f for f in os.listdir(cache) if f.startswith(".build-")]
    assert os.stat(cache / built[0]).st_uid == os.getuid()
    assert _native.cache_why() is None
    # loaded once per process: the same lib again, nothing rebuilt
    assert _native.compile_unit("closed_form", _source(str(tmp_path)), _CDEF) is k


def test_a_cache_others_can_write_is_not_loaded_from(tmp_path, monkeypatch):
    _needs_compiler()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("HETEROSIM_CACHE", str(shared))
    with pytest.warns(RuntimeWarning, match="not loaded from"):
        k = _native.compile_unit("shared_cache", _source(str(tmp_path)), _CDEF)
    why = _native.cache_why()
    assert why is not None and "group- or world-writable" in why and str(shared) in why
    assert k is not None, _native.unit_why_off("shared_cache")
    _check_unit(k)  # built in the private fallback, and right
    assert os.listdir(shared) == []  # nothing built into, or loaded from, the shared directory
    private = _native._state["private"]
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert any(f.startswith("_hs_shared_cache_") for f in os.listdir(private))


def test_a_module_file_others_can_write_is_not_loaded(tmp_path, monkeypatch):
    _needs_compiler()
    cache = tmp_path / "cache"
    monkeypatch.setenv("HETEROSIM_CACHE", str(cache))
    source = _source(str(tmp_path))
    assert _native.compile_unit("open_file", source, _CDEF) is not None
    (built,) = [cache / f for f in os.listdir(cache) if f.startswith("_hs_open_file_")]
    os.chmod(built, 0o666)
    monkeypatch.setattr(_native, "_modules", {})  # as a new process would
    with pytest.warns(RuntimeWarning, match="not loaded"):
        k = _native.compile_unit("open_file", source, _CDEF)
    assert "group- or world-writable" in _native.cache_why()
    _check_unit(k)  # built again in the private fallback, and right
    assert any(f.startswith("_hs_open_file_") for f in os.listdir(_native._state["private"]))


def test_compile_unit_respects_the_off_switches(monkeypatch):
    with _native.disabled():
        assert _native.compile_unit("off_unit", _source("off"), _CDEF) is None
        assert "disabled" in _native.unit_why_off("off_unit")
    monkeypatch.setenv("HETEROSIM_NATIVE", "0")
    assert _native.compile_unit("off_unit", _source("off"), _CDEF) is None
    assert _native.unit_why_off("off_unit") == "HETEROSIM_NATIVE=0"
    with pytest.raises(ValueError, match="identifier"):
        _native.compile_unit("not a name", _source("off"), _CDEF)


def test_a_compile_error_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    _needs_compiler()
    monkeypatch.setenv("HETEROSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(_native._state, "warned", True)  # the process's one warning is spent
    assert _native.compile_unit("broken", "int f(void) { return nope; }", "int f(void);") is None
    assert "failed to compile" in _native.unit_why_off("broken")


def test_value_changing_flags_are_refused(tmp_path, monkeypatch):
    _needs_compiler()
    monkeypatch.setenv("HETEROSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", f"{_native._compiler()} -ffast-math")
    monkeypatch.setitem(_native._state, "warned", True)
    assert _native.compile_unit("fast_math", _source("fm"), _CDEF) is None
    assert "-ffast-math" in _native.unit_why_off("fast_math")


# ------------------------------------------------------------------ not silent
def _fresh_state(monkeypatch):
    for key, value in (("tried", False), ("lib", None), ("why", None), ("warned", False), ("off", False)):
        monkeypatch.setitem(_native._state, key, value)


def test_one_warning_when_the_compiler_is_missing(monkeypatch):
    _fresh_state(monkeypatch)
    monkeypatch.delenv("HETEROSIM_NATIVE", raising=False)
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _native.lib() is None
        assert _native.lib() is None
        assert "no C compiler" in _native.why_off()
        assert _native.compile_unit("no_cc", _source("no_cc"), _CDEF) is None
        assert "no C compiler" in _native.unit_why_off("no_cc")
    ours = [w for w in caught if issubclass(w.category, RuntimeWarning) and "C kernels are off" in str(w.message)]
    assert len(ours) == 1
    assert "no C compiler" in str(ours[0].message) and "same results, only slower" in str(ours[0].message)


def test_no_warning_when_the_user_turns_them_off(monkeypatch):
    _fresh_state(monkeypatch)
    monkeypatch.setenv("HETEROSIM_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native.lib() is None
        assert _native.why_off() == "HETEROSIM_NATIVE=0"


def test_windows_says_why(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert _native._compiler() is None
    why = _native._no_compiler_why()
    assert "Windows" in why and "GCC vector extensions" in why and "MSVC" in why


# ------------------------------------------------------------------ no segfault on bad shapes
def _bad_variants(t: torch.Tensor):
    """(label, tensor) pairs the C code cannot take in place of t."""
    out = [("wrong dtype", t.to(torch.float32) if t.dtype == torch.float64 else t.to(torch.float64)),
           ("not a tensor", t.tolist())]
    if t.dim() == 2:
        out += [("wrong shape", t[:, :-1].contiguous()), ("too few rows", t[:-1].contiguous()),
                ("not contiguous", t.t().contiguous().t() if t.shape[0] > 1 else t.repeat(1, 2)[:, ::2])]
    else:
        out += [("wrong shape", t[:-1].contiguous()), ("not contiguous", t.repeat(2)[::2])]
    return out


def _assert_rejects(call, args: dict, names, copied=()):
    """call(**args) with each of ``names`` replaced by each bad variant raises a ValueError that
    names it (a batch X with too few rows makes the other buffers the mismatched ones);
    ``copied``: inputs taken in any layout (copied contiguous first)."""
    for name in names:
        for label, bad in _bad_variants(args[name]):
            if name in copied and label == "not contiguous":
                call(**{**args, name: bad})
                continue
            with pytest.raises(ValueError) as err:
                call(**{**args, name: bad})
            assert re.search(rf"\b{name}\b", str(err.value)) or (name == "X" and label == "too few rows"), \
                (name, label, str(err.value))


@pytest.mark.parametrize("kind", ["blocks", "diag"])
def test_quadratic_oracle_rejects_what_c_cannot_take(kind):
    _needs_compiler()
    p = hs.problems.make("block_scale", spread=1.5, n_blocks=3, block_size=4, seed=1)
    fn = (_native.quadratic_oracle(p.x_star, p.f_star, blocks=p.block_hessians) if kind == "blocks"
          else _native.quadratic_oracle(p.x_star, p.f_star, diag=torch.ones(p.d, dtype=torch.float64)))
    R = 5
    X = torch.randn(R, p.d, dtype=torch.float64)
    args = dict(X=X, G=torch.empty_like(X), f=X.new_empty(R), norm=X.new_empty(R), f_limit=X.new_full((R,), 1e9),
                X_prev=X.clone())
    assert fn(**args) == 0
    _assert_rejects(fn, args, ["X", "G", "f", "norm", "f_limit", "X_prev"])
    with pytest.raises(ValueError, match="frozen"):
        fn(**args, frozen=torch.zeros(R))  # float, not bool
    with pytest.raises(ValueError, match="frozen"):
        fn(**args, frozen=torch.zeros(R + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="x\\*"):
        _native.quadratic_oracle(p.x_star, p.f_star, diag=torch.ones(p.d + 1))
    with pytest.raises(ValueError, match="square"):
        _native.quadratic_oracle(p.x_star, p.f_star, blocks=[torch.ones(p.d, 2)])
    with pytest.raises(ValueError, match="cover"):
        _native.quadratic_oracle(p.x_star, p.f_star, blocks=p.block_hessians[:-1])


def test_problem_native_oracles_reject_what_c_cannot_take():
    _needs_compiler()
    quad = hs.problems.make("block_scale", spread=1.5, n_blocks=3, block_size=4, seed=1)
    soft = hs.problems.make("softmax", n=20, p=3, C=4, seed=2)
    for prob in (quad, soft):
        R = 4
        X = torch.randn(R, prob.d, dtype=torch.float64)
        fn = prob.native_oracle(X)
        assert fn is not None
        args = dict(X=X, G=torch.empty_like(X), f=X.new_empty(R), norm=X.new_empty(R), f_limit=X.new_full((R,), 1e9))
        fn(**args)
        _assert_rejects(fn, args, ["X", "G", "f", "norm", "f_limit"])
    # the minibatch gradients, with per-row draws
    R, m = 4, 5
    X = torch.randn(R, soft.d, dtype=torch.float64)
    mb = soft.native_minibatch(X)
    idx = torch.stack([torch.randperm(soft.n)[:m] for _ in range(3)])
    which = torch.tensor([0, 2, 1, 2])
    G = torch.empty_like(X)
    mb(X, G, idx, which)
    assert torch.allclose(G[1], soft.minibatch_grad(X[1:2], idx[2])[0], rtol=1e-12, atol=1e-14)
    _assert_rejects(lambda X, G, idx, which: mb(X, G, idx, which), dict(X=X, G=G, idx=idx, which=which),
                    ["X", "G", "which"], copied=("which",))
    for bad_idx, match in ((idx.float(), "idx"), (idx[:, :0], "idx"), (idx[0], "idx"), (idx + soft.n, "0..19"),
                           (idx - soft.n, "0..19")):
        with pytest.raises(ValueError, match=match):
            mb(X, G, bad_idx, which)
    for bad_which in (which + 1, which - 1):
        with pytest.raises(ValueError, match="which"):
            mb(X, G, idx, bad_which)


def test_tree_and_block_entries_reject_bad_shapes_and_fall_back_on_layouts():
    _needs_compiler()
    G = torch.randn(6, 9, dtype=torch.float64)
    ref = _native.tree_norm(G)
    for bad in (torch.randn(6, 0, dtype=torch.float64), torch.randn(9, dtype=torch.float64), G.tolist()):
        with pytest.raises(ValueError, match="tree_norm"):
            _native.tree_norm(bad)
    with _native.disabled():
        assert torch.equal(_native.tree_norm(G.clone()), ref)
    # a layout or dtype C cannot read is not an error there: the torch twin takes it, same bits
    assert torch.equal(_native.tree_norm(G.t().contiguous().t()), ref)
    assert torch.allclose(_native.tree_norm(G.float()).double(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="tree_sum_"):
        _native.tree_sum_(torch.randn(4, 0, dtype=torch.float64))
    mats = [torch.eye(3, dtype=torch.float64) * 2, torch.eye(6, dtype=torch.float64)]
    out = torch.empty_like(G)
    ref = _native.block_product_(G, mats, out).clone()
    assert torch.equal(ref, torch.cat([G[:, :3] * 2, G[:, 3:]], 1))
    for E, ms, o, match in ((G, mats[:1], out, "cover"), (G, [torch.ones(3, 4), mats[1]], out, "square"),
                            (G, mats, out[:, :-1], "out"), (G[0], mats, out, "E"), (G, mats, out[:-1], "out")):
        with pytest.raises(ValueError, match=match):
            _native.block_product_(E, ms, o)
    with pytest.raises(ValueError, match="stacked"):
        _native.block_product_(G[:, :6], [mats[0], mats[0]], out[:, :6], torch.stack([mats[1]]))
    assert torch.equal(_native.block_product_(G.t().contiguous().t(), mats, torch.empty_like(G)), ref)
    assert torch.equal(_native.block_product_(G, mats, torch.empty(9, 6, dtype=torch.float64).t()), ref)


# ------------------------------------------------------------------ calls stay cheap, threads run at once
def test_kernels_take_none_for_null_and_release_the_gil():
    _needs_compiler()
    k = _native.lib()
    R, d = 8, 5
    x, xs, lam = (torch.randn(R, d, dtype=torch.float64) for _ in range(3))
    xs, lam = xs[0].clone(), lam[0].abs() + 0.5
    G, f = torch.empty(R, d, dtype=torch.float64), torch.empty(R, dtype=torch.float64)
    # no norm, no f_limit, no frozen rows, no previous iterate: four NULL pointers given as None
    bad = k.diag_oracle(0, R, d, x.data_ptr(), xs.data_ptr(), lam.data_ptr(), G.data_ptr(), f.data_ptr(), None,
                        None, 1, 0.25, None, None)
    assert bad == 0
    assert torch.equal(G, lam * (x - xs))  # one product per entry: exact against torch
    nrm = torch.empty(R, dtype=torch.float64)
    assert _native.rows(k.rows_norm, R, R * d, d, G.data_ptr(), nrm.data_ptr(), 1) == 0
    assert torch.equal(nrm, _native.tree_norm(G.t().contiguous().t()))  # C against the torch twin
