"""The compute sequencer: one dot per period into row 0, each row one period behind the row above.

A *period* is ``d = q * S`` cycles: the slots of one dot (channel word ``cq``, tap ``s``).
At the last cycle of each period (and, before the first dot, in every cycle) the sequencer
*decides*: row 0 takes the next dot if it is ready, an empty period otherwise, and every
other row takes the dot of the row above (``shift``). The next dot is ready when

- its pass's weights are written (``weights.done`` passes) and its block's inputs
  (``inputs.done`` blocks), and
- in a row fold after the first, the old partial sum it starts from has been written:
  ``psums.done + fold_dots > g`` for its dot index ``g``.

Dots go in loop order: row fold ``kr``, column fold ``kv``, segment ``kf``, filter group
``g`` (a pass), output column ``fi``, filter ``mi``. Each row's *dot state*
(``interfaces.dot_state_layout``) and the shared counters ``s``, ``cq`` of the period give
the row's slot (``RowSlots``): filter scratchpad word ``fb + cq * S + s`` of bank ``pp``,
input scratchpad word ``fu + cq * Wseg + s`` of bank ``bp``, valid when the dot is real, the
row holds a reduction unit in this block and the tap ``fu + s - P + ws`` is inside the image.

``running`` rises the cycle after ``start`` and falls the cycle after the last dot's psum is
written (``psums.done == n_dots``). The loaders read ``status``: how many passes and blocks
row 0 has entered and which banks a row still reads.

Latency: a dot issued in a decision cycle ``t`` runs in row ``i`` during ``[t + 1 + i * d,
t + (i + 1) * d]``. Throughput: one dot per period (``rows * cols * lanes`` MACs per cycle).

Model: ``sim.cycle_model`` (``_schedule``: the dots' periods).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.array import RowSlots
from hw.controller.interfaces import (DotEvents, Limits, Progress, RowFlags, SequencerStatus,
                                      config_layout, dot_state_layout)
from hw.schedule import AcceleratorConfig

__all__ = ["ComputeSequencer"]


def _upto(n, name=None):
    return Signal(range(n + 1), name=name)


def _below(n, name=None):
    return Signal(range(max(2, n)), name=name)


class ComputeSequencer(wiring.Component):
    """The compute sequencer (see the module docstring).

    Members
    -------
    cfg : In(config_layout)
        The layer's configuration (stable while running).
    start : In(1)
        Strobe: run the layer from its first dot.
    running : Out(1)
    status : Out(SequencerStatus)
        For the loaders.
    weights, inputs, psums : In(Progress)
        Passes whose weights are written, blocks whose inputs are written, dots whose
        psums are written.
    flags : In(RowFlags)
        Per row and input bank, from the input loader.
    events : Out(DotEvents)
        Period boundaries, for the psum unit.
    slots : Out(RowSlots)
        The rows' slots, for the array.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._lim = lim = Limits(config)
        super().__init__({
            "cfg": In(config_layout(config)), "start": In(1), "running": Out(1),
            "status": Out(SequencerStatus(lim["n_passes"], lim["n_blocks"])),
            "weights": In(Progress(lim["n_passes"])), "inputs": In(Progress(lim["n_blocks"])),
            "psums": In(Progress(lim["n_dots"])), "flags": In(RowFlags(config.rows)),
            "events": Out(DotEvents(config)),
            "slots": Out(RowSlots(rows=config.rows, lanes=config.lanes,
                                  filter_spad=config.filter_spad,
                                  ifmap_spad=config.ifmap_spad)),
        })

    def elaborate(self, platform):
        m = Module()
        c, lim, cfg = self._config, self._lim, self.cfg
        Y, FS, IS = c.rows, c.filter_spad, c.ifmap_spad
        state = dot_state_layout(c)
        fs_bits, is_bits = (FS - 1).bit_length(), (IS - 1).bit_length()
        running = self.running

        # ---- the period: tap s, channel word cq, slot j = cq * S + s, cq * Wseg ----------
        started = Signal()
        s, cq, j = _below(lim["S"], "s"), _below(FS, "cq"), _below(FS, "j")
        cqw = _below(IS, "cqw")
        period_end = Signal()
        m.d.comb += period_end.eq((s == cfg.S - 1) & (cq == cfg.q - 1))
        decide = Signal()
        m.d.comb += decide.eq(running & (~started | period_end))

        # ---- the next dot (row 0's iterator) ---------------------------------------------
        kr, kv = _below(lim["n_r"], "kr"), _below(lim["n_v"], "kv")
        kf, g = _below(lim["n_f"], "kf"), _below(lim["Gi"], "g")
        fi, mi = _below(lim["Fseg"], "fi"), _below(FS, "mi")
        fb, fu = _below(FS, "fb"), _upto(lim["FsegU"], "fu")
        ws_bits = (lim["W"] + 2 * lim["P"] + lim["FsegU"] + lim["S"]).bit_length() + 1
        ws = Signal(signed(ws_bits), name="ws")
        pb_kv, pb_g, pb_kf, k = (_below(c.pb_depth, n) for n in ("pb_kv", "pb_g", "pb_kf", "k"))
        n_pass, n_block = _upto(lim["n_passes"], "n_pass"), _upto(lim["n_blocks"], "n_block")
        gdot = _upto(lim["n_dots"], "gdot")
        pp, bp, more = Signal(name="pp"), Signal(name="bp"), Signal(name="more")
        f_v = _upto(lim["Fseg"], "f_v")
        m.d.comb += f_v.eq(Mux(kf == cfg.n_f - 1, cfg.F_last, cfg.Fseg))
        # taps of the next dot's window inside the image: [lo, hi]
        w0, room = Signal(signed(ws_bits + 1)), Signal(signed(ws_bits + 2))
        m.d.comb += [w0.eq(ws + fu), room.eq(cfg.W - 1 - w0)]
        new = Signal(state)
        m.d.comb += [
            new.valid.eq(1), new.pp.eq(pp), new.bp.eq(bp), new.fb.eq(fb), new.fu.eq(fu),
            new.lo.eq(Mux(w0 < 0, -w0, 0)),
            new.hi.eq(Mux(room < cfg.S - 1, room, cfg.S - 1)),
            new.empty.eq((room < 0) | (w0 + cfg.S <= 0)),
            new.paddr.eq(pb_kv + pb_g + pb_kf + k),
            new.kr_first.eq(kr == 0), new.kv_last.eq(kv == cfg.n_v - 1),
        ]
        ready = Signal()
        m.d.comb += ready.eq(more & (n_pass < self.weights.done) & (n_block < self.inputs.done)
                             & ((kr == 0) | (self.psums.done + cfg.fold_dots > gdot)))
        issue = Signal()
        m.d.comb += issue.eq(decide & ready)
        shift = Signal()
        m.d.comb += shift.eq(decide & (started | ready))

        # ---- the rows' dot states ---------------------------------------------------------
        rows = [Signal(state, name=f"row{i}") for i in range(Y)]
        leaving = Signal(state, name="leaving")
        entering = Signal(state)
        m.d.comb += entering.eq(Mux(issue, new, 0))
        with m.If(shift):
            m.d.sync += [rows[0].eq(entering), leaving.eq(rows[Y - 1])]
            m.d.sync += [rows[i].eq(rows[i - 1]) for i in range(1, Y)]
        m.d.comb += [self.events.shift.eq(shift), self.events.new.eq(entering),
                     self.events.leaving.eq(rows[Y - 1])]

        # ---- start, finish, period counters ----------------------------------------------
        passes_entered = self.status.passes_entered
        blocks_entered = self.status.blocks_entered
        with m.If(self.start):
            m.d.sync += [running.eq(1), started.eq(0), more.eq(1),
                         kr.eq(0), kv.eq(0), kf.eq(0), g.eq(0), fi.eq(0), mi.eq(0), fb.eq(0),
                         fu.eq(0), ws.eq(-cfg.P), pb_kv.eq(0), pb_g.eq(0), pb_kf.eq(0),
                         k.eq(0), n_pass.eq(0), n_block.eq(0), gdot.eq(0), pp.eq(0), bp.eq(0),
                         passes_entered.eq(0), blocks_entered.eq(0), leaving.eq(0)]
            m.d.sync += [r.eq(0) for r in rows]
        with m.Elif(running & started & (self.psums.done == cfg.n_dots)):
            m.d.sync += running.eq(0)
        with m.If(shift):
            m.d.sync += [s.eq(0), cq.eq(0), j.eq(0), cqw.eq(0), started.eq(1)]
        with m.Elif(started):
            m.d.sync += [s.eq(s + 1), j.eq(j + 1)]
            with m.If(s == cfg.S - 1):
                m.d.sync += [s.eq(0), cq.eq(cq + 1), cqw.eq(cqw + cfg.Wseg)]

        # ---- advance the iterator on issue --------------------------------------------------
        with m.If(issue):
            m.d.sync += [gdot.eq(gdot + 1), k.eq(k + 1), mi.eq(mi + 1), fb.eq(fb + cfg.qS)]
            with m.If((fi == 0) & (mi == 0)):
                m.d.sync += passes_entered.eq(n_pass + 1)
                with m.If(g == 0):
                    m.d.sync += blocks_entered.eq(n_block + 1)
            with m.If(mi == cfg.p - 1):
                m.d.sync += [mi.eq(0), fb.eq(0), fi.eq(fi + 1), fu.eq(fu + cfg.U)]
                with m.If(fi == f_v - 1):
                    m.d.sync += [fi.eq(0), fu.eq(0), k.eq(0), n_pass.eq(n_pass + 1),
                                 pp.eq(~pp), g.eq(g + 1), pb_g.eq(pb_g + cfg.Fp)]
                    with m.If(g == cfg.Gi - 1):
                        m.d.sync += [g.eq(0), pb_g.eq(0), n_block.eq(n_block + 1),
                                     bp.eq(~bp), kf.eq(kf + 1), ws.eq(ws + cfg.FsegU),
                                     pb_kf.eq(pb_kf + cfg.Fsegp)]
                        with m.If(kf == cfg.n_f - 1):
                            m.d.sync += [kf.eq(0), ws.eq(-cfg.P), pb_kf.eq(0), kv.eq(kv + 1),
                                         pb_kv.eq(pb_kv + cfg.GiFp)]
                            with m.If(kv == cfg.n_v - 1):
                                m.d.sync += [kv.eq(0), pb_kv.eq(0), kr.eq(kr + 1)]
                                with m.If(kr == cfg.n_r - 1):
                                    m.d.sync += more.eq(0)

        # ---- the rows' slots ---------------------------------------------------------------
        slot_layout = self.slots.slots.shape().elem_shape
        off_i = Signal(range(IS + lim["S"] + 1))
        m.d.comb += off_i.eq(cqw + s)
        last_cq = Signal()
        m.d.comb += last_cq.eq(cq == cfg.q - 1)
        for i, st in enumerate(rows):
            slot = Signal(slot_layout, name=f"slot{i}")
            faddr = Signal(range(2 * FS + 1), name=f"faddr{i}")
            iaddr = Signal(range(2 * IS + lim["FsegU"] + lim["S"] + 1), name=f"iaddr{i}")
            used = Mux(st.bp, self.flags.used[i][1], self.flags.used[i][0])
            last_cg = Mux(st.bp, self.flags.last_cg[i][1], self.flags.last_cg[i][0])
            m.d.comb += [
                faddr.eq(st.fb + j), iaddr.eq(st.fu + off_i),
                slot.faddr.eq(Cat(faddr[:fs_bits], st.pp)),
                slot.iaddr.eq(Cat(iaddr[:is_bits], st.bp)),
                slot.valid.eq(st.valid & used & ~st.empty & (s >= st.lo) & (s <= st.hi)),
                slot.first.eq(st.valid & (j == 0)),
                slot.bp.eq(st.bp),
                slot.last_word.eq(last_cg & last_cq),
                self.slots.slots[i].eq(slot),
            ]
        m.d.comb += self.slots.n_last.eq(cfg.n_last)

        # ---- status for the loaders ----------------------------------------------------------
        st = self.status
        m.d.comb += st.running.eq(running)
        for b in range(2):
            m.d.comb += [
                st.filter_bank_busy[b].eq(Cat(*(r.valid & (r.pp == b) for r in rows)).any()),
                st.input_bank_busy[b].eq(Cat(*(r.valid & (r.bp == b) for r in rows)).any()),
            ]
        return m
