"""Bad input, one class at a time, as a new user meets it: refused before any work with one
line naming the bad value and what is allowed, exit status 2, nothing written or damaged.

The classes: layer-file fields, model-file fields (and an edited manifest), TOML config
fields, flags of every command (type, finiteness, integrality, range), output paths (missing,
read-only, a folder where a file goes, a file where a folder goes), simulations too long to
run, widths that cannot hold their products; and no traceback for what goes wrong after.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from model import container, data, deploy, nets
from mulfree.cli import main
from tests.conftest import one_error_line

pytestmark = pytest.mark.xdist_group("cli.test_bad_input")


def _layer(path, **fields):
    rng = np.random.default_rng(0)
    base = dict(scheme=np.array("ternary"), weights=rng.integers(-1, 2, (2, 1, 3, 3)),
                inputs=rng.integers(-8, 8, (1, 6, 6)), stride=1, padding=1)
    base.update(fields)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with a good layer, an integer model and a float checkpoint (untrained: the
    same fields as trained ones, made in a second)."""
    folder = tmp_path_factory.mktemp("inputs")
    _layer(folder / "good.npz")
    ds = data.load_digits()
    net = nets.build("binarymlp", ds.input_shape, ds.classes, pixel_max=ds.pixel_max)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        classes=ds.classes, meta={"dataset": "digits"})
    deploy.save(model, folder / "mlp.npz")
    float_net = nets.build("float", ds.input_shape, ds.classes, pixel_max=ds.pixel_max)
    deploy.save_float(float_net, folder / "float.npz", net_name="float",
                      input_shape=ds.input_shape, pixel_max=ds.pixel_max, classes=ds.classes,
                      meta={"dataset": "digits"})
    return folder


def refused(argv, *fragments, cwd=None, command=None):
    """Run ``mulfree argv``; it must refuse with one line holding every fragment."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        status = main([str(a) for a in argv])
    line = one_error_line(err.getvalue(), command or argv[0])
    assert status == 2, line
    assert "Traceback" not in err.getvalue()
    for fragment in fragments:
        assert fragment in line, line
    assert out.getvalue() == "", out.getvalue()
    return line


# --- layer files --------------------------------------------------------------------------

@pytest.mark.parametrize("fields, fragments", [
    ({"stride": 1.5}, ["stride must be an integer, not 1.5"]),
    ({"stride": np.inf}, ["stride must be an integer, not inf"]),
    ({"stride": np.nan}, ["stride must be an integer, not nan"]),
    ({"stride": np.array("two")}, ["stride must be an integer, not 'two'"]),
    ({"stride": np.array([1, 2])}, ["stride must be a scalar"]),
    ({"padding": 0.5}, ["padding must be an integer, not 0.5"]),
    ({"padding": -1}, ["padding must be >= 0, not -1"]),
    ({"a_bits": 1.5}, ["a_bits must be an integer, not 1.5"]),
    ({"a_bits": True}, ["a_bits must be an integer, not True"]),
    ({"a_bits": 100}, ["not 100"]),
    ({"weights": np.full((2, 1, 3, 3), 1 + 1j)}, ["weights must hold integer codes, not "
                                                   "complex128 values"]),
    ({"weights": np.full((2, 1, 3, 3), 0.5)}, ["weights must hold integer codes, not 0.5"]),
    ({"weights": np.full((2, 1, 3, 3), np.nan)}, ["weights contain NaN or inf"]),
    ({"weights": np.full((2, 1, 3, 3), 1e30)}, ["hold 1e+30, beyond int64"]),
    ({"weights": np.full((2, 1, 3, 3), 2**64 - 1, dtype=np.uint64)},
     ["18446744073709551615", "beyond int64"]),
    ({"weights": np.full((2, 1, 3, 3), 5)}, ["holds 5; allowed: integers in [-1, 1]"]),
    ({"inputs": np.full((1, 6, 6), 1 + 0j)}, ["inputs must hold integer codes, not complex"]),
    ({"inputs": np.array([["a"]])}, ["inputs must have shape [C, H, W]"]),
    ({"scheme": np.array("quaternary")}, ["unknown scheme 'quaternary'"]),
    ({"scheme": np.array(3)}, ["unknown scheme 3"]),
    ({"weights": None}, ["no 'weights' array"]),
    ({"strides": 2}, ["unknown array 'strides'; allowed: scheme, weights"]),
])
def test_a_bad_layer_file_field_is_named(tmp_path, files, fields, fragments):
    path = _layer(tmp_path / "bad.npz", **fields)
    out = tmp_path / "out.npz"
    refused(["run-layer", path, "-o", out], f"layer file '{path}'", *fragments)
    assert not out.exists()


@pytest.mark.parametrize("name, make, fragment", [
    ("missing.npz", None, "does not exist"),
    ("junk.npz", lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "not a readable .npz"),
    ("folder.npz", lambda p: p.mkdir(), "is a folder, not a file"),
    ("pickled.npz", lambda p: np.savez(p, scheme=np.array("ternary"),
                                        weights=np.array([object()], dtype=object)),
     "not a readable .npz"),
])
def test_a_layer_file_that_cannot_be_read_is_named(tmp_path, name, make, fragment):
    path = tmp_path / name
    if make:
        make(path)
    refused(["run-layer", path, "-o", tmp_path / "out.npz"], name, fragment)


def test_a_simulation_predicted_too_long_is_refused_with_the_estimate(tmp_path):
    # about 1.9 million cycles on the 3x4 array (15 minutes of Amaranth's simulator); a layer
    # of many channels on a small image keeps the cycle model's own work to seconds
    big = _layer(tmp_path / "big.npz", weights=np.ones((16, 256, 3, 3), dtype=np.int64),
                 inputs=np.ones((256, 24, 24), dtype=np.int64))
    line = refused(["run-layer", big, "-o", tmp_path / "out.npz"], "would take about",
                   "minutes on amaranth", "use --backend verilator, a smaller layer")
    assert "--force to run it anyway" in line


# --- model files --------------------------------------------------------------------------

def _rewrite(src, dst, *, layer0=None, top=None, arrays=None):
    """``src`` with fields changed, written with a valid checksum (as a tool editing it
    through ``model.container`` would)."""
    manifest, stored = container.read_container(src, format=deploy.FORMAT,
                                                version=deploy.VERSION, what="model")
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "sha256")}
    if layer0:
        manifest["layers"][0].update(layer0)
    manifest.update(top or {})
    stored.update(arrays or {})
    container.write_container(dst, format=deploy.FORMAT, version=deploy.VERSION,
                              manifest=manifest, arrays=stored)
    return dst


@pytest.mark.parametrize("change, fragments", [
    (dict(arrays={"layer0.thresholds": np.full((256, 1), np.nan)}),
     ["layer 0 thresholds must hold integers, not float64 values"]),
    (dict(arrays={"layer1.score_gain": np.full(10, np.inf)}),
     ["layer 1 score_gain must hold integers, not float64"]),
    (dict(arrays={"layer1.score_gain": np.full(10, 2**62)}), ["allowed: scores below 2**62"]),
    (dict(arrays={"layer0.thresholds": np.zeros((3, 1), dtype=np.int64)}),
     ["layer 0 thresholds must have shape [256, 1], not [3, 1]"]),
    (dict(arrays={"layer0.flip": np.full(256, 2, dtype=np.uint8)}), ["flip must hold 0 or 1"]),
    (dict(arrays={"layer0.weights": np.full((256, 64, 1, 1), 7)}), ["holds 7; allowed"]),
    (dict(arrays={"layer9.weights": np.zeros(1)}), ["unexpected array 'layer9.weights'"]),
    (dict(layer0={"stride": 0}), ["layer 0 stride must be in [1, 65536], not 0"]),
    (dict(layer0={"stride": 1.5}), ["layer 0 stride must be an integer, not 1.5"]),
    (dict(layer0={"pool": -1}), ["layer 0 pool must be in [0, 65536], not -1"]),
    (dict(layer0={"scheme": "quaternary"}), ["unknown scheme 'quaternary'"]),
    (dict(layer0={"a_bits": 99}), ["not 99"]),
    (dict(layer0={"acc_range": [0, 1]}), ["acc_range must be"]),
    (dict(layer0={"output": "relu"}), ["unknown output 'relu'"]),
    (dict(layer0={"in_shape": [3, 1, 1]}), ["weights [256, 64, 1, 1] take 64 input channels"]),
    (dict(layer0={"channels": 7}), ["channels 7 must be 64"]),
    (dict(layer0={"out_bits": 2}), ["out_bits must be null for a 'sign' output"]),
    (dict(layer0={"flatten": "yes"}), ["flatten must be true or false, not 'yes'"]),
    (dict(top={"classes": 3}), ["the model has 3 classes"]),
    (dict(top={"pixel_max": -4}), ["pixel_max must be in [1, 65536], not -4"]),
    (dict(top={"input_shape": [1, 8]}), ["input_shape must be a list of 3 integers"]),
    (dict(top={"kind": "quantum"}), ["unknown kind 'quantum'"]),
])
def test_a_bad_model_file_field_is_named(tmp_path, files, change, fragments):
    bad = _rewrite(files / "mlp.npz", tmp_path / "bad.npz", **change)
    refused(["evaluate", bad], f"'{bad}' is not a valid mulfree model file", *fragments)


@pytest.mark.parametrize("key, value, fragment", [
    ("weight", 1j, "must hold real numbers, not complex128"),
    ("weight", np.nan, "contains NaN or inf"),
    ("running_var", -1.0, "allowed: variances >= 0"),
])
def test_a_bad_float_checkpoint_value_is_named(tmp_path, files, key, value, fragment):
    manifest, stored = container.read_container(files / "float.npz", format=deploy.FORMAT,
                                                version=deploy.VERSION, what="model")
    name = next(k for k in stored if k.endswith(key))
    stored[name] = stored[name] + value if key == "weight" else np.full_like(stored[name],
                                                                              value)
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "sha256")}
    container.write_container(tmp_path / "bad.npz", format=deploy.FORMAT,
                              version=deploy.VERSION, manifest=manifest, arrays=stored)
    refused(["evaluate", tmp_path / "bad.npz"], name[len("state."):], fragment)


def test_a_manifest_edited_without_its_checksum_is_refused(tmp_path, files):
    import io
    import zipfile
    edited = tmp_path / "edited.npz"
    with zipfile.ZipFile(files / "mlp.npz") as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.namelist():
            blob = src.read(item)
            if item == "manifest.npy":
                text = np.load(io.BytesIO(blob)).tobytes().decode()
                assert '"pool": 0' in text
                buffer = io.BytesIO()
                np.save(buffer, np.frombuffer(text.replace('"pool": 0', '"pool": 2', 1).encode(),
                                              dtype=np.uint8))
                blob = buffer.getvalue()
            dst.writestr(item, blob)
    refused(["evaluate", edited], "checksum mismatch (the arrays or the manifest were changed")


# --- TOML configs -------------------------------------------------------------------------

@pytest.mark.parametrize("kind, text, fragments", [
    ("unit", 'scheme = "ternary"\na-bits = 8.5\n', ["a-bits = 8.5", "must be an integer"]),
    ("unit", 'scheme = "ternary"\na-bits = true\n', ["a-bits = True", "must be an integer"]),
    ("unit", 'scheme = "ternary"\na-bits = "8"\n', ["a-bits = '8'", "must be an integer"]),
    ("unit", 'scheme = "ternary"\na-bits = inf\n', ["a-bits = inf", "must be an integer"]),
    ("unit", 'scheme = 3\na-bits = 8\n', ["scheme = 3", "must be a string"]),
    ("unit", 'scheme = "ternery"\na-bits = 8\n', ["unknown scheme 'ternery'"]),
    ("unit", 'scheme = "ternary"\na-bits = 0\n', ["a-bits = 0", "must be an integer in [1, 64]"]),
    ("unit", 'scheme = "ternary"\na-bits = 8\nmodule = "a b"\n', ["not 'a b'"]),
    ("array", 'scheme = "ternary"\na-bits = 4\nacc-bits = 12\nrows = -1\n', ["rows = -1"]),
    ("array", 'scheme = "ternary"\na-bits = 4\nacc-bits = 12\nfilter-spad = 12\n',
     ["filter-spad = 12", "power of two"]),
    ("array", 'scheme = "ternary"\na-bits = 4\nacc-bits = 12\nlanes = 3\n',
     ["lanes = 3", "must be one of 1, 2, 4, 8, 16, 32, 64"]),
    ("array", 'scheme = "ternary"\na-bits = 4\nacc-bits = 12\npsum-spad = 16\n',
     ["unknown key 'psum-spad'"]),
    ("array", 'scheme = "ternary"\na-bits = 8\nacc-bits = 4\n',
     ["--acc-bits 4 cannot hold one word's products"]),
    ("unit", "unit = 3\n", ["[unit] in", "must be a table"]),
])
def test_a_bad_config_field_is_named(tmp_path, kind, text, fragments):
    config = tmp_path / "design.toml"
    config.write_text(text)
    refused(["generate", kind, "--config", config, "-o", tmp_path / "out"], *fragments,
            command="generate")
    assert not (tmp_path / "out").exists()


# --- flags --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragments", [
    (["energy", "--batch", "1000000000000000"], ["--batch", "not 1000000000000000"]),
    (["energy", "--batch", "1e15"], ["--batch", "not '1e15'"]),
    (["energy", "--pes", "1000000000000"], ["--pes", "[1, 65536]"]),
    (["energy", "--rf-area-ratio", "inf"], ["--rf-area-ratio", "not inf"]),
    (["energy", "--sparsity", "nan"], ["--sparsity", "not nan"]),
    (["energy", "--costs", "7nm"], ["unknown cost table '7nm'"]),
    (["energy", "--plot", "e.xyz"], ["unknown image type 'xyz'"]),
    (["energy", "--json", "same.png", "--plot", "same.png"], ["name the same file"]),
    (["train", "--lr", "inf"], ["--lr", "not inf"]),
    (["train", "--seed", "-1"], ["--seed", "not -1"]),
    (["train", "--epochs", "1.5"], ["--epochs", "not '1.5'"]),
    (["train", "--optimizer", "sgd"], ["unknown optimizer 'sgd'"]),
    (["compress", "float.npz", "--prune", "nan", "-o", "c.npz"], ["'nan' holds NaN or inf"]),
    (["compress", "float.npz", "--lr", "inf", "-o", "c.npz"], ["--lr", "not inf"]),
    (["compress", "float.npz", "--share-bits", "9", "-o", "c.npz"],
     ["weight-sharing bits must be an integer in [2, 8], not 9"]),
    (["compress", "float.npz", "--channels", "0.5,0", "-o", "c.npz"],
     ["--channels", "holds 0; allowed: fractions in (0, 1]"]),
    (["compress", "float.npz", "--channels", "0.5", "--select", "random", "-o", "c.npz"],
     ["unknown channel selection 'random'"]),
    (["compress", "float.npz", "--channels", "0.5", "--finetune-epochs", "-1", "-o", "c.npz"],
     ["--finetune-epochs", "not -1"]),
    (["train", "--net", "dorefanet", "--bits", "1,2"], ["--bits", "three integers W,A,G"]),
    (["train", "--net", "dorefanet", "--bits", "1,9,32"], ["--bits", "bits 1,9,32 out of range"]),
    (["train", "--net", "binarynet", "--bits", "1,2,6"], ["--bits sets DoReFa widths"]),
    (["energy", "--dataflows", "rs,xyz"], ["--dataflows", "'xyz'"]),
    (["energy", "--dataflows", "rs,rs"], ["--dataflows", "dataflow listed twice"]),
    (["energy", "--run", "o.npz"], ["--run and --layer come in pairs"]),
    (["energy", "--run", "o.npz", "--layer", "good.npz", "--ifmap-spad", "24"],
     ["--ifmap-spad", "power of two"]),
    (["import", "m.onnx", "-o", "m.npz", "--check", "-1"], ["--check", "not -1"]),
    (["import", "m.onnx", "-o", "m.npz", "--seed", "x"], ["--seed", "not 'x'"]),
    (["evaluate", "mlp.npz", "-o", "out.npz"], ["-o/--output writes the outputs of --inputs"]),
    (["demo", "--net", "mobilenet_tiny"], ["has grouped (depthwise) layers"]),
    (["demo", "--net", "lenet300"], ["is a float network"]),
    (["run-layer", "good.npz", "-o", "o.npz", "--baud", "-5"], ["--baud", "not -5"]),
    (["run-layer", "good.npz", "-o", "o.npz", "--backend", "modelsim"],
     ["unknown backend 'modelsim'"]),
    (["run-layer", "good.npz", "-o", "o.npz", "--port", "/dev/ttyUSB1"],
     ["--port is for --backend board"]),
    (["demo", "--images", "100000"], ["images must be in [1, 359]", "not 100000"]),
    (["demo", "--board", "arty-a7-35"], ["board 'arty-a7-35' needs AMD Vivado"]),
    (["demo", "--rows", "99"], ["--rows", "not 99"]),
    (["build", "--board", "icebreaker", "--scheme", "ternary", "--acc-bits", "5", "-o", "b"],
     ["--acc-bits 5 cannot hold one word's products (ternary, lanes 1, A8 W2)"]),
    (["build", "--board", "icebreaker", "--model", "mlp.npz", "--a-bits", "4", "-o", "b"],
     ["--a-bits sizes the accelerator of --scheme"]),
    (["build", "--board", "icebreaker", "--link-test", "--rows", "2", "-o", "b"],
     ["--link-test has none"]),
    (["generate", "accelerator", "--scheme", "int", "--a-bits", "8", "--w-bits", "8",
      "--acc-bits", "12", "-o", "g"], ["--acc-bits 12 cannot hold one word's products (int"]),
    (["run-layer", "good.npz", "-o", "o.npz", "--lanes", "3"], ["--lanes", "one of 1, 2, 4"]),
    (["run-layer", "good.npz", "-o", "o.npz", "--tree-stages", "3"],
     ["--tree-stages", "in [0, 2], not 3"]),
    (["build", "--board", "icebreaker", "--scheme", "ternary", "--lanes", "128", "-o", "b"],
     ["--lanes", "not 128"]),
])
def test_a_bad_flag_is_refused_before_any_work(files, monkeypatch, argv, fragments):
    monkeypatch.chdir(files)
    before = sorted(p.name for p in files.iterdir())
    command = argv[0] if argv[0] != "generate" or "cannot hold" in fragments[0] else \
        f"generate {argv[1]}"
    refused(argv, *fragments, command=command)
    assert sorted(p.name for p in files.iterdir()) == before


# --- output paths -------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["run-layer", "good.npz", "-o", "{out}"],
    ["train", "--net", "binarymlp", "-o", "{out}"],
    ["energy", "--json", "{out}"],
    ["quantize", "float.npz", "--net", "ternarynet", "-o", "{out}"],
    ["compress", "float.npz", "-o", "{out}"],
    ["compress", "float.npz", "--channels", "0.5", "-o", "{out}"],
    ["import", "m.onnx", "-o", "{out}"],
])
@pytest.mark.parametrize("where, fragment", [
    ("no/such/folder/out.npz", "does not exist"),
    ("afile/out.npz", "is not a folder"),
    ("adir", "is a folder; a file name is expected"),
    ("readonly/out.npz", "is not writable"),
])
def test_an_output_file_that_cannot_be_written_is_refused_first(files, tmp_path, monkeypatch,
                                                                 argv, where, fragment):
    monkeypatch.chdir(tmp_path)
    for name in ("good.npz", "float.npz"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    (tmp_path / "afile").write_bytes(b"keep me")
    (tmp_path / "adir").mkdir()
    (tmp_path / "readonly").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "readonly"
                        and real_access(p, mode))  # root may write anywhere: pretend
    refused([a.replace("{out}", where) for a in argv], fragment)
    assert (tmp_path / "afile").read_bytes() == b"keep me"


@pytest.mark.parametrize("argv", [
    ["demo", "-o", "{out}", "--force", "--no-synthesis"],
    ["build", "--board", "icebreaker", "--link-test", "-o", "{out}", "--force"],
    ["generate", "unit", "--scheme", "ternary", "--a-bits", "8", "-o", "{out}", "--force"],
])
def test_a_file_is_never_replaced_by_a_folder(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report").write_bytes(b"keep me")
    command = "generate" if argv[0] == "generate" else argv[0]
    refused([a.replace("{out}", "report") for a in argv], "'report'", "not a folder",
            command=command)
    assert (tmp_path / "report").read_bytes() == b"keep me"


# --- what goes wrong after the checks ------------------------------------------------------

def test_an_unexpected_error_is_one_line_naming_an_internal_error(monkeypatch, capsys):
    from mulfree.commands import doctor
    monkeypatch.setattr(doctor.toolchain, "report", lambda: {}["boom"])
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("mulfree doctor: internal error: KeyError: 'boom'")
    assert "please report it" in err[0] and "MULFREE_TRACEBACK=1" in err[0]
    monkeypatch.setenv("MULFREE_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["doctor"])


def test_a_file_system_error_during_the_work_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "energy.json")

    from sim import energy
    monkeypatch.setattr(energy, "write_json", lambda report, path, force: full())
    assert main(["energy", "--network", "digits", "--json", "energy.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mulfree energy: error: No space left on device (energy.json)"]


def test_every_refusal_names_the_command_and_leaves_no_partial_files(tmp_path, files):
    out = tmp_path / "out"
    refused(["generate", "unit", "--scheme", "ternary", "--a-bits", "8", "--module", "9x",
             "-o", out], "not '9x'", command="generate unit")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_model_file_format_holds_what_a_fresh_model_holds(files):
    """The checks above accept what mulfree writes (not a test of this file's fixtures:
    every field a fresh model has is one ``deploy.load`` checks)."""
    manifest, _ = container.read_container(files / "mlp.npz", format=deploy.FORMAT,
                                           version=deploy.VERSION, what="model")
    assert set(manifest["layers"][0]) >= set(deploy._LAYER_FIELDS)
    assert isinstance(deploy.load(files / "mlp.npz"), deploy.IntegerModel)
    assert json.loads(json.dumps(manifest)) == manifest
