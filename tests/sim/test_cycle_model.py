"""The mapping and cycle model on their own: counts checked against independent computations,
hand-derived timelines, and the stream orders. (Model == RTL for every layer run is asserted
in ``tests/hw/test_accelerator.py`` and ``tests/sim/test_cocotb_accelerator.py``.)"""

import numpy as np
import pytest

from hw.schedule import (INPUT_LATENCY, INPUT_LOAD_OVERHEAD, WEIGHT_LOAD_OVERHEAD,
                         AcceleratorConfig, accumulate_latency)
from model.ops import conv2d
from sim.cycle_model import (ArrayParams, LayerShape, Mapping, check_mappable, choose_mapping,
                             config_values, layer_words, mappings, output_stream_order, predict,
                             weight_word_order)

PARAMS = ArrayParams(rows=3, cols=4, lanes=2, filter_spad=16, ifmap_spad=16)


def random_shapes(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        R, S = (int(v) for v in rng.integers(1, 6, 2))
        U = int(rng.integers(1, 4))
        P = int(rng.integers(0, 3))
        H = int(rng.integers(max(1, R - 2 * P), 16))
        W = int(rng.integers(max(1, S - 2 * P), 16))
        M, C = (int(v) for v in rng.integers(1, 9, 2))
        yield LayerShape(M, C, R, S, H, W, U, P)


@pytest.mark.parametrize("shape", list(random_shapes(25, 1)), ids=str)
def test_macs_and_skips_equal_an_independent_count(shape):
    """macs: the number of (m, c, r, s) terms inside the image, counted by convolving ones;
    skipped: the same count over the zero weights only; the padded lanes are not MACs."""
    rng = np.random.default_rng(shape.M * 100 + shape.C)
    weights = rng.integers(-1, 2, size=(shape.M, shape.C, shape.R, shape.S))
    ones_in = np.ones((shape.C, shape.H, shape.W), dtype=np.int64)
    kw = dict(stride=shape.stride, padding=shape.padding, a_bits=2)
    terms = conv2d("int", ones_in, np.ones_like(weights), w_bits=2, **kw).sum()
    zeros = conv2d("int", ones_in, (weights == 0).astype(np.int64), w_bits=2, **kw).sum()
    for lanes in (1, 2, 8):
        params = ArrayParams(3, 4, lanes, 16, 16)
        pred = predict(shape, params, weights=weights, scheme="ternary")
        assert pred["macs"] == terms
        assert pred["skipped"] == zeros
        assert pred["slots"] * lanes >= pred["macs"]
        assert predict(shape, params, weights=weights, scheme="binary")["skipped"] == 0
        assert 0 < pred["utilisation"] <= 1
        assert pred["utilisation"] == pred["macs"] / (params.macs_per_cycle * pred["cycles"])
        cw, _ = layer_words(shape, params)
        n_w = shape.M * cw * shape.R * shape.S
        assert pred["offchip_words"] == n_w + cw * shape.H * shape.W + shape.M * shape.E * shape.F


def test_hand_derived_timeline_of_the_smallest_layer():
    """1x1 layer on a 1x1 array: the weight loader decides at cycle 1 and its word is seen
    at 1 + 1 + WEIGHT_LOAD_OVERHEAD; the input loader's word at 1 + 1 + INPUT_LOAD_OVERHEAD
    (= 6); the dot's period starts the cycle after (7), its sum is written at 7 + rows * d +
    INPUT_LATENCY + A (= 10) and ``running`` falls the cycle after: 11 cycles."""
    shape = LayerShape(1, 1, 1, 1, 1, 1)
    pred = predict(shape, ArrayParams(1, 1, 1, 4, 4), Mapping(1, 1, 1))
    first = max(1 + 1 + WEIGHT_LOAD_OVERHEAD, 1 + 1 + INPUT_LOAD_OVERHEAD) + 1
    assert pred["cycles"] == first + 1 + INPUT_LATENCY + accumulate_latency(0) + 1 == 11


def test_each_extra_filter_group_costs_its_dots():
    """Compute-bound passes: with the loads hidden behind the dots, every extra pass adds
    its p * F dots of q * S cycles each; the lane tree's registers only delay the end."""
    base = LayerShape(M=8, C=2, R=3, S=3, H=6, W=8)
    more = LayerShape(M=16, C=2, R=3, S=3, H=6, W=8)
    params = ArrayParams(rows=3, cols=4, lanes=1, filter_spad=16, ifmap_spad=16)
    mp = Mapping(q=1, p=1, Fseg=base.F)
    blocks = 2          # row folds (C*R = 6 units over 3 rows) x column folds x segments
    assert (predict(more, params, mp)["cycles"] - predict(base, params, mp)["cycles"]
            == blocks * 8 * base.F * 3)
    piped = ArrayParams(rows=3, cols=4, lanes=1, filter_spad=16, ifmap_spad=16,
                        tree_stages=2)
    assert predict(base, piped, mp)["cycles"] == predict(base, params, mp)["cycles"] + 2


def test_the_schedule_keeps_the_rows_and_old_psums_in_order():
    """Row ``i`` starts a dot once row ``i - 1`` has finished it and itself the dot before;
    row 0 starts a dot of a row fold after the first only once the same dot of the fold
    before is written (its old psum is read two cycles later); on small padded layers with
    short folds that wait is what binds."""
    from sim.cycle_model import _blocks, _folds, _schedule
    binding = 0
    padded = [LayerShape(1, 4, 3, 3, 1, 1, 1, 1), LayerShape(2, 6, 3, 3, 2, 2, 1, 1)]
    for shape in padded + list(random_shapes(40, 7)):
        for params in (ArrayParams(1, 1, 1, 16, 16), ArrayParams(4, 2, 2, 16, 16, 1)):
            if not mappings(shape, params):
                continue
            mp = choose_mapping(shape, params)
            fo = _folds(shape, params, mp)
            sched = _schedule(shape, params, mp, fo, _blocks(shape, params, mp, fo))
            T, lens, write = sched["T"], sched["lens"], sched["write"]
            assert np.all(T[:, 1:] >= T[:, :-1] + lens[:-1])
            assert np.all(T[1:] >= T[:-1] + lens)
            fold = fo.n_v * fo.Gi * shape.F * mp.p
            if fold < len(lens):
                gap = T[0, fold:] - write[:-fold]
                assert np.all(gap >= 2), (shape, params, mp)
                binding += int(np.any(gap == 2))
    assert binding > 0


@pytest.mark.parametrize("shape", list(random_shapes(15, 2)), ids=str)
def test_mappings_fit_the_scratchpads_and_stream_orders_are_permutations(shape):
    cw, _ = layer_words(shape, PARAMS)
    for mp in mappings(shape, PARAMS):
        assert cw % mp.q == 0 and shape.M % mp.p == 0
        assert mp.p * mp.q * shape.S <= PARAMS.filter_spad
        assert mp.q * ((mp.Fseg - 1) * shape.stride + shape.S) <= PARAMS.ifmap_spad
    mp = choose_mapping(shape, PARAMS)
    assert predict(shape, PARAMS, mp)["cycles"] == min(
        predict(shape, PARAMS, m)["cycles"] for m in mappings(shape, PARAMS))
    n_w = shape.M * cw * shape.R * shape.S
    assert sorted(weight_word_order(shape, PARAMS, mp)) == list(range(n_w))
    n_out = shape.M * shape.E * shape.F
    assert sorted(output_stream_order(shape, PARAMS, mp)) == list(range(n_out))


def test_weight_word_order_groups_reduction_units():
    shape = LayerShape(M=2, C=4, R=2, S=2, H=3, W=3)        # 2 words of 2 lanes
    order = weight_word_order(shape, PARAMS, Mapping(q=1, p=1, Fseg=2))
    idx = np.arange(16).reshape(2, 2, 2, 2)                 # words [M, Cw, R, S]
    # unit (cg=0, r=0): m=0 taps, m=1 taps; then unit (cg=0, r=1) ...
    assert list(order[:8]) == [idx[0, 0, 0, 0], idx[0, 0, 0, 1], idx[1, 0, 0, 0],
                               idx[1, 0, 0, 1], idx[0, 0, 1, 0], idx[0, 0, 1, 1],
                               idx[1, 0, 1, 0], idx[1, 0, 1, 1]]


def test_channels_pack_into_words_of_lanes():
    assert layer_words(LayerShape(1, 9, 1, 1, 1, 1), ArrayParams(lanes=4)) == (3, 1)
    assert layer_words(LayerShape(1, 8, 1, 1, 1, 1), ArrayParams(lanes=4)) == (2, 4)
    values = config_values(LayerShape(1, 9, 1, 1, 1, 1), ArrayParams(lanes=4), Mapping(1, 1, 1))
    assert values["n_last"] == 1 and values["n_inputs"] == 3


def test_unmappable_layers_name_the_limit():
    with pytest.raises(ValueError, match="filter width 5 exceeds the filter scratchpad"):
        check_mappable(LayerShape(1, 1, 5, 5, 8, 8), ArrayParams(3, 4, 1, 4, 16))
    with pytest.raises(ValueError, match="stride 5 is not supported"):
        check_mappable(LayerShape(1, 1, 1, 1, 8, 8, stride=5), PARAMS)
    with pytest.raises(ValueError, match=r"grouped convolution \(groups 2\) does not run"):
        check_mappable(LayerShape(2, 2, 1, 1, 8, 8, groups=2), PARAMS)
    # a configuration value over the accelerator's limit (hw.schedule.config_limits): the
    # host refuses the layer before anything runs
    from sim.run_layer import Job, check_job, config_beats
    values = config_values(LayerShape(1, 8, 1, 1, 8, 8), PARAMS, Mapping(1, 1, 8))
    small = AcceleratorConfig(rows=3, cols=4, lanes=2, filter_spad=16, ifmap_spad=16,
                              in_depth=128, wb_depth=64, pb_depth=64)
    job = Job(config_beats(values), [], [], 0, 0)
    with pytest.raises(ValueError, match=r"^the layer does not fit the accelerator: "
                       r"configuration field n_inputs \(input words Cw \* H \* W\) = 256; "
                       r"allowed: at most 128$"):
        check_job(small, job)
    check_job(small.replace(in_depth=256), job)
