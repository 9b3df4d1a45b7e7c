"""The wider mapping search: every mapping the controller runs, the fast exact timeline
(``predict_cycles``) and the lower bound that prune it, and ``utilisation_breakdown``.
(Model == RTL for layers run under the newly reachable mappings is asserted in
``tests/hw/test_wider_mappings.py``.)"""

import math

import pytest

from sim.cycle_model import (ArrayParams, LayerShape, Mapping, choose_mapping,
                             cycles_lower_bound, mappings, predict, predict_cycles,
                             utilisation_breakdown)
from tests.sim.test_cycle_model import PARAMS, random_shapes

ARRAYS = [PARAMS, ArrayParams(2, 3, 8, 8, 4), ArrayParams(1, 1, 4, 4, 4),
          ArrayParams(5, 2, 32, 16, 8), ArrayParams(4, 7, 32, 16, 8)]


def cases(n, seed):
    for shape in random_shapes(n, seed):
        for params in ARRAYS:
            if mappings(shape, params):
                yield shape, params


@pytest.mark.parametrize("seed", [3, 4])
def test_fast_timeline_and_bound_agree_with_predict_for_every_mapping(seed):
    for shape, params in cases(12, seed):
        for mp in mappings(shape, params):
            cycles = predict(shape, params, mp)["cycles"]
            assert predict_cycles(shape, params, mp) == cycles, (shape, params, mp)
            assert cycles_lower_bound(shape, params, mp) <= cycles, (shape, params, mp)


def test_fast_timeline_on_large_layers_with_many_folds():
    """Thousands of blocks, more filter groups than columns, a last segment of one column."""
    params = ArrayParams(12, 14, 256, 64, 32)
    for shape, mp in [(LayerShape(384, 256, 3, 3, 13, 13, 1, 1), Mapping(1, 1, 13, 16)),
                      (LayerShape(96, 3, 11, 11, 227, 227, 4, 0), Mapping(1, 2, 6, 3)),
                      (LayerShape(256, 3136, 1, 1, 1, 16), Mapping(2, 1, 16, 8))]:
        assert predict_cycles(shape, params, mp) == predict(shape, params, mp)["cycles"]


def test_mappings_respect_the_controller():
    """Integral channel groups, filter groups and inner filter groups; fitting scratchpads;
    and the search tries segments shorter than the longest and Gc beyond the columns."""
    shape = LayerShape(M=12, C=4, R=3, S=3, H=6, W=9, stride=1, padding=1)
    found = mappings(shape, PARAMS)
    assert len(set(found)) == len(found)
    for mp in found:
        assert shape.C % mp.q == 0 and shape.M % (mp.p * mp.Gc) == 0
        assert mp.p * mp.q * shape.S <= PARAMS.filter_spad
        assert mp.q * ((mp.Fseg - 1) * shape.stride + shape.S) <= PARAMS.ifmap_spad
        assert mp.p * mp.Fseg <= PARAMS.psum_spad
    assert {mp.Gc for mp in found} == {1, 2, 3, 4, 6, 12}
    # F = 9 fits whole; equal splits into n = 2 ... 9 segments: ceil(9 / n)
    assert {mp.Fseg for mp in found if (mp.q, mp.p) == (1, 1)} == {9, 5, 3, 2, 1}


@pytest.mark.parametrize("seed", [5])
def test_choose_mapping_is_the_best_by_full_prediction(seed):
    """Pruning changes nothing: the same mapping as predicting every one, ties included."""
    for shape, params in cases(10, seed):
        def key(mp):
            pred = predict(shape, params, mp)
            return (pred["cycles"], pred["glb_reads"], -mp.p, -mp.q, mp.Gc, -mp.Fseg)
        assert choose_mapping(shape, params) == min(mappings(shape, params), key=key)


@pytest.mark.parametrize("seed", [6])
def test_breakdown_adds_up_to_predict(seed):
    for shape, params in cases(10, seed):
        for mp in mappings(shape, params)[::3]:
            b = utilisation_breakdown(shape, params, mp)
            pred = predict(shape, params, mp)
            parts = ("setup", "compute", "wait_weights", "wait_drains", "wait_inputs",
                     "last_drain")
            assert sum(b[k] for k in parts) == b["cycles"] == pred["cycles"]
            assert min(b[k] for k in parts) >= 0
            assert b["macs"] == pred["macs"] and b["utilisation"] == pred["utilisation"]
            fills = b["row_fill"] * b["col_fill"] * b["pad_rows"] * b["pad_cols"]
            assert math.isclose(b["bound"], fills, rel_tol=1e-12)
            assert b["utilisation"] <= b["bound"] <= 1


def test_breakdown_of_a_hand_counted_layer():
    """3x3 filter, padding 1, 5x5 input on 3x4: one channel fills the 3 rows; 5 output rows
    on 4 columns take 2 column folds (5 of 8 columns); 2 of the 15 (row, output row) pairs
    read padding; no output column is all padding. A 1x1 filter on a 1x1 input padded by 1
    on a 1x1 PE: 3 output rows (3 column folds) of 3 columns; only the centre output is
    inside the image, the other columns take a slot each."""
    b = utilisation_breakdown(LayerShape(2, 1, 3, 3, 5, 5, 1, 1), PARAMS, Mapping(1, 1, 5))
    assert (b["row_fill"], b["col_fill"], b["pad_rows"], b["pad_cols"]) == (1, 5 / 8, 13 / 15, 1)
    # compute: 2 filters (passes) x 2 column folds x slots (taps 2 + 3 + 3 + 3 + 2)
    assert b["compute"] == 2 * 2 * 13
    b = utilisation_breakdown(LayerShape(1, 1, 1, 1, 1, 1, 1, 1), ArrayParams(1, 1, 4, 4, 4),
                              Mapping(1, 1, 3))
    assert b["pad_cols"] == 1 / 3 and b["pad_rows"] == 1 / 3 and b["compute"] == 3 * 3


@pytest.mark.parametrize("cols", [1, 4, 8, 14])
def test_dense_layers_are_bound_by_the_weights(cols):
    """A dense layer of batch N computes at most N MACs per weight word a PE row receives
    (one per cycle): utilisation <= min(1, N / cols) on any mapping, and batch 1 comes
    within 5 % of 1 / cols when the layer is large."""
    params = ArrayParams(3, cols, 256, 64, 32)
    for n in (1, 2, 16):
        shape = LayerShape(64, 96, 1, 1, 1, n)
        for mp in mappings(shape, params)[::7]:
            assert predict(shape, params, mp)["utilisation"] <= min(1, n / cols)
    util = predict(LayerShape(64, 96, 1, 1, 1, 1), params)["utilisation"]
    assert util >= 0.95 / cols


def test_split_shape_is_the_shape_of_the_split_layer_and_flags_limit_k():
    import numpy as np
    from model.column_split import split_filter_columns
    from sim.column_split import choose_column_split, split_shape
    for dims in [(3, 1, 5, 5, 9, 11, 1, 2), (2, 2, 3, 4, 7, 9, 2, 1)]:
        shape = LayerShape(*dims)
        for k in range(1, shape.S + 1):
            x, w = split_filter_columns(np.zeros((shape.C, shape.H, shape.W), int),
                                        np.zeros((shape.M, shape.C, shape.R, shape.S), int),
                                        k, scheme="int", stride=shape.stride,
                                        padding=shape.padding, w_bits=4)
            assert split_shape(shape, k) == LayerShape.of(w.shape, x.shape, shape.stride, 0)
            assert (split_shape(shape, k).E, split_shape(shape, k).F) == (shape.E, shape.F)
    # MNIST conv1 on 12x14: two parts (a level-0 tap) are fastest; without a level-0 weight
    # only 5 parts (1-wide filters) are allowed, without a zero activation none
    conv1, big = LayerShape(32, 1, 5, 5, 28, 28, 1, 2), ArrayParams(12, 14, 256, 64, 32)
    assert choose_column_split(conv1, big).k == 2
    assert choose_column_split(conv1, big, zero_weight=False).k in (1, 5)
    assert choose_column_split(conv1, big, zero_activation=False).k == 1
