"""cocotb testbench: images through the generated Verilog of ``hw.engine.NetworkEngine``.

Parameters (``sim.tb.config()``): ``job`` (path of a JSON ``sim.run_model.EngineJob`` with
``acc_bits`` and ``n_counter_words``) and ``results`` (path the scores and counter words are
written to, one entry per image).

The program and weights are loaded once; then per image the testbench writes its input
words and sleeps until a score is offered: between the words it moves, it waits on signal
edges only, so the simulator runs the layers at full speed.

Model: ``model.deploy.run_integer`` and ``sim.program.predict_program``, checked by the
caller (``sim.run_model``, the tests).
"""

from __future__ import annotations

import json

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from sim.streams import StreamDriver, to_signed
from sim.tb import config


async def _collect(dut, name: str, count: int) -> list[int]:
    """``count`` words from stream ``name``: ``ready`` held high, asleep between beats."""
    valid, ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
    payload = getattr(dut, f"{name}__payload")
    ready.value = 1
    words = []
    while len(words) < count:
        await ReadOnly()
        if valid.value == 1:
            words.append(int(payload.value))
            await RisingEdge(dut.clk)         # the beat moves at this edge
        else:
            await RisingEdge(valid)
    ready.value = 0
    return words


@cocotb.test()
async def run_images(dut):
    """Load the program and weights, then run every image; record scores and counters."""
    cfg = config()
    with open(cfg["job"]) as f:
        job = json.load(f)
    for name in ("program_stream", "weight_stream", "input_stream"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    dut.output_stream__ready.value = 0
    dut.counter_stream__ready.value = 0
    dut.rst.value = 1
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()   # the clock in C++: no Python per edge
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    def driver(name):
        return StreamDriver(dut.clk, getattr(dut, f"{name}__valid"),
                            getattr(dut, f"{name}__ready"), getattr(dut, f"{name}__payload"))
    program, weights, inputs = (driver(n) for n in ("program_stream", "weight_stream",
                                                    "input_stream"))
    await RisingEdge(dut.clk)
    await program.send_all(job["beats"])
    while True:             # the engine takes the weights after a good program only
        await ReadOnly()
        if dut.weight_stream__ready.value == 1 or dut.refused.value == 1:
            break
        await RisingEdge(dut.clk)
    assert dut.refused.value == 0, "the engine refused the program"
    await RisingEdge(dut.clk)
    await weights.send_all(job["weights"])
    while True:
        await ReadOnly()
        if dut.programmed.value == 1:
            break
        await RisingEdge(dut.clk)

    results = []
    for index, words in enumerate(job["images"]):
        await RisingEdge(dut.clk)
        await inputs.send_all(words)
        scores = await _collect(dut, "output_stream", job["n_scores"])
        counters = await _collect(dut, "counter_stream", job["n_counter_words"])
        results.append({"scores": [to_signed(w, job["acc_bits"]) for w in scores],
                        "counters": counters})
        if index % 50 == 0:
            dut._log.info(f"image {index + 1}/{len(job['images'])}: {counters[-1]} cycles")
    with open(cfg["results"], "w") as f:
        json.dump(results, f)
