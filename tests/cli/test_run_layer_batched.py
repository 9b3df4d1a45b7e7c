"""A batch of dense inputs through ``mulfree run-layer`` as it is: LAYER.npz already holds a
1x1 convolution over [C, rows, N / rows] (``model.batching``), so no new option is needed."""

import numpy as np

from model.batching import batched_dense_layer, conv_outputs_as_dense_batch
from model.layer_file import load_outputs, save_layer
from model.ops import dense
from mulfree.cli import main


def test_a_batched_dense_layer_file_runs_and_gives_every_dense_output(tmp_path):
    rng = np.random.default_rng(8)
    inputs, weights = rng.integers(-8, 8, (6, 5)), rng.integers(-1, 2, (3, 5))
    inputs[0], weights[-1] = 7, -1                       # the extremes
    layer = batched_dense_layer("ternary", inputs, weights, rows=2, filters=4, a_bits=4)
    save_layer(tmp_path / "batch.npz", layer)
    assert main(["run-layer", str(tmp_path / "batch.npz"), "-o", str(tmp_path / "out.npz"),
                 "--rows", "2", "--cols", "3", "--quiet"]) == 0
    out = load_outputs(tmp_path / "out.npz")["outputs"]
    assert out.shape == (4, 2, 3)
    want = np.stack([dense("ternary", x, weights, a_bits=4) for x in inputs])
    np.testing.assert_array_equal(conv_outputs_as_dense_batch(out, 3), want)
