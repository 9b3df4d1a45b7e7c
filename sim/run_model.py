"""Whole networks on the network engine (``hw.engine.NetworkEngine``), on every backend.

``run_program(engine, program, images, backend=...)`` loads the program, its weights and
thresholds once, then per image writes its input words, lets the engine run every layer and
reads the scores and the per-layer counters. The backends:

- ``amaranth``: ``amaranth.sim`` in this process (slow; a handful of images);
- ``verilator`` / ``icarus``: the generated Verilog under cocotb (``sim.tb.test_engine``);
  the testbench only wakes up to move words, so Verilator runs the layers at full speed;
- ``board``: a board's engine behind the host link (``boards.engine``).

Each returns, per image, the raw score words (the engine's output order) and the counter
words (per layer ``hw.schedule.COUNTERS``, then the image's cycles). ``ImageResult``
decodes them.

Model: ``model.deploy.run_integer`` (scores) and ``sim.program.predict_program`` (counters).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hw.schedule import COUNTERS

__all__ = ["EngineJob", "ImageResult", "AmaranthEngineBackend", "CocotbEngineBackend",
           "ENGINE_BACKENDS", "engine_backend", "split_counters"]


@dataclass
class EngineJob:
    """What a backend sends: the program's beats, its weight words, each image's input
    words; and how many score and counter words come back per image."""

    beats: list[int]
    weights: list[int]
    images: list[list[int]]
    n_scores: int
    n_counter_words: int

    @classmethod
    def of(cls, program, image_words: list[list[int]]) -> "EngineJob":
        return cls(beats=[int(b) for b in program.beats()],
                   weights=[int(w) for w in program.weight_words()],
                   images=[[int(w) for w in words] for words in image_words],
                   n_scores=int(program.header["scores"]),
                   n_counter_words=program.engine.n_counter_words(
                       int(program.header["layers"])))


@dataclass
class ImageResult:
    """One image's raw results: the score words and the counter words."""

    scores: list[int]
    counter_words: list[int]

    def layer_counters(self) -> list[dict]:
        return split_counters(self.counter_words)[0]

    @property
    def cycles(self) -> int:
        return split_counters(self.counter_words)[1]


def split_counters(words: list[int]) -> tuple[list[dict], int]:
    """(per layer {counter: value}, image cycles) from the counter words."""
    n = len(COUNTERS)
    layers = [dict(zip(COUNTERS, (int(v) for v in words[k:k + n])))
              for k in range(0, len(words) - 1, n)]
    return layers, int(words[-1])


def _signed(word: int, bits: int) -> int:
    word &= (1 << bits) - 1
    return word - (1 << bits) if word >> (bits - 1) else word


class AmaranthEngineBackend:
    """``amaranth.sim`` in this process."""

    name = "amaranth"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def run(self, engine, job: EngineJob, progress: bool = False) -> list[ImageResult]:
        from amaranth.sim import Simulator

        from hw.engine import NetworkEngine
        dut = NetworkEngine(engine)
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        results: list[ImageResult] = []
        acc_bits = engine.accelerator.acc_bits
        bar = _bar(progress, len(job.images))

        async def put(ctx, port, words):
            ctx.set(port.valid, 1)
            for word in words:
                ctx.set(port.payload, word)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)

        async def take(ctx, port, count):
            ctx.set(port.ready, 1)
            words = []
            for _ in range(count):
                (word,) = await ctx.tick().sample(port.payload).until(port.valid)
                words.append(int(word))
            ctx.set(port.ready, 0)
            return words

        async def testbench(ctx):
            await put(ctx, dut.program_stream, job.beats)
            await ctx.tick().until(dut.weight_stream.ready | dut.refused)
            if not ctx.get(dut.refused):
                await put(ctx, dut.weight_stream, job.weights)
                await ctx.tick().until(dut.programmed)
            if ctx.get(dut.refused):
                raise RuntimeError("the engine refused the program (its fingerprint or "
                                   "version is not the engine's)")
            for words in job.images:
                await put(ctx, dut.input_stream, words)
                scores = await take(ctx, dut.output_stream, job.n_scores)
                counters = await take(ctx, dut.counter_stream, job.n_counter_words)
                results.append(ImageResult([_signed(w, acc_bits) for w in scores], counters))
                if bar is not None:
                    bar.update(1)

        sim.add_testbench(testbench)
        sim.run()
        if bar is not None:
            bar.close()
        return results


class CocotbEngineBackend:
    """The generated Verilog under cocotb, on Verilator or Icarus."""

    def __init__(self, simulator: str):
        self.name = self.simulator = simulator

    def available(self) -> tuple[bool, str]:
        from sim import toolchain
        if self.simulator == "verilator":
            return toolchain.verilator_available()
        return toolchain.icarus_available()

    def run(self, engine, job: EngineJob, progress: bool = False) -> list[ImageResult]:
        from hw.engine import NetworkEngine
        from sim.cocotb_runner import run_cocotb
        from sim.run_layer import backend_verilog
        text = backend_verilog(self, NetworkEngine(engine), "engine")
        with tempfile.TemporaryDirectory(prefix="mulfree-model-") as tmp:
            job_file, result_file = Path(tmp, "job.json"), Path(tmp, "results.json")
            job_file.write_text(json.dumps({**job.__dict__,
                                            "acc_bits": engine.accelerator.acc_bits}))
            started = time.perf_counter()
            result = run_cocotb(sources={"engine.v": text}, toplevel="engine",
                                test_module="sim.tb.test_engine", simulator=self.simulator,
                                config={"job": str(job_file), "results": str(result_file)},
                                optimize=len(job.images) > 16)
            self.last_seconds = time.perf_counter() - started
            self.last_result = result
            if not result.passed or not result_file.exists():
                raise RuntimeError(f"the {self.simulator} run failed:\n{result.summary()}")
            data = json.loads(result_file.read_text())
        return [ImageResult(r["scores"], r["counters"]) for r in data]


ENGINE_BACKENDS = ("amaranth", "verilator", "icarus")


def engine_backend(name: str):
    """The backend called ``name`` (``ENGINE_BACKENDS``); ``ValueError`` otherwise."""
    if name == "amaranth":
        return AmaranthEngineBackend()
    if name in ("verilator", "icarus"):
        return CocotbEngineBackend(name)
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(ENGINE_BACKENDS)}")


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="image", desc="images", leave=False)
