# amaranth: UnusedElaboratable=no
"""Per-layer datapath modes: one PE for several schemes (``hw.schedule.Datapath``,
``hw.lanes.ModeDot``, the array's per-mode zero lanes, ``sim.run_layer`` on one multi-mode
accelerator).

Every mode's dot against ``model.ops.lane_dot`` (exhaustively on small words), a PE's dots in
each mode, and whole layers of every mode back to back on one accelerator: outputs equal
``model.ops`` and counters equal ``sim.cycle_model.predict`` with the mode's lanes.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.lanes import LaneDot, ModeDot, mode_groups
from hw.pe import PE
from hw.schedule import (CONFIG_FIELDS, AcceleratorConfig, Datapath, check_modes,
                         config_limits)
from model.compress import codebook_conv2d
from model.layer_file import Layer
from model.ops import conv2d, lane_dot, lane_dot_range, signed_width
from model.quant import activation_code_range, to_unsigned_bits, weight_code_range
from sim.cycle_model import ArrayParams, predict
from sim.run_layer import (accelerator_config, layer_codes, layer_modes, layer_shape,
                           mode_params, run_layers)


def pack(codes, bits):
    return sum(int(to_unsigned_bits(c, bits)) << (lane * bits) for lane, c in enumerate(codes))


def code_ranges(d: Datapath):
    if d.scheme == "xnor":
        return (0, 1), (0, 1)
    if d.codebook is not None:
        return (0, (1 << d.a_bits) - 1), (0, len(d.codebook) - 1)
    return activation_code_range(d.scheme, d.a_bits), weight_code_range(d.scheme, d.w_bits)


def dot_outputs(dot: ModeDot, cases):
    """``dot.p`` for each ``(mode, a codes, w codes, idle)``."""
    out = []

    async def testbench(ctx):
        for mode, a, w, idle in cases:
            d = dot.modes[mode]
            if len(dot.modes) > 1:
                ctx.set(dot.mode, mode)
            ctx.set(dot.a, pack(a, d.a_bits))
            ctx.set(dot.w, pack(w, d.w_bits))
            if hasattr(dot, "idle"):
                ctx.set(dot.idle, idle)
            await ctx.delay(1e-9)
            out.append(ctx.get(dot.p))

    sim = Simulator(dot)
    sim.add_testbench(testbench)
    sim.run()
    return out


def every_pair(d: Datapath):
    (alo, ahi), (wlo, whi) = code_ranges(d)
    a_words = itertools.product(range(alo, ahi + 1), repeat=d.lanes)
    w_words = list(itertools.product(range(wlo, whi + 1), repeat=d.lanes))
    return [(a, w) for a in a_words for w in w_words]


#: Small mode sets (equal activation words), each mode's every code pair is tried.
SMALL_SETS = {
    "binary+xnor": (Datapath("binary", 2, 2), Datapath("xnor", 4, 1)),
    "sign family": (Datapath("ternary", 2, 2), Datapath("pow2", 2, 2),
                    Datapath("binary", 2, 2)),
    "codebook+binary": (Datapath("dorefa", 2, 2, 2, (-3, 0, 1, 2)), Datapath("binary", 1, 4)),
    "dorefa+int+xnor": (Datapath("dorefa", 2, 1, 2), Datapath("int", 1, 2, 2),
                        Datapath("xnor", 2, 1)),
}


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("name", list(SMALL_SETS))
def test_every_mode_gives_its_lane_dot_for_every_code_pair(name, share):
    modes = SMALL_SETS[name]
    dot = ModeDot(modes, share=share)
    cases, want = [], []
    for k, d in enumerate(modes):
        for a, w in every_pair(d):
            cases.append((k, a, w, 0))
            want.append(int(lane_dot(d.scheme, np.array(a), np.array(w), a_bits=d.a_bits,
                                     w_bits=d.w_bits, codebook=d.codebook)))
    assert dot_outputs(dot, cases) == want
    lo = min(lane_dot_range(d.scheme, lanes=d.lanes, a_bits=d.a_bits, w_bits=d.w_bits,
                            codebook=d.codebook)[0] for d in modes)
    hi = max(lane_dot_range(d.scheme, lanes=d.lanes, a_bits=d.a_bits, w_bits=d.w_bits,
                            codebook=d.codebook)[1] for d in modes)
    assert dot.p_shape.width == signed_width(lo, hi)
    assert min(want) == lo and max(want) == hi


def test_a_narrow_mode_reads_the_low_bits_of_the_weight_word():
    """Binary weights sit in the low 2 bits of the 4-bit word; the high bits (garbage here)
    change nothing."""
    modes = SMALL_SETS["binary+xnor"]
    dot = ModeDot(modes)
    rng = np.random.default_rng(5)
    cases, want = [], []
    for a, w in every_pair(modes[0]):
        garbage = int(rng.integers(0, 4)) << 2
        cases.append((0, a, w, garbage))
        want.append(int(lane_dot("binary", np.array(a), np.array(w), a_bits=2)))
    out = []

    async def testbench(ctx):
        for _, a, w, garbage in cases:
            ctx.set(dot.mode, 0)
            ctx.set(dot.a, pack(a, 2))
            ctx.set(dot.w, pack(w, 1) | garbage)
            await ctx.delay(1e-9)
            out.append(ctx.get(dot.p))

    sim = Simulator(dot)
    sim.add_testbench(testbench)
    sim.run()
    assert out == want


def test_padded_xnor_lanes_are_taken_out_in_the_xnor_mode():
    modes = (Datapath("binary", 4, 8), Datapath("xnor", 32, 1))
    dot = ModeDot(modes, stages=0)
    rng = np.random.default_rng(1)
    cases, want = [], []
    for real in (1, 7, 31, 32):
        for _ in range(20):
            a = list(rng.integers(0, 2, real)) + [0] * (32 - real)
            w = list(rng.integers(0, 2, real)) + [0] * (32 - real)
            cases.append((1, a, w, 32 - real))
            want.append(int(lane_dot("xnor", np.array(a), np.array(w), a_bits=1, real=real)))
    assert dot_outputs(dot, cases) == want


def test_sign_family_modes_share_one_lane_dot_and_others_have_their_own():
    family = SMALL_SETS["sign family"]
    assert [(h.scheme, m) for h, m in mode_groups(family)] == [("pow2", (0, 1, 2))]
    assert len(mode_groups(family, share=False)) == 3
    pair = (Datapath("binary", 4, 8), Datapath("xnor", 32, 1))
    assert [m for _, m in mode_groups(pair)] == [(0,), (1,)]
    # different lanes or activation widths do not share
    assert len(mode_groups((Datapath("ternary", 1, 8), Datapath("binary", 2, 4)))) == 2


def test_one_mode_is_the_plain_lane_dot():
    d = Datapath("ternary", 4, 3)
    dot = ModeDot((d,))
    assert not hasattr(dot, "mode") and not hasattr(dot, "idle")
    plain = LaneDot("ternary", lanes=4, a_bits=3)
    assert dot.p_shape == plain.p_shape and len(dot.w) == len(plain.w)
    pe = PE("ternary", lanes=4, a_bits=3, acc_bits=12)
    assert not hasattr(pe, "c_mode") and not hasattr(pe, "c_idle")
    Fragment.get(pe, None)


# ---- the PE: dots in each mode --------------------------------------------------------------

def test_a_pe_adds_each_slot_in_the_layer_mode():
    """A two-mode PE (ternary A4 x2, pow2 A4 x2 ... and binary) runs dots in every mode: each
    finished dot is the value from above plus the lane dots of its valid slots."""
    modes = (Datapath("ternary", 2, 4), Datapath("xnor", 8, 1), Datapath("pow2", 2, 4))
    rng = np.random.default_rng(7)
    spad = 8
    pe = PE("ternary", lanes=2, a_bits=4, acc_bits=14, ifmap_spad=spad,
            more_modes=modes[1:])
    words = rng.integers(0, 256, spad)          # 8-bit activation words, read in every mode
    dots, expected = [], []
    for mode in (0, 1, 2, 1, 0, 2):
        d = modes[mode]
        (_, _), (wlo, whi) = code_ranges(d)
        slots = [(int(rng.integers(0, spad)), rng.integers(wlo, whi + 1, d.lanes),
                  bool(rng.random() < 0.8)) for _ in range(int(rng.integers(1, 5)))]
        above = int(rng.integers(-500, 500))
        total = above
        for addr, w, valid in slots:
            bits = int(words[addr])
            a = [(bits >> (lane * d.a_bits)) & ((1 << d.a_bits) - 1) for lane in range(d.lanes)]
            if d.scheme != "xnor":
                a = [v - (1 << d.a_bits) if v >> (d.a_bits - 1) else v for v in a]
            if valid:
                total += int(lane_dot(d.scheme, np.array(a), np.array(w), a_bits=d.a_bits,
                                      w_bits=d.w_bits))
        dots.append((mode, slots, above))
        expected.append(total)
    got = []

    async def testbench(ctx):
        ctx.set(pe.i_clear, 1)
        await ctx.tick()
        ctx.set(pe.i_clear, 0)
        for addr in range(spad):
            ctx.set(pe.i_take, 1)
            ctx.set(pe.i_addr, addr)
            ctx.set(pe.i_data, int(words[addr]))
            await ctx.tick()
        ctx.set(pe.i_take, 0)
        for mode, slots, above in dots:
            d = modes[mode]
            ctx.set(pe.c_mode, mode)
            for n, (addr, w, valid) in enumerate(slots):
                ctx.set(pe.c_iaddr, addr)
                ctx.set(pe.c_valid, valid)
                ctx.set(pe.c_first, n == 0)
                ctx.set(pe.c_last, n == len(slots) - 1)
                await ctx.tick()
                ctx.set(pe.w_word, pack(w, d.w_bits))
                ctx.set(pe.above, above)
                ctx.set(pe.c_valid, 0)
                ctx.set(pe.c_first, 0)
                ctx.set(pe.c_last, 0)
            await ctx.tick()
            await ctx.tick()
            got.append(ctx.get(pe.psum))

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert got == expected


# ---- configuration -------------------------------------------------------------------------

def test_modes_of_a_config_and_their_limits():
    c = AcceleratorConfig(scheme="binary", lanes=4, a_bits=8,
                          more_modes=[{"scheme": "xnor", "lanes": 32, "a_bits": 1}])
    assert c.modes == (Datapath("binary", 4, 8), Datapath("xnor", 32, 1))
    assert (c.a_word_bits, c.w_word_bits, c.max_lanes) == (32, 32, 32)
    assert c.mode_of("xnor", a_bits=1) == 1 and c.mode_of("binary", a_bits=8) == 0
    limits = config_limits(c)
    assert limits["mode"] == 1 and limits["n_last"] == 32
    assert "mode" in CONFIG_FIELDS
    assert config_limits(c.replace(more_modes=()))["mode"] == 0
    assert AcceleratorConfig.from_dict(c.to_dict()) == c
    pair = AcceleratorConfig(scheme="dorefa", lanes=4, a_bits=2, w_bits=2,
                             codebook=(-3, 0, 1, 2), more_modes=(Datapath("binary", 1, 8),))
    assert pair.w_word_bits == 8 and pair.min_acc_bits == max(
        d.min_acc_bits for d in pair.modes)
    assert AcceleratorConfig.from_dict(pair.to_dict()) == pair


@pytest.mark.parametrize("more, message", [
    ([Datapath("xnor", 16, 1)], r"mode 1 \(xnor A1 W1 x16 lanes\) has 16-bit activation "
                                r"words, mode 0 \(binary A8 W1 x4 lanes\) 32-bit; allowed: "
                                r"every mode's lanes \* a_bits = 32"),
    ([Datapath("binary", 4, 8)], r"modes 0 and 1 are the same \(binary A8 W1 x4 lanes\)"),
    ("xnor", r"more_modes must be a sequence of Datapath, not 'xnor'"),
    ([{"scheme": "xnor", "lane": 32}], r"unknown mode parameter\(s\) lane; allowed:"),
    ([{"scheme": "xnor", "lanes": 3, "a_bits": 1}], r"lanes must be one of 1, 2, 4"),
])
def test_bad_modes_are_refused_in_one_line(more, message):
    with pytest.raises(ValueError, match=message):
        AcceleratorConfig(scheme="binary", lanes=4, a_bits=8, more_modes=more)


def test_bad_datapaths_name_the_value():
    with pytest.raises(ValueError, match="xnor codes are 1 bit per lane: a_bits must be 1"):
        Datapath("xnor", 8, 8)
    with pytest.raises(ValueError, match="a codebook needs the table-look-up scheme"):
        Datapath("ternary", 2, 4, codebook=(0, 1, -1, 0))
    with pytest.raises(ValueError, match="codebook must have 2\\^2 = 4 levels, not 3"):
        Datapath("dorefa", 2, 4, 2, codebook=(0, 1, 2))
    with pytest.raises(ValueError, match="unknown scheme|scheme"):
        Datapath("float", 2, 4)
    with pytest.raises(ValueError, match="no mode of the accelerator runs ternary A8 W2; its "
                                         "modes: binary A8 W1 x4 lanes"):
        AcceleratorConfig(scheme="binary", lanes=4).mode_of("ternary", a_bits=8)
    with pytest.raises(ValueError, match=r"mode must be an integer in \[0, 0\]"):
        ArrayParams.of(AcceleratorConfig(), mode=1)


# ---- whole layers of several modes on one accelerator ---------------------------------------

def make_layer(rng, kind, shape, *, extreme=None):
    """A random layer of ``kind`` = (scheme, a_bits, w_bits, codebook); ``extreme``: every
    code at its lowest ("lo") or highest ("hi") value, or every weight level 0 ("zero")."""
    scheme, a_bits, w_bits, codebook = kind
    M, C, R, S, H, W, U, P = shape
    if codebook is not None:
        wlo, whi = 0, len(codebook) - 1
        alo, ahi = 0, (1 << a_bits) - 1
    else:
        (wlo, whi) = weight_code_range(scheme, w_bits)
        (alo, ahi) = activation_code_range(scheme, a_bits)
    w = rng.integers(wlo, whi + 1, size=(M, C, R, S))
    a = rng.integers(alo, ahi + 1, size=(C, H, W))
    if extreme == "lo":
        w[:], a[:] = wlo, alo
    elif extreme == "hi":
        w[:], a[:] = whi, ahi
    elif extreme == "zero":
        w[:] = 0 if codebook is None else list(codebook).index(0)
    return Layer(scheme, w, a, U, P, a_bits=a_bits, w_bits=w_bits,
                 codebook=None if codebook is None else np.array(codebook))


def golden(layer: Layer) -> np.ndarray:
    if layer.codebook is not None:
        return codebook_conv2d(layer.inputs, layer.weights, layer.codebook, stride=layer.stride,
                               padding=layer.padding, a_bits=layer.a_bits)
    return conv2d(layer.scheme, layer.inputs, layer.weights, stride=layer.stride,
                  padding=layer.padding, a_bits=layer.a_bits, w_bits=layer.w_bits)


def check_back_to_back(layers, params):
    runs = run_layers(layers, params=params)
    config = accelerator_config(layers, params, [r.mapping for r in runs])
    for index, (layer, run) in enumerate(zip(layers, runs)):
        mode, mine = mode_params(config, layer, params)
        assert run.params == mine
        np.testing.assert_array_equal(run.outputs, golden(layer), err_msg=f"layer {index}")
        model = predict(layer_shape(layer), mine, run.mapping, weights=layer_codes(layer)[0],
                        scheme=layer.scheme, codebook=layer.codebook)
        assert run.counters == {k: model[k] for k in run.counters}, f"layer {index}"
    return config, runs


PARAMS = ArrayParams(rows=2, cols=3, lanes=4, filter_spad=16, ifmap_spad=16)
SHAPES = [(2, 5, 3, 3, 5, 5, 1, 1),    # padding, C not a multiple of the lanes
          (3, 2, 2, 2, 4, 6, 2, 0),    # stride 2
          (2, 9, 1, 1, 1, 1, 1, 0)]    # dense

#: (scheme, a_bits, w_bits, codebook) per mode set; xnor layers in channels (packed 1-bit)
PAIRS = {
    "binarynet": [("binary", 8, 1, None), ("xnor", 1, 1, None)],
    "ternary+pow2": [("ternary", 8, 2, None), ("pow2", 8, 3, None)],
    "codebook+binary": [("binary", 8, 1, None), ("dorefa", 2, 2, (-3, 0, 1, 2))],
}


def xnor_layer(rng, shape, extreme=None):
    """An xnor layer file (its words pack ``C`` 1-bit channels; ``layer_codes`` unpacks)."""
    M, C, R, S, H, W, U, P = shape
    lanes = C
    w = rng.integers(0, 1 << lanes, size=(M, 1, R, S))
    a = rng.integers(0, 1 << lanes, size=(1, H, W))
    if extreme == "lo":
        w[:], a[:] = 0, (1 << lanes) - 1
    elif extreme == "hi":
        w[:], a[:] = 0, 0
    return Layer("xnor", w, a, U, P, a_bits=lanes, w_bits=lanes)


def layers_of(name, seed):
    rng = np.random.default_rng(seed)
    layers = []
    for k, shape in enumerate(SHAPES):
        for kind in PAIRS[name]:
            extreme = ("lo", "hi", None)[k]
            if kind[0] == "xnor":
                layers.append(xnor_layer(rng, shape, extreme))
            else:
                layers.append(make_layer(rng, kind, shape, extreme=extreme))
    return layers


@pytest.mark.parametrize("name", list(PAIRS))
def test_layers_of_each_mode_back_to_back_on_one_accelerator(name):
    layers = layers_of(name, seed=len(name))
    config, runs = check_back_to_back(layers, PARAMS)
    assert len(config.modes) == 2
    assert config.a_word_bits == PARAMS.lanes * 8
    assert {run.params.lanes for run in runs} == {d.lanes for d in config.modes}


def test_a_mode_that_skips_counts_its_zero_lanes_beside_one_that_does_not():
    rng = np.random.default_rng(11)
    shape = (2, 6, 3, 3, 4, 4, 1, 1)
    layers = [make_layer(rng, ("ternary", 8, 2, None), shape, extreme="zero"),
              make_layer(rng, ("binary", 8, 1, None), shape),
              make_layer(rng, ("ternary", 8, 2, None), shape),
              make_layer(rng, ("dorefa", 2, 2, (-3, 0, 1, 2)), (2, 7, 3, 3, 4, 4, 1, 1),
                         extreme="zero")]
    config, runs = check_back_to_back(layers, PARAMS)
    assert len(config.modes) == 3
    assert runs[0].counters["skipped"] == runs[0].counters["macs"] > 0
    assert runs[1].counters["skipped"] == 0
    assert runs[3].counters["skipped"] == runs[3].counters["macs"] > 0


def test_one_kind_of_layer_gives_a_one_mode_accelerator():
    rng = np.random.default_rng(2)
    layers = [make_layer(rng, ("ternary", 4, 2, None), s) for s in SHAPES[:2]]
    config = accelerator_config(layers, PARAMS)
    assert config.more_modes == () and config.lanes == PARAMS.lanes


def test_layers_that_cannot_fill_one_activation_word_are_refused_in_one_line():
    rng = np.random.default_rng(3)
    layers = [make_layer(rng, ("ternary", 8, 2, None), SHAPES[0]),
              make_layer(rng, ("pow2", 3, 3, None), SHAPES[0])]
    with pytest.raises(ValueError, match="pow2 layers with 3-bit activations cannot fill the "
                                         "32-bit activation words"):
        layer_modes(layers, 4)
    wide = [make_layer(rng, ("binary", 8, 1, None), SHAPES[0]),
            xnor_layer(rng, SHAPES[0])]
    with pytest.raises(ValueError, match="allowed: word / a_bits in 1, 2, 4, 8, 16, 32, 64"):
        layer_modes(wide, 16)


@pytest.mark.parametrize("seed", range(4))
def test_random_mode_sets_and_layers(seed):
    rng = np.random.default_rng(100 + seed)
    kinds = [("binary", 8, 1, None), ("ternary", 8, 2, None), ("pow2", 8, 3, None),
             ("dorefa", 4, 2, None), ("int", 8, 4, None), ("xnor", 1, 1, None)]
    chosen = [kinds[i] for i in rng.choice(len(kinds), 3, replace=False)]
    params = ArrayParams(rows=int(rng.integers(1, 4)), cols=int(rng.integers(1, 4)),
                         lanes=2, filter_spad=16, ifmap_spad=16,
                         tree_stages=int(rng.integers(0, 3)))
    layers = []
    for _ in range(5):
        kind = chosen[int(rng.integers(0, 3))]
        R, S = (int(v) for v in rng.integers(1, 4, 2))
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 12)), R, S,
                 int(rng.integers(R, 7)), int(rng.integers(S, 7)), 1, int(rng.integers(0, 2)))
        layers.append(xnor_layer(rng, shape) if kind[0] == "xnor"
                      else make_layer(rng, kind, shape))
    check_back_to_back(layers, params)


def test_check_modes_keeps_mode_zero_first():
    modes = check_modes([Datapath("ternary", 1, 8), Datapath("dorefa", 4, 2, 2)])
    assert modes[0].scheme == "ternary" and len(modes) == 2
