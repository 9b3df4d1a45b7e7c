"""Run layers on the simulated accelerator: Amaranth's simulator, Verilator or Icarus.

Every backend takes the same *jobs* (``plan``: the configuration beats, the weight and
input stream words, the number of outputs) on an accelerator built by
``build_accelerator`` and returns the output stream words and the counters; ``run_layers``
turns them back into [M, E, F] sums. A new backend (a board) is a class with
``run(accelerator_args, jobs, progress) -> list[(words, counters)]`` added to ``BACKENDS``.
Before anything runs, ``check_job`` refuses a layer that the accelerator cannot hold: a
configuration field over its limit (``hw.controller.config_limits``) or a predicted counter
over ``counter_bits``.

- ``amaranth``: ``amaranth.sim`` in this process (a tqdm bar over the predicted cycles when
  ``progress`` is set);
- ``verilator`` / ``icarus``: the Verilog of the same accelerator (``amaranth.back.verilog``)
  under cocotb (``sim/tb/test_accelerator.py``), built in a temporary folder.

Several layers can share one accelerator (sized for the largest) and one simulation.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from model.layer_file import Layer
from model.ops import accumulator_width
from model.quant import to_unsigned_bits
from sim.cycle_model import (COUNTERS, ArrayParams, LayerShape, Mapping, check_mappable,
                             choose_mapping, config_values, memory_depths,
                             output_stream_order, predict, weight_stream_order)

__all__ = ["Job", "LayerRun", "plan", "accelerator_args", "build_accelerator", "run_layers",
           "run_layer", "BACKENDS", "config_beats", "check_job", "counter_bits_needed"]


@dataclasses.dataclass
class Job:
    """One layer as stream words for the accelerator."""

    config: list[int]          # one beat per field, ``hw.controller.CONFIG_FIELDS`` order
    weights: list[int]
    inputs: list[int]
    n_outputs: int
    predicted_cycles: int
    counter_peak: int = 0      # the largest counter ``sim.cycle_model.predict`` gives


@dataclasses.dataclass
class LayerRun:
    """What running one layer gave: exact sums [M, E, F], counters, mapping."""

    outputs: np.ndarray
    counters: dict
    mapping: Mapping
    params: ArrayParams


def config_beats(values: dict) -> list[int]:
    """The configuration as ``config_stream`` beats: one field per beat, in the order of
    ``hw.controller.CONFIG_FIELDS``."""
    from hw.controller import CONFIG_FIELDS
    return [int(values[name]) for name in CONFIG_FIELDS]


def counter_bits_needed(jobs: list[Job]) -> int:
    """The narrowest counters (at least 8 bits) that hold every count of ``jobs``."""
    return max(8, *(job.counter_peak.bit_length() for job in jobs))


def check_job(args: dict, job: Job, what: str = "the layer") -> None:
    """``ValueError`` (one line: the field or counter, its value and the limit) if the
    accelerator ``args`` (``accelerator_args``) cannot run ``job`` exactly."""
    from hw.accelerator import COUNTER_BITS
    from hw.controller import CONFIG_FIELDS, config_limits
    limits = config_limits(**args)
    for name, value in zip(CONFIG_FIELDS, job.config):
        if value > limits[name]:
            raise ValueError(f"{what} does not fit the accelerator: configuration field "
                             f"{name} ({CONFIG_FIELDS[name]}) = {value}; allowed: at most "
                             f"{limits[name]}")
    bits = args.get("counter_bits", COUNTER_BITS)
    if job.counter_peak >= 1 << bits:
        raise ValueError(f"{what} does not fit the accelerator: a counter would reach "
                         f"{job.counter_peak}; allowed: below 2**{bits} (counter_bits {bits})")


def _shape(layer: Layer) -> LayerShape:
    return LayerShape.of(layer.weights.shape, layer.inputs.shape, layer.stride, layer.padding)


def plan(layer: Layer, params: ArrayParams, mapping: Mapping | None = None):
    """(shape, mapping, Job) for ``layer`` on an array with ``params``."""
    shape = _shape(layer)
    check_mappable(shape, params)
    mp = mapping or choose_mapping(shape, params)
    cfg = config_values(shape, params, mp)
    w_words = to_unsigned_bits(layer.weights.ravel()[weight_stream_order(shape, params, mp)],
                               layer.w_bits)
    i_words = to_unsigned_bits(layer.inputs.ravel(), layer.a_bits)
    counts = predict(shape, params, mp)
    job = Job(config_beats(cfg), [int(v) for v in w_words], [int(v) for v in i_words],
              shape.M * shape.E * shape.F, counts["cycles"],
              max(int(counts[k]) for k in COUNTERS if k != "skipped"))
    return shape, mp, job


def accelerator_args(layers: list[Layer], params: ArrayParams,
                     mappings: list[Mapping] | None = None) -> dict:
    """Keyword arguments of ``hw.accelerator.Accelerator`` that fit every layer."""
    first = layers[0]
    for layer in layers:
        if (layer.scheme, layer.a_bits, layer.w_bits, _codebook(layer)) != (
                first.scheme, first.a_bits, first.w_bits, _codebook(first)):
            raise ValueError("layers sharing an accelerator need one scheme, one width and "
                             "one codebook")
    acc = max(_accumulator_width(layer) for layer in layers)
    depths = [1, 1, 1]
    for i, layer in enumerate(layers):
        shape = _shape(layer)
        mp = mappings[i] if mappings else choose_mapping(shape, params)
        depths = [max(a, b) for a, b in zip(depths, memory_depths(shape, params, mp))]
    args = dict(rows=params.rows, cols=params.cols, scheme=first.scheme, a_bits=first.a_bits,
                w_bits=first.w_bits, acc_bits=acc, filter_spad=params.filter_spad,
                ifmap_spad=params.ifmap_spad, psum_spad=params.psum_spad, in_depth=depths[0],
                wb_depth=depths[1], pb_depth=depths[2])
    if first.codebook is not None:
        args["codebook"] = _codebook(first)
    return args


def _codebook(layer: Layer) -> tuple | None:
    """The layer's integer codebook (weight sharing) as a tuple, or None."""
    return None if layer.codebook is None else tuple(int(v) for v in layer.codebook)


def _accumulator_width(layer: Layer) -> int:
    fan_in = int(np.prod(layer.weights.shape[1:]))
    if layer.codebook is not None:
        from model.compress import codebook_accumulator_width
        return codebook_accumulator_width(layer.codebook, a_bits=layer.a_bits, fan_in=fan_in)
    return accumulator_width(layer.scheme, a_bits=layer.a_bits, w_bits=layer.w_bits,
                             fan_in=fan_in)


def build_accelerator(args: dict):
    """An ``hw.accelerator.Accelerator`` from ``accelerator_args``."""
    from hw.accelerator import Accelerator
    args = dict(args)
    return Accelerator(args.pop("rows"), args.pop("cols"), args.pop("scheme"), **args)


def _counters_from(values: dict) -> dict:
    from hw.accelerator import COUNTER_NAMES
    return {name: int(values[name]) for name in COUNTER_NAMES}


class AmaranthBackend:
    """``amaranth.sim`` in this process."""

    name = "amaranth"

    def run(self, args: dict, jobs: list[Job], progress: bool = False):
        from amaranth.sim import Simulator
        from hw.accelerator import COUNTER_NAMES
        started = time.perf_counter()
        dut = build_accelerator(args)
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
                results.append((words, _counters_from(
                    {n: ctx.get(getattr(dut.counters, n)) for n in COUNTER_NAMES})))

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

    def run(self, args: dict, jobs: list[Job], progress: bool = False, *,
            p_valid: float = 1.0, p_ready: float = 1.0, expect: list | None = None):
        """Run ``jobs``; ``expect`` (per job: stream-order ``outputs`` and ``counters``)
        makes the testbench's scoreboard assert them too."""
        from amaranth.back import verilog
        from sim.cocotb_runner import run_cocotb
        ok, why = self.available()
        if not ok:
            raise ValueError(f"backend {self.simulator!r} is unavailable: {why}")
        text = verilog.convert(build_accelerator(args), name="accelerator", emit_src=False)
        if self.simulator == "icarus":
            text = icarus_time_zero_fix(text)
        with tempfile.TemporaryDirectory(prefix="mulfree-run-") as tmp:
            jobs_file, result_file = Path(tmp, "jobs.json"), Path(tmp, "results.json")
            jobs_file.write_text(json.dumps([dataclasses.asdict(j) for j in jobs]))
            config = {"jobs": str(jobs_file), "results": str(result_file),
                      "p_valid": p_valid, "p_ready": p_ready, "expect": expect}
            result = run_cocotb(sources={"accelerator.v": text}, toplevel="accelerator",
                                test_module="sim.tb.test_accelerator",
                                simulator=self.simulator, config=config)
            self.last_result = result   # its log holds cocotb's simulation wall time
            if not result.passed or not result_file.exists():
                raise RuntimeError(f"the {self.simulator} run failed:\n{result.summary()}")
            data = json.loads(result_file.read_text())
        return [(r["outputs"], _counters_from(r["counters"])) for r in data]


_TRIGGER = re.compile(r"^(\s*)reg (\\\S*dump_module\$\d+) += 0;$", re.MULTILINE)


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
    """Run ``layers`` (one scheme and width) on one accelerator; results in order.
    ``mappings`` (one per layer) overrides ``sim.cycle_model.choose_mapping``;
    ``counter_bits`` sets the counters' width (default ``hw.accelerator.COUNTER_BITS``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    plans = [plan(layer, params, mappings[i] if mappings else None)
             for i, layer in enumerate(layers)]
    args = accelerator_args(layers, params, [mp for _, mp, _ in plans])
    if counter_bits is not None:
        args["counter_bits"] = counter_bits
    for index, (_, _, job) in enumerate(plans):
        check_job(args, job, f"layer {index}" if len(plans) > 1 else "the layer")
    raw = BACKENDS[backend]().run(args, [job for _, _, job in plans], progress)
    runs = []
    for (shape, mp, _), (words, counters) in zip(plans, raw):
        out = np.zeros(shape.M * shape.E * shape.F, dtype=np.int64)
        out[output_stream_order(shape, params, mp)] = np.asarray(words, dtype=np.int64)
        runs.append(LayerRun(out.reshape(shape.M, shape.E, shape.F), counters, mp, params))
    return runs


def run_layer(layer: Layer, *, backend: str = "amaranth", params: ArrayParams = ArrayParams(),
              progress: bool = False) -> LayerRun:
    """Run one layer (see ``run_layers``)."""
    return run_layers([layer], backend=backend, params=params, progress=progress)[0]
