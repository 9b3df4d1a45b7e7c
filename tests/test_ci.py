"""``.ci/run``: lint before the tests, and a run that collects no test is a failure.

The script runs with stand-ins for the tools it calls (each records its arguments and exits
with the status the test gives it), so what is checked is the script's own logic.
"""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("python3", "ruff", "pytest", "iverilog", "g++", "make", "perl")


def run_ci(tmp_path, **status) -> tuple[int, list[str]]:
    """Run a copy of ``.ci/run`` with every tool replaced; returns its exit status and the
    commands it ran, in order."""
    project = tmp_path / "project"
    (project / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", project / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> '{log}'\n"
                          f"exit {status.get(tool, 0)}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path)}
    result = subprocess.run(["bash", str(project / ".ci" / "run")], env=env,
                            capture_output=True, text=True)
    calls = [c.strip() for c in log.read_text().splitlines()] if log.exists() else []
    return result.returncode, calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("pytest_status, expected", [(0, 0), (1, 1), (5, 1)])
def test_the_tests_decide_and_no_test_collected_fails(tmp_path, pytest_status, expected):
    status, calls = run_ci(tmp_path, pytest=pytest_status)
    assert status == expected
    assert [c.split()[0] for c in calls][-2:] == ["ruff", "pytest"]
    assert "ruff check ." in calls and "pytest" in calls  # the README's command, no flags


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_lint_failure_stops_the_run_before_the_tests(tmp_path):
    status, calls = run_ci(tmp_path, ruff=1)
    assert status == 1
    assert calls[-1] == "ruff check ." and not any(c.startswith("pytest") for c in calls)
