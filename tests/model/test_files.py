"""``model.files``: outputs checked first, written whole or not at all, with the umask's mode."""

import os
import stat

import numpy as np
import pytest

from hw.generate import write_outputs
from model import deploy, files
from model.layer_file import Layer, save_layer


@pytest.fixture(params=[0o022, 0o027, 0o002])
def mask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_umask_is_read_without_changing_it(mask):
    assert files.umask() == mask
    assert files.umask() == mask


def test_every_writer_gives_the_umask_mode(tmp_path, mask):
    with files.atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
    assert mode(tmp_path / "a.bin") == 0o666 & ~mask
    layer = Layer("ternary", np.ones((1, 1, 1, 1), dtype=np.int64),
                  np.ones((1, 2, 2), dtype=np.int64), a_bits=2)
    save_layer(tmp_path / "layer.npz", layer)
    assert mode(tmp_path / "layer.npz") == 0o666 & ~mask
    written = write_outputs(tmp_path / "gen", {"m.v": "module m; endmodule\n", "m.json": "{}"})
    assert [mode(p) for p in written] == [0o666 & ~mask] * 2
    with files.staged_folder(tmp_path / "report") as work:
        (work / "r.txt").write_text("r")
    assert mode(tmp_path / "report") == 0o777 & ~mask
    assert mode(tmp_path / "report" / "r.txt") == 0o666 & ~mask


def test_a_model_file_gets_the_umask_mode(tmp_path, mask):
    from model import data, nets
    ds = data.load_digits()
    net = nets.build("binarymlp", ds.input_shape, ds.classes, pixel_max=ds.pixel_max)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
    deploy.save(model, tmp_path / "m.npz")
    assert mode(tmp_path / "m.npz") == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_write(target, force=True, mode="w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(RuntimeError):
        with files.staged_folder(tmp_path / "folder") as work:
            (work / "half").write_text("x")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_existing_output_is_replaced_only_with_force(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError, match="exists; use --force to overwrite it"):
        with files.atomic_write(target, mode="w") as f:
            f.write("new")
    assert target.read_text() == "old"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep").write_text("keep")
    with pytest.raises(ValueError, match="exists and is not empty; use --force"):
        files.check_new_folder(folder)
    with files.staged_folder(folder, force=True) as work:
        (work / "new").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["new"]


@pytest.mark.parametrize("make, check, message", [
    (lambda p: p.mkdir(), files.check_new_file, "is a folder; a file name is expected"),
    (lambda p: p.write_text("x"), files.check_new_folder,
     "is a file, not a folder; name another output folder (a file is never replaced by a "
     "folder, even with --force)"),
])
def test_a_folder_where_a_file_goes_and_the_reverse_are_refused_even_with_force(
        tmp_path, make, check, message):
    path = tmp_path / "out"
    make(path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(path, force=True)
    assert path.exists()


def test_missing_unwritable_and_non_folder_parents_are_refused(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="of '.*no/such/out.npz' does not exist"):
        files.check_new_file(tmp_path / "no" / "such" / "out.npz")
    with pytest.raises(ValueError, match="is not a folder"):
        files.check_new_file(tmp_path / "afile" / "out.npz")
    (tmp_path / "locked").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: os.path.basename(p) != "locked"
                        and real(p, m))
    with pytest.raises(ValueError, match="is not writable"):
        files.check_new_file(tmp_path / "locked" / "out.npz")
    with pytest.raises(ValueError, match="is not writable"):
        files.check_new_folder(tmp_path / "locked" / "a" / "b")
    assert files.check_new_folder(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
