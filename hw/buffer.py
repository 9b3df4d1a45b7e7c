"""The global buffer: one weight bank per PE row, one psum bank per PE column; and the
activation buffers (``WordBuffer``) the accelerator's wrappers put beside it.

All are ``amaranth.lib.memory.Memory`` with one synchronous read port (data the cycle after
``re``; with ``re`` low the data is held) and one write port. A word carries ``lanes`` codes
(activations and weights) or one partial sum.

- *activation buffer* (``WordBuffer``, ``depth`` words): a layer's activation words, ``[Cw, H,
  W]``; read by the input loader, one word per cycle, broadcast to the array. The one-layer
  accelerator has one (written from its input stream), the network engine two (ping-pong).
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

from amaranth.hdl import ClockSignal, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["GlobalBuffer", "WordBuffer", "BufferRead", "BufferWrite", "WEIGHT_RAMS",
           "SPRAM_WORDS", "SPRAM_BITS", "spram_blocks", "check_weight_ram"]

#: Where the weight banks live: ``memory`` (``amaranth.lib.memory``: block or LUT RAM, as
#: synthesis maps it) or ``spram`` (the iCE40UP's single-port 256-kbit SPRAM blocks).
WEIGHT_RAMS = ("memory", "spram")

#: One iCE40UP SPRAM block (``SB_SPRAM256KA``): 16,384 words of 16 bits.
SPRAM_WORDS, SPRAM_BITS = 16384, 16


def spram_blocks(banks: int, depth: int, bits: int) -> int:
    """SPRAM blocks for ``banks`` weight banks of ``depth`` words of ``bits``: blocks side by
    side for the width, one above the other for the depth."""
    return banks * -(-bits // SPRAM_BITS) * -(-depth // SPRAM_WORDS)


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


def _banks(m, name, banks, depth, shape, write, read, shared):
    for k in range(banks):
        mem = m.submodules[f"{name}{k}"] = Memory(shape=shape, depth=depth, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.en.eq(write.en[k]), wr.addr.eq(write.addr),
                     wr.data.eq(write.data if shared else write.data[k]),
                     rd.en.eq(read.en[k]), rd.addr.eq(read.addr), read.data[k].eq(rd.data)]


def check_weight_ram(weight_ram: str, wb_depth: int) -> None:
    """``ValueError`` unless ``weight_ram`` (``WEIGHT_RAMS``) can hold ``wb_depth``-word
    banks (SPRAM: two blocks deep at most)."""
    if weight_ram not in WEIGHT_RAMS:
        raise ValueError(f"weight_ram must be one of {', '.join(WEIGHT_RAMS)}, not "
                         f"{weight_ram!r}")
    if weight_ram == "spram" and wb_depth > 2 * SPRAM_WORDS:
        raise ValueError(f"weight banks in SPRAM hold at most {2 * SPRAM_WORDS} words, not "
                         f"{wb_depth}")


def _spram_banks(m, banks, depth, bits, write, read):
    """The weight banks in SPRAM blocks (``SB_SPRAM256KA``, single-port): the address is the
    write's while a bank writes (the engine never reads a bank it writes), the read's
    otherwise; a block is selected only to read or write, so its data hold while no read is
    asked (``BufferRead``'s contract; an unselected ``SB_SPRAM256KA`` keeps ``DATAOUT``)."""
    address = Signal(max(15, len(write.addr)), name="weights_addr")
    m.d.comb += address.eq(Mux(write.en.any(), write.addr, read.addr))
    lanes, tiers = -(-bits // SPRAM_BITS), -(-depth // SPRAM_WORDS)     # tiers: 1 or 2
    data_in = Signal(lanes * SPRAM_BITS)
    m.d.comb += data_in.eq(write.data)
    for k in range(banks):
        wren = write.en[k]
        select = Signal(name=f"weights{k}_select")
        m.d.comb += select.eq(wren | read.en[k])
        tier = Signal(name=f"weights{k}_tier")          # the block read (two tiers)
        if tiers > 1:
            with m.If(read.en[k] & ~wren):
                m.d.sync += tier.eq(address[14])
        out = Signal(lanes * SPRAM_BITS, name=f"weights{k}_out")
        words = []
        for t in range(tiers):
            word = Signal(lanes * SPRAM_BITS, name=f"weights{k}_t{t}")
            here = select & ((address[14] == t) if tiers > 1 else 1)
            for j in range(lanes):
                m.submodules[f"weights{k}_t{t}_{j}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address[:14], i_DATAIN=data_in[j * 16:(j + 1) * 16],
                    i_MASKWREN=0b1111, i_WREN=wren, i_CHIPSELECT=here,
                    i_CLOCK=ClockSignal(), i_STANDBY=0,
                    i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=word[j * 16:(j + 1) * 16])
            words.append(word)
        m.d.comb += out.eq(words[0] if tiers == 1 else Mux(tier, words[1], words[0]))
        m.d.comb += read.data[k].eq(out[:bits])


def _check_depth(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= (1 << 24):
        raise ValueError(f"{name} must be an integer in [1, 2**24], not {v!r}")


class WordBuffer(wiring.Component):
    """An activation buffer: ``depth`` words of ``shape`` (see the module docstring).

    Members
    -------
    write, read : In(BufferWrite), In(BufferRead) (one bank).
    """

    def __init__(self, *, depth: int, shape):
        _check_depth("depth", depth)
        self._depth, self._shape = depth, shape
        super().__init__({"write": In(BufferWrite(banks=1, depth=depth, shape=shape)),
                          "read": In(BufferRead(banks=1, depth=depth, shape=shape))})

    def elaborate(self, platform):
        m = Module()
        _banks(m, "words", 1, self._depth, self._shape, self.write, self.read, True)
        return m


class GlobalBuffer(wiring.Component):
    """Weight banks and psum banks (see the module docstring).

    Members
    -------
    wb_write, wb_read : of the weight banks (``rows``; the write data is shared).
    pb_write, pb_read : of the psum banks (``cols``; one write word per bank).
    """

    def __init__(self, *, rows: int, cols: int, w_word_bits: int, acc_bits: int,
                 wb_depth: int, pb_depth: int, weight_ram: str = "memory"):
        _check_depth("wb_depth", wb_depth)
        check_weight_ram(weight_ram, wb_depth)
        self._weight_ram = weight_ram
        _check_depth("pb_depth", pb_depth)
        self._rows, self._cols = rows, cols
        self._depths = (wb_depth, pb_depth)
        self._shapes = (unsigned(w_word_bits), signed(acc_bits))
        w, acc = self._shapes
        super().__init__({
            "wb_write": In(BufferWrite(banks=rows, depth=wb_depth, shape=w)),
            "wb_read": In(BufferRead(banks=rows, depth=wb_depth, shape=w)),
            "pb_write": In(BufferWrite(banks=cols, depth=pb_depth, shape=acc,
                                       shared_data=False)),
            "pb_read": In(BufferRead(banks=cols, depth=pb_depth, shape=acc)),
        })

    @property
    def depths(self) -> tuple[int, int]:
        """(weight bank, psum bank) depths in words."""
        return self._depths

    def elaborate(self, platform):
        m = Module()
        (wd, pd), (w, acc) = self._depths, self._shapes
        if self._weight_ram == "spram" and platform is not None:
            _spram_banks(m, self._rows, wd, w.width, self.wb_write, self.wb_read)
        else:
            _banks(m, "weights", self._rows, wd, w, self.wb_write, self.wb_read, True)
        _banks(m, "psums", self._cols, pd, acc, self.pb_write, self.pb_read, False)
        return m
