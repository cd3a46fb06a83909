"""The `heterosim` command: help, listing and dispatch to the subcommands' own parsers."""
import pytest

import heterosim as hs
from heterosim.cli import DELEGATED, main


def test_list_prints_every_registered_name(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in hs.problems.names() + hs.optimizers.names():
        assert name in out


def test_top_level_help_names_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ["demo", "list", *DELEGATED]:
        assert command in out


@pytest.mark.parametrize("command", sorted(DELEGATED))
def test_delegated_help_reaches_the_subcommand_parser(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: heterosim {command}" in capsys.readouterr().out


def test_version_in_process_and_as_python_m_heterosim(capsys):
    import subprocess
    import sys
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"heterosim {hs.__version__}"
    proc = subprocess.run([sys.executable, "-m", "heterosim", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"heterosim {hs.__version__}" == f"heterosim {_pyproject_version()}"


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_say_what_the_commands_do(capsys):
    pre = _help(["bridge", "pretrain", "--help"], capsys)
    assert "checkpoint file to write" in pre and "(default checkpoints/pretrained.safetensors)" in pre
    assert "results/checkpoints" not in pre and "overwrite --out if it exists" in pre
    gap = _help(["bridge", "gap", "--help"], capsys)
    assert "<out>/bridge_gap/" in gap and "bridge_gap_runs" in gap
    assert "--steps STEPS fine-tuning steps per run (default 300; with --tiny 30)" in gap
    sf = _help(["bridge", "spread-finetune", "--help"], capsys)
    assert "--ln" not in sf                 # both placements always run: no placement option
    demo = _help(["demo", "--help"], capsys)
    assert "at least 100 (default 20000)" in demo and "<root>/demo/" in demo


def test_list_rejects_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        main(["list", "--verbose"])
    assert e.value.code == 2 and "unrecognized arguments: --verbose" in capsys.readouterr().err


def _pyproject_version() -> str:
    """The version the package is built with (pyproject.toml), which --version must report."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)
