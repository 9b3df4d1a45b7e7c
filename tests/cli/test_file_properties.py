"""Property tests, one per input file format: a file with a random invalid field is refused
with one line and exit status 2 (nothing written), a random valid one is accepted.

LAYER.npz (``mulfree run-layer``), MODEL.npz (``mulfree evaluate``) and the TOML design
configs of ``mulfree generate``.
"""

import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import container, data, deploy, nets
from model.layer_file import LAYER_FIELDS, load_layer
from model.quant import SCHEMES, activation_code_range, weight_code_range
from mulfree.cli import main
from model.qonnx_ref import ROUNDING_MODES
from tests.conftest import one_error_line, version_2_model

pytestmark = pytest.mark.xdist_group("cli.test_file_properties")

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=6, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(a) for a in argv])
    return status, err.getvalue()


def assert_refused(argv, command):
    status, err = run(argv)
    one_error_line(err, command)
    assert status == 2 and "Traceback" not in err


# --- LAYER.npz ----------------------------------------------------------------------------

#: (a_bits, w_bits) per scheme for the random layers
WIDTHS = {"binary": (4, 1), "xnor": (8, 8), "ternary": (4, 2), "pow2": (3, 3),
          "dorefa": (3, 2), "int": (4, 4)}


@st.composite
def layers(draw, grouped: bool = False):
    """The fields of a valid LAYER.npz: a small layer of any scheme (``grouped``: with a
    ``groups`` field, 1 to 3 groups)."""
    scheme = draw(st.sampled_from(SCHEMES))
    a_bits, w_bits = WIDTHS[scheme]
    groups = draw(st.integers(1, 3)) if grouped else 1
    m, c = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 2))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    h = draw(st.integers(max(1, r - 2 * padding), 5))
    w = draw(st.integers(max(1, s - 2 * padding), 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = weight_code_range(scheme, w_bits)
    weights = rng.integers(lo, hi, size=(m, c // groups, r, s), endpoint=True)
    lo, hi = activation_code_range(scheme, a_bits)
    inputs = rng.integers(lo, hi, size=(c, h, w), endpoint=True)
    fields = {"scheme": np.array(scheme), "weights": weights, "inputs": inputs,
              "stride": stride, "padding": padding, "a_bits": a_bits, "w_bits": w_bits}
    if grouped:
        fields["groups"] = groups
    return fields


def _codes_out_of_range(fields, name, draw):
    scheme = str(fields["scheme"])
    a_bits, w_bits = WIDTHS[scheme]
    lo, hi = (weight_code_range(scheme, w_bits) if name == "weights"
              else activation_code_range(scheme, a_bits))
    bad = draw(st.one_of(st.integers(hi + 1, hi + 2**20), st.integers(lo - 2**20, lo - 1)))
    arr = np.array(fields[name])
    arr.flat[draw(st.integers(0, arr.size - 1))] = bad
    return arr


NOT_INTEGERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda v: not np.isfinite(v) or v != int(v)), st.text(min_size=1, max_size=5),
    st.just([1, 2]), st.just(1 + 2j))


@st.composite
def bad_layers(draw):
    """A valid layer with one field made invalid."""
    fields = draw(layers(grouped=True))
    which = draw(st.sampled_from(["stride", "padding", "a_bits", "weights", "inputs", "scheme",
                                  "unknown", "missing", "dtype", "shape", "groups"]))
    if which == "groups":  # not a positive integer, or not the weights' split of C
        channels = fields["inputs"].shape[0]
        wrong = [g for g in range(1, 2 * channels + 2)
                 if g * fields["weights"].shape[1] != channels]
        fields["groups"] = draw(st.one_of(NOT_INTEGERS, st.integers(-2**40, 0),
                                          st.sampled_from(wrong)))
    elif which in ("stride", "padding", "a_bits"):
        low = {"stride": 0, "padding": -1, "a_bits": 0}[which]
        fields[which] = draw(st.one_of(NOT_INTEGERS, st.integers(-2**40, low)))
    elif which in ("weights", "inputs"):
        fields[which] = _codes_out_of_range(fields, which, draw)
    elif which == "scheme":
        fields["scheme"] = np.array(draw(st.text(max_size=12).filter(lambda s: s not in SCHEMES)))
    elif which == "unknown":
        name = draw(st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
            lambda s: s not in LAYER_FIELDS))
        fields[name] = np.int64(1)
    elif which == "missing":
        del fields[draw(st.sampled_from(["scheme", "weights", "inputs"]))]
    elif which == "dtype":
        name = draw(st.sampled_from(["weights", "inputs"]))
        fields[name] = fields[name] + draw(st.sampled_from([0.5, 1j, np.nan]))
    else:
        name = draw(st.sampled_from(["weights", "inputs"]))
        fields[name] = np.asarray(fields[name]).reshape(-1)
    return fields


@FAST
@given(fields=bad_layers())
def test_a_layer_file_with_a_random_invalid_field_is_refused(tmp_path, fields):
    path, out = tmp_path / "layer.npz", tmp_path / "out.npz"
    np.savez(path, **fields)
    assert_refused(["run-layer", path, "-o", out, "--quiet"], "run-layer")
    assert not out.exists()


@FAST
@given(fields=layers(grouped=True))
def test_a_random_valid_layer_file_is_read_as_written(tmp_path, fields):
    path = tmp_path / "layer.npz"
    np.savez(path, **fields)
    layer = load_layer(path)
    assert layer.scheme == str(fields["scheme"])
    np.testing.assert_array_equal(layer.weights, fields["weights"])
    np.testing.assert_array_equal(layer.inputs, fields["inputs"])
    assert (layer.stride, layer.padding) == (fields["stride"], fields["padding"])
    assert layer.groups == fields["groups"]


@SLOW
@given(fields=layers())
def test_a_random_valid_layer_file_runs(tmp_path, fields):
    path, out = tmp_path / "layer.npz", tmp_path / "out.npz"
    np.savez(path, **fields)
    status, err = run(["run-layer", path, "-o", out, "--quiet", "--force"])
    assert status == 0, err
    assert out.exists()


# --- MODEL.npz ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    ds = data.load_digits()
    net = nets.build("binarymlp", ds.input_shape, ds.classes, pixel_max=ds.pixel_max)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        classes=ds.classes, meta={"dataset": "digits"})
    path = tmp_path_factory.mktemp("model") / "mlp.npz"
    deploy.save(model, path)
    return path


JSON_JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False),
                      st.integers(-2**70, 2**70), st.text(max_size=6),
                      st.lists(st.integers(-5, 5), max_size=4))
# (Left out: ``kind`` and ``flatten``, since on the 1x1 layers of this model a "conv" is a
# dense layer and a flatten a no-op, and ``score_shift``, whose every value in [0, 62] is
# valid: some of their values are valid edits.)
LAYER_KEYS = ["scheme", "a_bits", "w_bits", "stride", "padding", "in_shape", "channels",
              "pool", "acc_range", "output", "out_bits", "weights_shape"]


@st.composite
def model_edits(draw):
    """(where, key, value): one manifest field or array of the model replaced."""
    where = draw(st.sampled_from(["layer", "top", "array"]))
    if where == "layer":
        return where, (draw(st.integers(0, 1)), draw(st.sampled_from(LAYER_KEYS))), \
            draw(JSON_JUNK)
    if where == "top":
        return where, draw(st.sampled_from(["kind", "input_shape", "pixel_max", "classes",
                                            "layers"])), draw(JSON_JUNK)
    name = draw(st.sampled_from(["layer0.weights", "layer0.thresholds", "layer0.flip",
                                 "layer0.constant", "layer1.score_gain", "layer1.score_offset",
                                 "layer1.weights"]))
    value = draw(st.sampled_from([np.array([np.nan]), np.array([np.inf, 1.0]),
                                  np.zeros((2, 2, 2)), np.array([1 + 1j]), np.array(["a"]),
                                  np.full((3,), 2**62)]))
    return where, name, value


@FAST
@given(edit=model_edits())
def test_a_model_file_with_a_random_invalid_field_is_refused(tmp_path, model_file, edit):
    manifest, arrays = container.read_container(model_file, format=deploy.FORMAT,
                                                version=deploy.VERSION, what="model")
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "sha256")}
    where, key, value = edit
    if where == "layer":
        index, name = key
        if manifest["layers"][index].get(name) == value:
            return  # not an edit
        manifest["layers"][index][name] = value
    elif where == "top":
        if manifest.get(key) == value:
            return
        manifest[key] = value
    else:
        arrays[key] = value
    bad = tmp_path / "bad.npz"
    container.write_container(bad, format=deploy.FORMAT, version=deploy.VERSION,
                              manifest=manifest, arrays=arrays, overwrite=True)
    assert_refused(["evaluate", bad], "evaluate")


@pytest.fixture(scope="module")
def version_2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "v2.npz"
    deploy.save(version_2_model(), path)
    return path


def _positive_lists(product):
    """Lists of positive integers whose product is not ``product`` (other shapes are valid)."""
    return st.lists(st.integers(1, 40), min_size=1, max_size=4).filter(
        lambda v: int(np.prod(v)) != product)


#: (manifest path, invalid values) of every version-2 field of ``version_2_model``; each value
#: is wrong for that field there (e.g. narrow = true gives codes 0..6, which is still valid,
#: so only non-booleans are drawn for narrow).
V2_EDITS = {
    ("layers", 0, "groups"): st.one_of(JSON_JUNK.filter(lambda v: v != 2)),
    ("layers", 0, "out_min"): JSON_JUNK.filter(lambda v: v != -2),
    ("layers", 1, "out_min"): JSON_JUNK.filter(lambda v: v != 0),
    ("pixel_min",): JSON_JUNK.filter(lambda v: v != 0),
    ("float_io",): JSON_JUNK.filter(lambda v: v is not None),
    ("float_io", "input_shape"): st.one_of(JSON_JUNK, _positive_lists(32)),
    ("float_io", "output_shape"): st.one_of(JSON_JUNK, _positive_lists(3)),
    ("float_io", "quantizer", "op"): JSON_JUNK.filter(lambda v: v != "Quant"),
    ("float_io", "quantizer", "scale"): st.one_of(
        st.none(), st.booleans(), st.text(max_size=4), st.floats(max_value=0.0),
        st.just(float("nan")), st.just(float("inf"))),
    ("float_io", "quantizer", "bits"): JSON_JUNK.filter(lambda v: v not in (1, 2, 3)),
    ("float_io", "quantizer", "signed"): JSON_JUNK.filter(lambda v: v is not False),
    ("float_io", "quantizer", "narrow"): JSON_JUNK.filter(lambda v: not isinstance(v, bool)),
    ("float_io", "quantizer", "rounding_mode"): JSON_JUNK.filter(
        lambda v: not (isinstance(v, str) and v.upper() in ROUNDING_MODES)),
    ("float_io", "output_quantizer"): st.one_of(JSON_JUNK.filter(lambda v: v is not None), st.just(
        {"op": "Quant", "scale": 1.0, "bits": 2, "signed": False, "narrow": False,
         "rounding_mode": "ROUND"})),             # a valid quantizer, but the head gives scores
    ("float_io", "unknown"): JSON_JUNK,
}
V2_ARRAYS = {
    "layer0.codebook": [np.array([np.nan] * 8), np.arange(7), np.full(8, 1 << 15),
                        np.zeros((2, 4), np.int64), np.array(["a"] * 8), np.full(8, 1j),
                        np.arange(8) + 0.5],
    "layer1.codebook": [np.arange(4)],           # a codebook on a ternary layer
    "state.0.weight": [np.zeros((2, 1, 3, 3), np.int64), np.full(3, np.nan),
                       np.full(3, 1j), np.array(["a"])],
}


@st.composite
def version_2_edits(draw):
    """(kind, where, value): one version-2 manifest field or array replaced."""
    if draw(st.booleans()):
        where = draw(st.sampled_from(sorted(V2_EDITS, key=str)))
        return "manifest", where, draw(V2_EDITS[where])
    name = draw(st.sampled_from(sorted(V2_ARRAYS)))
    return "array", name, draw(st.sampled_from(V2_ARRAYS[name]))


def _rewrite(path, manifest, arrays, out, version):
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "version", "sha256")}
    container.write_container(out, format=deploy.FORMAT, version=version, manifest=manifest,
                              arrays=arrays, overwrite=True)


@FAST
@given(edit=version_2_edits())
def test_a_version_2_field_with_a_random_invalid_value_is_refused(tmp_path, version_2_file,
                                                                   edit):
    manifest, arrays = container.read_container(version_2_file, format=deploy.FORMAT,
                                                version=deploy.VERSIONS, what="model")
    kind, where, value = edit
    if kind == "manifest":
        *parents, key = where
        node = manifest
        for part in parents:
            node = node[part]
        node[key] = value
    else:
        arrays[where] = value
    bad = tmp_path / "bad.npz"
    _rewrite(version_2_file, manifest, arrays, bad, 2)
    with pytest.raises(ValueError) as refusal:
        deploy.load(bad)
    assert "\n" not in str(refusal.value) and "not a valid mulfree model file" in \
        str(refusal.value)


def test_the_version_2_file_rewritten_unchanged_is_accepted(tmp_path, version_2_file):
    manifest, arrays = container.read_container(version_2_file, format=deploy.FORMAT,
                                                version=deploy.VERSIONS, what="model")
    again = tmp_path / "again.npz"
    _rewrite(version_2_file, manifest, arrays, again, 2)
    model = deploy.load(again)
    assert model.layers[0].groups == 2 and model.layers[0].out_min == -2
    assert model.float_io == version_2_model().float_io


@pytest.mark.parametrize("field", ["pixel_min", "float_io", "groups", "out_min", "codebook"])
def test_a_version_1_file_with_a_version_2_field_is_refused(tmp_path, version_2_file, field):
    manifest, arrays = container.read_container(version_2_file, format=deploy.FORMAT,
                                                version=deploy.VERSIONS, what="model")
    for name in ("pixel_min", "float_io"):
        if name != field:
            del manifest[name]
    for layer in manifest["layers"]:
        for name in ("groups", "out_min"):
            if name != field:
                del layer[name]
    if field != "codebook":
        del arrays["layer0.codebook"]
    old = tmp_path / "v1.npz"
    _rewrite(version_2_file, manifest, arrays, old, 1)
    with pytest.raises(ValueError, match=f"{field}.* is a version-2 field; this file is "
                                         "version 1"):
        deploy.load(old)


@SLOW
@given(name=st.sampled_from(nets.QUANTIZED_NETS), seed=st.integers(0, 2**32 - 1))
def test_a_random_valid_model_file_is_accepted(tmp_path, name, seed):
    ds = data.load_digits()
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=seed)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        classes=ds.classes, meta={"dataset": "digits"})
    path = tmp_path / "model.npz"
    deploy.save(model, path, overwrite=True)
    status, err = run(["evaluate", path])
    assert status == 0, err


# --- TOML design configs ------------------------------------------------------------------

TOML_JUNK = st.one_of(st.booleans(), st.floats(allow_nan=False).filter(lambda v: v != int(v)
                                                                        if np.isfinite(v)
                                                                        else True),
                      st.integers(-2**40, 0), st.integers(2**40, 2**50),
                      st.text(alphabet="abc xyz-", max_size=6))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return '"' + value + '"'
    return str(value)


@FAST
@given(key=st.sampled_from(["scheme", "a-bits", "w-bits", "acc-bits", "rows", "cols",
                            "filter-spad", "ifmap-spad", "lanes", "tree-stages", "module"]),
       value=TOML_JUNK)
def test_a_config_with_a_random_invalid_field_is_refused(tmp_path, key, value):
    fields = {"scheme": "ternary", "a-bits": 4, "acc-bits": 12}
    if key == "module" and isinstance(value, str) and value.isidentifier():
        return  # a valid module name
    if key == "scheme" and value in SCHEMES:
        return
    fields[key] = value
    config = tmp_path / "design.toml"
    config.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in fields.items()))
    out = tmp_path / "out"
    assert_refused(["generate", "array", "--config", config, "-o", out], "generate")
    assert not out.exists()


@SLOW
@given(scheme=st.sampled_from(["binary", "ternary", "pow2"]), a_bits=st.integers(2, 16))
def test_a_random_valid_config_is_accepted(tmp_path, scheme, a_bits):
    config = tmp_path / "design.toml"
    config.write_text(f'scheme = "{scheme}"\na-bits = {a_bits}\n')
    status, err = run(["generate", "unit", "--config", config, "-o", tmp_path / "out",
                       "--force"])
    assert status == 0, err
