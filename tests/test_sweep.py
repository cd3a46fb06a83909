"""Sweeps: grid expansion, stable hashes, atomic resumable storage, identical executors.

References: configs against itertools.product written out by hand, hashes against
BLAKE2b of the canonical JSON, tables against direct calls of the measured function, a
killed-and-resumed sweep against an uninterrupted one, joblib and Dask against serial.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from heterosim import sweep
from heterosim.codekey import PART_COLUMNS


def _measure(config):
    """A deterministic measurement: seeded randomness and an eigen-solve, whose floating-point
    results must agree across processes."""
    g = np.random.default_rng(config["seed"])
    A = g.standard_normal((6, 6))
    lam = np.linalg.eigvalsh(A @ A.T + config["shift"] * np.eye(6))
    return [{"k": k, "eig": float(lam[k]), "scaled": float(lam[k]) * config["shift"]} for k in range(2)]


GRID = {"seed": [0, 1, 2], "shift": [0.5, 2.0]}


def _expected(grid):
    rows = []
    for cfg in sweep.expand(grid):
        rows += [dict(cfg, **r) for r in _measure(cfg)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ grids and hashes
def test_expand_is_the_cartesian_product_first_key_slowest():
    got = sweep.expand({"a": [1, 2], "b": ["x", "y", "z"]})
    assert got == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]


def test_zip_by_tuple_key_and_by_argument_agree():
    by_key = sweep.expand({("opt", "beta"): [("sgd", None), ("signum", 0.9)], "C": [10, 100]})
    by_arg = sweep.expand({"opt": ["sgd", "signum"], "beta": [None, 0.9], "C": [10, 100]}, zip=[("opt", "beta")])
    ref = [{"opt": o, "beta": b, "C": c} for o, b in (("sgd", None), ("signum", 0.9)) for c in (10, 100)]
    assert by_key == ref and by_arg == ref


def test_list_of_grids_is_their_union_without_duplicates():
    got = sweep.expand([{"a": [1, 2]}, {"a": [2, 3]}])
    assert got == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_config_hash_is_blake2b_of_canonical_json_and_ignores_key_order():
    cfg = {"b": 2.5, "a": [1, 2], "c": None}
    canon = json.dumps({"a": [1, 2], "b": 2.5, "c": None}, sort_keys=True, separators=(",", ":"))
    assert sweep.config_hash(cfg) == hashlib.blake2b(canon.encode(), digest_size=8).hexdigest()
    assert sweep.config_hash({"c": None, "a": (1, 2), "b": np.float64(2.5)}) == sweep.config_hash(cfg)
    assert sweep.config_hash({"x": 1}) != sweep.config_hash({"x": 1.0})
    assert sweep.config_hash(cfg, salt="v2") != sweep.config_hash(cfg)


@pytest.mark.parametrize("grid, zip_, msg", [
    ({"a": 3}, None, "must be a list"),
    ({"a": "abc"}, None, "must be a list"),
    ({"a": [1], "b": [1, 2]}, [("a", "b")], "equal length"),
    ({"status": [1]}, None, "reserved"),
    ({("a", "b"): [(1,)]}, None, "tuple of 2"),
    ({"a": [object()]}, None, "allowed"),
])
def test_bad_grids_raise_valueerror(grid, zip_, msg):
    with pytest.raises(ValueError, match=msg):
        sweep.expand(grid, zip=zip_)


def test_bad_study_names_raise_valueerror(tmp_path):
    for bad in ("", "../x", "a//b", "a b"):
        with pytest.raises(ValueError, match="study name"):
            sweep.study_dir(bad, tmp_path)


# ------------------------------------------------------------------------ storage and resume
def _counting(fn, calls):
    """``fn`` that logs its configs in ``calls`` (a list: not part of the code key)."""
    def counted(c):
        calls.append(c)
        return fn(c)
    return counted


def test_serial_table_matches_direct_calls_and_carries_provenance(tmp_path):
    t = sweep.run(GRID, "s", _measure, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    exp = _expected(GRID)
    pd.testing.assert_frame_equal(t[exp.columns].reset_index(drop=True), exp, check_dtype=False)
    from heterosim.provenance import provenance
    prov = provenance()
    assert (t["heterosim_version"] == prov["heterosim_version"]).all() and (t["git_rev"] == prov["git_rev"]).all()
    assert (t["status"] == "ok").all() and t["time"].str.endswith("+00:00").all()
    assert list(t["config_hash"].unique()) == [sweep.config_hash(c) for c in sweep.expand(GRID)]
    assert len(list((tmp_path / "s").glob("chunk-*.parquet"))) == 1       # compacted
    # a second run of the same function computes nothing and returns the same table
    calls = []
    counted = _counting(_measure, calls)
    t1 = sweep.run(GRID, "s2", counted, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    assert len(calls) == 6
    t2 = sweep.run(GRID, "s2", counted, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    assert len(calls) == 6
    pd.testing.assert_frame_equal(t2, t1)


def test_failed_configs_are_rows_and_only_they_are_retried(tmp_path):
    state, calls = {"fail": True}, []   # mutable containers are not part of the code key

    def flaky(c):
        calls.append(c)
        if c["seed"] == 1 and state["fail"]:
            raise RuntimeError("boom")
        return _measure(c)
    t = sweep.run(GRID, "f", flaky, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    bad = t[t["status"] == "failed"]
    assert set(bad["seed"]) == {1} and bad["error"].str.contains("RuntimeError: boom").all()
    assert bad["eig"].isna().all()
    state["fail"], calls[:] = False, []
    t2 = sweep.run(GRID, "f", flaky, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    assert sorted(c["seed"] for c in calls) == [1, 1]
    ref = sweep.run(GRID, "ref", _measure, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    other = ["error", *PART_COLUMNS]   # another function: another code key
    pd.testing.assert_frame_equal(sweep.strip_volatile(t2).drop(columns=other),
                                  sweep.strip_volatile(ref).drop(columns=other))


def test_force_recomputes_and_newest_rows_win(tmp_path):
    calls = []
    counted = _counting(_measure, calls)
    sweep.run(GRID, "g", counted, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    calls[:] = []
    t = sweep.run(GRID, "g", counted, root=tmp_path, n_jobs=1, force=True, progress=False, verbose=False)
    assert len(calls) == 6 and len(t) == 12 and not t.duplicated(["config_hash", "row"]).any()


def test_bad_rows_fail_the_config_not_the_sweep(tmp_path):
    t = sweep.run({"a": [1, 2]}, "bad", lambda c: {"a": c["a"] + 1} if c["a"] == 1 else [],
                  root=tmp_path, n_jobs=1, progress=False, verbose=False)
    assert list(t["status"]) == ["failed", "failed"]
    assert "contradicts" in t["error"].iloc[0] and "no rows" in t["error"].iloc[1]


def test_stale_temporary_files_are_ignored_and_removed(tmp_path):
    folder = tmp_path / "tmpfiles"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f".tmp-{dead.pid}-000001-chunk-x.parquet"
    stale.write_bytes(b"half a parquet file")
    t = sweep.run({"seed": [0], "shift": [1.0]}, "tmpfiles", _measure, root=tmp_path, n_jobs=1, progress=False,
                  verbose=False)
    assert len(t) == 2 and not stale.exists()


KILL_SCRIPT = textwrap.dedent('''
    import time
    STUDY = "killed"

    def grid(quick=False):
        return {"i": list(range(40))}

    def measure(config):
        time.sleep(0.05)
        return [{"square": config["i"] ** 2, "part": k} for k in range(3)]
''')


def _cli(script, root, *extra):
    return [sys.executable, "-m", "heterosim.cli", "sweep", str(script), "-j", "1", "--root", str(root),
            "--no-progress", *extra]


def test_sigkill_half_way_then_resume_equals_an_uninterrupted_run(tmp_path):
    script = tmp_path / "killed_sweep.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(_cli(script, tmp_path / "a"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = tmp_path / "a" / "killed"
    deadline = time.monotonic() + 60
    while not list(folder.glob("chunk-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sweep.Store(folder).load()
    assert 0 < partial["config_hash"].nunique() < 40, "the kill must land half-way"
    assert not partial.duplicated(["config_hash", "row"]).any()
    out = subprocess.run(_cli(script, tmp_path / "a"), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n_cached = partial["config_hash"].nunique()
    assert f"({n_cached} cached, {40 - n_cached} computed" in out.stdout
    assert sweep.cli_main([str(script), "-j", "1", "--root", str(tmp_path / "b"), "--no-progress"]) == 0
    resumed = sweep.strip_volatile(sweep.load("killed", tmp_path / "a"))
    straight = sweep.strip_volatile(sweep.load("killed", tmp_path / "b"))
    assert len(resumed) == 120 and not resumed.duplicated(["config_hash", "row"]).any()
    key = ["config_hash", "row"]
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  straight.sort_values(key).reset_index(drop=True))
    assert sorted(resumed.loc[resumed["part"] == 0, "square"]) == [i * i for i in range(40)]


# ------------------------------------------------------------------------ executors
def test_joblib_and_local_dask_give_the_serial_table(tmp_path):
    pytest.importorskip("distributed")
    serial = sweep.run(GRID, "serial", _measure, root=tmp_path, n_jobs=1, progress=False, verbose=False)
    pooled = sweep.run(GRID, "joblib", _measure, root=tmp_path, n_jobs=2, flush_every=0, progress=False,
                       verbose=False)
    dask = sweep.run(GRID, "dask", _measure, root=tmp_path, n_jobs=2, scheduler="local", progress=False,
                     verbose=False)
    ref = sweep.strip_volatile(serial)
    pd.testing.assert_frame_equal(sweep.strip_volatile(pooled), ref)
    pd.testing.assert_frame_equal(sweep.strip_volatile(dask), ref)


# ------------------------------------------------------------------------ command line
def test_cli_help_and_dry_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sweep.cli_main(["--help"])
    assert e.value.code == 0 and "--scheduler" in capsys.readouterr().out
    script = tmp_path / "k.py"
    script.write_text(KILL_SCRIPT)
    assert sweep.cli_main([str(script), "--dry-run"]) == 0
    assert "killed: 40 configs" in capsys.readouterr().out
    assert sweep.cli_main([str(tmp_path / "missing.py")]) == 2
    (tmp_path / "not_an_experiment.py").write_text("x = 1\n")
    assert sweep.cli_main([str(tmp_path / "not_an_experiment.py")]) == 2
    assert "lacks STUDY, measure" in capsys.readouterr().err
