"""``mulfree import`` as a user meets it: a model written and checked against qonnx's executor,
``mulfree evaluate --inputs -o`` on it, no overwrite without --force, and every refusal as one
line with exit status 2 naming the node, its op type and why."""

import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("qonnx", reason="the QONNX tests need the qonnx extra: "
                                    "pip install -e '.[test,qonnx]'")

from onnx import helper, numpy_helper  # noqa: E402

from model import deploy  # noqa: E402
from model import qonnx_examples as ex  # noqa: E402
from model.qonnx_compare import Reference  # noqa: E402
from mulfree.cli import main  # noqa: E402


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def one_line_error(capsys, status: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.out + captured.err
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------------------------
# Importing and running
# ----------------------------------------------------------------------------------------------

def test_import_writes_a_model_that_evaluate_runs_like_the_executor(tmp_path, capsys):
    graph = ex.build("lut_conv")
    src = save(graph, tmp_path / "lut.onnx")
    out = tmp_path / "lut.npz"
    assert main(["import", src, "-o", str(out), "--check", "8"]) == 0
    text = capsys.readouterr().out
    assert "imported" in text and "input [2, 6, 6] quantized unsigned 4-bit, scale 0.0625" in text
    assert "from 'conv1' (weights 'w1_q') + bn1 -> thresholds of 'act1_q'" in text
    assert "against qonnx's executor on 8 random inputs: codes equal, accumulators equal " \
           "16/16, argmax equal 8/8" in text
    assert f"wrote {out}" in text
    model = deploy.load(out)
    assert model.meta["net"] == "lut" and model.meta["source"] == "qonnx"

    x = ex.sample_inputs("lut_conv", graph, 12)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, inputs=x)
    result = tmp_path / "out.npz"
    assert main(["evaluate", str(out), "--inputs", str(inputs), "-o", str(result)]) == 0
    assert "12 samples through lut" in capsys.readouterr().out
    with np.load(result) as z:
        outputs, codes, predictions = z["outputs"], z["codes"], z["predictions"]
    assert outputs.shape == codes.shape == (12, 4) and outputs.dtype == np.float32
    assert codes.dtype == np.int64 and predictions.shape == (12,)
    ref = Reference(graph)
    expected = np.stack([ref.run(s)[ref.output][0] for s in x])
    assert np.max(np.abs(outputs - expected)) <= 1e-5 * np.max(np.abs(expected))
    np.testing.assert_array_equal(predictions, np.argmax(expected, axis=1))


def test_existing_outputs_are_kept_without_force(tmp_path, capsys):
    src = save(ex.build("bnn_mlp"), tmp_path / "m.onnx")
    out = tmp_path / "m.npz"
    out.write_bytes(b"keep me")
    line = one_line_error(capsys, main(["import", src, "-o", str(out)]))
    assert "exists; use --force" in line and out.read_bytes() == b"keep me"
    assert main(["import", src, "-o", str(out), "--force", "--check", "0"]) == 0
    assert "against qonnx's executor" not in capsys.readouterr().out
    assert isinstance(deploy.load(out), deploy.IntegerModel)


def test_evaluate_refuses_bad_inputs_in_one_line(tmp_path, capsys):
    src = save(ex.build("binary_conv"), tmp_path / "m.onnx")
    model = tmp_path / "m.npz"
    assert main(["import", src, "-o", str(model), "--check", "0"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((3, 2, 6, 5), np.float32))
    line = one_line_error(capsys, main(["evaluate", str(model), "--inputs", str(bad)]))
    assert "inputs must have shape [N, 2, 6, 6]" in line and "not [3, 2, 6, 5]" in line
    np.savez(bad, x=np.zeros(3))
    line = one_line_error(capsys, main(["evaluate", str(model), "--inputs", str(bad)]))
    assert "has no 'inputs' array (found: x)" in line
    line = one_line_error(capsys, main(["evaluate", str(model), "-o", str(tmp_path / "o.npz")]))
    assert "-o/--output writes the outputs of --inputs" in line
    line = one_line_error(capsys, main(["evaluate", str(model)]))
    assert "was imported and has no data set of its own" in line


def test_evaluate_reports_accuracy_on_labels(tmp_path, capsys):
    graph = ex.build("bnn_mlp")
    src = save(graph, tmp_path / "m.onnx")
    model = tmp_path / "m.npz"
    assert main(["import", src, "-o", str(model), "--check", "0"]) == 0
    x = ex.sample_inputs("bnn_mlp", graph, 10)
    labels = deploy.run_float(deploy.load(model), x).predictions
    labels[:3] = (labels[:3] + 1) % 10
    np.savez(tmp_path / "x.npz", inputs=x, labels=labels)
    assert main(["evaluate", str(model), "--inputs", str(tmp_path / "x.npz")]) == 0
    assert "accuracy on the labels: 70.00 % (7/10)" in capsys.readouterr().out


def test_evaluate_feeds_a_data_set_to_a_graph_of_its_shape(tmp_path, capsys):
    """digits images become the graph's float inputs (pixels / 16) and its input quantizer
    gives back the pixel codes."""
    g = ex.GraphBuilder("digits_mlp", (1, 8, 8), seed=0)
    y = g.quant("x", scale=1 / 16, bits=5, signed=False, narrow=False, name="in_q")
    y = g.flatten(y, name="flat")
    w = g.weights((64, 10))
    wq = g.bipolar("", scale=1.0, name="w1_q", value=w)
    y = g.matmul(y, wq, g.weight_values("bipolar", w, 1.0), name="fc1")
    src = save(g.build(y), tmp_path / "d.onnx")
    model = tmp_path / "d.npz"
    assert main(["import", src, "-o", str(model), "--check", "4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("imported model (d, 1 layers) on digits test set: ")
    from model import data
    ds = data.load_digits()
    loaded = deploy.load(model)
    codes = deploy.run_float(loaded, ds.x_test.astype(np.float32) / 16).input_codes
    np.testing.assert_array_equal(codes, ds.x_test)
    acc = np.mean(deploy.predict(loaded, ds.x_test) == ds.y_test)
    assert f"{100 * acc:.2f} %" in text


def test_the_engine_of_an_imported_look_up_table_model():
    """The network engine for an imported DoReFa model whose layers have different codebooks:
    one datapath mode per codebook, each layer in its own."""
    from sim.program import compile_program, engine_for_model
    model, _ = __import__("model.qonnx_import", fromlist=["import_qonnx"]).import_qonnx(
        ex.build("lut_conv"))
    books = [tuple(int(v) for v in layer.codebook) for layer in model.layers]
    assert books[0] != books[1]
    engine = engine_for_model(model, rows=2, cols=2)
    modes = engine.accelerator.modes
    assert sorted(m.codebook for m in modes) == sorted(books)
    program = compile_program(model, engine)
    assert [modes[d.mode].codebook for d in program.layers] == books


def test_a_missing_extra_is_named(tmp_path, capsys, monkeypatch):
    import model
    for name in [m for m in sys.modules if m.startswith(("model.qonnx_", "qonnx"))]:
        monkeypatch.delitem(sys.modules, name)
        if name.startswith("model."):
            monkeypatch.delattr(model, name.split(".")[1], raising=False)
    monkeypatch.setitem(sys.modules, "qonnx", None)
    src = tmp_path / "m.onnx"
    src.write_bytes(b"")
    line = one_line_error(capsys, main(["import", str(src), "-o", str(tmp_path / "m.npz")]))
    assert "mulfree import needs the qonnx extra (qonnx is missing): " \
           "pip install 'mulfree[qonnx]'" in line


# ----------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------

def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def set_input(name: str, index: int, value):
    """Replace the initializer behind input ``index`` of node ``name``."""
    def edit(model):
        tensor = node(model, name).input[index]
        for i, init in enumerate(model.graph.initializer):
            if init.name == tensor:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                    np.asarray(value, dtype=np.float32), tensor))
    return edit


def set_attr(name: str, **attrs):
    def edit(model):
        n = node(model, name)
        for key, value in attrs.items():
            for i, a in enumerate(n.attribute):
                if a.name == key:
                    del n.attribute[i]
                    break
            if value is not None:
                n.attribute.append(helper.make_attribute(key, value))
    return edit


def append(op: str, inputs=(), **attrs):
    """A node ``extra`` on the graph output (becoming the new output)."""
    def edit(model):
        out = model.graph.output[0]
        extra_inputs = [out.name]
        for k, value in enumerate(inputs):
            name = f"extra_c{k}"
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            extra_inputs.append(name)
        model.graph.node.append(helper.make_node(op, extra_inputs, ["extra_out"], name="extra",
                                                 **attrs))
        out.name = "extra_out"
    return edit


def branch(model):
    """A second consumer of conv1's output (a residual-style fork)."""
    model.graph.node.append(helper.make_node("Relu", ["conv1_out"], ["fork_out"],
                                             name="extra"))


def no_input_quantizer(model):
    conv = node(model, "conv1")
    conv.input[0] = "x"
    model.graph.node.remove(node(model, "in_q"))


def batch(size):
    def edit(model):
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = size
    return edit


def grouped(model):
    set_attr("conv1", group=2)(model)
    set_input("w1_q", 0, np.random.default_rng(0).normal(size=(4, 1, 3, 3)))(model)


def lut_that_cannot_negate():
    """3-bit two's-complement weights: channel 0 uses every level -4..3, channel 1 (negated
    for max pooling) uses -4, whose negation 4 makes 9 levels."""
    g = ex.GraphBuilder("no_room", (1, 3, 3), seed=0)
    x = g.quant("x", scale=2.0 ** -3, bits=3, signed=False, narrow=False, name="in_q")
    w = np.array([[-4, -3, -2, -1, 0, 1, 2, 3, 3], [-4, 1, 1, 1, 1, 1, 1, 1, 1]],
                 dtype=np.float32).reshape(2, 1, 3, 3) * 0.25
    wq = g.quant("", scale=0.25, bits=3, signed=True, narrow=False, name="w1_q", value=w)
    y = g.conv(x, wq, w, name="conv1", pad=1)
    y = g.bn(y, name="bn1", flip=1)
    y = g.quant(y, scale=0.5, bits=2, signed=False, narrow=False, name="act1_q")
    y = g.maxpool(y, 3, name="pool1")
    y = g.flatten(y, name="flat")
    wq2 = g.bipolar("", scale=1.0, name="w2_q", value=np.ones((2, 2)))
    y = g.matmul(y, wq2, np.ones((2, 2)), name="fc2")
    return g.build(y)


REFUSALS = [
    ("lut_conv", set_input("w1_q", 2, 1.0),
     "node 'w1_q' (Quant): weight zero point 1 is not supported (allowed: 0)"),
    ("dorefa", set_input("w1_q", 2, 0.5),
     "node 'w1_q' (Quant): weight zero point 0.5 is not supported (allowed: 0, or n/2 = 1.5 "
     "for DoReFa's (2q - n)/n weights)"),
    ("ternary_conv", set_input("w1_q", 1, np.array([0.5, 0.25, 1.0]).reshape(1, 3, 1, 1)),
     "node 'w1_q' (Quant): weight scale varies along the input channels or kernel positions; "
     "allowed: one scale per output channel"),
    ("ternary_conv", set_input("w1_q", 1, np.array([0.5, -0.5, 1.0, 1.0]).reshape(4, 1, 1, 1)),
     "node 'w1_q' (Quant): weight scale -0.5 is not > 0"),
    ("ambiguous_tie", None,
     "node 'conv1' (Conv): the integer sum does not determine the float result: in channel 0, "
     "accumulator 1 lies within the float32 rounding of the sum"),
    ("ternary_conv", set_input("add1", 1, np.arange(64.0).reshape(1, 4, 4, 4)),
     "node 'add1' (Add): its constant of shape [1, 4, 4, 4] is not one value per channel"),
    ("bnn_mlp", append("Sigmoid"),
     "node 'extra' (Sigmoid): op Sigmoid is not supported; mulfree imports Quant, "
     "BipolarQuant, Conv, MatMul, Gemm"),
    ("bnn_mlp", append("Relu"),
     "node 'extra' (Relu): Relu after the last layer is not an affine map"),
    ("binary_conv", set_input("in_q", 2, 3.0),
     "node 'in_q' (Quant): activation zero point 3 is not supported (allowed: 0)"),
    ("binary_conv", set_input("act1_q", 1, np.array([0.5, 0.25, 0.5, 0.5]).reshape(1, 4, 1, 1)),
     "node 'act1_q' (Quant): its scale varies (4 values); allowed: one value for the whole "
     "tensor"),
    ("binary_conv", batch(4),
     "graph input 'x': batch dimension 4; mulfree imports graphs with batch dimension 1"),
    ("binary_conv", grouped, "node 'conv1' (Conv): groups 2 is not supported (groups = 1 only)"),
    ("binary_conv", set_attr("conv1", pads=[1, 1, 0, 0]),
     "node 'conv1' (Conv): pads [1, 1, 0, 0] are not supported (the same padding on every "
     "side)"),
    ("lut_conv", set_attr("in_q", signed=1),
     "node 'w1_q' (Quant): 4-bit weights become a look-up table, which needs unsigned "
     "activations; the input of 'conv1' is signed 4-bit"),
    ("bnn_mlp", set_input("in_q", 1, -1.0),
     "node 'in_q' (BipolarQuant): activation scale -1 must be a float32 > 0"),
    ("binary_conv", branch,
     "node 'extra' (Relu): tensor 'conv1_out' feeds 2 nodes ('bn1', 'extra'); mulfree "
     "imports a chain of layers (no branches or residual connections)"),
    ("binary_conv", no_input_quantizer,
     "graph input 'x' feeds Conv 'conv1'; mulfree needs a Quant or BipolarQuant on the graph "
     "input"),
    ("lut_conv", set_input("w1_q", 3, 12.0),
     "node 'w1_q' (Quant): 12-bit weights; allowed: at most 8 bits (the look-up-table unit)"),
    ("lut_conv", set_input("act1_q", 3, 12.0),
     "node 'act1_q' (Quant): 12-bit activations between layers (2**k - 1 thresholds per "
     "channel); allowed: at most 8 bits"),
    ("binary_conv", set_attr("pool1", ceil_mode=1),
     "node 'pool1' (MaxPool): window [2, 2], strides [2, 2], pads [0, 0, 0, 0]: mulfree pools "
     "with strides equal to the window, no padding, floor mode"),
    ("binary_conv", append("Reshape", inputs=[np.array([3, 1], dtype=np.int64)]),
     "node 'extra' (Reshape): reshapes [1, 3] to [3, 1]; only flattening to [1, K] is "
     "supported"),
    ("ternary_conv", set_attr("fc2", alpha=2.0),
     "node 'fc2' (Gemm): alpha 2 is not supported (1 only; put the factor in the weight "
     "scale)"),
    ("binary_conv", set_attr("act1_q", narrow=None),
     "node 'act1_q' (Quant): attribute 'narrow' is not set, and qonnx's executor requires it"),
    ("no_room", None,
     "node 'w1_q' (Quant): negating the decreasing channels needs 9 weight levels, more than "
     "the 8 of a 3-bit look-up table"),
]


@pytest.mark.parametrize("name, edit, message", REFUSALS,
                         ids=[f"{i}-{r[0]}" for i, r in enumerate(REFUSALS)])
def test_refusals_are_one_line_naming_node_op_and_why(tmp_path, capsys, name, edit, message):
    model = lut_that_cannot_negate() if name == "no_room" else ex.build(name)
    if edit is not None:
        edit(model)
        del model.graph.value_info[:]          # the shapes are inferred again on import
        model.graph.output[0].type.tensor_type.ClearField("shape")
    src = save(model, tmp_path / "bad.onnx")
    out = tmp_path / "bad.npz"
    line = one_line_error(capsys, main(["import", src, "-o", str(out)]))
    assert line.startswith("mulfree import: error: ")
    assert message in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_a_file_that_is_not_onnx_is_refused(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    line = one_line_error(capsys, main(["import", str(src), "-o", str(tmp_path / "m.npz")]))
    assert f"'{src}' is not an ONNX model" in line
    line = one_line_error(capsys, main(["import", str(tmp_path / "none.onnx"), "-o",
                                        str(tmp_path / "m.npz")]))
    assert "ONNX file" in line and "not found" in line
