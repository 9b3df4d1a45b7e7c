"""cocotb testbench: whole layers through the generated Verilog of ``hw.accelerator``.

Parameters (``sim.tb.config()``): ``jobs`` (path of a JSON list of ``sim.run_layer.Job``),
``results`` (path the outputs and counters are written to, one entry per job), ``p_valid``
and ``p_ready`` (stream pacing: below 1.0 the drivers leave idle cycles and the monitor
drops ``ready``, for back-pressure), ``acc_bits``, and optionally ``expect`` (one entry per
job: the golden ``outputs`` in stream order, from ``model.ops.conv2d``, and the
``counters`` of ``sim.cycle_model.predict``), which the scoreboard asserts.

One cocotb test runs every job in order on one reset of the design.
"""

from __future__ import annotations

import json
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.schedule import COUNTERS as COUNTER_NAMES
from sim.streams import StreamDriver, StreamMonitor
from sim.tb import config, seed


def _counters(value) -> dict:
    """The counters from the ``counters`` port's value (``counter_bits`` each)."""
    bits = len(value) // len(COUNTER_NAMES)
    number, mask = value.to_unsigned(), (1 << bits) - 1
    return {name: (number >> (i * bits)) & mask for i, name in enumerate(COUNTER_NAMES)}


@cocotb.test()
async def run_layers(dut):
    """Drive every job through the streams; record (and check) outputs and counters."""
    cfg = config()
    with open(cfg["jobs"]) as f:
        jobs = json.load(f)
    expect = cfg.get("expect")
    rng = random.Random(seed())
    p_valid, p_ready = cfg.get("p_valid", 1.0), cfg.get("p_ready", 1.0)

    for name in ("config_stream", "weight_stream", "input_stream"):
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    dut.output_stream__ready.value = 0
    dut.rst.value = 1
    Clock(dut.clk, 10, unit="ns").start()
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    config_in = StreamDriver(dut.clk, dut.config_stream__valid, dut.config_stream__ready,
                             dut.config_stream__payload, p_valid=p_valid, rng=rng)
    weights_in = StreamDriver(dut.clk, dut.weight_stream__valid, dut.weight_stream__ready,
                              dut.weight_stream__payload, p_valid=p_valid, rng=rng)
    inputs_in = StreamDriver(dut.clk, dut.input_stream__valid, dut.input_stream__ready,
                             dut.input_stream__payload, p_valid=p_valid, rng=rng)
    outputs = StreamMonitor(dut.clk, dut.output_stream__valid, dut.output_stream__ready,
                            dut.output_stream__payload, p_ready=p_ready, signed=True, rng=rng)
    cocotb.start_soon(outputs.run())

    results = []
    for index, job in enumerate(jobs):
        await RisingEdge(dut.clk)
        taken = len(outputs.received)
        await config_in.send_all(job["config"])   # one field per beat
        await weights_in.send_all(job["weights"])
        await inputs_in.send_all(job["inputs"])
        words = (await outputs.wait_for(taken + job["n_outputs"],
                                        timeout_cycles=50 * job["predicted_cycles"] + 100_000
                                        ))[taken:]
        while True:  # the accelerator is idle once the last word has moved
            await ReadOnly()
            if dut.idle.value == 1:
                break
            await RisingEdge(dut.clk)
        counters = _counters(dut.counters.value)
        results.append({"outputs": words, "counters": counters})
        dut._log.info(f"layer {index + 1}/{len(jobs)}: {counters['cycles']} cycles")
        if expect is not None:
            assert words == expect[index]["outputs"], f"layer {index}: outputs differ"
            assert counters == expect[index]["counters"], (
                f"layer {index}: counters {counters} != model {expect[index]['counters']}")
        await RisingEdge(dut.clk)
    with open(cfg["results"], "w") as f:
        json.dump(results, f)
