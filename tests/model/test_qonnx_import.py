"""``model.qonnx_import`` against qonnx's executor on the five test graphs: every quantizer's
codes bit for bit, every accumulator equal to ``rint((output - bias) / (s_a * s_w))``, the
thresholds equal to the executor for every accumulator value in range, argmax equal, scores
within 1e-5 relative; the deployment file round trip."""

import numpy as np
import pytest

pytest.importorskip("qonnx", reason="the QONNX tests need the qonnx extra: "
                                    "pip install -e '.[test,qonnx]'")

from model import deploy  # noqa: E402
from model import qonnx_examples as ex  # noqa: E402
from model.qonnx_compare import Reference, compare  # noqa: E402
from model.qonnx_import import import_qonnx  # noqa: E402

FIVE = ["binary_conv", "ternary_conv", "bnn_mlp", "lut_conv", "dorefa"]
#: and the other output ops (conv bias, Sub from a constant, Div, Clip, signed codes)
GRAPHS = FIVE + ["output_ops"]
SAMPLES = 48

#: (scheme, has a codebook) of each layer
SCHEMES = {
    "binary_conv": [("binary", False), ("binary", False)],
    "ternary_conv": [("ternary", False), ("ternary", False)],
    "bnn_mlp": [("xnor", False)] * 3,
    "lut_conv": [("dorefa", True), ("dorefa", True)],
    "dorefa": [("dorefa", False), ("dorefa", False)],
    "output_ops": [("ternary", False), ("binary", False)],
}


@pytest.fixture(scope="module")
def imported():
    out = {}
    for name in GRAPHS:
        graph = ex.build(name)
        model, reports = import_qonnx(graph)
        out[name] = graph, model, reports
    return out


@pytest.mark.parametrize("name", GRAPHS)
def test_the_model_equals_the_executor(imported, name):
    graph, model, reports = imported[name]
    ref = Reference(graph)
    x = ex.sample_inputs(name, graph, SAMPLES)
    c = compare(graph, model, reports, x, reference=ref)
    assert c.failures == []
    # codes: the input quantizer and each hidden layer's quantizer, every sample
    assert c.max_code_diff == 0
    assert c.codes_checked == SAMPLES * len(model.layers)
    # accumulators: every layer, every sample
    assert c.acc_equal == c.acc_checked == SAMPLES * len(model.layers)
    assert c.acc_max_residual < 0.01
    # thresholds: every accumulator value in range, every channel of every hidden layer
    in_range = sum(layer.out_channels * (layer.acc_range[1] - layer.acc_range[0] + 1)
                   for layer in model.layers[:-1])
    assert c.threshold_equal == c.threshold_checked == in_range
    # argmax and scores
    assert c.argmax_equal + c.argmax_ties == SAMPLES
    assert c.argmax_ties <= 2      # only exact ties of integer scores may differ
    assert c.max_rel_score_error <= 1e-5
    assert c.exact


@pytest.mark.parametrize("name", GRAPHS)
def test_layers_map_to_the_multiplier_free_schemes(imported, name):
    _, model, _ = imported[name]
    assert [(layer.scheme, layer.codebook is not None) for layer in model.layers] == \
        SCHEMES[name]
    assert model.layers[-1].output == "scores"
    assert all(layer.output in ("sign", "levels") for layer in model.layers[:-1])


def test_power_of_two_scales_sum_exactly_and_dorefa_scales_within_a_bound(imported):
    for name in ("binary_conv", "bnn_mlp", "lut_conv"):
        assert all(r.max_delta_units == 0 for r in imported[name][2])
    _, _, reports = imported["dorefa"]
    assert 0 < reports[0].max_delta_units < 1e-3      # 1/3 and 2/3 are not float32-exact


def test_codes_outputs_and_inputs_are_what_the_graph_quantizes(imported):
    graph, model, _ = imported["ternary_conv"]
    x = ex.sample_inputs("ternary_conv", graph, 8)
    run = deploy.run_float(model, x)
    assert run.outputs.shape == (8, 5) and run.outputs.dtype == np.float32
    assert run.codes.shape == (8, 5) and run.codes.dtype == np.int64
    lo, hi = model.float_io.quantizer.code_range
    assert (lo, hi) == (-127, 127) == (model.pixel_min, model.pixel_max)
    assert run.input_codes.min() >= lo and run.input_codes.max() <= hi
    # the scores are the last layer's exact affine map of its accumulators
    last = model.layers[-1]
    np.testing.assert_array_equal(
        run.outputs, np.float32(np.ldexp((run.codes * last.score_gain + last.score_offset)
                                         .astype(np.float64), -last.score_shift)))
    with pytest.raises(ValueError, match=r"inputs must have shape \[N, 3, 7, 7\]"):
        deploy.run_float(model, x[:, :2])
    with pytest.raises(ValueError, match="finite"):
        deploy.run_float(model, np.full_like(x, np.nan))


def test_decreasing_channels_before_max_pooling_get_negated_weights(imported):
    """bn1 of binary_conv and lut_conv has a negative gain in one channel, output_ops
    subtracts every channel from a constant, and the MaxPool comes after the quantizer: max
    pooling the codes is min pooling the accumulator there, so those channels' integer
    weights are negated (and the comparison stays exact)."""
    for name, channels in (("binary_conv", [1]), ("lut_conv", [2]), ("output_ops", [0, 1, 2])):
        _, model, reports = imported[name]
        assert np.flatnonzero(reports[0].weight_sign < 0).tolist() == channels
        assert not np.any(model.layers[0].flip)
        assert model.meta["qonnx_nodes"]["layers"][0]["negated_channels"] == channels


def test_the_deployment_file_round_trips(imported, tmp_path):
    for name in FIVE:
        graph, model, _ = imported[name]
        path = tmp_path / f"{name}.npz"
        deploy.save(model, path)
        back = deploy.load(path)
        assert back.float_io == model.float_io
        assert (back.pixel_min, back.pixel_max) == (model.pixel_min, model.pixel_max)
        for a, b in zip(back.layers, model.layers):
            assert a.out_min == b.out_min
            assert (a.codebook is None) == (b.codebook is None)
            if a.codebook is not None:
                np.testing.assert_array_equal(a.codebook, b.codebook)
        x = ex.sample_inputs(name, graph, 16)
        first, second = deploy.run_float(model, x), deploy.run_float(back, x)
        np.testing.assert_array_equal(first.outputs, second.outputs)
        np.testing.assert_array_equal(first.codes, second.codes)
        import json
        with np.load(path) as z:
            assert json.loads(z["manifest"].tobytes())["version"] == 2


def test_an_ambiguous_sum_is_refused():
    """float32(0.1) * 3 summed in different orders is 0.3 or 0.30000001, exactly at a tie
    of the 0.2-scaled quantizer: the integer sum does not determine the code."""
    from model.qonnx_graph import ImportRefused
    with pytest.raises(ImportRefused, match=r"^node 'conv1' \(Conv\): the integer sum does not "
                                            r"determine the float result: in channel 0"):
        import_qonnx(ex.build("ambiguous_tie"))


@pytest.mark.parametrize("mode", ["ROUND", "HALF_UP", "HALF_DOWN", "FLOOR", "CEIL", "UP",
                                  "DOWN"])
def test_requantization_on_exact_ties_follows_the_rounding_mode(mode):
    """conv -> Quant with x / scale = acc / 2: every odd accumulator is an exact tie."""
    graph = ex.requant(rounding_mode=mode)
    model, reports = import_qonnx(graph)
    x = ex.sample_inputs("requant", graph, 16)
    c = compare(graph, model, reports, x)
    assert c.failures == [] and c.exact
    layer = model.layers[0]
    assert c.threshold_checked == layer.out_channels * (layer.acc_range[1] - layer.acc_range[0]
                                                        + 1)
    assert c.ties == 4 * 7                     # y = -3.5 .. 2.5 in each of 4 channels
    down = {"ROUND": 16, "HALF_UP": 16, "HALF_DOWN": 12, "FLOOR": 28, "CEIL": 0, "UP": 16,
            "DOWN": 12}
    assert c.ties_down == down[mode]


def test_a_graph_ending_in_a_quantizer_gives_its_codes_and_exact_values():
    g = ex.GraphBuilder("quantized_out", (16,), seed=3, low=0.0, high=1.0)
    y = g.quant("x", scale=2.0 ** -4, bits=4, signed=False, narrow=False, name="in_q")
    w = g.weights((16, 5))
    wq = g.quant("", scale=0.5, bits=2, signed=True, narrow=True, name="w1_q", value=w)
    y = g.matmul(y, wq, g.weight_values("int", w, 0.5), name="fc1")
    y = g.bn(y, name="bn1", flip=2)
    y = g.quant(y, scale=0.25, bits=3, signed=True, narrow=False, name="out_q")
    graph = g.build(y)
    model, reports = import_qonnx(graph)
    assert model.layers[-1].output == "levels" and model.layers[-1].out_min == -4
    assert model.float_io.output_quantizer.scale == 0.25
    x = np.random.default_rng(0).uniform(-0.1, 1.1, (32, 16)).astype(np.float32)
    c = compare(graph, model, reports, x)
    assert c.failures == [] and c.exact and c.max_rel_score_error == 0.0
    run = deploy.run_float(model, x)
    np.testing.assert_array_equal(run.outputs, run.codes.astype(np.float32) * np.float32(0.25))
    assert run.codes.min() < 0
