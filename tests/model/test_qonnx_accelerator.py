"""The conv and dense layers of the imported test graphs run bit-exactly on the simulated
accelerator (Amaranth backend), each on a sample's codes from the integer model."""

import numpy as np
import pytest

pytest.importorskip("qonnx", reason="the QONNX tests need the qonnx extra: "
                                    "pip install -e '.[test,qonnx]'")

from model import deploy  # noqa: E402
from model import qonnx_examples as ex  # noqa: E402
from model.qonnx_import import import_qonnx  # noqa: E402
from sim.run_layer import run_layers  # noqa: E402


@pytest.mark.parametrize("name", ["binary_conv", "ternary_conv", "bnn_mlp", "lut_conv",
                                  "dorefa", "output_ops"])
def test_every_layer_runs_bit_exactly_on_the_accelerator(name):
    graph = ex.build(name)
    model, _ = import_qonnx(graph)
    x = ex.sample_inputs(name, graph, 1, seed=5)
    codes = deploy.run_float(model, x).input_codes
    trace = deploy.run_integer(model, codes)
    for k, rec in enumerate(model.layers):
        layer = deploy.hardware_layer(model, k, codes[0])
        np.testing.assert_array_equal(layer.inputs, trace.layers[k].inputs[0])
        if rec.codebook is not None:
            np.testing.assert_array_equal(layer.codebook, rec.codebook)
        (run,) = run_layers([layer], backend="amaranth")
        np.testing.assert_array_equal(run.outputs, trace.layers[k].accumulators[0])
        assert np.any(run.outputs != 0)
