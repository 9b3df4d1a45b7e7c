"""``mulfree compress`` as a user meets it: the table, accuracy, the file, and bad input."""

import re

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from model import data, deploy, nets
from model.compress import load_compressed
from model.train import accuracy, train
from mulfree.cli import main
from tests.conftest import one_error_line
from tests.model.test_data import write_mnist

FAST = ["--prune-steps", "1", "--retrain-epochs", "1", "--finetune-epochs", "1", "--no-progress"]


# The tests share this module's fixtures: one worker runs them all.
pytestmark = pytest.mark.xdist_group("cli.test_compress")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ds = data.load_digits()
    net = nets.build("lenet300", ds.input_shape, pixel_max=ds.pixel_max, seed=0)
    with threadpool_limits(1, user_api="blas"):  # small products: one thread is faster
        train(net, ds.x_train.astype(np.float64), ds.y_train, epochs=3, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "lenet.npz"
    deploy.save_float(net, path, net_name="lenet300", input_shape=ds.input_shape,
                      pixel_max=ds.pixel_max, classes=10, meta={"dataset": ds.spec()})
    return path


def test_compress_prints_the_table_and_writes_a_decodable_file(tmp_path, checkpoint, capsys):
    out = tmp_path / "small.npz"
    assert main(["compress", str(checkpoint), "--prune", "0.8,0.8,0.5", "--share-bits", "4",
                 "--index-bits", "5", "--huffman", "-o", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if re.match(r"(fc\d|total) ", line)}
    assert list(rows) == ["fc1", "fc2", "fc3", "total"]
    assert rows["fc1"][1:3] == ["19200", "20.0%"] and rows["fc3"][1:3] == ["1000", "50.0%"]
    back = load_compressed(out)
    totals = back.totals()
    # The printed total rate is the one the file's contents give.
    assert rows["total"][-1] == f"{totals['dense'] / totals['huffman']:.1f}x"
    assert [layer.sparse.index_bits for layer in back.layers] == [5, 5, 5]
    before = float(re.search(r"accuracy before ([\d.]+) %", text).group(1))
    after = float(re.search(r"after ([\d.]+) %", text).group(1))
    ds = data.load_digits()
    x_test = ds.x_test.astype(np.float64)
    assert after == round(100 * accuracy(back.network(), x_test, ds.y_test), 2)
    original = deploy.load(checkpoint)
    net = nets.build("lenet300", ds.input_shape, pixel_max=ds.pixel_max)
    net.load_state_dict(original.state)
    assert before == round(100 * accuracy(net, x_test, ds.y_test), 2)


def test_raw_fields_without_huffman(tmp_path, checkpoint, capsys):
    out = tmp_path / "raw.npz"
    assert main(["compress", str(checkpoint), "--prune-quality", "1.0", "-o", str(out),
                 *FAST]) == 0
    assert "raw fields" in capsys.readouterr().out
    back = load_compressed(out)
    assert all(layer.sparse.index_bits == 4 for layer in back.layers)


def test_existing_output_is_not_overwritten(tmp_path, checkpoint, capsys):
    out = tmp_path / "taken.npz"
    out.write_text("keep me")
    assert main(["compress", str(checkpoint), "-o", str(out), *FAST]) == 2
    assert "--force" in one_error_line(capsys.readouterr().err, "compress")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("flags, message", [
    (["--prune", "0.5,0.5"], "2 values for 3 compressible layers"),
    (["--prune", "1.5"], "sparsity must be a number in [0, 1]"),
    (["--share-bits", "9"], "weight-sharing bits must be an integer in [2, 8]"),
    (["--index-bits", "0"], "index bits must be an integer in [1, 16]"),
    (["--prune-steps", "0"], "argument --prune-steps: must be an integer in [1, 100], not 0"),
])
def test_bad_settings_are_one_line_and_leave_no_file(tmp_path, checkpoint, capsys, flags,
                                                     message):
    out = tmp_path / "never.npz"
    assert main(["compress", str(checkpoint), *FAST, *flags, "-o", str(out)]) == 2
    assert message in one_error_line(capsys.readouterr().err, "compress")
    assert not out.exists()


def test_integer_model_and_missing_file_are_refused(tmp_path, capsys):
    ds = data.load_digits()
    net = nets.build("binarymlp", ds.input_shape, pixel_max=ds.pixel_max)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max, classes=10)
    path = tmp_path / "binary.npz"
    deploy.save(model, path)
    assert main(["compress", str(path), "-o", str(tmp_path / "x.npz"), *FAST]) == 2
    assert "float checkpoint" in one_error_line(capsys.readouterr().err, "compress")
    assert main(["compress", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "x.npz")]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err, "compress")


def test_a_data_set_with_other_images_is_refused(tmp_path, checkpoint, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_mnist(folder, n_train=20, n_test=8)
    out = tmp_path / "never.npz"
    assert main(["compress", str(checkpoint), "--dataset", f"mnist:{folder}", "-o", str(out),
                 *FAST]) == 2
    line = one_error_line(capsys.readouterr().err, "compress")
    assert "takes [1, 8, 8] images" in line and "has [1, 28, 28]" in line
    assert not out.exists()
