"""Run layers on the simulated accelerator: Amaranth's simulator, Verilator or Icarus.

Every backend takes the same *jobs* (``plan``: the configuration beats, the weight and
input stream words, the number of outputs) on an accelerator (``accelerator_config``: one
``hw.schedule.AcceleratorConfig`` sized for the layers) and returns the output stream words
and the counters; ``run_layers`` turns them back into [M, E, F] sums and adds the derived
counters (``hw.schedule.derived_counters``). A new backend (a board) is a class with
``run(config, jobs, progress) -> list[(words, counters)]`` added to ``BACKENDS``. Before
anything runs, ``check_job`` refuses a layer that the accelerator cannot hold: a
configuration field over its limit (``hw.schedule.config_limits``) or a predicted counter
over ``counter_bits``.

Words: a layer's channels are packed ``lanes`` to a word (``pack_lanes``), the last word's
extra lanes holding zero codes; an ``xnor`` layer file's packed words are unpacked into one
1-bit code per channel first (``layer_codes``), so any ``lanes`` runs it.

- ``amaranth``: ``amaranth.sim`` in this process (a tqdm bar over the predicted cycles when
  ``progress`` is set);
- ``verilator`` / ``icarus``: the Verilog of the same accelerator (``amaranth.back.verilog``)
  under cocotb (``sim/tb/test_accelerator.py``), built in a temporary folder.

Several layers can share one accelerator (sized for the largest) and one simulation. Layers
of different schemes, widths or codebooks share it too: the accelerator then has one mode
(``hw.schedule.Datapath``) per kind of layer (``layer_modes``) and each layer runs in its own
mode (configuration field ``mode``) with that mode's lanes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from hw.schedule import (COUNTERS, LANES, AcceleratorConfig, Datapath, config_limits,
                         derived_counters)
from model.layer_file import Layer
from model.ops import accumulator_width
from model.quant import to_unsigned_bits, unpack_pm1, weight_code_range
from sim.cycle_model import (ArrayParams, LayerShape, Mapping, check_mappable, choose_mapping,
                             config_values, layer_words, memory_depths, output_stream_order,
                             predict, weight_word_order)

__all__ = ["Job", "LayerRun", "plan", "accelerator_config", "build_accelerator",
           "run_layers", "run_layer", "BACKENDS", "config_beats", "check_job",
           "counter_bits_needed", "layer_codes", "layer_shape", "pack_lanes", "lanes_for_words",
           "layer_key", "layer_modes", "mode_params", "pack_groups"]


@dataclasses.dataclass
class Job:
    """One layer as stream words for the accelerator."""

    config: list[int]          # one beat per field, ``hw.schedule.CONFIG_FIELDS`` order
    weights: list[int]
    inputs: list[int]
    n_outputs: int
    predicted_cycles: int
    counter_peak: int = 0      # the largest counter ``sim.cycle_model.predict`` gives
    n_last: int = 1            # real lanes of the last channel word (for derived counters)
    lanes: int = 1             # lanes of the layer's mode (for derived counters)


@dataclasses.dataclass
class LayerRun:
    """What running one layer gave: exact sums [M, E, F], counters, mapping."""

    outputs: np.ndarray
    counters: dict
    mapping: Mapping
    params: ArrayParams


def config_beats(values: dict) -> list[int]:
    """The configuration as ``config_stream`` beats: one field per beat, in the order of
    ``hw.schedule.CONFIG_FIELDS``."""
    from hw.schedule import CONFIG_FIELDS
    return [int(values[name]) for name in CONFIG_FIELDS]


def counter_bits_needed(jobs: list[Job]) -> int:
    """The narrowest counters (at least 8 bits) that hold every count of ``jobs``."""
    return max(8, *(job.counter_peak.bit_length() for job in jobs))


def check_job(config: AcceleratorConfig, job: Job, what: str = "the layer") -> None:
    """``ValueError`` (one line: the field or counter, its value and the limit) if the
    accelerator ``config`` cannot run ``job`` exactly."""
    from hw.schedule import CONFIG_FIELDS
    limits = config_limits(config)
    for name, value in zip(CONFIG_FIELDS, job.config):
        if value > limits[name]:
            raise ValueError(f"{what} does not fit the accelerator: configuration field "
                             f"{name} ({CONFIG_FIELDS[name]}) = {value}; allowed: at most "
                             f"{limits[name]}")
    bits = config.counter_bits
    if job.counter_peak >= 1 << bits:
        raise ValueError(f"{what} does not fit the accelerator: a counter would reach "
                         f"{job.counter_peak}; allowed: below 2**{bits} (counter_bits {bits})")


def layer_codes(layer: Layer) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(weights [M, C, R, S], inputs [C, H, W], a_bits, w_bits)`` with one code per channel
    and lane: an ``xnor`` layer's packed words are unpacked into 1-bit codes (1 means -1)."""
    if layer.scheme != "xnor":
        return layer.weights, layer.inputs, layer.a_bits, layer.w_bits
    lanes = layer.a_bits
    w = (unpack_pm1(layer.weights, lanes) < 0).astype(np.int64)      # [M, Cw, R, S, lanes]
    w = np.moveaxis(w, -1, 2).reshape(w.shape[0], -1, w.shape[2], w.shape[3])
    a = (unpack_pm1(layer.inputs, lanes) < 0).astype(np.int64)       # [Cw, H, W, lanes]
    a = np.moveaxis(a, -1, 1).reshape(-1, a.shape[1], a.shape[2])
    return w, a, 1, 1


def layer_shape(layer: Layer) -> LayerShape:
    """The layer's shape in channels (an ``xnor`` file's words unpacked)."""
    w, a, _, _ = layer_codes(layer)
    return LayerShape.of(w.shape, a.shape, layer.stride, layer.padding, layer.groups)


def pack_groups(layer: Layer, k: int) -> Layer:
    """``layer`` with ``k`` of its groups side by side (``sim.cycle_model.packed_shape``):
    ``groups / k`` groups, each filter's weights its own group's on its own channels and zero
    codes on the other ``k - 1`` groups' channels (block-diagonal). The outputs are the same
    (a zero weight adds nothing); on PEs of ``lanes`` lanes the ``k`` groups share each word
    (``sim.cycle_model.lane_packing``). The scheme needs a zero weight level (``ternary``,
    ``pow2``, ``int``, a ``dorefa`` codebook holding 0): ``ValueError`` otherwise."""
    from model.quant import weight_level
    from sim.cycle_model import packed_shape
    packed_shape(layer_shape(layer), k)                      # validates k
    if k == 1:
        return layer
    w_lo, w_hi = weight_code_range(layer.scheme, layer.w_bits)
    codes = np.arange(w_lo, w_hi + 1)
    if layer.scheme == "xnor":
        zero = np.array([], dtype=np.int64)
    elif layer.codebook is not None:
        zero = codes[np.asarray(layer.codebook)[codes - w_lo] == 0]
    else:
        zero = codes[weight_level(layer.scheme, codes, layer.w_bits) == 0]
    if not len(zero):
        raise ValueError(f"{layer.scheme} weights have no zero level to put beside another "
                         f"group's; allowed: ternary, pow2, int, or a codebook holding 0")
    M, c, R, S = layer.weights.shape
    m = M // layer.groups
    weights = np.full((M, k * c, R, S), int(zero[0]), dtype=np.int64)
    for f in range(M):
        j = (f // m) % k                                     # its group's place in the word
        weights[f, j * c:(j + 1) * c] = layer.weights[f]
    return dataclasses.replace(layer, weights=weights, groups=layer.groups // k)


def lanes_for_words(packed: int, lanes: int = 1) -> int:
    """The PE lanes for a layer whose words hold ``packed`` channels (an ``xnor`` file's
    lanes): the fewest of ``hw.schedule.LANES``, at least ``lanes``, that take one word per
    slot (a ``packed`` that is no power of two leaves lanes idle)."""
    from hw.schedule import LANES
    fits = [n for n in LANES if n >= max(packed, lanes)]
    if not fits:
        raise ValueError(f"{packed} channels per word exceed the widest PE ({LANES[-1]} "
                         "lanes)")
    return fits[0]


def pack_lanes(codes: np.ndarray, bits: int, lanes: int) -> np.ndarray:
    """Words of ``lanes`` codes along axis 0 of ``codes`` (channels; padded with zero codes
    to a multiple of ``lanes``): lane ``l`` in bits ``[l * bits, (l + 1) * bits)``, as Python
    ints (a word may exceed 64 bits). Shape: ``[ceil(C / lanes), ...]``."""
    codes = np.asarray(codes)
    channels = codes.shape[0]
    words = -(-channels // lanes)
    padded = np.zeros((words * lanes,) + codes.shape[1:], dtype=np.int64)
    padded[:channels] = to_unsigned_bits(codes, bits)
    lanes_last = np.moveaxis(padded.reshape((words, lanes) + codes.shape[1:]), 1, -1)
    if lanes * bits <= 62:
        shifts = (np.arange(lanes, dtype=np.int64) * bits)
        return (lanes_last << shifts).sum(axis=-1)
    out = np.zeros(lanes_last.shape[:-1], dtype=object)
    for lane in range(lanes):
        out = out + (lanes_last[..., lane].astype(object) << (lane * bits))
    return out


def plan(layer: Layer, params: ArrayParams, mapping: Mapping | None = None, *,
         mode: int = 0):
    """(shape, mapping, Job) for ``layer`` on an array with ``params`` (the lanes of the
    layer's mode), run in the accelerator's mode ``mode``. A grouped layer needs
    ``params.groups`` of at least its groups."""
    w, a, a_bits, w_bits = layer_codes(layer)
    shape = LayerShape.of(w.shape, a.shape, layer.stride, layer.padding, layer.groups)
    check_mappable(shape, params)
    mp = mapping or choose_mapping(shape, params)
    cfg = config_values(shape, params, mp, mode=mode)
    L = params.lanes
    w_words = np.moveaxis(pack_lanes(np.moveaxis(w, 1, 0), w_bits, L), 0, 1)  # [M, Cw, R, S]
    # [groups * Cw, H, W]: each group's channels in words of their own
    i_words = np.concatenate([pack_lanes(part, a_bits, L)
                              for part in np.split(a, shape.groups)])
    counts = predict(shape, params, mp)
    _, n_last = layer_words(shape, params)
    job = Job(config_beats(cfg),
              [int(v) for v in w_words.ravel()[weight_word_order(shape, params, mp)]],
              [int(v) for v in i_words.ravel()], shape.M * shape.E * shape.F,
              counts["cycles"], max(int(counts[k]) for k in COUNTERS if k != "skipped"),
              n_last, L)
    return shape, mp, job


def _codebook(layer: Layer) -> tuple | None:
    """The layer's integer codebook (weight sharing) as a tuple, or None."""
    return None if layer.codebook is None else tuple(int(v) for v in layer.codebook)


def _accumulator_width(layer: Layer) -> int:
    w, a, a_bits, w_bits = layer_codes(layer)
    fan_in = int(np.prod(w.shape[1:]))
    if layer.codebook is not None:
        from model.compress import codebook_accumulator_width
        return codebook_accumulator_width(layer.codebook, a_bits=a_bits, fan_in=fan_in)
    return accumulator_width(layer.scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)


def layer_key(layer: Layer) -> tuple:
    """``(scheme, a_bits, w_bits, codebook)`` of one lane of ``layer``: what its mode must
    match (``hw.schedule.Datapath.key``)."""
    _, _, a_bits, w_bits = layer_codes(layer)
    return (layer.scheme, a_bits, w_bits, _codebook(layer))


def layer_modes(layers: list[Layer], lanes: int) -> tuple[Datapath, ...]:
    """One mode per kind of layer (``layer_key``), in the order the kinds first appear.

    The activation word is ``lanes`` codes of the widest activations among the layers; every
    mode has as many lanes as its codes fill that word (binary A8 with 4 lanes and xnor:
    32-bit words, 32 xnor lanes). ``ValueError`` (one line) when a kind's codes do not fill
    it with a lane count of ``hw.schedule.LANES``."""
    keys = list(dict.fromkeys(layer_key(layer) for layer in layers))
    word = lanes * max(a_bits for _, a_bits, _, _ in keys)
    modes = []
    for scheme, a_bits, w_bits, codebook in keys:
        n, rest = divmod(word, a_bits)
        if rest or n not in LANES:
            raise ValueError(f"{scheme} layers with {a_bits}-bit activations cannot fill the "
                             f"{word}-bit activation words of the accelerator ({lanes} lanes "
                             f"of the widest activations); allowed: word / a_bits in "
                             f"{', '.join(map(str, LANES))}")
        modes.append(Datapath(scheme, n, a_bits, w_bits, codebook))
    return tuple(modes)


def mode_params(config: AcceleratorConfig, layer: Layer,
                params: ArrayParams | None = None) -> tuple[int, ArrayParams]:
    """``(mode, ArrayParams)`` of ``layer`` on the accelerator ``config``: the mode that runs
    it (``AcceleratorConfig.mode_of``) and the schedule parameters with that mode's lanes
    (``params``' other fields, or ``ArrayParams.of(config)``'s)."""
    scheme, a_bits, w_bits, codebook = layer_key(layer)
    mode = config.mode_of(scheme, a_bits=a_bits, w_bits=w_bits, codebook=codebook)
    base = params if params is not None else ArrayParams.of(config)
    return mode, dataclasses.replace(base, lanes=config.modes[mode].lanes)


def accelerator_config(layers: list[Layer], params: ArrayParams,
                       mappings: list[Mapping] | None = None, *,
                       counter_bits: int | None = None) -> AcceleratorConfig:
    """The ``AcceleratorConfig`` that fits every layer: one mode per kind of layer
    (``layer_modes``: ``params.lanes`` lanes of the widest activations; one kind gives a
    one-mode accelerator with ``params.lanes`` lanes), sums as wide as the widest layer
    needs, buffers as deep as the deepest, a group loop for as many groups as the most grouped
    layer has (``params.groups`` at least). ``mappings`` (one per layer) are for each layer's
    mode's lanes."""
    modes = layer_modes(layers, params.lanes)
    keys = [d.key for d in modes]
    depths = [1, 1, 1]
    for i, layer in enumerate(layers):
        shape = layer_shape(layer)
        mine = dataclasses.replace(params, lanes=modes[keys.index(layer_key(layer))].lanes)
        mp = mappings[i] if mappings else choose_mapping(shape, mine)
        depths = [max(x, y) for x, y in zip(depths, memory_depths(shape, mine, mp))]
    first = modes[0]
    base = dict(scheme=first.scheme, rows=params.rows, cols=params.cols, lanes=first.lanes,
                a_bits=first.a_bits, w_bits=first.w_bits, filter_spad=params.filter_spad,
                ifmap_spad=params.ifmap_spad, in_depth=depths[0], wb_depth=depths[1],
                pb_depth=depths[2], tree_stages=params.tree_stages, codebook=first.codebook,
                more_modes=modes[1:])
    if counter_bits is not None:
        base["counter_bits"] = counter_bits
    base["groups"] = max(params.groups, *(layer.groups for layer in layers))
    acc = max(_accumulator_width(layer) for layer in layers)
    probe = AcceleratorConfig(**base, acc_bits=64)
    return AcceleratorConfig(**base, acc_bits=max(acc, probe.min_acc_bits))


def build_accelerator(config: AcceleratorConfig):
    """An ``hw.accelerator.Accelerator`` for ``config``."""
    from hw.accelerator import Accelerator
    return Accelerator(config)


def _counters_from(values: dict) -> dict:
    return {name: int(values[name]) for name in COUNTERS}


class AmaranthBackend:
    """``amaranth.sim`` in this process."""

    name = "amaranth"

    def run(self, config: AcceleratorConfig, jobs: list[Job], progress: bool = False):
        from amaranth.sim import Simulator
        started = time.perf_counter()
        dut = build_accelerator(config)
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        elaborated = time.perf_counter()
        results = []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sum(j.predicted_cycles for j in jobs), unit="cycle",
                       desc="simulating", leave=False)

        async def put(ctx, port, words):
            ctx.set(port.valid, 1)
            for word in words:
                ctx.set(port.payload, word)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)

        async def testbench(ctx):
            for job in jobs:
                await put(ctx, dut.config_stream, job.config)
                await put(ctx, dut.weight_stream, job.weights)
                await put(ctx, dut.input_stream, job.inputs)
                if bar is not None:
                    done = 0
                    while not ctx.get(dut.output_stream.valid):
                        await ctx.tick().repeat(256)
                        now = ctx.get(dut.counters.cycles)
                        bar.update(now - done)
                        done = now
                ctx.set(dut.output_stream.ready, 1)
                words = []
                for _ in range(job.n_outputs):
                    (word,) = await ctx.tick().sample(dut.output_stream.payload).until(
                        dut.output_stream.valid)
                    words.append(int(word))
                ctx.set(dut.output_stream.ready, 0)
                await ctx.tick().until(dut.idle)
                results.append((words, _counters_from(
                    {n: ctx.get(getattr(dut.counters, n)) for n in COUNTERS})))

        sim.add_testbench(testbench)
        sim.run()
        #: seconds spent elaborating and simulating in the last run
        self.last_timing = (elaborated - started, time.perf_counter() - elaborated)
        if bar is not None:
            bar.close()
        return results


class CocotbBackend:
    """The generated Verilog under cocotb, on Verilator or Icarus."""

    def __init__(self, simulator: str):
        self.name = simulator
        self.simulator = simulator

    def available(self) -> tuple[bool, str]:
        from sim import toolchain
        if self.simulator == "verilator":
            return toolchain.verilator_available()
        return toolchain.icarus_available()

    def run(self, config: AcceleratorConfig, jobs: list[Job], progress: bool = False, *,
            p_valid: float = 1.0, p_ready: float = 1.0, expect: list | None = None):
        """Run ``jobs``; ``expect`` (per job: stream-order ``outputs`` and ``counters``)
        makes the testbench's scoreboard assert them too."""
        from sim.cocotb_runner import run_cocotb
        text = backend_verilog(self, build_accelerator(config), "accelerator")
        with tempfile.TemporaryDirectory(prefix="mulfree-run-") as tmp:
            jobs_file, result_file = Path(tmp, "jobs.json"), Path(tmp, "results.json")
            jobs_file.write_text(json.dumps([dataclasses.asdict(j) for j in jobs]))
            config_file = {"jobs": str(jobs_file), "results": str(result_file),
                           "p_valid": p_valid, "p_ready": p_ready, "expect": expect}
            result = run_cocotb(sources={"accelerator.v": text}, toplevel="accelerator",
                                test_module="sim.tb.test_accelerator",
                                simulator=self.simulator, config=config_file)
            self.last_result = result   # its log holds cocotb's simulation wall time
            if not result.passed or not result_file.exists():
                raise RuntimeError(f"the {self.simulator} run failed:\n{result.summary()}")
            data = json.loads(result_file.read_text())
        return [(r["outputs"], _counters_from(r["counters"])) for r in data]


_TRIGGER = re.compile(r"^(\s*)reg (\\\S*dump_module\$\d+) += 0;$", re.MULTILINE)


def backend_verilog(backend, top, name: str) -> str:
    """The Verilog of ``top`` (module ``name``) for a cocotb ``backend`` (its ``simulator``,
    ``available()``): ``ValueError`` if the simulator is missing; Icarus gets
    ``icarus_time_zero_fix``."""
    from amaranth.back import verilog
    ok, why = backend.available()
    if not ok:
        raise ValueError(f"backend {backend.simulator!r} is unavailable: {why}")
    text = verilog.convert(top, name=name, emit_src=False)
    return icarus_time_zero_fix(text) if backend.simulator == "icarus" else text


def icarus_time_zero_fix(text: str) -> str:
    """Make Icarus evaluate every ``always @*`` block once at the start.

    Yosys guards each combinational block with a ``reg`` initialised to 0 so that simulators
    run it at time 0; Icarus 11 applies the initialiser without an event, so a block whose
    inputs never change (a state decoder while the state stays in reset) stays X. Toggling
    the guard at 1 ps after time 0 runs them all once; nothing else changes.
    """
    return _TRIGGER.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #0.001 {m.group(2)} = 1;",
                        text)


#: Backends by name (``mulfree run-layer --backend``).
BACKENDS = {"amaranth": AmaranthBackend, "verilator": lambda: CocotbBackend("verilator"),
            "icarus": lambda: CocotbBackend("icarus")}


def run_layers(layers: list[Layer], *, backend: str = "amaranth",
               params: ArrayParams = ArrayParams(), progress: bool = False,
               mappings: list[Mapping] | None = None,
               counter_bits: int | None = None) -> list[LayerRun]:
    """Run ``layers`` on one accelerator (``accelerator_config``: one mode per kind of layer,
    ``params.lanes`` lanes of the widest activations); results in order, each with the
    parameters of its mode (``LayerRun.params``). ``mappings`` (one per layer, for its mode's
    lanes) overrides ``sim.cycle_model.choose_mapping``; ``counter_bits`` sets the counters'
    width (default ``hw.schedule.COUNTER_BITS``). Grouped layers run on the array, their
    groups one after the other (``AcceleratorConfig.groups``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    modes = layer_modes(layers, params.lanes)
    keys = [d.key for d in modes]
    params = dataclasses.replace(params, groups=max(params.groups,
                                                    *(layer.groups for layer in layers)))
    plans, layer_params = [], []
    for i, layer in enumerate(layers):
        mode = keys.index(layer_key(layer))
        mine = dataclasses.replace(params, lanes=modes[mode].lanes)
        plans.append(plan(layer, mine, mappings[i] if mappings else None, mode=mode))
        layer_params.append(mine)
    config = accelerator_config(layers, params, [mp for _, mp, _ in plans],
                                counter_bits=counter_bits)
    for index, (_, _, job) in enumerate(plans):
        check_job(config, job, f"layer {index}" if len(plans) > 1 else "the layer")
    raw = BACKENDS[backend]().run(config, [job for _, _, job in plans], progress)
    runs = []
    for (shape, mp, job), mine, (words, counters) in zip(plans, layer_params, raw):
        out = np.zeros(shape.M * shape.E * shape.F, dtype=np.int64)
        out[output_stream_order(shape, mine, mp)] = np.asarray(words, dtype=np.int64)
        counters = dict(counters)
        counters.update(derived_counters(counters, lanes=job.lanes, n_last=job.n_last))
        runs.append(LayerRun(out.reshape(shape.M, shape.E, shape.F), counters, mp, mine))
    return runs


def run_layer(layer: Layer, *, backend: str = "amaranth", params: ArrayParams = ArrayParams(),
              progress: bool = False) -> LayerRun:
    """Run one layer (see ``run_layers``)."""
    return run_layers([layer], backend=backend, params=params, progress=progress)[0]
