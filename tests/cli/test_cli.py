"""The command line as a user meets it: help, version, errors, ``python -m mulfree``."""

import subprocess
import sys

from mulfree.cli import main


def test_help_lists_doctor(capsys):
    assert main([]) == 0
    assert "doctor" in capsys.readouterr().out


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-command" in err[0]


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "mulfree", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("mulfree ")
