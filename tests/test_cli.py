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
