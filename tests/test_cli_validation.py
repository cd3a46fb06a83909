"""Every command rejects a bad argument before any work, argparse-style: exit status 2, the
usage, and one line ``heterosim <command>: error: ...`` that names what was wrong and what
is allowed; never a traceback. (``heterosim sweep`` has its own tests in test_sweep.py.)"""
import subprocess
import sys

import pytest

from heterosim.cli import main


def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``heterosim ARGV`` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    """The one error line of stderr (usage lines start with 'usage:' or are indented)."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    return lines[0]


CASES = [
    # (argv, the error line's prefix, a fragment that says what is allowed)
    (["demo", "--steps", "0"], "heterosim demo", "argument --steps: must be a positive integer (>= 1); got 0"),
    (["demo", "--steps", "-1"], "heterosim demo", "must be a positive integer (>= 1); got -1"),
    (["demo", "--steps", "10"], "heterosim demo", "must be an integer >= 100"),
    (["demo", "--jobs", "0"], "heterosim demo", "must be a positive integer or -1 (all cores); got 0"),
    (["verify", "--seed", "-3"], "heterosim verify", "must be a non-negative integer (>= 0); got -3"),
    (["verify", "--only", "B1,Z9"], "heterosim verify", "unknown bound(s) Z9; known: B1"),
    (["plot", "c1_block_scale", "--root", "/nonexistent/results"], "heterosim plot",
     "--root '/nonexistent/results' is not a folder"),
    (["sweep", "experiments/c5_sign_lr.py", "-j", "0"], "heterosim sweep",
     "argument -j/--jobs: must be a positive integer or -1 (all cores); got 0"),
    (["sweep", "experiments/c5_sign_lr.py", "--threads", "0"], "heterosim sweep",
     "argument --threads: must be a positive integer (>= 1); got 0"),
    (["sweep", "/nonexistent/experiment.py"], "heterosim sweep",
     "experiment script '/nonexistent/experiment.py' does not exist"),
    (["plot", "no_such_study"], "heterosim plot", "argument claim: unknown claim 'no_such_study'; claims: C1"),
    (["claims", "--only", "C11"], "heterosim claims", "argument --only: unknown claim 'C11'"),
    (["claims", "--root", "/nonexistent/results"], "heterosim claims", "'/nonexistent/results' is not a folder"),
    (["bridge", "init-spread", "--widths", "32", "1"], "heterosim bridge init-spread",
     "argument --widths: must be an integer >= 2; got 1"),
    (["bridge", "init-spread", "--seeds", "0", "0"], "heterosim bridge init-spread",
     "--seeds repeats a value (0 0); give each value once"),
    (["bridge", "spread-finetune", "--steps", "0"], "heterosim bridge spread-finetune",
     "argument --steps: must be a positive integer (>= 1); got 0"),
    (["bridge", "spread-finetune", "--task", "digits", "--classes", "3"], "heterosim bridge spread-finetune",
     "--classes does not apply to --task digits"),
    (["bridge", "head-growth", "--lrs", "0.1"], "heterosim bridge head-growth",
     "--lrs takes one learning rate per optimizer: 4 optimizers"),
    (["bridge", "head-growth", "--lrs", "0.1", "0", "1", "1"], "heterosim bridge head-growth",
     "argument --lrs: must be a finite number > 0; got '0'"),
    (["bridge", "gap", "--optimizers", "adam"], "heterosim bridge gap", "--optimizers needs at least two"),
    (["bridge", "gap", "--layers", "0"], "heterosim bridge gap", "argument --layers: must be a positive integer"),
    (["bridge", "finetune", "--task", "synthetic", "--classes", "0"], "heterosim bridge finetune",
     "argument --classes: must be an integer >= 2; got 0"),
    (["bridge", "finetune", "--tiny", "--classes", "1"], "heterosim bridge finetune",
     "argument --classes: must be an integer >= 2; got 1"),
    (["bridge", "finetune", "--lr", "nan"], "heterosim bridge finetune", "must be a finite number > 0; got 'nan'"),
    (["bridge", "finetune", "--seeds", "-1"], "heterosim bridge finetune", "must be a non-negative integer"),
    (["bridge", "finetune", "--model", "checkpoint:/nonexistent.safetensors"], "heterosim bridge finetune",
     "no checkpoint file at '/nonexistent.safetensors'"),
    (["bridge", "finetune", "--model", "resnet"], "heterosim bridge finetune",
     "--model must be tiny, minilm, checkpoint:PATH or hf:NAME_OR_PATH; got 'resnet'"),
    (["bridge", "finetune", "--device", "gpu0"], "heterosim bridge finetune", "is not a torch device"),
    (["bridge", "finetune", "--tune", "4", "--lr", "0.1"], "heterosim bridge finetune", "give --lr or --tune"),
    (["bridge", "pretrain", "--layers", "0"], "heterosim bridge pretrain",
     "argument --layers: must be a positive integer (>= 1); got 0"),
    (["bridge", "pretrain", "--out", "/nonexistent/dir/m.safetensors"], "heterosim bridge pretrain",
     "the folder '/nonexistent/dir' does not exist"),
    (["bridge", "export-hf", "--src", "/nonexistent/model"], "heterosim bridge export-hf",
     "is not a Hugging Face model folder"),
]


@pytest.mark.parametrize("argv,prog,fragment", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_argument_is_one_line_with_exit_2(argv, prog, fragment, capsys):
    code, out, err = run_cli(argv, capsys)
    line = error_line(err)
    assert code == 2 and out == ""
    assert line.startswith(f"{prog}: error: ") and fragment in line, line
    assert err.startswith(f"usage: {prog} ")


def test_a_valueerror_during_the_run_is_one_line_with_exit_2(tmp_path, capsys):
    """A combination only the run detects (more docstring classes than the standard library has
    modules): one line from the library's message, exit 2, the failed config stored for a retry."""
    from heterosim import sweep
    code, out, err = run_cli(["bridge", "finetune", "--task", "docstrings", "--classes", "5000", "--tiny",
                              "--out", str(tmp_path), "--no-progress"], capsys)
    line = error_line(err)
    assert code == 2 and line.startswith("heterosim bridge finetune: error: ")
    assert "asked for 5000" in line and "stored as failed" in line
    assert "usage:" not in err
    stored = sweep.load("bridge_finetune", tmp_path)
    assert stored["status"].tolist() == ["failed"] and stored["classes"].tolist() == [5000]


def test_pretrain_refuses_to_overwrite_without_force(tmp_path, capsys):
    existing = tmp_path / "m.safetensors"
    existing.write_bytes(b"keep me")
    code, _, err = run_cli(["bridge", "pretrain", "--out", str(existing)], capsys)
    assert code == 2 and "exists; pass --force to overwrite it" in error_line(err)
    assert existing.read_bytes() == b"keep me"


def test_bad_argument_from_a_fresh_process_has_no_traceback():
    """The installed entry point, as a user runs it: ``python -m heterosim``."""
    proc = subprocess.run([sys.executable, "-m", "heterosim", "bridge", "finetune", "--tiny", "--steps", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert error_line(proc.stderr) == ("heterosim bridge finetune: error: argument --steps: must be a positive "
                                       "integer (>= 1); got 0")
