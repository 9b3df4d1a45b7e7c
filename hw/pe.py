"""The processing element of the row-stationary array: a MAC with three small scratchpads.

A PE holds, for one pass, ``p`` filters x ``q`` channels of one filter row (the *filter
scratchpad*), the ``q`` input rows (or row segments) it convolves them with (the *input
scratchpad*) and the ``p`` x ``F'`` partial sums it produces (the *psum scratchpad*). Each
scratchpad has two banks: while one bank serves the current pass, the controller fills the
other (filter and input banks) or drains it down the column (psum bank), so loading and
draining overlap computation.

Compute (lockstep with every PE of the array, addresses from the shared sequencer)::

    for fi in range(F'):            # output positions of the row segment
        for mi in range(p):         # filters interleaved in the scratchpad
            acc = 0
            for cq in range(q):     # channels interleaved in the scratchpad
                for s in range(S):  # taps of the filter row
                    acc += level(w[mi, cq, s]) * a[cq, fi*stride + s]   # if tap is valid
            psum[fi*p + mi] = acc

This is the 1-D convolution primitive of the row-stationary dataflow. A tap is *valid* when
it falls inside the image (padding is excluded, never multiplied: the ``xnor`` scheme has no
code for zero) and the PE is *active* (it received an input row in this block). A valid tap
whose weight level is 0 raises ``skip``: the accumulator is not clocked.

Drain: a token walks down the column one PE per cycle; each PE reads its psum entry
(synchronously), registers the running sum from the PE above (``d_in``) beside it and adds
the two on ``d_out`` for the PE below, which registers it.

The scratchpads have synchronous read ports, so they map to block RAM or to LUT RAM with
its output register.

Latency: 2 cycles from a slot's addresses to the accumulator (the scratchpads' read ports,
then the accumulator). The psum of a dot is written from the accumulator 3 cycles after
its last slot; the drain read is transparent to that write, so the entry can be drained
from 2 cycles after the last slot on, as if it were written then. Drain: ``d_out`` holds
``d_in`` plus the entry 1 cycle after the token (1 cycle per PE). Throughput: one MAC per
cycle.

Model: ``model.ops.conv2d`` of one filter row over one input row (R = 1).
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.units import product_unit, quiet_if_invalid

__all__ = ["PE", "MAX_STRIDE", "ROW_BITS", "check_spad_size"]

#: Largest convolution stride the input-row matching supports.
MAX_STRIDE = 4

#: Width of the input-row tags compared in every PE (``h + padding - r`` against
#: ``e * stride``): layers need ``H + padding < 2**(ROW_BITS - 1)``.
ROW_BITS = 12


def check_spad_size(name: str, size) -> int:
    """Return ``size`` if it is a power of two in [1, 65536]; else raise ``ValueError``."""
    if (isinstance(size, bool) or not isinstance(size, int) or size < 1 or size > 65536
            or size & (size - 1)):
        raise ValueError(f"{name} must be a power of two in [1, 65536], not {size!r}")
    return size


def _bits(n: int) -> int:
    """Bits to hold the integers 0 .. n - 1 (at least 1)."""
    return max(1, (n - 1).bit_length())


class PE(wiring.Component):
    """One processing element (see the module docstring for the schedule).

    Parameters
    ----------
    scheme : str
        Product scheme (``model.quant.SCHEMES``); the product unit is
        ``hw.units.product_unit(scheme, a_bits=, w_bits=, codebook=)``.
    a_bits, w_bits : int
        Activation and weight code widths (``xnor``: lanes).
    acc_bits : int
        Width of the signed accumulator and of the partial sums.
    column : int
        The PE's column index (for names only).
    filter_spad, ifmap_spad, psum_spad : int
        Entries per bank of each scratchpad (powers of two).
    codebook : sequence of int, optional
        Integer level of each weight code (weight sharing; ``dorefa``'s table only).

    Members
    -------
    c_faddr, c_iaddr, c_paddr : In
        Slot addresses (bank bit included) of the filter, input and psum scratchpads.
    c_valid, c_first, c_last : In(1)
        The slot is a valid tap (inside the image); it starts / ends a dot.
    c_pp : In(1)
        Pass parity of the slot (which ``act_pass`` flag gates it).
    c_start, c_start_pp, c_start_bp : In(1)
        Strobe before a pass: copy the block's activity flag into the pass's flag.
    w_we, w_addr, w_data : In
        Filter scratchpad write (the row's weight bus, already gated for this PE).
    i_we, i_d, i_eu, i_addr, i_data, i_bank, i_clear : In
        Input bus: ``i_we`` is the row/column-gated strobe; the PE takes the word when
        ``i_d`` (the row's ``h + padding - r``) equals ``i_eu`` (the column's output row
        times the stride). ``i_clear`` clears the activity flag of bank ``i_bank``.
    d_tok, d_addr, d_pp, d_in : In
        Drain token of this row: psum entry ``d_addr`` of pass parity ``d_pp``, running sum.
    d_out : Out(signed(acc_bits))
        Running sum for the PE below, 1 cycle after the token (combinational from this
        PE's registers and psum read port: the PE below registers it).
    ev_mac, ev_skip : Out(1)
        A valid MAC / a skipped MAC happened this cycle (stage 2).
    ev_rf_reads, ev_rf_writes : Out(2)
        Scratchpad reads / writes this cycle (psum writes in stage 3).
    """

    @quiet_if_invalid
    def __init__(self, scheme: str, *, a_bits: int, w_bits: int | None = None, acc_bits: int,
                 column: int = 0, filter_spad: int = 16, ifmap_spad: int = 16,
                 psum_spad: int = 16, codebook=None):
        self._fs = check_spad_size("filter_spad", filter_spad)
        self._is = check_spad_size("ifmap_spad", ifmap_spad)
        self._ps = check_spad_size("psum_spad", psum_spad)
        self._unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits, codebook=codebook)
        self._scheme = scheme
        self._acc_bits = int(acc_bits)
        self._column = int(column)
        ab, wb = self._unit.a_bits, self._unit.w_bits
        super().__init__({
            "c_faddr": In(_bits(2 * self._fs)),
            "c_iaddr": In(_bits(2 * self._is)),
            "c_paddr": In(_bits(2 * self._ps)),
            "c_valid": In(1), "c_first": In(1), "c_last": In(1), "c_pp": In(1),
            "c_start": In(1), "c_start_pp": In(1), "c_start_bp": In(1),
            "w_we": In(1), "w_addr": In(_bits(2 * self._fs)), "w_data": In(wb),
            "i_we": In(1), "i_d": In(signed(ROW_BITS)), "i_addr": In(_bits(2 * self._is)),
            "i_data": In(ab), "i_bank": In(1), "i_clear": In(1),
            "i_eu": In(signed(ROW_BITS)),
            "d_tok": In(1), "d_addr": In(_bits(2 * self._ps)), "d_pp": In(1),
            "d_in": In(signed(self._acc_bits)),
            "d_out": Out(signed(self._acc_bits)),
            "ev_mac": Out(1), "ev_skip": Out(1),
            "ev_rf_reads": Out(2), "ev_rf_writes": Out(2),
        })

    @property
    def unit(self):
        return self._unit

    @property
    def can_skip(self) -> bool:
        return self._unit.can_skip

    def elaborate(self, platform):
        m = Module()
        unit = m.submodules.unit = self._unit
        ab, wb, acc_bits = unit.a_bits, unit.w_bits, self._acc_bits

        m.submodules.fspad = fspad = Memory(shape=unsigned(wb), depth=2 * self._fs, init=[])
        m.submodules.ispad = ispad = Memory(shape=unsigned(ab), depth=2 * self._is, init=[])
        m.submodules.pspad = pspad = Memory(shape=signed(acc_bits), depth=2 * self._ps,
                                            init=[])
        # Synchronous read ports (block RAM or LUT RAM with its output register). The
        # filter and input reads are non-transparent: they see the memory as it was before
        # this cycle's write, exactly like the combinational reads into registers they
        # replace. The psum write comes one cycle after the accumulator (from its
        # register), so the drain read is transparent to it: it sees the writes of the
        # cycles before, as a combinational read after a write from the accumulator would.
        f_wr, f_rd = fspad.write_port(), fspad.read_port()
        i_wr, i_rd = ispad.write_port(), ispad.read_port()
        p_wr = pspad.write_port()
        p_rd = pspad.read_port(transparent_for=(p_wr,))

        # Activity flags: per input bank (set when the PE takes an input word of the block)
        # and per pass parity (copied at the start of each pass, read by compute and drain).
        act_blk = Array([Signal(name="act_blk0"), Signal(name="act_blk1")])
        act_pass = Array([Signal(name="act_pass0"), Signal(name="act_pass1")])

        # ---- loads -----------------------------------------------------------------------
        m.d.comb += [f_wr.addr.eq(self.w_addr), f_wr.data.eq(self.w_data),
                     f_wr.en.eq(self.w_we)]
        match = Signal()
        m.d.comb += match.eq(self.i_d == self.i_eu)
        take = Signal()
        m.d.comb += [take.eq(self.i_we & match),
                     i_wr.addr.eq(self.i_addr), i_wr.data.eq(self.i_data), i_wr.en.eq(take)]
        with m.If(self.i_clear):
            m.d.sync += act_blk[self.i_bank].eq(0)
        with m.Elif(take):
            m.d.sync += act_blk[self.i_bank].eq(1)
        with m.If(self.c_start):  # (a word taken in the same cycle counts already)
            m.d.sync += act_pass[self.c_start_pp].eq(
                act_blk[self.c_start_bp] | (take & (self.i_bank == self.c_start_bp)))

        # ---- compute: stage 1 reads the scratchpads (registered in their read ports) -----
        m.d.comb += [f_rd.addr.eq(self.c_faddr), i_rd.addr.eq(self.c_iaddr)]
        v_r = Signal()
        first_r = Signal()
        last_r = Signal()
        paddr_r = Signal.like(self.c_paddr)
        m.d.sync += [
            v_r.eq(self.c_valid & act_pass[self.c_pp]),
            first_r.eq(self.c_first), last_r.eq(self.c_last & act_pass[self.c_pp]),
            paddr_r.eq(self.c_paddr),
        ]

        # ---- stage 2: product and accumulator -------------------------------------------
        m.d.comb += [unit.a.eq(i_rd.data), unit.w.eq(f_rd.data)]
        skip = unit.skip if unit.can_skip else 0
        add = Signal()
        m.d.comb += add.eq(v_r & ~skip)
        acc = Signal(signed(acc_bits))
        base = Signal(signed(acc_bits))
        m.d.comb += base.eq(Mux(first_r, 0, acc))
        # The accumulator is not clocked on a skipped product; a dot's first slot clears it
        # when it adds nothing (the flip-flops' clock enable and synchronous reset, so no
        # multiplexer follows the adder).
        with m.If(add):
            m.d.sync += acc.eq(base + unit.p)
        with m.Elif(first_r):
            m.d.sync += acc.eq(0)

        # ---- stage 3: the psum write, from the accumulator (which holds the dot's running
        # sum after every slot) ------------------------------------------------------------
        we_r = Signal()
        pwaddr_r = Signal.like(paddr_r)
        m.d.sync += [we_r.eq(last_r), pwaddr_r.eq(paddr_r)]
        m.d.comb += [p_wr.addr.eq(pwaddr_r), p_wr.data.eq(acc), p_wr.en.eq(we_r)]

        # ---- drain: running sum from the PE above plus this PE's entry -----------------
        # The entry is read synchronously, so the running sum and the token's activity are
        # registered beside it and added after the read: ``d_out`` is the same sum in the
        # same cycle as a register after the adder would give (it is the PE below that
        # registers it).
        drain_act = Signal()
        drain_r = Signal()
        d_in_r = Signal.like(self.d_in)
        m.d.comb += [p_rd.addr.eq(self.d_addr),
                     drain_act.eq(self.d_tok & act_pass[self.d_pp])]
        m.d.sync += [drain_r.eq(drain_act), d_in_r.eq(self.d_in)]
        m.d.comb += self.d_out.eq(d_in_r + Mux(drain_r, p_rd.data, 0))

        # ---- events for the counters -----------------------------------------------------
        m.d.comb += [
            self.ev_mac.eq(v_r),
            self.ev_skip.eq(v_r & skip),
            self.ev_rf_reads.eq(Mux(v_r, 2, 0) + drain_act),
            self.ev_rf_writes.eq(self.w_we + take + we_r),
        ]
        return m
