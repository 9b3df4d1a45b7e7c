"""Grouped and depthwise convolution on ``hw.accelerator.Accelerator`` (Amaranth simulator).

The controller runs a grouped layer's groups one after the other (``AcceleratorConfig.groups``,
configuration fields ``groups``, ``grp_inputs``, ``grp_psums``). Every output is compared
with ``model.ops.conv2d(..., groups=G)`` and every counter with ``sim.cycle_model.predict``,
exactly, over shapes that cover each folding case within a group (row folds, a short last
row fold, column folds, segments, several filter groups, channel words with idle lanes).
"""

import dataclasses

import numpy as np
import pytest

from hw.schedule import AcceleratorConfig, config_limits
from model.layer_file import Layer
from sim.cycle_model import (ArrayParams, LayerShape, Mapping, check_mappable, choose_mapping,
                             config_values, group_shape, lane_packing, memory_depths,
                             output_stream_order, predict, weight_word_order)
from sim.run_layer import (Job, accelerator_config, check_job, config_beats, layer_shape,
                           pack_groups, plan, run_layers)
from tests.conftest import assert_run_exact, golden, random_codes

#: (a_bits, w_bits) per scheme (xnor: the layer file's packing lanes, per group)
WIDTHS = {"binary": (4, 1), "xnor": (4, 4), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 2), "int": (4, 4)}

#: (M, C, R, S, H, W, stride, padding, groups)
SHAPES = [
    (4, 4, 3, 3, 6, 6, 1, 1, 4),     # depthwise 3x3, padding 1
    (6, 6, 3, 3, 7, 9, 2, 1, 6),     # depthwise, stride 2, E > cols
    (4, 8, 3, 3, 7, 6, 1, 1, 2),     # G = 2: four channels per group, row folds per group
    (6, 4, 1, 1, 4, 5, 1, 0, 2),     # grouped 1x1 (ShuffleNet), three filters per group
    (2, 6, 2, 3, 6, 10, 1, 0, 2),    # rectangular filter, a short last row fold
    (3, 3, 5, 3, 7, 6, 1, 2, 3),     # R > rows, padding 2: depthwise row folds
]

PARAMS = ArrayParams(rows=3, cols=4, lanes=1, filter_spad=16, ifmap_spad=16)


def grouped_layer(rng, scheme, shape) -> Layer:
    M, C, R, S, H, W, U, P, G = shape
    a_bits, w_bits = WIDTHS[scheme]
    weights, inputs = random_codes(rng, scheme, (M, C // G, R, S), (C, H, W),
                                   a_bits=a_bits, w_bits=w_bits)
    return Layer(scheme, weights, inputs, U, P, a_bits=a_bits, w_bits=w_bits, groups=G)


def check(layers, params):
    runs = run_layers(layers, params=params)
    for layer, run in zip(layers, runs):
        assert run.params.groups >= layer.groups
        assert_run_exact(layer, run.outputs, run.counters, run.params, run.mapping)


@pytest.mark.parametrize("scheme", ["ternary", "binary", "xnor"])
def test_grouped_layers_bit_exact_with_exact_counters(scheme):
    rng = np.random.default_rng(16)
    check([grouped_layer(rng, scheme, shape) for shape in SHAPES], PARAMS)


@pytest.mark.parametrize("scheme", ["pow2", "dorefa", "int"])
def test_the_other_schemes_come_for_free(scheme):
    rng = np.random.default_rng(17)
    check([grouped_layer(rng, scheme, shape) for shape in SHAPES[:3]], PARAMS)


@pytest.mark.parametrize("lanes, rows, cols, spad", [(2, 3, 4, 16), (4, 2, 3, 8),
                                                     (1, 4, 2, 8)])
def test_lanes_array_sizes_and_small_scratchpads(lanes, rows, cols, spad):
    # three channels per group on 2 or 4 lanes: every group's last word has idle lanes
    rng = np.random.default_rng(lanes * 10 + rows)
    shapes = [(6, 6, 3, 3, 7, 9, 1, 1, 2), (4, 8, 3, 3, 9, 6, 2, 1, 2),
              (6, 6, 3, 3, 5, 5, 2, 1, 6)]
    params = ArrayParams(rows=rows, cols=cols, lanes=lanes, filter_spad=spad, ifmap_spad=spad)
    check([grouped_layer(rng, "ternary", shape) for shape in shapes], params)


def test_every_mapping_of_a_grouped_layer():
    rng = np.random.default_rng(5)
    layer = grouped_layer(rng, "ternary", (4, 8, 3, 3, 6, 8, 1, 1, 2))
    shape = LayerShape.of(layer.weights.shape, layer.inputs.shape, 1, 1, 2)
    params = dataclasses.replace(PARAMS, groups=2)
    from sim.cycle_model import mappings
    # each (q, p) with its longest and its shortest segments
    chosen = {}
    for mp in mappings(shape, params):
        chosen.setdefault((mp.q, mp.p, "long"), mp)
        chosen[(mp.q, mp.p, "short")] = mp
    chosen = list(dict.fromkeys(chosen.values()))
    assert {mp.q for mp in chosen} == {1, 2, 4} and {mp.p for mp in chosen} == {1, 2}
    runs = run_layers([layer] * len(chosen), params=params, mappings=chosen)
    for mp, run in zip(chosen, runs):
        assert_run_exact(layer, run.outputs, run.counters, params, mp)


def test_grouped_and_ungrouped_layers_share_one_accelerator():
    # the group loop costs an ungrouped layer nothing: same cycles as without it
    rng = np.random.default_rng(7)
    plain = grouped_layer(rng, "ternary", (3, 2, 3, 3, 6, 7, 1, 1, 1))
    dw = grouped_layer(rng, "ternary", (4, 4, 3, 3, 6, 6, 1, 1, 4))
    check([plain, dw, plain], PARAMS)
    alone = run_layers([plain], params=PARAMS)[0]
    shared = run_layers([plain, dw], params=PARAMS)[0]
    assert shared.params.groups == 4 and alone.params.groups == 1
    assert shared.counters == alone.counters


def test_the_cycle_model_of_groups_one_after_the_other():
    # every count but the cycles is the groups' sum; the groups overlap (double-buffered
    # loads across group changes), so the layer takes fewer cycles than the groups apart
    params = dataclasses.replace(PARAMS, groups=64)
    for shape in [LayerShape(32, 32, 3, 3, 8, 8, 1, 1, 32),
                  LayerShape(64, 64, 3, 3, 8, 8, 2, 1, 64),
                  LayerShape(12, 24, 1, 1, 5, 5, 1, 0, 3), LayerShape(4, 8, 3, 3, 7, 6, 1, 1, 2)]:
        mp = choose_mapping(shape, params)
        whole = predict(shape, params, mp)
        one = predict(group_shape(shape), PARAMS, mp)
        G = shape.groups
        for name in ("slots", "last_slots", "filter_reads", "filter_writes", "input_writes",
                     "array_transfers", "glb_reads", "glb_writes", "offchip_words", "macs"):
            assert whole[name] == G * one[name], (shape, name)
        assert one["cycles"] < whole["cycles"] < G * one["cycles"], shape


def test_stream_orders_and_depths_of_a_grouped_layer():
    shape = LayerShape(M=4, C=6, R=2, S=2, H=3, W=3, groups=2)   # 3 channels per group
    params = ArrayParams(rows=3, cols=4, lanes=2, filter_spad=16, ifmap_spad=16, groups=2)
    mp = Mapping(q=1, p=1, Fseg=2)
    order = weight_word_order(shape, params, mp)
    idx = np.arange(4 * 2 * 2 * 2).reshape(4, 2, 2, 2)           # [M, Cw_g, R, S]
    # group 0 (filters 0, 1), unit (cg 0, r 0): filter 0's taps, filter 1's; ... group 1 after
    assert list(order[:4]) == [idx[0, 0, 0, 0], idx[0, 0, 0, 1], idx[1, 0, 0, 0],
                               idx[1, 0, 0, 1]]
    assert list(order[16:18]) == [idx[2, 0, 0, 0], idx[2, 0, 0, 1]]
    assert sorted(order) == list(range(idx.size))
    assert sorted(output_stream_order(shape, params, mp)) == list(range(4 * 2 * 2))
    # inputs: two groups of two words; weights: every group's row folds; psums: all filters
    assert memory_depths(shape, params, mp) == (2 * 2 * 9, 2 * 2 * 2 * 2, 1 * 4 * 2)
    values = config_values(shape, params, mp)
    assert (values["groups"], values["grp_inputs"], values["grp_psums"]) == (2, 18, 4)
    assert (values["n_inputs"], values["GiFp"], values["MqS"], values["n_last"]) == \
        (36, 8, 4, 1)
    plain = config_values(LayerShape(4, 6, 2, 2, 3, 3), params, mp)
    assert (plain["groups"], plain["grp_inputs"], plain["grp_psums"]) == (1, 0, 0)


def test_more_groups_than_the_accelerator_runs_are_refused():
    shape = LayerShape(8, 8, 3, 3, 6, 6, 1, 1, 8)
    with pytest.raises(ValueError, match=r"^grouped convolution \(groups 8\) does not run on "
                       r"the array; allowed: groups up to 4 \(AcceleratorConfig.groups\)$"):
        check_mappable(shape, dataclasses.replace(PARAMS, groups=4))
    rng = np.random.default_rng(2)
    layer = grouped_layer(rng, "ternary", (8, 8, 3, 3, 6, 6, 1, 1, 8))
    _, _, job = plan(layer, dataclasses.replace(PARAMS, groups=8))
    small = accelerator_config([layer], dataclasses.replace(PARAMS, groups=8)).replace(groups=4)
    assert config_limits(small)["groups"] == 4
    with pytest.raises(ValueError, match=r"configuration field groups .* = 8; allowed: at "
                       r"most 4$"):
        check_job(small, job)
    with pytest.raises(ValueError, match=r"groups must be an integer in \[1, 65536\], not 0"):
        AcceleratorConfig(groups=0)
    # an accelerator without the group loop (groups 1) takes ungrouped layers only
    plain = config_values(LayerShape(2, 2, 3, 3, 6, 6), PARAMS, Mapping(1, 1, 6))
    check_job(AcceleratorConfig(rows=3, cols=4, filter_spad=16, ifmap_spad=16),
              Job(config_beats(plain), [], [], 0, 0))


@pytest.mark.parametrize("scheme", ["ternary", "pow2", "int"])
def test_groups_side_by_side_in_the_lanes(scheme):
    # k groups share a word's lanes (block-diagonal weights): the same outputs, the counters
    # of the packed layer, fewer cycles than one group per word
    rng = np.random.default_rng(9)
    params = ArrayParams(rows=3, cols=4, lanes=4, filter_spad=16, ifmap_spad=16)
    layers = [grouped_layer(rng, scheme, (8, 8, 3, 3, 8, 8, 2, 1, 8)),      # depthwise
              grouped_layer(rng, scheme, (8, 16, 3, 3, 6, 6, 1, 1, 8))]     # 2 channels each
    packed = []
    for layer in layers:
        k = lane_packing(layer_shape(layer), params.lanes)
        assert k == 4 // (layer.inputs.shape[0] // layer.groups)
        packed.append(pack_groups(layer, k))
        assert packed[-1].groups == layer.groups // k
    runs = run_layers(layers + packed, params=params)
    for layer, run in zip(layers, runs[2:]):
        np.testing.assert_array_equal(run.outputs, golden(layer))
    for layer, run in zip(layers + packed, runs):
        assert_run_exact(layer, run.outputs, run.counters, run.params, run.mapping)
    for plain, run in zip(runs[:2], runs[2:]):
        assert run.counters["cycles"] < plain.counters["cycles"]


def test_groups_side_by_side_need_a_zero_weight_level():
    rng = np.random.default_rng(4)
    for scheme in ("binary", "xnor", "dorefa"):
        layer = grouped_layer(rng, scheme, (4, 4, 3, 3, 5, 5, 1, 0, 4))
        with pytest.raises(ValueError, match=rf"^{scheme} weights have no zero level"):
            pack_groups(layer, 2)
    layer = grouped_layer(rng, "ternary", (4, 4, 3, 3, 5, 5, 1, 0, 4))
    with pytest.raises(ValueError, match=r"must divide the layer's groups \(4\), not 3$"):
        pack_groups(layer, 3)
    assert pack_groups(layer, 1) is layer
    # a codebook with a zero level gives its code to the other groups' lanes
    book = Layer("dorefa", rng.integers(0, 4, (4, 1, 3, 3)), rng.integers(0, 8, (4, 5, 5)),
                 1, 1, a_bits=3, w_bits=2, codebook=np.array([-3, 0, 1, 5]), groups=4)
    packed = pack_groups(book, 4)
    assert packed.groups == 1 and np.count_nonzero(packed.weights == 1) >= 3 * 4 * 9
    np.testing.assert_array_equal(golden(packed), golden(book))
    assert lane_packing(LayerShape(6, 6, 3, 3, 8, 8, groups=6), 4) == 3
    assert lane_packing(LayerShape(6, 6, 3, 3, 8, 8, groups=6), 1) == 1


def test_the_group_loop_is_generated_only_for_grouped_accelerators():
    # AcceleratorConfig.groups = 1 (the default) builds today's controller: none of the
    # group loop's registers exist; they appear with groups > 1
    from amaranth.back import rtlil

    from sim.run_layer import build_accelerator
    base = AcceleratorConfig(rows=2, cols=2, filter_spad=8, ifmap_spad=8, in_depth=32,
                             wb_depth=32, pb_depth=32)
    names = ("grp", "gbase", "pb_grp", "init_cg0", "wkr")
    plain = rtlil.convert(build_accelerator(base))
    grouped = rtlil.convert(build_accelerator(base.replace(groups=4)))
    for name in names:
        assert f"\\{name} " not in plain and f"\\{name}\n" not in plain, name
        assert f"\\{name}" in grouped, name
