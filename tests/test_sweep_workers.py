"""Worker processes: a rule and a problem registered in a user's script are known in
every loky and Dask worker, and a SIGKILLed sweep leaves no worker behind.

Reference for the registered rule: the same arithmetic under its built-in name (sgd)
on the same problem gives the same T(eps)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from heterosim import sweep

# A registered rule (SGD under another name) and a registered problem (a fixed block
# quadratic), swept by name. T(eps) of the user's rule must equal built-in sgd's.
USER_SCRIPT = textwrap.dedent('''
    import dataclasses
    import heterosim as hs
    from heterosim import optimizers, problems

    STUDY = "user_rule"

    @optimizers.register("my_sgd_from_script")
    def my_sgd(**hyper):
        return dataclasses.replace(optimizers.make("sgd", **hyper), name="my_sgd_from_script")

    @problems.register("my_quadratic_from_script")
    def my_quadratic(scale=1.0):
        return problems.BlockQuadratic.from_spectra([[1.0, 2.0], [scale, 3.0 * scale]], seed=0)

    def grid(quick=False):
        return {"optimizer": ["my_sgd_from_script", "sgd"], "scale": [1.0, 10.0], "lr": [0.02, 0.05]}

    def measure(config):
        p = hs.problems.make("my_quadratic_from_script", scale=config["scale"])
        res = hs.engine.run(p, config["optimizer"], lrs=[config["lr"]], steps=3000, target=("grad_l2", 1e-6))
        return {"T": float(res.iterations_to(1e-6, "grad_l2")[0])}

    if __name__ == "__main__":
        import sys
        jobs, scheduler = int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else None)
        t = hs.sweep.run(grid(), STUDY, measure, root=sys.argv[1], n_jobs=jobs, scheduler=scheduler,
                         progress=False)
''')


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _check_table(root: Path):
    t = sweep.load("user_rule", root)
    assert len(t) == 8 and (t["status"] == "ok").all(), t[["optimizer", "status", "error"]]
    mine = t[t["optimizer"] == "my_sgd_from_script"].set_index(["scale", "lr"])["T"].sort_index()
    ref = t[t["optimizer"] == "sgd"].set_index(["scale", "lr"])["T"].sort_index()
    assert (mine == ref).all() and mine.notna().all() and (mine < 3000).all()


@pytest.mark.parametrize("how", ["loky", "dask"])
def test_rule_registered_in_an_experiment_script_reaches_the_workers(tmp_path, how):
    if how == "dask":
        pytest.importorskip("distributed")
    script = tmp_path / "user_rule.py"
    script.write_text(USER_SCRIPT)
    cmd = [sys.executable, "-m", "heterosim.cli", "sweep", str(script), "-j", "2", "--root", str(tmp_path),
           "--no-progress"] + (["--scheduler", "local"] if how == "dask" else [])
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "8 computed: 8 new; 0 failed" in out.stdout
    _check_table(tmp_path)


@pytest.mark.parametrize("how", ["loky", "dask"])
def test_rule_registered_in_a_main_script_reaches_the_workers(tmp_path, how):
    """``python my_script.py``: the registrations live in __main__."""
    if how == "dask":
        pytest.importorskip("distributed")
    script = tmp_path / "user_rule.py"
    script.write_text(USER_SCRIPT)
    cmd = [sys.executable, str(script), str(tmp_path), "2"] + (["local"] if how == "dask" else [])
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    _check_table(tmp_path)


SLOW_SCRIPT = textwrap.dedent('''
    import time
    STUDY = "slow"

    def grid(quick=False):
        return {"i": list(range(200))}

    def measure(config):
        time.sleep(0.2)
        return {"y": config["i"]}
''')


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["loky", "dask"])
def test_no_worker_outlives_a_sigkilled_sweep(tmp_path, how):
    if how == "dask":
        pytest.importorskip("distributed")
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT)
    cmd = [sys.executable, "-m", "heterosim.cli", "sweep", str(script), "-j", "2", "--root", str(tmp_path),
           "--no-progress"] + (["--scheduler", "local"] if how == "dask" else [])
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    folder = tmp_path / "slow"
    deadline = time.monotonic() + 120
    while not list(folder.glob("chunk-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(
        errors="replace") or "loky" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
    assert len(workers) >= 2, "the sweep runs in worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # loky's own idle timeout is 300 s; the parent watch ends them within about a second
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:  # leave the machine clean even when the check fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived the killed sweep"
