"""The network engine: a whole network on the chip, an image in and its scores out.

The engine holds a layer program (``hw.program``), every layer's weights and thresholds, and
one activation buffer; it runs the program's layers one after the other on the accelerator
core (``hw.core.AcceleratorCore``), and a post-processor (``hw.postproc.PostProcessor``)
turns each layer's sums into the next layer's activation words (thresholds, max-pool,
packing) or, for the last layer, passes the raw scores out.

Streams (``amaranth.lib.stream``, back-pressure everywhere):

1. ``program_stream``: a program's beats (``hw.program``: header, then each layer's fields).
   A program whose fingerprint or version is not this engine's is *refused*: its beats are
   taken and dropped, ``refused`` rises and no image runs until a good program arrives.
   An engine with a built-in program (``EngineConfig.builtin``) has no program memory: its
   descriptors are constants of the logic, and it refuses a program that differs from the
   built-in one in any beat.
2. ``weight_stream`` (after a good program): ``rows * bank_words`` weight words, bank by
   bank, then ``thr_entries`` threshold entries of ``threshold_entry_words`` words each.
3. ``input_stream`` (once programmed, per image): the image's ``input_words`` activation
   words, written from address 0; the layers then run.
4. ``output_stream``: the last layer's ``scores`` sums, in the array's output order
   (``sim.cycle_model.output_stream_order``).
5. ``counter_stream`` (after an image): per layer, the core's counters
   (``hw.schedule.COUNTERS``, restarted at each layer; only with ``EngineConfig.counters``),
   then the image's cycles
   (``image_cycles``: from the cycle after the last input word until the last layer is
   done, less the cycles in which a score waits for the host to take it); a new image
   restarts it.

A layer: its descriptor comes from the program memory into the layer register
(``layer_fields``, one field per cycle), the core's input loader walks its rows while the
post-processor fills its address tables, the core computes, the unloader streams its sums
with their coordinates into the post-processor, which writes the next layer's words into the
activation buffer (lane-granular, read-modify-write for pooling) or sends the scores out,
and the counters are saved.

Latency and throughput: per layer ``sim.cycle_model.predict`` for the compute phase, one
sum per cycle through the post-processor; ``hw.program`` models the rest.

Model: ``model.deploy.run_integer`` (scores, bit for bit) and ``sim.cycle_model.predict``
(each layer's counters).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.buffer import check_weight_ram
from hw.controller import config_layout
from hw.controller.fields import FieldLoader
from hw.controller.unload import Unloader
from hw.core import AcceleratorCore
from hw.postproc import PostConfig, PostProcessor, ThresholdEntry
from hw.program import (HEADER_FIELDS, POST_PREFIX, PROGRAM_VERSION, EngineConfig,
                        decode_program, engine_fingerprint, layer_fields, program_beat_bits,
                        threshold_entry_words)
from hw.schedule import CONFIG_FIELDS, COUNTERS

__all__ = ["NetworkEngine"]


def _layer_layout(engine: EngineConfig) -> data.StructLayout:
    return data.StructLayout({name: (signed(w) if s else w)
                              for name, (w, s) in layer_fields(engine).items()})


class NetworkEngine(wiring.Component):
    """The network engine (see the module docstring).

    Members
    -------
    program_stream : In(stream.Signature(program_beat_bits))
    weight_stream : In(stream.Signature(w_word_bits))
    input_stream : In(stream.Signature(a_word_bits))
    output_stream : Out(stream.Signature(signed(acc_bits)))
    counter_stream : Out(stream.Signature(counter_bits))
    programmed : Out(1)
        A good program, its weights and thresholds are in.
    refused : Out(1)
        The last program was refused (fingerprint or version).
    busy : Out(1)
        An image is running.
    """

    def __init__(self, engine: EngineConfig, *, weight_ram: str = "memory"):
        if not isinstance(engine, EngineConfig):
            raise TypeError(f"engine must be an EngineConfig, not {engine!r}")
        check_weight_ram(weight_ram, engine.accelerator.wb_depth)
        self._weight_ram = weight_ram
        self._engine = e = engine
        a = e.accelerator
        super().__init__({
            "program_stream": In(stream.Signature(program_beat_bits(e))),
            "weight_stream": In(stream.Signature(a.w_word_bits)),
            "input_stream": In(stream.Signature(a.a_word_bits)),
            "output_stream": Out(stream.Signature(signed(a.acc_bits))),
            "counter_stream": Out(stream.Signature(a.counter_bits)),
            "programmed": Out(1), "refused": Out(1), "busy": Out(1),
        })

    @property
    def engine(self) -> EngineConfig:
        return self._engine

    def elaborate(self, platform):
        m = Module()
        e = self._engine
        a, pp = e.accelerator, e.post
        Y = a.rows
        fields = layer_fields(e)
        n_header, n_layer = len(HEADER_FIELDS), len(fields)

        core = m.submodules.core = AcceleratorCore(a, weight_ram=self._weight_ram)
        unload = m.submodules.unloader = Unloader(a)
        post = m.submodules.post = PostProcessor(pp)
        wiring.connect(m, unload.psums, core.psums)
        layer = Signal(range(e.max_layers + 1))           # the image's layer
        d_valid = Signal()                                # a descriptor beat for the register

        # the layer's descriptor (``layer_fields``), seen as the core's and the
        # post-processor's configurations: a register loaded from the program memory, or
        # with a built-in program a constant per layer
        if e.builtin is None:
            desc = m.submodules.descriptor = FieldLoader(_layer_layout(e), program_beat_bits(e))
            fields, desc_done = desc.fields, desc.done
        else:
            fields = Signal(_layer_layout(e))
            builtin_header, descriptors = decode_program(e, e.builtin)
            _constant_per_layer(m, fields, layer, descriptors)
            desc_done = d_valid
        cfg = Signal(config_layout(a))
        pcfg = Signal(PostConfig(pp))
        for name in CONFIG_FIELDS:
            m.d.comb += getattr(cfg, name).eq(getattr(fields, name))
        for name, _ in PostConfig(pp):
            m.d.comb += Value.cast(getattr(pcfg, name)).eq(
                Value.cast(getattr(fields, POST_PREFIX + name)))
        m.d.comb += [core.cfg.eq(cfg), unload.cfg.eq(cfg), post.config.eq(pcfg)]

        # ---- the program memory (or the built-in program) and the header ------------------
        if e.builtin is None:
            prog = m.submodules.program = Memory(shape=program_beat_bits(e),
                                                 depth=e.program_depth, init=[])
            pw, pr = prog.write_port(), prog.read_port()
        else:
            prog = m.submodules.program = Memory(shape=program_beat_bits(e),
                                                 depth=e.program_depth, init=e.builtin)
            pr = prog.read_port()
        p_in = self.program_stream
        beat_k = Signal(range(e.program_depth + 1))       # beats of this program so far
        l_k = Signal(range(n_layer))                      # beat within a layer's descriptor
        header = {name: Signal(program_beat_bits(e), name=f"h_{name}")
                  for name in HEADER_FIELDS if name not in ("fingerprint", "version")}
        # what the engine runs: the loaded header, or the built-in one
        run = (header if e.builtin is None else
               {name: Const(value, program_beat_bits(e))
                for name, value in builtin_header.items()})
        l_n = Signal(len(header["layers"]))               # descriptors so far
        good = Signal()              # fingerprint and version match so far
        programmed, refused = Signal(), Signal()
        m.d.comb += [self.programmed.eq(programmed), self.refused.eq(refused)]

        # ---- the activation buffer: image words, the core's reads, the post-processor's ---
        act = m.submodules.activations = Memory(shape=a.a_word_bits, depth=a.in_depth, init=[])
        aw = act.write_port(granularity=pp.granularity)
        ar = act.read_port()
        all_lanes = (1 << len(aw.en)) - 1

        # ---- the counter memory: each layer's counters (``e.counters``), the image's cycles
        n_counts = e.n_counter_words(e.max_layers)
        cmem = m.submodules.counters = Memory(shape=a.counter_bits, depth=n_counts, init=[])
        cw, cr = cmem.write_port(), cmem.read_port()

        # ---- weights and thresholds -------------------------------------------------------
        wk = Signal(range(a.wb_depth + 1))
        wbank = Signal(range(Y))
        t_words = threshold_entry_words(e)
        entry_bits = ThresholdEntry(pp).size
        t_k = Signal(range(max(2, t_words)))
        t_entry = Signal(range(max(2, pp.thr_depth + 1)))
        t_acc = Signal(max(1, (t_words - 1) * a.w_word_bits))
        m.d.comb += [core.weights.addr.eq(wk), core.weights.data.eq(self.weight_stream.payload),
                     post.thr_write.addr.eq(t_entry)]
        if t_words > 1:
            m.d.comb += post.thr_write.data.as_value().eq(
                Cat(t_acc, self.weight_stream.payload)[:entry_bits])
        else:
            m.d.comb += post.thr_write.data.as_value().eq(self.weight_stream.payload[:entry_bits])

        # ---- the image and the layers -----------------------------------------------------
        i_k = Signal(range(a.in_depth + 1))
        last_layer = Signal()
        m.d.comb += last_layer.eq(layer + 1 == run["layers"])
        d_k = Signal(range(n_layer + 1))                  # descriptor beats read
        d_base = Signal(range(e.program_depth + 1))       # the layer's first beat
        save_k = Signal(range(len(COUNTERS) + 1))
        save_base = Signal(range(n_counts + 1))
        image_cycles = Signal(a.counter_bits)
        counting = Signal()
        # the engine's own cycles: not those in which a score waits for the host to take it
        waiting = self.output_stream.valid & ~self.output_stream.ready
        with m.If(counting & ~waiting):
            m.d.sync += image_cycles.eq(image_cycles + 1)

        # descriptor beats from the program memory into the layer register (one per cycle)
        if e.builtin is None:
            m.d.comb += [desc.i_stream.payload.eq(pr.data), desc.i_stream.valid.eq(d_valid),
                         desc.enable.eq(1)]
        m.d.sync += d_valid.eq(0)

        # unloader -> post-processor; scores out
        el, pe = unload.o_stream.payload, post.i_stream.payload
        m.d.comb += [pe.acc.eq(el.acc), pe.m.eq(el.m), pe.e.eq(el.e), pe.f.eq(el.f),
                     post.i_stream.valid.eq(unload.o_stream.valid),
                     unload.o_stream.ready.eq(post.i_stream.ready),
                     self.output_stream.payload.eq(post.o_stream.payload.acc),
                     self.output_stream.valid.eq(post.o_stream.valid),
                     post.o_stream.ready.eq(self.output_stream.ready)]

        # who uses the activation buffer: the image (writes), the core (reads, computing),
        # the post-processor (reads and writes, unloading)
        computing = Signal()
        m.d.comb += [ar.en.eq(Mux(computing, core.inputs.en[0], post.dst_read.en)),
                     ar.addr.eq(Mux(computing, core.inputs.addr, post.dst_read.addr)),
                     core.inputs.data[0].eq(ar.data), post.dst_read.data.eq(ar.data)]
        image_write = Signal()
        m.d.comb += [aw.en.eq(Mux(image_write, all_lanes, post.dst_write.en)),
                     aw.addr.eq(Mux(image_write, i_k, post.dst_write.addr)),
                     aw.data.eq(Mux(image_write, self.input_stream.payload,
                                    post.dst_write.data))]

        # counters: the post-processor's buffer traffic and the scores words, per layer
        def moved(s):
            return s.valid & s.ready
        m.d.comb += [core.ext.glb_reads.eq(post.dst_read.en),
                     core.ext.glb_writes.eq(post.dst_write.en.any()),
                     core.ext.offchip_words.eq(moved(self.output_stream))]

        # saving the counters: word save_k of the layer's block
        counters = core.counters
        cvals = [getattr(counters, name) for name in COUNTERS]
        if e.counters:
            m.d.comb += [cw.addr.eq(save_base + save_k),
                         cw.data.eq(Mux(save_k == len(COUNTERS), image_cycles,
                                        _select(save_k, cvals)))]
        else:           # the image's cycles alone (the core's counters are left unread)
            m.d.comb += [cw.addr.eq(0), cw.data.eq(image_cycles)]

        # the counter stream: after an image, its layers' counters and its cycles
        c_rp = Signal(range(n_counts + 1))
        c_total = Signal(range(n_counts + 1))
        c_avail = Signal()
        cs = self.counter_stream
        c_issue = Signal()
        m.d.comb += [c_issue.eq(c_avail & (c_rp != c_total) & (~cs.valid | cs.ready)),
                     cr.en.eq(c_issue), cr.addr.eq(c_rp), cs.payload.eq(cr.data)]
        with m.If(c_issue):
            m.d.sync += [c_rp.eq(c_rp + 1), cs.valid.eq(1)]
        with m.Elif(cs.ready):
            m.d.sync += cs.valid.eq(0)

        fingerprint = engine_fingerprint(e)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [p_in.ready.eq(1), self.input_stream.ready.eq(programmed)]
                m.d.sync += i_k.eq(0)
                with m.If(p_in.valid):
                    m.d.sync += [programmed.eq(0), refused.eq(0), good.eq(
                        p_in.payload[:16] == fingerprint), beat_k.eq(1)]
                    if e.builtin is None:
                        m.d.comb += [pw.en.eq(1), pw.addr.eq(0), pw.data.eq(p_in.payload)]
                    else:       # the built-in program's next beat, to compare
                        m.d.comb += [pr.en.eq(1), pr.addr.eq(1)]
                    m.next = "PROGRAM"
                with m.Elif(self.input_stream.valid & programmed):
                    m.d.comb += image_write.eq(1)
                    m.d.sync += [i_k.eq(1), c_avail.eq(0), c_rp.eq(0), cs.valid.eq(0)]
                    with m.If(run["input_words"] == 1):
                        m.next = "LAYER"
                    with m.Else():
                        m.next = "IMAGE"
            with m.State("PROGRAM"):
                m.d.comb += p_in.ready.eq(1)
                beat_ok = Signal()       # this beat keeps the program good
                if e.builtin is None:
                    m.d.comb += [pw.addr.eq(beat_k), pw.data.eq(p_in.payload), beat_ok.eq(1)]
                else:
                    # ``pr.data`` is the built-in beat ``beat_k``: a beat that differs, or one
                    # beyond the built-in program, refuses the program
                    m.d.comb += [pr.en.eq(1), pr.addr.eq(beat_k + p_in.valid),
                                 beat_ok.eq((beat_k < e.program_depth) &
                                            (p_in.payload == pr.data))]
                with m.If(p_in.valid):
                    m.d.sync += good.eq(good & beat_ok)
                    # a program longer than the memory (too many layers) is taken to its end,
                    # unwritten beyond the memory, and refused
                    if e.builtin is None:
                        m.d.comb += pw.en.eq(beat_k < e.program_depth)
                    with m.If(beat_k < e.program_depth):
                        m.d.sync += beat_k.eq(beat_k + 1)
                    done = Signal()
                    with m.If(beat_k < n_header):
                        for index, name in enumerate(HEADER_FIELDS):
                            with m.If(beat_k == index):
                                if name == "version":
                                    m.d.sync += good.eq(good & beat_ok &
                                                        (p_in.payload == PROGRAM_VERSION))
                                elif name in header:
                                    m.d.sync += header[name].eq(p_in.payload)
                        m.d.sync += [l_k.eq(0), l_n.eq(0)]
                        # the header's last beat: a program of no layer ends here; one of too
                        # many layers is refused after its last beat
                        layers_ok = (header["layers"] != 0) & (header["layers"] <= e.max_layers)
                        m.d.comb += done.eq((beat_k == n_header - 1) & (header["layers"] == 0))
                        with m.If(beat_k == n_header - 1):
                            m.d.sync += good.eq(good & beat_ok & layers_ok)
                    with m.Else():
                        m.d.sync += l_k.eq(l_k + 1)
                        with m.If(l_k == n_layer - 1):
                            m.d.sync += [l_k.eq(0), l_n.eq(l_n + 1)]
                            m.d.comb += done.eq(l_n + 1 == header["layers"])
                    with m.If(done):
                        with m.If(good & beat_ok & (beat_k >= n_header)):
                            m.d.sync += [wk.eq(0), wbank.eq(0), t_k.eq(0), t_entry.eq(0)]
                            m.next = "WEIGHTS"
                        with m.Else():
                            m.d.sync += refused.eq(1)
                            m.next = "IDLE"
            with m.State("WEIGHTS"):
                m.d.comb += self.weight_stream.ready.eq(1)
                with m.If(self.weight_stream.valid):
                    m.d.comb += core.weights.en.eq(1 << wbank)
                    m.d.sync += wk.eq(wk + 1)
                    with m.If(wk + 1 == run["bank_words"]):
                        m.d.sync += [wk.eq(0), wbank.eq(wbank + 1)]
                        with m.If(wbank == Y - 1):
                            m.next = "THRESHOLDS"
                with m.If(run["bank_words"] == 0):
                    m.next = "THRESHOLDS"
            with m.State("THRESHOLDS"):
                with m.If(t_entry == run["thr_entries"]):
                    m.d.sync += programmed.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.weight_stream.ready.eq(1)
                    with m.If(self.weight_stream.valid):
                        m.d.sync += t_k.eq(t_k + 1)
                        if t_words > 1:
                            m.d.sync += t_acc.eq(Cat(t_acc, self.weight_stream.payload)
                                                 [a.w_word_bits:])
                        with m.If(t_k == t_words - 1):
                            m.d.comb += post.thr_write.en.eq(1)
                            m.d.sync += [t_k.eq(0), t_entry.eq(t_entry + 1)]
            with m.State("IMAGE"):
                m.d.comb += self.input_stream.ready.eq(1)
                with m.If(self.input_stream.valid):
                    m.d.comb += image_write.eq(1)
                    m.d.sync += i_k.eq(i_k + 1)
                    with m.If(i_k + 1 == run["input_words"]):
                        m.next = "LAYER"
            with m.State("LAYER"):      # the first layer of an image
                m.d.sync += [layer.eq(0), d_base.eq(n_header), save_base.eq(0),
                             image_cycles.eq(0), counting.eq(1), d_k.eq(0)]
                m.next = "DESCRIPTOR"
            with m.State("DESCRIPTOR"):  # one beat per cycle into the layer register
                m.d.comb += self.busy.eq(1)
                if e.builtin is None:
                    m.d.comb += [pr.en.eq(1), pr.addr.eq(d_base + d_k)]
                m.d.sync += [d_k.eq(d_k + 1), d_valid.eq(1)]
                with m.If(d_k == n_layer - 1):
                    m.next = "LOADED"
            with m.State("LOADED"):      # the last beat reaches the register
                m.d.comb += self.busy.eq(1)
                with m.If(desc_done):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.busy.eq(1), core.init.eq(1), post.start.eq(1),
                             core.clear.eq(1)]
                m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~core.initialising & ~post.busy):
                    m.d.comb += [core.start.eq(1), computing.eq(1)]
                    m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.comb += [self.busy.eq(1), computing.eq(1)]
                with m.If(~core.running):
                    m.d.comb += unload.start.eq(1)
                    m.next = "UNLOAD"
            with m.State("UNLOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(~unload.busy & ~post.busy):
                    m.d.sync += save_k.eq(0)
                    m.next = "SAVE"
            with m.State("SAVE"):       # as long with or without counters
                m.d.comb += [self.busy.eq(1), cw.en.eq(e.counters)]
                m.d.sync += save_k.eq(save_k + 1)
                with m.If(save_k == len(COUNTERS) - 1):
                    with m.If(last_layer):
                        m.d.sync += counting.eq(0)
                        m.next = "CYCLES"
                    with m.Else():
                        m.d.sync += [layer.eq(layer + 1), d_base.eq(d_base + n_layer), d_k.eq(0)]
                        if e.counters:
                            m.d.sync += save_base.eq(save_base + len(COUNTERS))
                        m.next = "DESCRIPTOR"
            with m.State("CYCLES"):      # the image's cycles after its layers' counters
                m.d.comb += [self.busy.eq(1), cw.en.eq(1)]
                m.d.sync += [c_total.eq(save_base + len(COUNTERS) + 1 if e.counters else 1),
                             c_avail.eq(1), c_rp.eq(0)]
                m.next = "IDLE"
        return m


def _constant_per_layer(m: Module, fields, layer, descriptors: list[dict]) -> None:
    """Drive ``fields`` with descriptor ``layer`` of ``descriptors`` (constants): a field the
    same in every layer is a constant, any other a small table indexed by ``layer``."""
    for name, _ in fields.shape():
        field = Value.cast(getattr(fields, name))
        values = [d[name] for d in descriptors]
        if len(set(values)) == 1:
            m.d.comb += field.eq(values[0])
            continue
        with m.Switch(layer):
            for k, value in enumerate(values):
                with m.Case(k):
                    m.d.comb += field.eq(value)


def _select(index, values):
    """``values[index]`` as a mux tree (index beyond the list: the last value)."""
    out = values[-1]
    for k in range(len(values) - 2, -1, -1):
        out = Mux(index == k, values[k], out)
    return out
