"""Whole layers on ``hw.accelerator.Accelerator`` in Amaranth's simulator.

Every output is compared with ``model.ops.conv2d`` (``model.ops.dense`` for dense layers)
and every counter with ``sim.cycle_model.predict``, for every scheme and lane count, over
fixed shapes that cover each folding case and seeded random ones.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from model.layer_file import Layer
from model.ops import accumulator_width, conv2d, dense, product_range
from model.quant import SCHEMES, activation_code_range, weight_code_range
from sim.cycle_model import COUNTERS, ArrayParams, predict
from sim.run_layer import (accelerator_config, build_accelerator, layer_codes, layer_shape,
                           plan, run_layers)

#: (a_bits, w_bits) per scheme (xnor: the layer file's packing lanes)
WIDTHS = {"binary": (4, 1), "xnor": (6, 6), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 2), "int": (4, 4)}

PARAMS = ArrayParams(rows=3, cols=4, lanes=2, filter_spad=16, ifmap_spad=16)

#: (M, C, R, S, H, W, stride, padding): each folding case of the mapping
FIXED_SHAPES = [
    (2, 2, 3, 3, 6, 6, 1, 0),   # M, C > 1
    (2, 1, 5, 3, 7, 6, 1, 2),   # R > rows, padding
    (1, 2, 3, 3, 9, 5, 2, 1),   # stride 2, E > cols
    (3, 2, 1, 1, 4, 5, 1, 0),   # 1x1
    (4, 6, 1, 1, 1, 1, 1, 0),   # dense
    (2, 1, 2, 4, 3, 9, 2, 0),   # rectangular filter, stride 2
    (1, 1, 3, 3, 1, 1, 1, 1),   # 1x1 input, padded 3x3 filter
]


def random_layer(rng, scheme, shape) -> Layer:
    M, C, R, S, H, W, U, P = shape
    a_bits, w_bits = WIDTHS[scheme]
    lo, hi = weight_code_range(scheme, w_bits)
    weights = rng.integers(lo, hi + 1, size=(M, C, R, S))
    lo, hi = activation_code_range(scheme, a_bits)
    inputs = rng.integers(lo, hi + 1, size=(C, H, W))
    return Layer(scheme, weights, inputs, U, P, a_bits=a_bits, w_bits=w_bits)


def random_shape(rng):
    R, S = (int(v) for v in rng.integers(1, 5, 2))
    U = int(rng.integers(1, 3))
    P = int(rng.integers(0, min(R, S)))
    H = int(rng.integers(max(1, R - 2 * P), 10))
    W = int(rng.integers(max(1, S - 2 * P), 10))
    M, C = (int(v) for v in rng.integers(1, 5, 2))
    return (M, C, R, S, H, W, U, P)


def golden(layer: Layer) -> np.ndarray:
    M, C, R, S = layer.weights.shape
    if (R, S) == (1, 1) and layer.inputs.shape[1:] == (1, 1) and layer.padding == 0:
        out = dense(layer.scheme, layer.inputs[:, 0, 0], layer.weights[:, :, 0, 0],
                    a_bits=layer.a_bits, w_bits=layer.w_bits)
        return out.reshape(M, 1, 1)
    return conv2d(layer.scheme, layer.inputs, layer.weights, stride=layer.stride,
                  padding=layer.padding, a_bits=layer.a_bits, w_bits=layer.w_bits)


def predicted(layer: Layer, params: ArrayParams, mapping) -> dict:
    weights = layer_codes(layer)[0]
    return predict(layer_shape(layer), params, mapping, weights=weights, scheme=layer.scheme)


def check_runs(layers, params):
    runs = run_layers(layers, params=params)
    for layer, run in zip(layers, runs):
        np.testing.assert_array_equal(run.outputs, golden(layer))
        model = predicted(layer, params, run.mapping)
        assert run.counters == {k: model[k] for k in run.counters}, (
            f"{layer.weights.shape} on {layer.inputs.shape}: RTL {run.counters}, "
            f"model {model}")
    return runs


@pytest.mark.parametrize("scheme", SCHEMES)
def test_layers_bit_exact_with_exact_counters(scheme):
    rng = np.random.default_rng(SCHEMES.index(scheme))
    shapes = FIXED_SHAPES + [random_shape(rng) for _ in range(4)]
    check_runs([random_layer(rng, scheme, s) for s in shapes], PARAMS)


@pytest.mark.parametrize("lanes", [1, 4, 8])
@pytest.mark.parametrize("scheme", ["ternary", "xnor", "dorefa"])
def test_lanes_pad_the_last_channel_word_and_count_only_real_macs(scheme, lanes):
    """Channel counts below, at and above a multiple of the lanes; the padded lanes of the
    last word are idle: ``macs`` counts the real ones only (``model.ops.conv2d``'s terms)."""
    rng = np.random.default_rng(40 + lanes)
    params = ArrayParams(rows=2, cols=3, lanes=lanes, filter_spad=16, ifmap_spad=16)
    shapes = [(2, 1, 3, 3, 4, 5, 1, 1), (3, 5, 1, 3, 3, 6, 1, 0), (2, 9, 2, 2, 4, 4, 1, 1)]
    runs = check_runs([random_layer(rng, scheme, s) for s in shapes], params)
    for run, s in zip(runs, shapes):
        M, C, R, S, H, W, U, P = s
        channels = C * (WIDTHS["xnor"][0] if scheme == "xnor" else 1)
        words = -(-channels // lanes)
        assert run.counters["slots"] * lanes >= run.counters["macs"]
        if channels % lanes:
            assert run.counters["last_slots"] > 0
        assert run.counters["macs"] == run.counters["slots"] * lanes - (
            words * lanes - channels) * run.counters["last_slots"]


@pytest.mark.parametrize("scheme", ["ternary", "xnor"])
def test_small_scratchpads_force_segments_and_other_array_sizes(scheme):
    rng = np.random.default_rng(7)
    params = ArrayParams(rows=2, cols=3, filter_spad=8, ifmap_spad=8)
    shapes = [(2, 2, 3, 3, 5, 11, 1, 1), (3, 1, 3, 2, 7, 9, 2, 0)] + [
        random_shape(rng) for _ in range(3)]
    runs = check_runs([random_layer(rng, scheme, s) for s in shapes], params)
    assert runs[0].mapping.Fseg < 11  # the first layer cannot keep a whole output row


@pytest.mark.parametrize("scheme", ["ternary", "pow2"])
def test_all_zero_weights_skip_every_mac(scheme):
    rng = np.random.default_rng(3)
    layer = random_layer(rng, scheme, (2, 2, 3, 3, 5, 5, 1, 1))
    layer = Layer(scheme, np.zeros_like(layer.weights), layer.inputs, 1, 1,
                  a_bits=layer.a_bits, w_bits=layer.w_bits)
    (run,) = check_runs([layer], PARAMS)
    assert run.counters["skipped"] == run.counters["macs"] > 0
    assert not run.outputs.any()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_extreme_codes_reach_the_accumulator_bound(scheme):
    a_bits, w_bits = WIDTHS[scheme]
    lo, hi = product_range(scheme, a_bits=a_bits, w_bits=w_bits)
    # the codes whose product is the most negative and the most positive
    a_lo, a_hi = activation_code_range(scheme, a_bits)
    w_lo, w_hi = weight_code_range(scheme, w_bits)
    pairs = [(a, w) for a in (a_lo, a_hi) for w in (w_lo, w_hi)]
    from model.ops import product
    worst = min(pairs, key=lambda p: int(product(scheme, p[0], p[1], a_bits=a_bits,
                                                  w_bits=w_bits)))
    best = max(pairs, key=lambda p: int(product(scheme, p[0], p[1], a_bits=a_bits,
                                                 w_bits=w_bits)))
    shape = (1, 3, 3, 3, 3, 3)
    layers = []
    for a, w in (worst, best):
        weights = np.full((2,) + shape[1:4], w)
        inputs = np.full(shape[1:2] + shape[4:], a)
        layers.append(Layer(scheme, weights, inputs, 1, 0, a_bits=a_bits, w_bits=w_bits))
    runs = check_runs(layers, PARAMS)
    fan_in = 27
    assert runs[0].outputs.min() == fan_in * lo
    assert runs[1].outputs.max() == fan_in * hi
    width = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    assert fan_in * lo >= -(1 << (width - 1)) and fan_in * hi < (1 << (width - 1))


def test_back_pressure_and_idle_input_cycles_change_nothing():
    """Random gaps on the input streams and dropped ``ready`` on the output stream."""
    rng = np.random.default_rng(11)
    layers = [random_layer(rng, "ternary", s) for s in [(2, 2, 3, 3, 5, 6, 1, 1),
                                                        (3, 1, 2, 2, 4, 4, 2, 0)]]
    plans = [plan(layer, PARAMS) for layer in layers]
    dut = build_accelerator(accelerator_config(layers, PARAMS, [mp for _, mp, _ in plans]))
    pace = random.Random(5)
    results = []

    async def put(ctx, port, words):
        payload = getattr(port.payload, "as_value", lambda: port.payload)()
        for word in words:
            while pace.random() < 0.3:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.valid, 1)
            ctx.set(payload, word)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def testbench(ctx):
        for _, _, job in plans:
            await put(ctx, dut.config_stream, job.config)
            await put(ctx, dut.weight_stream, job.weights)
            await put(ctx, dut.input_stream, job.inputs)
            words = []
            while len(words) < job.n_outputs:
                ready = pace.random() < 0.5
                ctx.set(dut.output_stream.ready, ready)
                valid, word = (await ctx.tick().sample(dut.output_stream.valid,
                                                       dut.output_stream.payload))[2:]
                if valid and ready:
                    words.append(int(word))
            ctx.set(dut.output_stream.ready, 0)
            await ctx.tick().until(dut.idle)
            results.append((words, {n: ctx.get(getattr(dut.counters, n))
                                    for n in ("cycles", "glb_reads", "offchip_words")}))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    from sim.cycle_model import output_stream_order
    for layer, (shape, mp, job), (words, counters) in zip(layers, plans, results):
        out = np.zeros(shape.M * shape.E * shape.F, dtype=np.int64)
        out[output_stream_order(shape, PARAMS, mp)] = words
        np.testing.assert_array_equal(out.reshape(shape.M, shape.E, shape.F), golden(layer))
        model = predicted(layer, PARAMS, mp)
        assert counters == {k: model[k] for k in counters}


def test_refuses_layers_that_cannot_map():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "ternary", (1, 1, 3, 9, 4, 12, 1, 0))
    with pytest.raises(ValueError, match="filter width 9 exceeds the filter scratchpad"):
        run_layers([layer], params=ArrayParams(3, 4, 1, 8, 16))
    with pytest.raises(ValueError, match="stride 5 is not supported"):
        run_layers([random_layer(rng, "ternary", (1, 1, 1, 1, 6, 6, 5, 0))], params=PARAMS)


def test_generate_accelerator_is_deterministic_with_a_manifest(tmp_path):
    from mulfree.cli import main
    flags = ["generate", "accelerator", "--scheme", "ternary", "--a-bits", "4", "--acc-bits",
             "10", "--rows", "2", "--cols", "2", "--in-depth", "64", "--wb-depth", "64",
             "--pb-depth", "64"]
    assert main(flags + ["-o", str(tmp_path / "a")]) == 0
    assert main(flags + ["-o", str(tmp_path / "b")]) == 0
    text = (tmp_path / "a" / "accelerator.v").read_text()
    assert text == (tmp_path / "b" / "accelerator.v").read_text()
    assert "src =" not in text
    import json
    manifest = json.loads((tmp_path / "a" / "accelerator.json").read_text())
    ports = {p["name"]: p for p in manifest["ports"]}
    from hw.schedule import CONFIG_FIELDS
    assert list(manifest["config_fields"]) == list(CONFIG_FIELDS)
    widest = max(f["bits"] for f in manifest["config_fields"].values())
    assert ports["config_stream__payload"]["width"] == manifest["config_beat_bits"] == widest
    assert manifest["counters"][0] == "cycles" and manifest["rows"] == 2


@pytest.mark.parametrize("scheme", ["ternary", "int"])
def test_every_kind_of_mapping(scheme):
    """Forced mappings: channel words and filters interleaved in the scratchpads (q, p > 1),
    short segments, several row and column folds."""
    from sim.cycle_model import Mapping
    rng = np.random.default_rng(21)
    shape = (8, 8, 3, 3, 5, 7, 1, 1)          # E = 5 output rows on 4 columns, 4 words
    layers = [random_layer(rng, scheme, shape) for _ in range(4)]
    maps = [Mapping(q=2, p=2, Fseg=3), Mapping(q=1, p=1, Fseg=7), Mapping(q=4, p=1, Fseg=2),
            Mapping(q=1, p=4, Fseg=4)]
    runs = run_layers(layers, params=PARAMS, mappings=maps)
    for layer, run, mp in zip(layers, runs, maps):
        assert run.mapping == mp
        np.testing.assert_array_equal(run.outputs, golden(layer))
        model = predicted(layer, PARAMS, mp)
        assert run.counters == {k: model[k] for k in run.counters}


@pytest.mark.parametrize("tree_stages", [1, 2])
def test_pipelined_lane_trees_keep_results_and_predicted_cycles(tree_stages):
    rng = np.random.default_rng(50 + tree_stages)
    params = ArrayParams(rows=3, cols=2, lanes=4, filter_spad=16, ifmap_spad=16,
                         tree_stages=tree_stages)
    for scheme in ("binary", "pow2"):
        check_runs([random_layer(rng, scheme, (3, 6, 3, 3, 5, 5, 1, 1))], params)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_sweep_over_array_sizes_and_scratchpads(seed, request):
    """Extra: many random layers on random array sizes and scratchpads (-m slow)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("an extra sweep (about a minute); run with -m slow")
    rng = np.random.default_rng(100 + seed)
    for scheme in SCHEMES:
        params = ArrayParams(int(rng.integers(1, 5)), int(rng.integers(1, 6)),
                             int(2 ** rng.integers(0, 4)), int(2 ** rng.integers(3, 6)),
                             int(2 ** rng.integers(3, 6)), int(rng.integers(0, 3)))
        layers = [random_layer(rng, scheme, random_shape(rng)) for _ in range(6)]
        check_runs(layers, params)


def test_a_layer_over_a_configuration_limit_is_refused_in_one_line():
    """Padding at the stated limit runs exactly; one more is refused before anything runs,
    naming the value and the limit; so is a layer over the buffers of a given accelerator."""
    from hw.schedule import MAX_PADDING
    from sim.run_layer import check_job
    rng = np.random.default_rng(31)
    edge = random_layer(rng, "ternary", (2, 1, 2, 2, 2, 3, 1, MAX_PADDING))
    run = run_layers([edge], params=PARAMS)[0]
    np.testing.assert_array_equal(run.outputs, golden(edge))
    assert run.counters == {k: predicted(edge, PARAMS, run.mapping)[k] for k in run.counters}
    over = random_layer(rng, "ternary", (2, 1, 2, 2, 2, 3, 1, MAX_PADDING + 1))
    with pytest.raises(ValueError, match=rf"^padding {MAX_PADDING + 1} is not supported; "
                       rf"allowed: 0 to {MAX_PADDING}$"):
        run_layers([over], params=PARAMS)
    small = accelerator_config([edge], PARAMS)
    big = random_layer(rng, "ternary", (2, 1, 2, 2, 9, 9, 1, 0))
    _, _, job = plan(big, PARAMS)
    with pytest.raises(ValueError, match=r"^layer 1 does not fit the accelerator: configuration "
                       r"field \w+ \(.*\) = \d+; allowed: at most \d+$"):
        check_job(small, job, "layer 1")


def test_counters_as_narrow_as_the_layer_needs_and_no_narrower():
    """An accelerator whose counters just hold the layer's largest count reports every
    counter exactly; one bit less is refused (a counter never wraps silently)."""
    from sim.run_layer import AmaranthBackend, check_job
    rng = np.random.default_rng(32)
    layer = random_layer(rng, "ternary", (3, 2, 3, 3, 5, 6, 1, 1))
    shape, mp, job = plan(layer, PARAMS)
    model = predicted(layer, PARAMS, mp)
    peak = max(v for k, v in model.items() if k in COUNTERS and k != "skipped")
    assert job.counter_peak == peak
    bits = peak.bit_length()
    config = accelerator_config([layer], PARAMS, [mp], counter_bits=bits)
    check_job(config, job)
    (words, counters), = AmaranthBackend().run(config, [job])
    assert counters == {k: model[k] for k in counters}
    with pytest.raises(ValueError, match=rf"a counter would reach {peak}; allowed: below "
                       rf"2\*\*{bits - 1} \(counter_bits {bits - 1}\)$"):
        check_job(config.replace(counter_bits=bits - 1), job)
