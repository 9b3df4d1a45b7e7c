"""The global buffer: input buffer, one weight bank per PE row, one psum bank per PE column.

All three are ``amaranth.lib.memory.Memory`` with one synchronous read port (data the cycle
after ``en``; with ``en`` low the data is held) and one write port.

- *input buffer* (``in_depth`` words of ``a_bits``): the layer's activations, channel-major
  ``[C, H, W]``; read by the input loader, one word per cycle, broadcast to the array.
- *weight banks* (``rows`` x ``wb_depth`` words of ``w_bits``): bank ``i`` feeds PE row ``i``;
  the weights of reduction unit ``u`` (a channel group and filter row) live in bank
  ``u % rows`` (layout: ``sim.cycle_model.weight_stream_order``). All banks share one
  address, so a pass loads ``rows`` words per cycle.
- *psum banks* (``cols`` x ``pb_depth`` words of ``acc_bits``): bank ``j`` holds the partial
  and final sums of the output rows mapped to column ``j``; drained columns read and write
  their banks in step (shared address).

Latency: 1 cycle (read). Throughput: one read and one write per port per cycle.

Model: a plain array of words (``sim.cycle_model`` counts every access).
"""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["GlobalBuffer"]


def _abits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class GlobalBuffer(wiring.Component):
    """Input buffer, weight banks and psum banks (see module docstring).

    Members
    -------
    in_we, in_waddr, in_wdata, in_re, in_raddr : In; in_rdata : Out
        Input buffer ports.
    wb_we : In(rows); wb_waddr, wb_wdata : In; wb_re : In(rows); wb_raddr : In;
    wb_rdata : Out(one word per bank)
        Weight bank ports (bank-select strobes, shared address and data).
    pb_we : In(cols); pb_waddr : In; pb_wdata : In(one word per bank); pb_re : In(cols);
    pb_raddr : In; pb_rdata : Out(one word per bank)
        Psum bank ports.
    """

    def __init__(self, *, rows: int, cols: int, a_bits: int, w_bits: int, acc_bits: int,
                 in_depth: int, wb_depth: int, pb_depth: int):
        for name, v in (("in_depth", in_depth), ("wb_depth", wb_depth), ("pb_depth", pb_depth)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= (1 << 24):
                raise ValueError(f"{name} must be an integer in [1, 2**24], not {v!r}")
        self._rows, self._cols = rows, cols
        self._depths = (in_depth, wb_depth, pb_depth)
        self._a_bits, self._w_bits, self._acc_bits = a_bits, w_bits, acc_bits
        acc = signed(acc_bits)
        super().__init__({
            "in_we": In(1), "in_waddr": In(_abits(in_depth)), "in_wdata": In(a_bits),
            "in_re": In(1), "in_raddr": In(_abits(in_depth)), "in_rdata": Out(a_bits),
            "wb_we": In(rows), "wb_waddr": In(_abits(wb_depth)), "wb_wdata": In(w_bits),
            "wb_re": In(rows), "wb_raddr": In(_abits(wb_depth)),
            "wb_rdata": Out(data.ArrayLayout(w_bits, rows)),
            "pb_we": In(cols), "pb_waddr": In(_abits(pb_depth)),
            "pb_wdata": In(data.ArrayLayout(acc, cols)),
            "pb_re": In(cols), "pb_raddr": In(_abits(pb_depth)),
            "pb_rdata": Out(data.ArrayLayout(acc, cols)),
        })

    @property
    def depths(self) -> tuple[int, int, int]:
        """(input buffer, weight bank, psum bank) depths in words."""
        return self._depths

    def elaborate(self, platform):
        m = Module()
        in_depth, wb_depth, pb_depth = self._depths
        m.submodules.inputs = mem = Memory(shape=unsigned(self._a_bits), depth=in_depth,
                                           init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.en.eq(self.in_we), wr.addr.eq(self.in_waddr), wr.data.eq(self.in_wdata),
                     rd.en.eq(self.in_re), rd.addr.eq(self.in_raddr), self.in_rdata.eq(rd.data)]
        for i in range(self._rows):
            bank = Memory(shape=unsigned(self._w_bits), depth=wb_depth, init=[])
            m.submodules[f"weights{i}"] = bank
            wr, rd = bank.write_port(), bank.read_port()
            m.d.comb += [wr.en.eq(self.wb_we[i]), wr.addr.eq(self.wb_waddr),
                         wr.data.eq(self.wb_wdata), rd.en.eq(self.wb_re[i]),
                         rd.addr.eq(self.wb_raddr), self.wb_rdata[i].eq(rd.data)]
        for j in range(self._cols):
            bank = Memory(shape=signed(self._acc_bits), depth=pb_depth, init=[])
            m.submodules[f"psums{j}"] = bank
            wr, rd = bank.write_port(), bank.read_port()
            m.d.comb += [wr.en.eq(self.pb_we[j]), wr.addr.eq(self.pb_waddr),
                         wr.data.eq(self.pb_wdata[j]), rd.en.eq(self.pb_re[j]),
                         rd.addr.eq(self.pb_raddr), self.pb_rdata[j].eq(rd.data)]
        return m
