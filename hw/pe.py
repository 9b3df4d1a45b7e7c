"""The processing element of the row-stationary array: lanes, an accumulator, an input scratchpad.

A PE holds, for one block, ``q`` input rows (or row segments) of its channel words in its
*input scratchpad* (two banks: the controller fills one while the other serves). Its row's
filter scratchpad (``hw.array``, shared by every PE of the row) gives it one weight word per
slot. Each slot multiplies the slot's input word by the weight word lane by lane and sums the
lanes (``hw.lanes.LaneDot``) into the accumulator. A PE with several datapaths (*modes*,
``more_modes``) computes the slot's dot in the layer's mode (``c_mode``, from the
configuration, held for the whole layer) with ``hw.lanes.ModeDot``; one mode builds exactly
the single-scheme PE.

A dot (one output position of one filter: ``q`` channel words times the taps it runs) starts
from the finished dot of the PE above (``above``, that PE's ``psum``; the top row gets the
psum buffer's old value or 0): at a dot's first slot the accumulator loads ``above`` plus the
slot's sum; at its last slot the sum also goes to ``psum``, which holds it for the PE below
until this PE finishes its next dot. The PE below starts the same dot once this row has
finished it (``hw.controller.rows``), so partial sums are summed on their way down the column
with no psum scratchpad and no drain. A PE whose input row is padding (it took no input word
this block: its activity flag for the bank is clear) adds nothing: it passes ``above`` on.

Compute, for every slot (lockstep with its row)::

    stage 1: input scratchpad read at c_iaddr (bank c_bp); valid = c_valid & active[c_bp]
    stage 2 (+ tree_stages): sum = (first ? above : acc) + (valid & ~skip_all ? dot : 0)
             acc <- sum (on a first or added slot); psum <- sum (on a last slot)

``skip_all`` (every real lane's weight level is 0, from the row) leaves the accumulator
unclocked on a slot that is not first.

Latency: ``hw.schedule.accumulate_latency(tree_stages)`` cycles from a slot to the
accumulator and ``psum`` updates (they hold the sum from the cycle after). Throughput: one
slot (``lanes`` MACs) per cycle.

Model: ``model.ops.conv2d`` of one filter row over one input row (R = 1), summed down the
column.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.lanes import LaneDot, ModeDot, lane_code_bits
from hw.schedule import Datapath, check_modes
from model.ops import lane_dot_range, signed_width

__all__ = ["PE", "check_spad_size", "addr_bits"]


def check_spad_size(name: str, size) -> int:
    """Return ``size`` if it is a power of two in [1, 65536]; else raise ``ValueError``."""
    if (isinstance(size, bool) or not isinstance(size, int) or size < 1 or size > 65536
            or size & (size - 1)):
        raise ValueError(f"{name} must be a power of two in [1, 65536], not {size!r}")
    return size


def addr_bits(n: int) -> int:
    """Bits to address ``n`` entries (at least 1)."""
    return max(1, (n - 1).bit_length())


class PE(wiring.Component):
    """One processing element (see the module docstring).

    Parameters
    ----------
    scheme, lanes, a_bits, w_bits, codebook : as ``hw.lanes.LaneDot`` (mode 0).
    acc_bits : int
        Width of the signed accumulator (the column's partial sums).
    ifmap_spad : int
        Input scratchpad words per bank (a power of two).
    tree_stages : int
        Pipeline registers in the lane tree.
    more_modes : sequence of hw.schedule.Datapath
        Further modes (``hw.schedule.AcceleratorConfig.more_modes``).
    share : bool
        Sign-family modes share product units (``hw.lanes.mode_groups``).
    translate : bool
        Rewrite shared modes' weight codes in the PE (``hw.lanes.head_codes``); False: the
        row's ``w_word`` carries them rewritten (``hw.array`` does it once per row).

    Members
    -------
    c_iaddr : In
        Input scratchpad address of the slot (bank bit included).
    c_valid, c_first, c_last, c_bp : In(1)
        The slot is a tap inside the image of a dot of this row; it is a dot's first slot;
        its last slot; its input bank.
    c_idle : In(range(lanes)), with an ``xnor`` mode
        Padded lanes of the slot's channel word (in the ``xnor`` mode).
    c_mode : In(range(modes)), with more than one mode
        The layer's mode.
    w_word : In(widest lanes * w_bits)
        The row's weight word of the slot, one cycle after the slot (scratchpad read); a
        mode reads its low ``lanes * w_bits`` bits (see ``translate``).
    skip_all : In(1)
        Every real lane of ``w_word`` has weight level 0 (same cycle as ``w_word``).
    zeros : In(range(most lanes + 1))
        Real lanes of ``w_word`` with weight level 0 (for ``ev_skip``).
    i_take, i_addr, i_data, i_bank, i_clear : In
        Input write: ``i_take`` writes ``i_data`` at ``i_addr`` and sets the activity flag
        of bank ``i_bank``; ``i_clear`` clears the flag of bank ``i_bank``.
    above : In(signed(acc_bits))
        The ``psum`` of the PE above (or the column's top value).
    psum : Out(signed(acc_bits))
        This PE's last finished dot.
    ev_slot : Out(1)
        A valid slot of an active PE reached stage 2 (an input scratchpad read).
    ev_skip : Out(range(most lanes + 1))
        ``zeros`` of that slot (0 when the slot is not valid).
    ev_take : Out(1)
        An input word was written.
    """

    def __init__(self, scheme: str, *, lanes: int = 1, a_bits: int, w_bits: int | None = None,
                 acc_bits: int, ifmap_spad: int = 16, tree_stages: int = 0, codebook=None,
                 more_modes=(), share: bool = True, translate: bool = True):
        self._is = check_spad_size("ifmap_spad", ifmap_spad)
        a_bits, w_bits = lane_code_bits(scheme, a_bits=a_bits, w_bits=w_bits,
                                        codebook=codebook)
        modes = check_modes((Datapath(scheme, lanes, a_bits, w_bits, codebook), *more_modes))
        ranges = [lane_dot_range(d.scheme, lanes=d.lanes, a_bits=d.a_bits, w_bits=d.w_bits,
                                 codebook=d.codebook) for d in modes]
        need = signed_width(min(lo for lo, _ in ranges), max(hi for _, hi in ranges))
        if int(acc_bits) < need:
            raise ValueError(f"acc_bits {acc_bits} cannot hold a word's dot product; allowed: "
                             f"at least {need}")
        if more_modes:
            self._dot = ModeDot(modes, stages=tree_stages, share=share, translate=translate)
        else:                   # one mode: the single-scheme PE's own LaneDot
            self._dot = LaneDot(scheme, lanes=lanes, a_bits=a_bits, w_bits=w_bits,
                                codebook=codebook, stages=tree_stages)
        d = self._dot
        self._modes = modes
        self._acc_bits = int(acc_bits)
        self._stages = tree_stages
        most = max(mode.lanes for mode in self._modes)
        members = {
            "c_iaddr": In(addr_bits(2 * self._is)), "c_valid": In(1), "c_first": In(1),
            "c_last": In(1), "c_bp": In(1),
            "w_word": In(len(d.w)), "skip_all": In(1), "zeros": In(range(most + 1)),
            "i_take": In(1), "i_addr": In(addr_bits(2 * self._is)),
            "i_data": In(len(d.a)), "i_bank": In(1), "i_clear": In(1),
            "above": In(signed(self._acc_bits)), "psum": Out(signed(self._acc_bits)),
            "ev_slot": Out(1), "ev_skip": Out(range(most + 1)), "ev_take": Out(1),
        }
        if hasattr(d, "idle"):
            members["c_idle"] = In(d.idle.shape())
        if len(self._modes) > 1:
            members["c_mode"] = In(range(len(self._modes)))
        super().__init__(members)

    @property
    def dot(self) -> LaneDot | ModeDot:
        """The slot's dot: a ``LaneDot`` with one mode, else a ``ModeDot``."""
        return self._dot

    @property
    def modes(self) -> tuple:
        return self._modes

    def elaborate(self, platform):
        m = Module()
        dot = m.submodules.dot = self._dot
        m.submodules.ispad = ispad = Memory(shape=unsigned(len(self.i_data)),
                                            depth=2 * self._is, init=[])
        # Non-transparent synchronous read: a word written in the cycle of a read is seen
        # from the next read on (the controller never writes a bank a row still reads).
        wr, rd = ispad.write_port(), ispad.read_port()
        active = Array([Signal(name="active0"), Signal(name="active1")])

        # ---- input writes -----------------------------------------------------------------
        m.d.comb += [wr.addr.eq(self.i_addr), wr.data.eq(self.i_data), wr.en.eq(self.i_take),
                     self.ev_take.eq(self.i_take)]
        with m.If(self.i_clear):
            m.d.sync += active[self.i_bank].eq(0)
        with m.Elif(self.i_take):
            m.d.sync += active[self.i_bank].eq(1)

        # ---- stage 1: the input scratchpad read (the row reads the weight word) -----------
        m.d.comb += rd.addr.eq(self.c_iaddr)
        valid = Signal()
        first = Signal()
        last = Signal()
        m.d.sync += [valid.eq(self.c_valid & active[self.c_bp]), first.eq(self.c_first),
                     last.eq(self.c_last)]
        m.d.comb += [dot.a.eq(rd.data), dot.w.eq(self.w_word)]
        if len(self._modes) > 1:
            m.d.comb += dot.mode.eq(self.c_mode)
        if hasattr(self, "c_idle"):
            idle = Signal.like(self.c_idle)
            m.d.sync += idle.eq(self.c_idle)
            m.d.comb += dot.idle.eq(idle)

        # ---- stage 2: events, then the tree's registers, then the accumulator -------------
        m.d.comb += [self.ev_slot.eq(valid), self.ev_skip.eq(Mux(valid, self.zeros, 0))]
        add = Signal()
        m.d.comb += add.eq(valid & ~self.skip_all)
        for n in range(self._stages):       # keep the strobes in step with the tree
            add_r, first_r, last_r = (Signal(name=f"{k}_r{n}") for k in ("add", "first", "last"))
            m.d.sync += [add_r.eq(add), first_r.eq(first), last_r.eq(last)]
            add, first, last = add_r, first_r, last_r
        acc = Signal(signed(self._acc_bits))
        total = Signal(signed(self._acc_bits))
        m.d.comb += total.eq(Mux(first, self.above, acc) + Mux(add, dot.p, 0))
        with m.If(first | add):
            m.d.sync += acc.eq(total)
        with m.If(last):
            m.d.sync += self.psum.eq(total)
        return m
