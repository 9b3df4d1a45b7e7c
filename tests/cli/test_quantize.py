"""``mulfree quantize``: a float checkpoint into an integer model, as a user runs it."""

import numpy as np
import pytest

from model import data, deploy
from mulfree.cli import main


# The tests share this module's fixtures: one worker runs them all.
pytestmark = pytest.mark.xdist_group("cli.test_quantize")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("float") / "float.npz"
    assert main(["train", "--net", "float", "--epochs", "2", "-o", str(path),
                 "--no-progress"]) == 0
    return path


def test_quantize_with_fine_tuning_saves_a_bit_exact_integer_model(tmp_path, cli,
                                                                    checkpoint):
    out_path = tmp_path / "ternary.npz"
    code, out, err = cli("quantize", str(checkpoint), "--net", "ternarynet",
                 "--epochs", "1", "-o", str(out_path))
    assert code == 0, err
    assert "float -> ternarynet on digits (359 test images)" in out
    assert "fine-tuned 1 epochs" in out and "epoch 1/1" in err  # the progress bar
    model = deploy.load(out_path)
    assert isinstance(model, deploy.IntegerModel)
    meta = model.meta
    assert meta["net"] == "ternarynet" and meta["quantized_from"]["net"] == "float"
    assert meta["accuracy"]["agreement"] == 1.0
    # The recorded accuracy is the saved integer model's, recomputed here.
    ds = data.load_digits()
    correct = int(np.sum(deploy.predict(model, ds.x_test) == ds.y_test))
    assert meta["accuracy"]["integer_model"] == correct / len(ds.y_test)
    assert f"integer model test accuracy {100 * correct / 359:.2f} %" in out
    for step in ("float_checkpoint", "transferred", "recalibrated", "fine_tuned"):
        assert 0 <= meta["accuracy"][step] <= 1


@pytest.mark.parametrize("argv, needle", [
    (["--net", "float"], "argument --net: unknown quantized network 'float'"),
    (["--net", "binarymlp"], "float cannot be quantized into binarymlp: the source network "
                             "has 4 weight layers, the target 2"),
    (["--net", "binarynet", "--epochs", "-1"],
     "argument --epochs: must be an integer in [0, 100000], not -1"),
    (["--net", "binarynet", "--dataset", "mnist:/nonexistent"], "/nonexistent"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, cli, checkpoint, argv,
                                                         needle):
    out_path = tmp_path / "m.npz"
    code, out, err = cli("quantize", str(checkpoint), *argv, "-o", str(out_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out_path.exists()


def test_an_integer_model_or_an_existing_output_is_refused(tmp_path, capsys, cli, checkpoint):
    integer = tmp_path / "int.npz"
    assert main(["quantize", str(checkpoint), "--net", "binarynet", "-o", str(integer)]) == 0
    capsys.readouterr()
    code, _, err = cli("quantize", str(integer), "--net", "ternarynet", "-o",
               str(tmp_path / "again.npz"))
    assert code == 2 and "already an integer model" in err
    before = integer.read_bytes()
    code, _, err = cli("quantize", str(checkpoint), "--net", "ternarynet", "-o",
               str(integer))
    assert code == 2 and "--force" in err and integer.read_bytes() == before
