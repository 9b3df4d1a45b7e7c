"""The controller: sequences the folds of a layer over the array, one pass after another.

A layer ``[M, C, R, S]`` on ``[C, H, W]`` (stride ``U``, padding ``P``, output ``[M, E, F]``)
is mapped as follows (the host computes every constant; ``sim.cycle_model`` holds the
arithmetic, this module only counts and adds; each constant is a field of
``config_field_bits`` width, and every counter and address here is only as wide as
``config_limits`` and the buffer depths require):

- *reduction units* ``u = cg * R + r`` (channel group ``cg`` of ``q`` channels, filter row
  ``r``) go down the PE rows; ``ceil(Cg * R / rows)`` *row folds* ``kr``;
- *column units* ``v = gsub * E + e`` (output row ``e`` of the ``gsub``-th of ``Gc`` filter
  groups side by side) go across the PE columns; ``ceil(Gc * E / cols)`` *column folds*
  ``kv`` (``Gc`` > 1 fills the columns when the output has few rows);
- output columns are cut into *segments* ``kf`` of ``F'`` positions (the input and psum
  scratchpads hold one segment);
- the ``M`` filters are taken ``p`` at a time: ``Gi = M / p / Gc`` *inner filter groups*
  ``g``; column unit ``(gsub, e)`` of pass ``g`` computes filters ``(g * Gc + gsub) * p``
  onwards.

One *pass* is one (``kr``, ``kv``, ``kf``, ``g``), in that loop order (``g`` innermost); one
*block* is one (``kr``, ``kv``, ``kf``): its input rows stay in the input scratchpads for all
``Gi`` passes of the block. Four engines run concurrently:

- the *compute sequencer* issues one slot per cycle to every PE: ``p * q * n_s(f)`` slots
  for each output column ``f`` of the segment, ``n_s(f)`` being the number of taps of its
  window inside the image's width (at least 1): padding columns cost no cycle;
- the *weight loader* fills the other filter bank with the next pass's weights:
  ``p * q * S`` words per PE row in parallel for each filter group among the pass's
  columns, plus one cycle of read latency;
- the *input loader* fills the other input bank with the next block's rows: two set-up
  cycles, one word per cycle over the channel groups of the row fold, the input rows of the
  column fold and the columns of the segment (clipped to the image), one cycle of latency;
- the *drain* walks the previous pass's ``p * F_v`` psums down every column, adds the psum
  buffer's old value (after the first row fold) and writes the sums back: ``p * F_v`` tokens
  plus ``rows + 2`` cycles (the array's input register included).

The next pass starts in the cycle after the last of: this pass's last slot, the next
pass's weights written, the previous pass's drain written, and (when the next pass begins a
block) the block's inputs written. The schedule depends only on the layer's shape, never on
its data. ``sim.cycle_model.predict`` gives the same cycle count.

Latency: 1 set-up cycle, then the first block's inputs and first pass's weights, then the
passes, then the last drain. Throughput: ``rows * cols`` slots per cycle while computing.

Model: ``sim.cycle_model.predict`` (cycles and counters), ``model.ops.conv2d`` (sums).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.array import INPUT_LATENCY, RowStationaryArray
from hw.buffer import GlobalBuffer
from hw.pe import ROW_BITS

__all__ = ["CONFIG_FIELDS", "MAX_PADDING", "config_limits", "config_field_bits",
           "config_layout", "Controller"]

#: The largest padding a configuration holds (a stated limit: more padding only adds output
#: rows and columns computed from padding alone).
MAX_PADDING = 15

#: The configuration fields, in ``config_stream`` order, with their meaning.
CONFIG_FIELDS = {
    "H": "input height", "W": "input width", "R": "filter height", "S": "filter width",
    "U": "stride", "P": "padding", "E": "output height",
    "q": "channels per PE", "p": "filters per PE", "Cg": "channel groups C / q",
    "Gi": "inner filter groups M / p / Gc", "Gc": "filter groups across the columns",
    "Fseg": "segment length F'", "n_f": "segments",
    "F_last": "length of the last segment", "Wseg": "input scratchpad row stride",
    "n_r": "row folds", "rows_last": "PE rows used in the last row fold",
    "n_v": "column folds", "cols_last": "PE columns used in the last column fold",
    "YdivR": "rows // R", "YmodR": "rows % R", "qS": "q * S", "pqS": "p * q * S",
    "MqS": "weight words per reduction unit M * q * S", "n_weights": "M * C * R * S",
    "HW": "H * W", "qHW": "q * H * W", "YdivR_qHW": "(rows // R) * q * H * W",
    "n_inputs": "C * H * W", "PW": "P * W", "FsegU": "F' * U", "Fp": "F * p",
    "GiFp": "Gi * F * p", "Fsegp": "F' * p", "FsU1": "(F' - 1) * U",
    "FlU1": "(F_last - 1) * U", "Flastp": "F_last * p", "GcpqS": "Gc * p * q * S",
    "XmodE": "cols % E", "XdivE": "cols // E", "XmodEU": "(cols % E) * U", "EU": "E * U",
    "E1U": "(E - 1) * U", "XmodEUW": "(cols % E) * U * W", "EUW": "E * U * W",
    "XdivE_pqS": "(cols // E) * p * q * S",
}


def config_limits(*, rows: int, cols: int, filter_spad: int, ifmap_spad: int,
                  psum_spad: int, in_depth: int, wb_depth: int, pb_depth: int,
                  **_ignored) -> dict[str, int]:
    """The largest value of each configuration field on this accelerator.

    Every layer whose buffers fit (``sim.cycle_model.memory_depths`` within the depths),
    whose mapping fits the scratchpads and whose padding is at most ``MAX_PADDING`` stays
    within them: ``C * H * W`` input words bound ``H``, ``W`` and their products; the
    weight words per bank ``n_r * M * q * S`` bound ``n_r``, ``M * q * S`` and so ``Gi``,
    ``Gc`` and ``Gc * p * q * S``; the psum words per bank ``n_v * Gi * p * F`` bound
    ``n_v``, ``Gi`` and ``F``; ``E`` and ``F`` are at most the padded input's size, so
    ``n_f <= F``; ``p * q * S`` fits the filter scratchpad, ``q * Wseg`` the input one,
    ``p * F'`` the psum one; the stride is at most ``hw.pe.MAX_STRIDE``; ``(E - 1) * U <=
    H + 2 * P - R``, so ``E * U * W <= (H + 2 * P + U) * W``. The host refuses a layer with
    a larger value (the field, its value and the limit in one line); the controller's
    counters and addresses are sized from these limits. Extra keyword arguments
    (``sim.run_layer.accelerator_args``) are ignored.
    """
    from hw.pe import MAX_STRIDE as U
    Y, X, FS, IS, PS = rows, cols, filter_spad, ifmap_spad, psum_spad
    Din, Dw, Dp, P = in_depth, wb_depth, pb_depth, MAX_PADDING
    E = Din + 2 * P          # output rows or columns (and filter rows) within the padded input
    return {
        "H": Din, "W": Din, "R": E, "S": min(FS, IS), "U": U, "P": P, "E": E,
        "q": FS, "p": FS, "Cg": Din, "Gi": min(Dp, Dw), "Gc": Dw, "Fseg": PS,
        "n_f": min(Dp, E),
        "F_last": PS, "Wseg": IS, "n_r": Dw, "rows_last": Y, "n_v": Dp,
        "cols_last": X,
        "YdivR": Y, "YmodR": Y, "qS": FS, "pqS": FS, "MqS": Dw, "n_weights": Y * Dw,
        "HW": Din, "qHW": Din, "YdivR_qHW": Y * Din, "n_inputs": Din, "PW": P * Din,
        "FsegU": U * PS, "Fp": min(Dp, E * FS), "GiFp": Dp, "Fsegp": PS, "FsU1": U * PS,
        "FlU1": U * PS,
        "Flastp": PS, "GcpqS": Dw, "XmodE": X, "XdivE": X, "XmodEU": U * X,
        "EU": E + U, "E1U": E, "XmodEUW": U * X * Din, "EUW": (2 * P + U + 1) * Din,
        "XdivE_pqS": X * FS,
    }


def config_field_bits(**params) -> dict[str, int]:
    """Bits of each configuration field: enough for its ``config_limits`` value."""
    return {name: max(1, limit.bit_length()) for name, limit in config_limits(**params).items()}


def config_layout(field_bits: dict[str, int]) -> data.StructLayout:
    """Layout of the configuration register (fields of ``config_field_bits`` widths)."""
    return data.StructLayout({name: unsigned(field_bits[name]) for name in CONFIG_FIELDS})


class Controller(wiring.Component):
    """Compute-phase sequencer of the accelerator (see module docstring).

    Parameters
    ----------
    array : RowStationaryArray
        The array it drives (for its size and scratchpad sizes).
    buffer : GlobalBuffer
        The global buffer it reads and writes.

    Members
    -------
    cfg : In(config_layout(field_bits))
        The layer's configuration (held stable while running); ``field_bits`` is
        ``config_field_bits`` of the array's and buffer's sizes.
    init : In(1)
        Strobe: set up the row descriptors for a new layer (takes ``rows`` cycles, while
        ``initialising`` is high).
    start : In(1)
        Strobe: run the compute phase; ``running`` is high from the next cycle until the
        last partial sum is written.
    running, initialising : Out(1)
    unload_re, unload_raddr : In
        Psum bank read port for unloading the outputs (used while not running).
    a_*, g_* : the array's and buffer's ports it drives (connected by the accelerator).
    """

    def __init__(self, array: RowStationaryArray, buffer: GlobalBuffer):
        self._array = array
        self._buffer = buffer
        in_depth, wb_depth, pb_depth = buffer.depths
        self._limits = config_limits(rows=array.rows, cols=array.cols,
                                     filter_spad=array.filter_spad,
                                     ifmap_spad=array.ifmap_spad, psum_spad=array.psum_spad,
                                     in_depth=in_depth, wb_depth=wb_depth, pb_depth=pb_depth)
        self._field_bits = {name: max(1, v.bit_length()) for name, v in self._limits.items()}
        super().__init__({
            "cfg": In(config_layout(self._field_bits)), "init": In(1), "start": In(1),
            "running": Out(1), "initialising": Out(1),
            "unload_re": In(buffer.pb_re.shape()), "unload_raddr": In(buffer.pb_raddr.shape()),
        })

    @property
    def limits(self) -> dict[str, int]:
        """``config_limits`` of this controller (the largest value of each field)."""
        return dict(self._limits)

    @property
    def field_bits(self) -> dict[str, int]:
        """``config_field_bits`` of this controller."""
        return dict(self._field_bits)

    def elaborate(self, platform):
        m = Module()
        arr, buf, cfg = self._array, self._buffer, self.cfg
        Y, X = arr.rows, arr.cols
        FS, IS, PS = arr.filter_spad, arr.ifmap_spad, arr.psum_spad
        lim = self._limits
        Din, Dw, Dp = buf.depths

        def upto(n, name=None):
            """An unsigned counter holding 0 .. n."""
            return Signal(range(n + 1), name=name)

        def below(n, name=None):
            """An unsigned counter or address holding 0 .. n - 1 while it is in use (one
            step past its last value it may wrap: it is reloaded before it is read again)."""
            return Signal(range(max(2, n)), name=name)

        # Positions along the (padded) input and window offsets, signed: an input position
        # (at most H or W, the padding before it, a segment of taps after it).
        pos_bits = (max(lim["H"], lim["W"]) + MAX_PADDING + lim["FsegU"] + lim["S"]
                    + 2 * lim["U"]).bit_length() + 1

        def pos(name):
            return Signal(signed(pos_bits), name=name)

        # Column j of column fold kv computes filter group (kv * cols + j) // E; only its
        # offset from column 0's is kept (at most cols). e * U of an output row is at most
        # H + 2 * P - R.
        G_REL = X
        EU_MAX = lim["H"] + 2 * MAX_PADDING

        # ============================ row and column descriptors =======================
        # (cg_i, r_i): the reduction unit of PE row i in the row fold the input loader is
        # loading; advanced by ``rows`` units per row fold.
        # (gsub_j - gsub_0, e_j, e_j * U): the column unit of PE column j (its filter group
        # relative to column 0's), one set per block parity
        # (the input loader fills the next block's set, the weight loader reads the set of
        # the pass it loads); advanced by ``cols`` units per column fold. Column 0 also
        # keeps e_0 * U * W and gsub_0 * p * q * S (start addresses).
        # A walker sets up the rows and the first column fold (``init_*``) for a new layer.
        row_cg = Array([upto(lim["Cg"] + Y, name=f"row_cg{i}") for i in range(Y)])
        row_r = Array([upto(lim["R"], name=f"row_r{i}") for i in range(Y)])
        init_e = Array([upto(lim["E"], name=f"init_e{j}") for j in range(X)])
        init_g = Array([upto(G_REL, name=f"init_g{j}") for j in range(X)])
        init_eu = Array([upto(EU_MAX, name=f"init_eu{j}") for j in range(X)])
        col_e = Array([Array([upto(lim["E"], name=f"col{b}_e{j}") for j in range(X)])
                       for b in range(2)])
        col_g = Array([Array([upto(G_REL, name=f"col{b}_g{j}") for j in range(X)])
                       for b in range(2)])
        col_eu = Array([Array([upto(EU_MAX, name=f"col{b}_eu{j}") for j in range(X)])
                        for b in range(2)])
        col_euw0 = Array([upto(lim["EUW"], name=f"col{b}_euw0") for b in range(2)])
        col_gpqs0 = Array([upto(lim["GcpqS"], name=f"col{b}_gpqs0") for b in range(2)])
        K = max(Y, X)
        walk_k = Signal(range(K + 1))
        walk_cg, walk_r = upto(K), upto(K)
        walk_g, walk_e, walk_eu = upto(K), upto(K), upto(EU_MAX)
        m.d.comb += self.initialising.eq(walk_k != K)
        with m.If(self.init):
            m.d.sync += [walk_k.eq(0), walk_cg.eq(0), walk_r.eq(0), walk_g.eq(0),
                         walk_e.eq(0), walk_eu.eq(0)]
        with m.Elif(walk_k != K):
            m.d.sync += walk_k.eq(walk_k + 1)
            with m.If(walk_k < Y):
                m.d.sync += [row_cg[walk_k].eq(walk_cg), row_r[walk_k].eq(walk_r)]
            with m.If(walk_k < X):
                m.d.sync += [init_g[walk_k].eq(walk_g), init_e[walk_k].eq(walk_e),
                             init_eu[walk_k].eq(walk_eu)]
            with m.If(walk_r + 1 == cfg.R):
                m.d.sync += [walk_r.eq(0), walk_cg.eq(walk_cg + 1)]
            with m.Else():
                m.d.sync += walk_r.eq(walk_r + 1)
            with m.If(walk_e + 1 == cfg.E):
                m.d.sync += [walk_e.eq(0), walk_eu.eq(0), walk_g.eq(walk_g + 1)]
            with m.Else():
                m.d.sync += [walk_e.eq(walk_e + 1), walk_eu.eq(walk_eu + cfg.U)]

        def columns_from_init(b):
            stmts = [col_euw0[b].eq(0), col_gpqs0[b].eq(0)]
            for j in range(X):
                stmts += [col_e[b][j].eq(init_e[j]), col_g[b][j].eq(init_g[j]),
                          col_eu[b][j].eq(init_eu[j])]
            return stmts

        def columns_copy(dst, src):
            stmts = [col_euw0[dst].eq(col_euw0[src]), col_gpqs0[dst].eq(col_gpqs0[src])]
            for j in range(X):
                stmts += [col_e[dst][j].eq(col_e[src][j]), col_g[dst][j].eq(col_g[src][j]),
                          col_eu[dst][j].eq(col_eu[src][j])]
            return stmts

        def columns_advance(dst, src):
            """Set ``dst`` to the next column fold after ``src`` (``cols`` units on): every
            column's filter group moves on by ``cols // E``, one more where its output row
            wraps, so the offsets from column 0 change by the difference of the wraps."""
            wrap0 = col_e[src][0] + cfg.XmodE >= cfg.E
            for j in range(X):
                ne = col_e[src][j] + cfg.XmodE
                m.d.sync += col_g[dst][j].eq(col_g[src][j] + (ne >= cfg.E) - wrap0)
                with m.If(ne >= cfg.E):
                    m.d.sync += [col_e[dst][j].eq(ne - cfg.E),
                                 col_eu[dst][j].eq(col_eu[src][j] + cfg.XmodEU - cfg.EU)]
                    if j == 0:
                        m.d.sync += [
                            col_euw0[dst].eq(col_euw0[src] + cfg.XmodEUW - cfg.EUW),
                            col_gpqs0[dst].eq(col_gpqs0[src] + cfg.XdivE_pqS + cfg.pqS)]
                with m.Else():
                    m.d.sync += [col_e[dst][j].eq(ne),
                                 col_eu[dst][j].eq(col_eu[src][j] + cfg.XmodEU)]
                    if j == 0:
                        m.d.sync += [col_euw0[dst].eq(col_euw0[src] + cfg.XmodEUW),
                                     col_gpqs0[dst].eq(col_gpqs0[src] + cfg.XdivE_pqS)]

        # ============================ pass descriptors ==================================
        # dw: the pass whose weights are loading (next to compute); its iterator state.
        dw_valid = Signal()
        dw_kr, dw_ke, dw_kf, dw_g = (below(lim[f], name=n) for n, f in (
            ("dw_kr", "n_r"), ("dw_kv", "n_v"), ("dw_kf", "n_f"), ("dw_g", "Gi")))
        dw_wbase_kr = below(Dw)
        dw_wbase = below(Dw)
        dw_pbase_ke = below(Dp)
        dw_pbase_kf = below(Dp)
        dw_pbase_g = below(Dp)
        dw_ws = pos("dw_ws")
        dw_pp = Signal()
        dw_bp = Signal()
        dw_kr_last = Signal()
        dw_ke_last = Signal()
        dw_kf_last = Signal()
        m.d.comb += [dw_kr_last.eq(dw_kr + 1 == cfg.n_r), dw_ke_last.eq(dw_ke + 1 == cfg.n_v),
                     dw_kf_last.eq(dw_kf + 1 == cfg.n_f)]
        dw_first_in_block = Signal()
        m.d.comb += dw_first_in_block.eq(dw_g == 0)

        # next(dw), combinational
        nx = {name: Signal.like(sig, name=f"nx_{name}") for name, sig in (
            ("valid", dw_valid), ("kr", dw_kr), ("ke", dw_ke), ("kf", dw_kf), ("g", dw_g),
            ("wbase_kr", dw_wbase_kr), ("wbase", dw_wbase), ("pbase_ke", dw_pbase_ke),
            ("pbase_kf", dw_pbase_kf), ("pbase_g", dw_pbase_g), ("ws", dw_ws),
            ("pp", dw_pp), ("bp", dw_bp))}
        m.d.comb += [nx["valid"].eq(dw_valid), nx["kr"].eq(dw_kr), nx["ke"].eq(dw_ke),
                     nx["kf"].eq(dw_kf), nx["g"].eq(dw_g + 1), nx["wbase_kr"].eq(dw_wbase_kr),
                     nx["wbase"].eq(dw_wbase + cfg.GcpqS), nx["pbase_ke"].eq(dw_pbase_ke),
                     nx["pbase_kf"].eq(dw_pbase_kf), nx["pbase_g"].eq(dw_pbase_g + cfg.Fp),
                     nx["ws"].eq(dw_ws), nx["pp"].eq(~dw_pp), nx["bp"].eq(dw_bp)]
        with m.If(dw_g + 1 == cfg.Gi):
            m.d.comb += [nx["g"].eq(0), nx["pbase_g"].eq(0), nx["wbase"].eq(dw_wbase_kr),
                         nx["bp"].eq(~dw_bp)]
            with m.If(dw_kf_last):
                m.d.comb += [nx["kf"].eq(0), nx["pbase_kf"].eq(0), nx["ws"].eq(-cfg.P)]
                with m.If(dw_ke_last):
                    m.d.comb += [nx["ke"].eq(0), nx["pbase_ke"].eq(0)]
                    with m.If(dw_kr_last):
                        m.d.comb += nx["valid"].eq(0)
                    with m.Else():
                        m.d.comb += [nx["kr"].eq(dw_kr + 1),
                                     nx["wbase_kr"].eq(dw_wbase_kr + cfg.MqS),
                                     nx["wbase"].eq(dw_wbase_kr + cfg.MqS)]
                with m.Else():
                    m.d.comb += [nx["ke"].eq(dw_ke + 1),
                                 nx["pbase_ke"].eq(dw_pbase_ke + cfg.GiFp)]
            with m.Else():
                m.d.comb += [nx["kf"].eq(dw_kf + 1), nx["pbase_kf"].eq(dw_pbase_kf + cfg.Fsegp),
                             nx["ws"].eq(dw_ws + cfg.FsegU)]

        # dc: the pass computing; dd: the pass draining (snapshots).
        dc_valid, dc_kf_last, dc_pp, dc_bp = Signal(), Signal(), Signal(), Signal()
        dc_ws = pos("dc_ws")
        dc_kr_first, dc_ke_last = Signal(), Signal()
        dc_pbase = below(Dp)
        dd_valid, dd_kf_last, dd_pp, dd_kr_first, dd_ke_last = (Signal(name=f"dd_{n}") for n in
                                                                 ("valid", "kf_last", "pp",
                                                                  "kr_first", "ke_last"))
        dd_pbase = below(Dp)

        # ============================ engines ===========================================
        starting = Signal()
        running = self.running

        # ---- compute sequencer ----
        # Taps outside the image's width are the same for every PE (they depend on the output
        # column only), so they get no slot: for each output column the tap loop runs over
        # the valid taps [s_first, s_last] only (one invalid slot if none is valid).
        c_busy = Signal()
        c_fi, c_mi, c_cq = below(PS, "c_fi"), below(FS, "c_mi"), below(FS, "c_cq")
        c_s, c_sfirst, c_slast = below(lim["S"], "c_s"), below(lim["S"]), below(lim["S"])
        c_empty = Signal()  # no tap of this output column is inside the image: the one slot
        #                     of the column is invalid (every tap in [s_first, s_last] is valid)
        c_fb = below(FS)  # (mi * q + cq) * S: the filter scratchpad row of the dot
        c_kp = below(PS)
        c_fU = below(lim["FsegU"])
        c_cqW = below(IS)
        c_Fv = upto(PS)
        m.d.comb += c_Fv.eq(Mux(dc_kf_last, cfg.F_last, cfg.Fseg))

        def tap_bounds(name, wf):
            """First and last valid tap of a window starting at input column ``wf`` (0, 0 and
            ``empty`` high if none is valid)."""
            w0 = pos(f"{name}_w0")
            lo, room, hi = pos(f"{name}_lo"), pos(f"{name}_room"), pos(f"{name}_hi")
            first, last = below(lim["S"], f"{name}_first"), below(lim["S"], f"{name}_last")
            m.d.comb += [w0.eq(wf), lo.eq(Mux(w0 < 0, -w0, 0)), room.eq(cfg.W - 1 - w0),
                         hi.eq(Mux(room < cfg.S - 1, room, cfg.S - 1))]
            empty = (room < 0) | (lo > hi)
            m.d.comb += [first.eq(Mux(empty, 0, lo)), last.eq(Mux(empty, 0, hi))]
            return first, last, empty

        next_first, next_last, next_empty = tap_bounds("nf", dc_ws + c_fU + cfg.U)
        s_last = Signal()
        cq_last = Signal()
        mi_last = Signal()
        fi_last = Signal()
        m.d.comb += [s_last.eq(c_s == c_slast), cq_last.eq(c_cq + 1 == cfg.q),
                     mi_last.eq(c_mi + 1 == cfg.p), fi_last.eq(c_fi + 1 == c_Fv)]
        c_last_slot = Signal()
        m.d.comb += c_last_slot.eq(c_busy & s_last & cq_last & mi_last & fi_last)
        m.d.comb += [
            arr.c_faddr.eq((c_fb + c_s) | Mux(dc_pp, FS, 0)),
            arr.c_iaddr.eq((c_cqW + c_fU + c_s) | Mux(dc_bp, IS, 0)),
            arr.c_paddr.eq(c_kp | Mux(dc_pp, PS, 0)),
            arr.c_valid.eq(c_busy & ~c_empty),
            arr.c_first.eq((c_s == c_sfirst) & (c_cq == 0)),
            arr.c_last.eq(c_busy & s_last & cq_last),
            arr.c_pp.eq(dc_pp),
        ]
        with m.If(c_busy):
            m.d.sync += c_s.eq(c_s + 1)
            with m.If(s_last):
                m.d.sync += [c_s.eq(c_sfirst), c_cq.eq(c_cq + 1), c_cqW.eq(c_cqW + cfg.Wseg),
                             c_fb.eq(c_fb + cfg.S)]
                with m.If(cq_last):
                    m.d.sync += [c_cq.eq(0), c_cqW.eq(0), c_kp.eq(c_kp + 1),
                                 c_mi.eq(c_mi + 1)]
                    with m.If(mi_last):
                        m.d.sync += [c_mi.eq(0), c_fb.eq(0), c_fi.eq(c_fi + 1),
                                     c_fU.eq(c_fU + cfg.U), c_s.eq(next_first),
                                     c_sfirst.eq(next_first), c_slast.eq(next_last),
                                     c_empty.eq(next_empty)]
                        with m.If(fi_last):
                            m.d.sync += c_busy.eq(0)

        # ---- weight loader ----
        # One pass's weights: for each filter group of the pass's columns (gsub from column
        # 0's to the last used column's), p * q * S words per PE row; a column takes the
        # words of its own group. The column set is read while loading (never at the start),
        # so a set written in the swap cycle is seen.
        wl_issue = Signal()
        wl_wr = Signal()
        wl_k = below(FS)           # word within the group
        wl_rel = upto(G_REL + 1)   # group, relative to column 0's
        wl_off = below(Dw)         # word of the pass
        wl_base = below(Dw)
        wl_pp = Signal()
        wl_bp = Signal()
        wl_rows = upto(Y)
        wl_cols = upto(X)
        wl_waddr = Signal.like(arr.w_addr)
        wl_tag_d = upto(G_REL + 1)
        wl_tag = upto(G_REL + 1)
        wl_tag_hi = upto(G_REL + 1)
        m.d.comb += [wl_tag.eq(wl_rel),             # column 0's offset is 0
                     wl_tag_hi.eq(col_g[wl_bp][wl_cols - 1])]
        rowmask = Signal(Y)
        m.d.comb += [rowmask[i].eq(wl_rows > i) for i in range(Y)]
        m.d.comb += [
            buf.wb_re.eq(Mux(wl_issue, rowmask, 0)),
            buf.wb_raddr.eq(wl_base + col_gpqs0[wl_bp] + wl_off),
            arr.w_addr.eq(wl_waddr),
            arr.w_col_en.eq(Cat([(wl_cols > j) & (col_g[wl_bp][j] == wl_tag_d)
                                 for j in range(X)])),
        ]
        rowmask_d = Signal(Y)
        m.d.sync += [wl_wr.eq(wl_issue), rowmask_d.eq(rowmask), wl_tag_d.eq(wl_tag),
                     wl_waddr.eq(wl_k | Mux(wl_pp, FS, 0))]
        m.d.comb += arr.w_we.eq(Mux(wl_wr, rowmask_d, 0))
        for i in range(Y):
            m.d.comb += arr.w_data[i].eq(buf.wb_rdata[i])
        with m.If(wl_issue):
            m.d.sync += [wl_k.eq(wl_k + 1), wl_off.eq(wl_off + 1)]
            with m.If(wl_k + 1 == cfg.pqS):
                m.d.sync += [wl_k.eq(0), wl_rel.eq(wl_rel + 1)]
                with m.If(wl_tag == wl_tag_hi):
                    m.d.sync += wl_issue.eq(0)
        wl_busy = Signal()
        wl_ready = Signal()
        m.d.comb += [wl_busy.eq(wl_issue | wl_wr), wl_ready.eq(~wl_issue)]

        # ---- input loader ----
        il_phase = Signal(range(5))  # 0 idle, 1 advance, 2 ranges, 3 issue, 4 tail
        il_first = Signal()
        il_kr, il_ke, il_kf = below(lim["n_r"]), below(lim["n_v"]), below(lim["n_f"])
        il_ws = pos("il_ws")
        il_cbase0 = below(Din)
        il_bp = Signal()
        il_kr_last, il_ke_last, il_kf_last = Signal(), Signal(), Signal()
        m.d.comb += [il_kr_last.eq(il_kr + 1 == cfg.n_r), il_ke_last.eq(il_ke + 1 == cfg.n_v),
                     il_kf_last.eq(il_kf + 1 == cfg.n_f)]
        il_more = Signal()
        m.d.comb += il_more.eq(il_first | ~(il_kr_last & il_ke_last & il_kf_last))
        il_rows = upto(Y)
        m.d.comb += il_rows.eq(Mux(il_kr_last, cfg.rows_last, Y))
        il_cols = upto(X)
        m.d.comb += il_cols.eq(Mux(il_ke_last, cfg.cols_last, X))
        # ranges (registered in phase 2)
        r_cg_hi = upto(lim["Cg"] + Y)
        r_hlo, r_hhi, r_wlo, r_whi = (pos(n) for n in ("il_hlo", "il_hhi", "il_wlo",
                                                          "il_whi"))
        # issue counters
        i_cg, i_cq = upto(lim["Cg"] + Y), below(FS)
        i_h = pos("il_h")
        i_w = pos("il_w")
        i_addr = below(Din)
        i_row_addr = below(Din)
        i_chan_addr = below(Din)
        i_cqW = below(IS)
        i_wl = below(IS)

        with m.Switch(il_phase):
            with m.Case(1):  # advance the block and the row descriptors; clear activity
                with m.If(il_first):
                    m.d.sync += [il_first.eq(0), il_kr.eq(0), il_ke.eq(0), il_kf.eq(0),
                                 il_ws.eq(-cfg.P),
                                 il_cbase0.eq(0), il_bp.eq(0)]
                with m.Else():
                    m.d.sync += il_bp.eq(~il_bp)
                    with m.If(il_kf_last):
                        m.d.sync += [il_kf.eq(0), il_ws.eq(-cfg.P)]
                        with m.If(il_ke_last):
                            m.d.sync += [il_ke.eq(0), il_kr.eq(il_kr + 1)]
                            wrap0 = row_r[0] + cfg.YmodR >= cfg.R
                            m.d.sync += il_cbase0.eq(il_cbase0 + cfg.YdivR_qHW +
                                                     Mux(wrap0, cfg.qHW, 0))
                            for i in range(Y):
                                nr = row_r[i] + cfg.YmodR
                                with m.If(nr >= cfg.R):
                                    m.d.sync += [row_r[i].eq(nr - cfg.R),
                                                 row_cg[i].eq(row_cg[i] + cfg.YdivR + 1)]
                                with m.Else():
                                    m.d.sync += [row_r[i].eq(nr),
                                                 row_cg[i].eq(row_cg[i] + cfg.YdivR)]
                        with m.Else():
                            m.d.sync += il_ke.eq(il_ke + 1)
                    with m.Else():
                        m.d.sync += [il_kf.eq(il_kf + 1), il_ws.eq(il_ws + cfg.FsegU)]
                m.d.sync += il_phase.eq(2)
            with m.Case(2):  # clipped ranges and start address
                hlo = pos("hlo_c")
                hhi = pos("hhi_c")
                whi = pos("whi_c")
                # output rows of the fold: all of them when it spans two filter groups
                last_j = il_cols - 1
                wrap = col_g[il_bp][last_j] != 0
                eu_min = Mux(wrap, 0, col_eu[il_bp][0])
                eu_max = Mux(wrap, cfg.E1U, col_eu[il_bp][last_j])
                euw_min = Mux(wrap, 0, col_euw0[il_bp])
                m.d.comb += [
                    hlo.eq(eu_min - cfg.P),
                    hhi.eq(eu_max + cfg.R - 1 - cfg.P),
                    whi.eq(il_ws + Mux(il_kf_last, cfg.FlU1, cfg.FsU1) + cfg.S - 1),
                ]
                hlo_c = Mux(hlo < 0, 0, hlo)
                hhi_c = Mux(hhi >= cfg.H, cfg.H - 1, hhi)
                wlo_c = Mux(il_ws < 0, 0, il_ws)
                whi_c = Mux(whi >= cfg.W, cfg.W - 1, whi)
                chan = il_cbase0 + Mux(hlo < 0, 0, euw_min - cfg.PW) + wlo_c
                cg_hi = Mux(il_rows == Y, row_cg[Y - 1], cfg.Cg - 1)
                m.d.sync += [r_hlo.eq(hlo_c), r_hhi.eq(hhi_c), r_wlo.eq(wlo_c), r_whi.eq(whi_c),
                             r_cg_hi.eq(cg_hi),
                             i_cg.eq(row_cg[0]), i_cq.eq(0), i_h.eq(hlo_c), i_w.eq(wlo_c),
                             i_addr.eq(chan), i_row_addr.eq(chan), i_chan_addr.eq(chan),
                             i_cqW.eq(0), i_wl.eq(wlo_c - il_ws)]
                with m.If((hlo_c > hhi_c) | (wlo_c > whi_c)):
                    m.d.sync += il_phase.eq(4)
                with m.Else():
                    m.d.sync += il_phase.eq(3)
            with m.Case(3):  # one word per cycle
                with m.If(i_w != r_whi):
                    m.d.sync += [i_w.eq(i_w + 1), i_addr.eq(i_addr + 1), i_wl.eq(i_wl + 1)]
                with m.Else():
                    m.d.sync += [i_w.eq(r_wlo), i_wl.eq(r_wlo - il_ws)]
                    with m.If(i_h != r_hhi):
                        m.d.sync += [i_h.eq(i_h + 1), i_row_addr.eq(i_row_addr + cfg.W),
                                     i_addr.eq(i_row_addr + cfg.W)]
                    with m.Else():
                        m.d.sync += [i_h.eq(r_hlo), i_chan_addr.eq(i_chan_addr + cfg.HW),
                                     i_row_addr.eq(i_chan_addr + cfg.HW),
                                     i_addr.eq(i_chan_addr + cfg.HW)]
                        with m.If(i_cq + 1 != cfg.q):
                            m.d.sync += [i_cq.eq(i_cq + 1), i_cqW.eq(i_cqW + cfg.Wseg)]
                        with m.Else():
                            m.d.sync += [i_cq.eq(0), i_cqW.eq(0)]
                            with m.If(i_cg != r_cg_hi):
                                m.d.sync += i_cg.eq(i_cg + 1)
                            with m.Else():
                                m.d.sync += il_phase.eq(4)
            with m.Case(4):
                m.d.sync += il_phase.eq(0)

        issuing = Signal()
        m.d.comb += issuing.eq(il_phase == 3)
        m.d.comb += [buf.in_re.eq(issuing), buf.in_raddr.eq(i_addr)]
        # broadcast stage (registered from the issue stage)
        b_we = Signal()
        b_addr = Signal.like(arr.i_addr)
        b_hit = Signal(Y)
        b_d = [Signal(signed(ROW_BITS), name=f"b_d{i}") for i in range(Y)]
        b_cols = Signal(X)
        t = pos("il_t")
        m.d.comb += t.eq(i_h + cfg.P)
        m.d.sync += [b_we.eq(issuing), b_addr.eq((i_cqW + i_wl) | Mux(il_bp, IS, 0)),
                     b_cols.eq(Cat([il_cols > j for j in range(X)]))]
        for i in range(Y):
            m.d.sync += [b_hit[i].eq((row_cg[i] == i_cg) & (il_rows > i)),
                         b_d[i].eq(t - row_r[i])]
            m.d.comb += arr.i_d[i].eq(b_d[i])
        m.d.comb += [arr.i_we.eq(b_we), arr.i_row_hit.eq(b_hit), arr.i_col_ok.eq(b_cols),
                     arr.i_addr.eq(b_addr), arr.i_data.eq(buf.in_rdata), arr.i_bank.eq(il_bp),
                     arr.i_clear.eq(il_phase == 2)]
        for j in range(X):
            m.d.comb += arr.i_eu[j].eq(col_eu[il_bp][j])
        il_busy = Signal()
        il_ready = Signal()
        m.d.comb += [il_busy.eq(il_phase != 0), il_ready.eq((il_phase == 0) | (il_phase == 4))]

        # ---- drain ----
        dr_left = upto(PS + Y + 1 + INPUT_LATENCY)
        dr_k = below(PS)
        dr_issue = Signal()
        dr_count = upto(PS)
        dr_cols = upto(X)
        colmask = Signal(X)
        m.d.comb += [colmask[j].eq(dr_cols > j) for j in range(X)]
        dr_tok = Signal()
        dr_tok_addr = Signal.like(arr.d_addr)
        dr_wptr = below(Dp)
        m.d.comb += [
            buf.pb_re.eq(Mux(running, Mux(dr_issue & ~dd_kr_first, colmask, 0),
                             self.unload_re)),
            buf.pb_raddr.eq(Mux(running, dd_pbase + dr_k, self.unload_raddr)),
        ]
        m.d.sync += [dr_tok.eq(dr_issue), dr_tok_addr.eq(dr_k | Mux(dd_pp, PS, 0))]
        m.d.comb += [arr.d_tok.eq(dr_tok), arr.d_addr.eq(dr_tok_addr), arr.d_pp.eq(dd_pp),
                     arr.d_col_ok.eq(colmask)]
        for j in range(X):
            m.d.comb += arr.d_top[j].eq(Mux(dd_kr_first, 0, buf.pb_rdata[j]))
            m.d.comb += buf.pb_wdata[j].eq(arr.d_bottom[j])
        m.d.comb += [buf.pb_we.eq(Mux(arr.d_bottom_tok, colmask, 0)),
                     buf.pb_waddr.eq(dr_wptr)]
        with m.If(arr.d_bottom_tok):
            m.d.sync += dr_wptr.eq(dr_wptr + 1)
        with m.If(dr_issue):
            m.d.sync += dr_k.eq(dr_k + 1)
            with m.If(dr_k + 1 == dr_count):
                m.d.sync += dr_issue.eq(0)
        with m.If(dr_left != 0):
            m.d.sync += dr_left.eq(dr_left - 1)
        dr_busy = Signal()
        dr_ready = Signal()
        m.d.comb += [dr_busy.eq(dr_left != 0), dr_ready.eq(dr_left <= 1)]

        # ============================ swap ==============================================
        c_ready = Signal()
        m.d.comb += c_ready.eq(~c_busy | c_last_slot)
        need_i = Signal()
        m.d.comb += need_i.eq(dw_valid & dw_first_in_block)
        swap = Signal()
        m.d.comb += swap.eq(running & ~starting & (dw_valid | dc_valid) & c_ready & wl_ready &
                            dr_ready & (~need_i | il_ready))
        finish = Signal()
        m.d.comb += finish.eq(running & ~starting & ~dw_valid & ~dc_valid & dr_ready &
                              ~c_busy & ~wl_busy & ~il_busy)

        def start_weight_loader(valid, kr_last, ke_last, wbase, pp, bp):
            m.d.sync += [wl_issue.eq(valid), wl_k.eq(0), wl_rel.eq(0), wl_off.eq(0),
                         wl_base.eq(wbase), wl_pp.eq(pp), wl_bp.eq(bp),
                         wl_rows.eq(Mux(kr_last, cfg.rows_last, Y)),
                         wl_cols.eq(Mux(ke_last, cfg.cols_last, X))]

        start_first, start_last, start_empty = tap_bounds("sf", dw_ws)
        with m.If(self.start):
            m.d.sync += [running.eq(1), starting.eq(1),
                         dw_valid.eq(1), dw_kr.eq(0), dw_ke.eq(0), dw_kf.eq(0), dw_g.eq(0),
                         dw_wbase_kr.eq(0), dw_wbase.eq(0), dw_pbase_ke.eq(0),
                         dw_pbase_kf.eq(0), dw_pbase_g.eq(0), dw_ws.eq(-cfg.P),
                         dw_pp.eq(0), dw_bp.eq(0),
                         dc_valid.eq(0), dd_valid.eq(0), c_busy.eq(0), il_first.eq(1)]
            m.d.sync += columns_from_init(0)
        with m.Elif(starting):
            # the pre-swap: first pass's weights and first block's inputs
            m.d.sync += starting.eq(0)
            start_weight_loader(1, dw_kr_last, dw_ke_last, dw_wbase, dw_pp, dw_bp)
            m.d.sync += il_phase.eq(1)
        with m.Elif(swap):
            # compute the pass whose weights are loaded
            m.d.sync += [dc_valid.eq(dw_valid), dc_kf_last.eq(dw_kf_last), dc_pp.eq(dw_pp),
                         dc_bp.eq(dw_bp), dc_ws.eq(dw_ws), dc_kr_first.eq(dw_kr == 0),
                         dc_ke_last.eq(dw_ke_last),
                         dc_pbase.eq(dw_pbase_ke + dw_pbase_kf + dw_pbase_g),
                         c_busy.eq(dw_valid), c_fi.eq(0), c_mi.eq(0), c_cq.eq(0),
                         c_s.eq(start_first), c_sfirst.eq(start_first),
                         c_slast.eq(start_last), c_empty.eq(start_empty), c_fb.eq(0),
                         c_kp.eq(0), c_fU.eq(0),
                         c_cqW.eq(0)]
            m.d.comb += [arr.c_start.eq(dw_valid), arr.c_start_pp.eq(dw_pp),
                         arr.c_start_bp.eq(dw_bp)]
            # drain the pass that just computed
            m.d.sync += [dd_valid.eq(dc_valid), dd_kf_last.eq(dc_kf_last), dd_pp.eq(dc_pp),
                         dd_kr_first.eq(dc_kr_first), dd_ke_last.eq(dc_ke_last),
                         dd_pbase.eq(dc_pbase)]
            dcount = upto(PS)
            m.d.comb += dcount.eq(Mux(dc_kf_last, cfg.Flastp, cfg.Fsegp))
            with m.If(dc_valid):
                m.d.sync += [dr_issue.eq(1), dr_k.eq(0), dr_count.eq(dcount),
                             dr_left.eq(dcount + Y + 1 + INPUT_LATENCY), dr_wptr.eq(dc_pbase),
                             dr_cols.eq(Mux(dc_ke_last, cfg.cols_last, X))]
            # load the weights of the pass after
            nx_kr_last = nx["kr"] + 1 == cfg.n_r
            nx_ke_last = nx["ke"] + 1 == cfg.n_v
            with m.If(dw_valid):
                start_weight_loader(nx["valid"], nx_kr_last, nx_ke_last, nx["wbase"], nx["pp"],
                                    nx["bp"])
                for name, sig in (("valid", dw_valid), ("kr", dw_kr), ("ke", dw_ke),
                                  ("kf", dw_kf), ("g", dw_g), ("wbase_kr", dw_wbase_kr),
                                  ("wbase", dw_wbase), ("pbase_ke", dw_pbase_ke),
                                  ("pbase_kf", dw_pbase_kf), ("pbase_g", dw_pbase_g),
                                  ("ws", dw_ws), ("pp", dw_pp), ("bp", dw_bp)):
                    m.d.sync += sig.eq(nx[name])
            # a block starts: load the next block's inputs, whose column set is written now
            # (the weight loader may need it from the next cycle on)
            with m.If(need_i & il_more):
                m.d.sync += il_phase.eq(1)
                nb = ~il_bp
                with m.If(il_kf_last & il_ke_last):
                    m.d.sync += columns_from_init(nb)
                with m.Elif(il_kf_last):
                    columns_advance(nb, il_bp)
                with m.Else():
                    m.d.sync += columns_copy(nb, il_bp)
        with m.Elif(finish):
            m.d.sync += running.eq(0)
        return m

