"""The mapping search: every mapping the controller runs, the fast timeline
(``predict_cycles``) and the lower bound that prune it, and ``utilisation_breakdown``."""

import math

import pytest

from sim.cycle_model import (ArrayParams, LayerShape, Mapping, choose_mapping,
                             cycles_lower_bound, layer_words, mappings, predict,
                             predict_cycles, utilisation_breakdown)
from tests.sim.test_cycle_model import PARAMS, random_shapes

ARRAYS = [PARAMS, ArrayParams(2, 3, 1, 8, 8), ArrayParams(1, 1, 4, 4, 4),
          ArrayParams(5, 2, 8, 32, 16, 1), ArrayParams(4, 7, 2, 32, 16, 2)]


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


def test_large_layers_with_many_folds_predict_quickly():
    """AlexNet CONV3 on 12x14 with 8 lanes, one filter per pass: thousands of passes."""
    params = ArrayParams(12, 14, 8, 64, 32)
    shape = LayerShape(384, 256, 3, 3, 13, 13, 1, 1)
    mp = Mapping(1, 1, 13)
    assert predict_cycles(shape, params, mp) == predict(shape, params, mp)["cycles"]
    assert predict(shape, params, mp)["utilisation"] > 0.85


def test_mappings_respect_the_controller():
    """Integral channel groups and filter groups; fitting scratchpads; segments shorter than
    the longest are tried."""
    shape = LayerShape(M=12, C=8, R=3, S=3, H=6, W=9, stride=1, padding=1)
    found = mappings(shape, PARAMS)
    assert len(set(found)) == len(found)
    cw, _ = layer_words(shape, PARAMS)
    for mp in found:
        assert cw % mp.q == 0 and shape.M % mp.p == 0
        assert mp.p * mp.q * shape.S <= PARAMS.filter_spad
        assert mp.q * ((mp.Fseg - 1) * shape.stride + shape.S) <= PARAMS.ifmap_spad
    assert {mp.p for mp in found} == {1, 2, 3, 4}          # p * q * 3 <= 16
    # F = 9 fits whole (q = 1: 9 * 1 + 2 = 11 <= 16 words); equal splits: ceil(9 / n)
    assert {mp.Fseg for mp in found if (mp.q, mp.p) == (1, 1)} == {9, 5, 3, 2, 1}


@pytest.mark.parametrize("seed", [5])
def test_choose_mapping_is_the_best_by_full_prediction(seed):
    """Pruning changes nothing: the same mapping as predicting every one, ties included."""
    for shape, params in cases(10, seed):
        def key(mp):
            pred = predict(shape, params, mp)
            return (pred["cycles"], pred["glb_reads"], -mp.p, -mp.q, -mp.Fseg)
        assert choose_mapping(shape, params) == min(mappings(shape, params), key=key)


@pytest.mark.parametrize("seed", [6])
def test_breakdown_adds_up_to_predict(seed):
    for shape, params in cases(10, seed):
        for mp in mappings(shape, params)[::3]:
            b = utilisation_breakdown(shape, params, mp)
            pred = predict(shape, params, mp)
            parts = ("setup", "compute", "stalls", "tail")
            assert sum(b[k] for k in parts) == b["cycles"] == pred["cycles"]
            assert min(b[k] for k in parts) >= 0
            assert b["macs"] == pred["macs"] and b["utilisation"] == pred["utilisation"]
            fills = (b["row_fill"] * b["col_fill"] * b["lane_fill"] * b["pad_rows"]
                     * b["pad_cols"])
            assert math.isclose(b["bound"], fills, rel_tol=1e-12)
            assert b["utilisation"] <= b["bound"] <= 1


def test_breakdown_of_a_hand_counted_layer():
    """3x3 filter, padding 1, 5x5 input, 3 channels on 3x4 with 2 lanes: 2 channel words
    (3 of 4 lanes real) make 6 units over 3 rows; 5 output rows on 4 columns take 2 column
    folds (5 of 8 columns); 2 of the 15 (row, output row) pairs read padding; the border
    output columns' dots skip their padding tap (2 + 3 + 3 + 3 + 2 taps). A 3x3 filter on a
    1x1 input padded by 2 has one tap inside for its 3 output columns... each still runs 1
    tap; on 3 columns of 1, 2 and 3 taps the dots run 2, 2 and 3 (n_min = 2)."""
    b = utilisation_breakdown(LayerShape(2, 3, 3, 3, 5, 5, 1, 1), PARAMS, Mapping(1, 1, 5))
    assert (b["row_fill"], b["col_fill"], b["lane_fill"]) == (1, 5 / 8, 3 / 4)
    assert (b["pad_rows"], b["pad_cols"]) == (13 / 15, 1)
    # compute: 2 row folds x 2 column folds x 2 filters (passes) x 13 slots
    assert b["compute"] == 2 * 2 * 2 * 13
    from sim.cycle_model import dot_taps
    n_eff, n_s, n_min = dot_taps(LayerShape(1, 1, 3, 3, 3, 3, 1, 2), 5)
    assert list(n_s) == [1, 2, 3, 2, 1] and n_min == 2 and list(n_eff) == [2, 2, 3, 2, 2]


@pytest.mark.parametrize("cols", [1, 4, 14])
def test_dense_layers_are_bound_by_their_one_output_row(cols):
    """A dense layer at batch 1 has one output row: one PE column, utilisation at most
    1 / cols; laid out as rows of a batch (``sim.batching``) it fills the columns."""
    params = ArrayParams(3, cols, 4, 64, 32)
    shape = LayerShape(64, 96, 1, 1, 1, 1)
    for mp in mappings(shape, params)[::5]:
        assert predict(shape, params, mp)["utilisation"] <= 1 / cols
    batch = LayerShape(64, 96, 1, 1, cols, 16)
    assert predict(batch, params)["utilisation"] > 0.5


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
    # MNIST conv1 (one channel) on 12x14 with 8 lanes: splitting the 5 filter columns into
    # channels fills lanes and rows; without a level-0 weight only 5 parts (1-wide filters)
    # are allowed, without a zero activation none
    conv1, big = LayerShape(32, 1, 5, 5, 28, 28, 1, 2), ArrayParams(12, 14, 8, 64, 32)
    assert choose_column_split(conv1, big).k > 1
    assert choose_column_split(conv1, big, zero_weight=False).k in (1, 5)
    assert choose_column_split(conv1, big, zero_activation=False).k == 1
