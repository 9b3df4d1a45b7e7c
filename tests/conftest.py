"""What the test files share: the golden sums and counters of a layer run, random codes with
their extremes, the command line as a user runs it, and the suite's timeouts.

Import the helpers with ``from tests.conftest import ...``; the fixtures need no import.
"""

from __future__ import annotations

import numpy as np
import pytest

#: Seconds a test marked ``slow`` may take (the default limit is pyproject's ``timeout``).
SLOW_TIMEOUT = 900


def pytest_collection_modifyitems(config, items):
    """Give the long sweeps (``-m slow``) a longer time limit than the default."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


# --- the golden model of a layer run ---------------------------------------------------------

def golden(layer) -> np.ndarray:
    """The exact sums ``[M, E, F]`` of a ``model.layer_file.Layer`` (its golden model)."""
    from model.layer_file import golden_outputs
    return golden_outputs(layer)


def predicted_counters(layer, params, mapping=None, names=None) -> dict:
    """The counters ``sim.cycle_model.predict`` gives for ``layer`` on an array with
    ``params`` under ``mapping`` (default: the one ``choose_mapping`` picks): ``names``
    (default: the accelerator's ``hw.schedule.COUNTERS`` and the derived ones)."""
    from hw.schedule import COUNTERS, DERIVED_COUNTERS
    from sim.cycle_model import choose_mapping, predict
    from sim.run_layer import layer_codes, layer_shape
    shape = layer_shape(layer)
    weights, _, _, w_bits = layer_codes(layer)
    mapping = mapping or choose_mapping(shape, params)
    model = predict(shape, params, mapping, weights=weights, scheme=layer.scheme,
                    w_bits=w_bits, codebook=layer.codebook)
    return {name: int(model[name]) for name in (names or COUNTERS + DERIVED_COUNTERS)}


def assert_run_exact(layer, outputs, counters: dict, params, mapping=None) -> None:
    """``outputs`` equal the golden model and every counter the cycle model, exactly."""
    np.testing.assert_array_equal(outputs, golden(layer))
    model = predicted_counters(layer, params, mapping, names=tuple(counters))
    assert {k: int(v) for k, v in counters.items()} == model, (
        f"{layer.weights.shape} on {layer.inputs.shape}")


def random_codes(rng, scheme: str, weights_shape, inputs_shape, *, a_bits: int,
                 w_bits: int | None = None):
    """Seeded random weight and activation codes over their whole ranges, the first weight
    and input at the lowest code and the last at the highest (the extremes)."""
    from model.quant import activation_code_range, weight_code_range
    lo, hi = weight_code_range(scheme, w_bits)
    weights = rng.integers(lo, hi, size=weights_shape, endpoint=True)
    weights.flat[0], weights.flat[-1] = lo, hi
    lo, hi = activation_code_range(scheme, a_bits)
    inputs = rng.integers(lo, hi, size=inputs_shape, endpoint=True)
    inputs.flat[0], inputs.flat[-1] = lo, hi
    return weights, inputs


# --- model files ----------------------------------------------------------------------------

def version_2_model():
    """A hand-made integer model with every version-2 field: signed input codes allowed
    (``pixel_min``), a grouped look-up-table layer (``groups``, ``codebook``) with signed
    output codes (``out_min``), a float interface (``float_io``) and a training state."""
    from model import deploy
    from model.qonnx_ref import FloatInterface, Quantizer
    rng = np.random.default_rng(3)
    book = np.array([0, 1, 2, 3, -4, -3, -2, -1])          # 3-bit two's complement levels
    lut = deploy.IntegerLayer(
        kind="conv", scheme="dorefa", weights=rng.integers(0, 8, (2, 1, 3, 3)), a_bits=3,
        w_bits=3, stride=1, padding=0, in_shape=(2, 4, 4), channels=2, flatten=False, pool=0,
        acc_range=(-9 * 4 * 7, 9 * 3 * 7), output="levels", out_bits=2, out_min=-2,
        thresholds=np.array([[-20, 0, 20], [-5, 5, 500]]), flip=np.array([False, False]),
        constant=np.array([False, False]), codebook=book, groups=2)
    head = deploy.IntegerLayer(
        kind="dense", scheme="ternary", weights=rng.integers(-1, 2, (3, 8, 1, 1)), a_bits=2,
        w_bits=2, stride=1, padding=0, in_shape=(8, 1, 1), channels=8, flatten=True, pool=0,
        acc_range=(-16, 16), output="scores", score_gain=np.array([3, -1, 2]),
        score_offset=np.array([0, 5, -7]), score_shift=2)
    io = FloatInterface((2, 4, 4), (3,), Quantizer("Quant", 0.25, 3, False, False))
    state = {"0.weight": rng.standard_normal((2, 1, 3, 3)), "2.weight": rng.standard_normal(
        (3, 8))}
    return deploy.IntegerModel([lut, head], (2, 4, 4), 7, 3, {"net": "hand"}, pixel_min=0,
                               float_io=io, state=state)


# --- the command line ------------------------------------------------------------------------

@pytest.fixture
def cli(capsys):
    """``cli("run-layer", path, ...)`` runs ``mulfree`` in this process and returns
    ``(status, stdout, stderr)``."""
    from mulfree.cli import main

    def run(*argv):
        status = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def one_error_line(err: str, command: str | None = None) -> str:
    """The single line of ``err`` (a refusal), checked to start as the CLI's errors do."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    prefix = f"mulfree {command}: error: " if command else "mulfree"
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def assert_config_refused(cli, tmp_path, file_name: str, text: str, message: str, *command):
    """``mulfree COMMAND --config FILE -o OUT`` with ``text`` in ``FILE``: exit status 2, one
    error line holding ``message``, no ``OUT`` written."""
    path = tmp_path / file_name
    path.write_text(text)
    status, _, err = cli(*command, "--config", path, "-o", tmp_path / "out")
    assert status == 2
    assert message in one_error_line(err, command[0])
    assert not (tmp_path / "out").exists()


# --- shared data -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_blas_thread():
    """Small matrix products run fastest on one BLAS thread (and the machine is shared); use
    with ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as ``model.data`` gives them (the embedded default)."""
    from model.data import load_digits
    return load_digits()
