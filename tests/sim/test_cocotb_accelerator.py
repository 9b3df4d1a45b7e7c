"""The generated Verilog of the accelerator under cocotb (``sim/tb/test_accelerator.py``).

The testbench's scoreboard asserts every output against ``model.ops.conv2d`` and every
counter against ``sim.cycle_model.predict`` (passed in as ``expect``), with random idle
cycles on the input streams and dropped ``ready`` on the output stream; the runner's
results are checked again here. One Verilator build (it costs ~30-60 s) and a few Icarus runs.
"""

import dataclasses

import numpy as np
import pytest

from model.layer_file import Layer
from model.quant import activation_code_range, weight_code_range
from sim import toolchain
from hw.schedule import COUNTERS
from sim.cycle_model import ArrayParams, output_stream_order
from sim.run_layer import BACKENDS, accelerator_config, plan
from tests.conftest import golden, predicted_counters

PARAMS = ArrayParams(rows=3, cols=4, lanes=4, filter_spad=16, ifmap_spad=16, tree_stages=1)
WIDTHS = {"binary": (4, 1), "xnor": (8, 8), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 2), "int": (4, 4)}


def _layers(scheme, shapes, seed):
    rng = np.random.default_rng(seed)
    a_bits, w_bits = WIDTHS[scheme]
    layers = []
    for M, C, R, S, H, W, U, P in shapes:
        lo, hi = weight_code_range(scheme, w_bits)
        w = rng.integers(lo, hi + 1, size=(M, C, R, S))
        lo, hi = activation_code_range(scheme, a_bits)
        a = rng.integers(lo, hi + 1, size=(C, H, W))
        layers.append(Layer(scheme, w, a, U, P, a_bits=a_bits, w_bits=w_bits))
    return layers


def _run_and_check(simulator, layers, params=PARAMS):
    plans = [plan(layer, params) for layer in layers]
    expect = []
    for layer, (shape, mp, _) in zip(layers, plans):
        gold = golden(layer)
        expect.append({
            "outputs": [int(v) for v in gold.ravel()[output_stream_order(shape, params, mp)]],
            "counters": predicted_counters(layer, params, mp, names=COUNTERS)})
    config = accelerator_config(layers, params, [mp for _, mp, _ in plans])
    raw = BACKENDS[simulator]().run(config, [job for _, _, job in plans], p_valid=0.8,
                                    p_ready=0.6, expect=expect)
    for (words, counters), exp in zip(raw, expect):
        assert words == exp["outputs"]
        assert counters == exp["counters"]


@pytest.mark.skipif(not toolchain.verilator_available()[0],
                    reason=toolchain.verilator_available()[1] or "Verilator unavailable")
@pytest.mark.timeout(600)  # the Verilator build: half a minute or more
def test_verilator_ternary_layers():
    shapes = [(2, 2, 3, 3, 6, 6, 1, 1),    # padding, M and C > 1
              (2, 1, 5, 3, 7, 6, 1, 2),    # R > rows
              (1, 2, 3, 3, 9, 5, 2, 1),    # stride 2, E > cols
              (4, 6, 1, 1, 1, 1, 1, 0)]    # dense
    layers = _layers("ternary", shapes, 1)
    zero = Layer("ternary", np.zeros((2, 1, 2, 2), dtype=np.int64), layers[0].inputs[:1],
                 1, 0, a_bits=4)
    _run_and_check("verilator", layers + [zero])


@pytest.mark.skipif(not toolchain.verilator_available()[0],
                    reason=toolchain.verilator_available()[1] or "Verilator unavailable")
@pytest.mark.timeout(600)  # the Verilator build: half a minute or more
def test_verilator_grouped_layers():
    # the group loop in the Verilog: depthwise (stride 2, padding), two groups of six
    # channels on 4 lanes (idle lanes in every group's last word), and an ungrouped layer
    rng = np.random.default_rng(16)
    layers = []
    for M, C, R, S, H, W, U, P, G in [(8, 8, 3, 3, 9, 7, 2, 1, 8), (4, 12, 3, 3, 6, 6, 1, 1, 2),
                                      (2, 2, 3, 3, 6, 6, 1, 1, 1)]:
        w = rng.integers(-1, 2, size=(M, C // G, R, S))
        a = rng.integers(-8, 8, size=(C, H, W))
        layers.append(Layer("ternary", w, a, U, P, a_bits=4, groups=G))
    _run_and_check("verilator", layers, dataclasses.replace(PARAMS, groups=8))


@pytest.mark.skipif(not toolchain.icarus_available()[0], reason="Icarus Verilog not installed")
@pytest.mark.parametrize("scheme", ["xnor", "dorefa", "int"])
def test_icarus_layers(scheme):
    shapes = [(2, 2, 3, 3, 5, 6, 1, 1), (3, 1, 2, 2, 4, 9, 2, 0), (2, 3, 1, 1, 1, 1, 1, 0)]
    _run_and_check("icarus", _layers(scheme, shapes, 2))


def _two_mode_layers():
    """A BinaryNet-like pair on one accelerator: binary weights on 8-bit inputs (4 lanes) and
    xnor layers (32 lanes of the same 32-bit words), back to back."""
    rng = np.random.default_rng(4)
    first = Layer("binary", rng.integers(0, 2, (3, 5, 3, 3)), rng.integers(-128, 128, (5, 5, 5)),
                  1, 1, a_bits=8)
    lanes = 20                     # an xnor layer file packs 20 channels to a word
    xnor = Layer("xnor", rng.integers(0, 1 << lanes, (2, 1, 3, 3)),
                 rng.integers(0, 1 << lanes, (1, 4, 4)), 1, 0, a_bits=lanes, w_bits=lanes)
    dense = Layer("binary", rng.integers(0, 2, (2, 6, 1, 1)), rng.integers(-128, 128, (6, 1, 1)),
                  a_bits=8)
    return [first, xnor, dense]


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_two_modes_on_one_accelerator(simulator):
    from sim.run_layer import CocotbBackend, mode_params
    ok, why = CocotbBackend(simulator).available()
    if not ok:
        pytest.skip(why)
    params = ArrayParams(rows=2, cols=2, lanes=4, filter_spad=16, ifmap_spad=16)
    layers = _two_mode_layers()
    config = accelerator_config(layers, params)
    assert [d.lanes for d in config.modes] == [4, 32]
    plans, expect = [], []
    for layer in layers:
        mode, mine = mode_params(config, layer, params)
        shape, mp, job = plan(layer, mine, mode=mode)
        plans.append(job)
        gold = golden(layer)
        expect.append({
            "outputs": [int(v) for v in gold.ravel()[output_stream_order(shape, mine, mp)]],
            "counters": predicted_counters(layer, mine, mp, names=COUNTERS)})
    raw = BACKENDS[simulator]().run(config, plans, p_valid=0.8, p_ready=0.6, expect=expect)
    for (words, counters), exp in zip(raw, expect):
        assert words == exp["outputs"]
        assert counters == exp["counters"]
