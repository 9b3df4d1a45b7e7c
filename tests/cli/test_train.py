"""``mulfree train`` and ``mulfree evaluate`` as a user runs them."""

import pytest

from model import deploy
from tests.model.test_data import write_mnist


def test_train_then_evaluate_default_net(tmp_path, cli):
    path = tmp_path / "m.npz"
    code, out, err = cli("train", "--epochs", "1", "-o", str(path))
    assert code == 0, err
    assert "training binarynet on digits" in out
    assert "agrees with the trained network on 100.00 % of the 359 test images" in out
    assert "epoch 1/1" in err  # the progress bar
    model = deploy.load(path)
    assert model.meta["net"] == "binarynet" and model.meta["epochs"] == 1
    assert model.meta["accuracy"]["agreement"] == 1.0
    code, out, err = cli("evaluate", str(path))
    assert code == 0, err
    acc = model.meta["accuracy"]["integer_model"]
    correct = round(acc * 359)
    assert f"on digits test set: {100 * acc:.2f} % ({correct}/359)" in out
    assert f"recorded at training: {100 * acc:.2f} %" in out


def test_existing_output_needs_force(tmp_path, cli):
    path = tmp_path / "m.npz"
    path.write_bytes(b"keep me")
    code, _, err = cli("train", "--net", "binarymlp", "--epochs", "1", "-o",
               str(path), "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--force" in err
    assert path.read_bytes() == b"keep me"
    code, out, err = cli("train", "--net", "binarymlp", "--epochs", "1", "-o",
                 str(path), "--force", "--no-progress", "--seed", "3")
    assert code == 0, err
    assert deploy.load(path).meta["seed"] == 3


@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "mnist:/no/such/folder"], "MNIST folder '/no/such/folder' not found"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--net", "resnet"], "unknown network 'resnet'"),
    (["--epochs", "0"], "argument --epochs: must be an integer in [1, 100000], not 0"),
    (["--lr", "-1"], "argument --lr: must be a finite number in (0, 10], not -1"),
    (["--lr", "nan"], "argument --lr: must be a finite number in (0, 10], not nan"),
    (["--batch-size", "1.5"],
     "argument --batch-size: must be an integer in [1, 1048576], not '1.5'"),
    (["--seed", "-3"], "argument --seed: must be an integer in [0, 9223372036854775807], not -3"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, cli, argv, needle):
    path = tmp_path / "m.npz"
    code, _, err = cli("train", "-o", str(path), "--no-progress", *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not path.exists()


def test_evaluate_bad_files(tmp_path, cli):
    code, _, err = cli("evaluate", str(tmp_path / "none.npz"))
    assert code == 2 and "not found" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not a zip")
    code, _, err = cli("evaluate", str(junk))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not a valid mulfree model file" in err


def test_train_on_mnist_files_and_float_checkpoint(tmp_path, cli):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_mnist(folder, n_train=40, n_test=16, compress=True)
    path = tmp_path / "mlp.npz"
    code, out, err = cli("train", "--net", "binarymlp", "--dataset",
                 f"mnist:{folder}", "--epochs", "1", "-o", str(path),
                 "--no-progress")
    assert code == 0, err
    assert "40 train / 16 test images, 1x28x28" in out
    model = deploy.load(path)
    assert model.layers[0].weights.shape == (256, 784, 1, 1)
    assert model.layers[0].a_bits == 9  # 8-bit pixels as signed codes
    code, out, _ = cli("evaluate", str(path))
    assert code == 0 and "on mnist test set" in out
    # A digits model refuses MNIST images.
    fpath = tmp_path / "float.npz"
    code, out, err = cli("train", "--net", "lenet300", "--epochs", "1", "-o",
                 str(fpath), "--no-progress")
    assert code == 0, err
    assert "saved a float checkpoint" in out
    code, out, _ = cli("evaluate", str(fpath))
    assert code == 0 and "float network lenet300" in out
    code, _, err = cli("evaluate", str(fpath), "--dataset", f"mnist:{folder}")
    assert code == 2 and "1, 8, 8" in err


def test_list_networks(cli):
    code, out, _ = cli("train", "--list")
    assert code == 0
    for name in ("binarynet", "ternarynet", "dorefanet", "float", "lenet300", "binarymlp",
                 "mobilenet_tiny"):
        assert name in out
    assert len(out.strip().splitlines()) == 7
