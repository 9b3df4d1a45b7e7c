"""The row-stationary PE array (Eyeriss-style), generic over every product scheme and lane count.

``rows`` x ``cols`` PEs (``hw.pe.PE``), ``lanes`` MACs each per cycle. In one block PE row
``i`` holds reduction unit ``(cg_i, r_i)`` (filter row ``r_i`` of ``q`` channel words) and PE
column ``j`` output row ``e_j``; PE ``(i, j)`` convolves the filter row with input row ``e_j *
stride + r_i - padding``:

- filter rows are reused horizontally: each PE row has ONE filter scratchpad (two banks of
  ``filter_spad`` words of ``lanes`` weights), read once per slot and broadcast to the row's
  PEs, which compute the same filter row in lockstep;
- input rows are reused diagonally: one input bus carries each word once, tagged with its
  channel group and row, and every PE whose (``cg_i``, ``e_j * stride + r_i - padding``)
  matches takes it into its input scratchpad. The controller sends per row ``i_rel`` =
  ``h + padding - r_i - e_0 * stride`` (with ``i_row_hit`` false when it is outside ``[0,
  cols * stride)``) and per column ``i_ju = j * stride``, so a PE compares only
  ``tag_bits`` bits;
- partial sums accumulate vertically: each PE's accumulator starts a dot from the PE above's
  finished dot (its ``psum``; the top row from ``top``), so the bottom row's ``psum``s
  (``bottom``) hold the column sums.

Each row's slot (``slots``, ``hw.schedule``'s per-row view of the controller's dot) reaches
its PEs through one register stage (``hw.schedule.INPUT_LATENCY``), as do every other input
(a copy per PE row or column, so no net fans out to the whole array) and ``top``; the input
strobe and tags are matched first and registered per PE as its take strobe. The filter
scratchpad is read synchronously (block RAM or LUT RAM) and the row's zero-lane count and
``skip_all`` are computed once per row from its word. Event counts are registered beside
every PE, per PE row and in total: ``ev_*`` lag the events by ``EVENT_LATENCY`` cycles.

Modes (``more_modes``): the PEs compute each slot's dot in the layer's ``mode``
(``hw.lanes.ModeDot``). Filter scratchpad words are as wide as the widest mode's weight word
(a narrower mode's codes sit in its low bits); the row's zero lanes, ``skip_all`` and the
``xnor`` mode's idle lanes are computed for the mode's lanes and codes, and modes that share
product units have their codes rewritten once per row (``hw.lanes.head_codes``). ``n_last``
counts the real lanes of the mode.

Latency: ``INPUT_LATENCY + accumulate_latency`` cycles from a slot to the accumulators.
Throughput: ``rows * cols * lanes`` MACs per cycle.

Model: ``model.ops.conv2d`` (through the mapping of ``sim.cycle_model``).

Members
-------
slots : In(RowSlots)
    ``slots``: per PE row, filter and input scratchpad addresses (bank bits included),
    ``valid``, ``first`` and ``last`` (of a dot), input bank ``bp``, ``last_word`` (the slot
    is on the layer's last channel word, whose lanes from ``n_last`` on are idle); ``n_last``;
    ``mode`` (with more than one mode: the layer's mode, held while the layer runs).
wload : In(FilterWrite)
    Filter scratchpad writes (``we`` per row, shared ``addr``, one word per row).
ibus : In(InputBus)
    The shared input bus: ``we``, ``addr``, ``data``, ``bank``, ``clear``; ``row_hit`` and
    ``rel`` (one per row), ``ju`` and ``col_ok`` (one per column) select the PEs that take
    the word.
psum : In(PsumChain)
    ``top`` (in: what each column's top PE starts a dot from) and ``bottom`` (out: the
    bottom PEs' finished dots).
ev_slots, ev_last_slots, ev_skipped, ev_takes, ev_filter_reads : Out
    Event counts over the PEs (``EVENT_LATENCY`` cycles late).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.lanes import (adder_tree, head_codes, lane_code_bits, mode_groups, zero_codes,
                      zero_lanes)
from hw.pe import PE, addr_bits, check_spad_size
from hw.schedule import MAX_STRIDE, Datapath, check_modes

__all__ = ["RowStationaryArray", "row_slot_layout", "tag_bits", "RowSlots", "FilterWrite",
           "InputBus", "PsumChain"]


def row_slot_layout(filter_spad: int, ifmap_spad: int) -> data.StructLayout:
    """One PE row's slot: what the controller tells a row for one cycle."""
    return data.StructLayout({
        "faddr": unsigned(addr_bits(2 * filter_spad)),
        "iaddr": unsigned(addr_bits(2 * ifmap_spad)),
        "valid": unsigned(1),
        "first": unsigned(1),
        "last": unsigned(1),
        "bp": unsigned(1),
        "last_word": unsigned(1),
    })


def tag_bits(cols: int) -> int:
    """Bits of the input tags a PE compares: ``i_rel`` and ``i_ju`` are below
    ``cols * MAX_STRIDE``."""
    return max(1, (cols * MAX_STRIDE - 1).bit_length())


class RowSlots(wiring.Signature):
    """The per-row slots of a cycle, from the compute sequencer."""

    def __init__(self, *, rows: int, lanes: int, filter_spad: int, ifmap_spad: int,
                 modes: int = 1):
        members = {
            "slots": Out(data.ArrayLayout(row_slot_layout(filter_spad, ifmap_spad), rows)),
            "n_last": Out(range(lanes + 1)),
        }
        if modes > 1:
            members["mode"] = Out(range(modes))
        super().__init__(members)


class FilterWrite(wiring.Signature):
    """Filter scratchpad writes, from the weight loader: one word per PE row."""

    def __init__(self, *, rows: int, filter_spad: int, word_bits: int):
        super().__init__({"we": Out(rows), "addr": Out(addr_bits(2 * filter_spad)),
                          "data": Out(data.ArrayLayout(word_bits, rows))})


class InputBus(wiring.Signature):
    """The input bus, from the input loader."""

    def __init__(self, *, rows: int, cols: int, ifmap_spad: int, word_bits: int):
        tb = tag_bits(cols)
        super().__init__({
            "we": Out(1), "row_hit": Out(rows), "rel": Out(data.ArrayLayout(tb, rows)),
            "ju": Out(data.ArrayLayout(tb, cols)), "col_ok": Out(cols),
            "addr": Out(addr_bits(2 * ifmap_spad)), "data": Out(word_bits),
            "bank": Out(1), "clear": Out(1),
        })


class PsumChain(wiring.Signature):
    """The column ends, from the psum unit: ``top`` in, ``bottom`` out."""

    def __init__(self, *, cols: int, acc_bits: int):
        acc = data.ArrayLayout(signed(acc_bits), cols)
        super().__init__({"top": Out(acc), "bottom": In(acc)})


class RowStationaryArray(wiring.Component):
    """``rows`` x ``cols`` PEs wired for the row-stationary dataflow (see module docstring).

    Parameters
    ----------
    rows, cols : int
        Physical array size (1..64 each).
    scheme, lanes, a_bits, w_bits, codebook : as ``hw.lanes.LaneDot`` (mode 0).
    acc_bits : int
        Partial-sum width.
    filter_spad, ifmap_spad : int
        Scratchpad words per bank (powers of two).
    tree_stages : int
        Pipeline registers in each PE's lane tree.
    more_modes : sequence of hw.schedule.Datapath
        Further modes (``hw.schedule.AcceleratorConfig.more_modes``).
    share : bool
        Sign-family modes share product units (``hw.lanes.mode_groups``).
    """

    def __init__(self, rows: int, cols: int, scheme: str, *, lanes: int = 1, a_bits: int,
                 w_bits: int | None = None, acc_bits: int, filter_spad: int = 16,
                 ifmap_spad: int = 16, tree_stages: int = 0, codebook=None,
                 more_modes=(), share: bool = True):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
                raise ValueError(f"{name} must be an integer in [1, 64], not {v!r}")
        self._fs = check_spad_size("filter_spad", filter_spad)
        self._is = check_spad_size("ifmap_spad", ifmap_spad)
        self._rows, self._cols, self._lanes = rows, cols, lanes
        self._scheme, self._codebook = scheme, codebook
        self._stages = tree_stages
        self._share = share
        self._acc_bits = int(acc_bits)
        self._a_bits, self._w_bits = lane_code_bits(scheme, a_bits=a_bits, w_bits=w_bits,
                                                    codebook=codebook)
        self._modes = check_modes((Datapath(scheme, lanes, self._a_bits, self._w_bits,
                                            codebook), *more_modes))
        n = rows * cols
        most = max(d.lanes for d in self._modes)
        word_w = max(d.w_word_bits for d in self._modes)
        word_a = lanes * self._a_bits
        super().__init__({
            "slots": In(RowSlots(rows=rows, lanes=most, filter_spad=filter_spad,
                                 ifmap_spad=ifmap_spad, modes=len(self._modes))),
            "wload": In(FilterWrite(rows=rows, filter_spad=filter_spad, word_bits=word_w)),
            "ibus": In(InputBus(rows=rows, cols=cols, ifmap_spad=ifmap_spad,
                                word_bits=word_a)),
            "psum": In(PsumChain(cols=cols, acc_bits=self._acc_bits)),
            "ev_slots": Out(range(n + 1)), "ev_last_slots": Out(range(n + 1)),
            "ev_skipped": Out(range(n * most + 1)), "ev_takes": Out(range(n + 1)),
            "ev_filter_reads": Out(range(rows + 1)),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    lanes = property(lambda self: self._lanes)
    scheme = property(lambda self: self._scheme)
    a_bits = property(lambda self: self._a_bits)
    w_bits = property(lambda self: self._w_bits)
    acc_bits = property(lambda self: self._acc_bits)
    filter_spad = property(lambda self: self._fs)
    ifmap_spad = property(lambda self: self._is)
    tree_stages = property(lambda self: self._stages)
    modes = property(lambda self: self._modes)

    @property
    def can_skip(self) -> bool:
        """Some mode has a weight code of level 0."""
        return any(zero_codes(d.scheme, d.w_bits, d.codebook) for d in self._modes)

    def elaborate(self, platform):
        m = Module()
        Y, X = self._rows, self._cols
        modes = self._modes
        L = max(d.lanes for d in modes)            # the most lanes of any mode
        pes = [[PE(self._scheme, lanes=self._lanes, a_bits=self._a_bits, w_bits=self._w_bits,
                   acc_bits=self._acc_bits, ifmap_spad=self._is, tree_stages=self._stages,
                   codebook=self._codebook, more_modes=modes[1:], share=self._share,
                   translate=False)
                for _ in range(X)] for _ in range(Y)]
        groups = mode_groups(modes, share=self._share)
        codes = [zero_codes(d.scheme, d.w_bits, d.codebook) for d in modes]
        xnor = [d.lanes for d in modes if d.scheme == "xnor"]

        def reg(value, name):
            r = Signal.like(value, name=name)
            m.d.sync += r.eq(value)
            return r

        def by_mode(mode, values, shape, name):
            """``values[k]`` in mode ``k`` (one value: itself)."""
            if len(values) == 1:
                return values[0]
            out = Signal(shape, name=name)
            m.d.comb += out.eq(values[0])
            for k, value in enumerate(values[1:], 1):
                with m.If(mode == k):
                    m.d.comb += out.eq(value)
            return out

        wl, ib = self.wload, self.ibus
        n_last = reg(self.slots.n_last, "n_last_r")
        shared = {"w_addr": wl.addr, "i_addr": ib.addr, "i_data": ib.data, "i_bank": ib.bank,
                  "i_clear": ib.clear}
        if len(modes) > 1:
            shared["mode"] = self.slots.mode
        row_in = [{n: reg(v, f"r{i}_{n}") for n, v in shared.items()} for i in range(Y)]
        for i in range(Y):
            row_in[i].update(slot=reg(self.slots.slots[i], f"r{i}_slot"),
                             w_we=reg(wl.we[i], f"r{i}_w_we"),
                             w_data=reg(wl.data[i], f"r{i}_w_data"))
        top = [reg(self.psum.top[j], f"c{j}_top") for j in range(X)]

        # The input tags are compared on the array's inputs and the result registered per PE.
        i_take = [[reg(ib.we & ib.row_hit[i] & ib.col_ok[j] & (ib.rel[i] == ib.ju[j]),
                       f"pe_{i}_{j}_i_take")
                   for j in range(X)] for i in range(Y)]

        row_events = {"slots": [], "last": [], "skipped": [], "takes": []}
        for i in range(Y):
            r = row_in[i]
            slot = r["slot"]
            mode = r.get("mode")
            # ---- the row's filter scratchpad, read once per slot for the whole row ---------
            fspad = Memory(shape=unsigned(len(wl.data[i])), depth=2 * self._fs, init=[])
            m.submodules[f"fspad{i}"] = fspad
            f_wr, f_rd = fspad.write_port(), fspad.read_port()
            m.d.comb += [f_wr.addr.eq(r["w_addr"]), f_wr.data.eq(r["w_data"]),
                         f_wr.en.eq(r["w_we"]), f_rd.addr.eq(slot.faddr),
                         f_rd.en.eq(slot.valid)]
            last_word = Signal(name=f"r{i}_last_word_s2")
            m.d.sync += last_word.eq(slot.last_word)
            # ---- zero lanes and skip_all of the word, in each mode that can skip -----------
            zeros_k, skip_k = [], []
            for k, d in enumerate(modes):
                suffix = "" if len(modes) == 1 else f"_m{k}"
                real = Signal(range(d.lanes + 1), name=f"r{i}_real{suffix}")
                m.d.comb += real.eq(Mux(last_word, n_last, d.lanes))
                if not codes[k]:
                    zeros_k.append(Const(0, range(L + 1)))
                    skip_k.append(Const(0, 1))
                    continue
                mask, zeros = zero_lanes(m, f_rd.data[:d.w_word_bits], lanes=d.lanes,
                                         w_bits=d.w_bits, codes=codes[k], real=real)
                skip_all = Signal(name=f"r{i}_skip_all{suffix}")
                m.d.comb += skip_all.eq((mask | ~Cat(*(Const(lane) < real
                                                        for lane in range(d.lanes)))).all())
                zeros_k.append(zeros)
                skip_k.append(skip_all)
            if any(codes):
                zeros = by_mode(mode, zeros_k, range(L + 1), f"r{i}_zeros")
                skip_all = by_mode(mode, skip_k, 1, f"r{i}_skip_all")
            else:
                zeros, skip_all = Const(0, range(L + 1)), Const(0, 1)
            # shared modes' weight codes as their LaneDot's, once for the row's PEs
            w_word = head_codes(m, f_rd.data, modes, mode, groups, name=f"r{i}_head_codes")
            # the xnor mode's padded lanes (unused, and removed, without one)
            idle_lanes = xnor[0] if xnor else L
            idle = Signal(range(max(2, idle_lanes)), name=f"r{i}_idle")
            m.d.comb += idle.eq(Mux(slot.last_word, idle_lanes - n_last, 0))
            for j in range(X):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.c_iaddr.eq(slot.iaddr), pe.c_valid.eq(slot.valid),
                    pe.c_first.eq(slot.first), pe.c_last.eq(slot.last), pe.c_bp.eq(slot.bp),
                    pe.w_word.eq(w_word), pe.skip_all.eq(skip_all), pe.zeros.eq(zeros),
                    pe.i_take.eq(i_take[i][j]), pe.i_addr.eq(r["i_addr"]),
                    pe.i_data.eq(r["i_data"]), pe.i_bank.eq(r["i_bank"]),
                    pe.i_clear.eq(r["i_clear"]),
                    pe.above.eq(top[j] if i == 0 else pes[i - 1][j].psum),
                ]
                if xnor:
                    m.d.comb += pe.c_idle.eq(idle)
                if mode is not None:
                    m.d.comb += pe.c_mode.eq(mode)
            # ---- events: registered beside each PE, summed per row (registered) -------------
            slots = _sum_registered(m, reg, [pe.ev_slot for pe in pes[i]], f"r{i}_slots")
            last_r = reg(last_word, f"r{i}_last_word_s3")
            row_events["slots"].append(reg(slots, f"r{i}_ev_slots"))
            row_events["last"].append(reg(Mux(last_r, slots, 0), f"r{i}_ev_last"))
            row_events["skipped"].append(reg(
                _sum_registered(m, reg, [pe.ev_skip for pe in pes[i]], f"r{i}_skip"),
                f"r{i}_ev_skipped") if any(codes) else Const(0))
            row_events["takes"].append(reg(
                _sum_registered(m, reg, [pe.ev_take for pe in pes[i]], f"r{i}_takes"),
                f"r{i}_ev_takes"))
        for j in range(X):
            m.d.comb += self.psum.bottom[j].eq(pes[Y - 1][j].psum)
        for name, key in (("ev_slots", "slots"), ("ev_last_slots", "last"),
                          ("ev_skipped", "skipped"), ("ev_takes", "takes")):
            total, _ = adder_tree(m, row_events[key], name=f"{key}_total")
            m.d.sync += getattr(self, name).eq(total)
        # filter scratchpad reads: one per row and valid slot (the read enable)
        reads, _ = adder_tree(m, [row_in[i]["slot"].valid for i in range(Y)], name="freads")
        m.d.sync += self.ev_filter_reads.eq(reads)
        return m


def _sum_registered(m, reg, values, name):
    """Register each value, then sum them (combinational tree)."""
    regs = [reg(v, f"{name}_{k}") for k, v in enumerate(values)]
    total, _ = adder_tree(m, regs, name=name)
    return total
