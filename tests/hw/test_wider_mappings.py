"""Mappings only the wider search reaches, batched dense layers and layers with split filter
columns, on the Amaranth-simulated accelerator: outputs bit-exact with ``model.ops`` and
every counter equal to ``sim.cycle_model.predict``."""

import numpy as np

from model.batching import batched_dense_layer, conv_outputs_as_dense_batch, dense_batch_as_conv
from model.ops import dense
from model.quant import activation_code_range, weight_code_range
from model.quant import unpack_pm1
from sim.cycle_model import ArrayParams, LayerShape, predict
from sim.run_layer import layer_codes, layer_shape, run_layers
from tests.hw.test_accelerator import PARAMS, WIDTHS, check_runs, golden, random_layer


def test_shorter_segments_and_many_filters_per_pass_are_chosen_and_exact():
    """A 1x1 layer on seven columns runs fastest with segments shorter than the longest that
    fits; a layer with many filters packs several into each pass."""
    rng = np.random.default_rng(31)
    layers = [random_layer(rng, "ternary", (4, 2, 1, 1, 3, 7, 1, 0)),
              random_layer(rng, "ternary", (8, 2, 2, 2, 3, 6, 1, 0))]
    runs = check_runs(layers, PARAMS)
    mp, F = runs[0].mapping, layers[0].output_shape[2]
    assert mp.Fseg <= F
    assert runs[1].mapping.p > 1


def test_batched_dense_layer_equals_dense_per_input():
    """N inputs of a dense layer as one 1x1 convolution over [C, 1, N]: column n of the
    outputs is ``model.ops.dense`` of input n, for several batch sizes and schemes, with the
    extremes of the codes in the batch."""
    rng = np.random.default_rng(41)
    for scheme in ("ternary", "xnor", "int"):
        a_bits, w_bits = WIDTHS[scheme]
        layers, batches = [], []
        for n, c, m in [(16, 6, 4), (5, 12, 6), (1, 4, 2)]:
            layer = random_layer(rng, scheme, (m, c, 1, 1, 1, n, 1, 0))
            inputs = layer.inputs[:, 0, :].T.copy()            # [N, C]
            weights = layer.weights[:, :, 0, 0].copy()          # [M, C]
            inputs[0], inputs[-1] = activation_code_range(scheme, a_bits)
            weights[0], weights[-1] = weight_code_range(scheme, w_bits)
            batches.append((inputs, weights))
            layers.append(batched_dense_layer(scheme, inputs, weights, a_bits=a_bits,
                                              w_bits=w_bits))
        runs = run_layers(layers, params=PARAMS)
        for (inputs, weights), layer, run in zip(batches, layers, runs):
            want = np.stack([dense(scheme, x, weights, a_bits=a_bits, w_bits=w_bits)
                             for x in inputs])
            np.testing.assert_array_equal(conv_outputs_as_dense_batch(run.outputs), want)
            model = predict(layer_shape(layer), PARAMS, run.mapping,
                            weights=layer_codes(layer)[0], scheme=scheme)
            assert run.counters == {k: model[k] for k in run.counters}


def test_dense_batch_in_rows_equals_dense():
    """``sim.batching.run_dense_batch``: 4 inputs and 16 inputs laid out in rows across the
    columns; outputs of ``model.ops.dense`` per input, counters of ``predict`` for the
    presented layer."""
    from sim.batching import run_dense_batch
    rng = np.random.default_rng(43)
    for scheme, (m, c, n) in [("ternary", (5, 6, 4)), ("xnor", (10, 6, 16))]:
        a_bits, w_bits = WIDTHS[scheme]
        layer = random_layer(rng, scheme, (m, c, 1, 1, 1, n, 1, 0))
        inputs, weights = layer.inputs[:, 0, :].T.copy(), layer.weights[:, :, 0, 0].copy()
        inputs[0], inputs[-1] = activation_code_range(scheme, a_bits)
        weights[0], weights[-1] = weight_code_range(scheme, w_bits)
        out, counters, how = run_dense_batch(scheme, inputs, weights, params=PARAMS,
                                             a_bits=a_bits, w_bits=w_bits)
        assert how.rows > 1 and how.filters == m
        want = np.stack([dense(scheme, x, weights, a_bits=a_bits, w_bits=w_bits)
                         for x in inputs])
        np.testing.assert_array_equal(out, want)
        _, presented = dense_batch_as_conv(inputs, weights, rows=how.rows, filters=how.filters)
        if scheme == "xnor":
            presented = (unpack_pm1(presented, a_bits) < 0).astype(np.int64)
            presented = np.moveaxis(presented, -1, 2).reshape(
                presented.shape[0], -1, *presented.shape[2:4])
        model = predict(how.shape, PARAMS, how.mapping, weights=presented, scheme=scheme)
        assert counters == {k: model[k] for k in counters}
        assert counters["cycles"] == how.cycles


def test_layers_with_split_filter_columns_equal_the_layer():
    """One input channel on six PE rows: ``sim.column_split`` splits the filter columns (a
    3-wide padded filter, ternary; a 4-wide unpadded one, binary, which has no level 0, so
    only into parts that divide 4); the split layer's outputs equal ``model.ops.conv2d`` of
    the original layer and its counters ``predict`` of the split shape."""
    from model.column_split import split_columns_layer, zero_weight_code
    from sim.column_split import choose_column_split
    rng = np.random.default_rng(47)
    params = ArrayParams(rows=6, cols=3, lanes=1, filter_spad=16, ifmap_spad=16)
    for scheme, dims in [("ternary", (4, 1, 1, 3, 4, 8, 1, 1)),
                         ("binary", (4, 1, 2, 4, 4, 8, 1, 0))]:
        layer = random_layer(rng, scheme, dims)
        layer.inputs[0, 0, :] = activation_code_range(scheme, layer.a_bits)[0]
        shape = LayerShape.of(layer.weights.shape, layer.inputs.shape, layer.stride,
                              layer.padding)
        split = choose_column_split(shape, params, zero_weight=zero_weight_code(
            scheme, layer.w_bits) is not None)
        assert split.k > 1 and (scheme != "binary" or 4 % split.k == 0)
        run_layer = split_columns_layer(layer, split.k)
        (run,) = run_layers([run_layer], params=params, mappings=[split.mapping])
        np.testing.assert_array_equal(run.outputs, golden(layer))
        model = predict(split.shape, params, split.mapping, weights=run_layer.weights,
                        scheme=scheme)
        assert run.counters == {k: model[k] for k in run.counters}
        assert run.counters["cycles"] == split.cycles
