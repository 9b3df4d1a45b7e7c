"""``mulfree run-model``: a whole network on the simulated network engine, checked against the
integer model; its output file, its refusals (one line, exit 2) and its mismatch status (1)."""

from __future__ import annotations

import numpy as np
import pytest

from model import data, deploy
from tests.conftest import one_error_line
from tests.sim.test_engine_run import _folded


@pytest.fixture(scope="module")
def small_binarynet(tmp_path_factory):
    """BinaryNet on the digits' shape, narrow (8, 16, 32 channels) with random weights and
    batch norms: a binary first layer on pixel codes, then XNOR layers (two datapaths)."""
    path = tmp_path_factory.mktemp("run_model") / "bn.npz"
    deploy.save(_folded("binarynet", 11, widths=(8, 16, 32)), path)
    return path


@pytest.mark.timeout(600)
def test_run_model_is_bit_exact_and_writes_its_file(cli, small_binarynet, tmp_path):
    out = tmp_path / "out.npz"
    status, printed, err = cli("run-model", small_binarynet, "-o", out, "--images", "2",
                               "--rows", "3", "--cols", "4", "--no-progress")
    assert status == 0, err
    with np.load(out) as z:
        scores, predictions, labels, cycles = (z[k] for k in ("scores", "predictions",
                                                              "labels", "cycles"))
    model = deploy.load(small_binarynet)
    ds = data.load_digits()
    trace = deploy.run_integer(model, ds.x_test[:2])
    np.testing.assert_array_equal(scores, trace.layers[-1].accumulators.reshape(2, -1))
    np.testing.assert_array_equal(predictions, trace.predictions)
    np.testing.assert_array_equal(labels, ds.y_test[:2])
    from sim.program import compile_program, engine_for_model, image_cycles
    program = compile_program(model, engine_for_model(model, rows=3, cols=4))
    assert cycles.tolist() == [image_cycles(program)] * 2
    assert "scores bit-exact on 2/2; counters and cycles equal the cycle model on 2/2" in printed


@pytest.mark.timeout(600)
def test_a_score_that_differs_exits_1(cli, small_binarynet, tmp_path, monkeypatch):
    from sim import run_model
    real = run_model.AmaranthEngineBackend.run

    def corrupted(self, engine, job, progress=False):
        results = real(self, engine, job, progress)
        results[0].scores[3] += 1
        return results
    monkeypatch.setattr(run_model.AmaranthEngineBackend, "run", corrupted)
    status, _, err = cli("run-model", small_binarynet, "-o", tmp_path / "o.npz", "--images",
                         "1", "--rows", "3", "--cols", "4", "--no-progress")
    assert status == 1
    assert "MISMATCH: image 0 (scores differ on 1 images, counters on 0)" in err


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images must be 'all' or an integer in [1, 359], not '0'"),
    (["--images", "many"], "--images must be 'all' or an integer in [1, 359], not 'many'"),
    (["--port", "/dev/null"], "--port is for --backend board"),
    (["--backend", "board"], "--backend board needs --port PORT"),
    (["--lanes", "64"], "no activation word of at least 384 bits holds a whole number of lanes"),
])
def test_bad_input_is_one_line(cli, small_binarynet, tmp_path, argv, message):
    out = tmp_path / "o.npz"
    status, _, err = cli("run-model", small_binarynet, "-o", out, *argv)
    assert status == 2
    assert message in one_error_line(err, "run-model")
    assert not out.exists()


def test_an_existing_output_and_a_float_checkpoint_are_refused(cli, small_binarynet, tmp_path):
    from model import nets
    out = tmp_path / "o.npz"
    out.write_bytes(b"keep")
    status, _, err = cli("run-model", small_binarynet, "-o", out)
    assert status == 2 and "--force" in one_error_line(err, "run-model")
    assert out.read_bytes() == b"keep"
    deploy.save_float(nets.build("float", (1, 8, 8), pixel_max=16), tmp_path / "f.npz",
                      net_name="float", input_shape=(1, 8, 8), pixel_max=16, classes=10)
    status, _, err = cli("run-model", tmp_path / "f.npz", "-o", tmp_path / "p.npz")
    assert status == 2 and "is a float checkpoint" in one_error_line(err, "run-model")
