"""Training loop, optimisers and schedules: reproducible, maskable, and they learn."""

import numpy as np
import pytest

from model import layers as L
from model import nets, optim, train
from model.layers import ap2


def blobs(seed=0, n=120):
    """Three separable Gaussian classes in 4 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], dtype=float)
    y = rng.integers(0, 3, size=n)
    return centres[y] + rng.normal(scale=0.5, size=(n, 4)), y


def mlp(seed=0):
    rng = np.random.default_rng(seed)
    return L.Sequential([L.Dense(4, 8, rng=rng), L.ReLU(), L.Dense(8, 3, rng=rng)])


def test_training_learns_and_records_history():
    x, y = blobs()
    net = mlp()
    before = train.accuracy(net, x, y)
    hist = train.train(net, x, y, epochs=15, batch_size=16, lr=1e-2, seed=1, x_test=x,
                       y_test=y, progress=False)
    assert len(hist.loss) == len(hist.test_accuracy) == 15
    assert hist.loss[-1] < hist.loss[0]
    assert train.accuracy(net, x, y) >= 0.95 > before
    assert hist.steps == 15 * 8


def test_same_seed_same_weights_different_seed_different():
    x, y = blobs()
    runs = []
    for seed in (3, 3, 4):
        net = mlp(seed=0)
        train.train(net, x, y, epochs=2, batch_size=10, seed=seed, progress=False)
        runs.append(net.state_dict())
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_quantized_net_training_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(40, 1, 8, 8)).astype(float)
    y = rng.integers(0, 10, size=40)
    states = []
    for _ in range(2):
        net = nets.build("binarymlp", (1, 8, 8), pixel_max=16, seed=5)
        train.train(net, x, y, epochs=2, batch_size=16, seed=2, progress=False)
        states.append(net.state_dict())
    for name in states[0]:
        np.testing.assert_array_equal(states[0][name], states[1][name])


def test_masks_freeze_pruned_weights_and_callback_sees_every_step():
    x, y = blobs()
    net = mlp()
    mask = np.ones((8, 4))
    mask[:, :2] = 0
    net.layers[0].params["weight"] *= mask
    seen = []

    def on_step(step, n):
        seen.append(step)
        assert np.all(n.layers[0].params["weight"][:, :2] == 0)

    train.train(net, x, y, epochs=2, batch_size=40, seed=0, masks={"0.weight": mask},
                on_step=on_step, progress=False)
    assert seen == list(range(1, 7))
    assert np.all(net.layers[0].params["weight"][:, 2:] != 0)


def test_bad_masks_and_arguments_are_refused():
    x, y = blobs()
    net = mlp()
    with pytest.raises(ValueError, match="unknown parameter '9.weight'"):
        train.train(net, x, y, epochs=1, masks={"9.weight": np.ones(1)}, progress=False)
    with pytest.raises(ValueError, match="shape"):
        train.train(net, x, y, epochs=1, masks={"0.weight": np.ones((2, 2))}, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train.train(net, x, y, epochs=0, progress=False)
    with pytest.raises(ValueError, match="labels"):
        train.train(net, x, y[:-1], epochs=1, progress=False)
    with pytest.raises(ValueError, match="unknown optimiser 'sgd'"):
        train.train(net, x, y, epochs=1, optimizer="sgd", progress=False)


def test_progress_bar_shows_epoch_loss_accuracy(capsys):
    x, y = blobs(n=30)
    train.train(mlp(), x, y, epochs=2, batch_size=10, progress=True, desc="mlp")
    err = capsys.readouterr().err
    assert "mlp epoch 2/2" in err and "loss=" in err and "acc=" in err


def test_adam_first_step_is_lr_times_sign():
    p = np.array([1.0, -2.0, 3.0])
    g = np.array([0.5, -4.0, 0.0])
    opt = optim.Adam()
    opt.step([p], [g], 0.1)
    np.testing.assert_allclose(p, [0.9, -1.9, 3.0], rtol=1e-6)


def test_adam_minimises_a_quadratic():
    p = np.array([5.0, -3.0])
    opt = optim.Adam()
    for _ in range(2000):
        opt.step([p], [2 * (p - [1.0, 2.0])], 0.05)
    np.testing.assert_allclose(p, [1.0, 2.0], atol=1e-3)


def test_shift_adamax_steps_are_powers_of_two():
    p = np.array([0.5, 0.5, 0.5])
    g = np.array([0.3, -0.05, 0.0])
    opt = optim.ShiftAdaMax()
    opt.step([p], [g], 2.0 ** -10)
    b1 = 1 - 2.0 ** -3
    m = (1 - b1) * g
    u = np.abs(g)
    rate = ap2(2.0 ** -10 / (1 - b1))
    expected = 0.5 - rate * m * ap2(1 / np.maximum(u, 1e-12))
    np.testing.assert_array_equal(p, expected)
    # Both scalings are shifts: the rate 2^-10 / (1 - b1) = 2^-7 exactly and ap2(1/|g|).
    assert rate == 2.0 ** -7
    assert p[2] == 0.5  # zero gradient, zero moment: no update


def test_shift_adamax_trains():
    x, y = blobs()
    net = mlp()
    train.train(net, x, y, epochs=20, batch_size=16, optimizer="shift-adamax", lr=2.0 ** -6,
                seed=0, progress=False)
    assert train.accuracy(net, x, y) >= 0.9


def test_exponential_decay_endpoints():
    s = optim.ExponentialDecay(1e-2, 1e-4, 5)
    assert s(0) == pytest.approx(1e-2)
    assert s(4) == pytest.approx(1e-4)
    assert s(2) == pytest.approx(1e-3)
    assert s(10) == pytest.approx(1e-4)
    assert optim.ExponentialDecay(0.5, 0.1, 1)(0) == 0.5
    with pytest.raises(ValueError):
        optim.ExponentialDecay(0.0, 1e-4, 3)


def test_state_dict_round_trip_and_mismatch():
    a, b = mlp(seed=1), mlp(seed=2)
    b.load_state_dict(a.state_dict())
    x, _ = blobs(n=5)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"0.weight": np.zeros((8, 4))})


@pytest.mark.parametrize("name", list(nets.NETS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_every_net_builds_for_digits_and_mnist_sizes(name, shape):
    net = nets.build(name, shape, pixel_max=16, seed=0)
    x = np.random.default_rng(0).integers(0, 17, size=(2,) + shape).astype(float)
    out = net.forward(x, training=True)
    assert out.shape == (2, 10)
    net.backward(np.ones_like(out))


def test_unknown_net_is_refused():
    with pytest.raises(ValueError, match="unknown network 'resnet'; allowed: binarynet"):
        nets.build("resnet", (1, 8, 8))
