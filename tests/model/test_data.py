"""Data loading: the fixed digits split and the MNIST IDX reader on files written here."""

import gzip
import struct

import numpy as np
import pytest

from model import data


def write_idx(path, array, *, compress=False, type_code=0x08):
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d)
                                                             for d in array.shape)
    payload = header + array.astype(np.uint8 if type_code == 0x08 else ">i4").tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist(folder, *, n_train=30, n_test=12, size=28, compress=False, seed=0, dot=False):
    rng = np.random.default_rng(seed)
    sets = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        sep = "." if dot else "-"
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{split}-images{sep}idx3-ubyte{suffix}", images, compress=compress)
        write_idx(folder / f"{split}-labels{sep}idx1-ubyte{suffix}", labels, compress=compress)
        sets[split] = images, labels
    return sets


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = data.load_digits(), data.load_digits()
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert len(a.y_train) + len(a.y_test) == 1797
    assert len(a.y_test) == 359
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (1, 8, 8)
    assert a.pixel_max == 16 and a.x_train.max() == 16 and a.pixel_bits == 5
    # every class is split 80/20
    for label in range(10):
        total = np.sum(a.y_train == label) + np.sum(a.y_test == label)
        assert abs(np.sum(a.y_test == label) - 0.2 * total) <= 0.5
    # no image of the test split is a train image at the same index of the original set
    from sklearn.datasets import load_digits
    original = load_digits().images.astype(np.uint8)
    all_images = np.concatenate([a.x_train[:, 0], a.x_test[:, 0]])
    assert sorted(map(bytes, all_images)) == sorted(map(bytes, original))


def test_digits_float_input_is_codes_over_pixel_max():
    ds = data.load_digits()
    x = ds.to_float(ds.x_test[:3])
    np.testing.assert_array_equal(x * 16, ds.x_test[:3])


@pytest.mark.parametrize("compress,dot", [(False, False), (True, False), (True, True)])
def test_mnist_loader_reads_idx_files(tmp_path, compress, dot):
    sets = write_mnist(tmp_path, compress=compress, dot=dot)
    ds = data.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(ds.x_train[:, 0], sets["train"][0])
    np.testing.assert_array_equal(ds.y_train, sets["train"][1])
    np.testing.assert_array_equal(ds.x_test[:, 0], sets["t10k"][0])
    np.testing.assert_array_equal(ds.y_test, sets["t10k"][1])
    assert ds.pixel_max == 255 and ds.input_shape == (1, 28, 28)
    assert data.load_dataset(f"mnist:{tmp_path}").y_test.shape == (12,)
    assert ds.spec() == f"mnist:{tmp_path}"


def test_read_idx_other_types(tmp_path):
    arr = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    write_idx(tmp_path / "x", arr, type_code=0x0C)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "x")), arr)


def test_mnist_wrong_paths_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="MNIST folder .* not found"):
        data.load_dataset(f"mnist:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        write_mnist(tmp_path, n_test=2)
        (tmp_path / "t10k-images-idx3-ubyte").unlink()
        data.load_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="needs the folder"):
        data.load_dataset("mnist:")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; allowed: digits, mnist:PATH"):
        data.load_dataset("cifar")


def test_corrupt_idx_files_are_refused(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(str(bad))
    write_idx(tmp_path / "short", np.zeros((3, 4, 4), dtype=np.uint8))
    raw = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(str(tmp_path / "short"))
    (tmp_path / "gz").write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(ValueError, match="corrupt gzip"):
        data.read_idx(str(tmp_path / "gz"))


def test_mnist_label_count_mismatch_is_refused(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels .* do not match"):
        data.load_mnist(str(tmp_path))
