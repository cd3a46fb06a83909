"""The sweep's cache key covers the code: a changed measure function, module constant,
heterosim source file or library version recomputes; an unchanged re-run computes nothing.

References: the table a fresh store gives for the changed code (direct values K * a),
and the stored code-key columns against :func:`heterosim.codekey.code_parts`."""
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import heterosim
import heterosim.claims.common
from heterosim import codekey, sweep

SCRIPT = textwrap.dedent('''
    STUDY = "stale"
    K = {K}

    def grid(quick=False):
        return {{"a": [1, 2, 3]}}

    def measure(config):
        return {{"y": {body}}}
''')


def _write(path: Path, K="1.0", body='K * config["a"]') -> Path:
    path.write_text(SCRIPT.format(K=K, body=body))
    return path


def _sweep(script: Path, root: Path, capsys, *extra) -> tuple[pd.DataFrame, str]:
    assert sweep.cli_main([str(script), "-j", "1", "--root", str(root), "--no-progress", *extra]) == 0
    out = capsys.readouterr().out
    return sweep.load("stale", root), out


def test_unchanged_rerun_computes_nothing_and_rows_carry_the_key(tmp_path, capsys):
    script = _write(tmp_path / "exp.py")
    t1, out1 = _sweep(script, tmp_path / "r", capsys)
    assert "(0 cached, 3 computed: 3 new; 0 failed)" in out1
    t2, out2 = _sweep(script, tmp_path / "r", capsys)
    assert "(3 cached, 0 computed; 0 failed)" in out2
    pd.testing.assert_frame_equal(t1, t2)
    mod = sweep.load_experiment(script)
    parts = codekey.code_parts(mod.measure, [mod])
    assert (t1["code_key"] == parts.code_key).all() and (t1["source_hash"] == codekey.source_tree_hash()).all()
    assert (t1["lib_versions"] == codekey.library_versions()).all()
    assert set(codekey.PART_COLUMNS) <= set(sweep.META_COLUMNS)


def test_changed_module_constant_recomputes(tmp_path, capsys):
    """The K * a case: K = 1, then K = 10 in the experiment file gives 10x the table."""
    script = _write(tmp_path / "exp.py", K="1.0")
    t1, _ = _sweep(script, tmp_path / "r", capsys)
    assert list(t1["y"]) == [1.0, 2.0, 3.0]
    _write(script, K="10.0")
    t2, out = _sweep(script, tmp_path / "r", capsys)
    assert list(t2["y"]) == [10.0, 20.0, 30.0]
    assert "3 recomputed [" in out and "experiment module changed" in out
    # the README shows this very line
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = next(line for line in readme.splitlines() if line.startswith("stale: 3 configs"))
    assert out.startswith(shown.split("; ...")[0])


def test_changed_measure_function_recomputes(tmp_path, capsys):
    script = _write(tmp_path / "exp.py")
    _sweep(script, tmp_path / "r", capsys)
    _write(script, body='K * config["a"] ** 2')
    t2, out = _sweep(script, tmp_path / "r", capsys)
    assert list(t2["y"]) == [1.0, 4.0, 9.0]
    assert "measure function changed" in out and "0 cached" in out


def test_force_and_salt_still_recompute(tmp_path, capsys):
    script = _write(tmp_path / "exp.py")
    _sweep(script, tmp_path / "r", capsys)
    _, out = _sweep(script, tmp_path / "r", capsys, "--force")
    assert "3 recomputed [--force: 3]" in out
    calls = []

    def fn(c):
        calls.append(c)
        return {"y": c["a"]}
    sweep.run({"a": [1, 2]}, "salted", fn, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    sweep.run({"a": [1, 2]}, "salted", fn, root=tmp_path, n_jobs=1, progress=False, verbose=False, salt="v2")
    assert len(calls) == 4


def test_rows_stored_without_a_code_key_are_recomputed(tmp_path, capsys):
    """A store written by a heterosim without code keys is never served as current."""
    cfg = {"a": 1}
    store = sweep.Store(sweep.study_dir("old", tmp_path))
    store.write([{"a": 1, "y": -1.0, "config_hash": sweep.config_hash(cfg), "row": 0, "status": "ok"}])
    t = sweep.run({"a": [1]}, "old", _double, root=tmp_path, n_jobs=1, progress=False)
    assert list(t["y"]) == [2.0]
    assert "recomputed [stored without a code key (older heterosim): 1]" in capsys.readouterr().out


def _double(c):
    return {"y": 2.0 * c["a"]}


def test_changed_heterosim_source_file_recomputes(tmp_path):
    """A copy of the package on PYTHONPATH; one line added to one of its source files."""
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(heterosim.__file__).parent, pkg / "heterosim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = _write(tmp_path / "exp.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg), *sys.path]))
    cmd = [sys.executable, "-m", "heterosim.cli", "sweep", str(script), "-j", "1", "--root", str(tmp_path / "r"),
           "--no-progress"]

    def go():
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout
    assert "3 computed: 3 new" in go()
    assert "(3 cached, 0 computed" in go()
    with open(pkg / "heterosim" / "blocks.py", "a") as fh:
        fh.write("\n# an edit that changes no value still changes the code\n")
    assert "3 recomputed [heterosim source changed: 3]" in go()
    assert "(3 cached, 0 computed" in go()


# ----------------------------------------------------------------------------- the key's parts
def _fn_with_globals(g: dict):
    """A function whose globals are ``g`` (as a notebook cell's function would see them)."""
    src = "def measure(config):\n    return {'y': K * config['a'], 'n': len(LOG)}\n"
    ns = dict(g, __name__="__main__")
    exec(compile(src, "<cell>", "exec"), ns)
    return ns["measure"]


def test_function_hash_follows_immutable_globals_not_mutable_ones():
    h1 = codekey.function_hash(_fn_with_globals({"K": 1, "LOG": []}))
    assert h1 == codekey.function_hash(_fn_with_globals({"K": 1, "LOG": [1, 2, 3]}))   # a log or cache
    assert h1 != codekey.function_hash(_fn_with_globals({"K": 10, "LOG": []}))
    a = codekey.function_hash(_fn_with_globals({"K": np.arange(3.0), "LOG": []}))
    assert a != codekey.function_hash(_fn_with_globals({"K": np.arange(3.0) + 1, "LOG": []}))


def test_function_hash_sees_partials_defaults_closures_and_wrappers():
    import functools

    def f(c, scale=1.0):
        return {"y": scale * c["a"]}
    assert codekey.function_hash(functools.partial(f, scale=2.0)) != \
        codekey.function_hash(functools.partial(f, scale=3.0))

    def make(k):
        def g(c):
            return {"y": k * c["a"]}
        return g
    assert codekey.function_hash(make(1)) != codekey.function_hash(make(2))
    assert codekey.function_hash(make(1)) == codekey.function_hash(make(1))

    def twice(fn):
        @functools.wraps(fn)
        def w(c):
            return {k: 2 * v for k, v in fn(c).items()}
        return w

    def once(fn):
        @functools.wraps(fn)
        def w(c):
            return fn(c)
        return w
    assert codekey.function_hash(twice(f)) != codekey.function_hash(once(f))


def test_describe_changes_names_each_part():
    now = codekey.CodeParts("f", "m", "s", "0.1.0", "torch 2.13.0, numpy 2.4.6, scipy 1.17.1")
    same = dict(now.columns(), heterosim_version="0.1.0")
    assert codekey.describe_changes(same, now) == []
    old = dict(same, lib_versions="torch 2.12.0, numpy 2.4.6, scipy 1.17.1", fn_hash="g", code_key="x")
    why = codekey.describe_changes(old, now)
    assert why[0] == "measure function changed"
    assert why[1] == ("library versions changed (torch 2.12.0, numpy 2.4.6, scipy 1.17.1 -> "
                      "torch 2.13.0, numpy 2.4.6, scipy 1.17.1)")
    assert codekey.describe_changes({"code_key": float("nan")}, now) == [
        "stored without a code key (older heterosim)"]


def test_module_hash_follows_user_modules_the_function_names(tmp_path, monkeypatch):
    helper = tmp_path / "my_helpers.py"
    helper.write_text("SCALE = 1.0\ndef scale(x):\n    return SCALE * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    mod = importlib.import_module("my_helpers")
    ns = {"my_helpers": mod, "__name__": "cell"}
    exec("def measure(c):\n    return {'y': my_helpers.scale(c['a'])}\n", ns)
    files = codekey.user_files(ns["measure"])
    assert files == [helper.resolve()]
    h1 = codekey.modules_hash(ns["measure"])
    helper.write_text("SCALE = 2.0\ndef scale(x):\n    return SCALE * x\n")
    assert codekey.modules_hash(ns["measure"]) != h1
    # heterosim's own functions, numpy and the standard library are not user modules
    assert codekey.user_files(heterosim.claims.common.measure_tuned) == []
    assert codekey._user_file(np) is None and codekey._user_file(types) is None


def _uses_engine(c):
    import heterosim as hs
    p = hs.problems.BlockQuadratic.from_spectra([[1.0, 2.0]], seed=0)
    return {"T": float(hs.engine.run(p, "sgd", lrs=[0.3], steps=200, target=("grad_l2", 1e-6))
                       .iterations_to(1e-6, "grad_l2")[0])}


def test_rows_record_the_engine_path_and_the_cpu(tmp_path, monkeypatch):
    """provenance: the engine's default path (native C or torch, with why) and the CPU model."""
    from heterosim import engine, provenance
    t = sweep.run({"a": [1]}, "prov", _uses_engine, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    assert t["engine_path"].iloc[0] == engine.engine_path()
    assert t["engine_path"].iloc[0] == "native-c" or t["engine_path"].iloc[0].startswith("torch-fast (")
    assert t["cpu"].iloc[0] == provenance.cpu_model() and t["cpu"].iloc[0] not in ("", "unknown")
    # the recorded path gives the same T as the plain reference loop
    assert t["T"].iloc[0] == float(engine.run(
        heterosim.problems.BlockQuadratic.from_spectra([[1.0, 2.0]], seed=0), "sgd", lrs=[0.3], steps=200,
        target=("grad_l2", 1e-6), fast=False).iterations_to(1e-6, "grad_l2")[0])


def test_source_hash_sees_an_edit_within_one_process(tmp_path):
    """A notebook that edits a source file after its first sweep gets a new key for the next."""
    import os
    (tmp_path / "a.py").write_text("X = 1\n")
    h1 = codekey.source_tree_hash(tmp_path)
    assert codekey.source_tree_hash(tmp_path) == h1                       # unchanged: the same
    (tmp_path / "a.py").write_text("X = 2\n")
    st = (tmp_path / "a.py").stat()
    os.utime(tmp_path / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))   # coarse clocks
    assert codekey.source_tree_hash(tmp_path) != h1
