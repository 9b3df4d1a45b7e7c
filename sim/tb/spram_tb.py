"""cocotb testbench: the weight banks in iCE40 SPRAM blocks (``hw.buffer.GlobalBuffer`` with
``weight_ram="spram"``) on the vendor's simulation model of ``SB_SPRAM256KA`` (Yosys's
``ice40/cells_sim.v``), against a dictionary of written words: every word reads back, on
every bank, in both tiers of a deep bank, and the read data hold while no read is asked.

``MULFREE_TB_CONFIG``: ``rows``, ``depth``, ``bits``.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.tb import config, seed

CFG = config()


@cocotb.test()
async def words_read_back(dut):
    rows, depth, bits = CFG["rows"], CFG["depth"], CFG["bits"]
    rng = random.Random(seed())
    dut.wb_write__en.value = 0
    dut.wb_read__en.value = 0
    dut.pb_write__en.value = 0
    dut.pb_read__en.value = 0
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    addresses = sorted({0, depth - 1, 16383 % depth, min(16384, depth - 1),
                        *(rng.randrange(depth) for _ in range(40))})
    stored = {}
    for addr in addresses:
        for bank in range(rows):
            word = rng.getrandbits(bits) if rng.random() > 0.1 else (1 << bits) - 1
            dut.wb_write__addr.value = addr
            dut.wb_write__data.value = word
            dut.wb_write__en.value = 1 << bank
            await RisingEdge(dut.clk)
            stored[addr, bank] = word
    dut.wb_write__en.value = 0
    for addr in rng.sample(addresses, len(addresses)):
        dut.wb_read__addr.value = addr
        dut.wb_read__en.value = (1 << rows) - 1
        await RisingEdge(dut.clk)
        dut.wb_read__en.value = 0
        dut.wb_read__addr.value = rng.randrange(depth)       # no read: the data hold
        for _ in range(rng.randrange(1, 3)):
            await RisingEdge(dut.clk)
            await ReadOnly()
            data = int(dut.wb_read__data.value)
            for bank in range(rows):
                got = (data >> (bank * bits)) & ((1 << bits) - 1)
                assert got == stored[addr, bank], (addr, bank, hex(got))
        await RisingEdge(dut.clk)
