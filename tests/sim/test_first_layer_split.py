"""The engine's first layer with its filter columns split (``sim.program.split_first_layer``,
``model.column_split``): the split network on the split images (``split_image``) gives every
layer's accumulators of the network bit for bit, for every quantized network that starts with
a convolution and every split its scheme allows, on random images and on the extremes; the
compiler picks the split the cycle model finds fastest."""

import numpy as np
import pytest

from model import deploy, nets
from model.column_split import zero_weight_code
from sim.program import (compile_program, engine_for_model, first_layer_split, image_cycles,
                         split_first_layer, split_image)
from tests.model.test_channels import randomize_batch_norms

SHAPE = (1, 8, 8)

#: The quantized networks that start with a convolution (binarymlp starts dense).
CONV_FIRST = ("binarynet", "ternarynet", "dorefanet", "mobilenet_tiny")


def _folded(name: str, seed: int) -> deploy.IntegerModel:
    net = nets.build(name, SHAPE, pixel_max=16, seed=seed)
    randomize_batch_norms(net, np.random.default_rng(seed))
    return deploy.fold(net, input_shape=SHAPE, pixel_max=16)


@pytest.mark.parametrize("name", CONV_FIRST)
def test_a_split_network_gives_the_same_accumulators(name):
    model = _folded(name, 11)
    first = model.layers[0]
    m, c, r, s = first.weights.shape
    has_zero = zero_weight_code(first.scheme, first.w_bits, first.codebook) is not None
    rng = np.random.default_rng(11)
    images = np.concatenate([rng.integers(0, 17, size=(4,) + SHAPE),
                             np.zeros((1,) + SHAPE, dtype=np.int64),
                             np.full((1,) + SHAPE, 16)])
    want = deploy.run_integer(model, images)
    splits = [k for k in range(2, s + 1) if has_zero or s % k == 0]
    assert s in splits
    for k in splits:
        split = split_first_layer(model, k)
        assert split.layers[0].weights.shape == (m, c * k, r, -(-s // k))
        got = deploy.run_integer(split, np.stack([split_image(first, k, x) for x in images]))
        for a, b in zip(want.layers, got.layers):
            np.testing.assert_array_equal(b.accumulators, a.accumulators)


def test_the_compiler_splits_when_the_cycle_model_says_it_pays():
    model = _folded("binarynet", 12)
    four = engine_for_model(model, rows=1, cols=2)
    program = compile_program(model, four)
    assert program.split == first_layer_split(model, four.accelerator) == 5
    # one channel in 4 lanes: 5 shifted copies fill 2 words of 4 lanes instead of 5 words
    assert program.compiled.layers[0].weights.shape == (32, 5, 5, 1)
    whole = compile_program(model, engine_for_model(split_first_layer(model, 1), rows=1,
                                                    cols=2, lanes=1))
    assert whole.split == 1 and whole.compiled is whole.model     # 1 lane: 5 words either way
    assert image_cycles(program) < image_cycles(whole)
