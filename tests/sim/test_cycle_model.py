"""The mapping and cycle model on their own: counts checked against independent computations,
a hand-derived timeline, and the stream orders. (Model == RTL for every layer run is asserted
in ``tests/hw/test_accelerator.py`` and ``tests/sim/test_cocotb_accelerator.py``.)"""

import numpy as np
import pytest

from model.ops import conv2d
from sim.cycle_model import (ArrayParams, LayerShape, Mapping, check_mappable, choose_mapping,
                             config_values, mappings, output_stream_order, predict,
                             weight_stream_order)

PARAMS = ArrayParams(rows=3, cols=4, filter_spad=16, ifmap_spad=16, psum_spad=16)


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
    skipped: the same count over the zero weights only."""
    rng = np.random.default_rng(shape.M * 100 + shape.C)
    weights = rng.integers(-1, 2, size=(shape.M, shape.C, shape.R, shape.S))
    ones_in = np.ones((shape.C, shape.H, shape.W), dtype=np.int64)
    kw = dict(stride=shape.stride, padding=shape.padding, a_bits=2)
    terms = conv2d("int", ones_in, np.ones_like(weights), w_bits=2, **kw).sum()
    zeros = conv2d("int", ones_in, (weights == 0).astype(np.int64), w_bits=2, **kw).sum()
    pred = predict(shape, PARAMS, weights=weights, scheme="ternary")
    assert pred["macs"] == terms
    assert pred["skipped"] == zeros
    assert predict(shape, PARAMS, weights=weights, scheme="binary")["skipped"] == 0
    assert 0 < pred["utilisation"] <= 1
    assert pred["utilisation"] == pred["macs"] / (PARAMS.pes * pred["cycles"])
    n_w = shape.M * shape.C * shape.R * shape.S
    assert pred["offchip_words"] == n_w + shape.C * shape.H * shape.W + shape.M * shape.E * shape.F


def test_hand_derived_timeline_of_the_smallest_layer():
    """1x1 layer on a 1x1 array: set-up cycle; weights (1 word + 1) and inputs (2 set-up
    cycles, 1 word, 1 tail) load in parallel, so the pass starts at cycle 1 + 4 = 5; it
    computes 1 slot; its drain takes p*F + rows + 2 = 4 cycles (1 token, 1 row, the buffer's
    read latency, the array's input register): 5 + 1 + 4 = 10."""
    shape = LayerShape(1, 1, 1, 1, 1, 1)
    pred = predict(shape, ArrayParams(1, 1, 4, 4, 4), Mapping(1, 1, 1))
    assert pred["cycles"] == 10


def test_each_extra_filter_group_costs_one_steady_pass():
    """Compute-bound passes: adding filter groups adds exactly max(compute, weights, drain)
    cycles each (a pass's compute is F * p * q * S slots)."""
    params = ArrayParams(rows=3, cols=4, filter_spad=16, ifmap_spad=16, psum_spad=16)
    base = LayerShape(M=8, C=2, R=3, S=3, H=6, W=8)
    more = LayerShape(M=16, C=2, R=3, S=3, H=6, W=8)
    mp = Mapping(q=1, p=1, Fseg=base.F)
    step = max(base.F * 1 * 1 * 3, 1 * 1 * 3 + 1, 1 * base.F + params.rows + 2)
    blocks = 2 * 1 * 1          # row folds (C*R = 6 over 3 rows) x column folds x segments
    assert (predict(more, params, mp)["cycles"] - predict(base, params, mp)["cycles"]
            == blocks * 8 * step)


@pytest.mark.parametrize("shape", list(random_shapes(15, 2)), ids=str)
def test_mappings_fit_the_scratchpads_and_stream_orders_are_permutations(shape):
    for mp in mappings(shape, PARAMS):
        assert shape.C % mp.q == 0 and shape.M % mp.p == 0
        assert mp.p * mp.q * shape.S <= PARAMS.filter_spad
        assert mp.q * ((mp.Fseg - 1) * shape.stride + shape.S) <= PARAMS.ifmap_spad
        assert mp.p * mp.Fseg <= PARAMS.psum_spad
    mp = choose_mapping(shape, PARAMS)
    assert predict(shape, PARAMS, mp)["cycles"] == min(
        predict(shape, PARAMS, m)["cycles"] for m in mappings(shape, PARAMS))
    n_w = shape.M * shape.C * shape.R * shape.S
    assert sorted(weight_stream_order(shape, PARAMS, mp)) == list(range(n_w))
    n_out = shape.M * shape.E * shape.F
    assert sorted(output_stream_order(shape, PARAMS, mp)) == list(range(n_out))


def test_weight_stream_order_groups_reduction_units():
    shape = LayerShape(M=2, C=2, R=2, S=2, H=3, W=3)
    order = weight_stream_order(shape, PARAMS, Mapping(q=1, p=1, Fseg=2))
    idx = np.arange(16).reshape(2, 2, 2, 2)          # [M, C, R, S]
    # unit (c=0, r=0): m=0 taps, m=1 taps; then unit (c=0, r=1) ...
    assert list(order[:8]) == [idx[0, 0, 0, 0], idx[0, 0, 0, 1], idx[1, 0, 0, 0],
                               idx[1, 0, 0, 1], idx[0, 0, 1, 0], idx[0, 0, 1, 1],
                               idx[1, 0, 1, 0], idx[1, 0, 1, 1]]


def test_unmappable_layers_name_the_limit():
    with pytest.raises(ValueError, match="filter width 5 exceeds the filter scratchpad"):
        check_mappable(LayerShape(1, 1, 5, 5, 8, 8), ArrayParams(3, 4, 4, 16, 16))
    with pytest.raises(ValueError, match="stride 5 is not supported"):
        check_mappable(LayerShape(1, 1, 1, 1, 8, 8, stride=5), PARAMS)
    # a configuration value over the accelerator's limit (hw.controller.config_limits): the
    # host refuses the layer before anything runs
    from sim.run_layer import Job, check_job, config_beats
    values = config_values(LayerShape(1, 4, 1, 1, 8, 8), PARAMS, Mapping(1, 1, 8))
    small = dict(rows=3, cols=4, filter_spad=16, ifmap_spad=16, psum_spad=16, in_depth=128,
                 wb_depth=64, pb_depth=64)
    job = Job(config_beats(values), [], [], 0, 0)
    with pytest.raises(ValueError, match=r"^the layer does not fit the accelerator: "
                       r"configuration field n_inputs \(C \* H \* W\) = 256; allowed: at most "
                       r"128$"):
        check_job(small, job)
    check_job(dict(small, in_depth=256), job)
