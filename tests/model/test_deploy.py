"""The integer deployment model: equal to the trained network on the whole digits test set,
layer by layer equal to the integer ops, and a versioned file that refuses bad input."""

import json

import numpy as np
import pytest

from model import deploy, nets, ops, quant, train
from model import layers as L
from tests.conftest import version_2_model


# The tests share this module's fixtures: one worker runs them all.
pytestmark = [pytest.mark.xdist_group("model.test_deploy"),
              pytest.mark.usefixtures("one_blas_thread")]


def trained(net, ds, epochs=2, seed=0):
    train.train(net, ds.x_train.astype(float), ds.y_train, epochs=epochs, lr=1e-2, lr_end=1e-3,
                seed=seed, progress=False)
    return net


@pytest.fixture(scope="module")
def models(digits):
    out = {}
    for name in ("binarynet", "ternarynet", "dorefanet", "binarymlp"):
        net = trained(nets.build(name, digits.input_shape, pixel_max=16, seed=1), digits)
        out[name] = net, deploy.fold(net, input_shape=digits.input_shape, pixel_max=16)
    return out


def float_linear_outputs(net, x):
    """Outputs of every conv/dense layer of the float network (evaluation mode)."""
    outs = []
    for layer in net.layers:
        x = layer.forward(x, training=False)
        if isinstance(layer, L.Linear):
            outs.append(x)
    return outs


@pytest.mark.parametrize("name", ["binarynet", "ternarynet", "dorefanet", "binarymlp"])
def test_integer_model_equals_trained_network_on_whole_test_set(models, digits, name):
    net, model = models[name]
    float_pred = train.predict(net, digits.x_test.astype(float))
    int_pred = deploy.predict(model, digits.x_test)
    np.testing.assert_array_equal(int_pred, float_pred)
    assert np.mean(int_pred == digits.y_test) > 0.5  # it has learned something


@pytest.mark.parametrize("name", ["binarynet", "ternarynet", "dorefanet", "binarymlp"])
def test_each_layer_is_the_integer_op_and_the_float_layer(models, digits, name):
    net, model = models[name]
    x = digits.x_test[:40]
    trace = deploy.run_integer(model, x)
    floats = float_linear_outputs(net, x.astype(float))
    linear = [layer for layer in net.layers if isinstance(layer, L.Linear)]
    assert len(trace.layers) == len(model.layers) == len(linear)
    for rec, t, y_float, layer in zip(model.layers, trace.layers, floats, linear):
        # The accelerator's view: the record's fields and the inputs drive model.ops.conv2d.
        acc = ops.conv2d(rec.scheme, t.inputs, rec.weights, stride=rec.stride,
                         padding=rec.padding, a_bits=rec.a_bits, w_bits=rec.w_bits)
        np.testing.assert_array_equal(t.accumulators, acc)
        assert t.inputs.shape[1:] == rec.in_shape
        lo, hi = rec.acc_range
        assert lo <= acc.min() and acc.max() <= hi
        assert max(-lo, hi) < 2 ** (rec.accumulator_width - 1)
        # The float network computes exactly float64(acc) * scale.
        scale = layer.output_scale()
        scale = scale.reshape(-1, 1, 1) if np.ndim(scale) else scale
        np.testing.assert_array_equal(y_float.reshape(acc.shape), acc * scale)
    assert trace.predictions.shape == (40,)


def test_binarynet_layer_outputs_match_float_activations(models, digits):
    net, model = models["binarynet"]
    x = digits.x_test[:30]
    trace = deploy.run_integer(model, x)
    signs = []
    h = x.astype(float)
    for layer in net.layers:
        h = layer.forward(h, training=False)
        if isinstance(layer, L.Sign):
            signs.append(h)
    for t, s in zip(trace.layers, signs):
        np.testing.assert_array_equal(t.outputs.reshape(s.shape), s)


def test_dorefanet_codes_match_float_quantized_inputs(models, digits):
    net, model = models["dorefanet"]
    x = digits.x_test[:30]
    trace = deploy.run_integer(model, x)
    h = x.astype(float)
    codes = []
    for layer in net.layers:
        if isinstance(layer, L.Linear) and layer.input_bits is not None:
            codes.append(quant.dorefa_activations(h, layer.input_bits).codes)
        h = layer.forward(h, training=False)
    assert len(codes) == 3
    for t, c in zip(trace.layers, codes):
        np.testing.assert_array_equal(t.outputs.reshape(c.shape), c)


def test_schemes_of_the_seed_networks(models):
    schemes = {name: [(r.scheme, r.a_bits, r.w_bits, r.output) for r in m.layers]
               for name, (_, m) in models.items()}
    assert schemes["binarynet"] == [("binary", 6, 1, "sign"), ("xnor", 32, 32, "sign"),
                                    ("xnor", 32, 32, "sign"), ("xnor", 32, 32, "scores")]
    assert schemes["ternarynet"][1:] == [("ternary", 2, 2, "sign")] * 2 + [
        ("ternary", 2, 2, "scores")]
    assert schemes["dorefanet"] == [("dorefa", 5, 1, "levels"), ("dorefa", 3, 1, "levels"),
                                    ("dorefa", 3, 1, "levels"), ("int", 4, 8, "scores")]
    assert models["binarynet"][1].layers[1].weights.shape == (64, 1, 5, 5)


def test_first_layer_is_the_bit_plane_sum_of_the_bnn_paper(models, digits):
    _, model = models["binarynet"]
    x = digits.x_test[:10].astype(np.int64)
    first = model.layers[0]
    acc = deploy.run_integer(model, x, upto=1).layers[0].accumulators
    planes = sum((1 << n) * ops.conv2d("binary", (x >> n) & 1, first.weights,
                                       padding=first.padding, a_bits=2, w_bits=1)
                 for n in range(digits.pixel_bits))
    np.testing.assert_array_equal(acc, planes)


def test_run_integer_upto_stops_early(models, digits):
    _, model = models["ternarynet"]
    trace = deploy.run_integer(model, digits.x_test[:3], upto=2)
    assert len(trace.layers) == 2 and trace.predictions is None
    with pytest.raises(ValueError, match="upto"):
        deploy.run_integer(model, digits.x_test[:3], upto=9)
    with pytest.raises(ValueError, match="images must be"):
        deploy.run_integer(model, np.zeros((2, 1, 7, 7), dtype=int))
    with pytest.raises(ValueError, match="pixel codes"):
        deploy.run_integer(model, np.full((1, 1, 8, 8), 17))


def small_net(conv, dense, seed, *, shift_bn=False, **kw):
    rng = np.random.default_rng(seed)
    return L.Sequential([
        conv(1, 8, 3, padding=1, rng=rng, input_scale=1 / 16, **kw.get("first", {})),
        L.MaxPool2d(2), L.BatchNorm(8, shift_based=shift_bn), L.HardTanh(),
        *kw.get("mid", [L.Sign()]), L.Flatten(),
        dense(8 * 4 * 4, 10, rng=rng, **kw.get("last", {})),
        L.BatchNorm(10, shift_based=shift_bn),
    ])


@pytest.mark.parametrize("kind", ["pow2-shift-bn", "dorefa-w2", "int4", "binary-flipped"])
def test_other_schemes_fold_exactly(digits, kind):
    if kind == "pow2-shift-bn":
        net = small_net(L.Pow2Conv2d, L.Pow2Dense, 2, shift_bn=True)
    elif kind == "dorefa-w2":
        net = small_net(L.DorefaConv2d, L.DorefaDense, 3, first={"bitW": 2},
                        last={"bitW": 2, "bitA": 2}, mid=[])
    elif kind == "int4":
        net = small_net(L.IntConv2d, L.IntDense, 4, first={"bits": 4},
                        last={"bits": 4, "input_bits": 4}, mid=[L.ReLU()])
    else:
        net = small_net(L.BinaryConv2d, L.BinaryDense, 5)
    trained(net, digits, epochs=1)
    if kind == "binary-flipped":  # negative batch-norm gains flip the comparisons
        net.layers[2].params["gamma"][::2] *= -1
        net.layers[-1].params["gamma"][1] *= -1
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    if kind == "binary-flipped":
        assert model.layers[0].flip[::2].all() and not model.layers[0].flip[1::2].any()
    np.testing.assert_array_equal(deploy.predict(model, digits.x_test),
                                  train.predict(net, digits.x_test.astype(float)))


def test_fold_refuses_what_does_not_fold():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="layer 1 .*Dense.* float weights"):
        deploy.fold(nets.build("lenet300", (1, 8, 8), pixel_max=16), input_shape=(1, 8, 8),
                    pixel_max=16)
    relu_sign = L.Sequential([L.Flatten(), L.BinaryDense(64, 8, rng=rng, input_scale=1 / 16),
                              L.BatchNorm(8), L.ReLU(), L.Sign(), L.BinaryDense(8, 3, rng=rng)])
    with pytest.raises(ValueError, match="ReLU before Sign"):
        deploy.fold(relu_sign, input_shape=(1, 8, 8), pixel_max=16)
    float_act = L.Sequential([L.Flatten(), L.BinaryDense(64, 8, rng=rng, input_scale=1 / 16),
                              L.BatchNorm(8), L.BinaryDense(8, 3, rng=rng)])
    with pytest.raises(ValueError, match="float activations"):
        deploy.fold(float_act, input_shape=(1, 8, 8), pixel_max=16)
    wrong_scale = L.Sequential([L.Flatten(), L.BinaryDense(64, 3, rng=rng)])
    with pytest.raises(ValueError, match="1/pixel_max"):
        deploy.fold(wrong_scale, input_shape=(1, 8, 8), pixel_max=16)


def test_save_load_round_trip(models, digits, tmp_path):
    _, model = models["dorefanet"]
    model.meta = {"net": "dorefanet", "seed": 1, "accuracy": {"integer_model": 0.5}}
    path = tmp_path / "m.npz"
    deploy.save(model, path)
    loaded = deploy.load(path)
    assert loaded.meta == model.meta and loaded.input_shape == (1, 8, 8)
    for a, b in zip(model.layers, loaded.layers):
        for name in ("kind", "scheme", "a_bits", "w_bits", "stride", "padding", "in_shape",
                     "pool", "acc_range", "output", "out_bits", "score_shift"):
            assert getattr(a, name) == getattr(b, name), name
        for name in ("weights", "thresholds", "flip", "constant", "score_gain", "score_offset"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None) == (vb is None)
            if va is not None:
                np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(deploy.predict(loaded, digits.x_test),
                                  deploy.predict(model, digits.x_test))
    with np.load(path, allow_pickle=False) as z:
        # Integers only, but for the training state kept for fine-tuning (float64).
        assert all(z[k].dtype.kind in "iu" for k in z.files if not k.startswith("state."))
        assert {k for k in z.files if k.startswith("state.")} == {
            f"state.{k}" for k in model.state}
    assert all(np.array_equal(loaded.state[k], v) for k, v in model.state.items())


def test_xnor_words_pack_by_channel_and_survive_saving(models, tmp_path):
    _, model = models["binarynet"]
    assert [deploy.xnor_lanes(c) for c in (32, 64, 256, 3136, 10)] == [32, 32, 32, 32, 10]
    dense = model.layers[2]
    assert dense.weights.shape == (256, 8, 1, 1) and dense.weights.dtype == np.int64
    deploy.save(model, tmp_path / "b.npz")
    loaded = deploy.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(loaded.layers[2].weights, dense.weights)


def rewrite(path, edit):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_load_refuses_other_versions_and_corrupt_files(models, tmp_path):
    _, model = models["binarymlp"]
    path = tmp_path / "m.npz"
    deploy.save(model, path)
    with pytest.raises(ValueError, match="exists"):
        deploy.save(model, path)
    deploy.save(model, path, overwrite=True)

    def bump_version(arrays):
        manifest = json.loads(arrays["manifest"].tobytes())
        manifest["version"] = 3
        arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)

    other = tmp_path / "v3.npz"
    other.write_bytes(path.read_bytes())
    rewrite(other, bump_version)
    with pytest.raises(ValueError, match="version 3 mulfree model; this mulfree reads versions "
                                         "1 and 2 only"):
        deploy.load(other)

    def damage(arrays):
        arrays["layer0.weights"] = arrays["layer0.weights"].copy()
        arrays["layer0.weights"][0, 0] ^= 1

    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes())
    rewrite(damaged, damage)
    with pytest.raises(ValueError, match="checksum mismatch"):
        deploy.load(damaged)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a valid mulfree model file"):
        deploy.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no manifest"):
        deploy.load(foreign)
    with pytest.raises(ValueError, match="not found"):
        deploy.load(tmp_path / "missing.npz")


def test_float_checkpoint_round_trip(digits, tmp_path):
    net = nets.build("lenet300", digits.input_shape, pixel_max=16, seed=0)
    trained(net, digits, epochs=1)
    deploy.save_float(net, tmp_path / "f.npz", net_name="lenet300", input_shape=(1, 8, 8),
                      pixel_max=16, classes=10, meta={"seed": 0})
    ck = deploy.load(tmp_path / "f.npz")
    assert isinstance(ck, deploy.FloatCheckpoint) and ck.net == "lenet300"
    again = nets.build("lenet300", ck.input_shape, ck.classes, pixel_max=ck.pixel_max)
    again.load_state_dict(ck.state)
    x = digits.x_test.astype(float)
    np.testing.assert_array_equal(train.predict(again, x), train.predict(net, x))


@pytest.mark.parametrize("name,index", [("binarynet", 1), ("binarynet", 3), ("dorefanet", 1),
                                        ("ternarynet", 0)])
def test_hardware_layer_files_hold_the_golden_layer(models, digits, tmp_path, name, index):
    from model import layer_file
    _, model = models[name]
    image = digits.x_test[7]
    path = tmp_path / "LAYER.npz"
    layer_file.save_layer(path, deploy.hardware_layer(model, index, image))
    hw = layer_file.load_layer(path)
    golden = deploy.run_integer(model, image[None]).layers[index].accumulators[0]
    out = ops.conv2d(hw.scheme, hw.inputs, hw.weights, stride=hw.stride, padding=hw.padding,
                     a_bits=hw.a_bits, w_bits=hw.w_bits)
    np.testing.assert_array_equal(out, golden)
    with pytest.raises(ValueError, match="layer index"):
        deploy.hardware_layer(model, 9, image)


def _manifest(path):
    with np.load(path) as z:
        return json.loads(z["manifest"].tobytes())


def test_folded_models_stay_version_1(tmp_path):
    net = nets.build("binarymlp", (1, 8, 8), pixel_max=16, seed=2)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    deploy.save(model, tmp_path / "m.npz")
    manifest = _manifest(tmp_path / "m.npz")
    assert manifest["version"] == deploy.VERSION == 1
    assert "pixel_min" not in manifest and "out_min" not in manifest["layers"][0]
    back = deploy.load(tmp_path / "m.npz")
    assert back.pixel_min == 0 and back.float_io is None
    assert all(layer.codebook is None and layer.out_min == 0 for layer in back.layers)


def test_version_2_fields_round_trip_and_compute(tmp_path):
    model = version_2_model()
    x = np.random.default_rng(4).integers(0, 8, (5, 2, 4, 4))
    trace = deploy.run_integer(model, x)
    acc = trace.layers[0].accumulators
    from model.compress import codebook_conv2d
    book = model.layers[0].codebook
    np.testing.assert_array_equal(acc, codebook_conv2d(x, model.layers[0].weights, book,
                                                       a_bits=3, groups=2))
    for g in range(2):  # each group is a codebook layer of its own channel and filter
        np.testing.assert_array_equal(acc[:, g:g + 1], codebook_conv2d(
            x[:, g:g + 1], model.layers[0].weights[g:g + 1], book, a_bits=3))
    codes = trace.layers[0].outputs
    want = -2 + (acc >= np.array([-20, -5])[None, :, None, None]).astype(int) \
        + (acc >= np.array([0, 5])[None, :, None, None]) \
        + (acc >= np.array([20, 500])[None, :, None, None])
    np.testing.assert_array_equal(codes, want)
    assert codes.min() < 0                                   # signed codes from out_min
    path = tmp_path / "v2.npz"
    deploy.save(model, path)
    assert _manifest(path)["version"] == 2
    back = deploy.load(path)
    np.testing.assert_array_equal(back.layers[0].codebook, model.layers[0].codebook)
    assert back.layers[0].out_min == -2 and back.float_io == model.float_io
    assert back.layers[0].groups == 2 and back.state.keys() == model.state.keys()
    for name, value in model.state.items():
        np.testing.assert_array_equal(back.state[name], value)
    floats = x.astype(np.float32) * np.float32(0.25)
    run = deploy.run_float(back, floats)
    np.testing.assert_array_equal(run.codes, trace.layers[1].pooled.reshape(5, 3))
    np.testing.assert_array_equal(run.predictions, trace.predictions)
    assert run.outputs.shape == (5, 3)
    assert back.layers[0].accumulator_width == model.layers[0].accumulator_width
