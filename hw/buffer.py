"""The global buffer: input buffer, one weight bank per PE row, one psum bank per PE column.

All three are ``amaranth.lib.memory.Memory`` with one synchronous read port (data the cycle
after ``re``; with ``re`` low the data is held) and one write port. A word carries ``lanes``
codes (inputs and weights) or one partial sum.

- *input buffer* (``in_depth`` words): the layer's activation words, ``[Cw, H, W]``; read by
  the input loader, one word per cycle, broadcast to the array.
- *weight banks* (``rows`` x ``wb_depth`` words): bank ``i`` feeds PE row ``i``; the weights
  of reduction unit ``u`` live in bank ``u % rows`` (layout:
  ``sim.cycle_model.weight_word_order``). All banks share one address, so a pass loads
  ``rows`` words per cycle.
- *psum banks* (``cols`` x ``pb_depth`` words of ``acc_bits``): bank ``j`` holds the partial
  and final sums of the output rows mapped to column ``j``; the columns read (top) and write
  (bottom) their banks in step (shared addresses).

Each part has a write port (``*_write``, ``BufferWrite``) and a read port (``*_read``,
``BufferRead``), typed ``wiring.Signature``s the controller's parts and the stream adapters
connect to.

Latency: 1 cycle (read). Throughput: one read and one write per port per cycle.

Model: a plain array of words (``sim.cycle_model`` counts every access).
"""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["GlobalBuffer", "BufferRead", "BufferWrite"]


def _abits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class BufferWrite(wiring.Signature):
    """A write port of ``banks`` memories sharing an address: ``en`` one strobe per bank,
    ``data`` one word for all banks (``shared_data``) or one per bank. Seen from the writer."""

    def __init__(self, *, banks: int, depth: int, shape, shared_data: bool = True):
        word = shape if shared_data else data.ArrayLayout(shape, banks)
        super().__init__({"en": Out(banks), "addr": Out(_abits(depth)), "data": Out(word)})


class BufferRead(wiring.Signature):
    """A read port of ``banks`` memories sharing an address: ``en`` one strobe per bank,
    ``data`` one word per bank the cycle after. Seen from the reader."""

    def __init__(self, *, banks: int, depth: int, shape):
        super().__init__({"en": Out(banks), "addr": Out(_abits(depth)),
                          "data": In(data.ArrayLayout(shape, banks))})


class GlobalBuffer(wiring.Component):
    """Input buffer, weight banks and psum banks (see module docstring).

    Members
    -------
    in_write, in_read : In(BufferWrite), In(BufferRead) of the input buffer (1 bank).
    wb_write, wb_read : of the weight banks (``rows``; the write data is shared).
    pb_write, pb_read : of the psum banks (``cols``; one write word per bank).
    """

    def __init__(self, *, rows: int, cols: int, a_word_bits: int, w_word_bits: int,
                 acc_bits: int, in_depth: int, wb_depth: int, pb_depth: int):
        for name, v in (("in_depth", in_depth), ("wb_depth", wb_depth), ("pb_depth", pb_depth)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= (1 << 24):
                raise ValueError(f"{name} must be an integer in [1, 2**24], not {v!r}")
        self._rows, self._cols = rows, cols
        self._depths = (in_depth, wb_depth, pb_depth)
        self._shapes = (unsigned(a_word_bits), unsigned(w_word_bits), signed(acc_bits))
        a, w, acc = self._shapes
        super().__init__({
            "in_write": In(BufferWrite(banks=1, depth=in_depth, shape=a)),
            "in_read": In(BufferRead(banks=1, depth=in_depth, shape=a)),
            "wb_write": In(BufferWrite(banks=rows, depth=wb_depth, shape=w)),
            "wb_read": In(BufferRead(banks=rows, depth=wb_depth, shape=w)),
            "pb_write": In(BufferWrite(banks=cols, depth=pb_depth, shape=acc,
                                       shared_data=False)),
            "pb_read": In(BufferRead(banks=cols, depth=pb_depth, shape=acc)),
        })

    @property
    def depths(self) -> tuple[int, int, int]:
        """(input buffer, weight bank, psum bank) depths in words."""
        return self._depths

    def elaborate(self, platform):
        m = Module()
        parts = (("inputs", 1, self.in_write, self.in_read, True),
                 ("weights", self._rows, self.wb_write, self.wb_read, True),
                 ("psums", self._cols, self.pb_write, self.pb_read, False))
        for (name, banks, write, read, shared), depth, shape in zip(parts, self._depths,
                                                                   self._shapes):
            for k in range(banks):
                mem = Memory(shape=shape, depth=depth, init=[])
                m.submodules[f"{name}{k}"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                m.d.comb += [wr.en.eq(write.en[k]), wr.addr.eq(write.addr),
                             wr.data.eq(write.data if shared else write.data[k]),
                             rd.en.eq(read.en[k]), rd.addr.eq(read.addr),
                             read.data[k].eq(rd.data)]
        return m
