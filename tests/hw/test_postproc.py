# amaranth: UnusedElaboratable=no
# (units built here only to inspect their interface are never elaborated, on purpose)
"""``hw.postproc.PostProcessor`` in the Amaranth simulator against ``model.deploy``.

The golden model is ``model.deploy``: pool the accumulators (``model.ops.maxpool2d``),
threshold them (``model.thresholds.apply_sign_threshold`` / ``apply_multilevel_thresholds``,
which ``IntegerLayer.activate`` calls) and encode them for the next layer
(``IntegerLayer.encode_inputs``). The unit thresholds first and pools the codes; the
equivalence is checked here on the model itself (exhaustively), then the RTL:

- every accumulator of a small width against every threshold position (ties, one past
  each end), flipped and constant channels, sign and levels, unused threshold slots full of
  junk;
- every 2x2 window of 2-bit accumulators pooled, pool 3 with dropped rows and columns;
- whole layers of folded BinaryNet, TernaryNet and DoReFa-Net on digits (batch-norm
  statistics from training images, some gains negated or zero), fed the accumulators of
  ``run_integer`` in the array's order (``sim.cycle_model.output_stream_order``) and in
  random valid orders: the destination buffer, unpacked, equals the next layer's
  ``encode_inputs`` bit for bit, padded lanes are zero and no other word changes; the
  scores pass through.

Every run drops ``valid`` at random; scores runs drop ``o_stream.ready`` at random.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.postproc import (SCORE_LATENCY, WRITE_LATENCY, CodeFormat, OutputKind, PostConfig,
                         PostProcessor, PostProcessorParams, ThresholdEntry, buffer_words,
                         check_config, layer_config, setup_cycles, threshold_entries)
from model import data as datasets
from model import deploy, nets, ops, quant
from model.thresholds import (MultilevelThresholds, SignThreshold, apply_multilevel_thresholds,
                              apply_sign_threshold)
from sim.cycle_model import ArrayParams, LayerShape, choose_mapping, output_stream_order


# --------------------------------------------------------------------------------------------
# The bench: the unit, a destination memory full of junk, a driver and a collector
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    words: list[int]                       # the whole destination buffer afterwards
    junk: list[int]                        # what it held before
    scores: list[tuple[int, int, int, int]] = field(default_factory=list)
    setup: int = 0                         # cycles from start to i_stream.ready
    stalls: int = 0                        # cycles valid was high and ready low


def simulate(params, config, entries, elements, *, seed=0, gap=0.25, out_ready=0.6,
             transparent=False, junk_slots=False) -> Result:
    """Load ``entries`` (threshold-memory entries of the layer's channels), configure,
    start, stream ``elements`` ((acc, m, e, f) in order) with random idle cycles, collect
    scores with random ``ready``; return the buffer."""
    rng = np.random.default_rng(seed)
    p = params
    junk = [int(v) for v in rng.integers(0, 1 << p.word_bits, p.depth, dtype=np.uint64)]
    top = Module()
    top.submodules.dut = dut = PostProcessor(p)
    top.submodules.buf = buf = Memory(shape=unsigned(p.word_bits), depth=p.depth, init=junk)
    wp = buf.write_port(granularity=p.granularity)
    rp = buf.read_port(transparent_for=(wp,) if transparent else ())
    top.d.comb += [wp.en.eq(dut.dst_write.en), wp.addr.eq(dut.dst_write.addr),
                   wp.data.eq(dut.dst_write.data), rp.en.eq(dut.dst_read.en),
                   rp.addr.eq(dut.dst_read.addr), dut.dst_read.data.eq(rp.data)]
    result = Result(words=[], junk=junk)
    scores_expected = len(elements) if config["kind"] == OutputKind.SCORES else 0
    entry_layout = ThresholdEntry(p)

    async def driver(ctx):
        for i, entry in enumerate(entries):
            if junk_slots:  # unused threshold slots must not count
                used = (1 << config["out_bits"]) - 1
                entry = dict(entry, thresholds=list(entry["thresholds"][:used]) + [
                    int(v) for v in rng.integers(-(1 << p.acc_bits), 1 << p.acc_bits,
                                                 p.thresholds - used)])
            ctx.set(dut.thr_write.en, 1)
            ctx.set(dut.thr_write.addr, config["thr_base"] + i)
            ctx.set(dut.thr_write.data, entry_layout.const(entry))
            await ctx.tick()
        ctx.set(dut.thr_write.en, 0)
        ctx.set(dut.config, config)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        result.setup = 1
        while not ctx.get(dut.i_stream.ready):
            await ctx.tick()
            result.setup += 1
        for acc, m, e, f in elements:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, {"acc": int(acc), "m": int(m), "e": int(e),
                                           "f": int(f)})
            _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
            while not ready:
                result.stalls += 1
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
        while ctx.get(dut.busy):
            await ctx.tick()
        result.words = [int(ctx.get(buf.data[i])) for i in range(p.depth)]

    async def collector(ctx):
        out = dut.o_stream
        while len(result.scores) < scores_expected:
            ready = bool(rng.random() < out_ready)
            ctx.set(out.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(out.valid, out.payload)
            if valid and ready:
                result.scores.append((int(payload.acc), int(payload.m), int(payload.e),
                                      int(payload.f)))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(collector)
    sim.run()
    return result


# --------------------------------------------------------------------------------------------
# Orders the accelerator may deliver, and the expected buffer
# --------------------------------------------------------------------------------------------

def array_order(layer):
    """The (m, e, f) order of a layer's accumulators out of the row-stationary array with
    the default parameters and the fastest mapping (``sim.cycle_model``)."""
    shape = LayerShape.of(layer.weights.shape, layer.in_shape, layer.stride, layer.padding)
    params = ArrayParams()
    flat = output_stream_order(shape, params, choose_mapping(shape, params))
    m, rest = np.divmod(flat, shape.E * shape.F)
    e, f = np.divmod(rest, shape.F)
    return [(int(a), int(b), int(c)) for a, b, c in zip(m, e, f)]


def check_order(order, channels, rows, cols):
    """Every element once; each channel's elements row by row, columns increasing."""
    assert sorted(order) == [(m, e, f) for m in range(channels) for e in range(rows)
                             for f in range(cols)]
    for m in range(channels):
        mine = [(e, f) for c, e, f in order if c == m]
        assert mine == sorted(mine)


def accelerator_order(channels, rows, cols, filters_per_pe):
    """The row-stationary array's order (``sim.cycle_model.output_stream_order``): output
    row by output row; in a row, filter group g, column f, the group's filters interleaved."""
    order = []
    for e in range(rows):
        for g in range(0, channels, filters_per_pe):
            for f in range(cols):
                order += [(m, e, f) for m in range(g, min(g + filters_per_pe, channels))]
    return order


def random_order(channels, rows, cols, rng):
    """Any interleaving of the channels, each channel row by row, columns increasing."""
    left = {m: [(m, e, f) for e in range(rows) for f in range(cols)] for m in range(channels)}
    order = []
    while left:
        keys = list(left)
        m = keys[rng.integers(len(keys))]
        order.append(left[m].pop(0))
        if not left[m]:
            del left[m]
    return order


def stream(acc, order):
    """(acc, m, e, f) of ``acc`` [M, E, F] in ``order`` (checked to be an order the unit
    accepts)."""
    check_order(order, *acc.shape)
    return [(int(acc[m, e, f]), m, e, f) for m, e, f in order]


def lane_bits(values, code: CodeFormat, code_bits: int) -> tuple[np.ndarray, int]:
    """(lane bit patterns, lane width) of golden codes/values for a ``code`` word."""
    v = np.asarray(values, dtype=np.int64)
    if code == CodeFormat.XNOR:
        return (v < 0).astype(np.int64), 1
    return quant.to_unsigned_bits(v, code_bits), code_bits


def expected_buffer(junk, values, config, params):
    """The whole buffer after the layer: golden ``values`` [C, E', F'] (+/-1 or codes) packed
    as the module docstring says, unused lanes zero, every other word unchanged."""
    words = list(junk)
    c, rows, cols = values.shape
    lanes, base = config["lanes"], config["dst_base"]
    bits, width = lane_bits(values, config["code"], params.code_bits)
    if config["flatten"]:
        flat = bits.reshape(-1)
        places = [(i // lanes, i % lanes, flat[i]) for i in range(flat.size)]
    else:
        places = [((m // lanes * rows + e) * cols + f, m % lanes, bits[m, e, f])
                  for m in range(c) for e in range(rows) for f in range(cols)]
    n = buffer_words(c, rows, cols, lanes=lanes, flatten=bool(config["flatten"]))
    region = [0] * n
    for w, lane, b in places:
        region[w] |= int(b) << (lane * width)
    words[base:base + n] = region
    return words, n


def unpack(words, config, params, shape):
    """Codes [C, E', F'] (or [C E' F']) read back from the buffer words of a layer."""
    code, lanes, cb = config["code"], config["lanes"], params.code_bits
    width = 1 if code == CodeFormat.XNOR else cb
    c, rows, cols = shape

    def lane(word, i):
        v = (word >> (i * width)) & ((1 << width) - 1)
        if code == CodeFormat.XNOR:
            return -1 if v else 1
        if code in (CodeFormat.PM1, CodeFormat.SIGNED) and v >> (cb - 1):
            return v - (1 << cb)
        return v

    base = config["dst_base"]
    if config["flatten"]:
        return np.array([lane(words[base + i // lanes], i % lanes)
                         for i in range(c * rows * cols)])
    out = np.zeros(shape, dtype=np.int64)
    for m, e, f in itertools.product(range(c), range(rows), range(cols)):
        out[m, e, f] = lane(words[base + (m // lanes * rows + e) * cols + f], m % lanes)
    return out


def check_buffer(result, values, config, params):
    want, n = expected_buffer(result.junk, values, config, params)
    base = config["dst_base"]
    np.testing.assert_array_equal(np.array(result.words[base:base + n], dtype=object),
                                  np.array(want[base:base + n], dtype=object))
    assert result.words == want  # nothing outside the layer's words changed


# --------------------------------------------------------------------------------------------
# The model: thresholding after pooling equals pooling (max/min, OR/AND) after thresholding
# --------------------------------------------------------------------------------------------

def sign_channels(lo, hi):
    """(T, flip, constant) for every threshold position: one past each end, ties at each
    value, both directions, and the two constant channels."""
    rows = [(t, flip, False) for t in range(lo - 1, hi + 2) for flip in (False, True)]
    return rows + [(lo, False, True), (hi + 1, False, True)]


def level_channels(lo, hi, levels):
    """Every sorted threshold tuple in [lo - 1, hi + 1] (ascending; descending flipped) and
    the constant channels of every count."""
    rows = []
    for ts in itertools.combinations_with_replacement(range(lo - 1, hi + 2), levels):
        rows.append((list(ts), False, False))
        rows.append((list(ts[::-1]), True, False))
    for count in range(levels + 1):
        rows.append(([lo] * count + [hi + 1] * (levels - count), False, True))
    return rows


def windows(lo, hi, size):
    """Every size x size window of accumulators in [lo, hi]: [K, size, size]."""
    grid = np.array(list(itertools.product(range(lo, hi + 1), repeat=size * size)))
    return grid.reshape(-1, size, size)


def test_model_sign_of_max_is_or_and_of_signs():
    lo, hi = -4, 3
    win = windows(lo, hi, 2)                                         # [4096, 2, 2]
    for t, flip, constant in sign_channels(lo, hi):
        th = SignThreshold(np.array([t]), np.array([flip]), np.array([constant]), (lo, hi))
        pooled = ops.maxpool2d(win[:, None], 2)[:, :, 0, 0]          # [K, 1]
        golden = apply_sign_threshold(pooled, th, axis=1)[:, 0]
        bits = apply_sign_threshold(win.reshape(-1, 1, 4), th, axis=1)[:, 0] < 0  # 1 = -1
        # XNOR bits: -1 pooled iff all are -1 (AND), or any is (OR) where flipped
        pooled_bit = bits.any(axis=1) if flip else bits.all(axis=1)
        np.testing.assert_array_equal(golden < 0, pooled_bit)


def test_model_levels_of_max_is_max_or_min_of_levels():
    lo, hi = -2, 1
    win = windows(lo, hi, 2)                                         # [256, 2, 2]
    for ts, flip, constant in level_channels(lo, hi, 3):
        th = MultilevelThresholds(np.array([ts]), np.array([flip]), np.array([constant]), 2,
                                  (lo, hi))
        pooled = ops.maxpool2d(win[:, None], 2)[:, :, 0, 0]
        golden = apply_multilevel_thresholds(pooled, th, axis=1)[:, 0]
        codes = apply_multilevel_thresholds(win.reshape(-1, 1, 4), th, axis=1)[:, 0]
        np.testing.assert_array_equal(golden, codes.min(axis=1) if flip else codes.max(axis=1))


# --------------------------------------------------------------------------------------------
# RTL: every accumulator against every threshold position
# --------------------------------------------------------------------------------------------

def synthetic_entries(params, channels, out_bits):
    """Threshold-memory entries of (thresholds, flip, constant) rows, through
    ``threshold_entries`` of a layer that carries them."""
    th = np.array([np.atleast_1d(t) for t, _, _ in channels], dtype=np.int64)
    layer = _Carrier(thresholds=th, flip=np.array([f for _, f, _ in channels]),
                     constant=np.array([c for _, _, c in channels]),
                     acc_range=(-(1 << (params.acc_bits - 1)), (1 << (params.acc_bits - 1)) - 1),
                     output="sign" if out_bits == 1 else "levels")
    return threshold_entries(params, layer), layer


@dataclass
class _Carrier:
    """The fields of ``IntegerLayer`` that ``threshold_entries`` reads."""
    thresholds: np.ndarray
    flip: np.ndarray
    constant: np.ndarray
    acc_range: tuple
    output: str


def golden_codes(layer, acc, out_bits, out_min=0):
    """``IntegerLayer.activate``'s thresholds on accumulators [C, E, F]."""
    if out_bits == 1:
        th = SignThreshold(layer.thresholds[:, 0], layer.flip, layer.constant, layer.acc_range)
        return apply_sign_threshold(acc, th, axis=0)
    th = MultilevelThresholds(layer.thresholds, layer.flip, layer.constant, out_bits,
                              layer.acc_range)
    return out_min + apply_multilevel_thresholds(acc, th, axis=0)


def config_for(params, **fields):
    base = {"kind": OutputKind.SIGN, "out_bits": 1, "out_min": 0, "pool": 0, "rows": 1,
            "cols": 1, "channels": 1, "code": CodeFormat.XNOR, "lanes": 1, "flatten": 0,
            "dst_base": 0, "thr_base": 0}
    base.update(fields)
    return check_config(params, base)


@pytest.mark.parametrize("code, lanes, code_bits, max_out_bits", [
    (CodeFormat.XNOR, 19, 1, 1),     # 38 channels in 2 full words
    (CodeFormat.XNOR, 32, 2, 2),     # 2 words, 26 padded lanes; junk in the unused slots
    (CodeFormat.PM1, 3, 2, 1),       # 13 words, 1 padded lane
])
def test_sign_every_accumulator_every_threshold(code, lanes, code_bits, max_out_bits):
    acc_bits = 4
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    p = PostProcessorParams(acc_bits=acc_bits, max_channels=64, max_out_bits=max_out_bits,
                            max_pool=2, max_size=16, lanes=max(1, 32 // code_bits)
                            if code == CodeFormat.XNOR else 4, code_bits=code_bits, depth=256,
                            thr_depth=80)
    channels = sign_channels(lo, hi)
    entries, layer = synthetic_entries(p, channels, 1)
    c = len(channels)
    acc = np.broadcast_to(np.arange(lo, hi + 1), (c, 1, hi - lo + 1))   # every value, every channel
    cfg = config_for(p, rows=1, cols=hi - lo + 1, channels=c, code=code, lanes=lanes,
                     dst_base=5, thr_base=7)
    order = random_order(c, 1, hi - lo + 1, np.random.default_rng(1))
    result = simulate(p, cfg, entries, stream(acc, order), seed=2,
                      junk_slots=max_out_bits > 1)
    assert result.setup == setup_cycles(cfg)
    check_buffer(result, golden_codes(layer, acc, 1), cfg, p)


@pytest.mark.parametrize("out_min, code", [(0, CodeFormat.UNSIGNED), (-2, CodeFormat.SIGNED),
                                           (3, CodeFormat.UNSIGNED)])
def test_levels_every_accumulator_every_threshold(out_min, code):
    """2-bit levels (3 thresholds) in a unit built for 3 bits (junk in the other 4 slots):
    every sorted threshold triple with ties, flipped, constant; every 3-bit accumulator."""
    acc_bits = 3
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    p = PostProcessorParams(acc_bits=acc_bits, max_channels=512, max_out_bits=3, max_pool=2,
                            max_size=8, lanes=4, code_bits=3, depth=2048, xnor=False)
    channels = level_channels(lo, hi, 3)
    entries, layer = synthetic_entries(p, channels, 2)
    c = len(channels)
    acc = np.broadcast_to(np.arange(lo, hi + 1), (c, 1, hi - lo + 1))
    cfg = config_for(p, kind=OutputKind.LEVELS, out_bits=2, out_min=out_min, rows=1,
                     cols=hi - lo + 1, channels=c, code=code, lanes=3, dst_base=9)
    order = accelerator_order(c, 1, hi - lo + 1, 3)
    result = simulate(p, cfg, entries, stream(acc, order), seed=3, junk_slots=True)
    check_buffer(result, golden_codes(layer, acc, 2, out_min), cfg, p)


# --------------------------------------------------------------------------------------------
# RTL: pooling
# --------------------------------------------------------------------------------------------

def tile_windows(win):
    """[K, P, P] windows laid out as an image of K = n*n windows: [n*P, n*P]."""
    k, size, _ = win.shape
    n = round(k ** 0.5)
    return win.reshape(n, n, size, size).transpose(0, 2, 1, 3).reshape(n * size, n * size)


@pytest.mark.parametrize("code, flatten, filters_per_pe", [
    (CodeFormat.XNOR, 0, 1),          # back-to-back elements of one window: forwarding
    (CodeFormat.PM1, 1, 2),
])
def test_pool2_every_window_sign(code, flatten, filters_per_pe):
    """Every 2x2 window of 2-bit accumulators, every sign threshold position."""
    acc_bits = 2
    lo, hi = -2, 1
    image = tile_windows(windows(lo, hi, 2))                         # [32, 32]
    p = PostProcessorParams(acc_bits=acc_bits, max_channels=16, max_pool=2, max_size=32,
                            lanes=8, code_bits=2, depth=2048)
    channels = sign_channels(lo, hi)
    entries, layer = synthetic_entries(p, channels, 1)
    c = len(channels)
    acc = np.broadcast_to(image, (c,) + image.shape)
    cfg = config_for(p, pool=2, rows=16, cols=16, channels=c, code=code,
                     lanes=16 if code == CodeFormat.XNOR else 3, flatten=flatten, dst_base=3)
    order = accelerator_order(c, 32, 32, filters_per_pe)
    result = simulate(p, cfg, entries, stream(acc, order), seed=4, gap=0.1)
    golden = golden_codes(layer, ops.maxpool2d(acc, 2), 1)
    check_buffer(result, golden, cfg, p)


def test_pool2_every_window_levels_transparent_memory():
    acc_bits = 2
    lo, hi = -2, 1
    image = tile_windows(windows(lo, hi, 2))
    p = PostProcessorParams(acc_bits=acc_bits, max_channels=16, max_out_bits=2, max_pool=2,
                            max_size=32, lanes=4, code_bits=2, depth=512, xnor=False)
    rng = np.random.default_rng(5)
    channels = [c for c in level_channels(lo, hi, 3)]
    channels = [channels[i] for i in rng.choice(len(channels), 6, replace=False)]
    channels.append(([1, 0, -1], True, False))   # a flipped channel with a tie
    entries, layer = synthetic_entries(p, channels, 2)
    c = len(channels)
    acc = np.broadcast_to(image, (c,) + image.shape)
    cfg = config_for(p, kind=OutputKind.LEVELS, out_bits=2, pool=2, rows=16, cols=16,
                     channels=c, code=CodeFormat.SIGNED, out_min=-2, lanes=4, dst_base=0)
    order = random_order(c, 32, 32, rng)
    result = simulate(p, cfg, entries, stream(acc, order), seed=6, transparent=True)
    check_buffer(result, golden_codes(layer, ops.maxpool2d(acc, 2), 2, -2), cfg, p)


@pytest.mark.parametrize("rows, cols, pool", [(8, 8, 3), (9, 7, 2), (5, 6, 0)])
def test_pool_drops_past_last_window(rows, cols, pool):
    """Odd sizes: rows and columns past the last full window are dropped (pool 3 on 8x8
    keeps 6x6)."""
    acc_bits = 6
    rng = np.random.default_rng(rows * cols + pool)
    p = PostProcessorParams(acc_bits=acc_bits, max_channels=8, max_out_bits=2, max_pool=3,
                            max_size=9, lanes=2, code_bits=2, depth=128)
    lo, hi = -32, 31
    channels = [([int(t) for t in sorted(rng.integers(lo - 1, hi + 2, 3))][::-1 if f else 1],
                 bool(f), False) for f in (0, 1, 0, 1, 0)]
    entries, layer = synthetic_entries(p, channels, 2)
    c = len(channels)
    acc = rng.integers(lo, hi + 1, (c, rows, cols))
    pooled = ops.maxpool2d(acc, pool) if pool else acc
    cfg = config_for(p, kind=OutputKind.LEVELS, out_bits=2, pool=pool, rows=pooled.shape[1],
                     cols=pooled.shape[2], channels=c, code=CodeFormat.UNSIGNED, lanes=2,
                     dst_base=1)
    order = random_order(c, rows, cols, rng)
    result = simulate(p, cfg, entries, stream(acc, order), seed=7)
    check_buffer(result, golden_codes(layer, pooled, 2), cfg, p)


# --------------------------------------------------------------------------------------------
# RTL: whole layers of folded networks
# --------------------------------------------------------------------------------------------

def folded(name: str, signed_levels: bool = False) -> deploy.IntegerModel:
    """``name`` on digits shapes, folded from its initial weights with batch-norm
    statistics of 256 training images; every fifth gain negated (flipped channels) and one
    zero (a constant channel) per layer. ``signed_levels`` shifts every levels output to
    signed codes (``out_min = -2**(k-1)``) and has the DoReFa layers that take them run the
    same weight levels as ``int`` layers on signed inputs (their accumulators stay inside the
    folded range, so the thresholds still apply)."""
    ds = datasets.load_digits()
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=0)
    bns = [layer for layer in net.layers if type(layer).__name__ == "BatchNorm"]
    for bn in bns:
        bn.momentum = 0.0
    net.forward(ds.x_train[:256].astype(np.float64), training=True)
    for bn in bns:
        bn.params["gamma"][::5] *= -1
        bn.params["gamma"][3] = 0.0
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
    if signed_levels:
        for layer, nxt in zip(model.layers[:-1], model.layers[1:]):
            if layer.output == "levels":
                layer.out_min = -(1 << (layer.out_bits - 1))
                if nxt.scheme == "dorefa":
                    levels = quant.weight_level("dorefa", nxt.weights, nxt.w_bits)
                    nxt.scheme, nxt.weights = "int", levels
                    nxt.w_bits, nxt.a_bits = nxt.w_bits + 1, layer.out_bits
    return model


def params_for(model, *, lanes, code_bits, xnor):
    p = PostProcessorParams.for_model(model, lanes=lanes, code_bits=code_bits, depth=256)
    assert p.xnor == xnor
    return p


NETWORKS = {  # name: (lanes, code bits, xnor words, signed levels)
    "binarynet": (32, 1, True, False),
    "ternarynet": (4, 2, False, False),
    "dorefanet": (4, 4, False, False),
    "dorefanet-signed": (3, 4, False, True),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def network(request):
    name = request.param
    lanes, code_bits, xnor, signed_levels = NETWORKS[name]
    model = folded(name.split("-")[0], signed_levels)
    images = datasets.load_digits().x_test[:2]
    return name, model, deploy.run_integer(model, images), params_for(
        model, lanes=lanes, code_bits=code_bits, xnor=xnor)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_folded_layer(network, index):
    """Layer ``index`` of each network on two images: the array's order for one, a random
    order for the other."""
    _, model, trace, p = network
    layer = model.layers[index]
    nxt = model.layers[index + 1] if index + 1 < len(model.layers) else None
    thr_base = sum(layer.out_channels for layer in model.layers[:index])
    cfg = layer_config(p, layer, nxt, dst_base=7 + index, thr_base=thr_base)
    entries = threshold_entries(p, layer)
    acc = trace.layers[index].accumulators
    for image in range(len(acc)):
        channels, rows, cols = acc[image].shape
        rng = np.random.default_rng(image + 10 * index)
        order = array_order(layer) if image == 0 else random_order(channels, rows, cols, rng)
        result = simulate(p, cfg, entries, stream(acc[image], order), seed=image + index)
        assert result.setup == setup_cycles(cfg)
        if nxt is None:
            assert cfg["kind"] == OutputKind.SCORES
            assert result.scores == stream(acc[image], order)
            assert result.words == result.junk
            continue
        outputs = trace.layers[index].outputs[image]                 # +/-1 or codes
        shape = outputs.shape
        check_buffer(result, outputs, cfg, p)
        inputs = nxt.encode_inputs(trace.layers[index].outputs)[image]  # the next layer's
        if nxt.scheme == "xnor":
            words = inputs.reshape(-1)
            got = np.array(result.words[cfg["dst_base"]:cfg["dst_base"] + words.size])
            np.testing.assert_array_equal(got, words)
        else:
            np.testing.assert_array_equal(unpack(result.words, cfg, p, shape).reshape(-1),
                                          inputs.reshape(-1))


def test_network_configs_cover_the_formats(network):
    name, model, _, p = network
    codes = [layer_config(p, layer, nxt)["code"] for layer, nxt in
             zip(model.layers[:-1], model.layers[1:])]
    want = {"binarynet": CodeFormat.XNOR, "ternarynet": CodeFormat.PM1,
            "dorefanet": CodeFormat.UNSIGNED, "dorefanet-signed": CodeFormat.SIGNED}[name]
    assert codes == [want] * 3
    flat = [layer_config(p, layer, nxt)["flatten"] for layer, nxt in
            zip(model.layers[:-1], model.layers[1:])]
    assert flat == [0, 1, 1]
    assert [layer.pool for layer in model.layers] == [2, 2, 0, 0]
    assert any(layer.flip.any() and layer.constant.any() for layer in model.layers[:-1])


def test_params_for_model():
    """``for_model`` sizes every field from the layers (digits BinaryNet and DoReFa-Net)."""
    p = PostProcessorParams.for_model(folded("binarynet"))
    assert (p.acc_bits, p.thr_bits, p.max_channels, p.max_out_bits, p.max_pool,
            p.max_size) == (11, 12, 256, 1, 2, 8)
    # XNOR words of 32 lanes; the most words a layer writes: 16 (32 channels, 4x4), twice
    assert (p.lanes, p.code_bits, p.xnor, p.depth, p.thr_depth) == (32, 1, True, 32, 352)
    p = PostProcessorParams.for_model(folded("dorefanet"), lanes=4)
    # the scores layer (8-bit weights) is the widest; thresholds need the others' width + 1
    assert (p.acc_bits, p.thr_bits, p.max_out_bits, p.code_bits, p.xnor) == (20, 15, 3, 4,
                                                                             False)
    assert p.depth == 2 * (32 // 4) * 4 * 4      # layer 0: 8 words of channels at 4x4


# --------------------------------------------------------------------------------------------
# Timing, back-pressure and the interface
# --------------------------------------------------------------------------------------------

def test_latency_and_one_element_per_cycle():
    """Writes come WRITE_LATENCY cycles after each transfer, one per cycle, no stall."""
    p = PostProcessorParams(acc_bits=4, max_channels=4, max_pool=2, max_size=4, lanes=4,
                            code_bits=1, depth=16)
    cfg = config_for(p, pool=2, rows=2, cols=2, channels=4, code=CodeFormat.XNOR, lanes=4)
    acc = np.random.default_rng(0).integers(-8, 8, (4, 4, 4))
    order = accelerator_order(4, 4, 4, 1)
    top = PostProcessor(p)
    log = {"transfers": [], "writes": [], "reads": []}

    async def driver(ctx):
        ctx.set(top.config, cfg)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        await ctx.tick().until(top.i_stream.ready)
        for a, m, e, f in stream(acc, order):
            ctx.set(top.i_stream.valid, 1)
            ctx.set(top.i_stream.payload, {"acc": a, "m": m, "e": e, "f": f})
            await ctx.tick()
        ctx.set(top.i_stream.valid, 0)
        await ctx.tick().repeat(4)

    async def monitor(ctx):
        cycle = 0
        async for _, _, valid, ready, wen, ren in ctx.tick().sample(
                top.i_stream.valid, top.i_stream.ready, top.dst_write.en, top.dst_read.en):
            if valid and ready:
                log["transfers"].append(cycle)
            if wen:
                log["writes"].append(cycle)
            if ren:
                log["reads"].append(cycle)
            cycle += 1

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_process(monitor)
    sim.run()
    t = log["transfers"]
    assert t == list(range(t[0], t[0] + len(order)))                   # one per cycle
    assert log["writes"] == [c + WRITE_LATENCY for c in t]
    # three of the four elements of each window are read back, one cycle before the write
    assert len(log["reads"]) == 3 * len(order) // 4
    assert set(log["reads"]) <= {c + WRITE_LATENCY - 1 for c in t}


def test_scores_pass_through_with_back_pressure():
    p = PostProcessorParams(acc_bits=20, max_channels=16, max_pool=2, max_size=4, lanes=2,
                            code_bits=2, depth=8, xnor=False)
    rng = np.random.default_rng(8)
    acc = rng.integers(-(1 << 19), 1 << 19, (10, 1, 1))
    acc[0, 0, 0], acc[1, 0, 0] = -(1 << 19), (1 << 19) - 1
    cfg = config_for(p, kind=OutputKind.SCORES, channels=10)
    order = accelerator_order(10, 1, 1, 1)
    for out_ready in (1.0, 0.3):
        result = simulate(p, cfg, [], stream(acc, order), seed=9, gap=0.0,
                          out_ready=out_ready)
        assert result.scores == stream(acc, order)
        assert result.words == result.junk
        if out_ready < 1:
            assert result.stalls > 0   # the producer was held


def test_score_latency():
    p = PostProcessorParams(acc_bits=8, max_channels=4, max_size=2, max_pool=0)
    top = PostProcessor(p)
    seen = []

    async def bench(ctx):
        ctx.set(top.config, config_for(p, kind=OutputKind.SCORES, channels=4))
        ctx.set(top.o_stream.ready, 1)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        await ctx.tick().until(top.i_stream.ready)
        ctx.set(top.i_stream.valid, 1)
        ctx.set(top.i_stream.payload, {"acc": -77, "m": 3, "e": 0, "f": 0})
        await ctx.tick()
        ctx.set(top.i_stream.valid, 0)
        for cycle in range(1, 4):
            if ctx.get(top.o_stream.valid):
                seen.append((cycle, ctx.get(top.o_stream.payload.acc)))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(SCORE_LATENCY, -77)]


def test_two_layers_in_a_row_and_restart():
    """A second start reconfigures: the forwarding register and tables are per layer."""
    p = PostProcessorParams(acc_bits=4, max_channels=8, max_pool=2, max_size=4, lanes=8,
                            code_bits=1, depth=64)
    channels = [(t, bool(t % 2), False) for t in range(-3, 5)]
    entries, layer = synthetic_entries(p, channels, 1)
    rng = np.random.default_rng(11)
    acc = rng.integers(-8, 8, (8, 4, 4))
    for pool, flatten, lanes in ((2, 0, 8), (0, 1, 4), (2, 1, 3)):
        pooled = ops.maxpool2d(acc, 2) if pool else acc
        cfg = config_for(p, pool=pool, rows=pooled.shape[1], cols=pooled.shape[2], channels=8,
                         code=CodeFormat.XNOR, lanes=lanes, flatten=flatten, dst_base=2)
        result = simulate(p, cfg, entries, stream(acc, random_order(8, 4, 4, rng)),
                          seed=pool + lanes)
        check_buffer(result, golden_codes(layer, pooled, 1), cfg, p)


def test_interface():
    p = PostProcessorParams(acc_bits=10, max_channels=256, max_out_bits=3, max_pool=2,
                            max_size=8, lanes=4, code_bits=4, depth=64, thr_depth=512)
    dut = PostProcessor(p)
    sig = dut.signature.members
    assert set(sig) == {"config", "start", "busy", "thr_write", "i_stream", "o_stream",
                        "dst_write", "dst_read"}
    assert sig["config"].shape == PostConfig(p)
    assert list(PostConfig(p).members) == ["kind", "out_bits", "out_min", "pool", "rows",
                                           "cols", "channels", "code", "lanes", "flatten",
                                           "dst_base", "thr_base"]
    assert len(dut.dst_write.en) == 16 and len(dut.dst_write.data) == 16  # granularity 1
    assert len(dut.dst_write.addr) == 6 and len(dut.thr_write.addr) == 9
    assert len(dut.i_stream.payload.acc) == 10
    assert ThresholdEntry(p).size == 7 * 11 + 2
    no_xnor = replace(p, xnor=False)
    assert len(PostProcessor(no_xnor).dst_write.en) == 4             # one per lane


@pytest.mark.parametrize("field, value", [("acc_bits", 1), ("max_channels", 0),
                                          ("max_out_bits", 9), ("lanes", 0),
                                          ("depth", True), ("max_size", 2.0),
                                          ("thr_depth", 3), ("xnor", 1), ("thr_bits", 1),
                                          ("thr_bits", 10)])
def test_params_refused(field, value):
    good = {"acc_bits": 8, "max_channels": 4, "max_size": 4, "lanes": 2, "code_bits": 2}
    with pytest.raises(ValueError, match=field):
        PostProcessorParams(**{**good, field: value})


def test_layer_config_refusals():
    model = folded("binarynet")
    layers = model.layers
    small = PostProcessorParams(acc_bits=8, max_channels=256, max_size=8, lanes=32, depth=64)
    with pytest.raises(ValueError, match="accumulator width 11"):
        layer_config(small, layers[0], layers[1])
    p = params_for(model, lanes=32, code_bits=1, xnor=True)
    with pytest.raises(ValueError, match="needs thr_bits >= 12, not 11"):
        layer_config(replace(p, thr_bits=11), layers[0], layers[1])
    with pytest.raises(ValueError, match="needs the next layer"):
        layer_config(p, layers[0])
    with pytest.raises(ValueError, match="last layer"):
        layer_config(p, layers[3], layers[0])
    with pytest.raises(ValueError, match="config lanes"):
        layer_config(p, layers[0], layers[1], lanes=33)
    with pytest.raises(ValueError, match="takes 256 channels, this layer gives 512"):
        layer_config(p, layers[0], layers[2])
    with pytest.raises(ValueError, match="config dst_base"):
        layer_config(p, layers[0], layers[1], dst_base=p.depth - 1)
    with pytest.raises(ValueError, match="code_bits >= 2"):
        layer_config(p, layers[0], replace(layers[1], scheme="ternary", a_bits=2))
    pooled_scores = replace(layers[3], pool=2)
    with pytest.raises(ValueError, match="scores layer with pool 2"):
        layer_config(p, pooled_scores)


def test_threshold_entries_refusals():
    model = folded("binarynet")
    layer = model.layers[0]
    p = params_for(model, lanes=32, code_bits=1, xnor=True)
    narrow = replace(p, thr_bits=6)
    with pytest.raises(ValueError, match="does not fit 6 signed bits"):
        threshold_entries(narrow, layer)
    broken = replace(layer, constant=np.ones_like(layer.constant))
    with pytest.raises(ValueError, match="marked constant"):
        threshold_entries(p, broken)
    entries = threshold_entries(p, layer)
    const = int(np.flatnonzero(layer.constant)[0])
    lo = layer.acc_range[0]
    assert entries[const]["thresholds"][0] == int(lo >= layer.thresholds[const, 0])
