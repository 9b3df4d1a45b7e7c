"""The row-stationary PE array (Eyeriss-style), generic over every product scheme.

``rows`` x ``cols`` PEs (``hw.pe.PE``). In one pass PE(i, j) holds filter row ``r_i`` of a
channel group ``cg_i`` (for ``p`` filters x ``q`` channels) of the filter group of its column
and convolves it with input row ``e_j * stride + r_i - padding`` of the same channels, where
``e_j`` is the output row of column ``j`` (columns take consecutive column units
``(gsub, e)``: several filter groups may sit side by side when the output has few rows):

- filter rows are reused horizontally: one weight bus per PE row writes the same words into
  every PE of the row that computes the same filter group (``w_col_en``);
- input rows are reused diagonally: one input bus carries each word once, tagged with its
  channel group and row, and every PE whose (``cg_i``, ``e_j * stride + r_i - padding``)
  matches takes it (``i_d = h + padding - r_i`` per row, compared with ``i_eu = e_j *
  stride`` per column);
- partial sums accumulate vertically: a drain token walks down each column, every PE adding
  its psum entry to the running sum, and the bottom PE hands the column sum to the global
  buffer.

The array has no control of its own: addresses, strobes and tokens come from
``hw.controller.Controller``; every PE runs the same schedule in lockstep.

Every input passes one register stage (a copy per PE row or column, so no register drives
the whole array; the input strobe and tags are matched first and registered per PE as its
take strobe). The PE scratchpads have synchronous read ports (block RAM or LUT RAM). The
event counts are registered beside every PE, per PE row and in total, so no path runs from
a PE through a whole adder tree. Latency: 1 + 2 cycles from slot addresses to the
accumulators; a drain token reaches the bottom ``rows + 1`` cycles after it is offered;
event counts ``EVENT_LATENCY`` (3) cycles after the events (``ev_hops``: 1). Throughput:
``rows * cols`` MACs per cycle.

Model: ``model.ops.conv2d`` (through the mapping of ``sim.cycle_model``).

Members
-------
c_* : In
    Shared compute slot (see ``hw.pe.PE``).
w_we : In(rows)
    Per-row weight write strobes; ``w_data`` one word per row; ``w_addr`` shared;
    ``w_col_en`` (In(cols)) gates the columns that take weights.
i_we, i_addr, i_data, i_bank, i_clear : In
    Shared input bus; ``i_row_hit`` (In(rows)), ``i_d`` (one per row) and ``i_eu`` (one
    per column) select the diagonal; ``i_col_ok`` (In(cols)) gates idle columns.
d_tok, d_addr, d_pp : In
    Drain token entering row 0; ``d_top`` holds one running sum per column (the global
    buffer's old partial sum, or 0); ``d_col_ok`` (In(cols)) marks the columns drained.
d_bottom : Out
    One column sum per column, valid when ``d_bottom_tok`` is high (combinational from the
    bottom PEs' registers and psum read ports: one adder).
ev_mac, ev_skip, ev_rf_reads, ev_rf_writes, ev_hops : Out
    Per-cycle event counts summed over the PEs, ``EVENT_LATENCY`` (3) cycles after the
    events (``ev_hops``: psum words passed from a PE to the PE below in drained columns,
    ``HOPS_LATENCY`` (1) cycle after the hops).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.pe import PE, ROW_BITS, _bits, check_spad_size
from hw.units import product_unit, quiet_if_invalid

__all__ = ["RowStationaryArray", "INPUT_LATENCY", "EVENT_LATENCY", "HOPS_LATENCY"]

#: Cycles from the array's inputs to its PEs (one register stage, per row and column).
INPUT_LATENCY = 1

#: Cycles from the PEs' events to ``ev_mac``, ``ev_skip``, ``ev_rf_reads`` and
#: ``ev_rf_writes`` (a register per PE, per PE row, and for the total).
EVENT_LATENCY = 3

#: Cycles from the hops of the drain tokens to ``ev_hops``.
HOPS_LATENCY = 1


class RowStationaryArray(wiring.Component):
    """``rows`` x ``cols`` PEs wired for the row-stationary dataflow (see module docstring).

    Parameters
    ----------
    rows, cols : int
        Physical array size (1..64 each).
    scheme, a_bits, w_bits, codebook : as ``hw.units.product_unit``.
    acc_bits : int
        Partial-sum width (``model.ops.accumulator_width`` of the largest layer).
    filter_spad, ifmap_spad, psum_spad : int
        Scratchpad entries per bank (powers of two).
    """

    @quiet_if_invalid
    def __init__(self, rows: int, cols: int, scheme: str, *, a_bits: int,
                 w_bits: int | None = None, acc_bits: int, filter_spad: int = 16,
                 ifmap_spad: int = 16, psum_spad: int = 16, codebook=None):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
                raise ValueError(f"{name} must be an integer in [1, 64], not {v!r}")
        self._fs = check_spad_size("filter_spad", filter_spad)
        self._is = check_spad_size("ifmap_spad", ifmap_spad)
        self._ps = check_spad_size("psum_spad", psum_spad)
        unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits, codebook=codebook)
        unit._MustUse__silence = True  # only asked for its widths
        self._codebook = codebook
        self._rows, self._cols = rows, cols
        self._scheme = scheme
        self._a_bits, self._w_bits = unit.a_bits, unit.w_bits
        self._can_skip = unit.can_skip
        self._acc_bits = int(acc_bits)
        acc = signed(self._acc_bits)
        n = rows * cols
        super().__init__({
            "c_faddr": In(_bits(2 * self._fs)),
            "c_iaddr": In(_bits(2 * self._is)),
            "c_paddr": In(_bits(2 * self._ps)),
            "c_valid": In(1), "c_first": In(1), "c_last": In(1), "c_pp": In(1),
            "c_start": In(1), "c_start_pp": In(1), "c_start_bp": In(1),
            "w_we": In(rows), "w_addr": In(_bits(2 * self._fs)),
            "w_data": In(data.ArrayLayout(self._w_bits, rows)), "w_col_en": In(cols),
            "i_we": In(1), "i_row_hit": In(rows), "i_d": In(data.ArrayLayout(signed(ROW_BITS), rows)),
            "i_col_ok": In(cols), "i_addr": In(_bits(2 * self._is)), "i_data": In(self._a_bits),
            "i_bank": In(1), "i_clear": In(1),
            "i_eu": In(data.ArrayLayout(signed(ROW_BITS), cols)),
            "d_tok": In(1), "d_addr": In(_bits(2 * self._ps)), "d_pp": In(1),
            "d_top": In(data.ArrayLayout(acc, cols)), "d_col_ok": In(cols),
            "d_bottom": Out(data.ArrayLayout(acc, cols)), "d_bottom_tok": Out(1),
            "ev_mac": Out(range(n + 1)), "ev_skip": Out(range(n + 1)),
            "ev_rf_reads": Out(range(3 * n + 1)), "ev_rf_writes": Out(range(3 * n + 1)),
            "ev_hops": Out(range(n + 1)),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    scheme = property(lambda self: self._scheme)
    a_bits = property(lambda self: self._a_bits)
    w_bits = property(lambda self: self._w_bits)
    acc_bits = property(lambda self: self._acc_bits)
    can_skip = property(lambda self: self._can_skip)
    filter_spad = property(lambda self: self._fs)
    ifmap_spad = property(lambda self: self._is)
    psum_spad = property(lambda self: self._ps)

    def elaborate(self, platform):
        m = Module()
        Y, X = self._rows, self._cols
        pes = [[PE(self._scheme, a_bits=self._a_bits,
                   w_bits=self._w_bits,
                   acc_bits=self._acc_bits, column=j, filter_spad=self._fs,
                   ifmap_spad=self._is, psum_spad=self._ps, codebook=self._codebook)
                for j in range(X)] for i in range(Y)]

        # Input registers: every input enters the array through one register stage, with a
        # copy per PE row of each broadcast signal (a copy per column of each per-column
        # one), so no net fans out to the whole array. Everything is delayed alike (one
        # cycle, ``INPUT_LATENCY``), so the schedule inside the array is unchanged.
        def reg(value, name):
            r = Signal.like(value, name=name)
            m.d.sync += r.eq(value)
            return r

        shared = ("c_faddr", "c_iaddr", "c_paddr", "c_valid", "c_first", "c_last", "c_pp",
                  "c_start", "c_start_pp", "c_start_bp", "w_addr", "i_addr",
                  "i_data", "i_bank", "i_clear")
        row_in = [{n: reg(getattr(self, n), f"r{i}_{n}") for n in shared} for i in range(Y)]
        for i in range(Y):
            row_in[i].update(w_we=reg(self.w_we[i], f"r{i}_w_we"),
                             w_data=reg(self.w_data[i], f"r{i}_w_data"))
        col_in = [dict(w_col_en=reg(self.w_col_en[j], f"c{j}_w_col_en"),
                       d_top=reg(self.d_top[j], f"c{j}_d_top"),
                       d_col_ok=reg(self.d_col_ok[j], f"c{j}_d_col_ok")) for j in range(X)]

        # Drain token pipeline, one stage per row (shared by the columns, which run in step).
        tok = [Signal(name=f"tok{i}") for i in range(Y + 1)]
        taddr = [Signal.like(self.d_addr, name=f"tok_addr{i}") for i in range(Y)]
        tpp = [Signal(name=f"tok_pp{i}") for i in range(Y)]
        m.d.sync += [tok[0].eq(self.d_tok), taddr[0].eq(self.d_addr), tpp[0].eq(self.d_pp)]
        for i in range(1, Y + 1):
            m.d.sync += tok[i].eq(tok[i - 1])
            if i < Y:
                m.d.sync += [taddr[i].eq(taddr[i - 1]), tpp[i].eq(tpp[i - 1])]
        m.d.comb += self.d_bottom_tok.eq(tok[Y])

        # The input tags are compared on the array's inputs and the result registered per
        # PE (its input register stage): each PE then sees its strobe already matched and
        # equal tags, so no path runs from the tag registers through a comparator into the
        # scratchpad's write enable.
        i_take = [[reg(self.i_we & self.i_row_hit[i] & self.i_col_ok[j]
                       & (self.i_d[i] == self.i_eu[j]), f"pe_{i}_{j}_i_take")
                   for j in range(X)] for i in range(Y)]

        for i in range(Y):
            r = row_in[i]
            for j in range(X):
                pe = pes[i][j]
                c = col_in[j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.c_faddr.eq(r["c_faddr"]), pe.c_iaddr.eq(r["c_iaddr"]),
                    pe.c_paddr.eq(r["c_paddr"]), pe.c_valid.eq(r["c_valid"]),
                    pe.c_first.eq(r["c_first"]), pe.c_last.eq(r["c_last"]),
                    pe.c_pp.eq(r["c_pp"]), pe.c_start.eq(r["c_start"]),
                    pe.c_start_pp.eq(r["c_start_pp"]), pe.c_start_bp.eq(r["c_start_bp"]),
                    pe.w_we.eq(r["w_we"] & c["w_col_en"]), pe.w_addr.eq(r["w_addr"]),
                    pe.w_data.eq(r["w_data"]),
                    pe.i_we.eq(i_take[i][j]), pe.i_d.eq(0), pe.i_eu.eq(0),
                    pe.i_addr.eq(r["i_addr"]),
                    pe.i_data.eq(r["i_data"]), pe.i_bank.eq(r["i_bank"]),
                    pe.i_clear.eq(r["i_clear"]),
                    pe.d_tok.eq(tok[i]), pe.d_addr.eq(taddr[i]), pe.d_pp.eq(tpp[i]),
                    pe.d_in.eq(c["d_top"] if i == 0 else pes[i - 1][j].d_out),
                ]
        for j in range(X):
            m.d.comb += self.d_bottom[j].eq(pes[Y - 1][j].d_out)

        # Event counts: every PE's events are registered beside it, summed per PE row
        # (registered), then over the rows (registered): the counts lag the events by
        # ``EVENT_LATENCY`` cycles and no path runs from a PE through a whole adder tree.
        for name in ("ev_mac", "ev_skip", "ev_rf_reads", "ev_rf_writes"):
            row_sums = []
            for i in range(Y):
                regs = [reg(getattr(pe, name), f"pe_{i}_{j}_{name}")
                        for j, pe in enumerate(pes[i])]
                total = _tree_sum(regs)
                row_sums.append(reg(total, f"r{i}_{name}"))
            m.d.sync += getattr(self, name).eq(_tree_sum(row_sums))
        # A hop from row i-1 to row i happens when row i holds a valid token. Tokens move
        # one row per cycle, so the hops of the next cycle are counted from the rows above
        # now, and registered: ``ev_hops`` lags the hops by one cycle (``HOPS_LATENCY``).
        hops_per_col = Signal(range(Y + 1))
        m.d.sync += hops_per_col.eq(_tree_sum([tok[i] for i in range(Y - 1)]))
        m.d.sync += self.ev_hops.eq(_tree_sum([Mux(col_in[j]["d_col_ok"], hops_per_col, 0)
                                               for j in range(X)]))
        return m


def _tree_sum(values):
    """Sum of ``values`` as a balanced tree of adders (0 for none)."""
    values = list(values)
    if not values:
        return 0
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
