"""Engines with several datapaths (``sim.program.model_modes``, ``layer_modes``): the modes a
model's layers get, the descriptors' ``mode`` fields, the image's words at layer 0's mode's
width, refusals in one line, and whole networks whose layers need different datapaths on
the Amaranth simulation of the engine: every score equal to ``model.deploy.run_integer``'s
accumulators and every layer's counters equal to ``predict_program``.
"""

import numpy as np
import pytest

from hw.schedule import COUNTERS, Datapath
from model import data, deploy, nets
from model.quant import to_unsigned_bits
from sim.program import (compile_program, engine_for_model, layer_modes, model_modes,
                         predict_program, submodel)

DIGITS = data.load_digits()


def _model(name: str, widths=None) -> deploy.IntegerModel:
    """``name`` (untrained, seed 0) on the digits, folded."""
    ds = DIGITS
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=0,
                     **({} if widths is None else {"widths": widths}))
    return deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                       classes=ds.classes)


def test_binarynet_gets_a_binary_and_an_xnor_mode():
    model = _model("binarynet")
    assert [(ly.scheme, ly.a_bits) for ly in model.layers] == [
        ("binary", 6), ("xnor", 32), ("xnor", 32), ("xnor", 32)]
    # binary A6 widens to A8 so that 4 lanes fill the 32-bit word of 32 XNOR lanes
    assert model_modes(model) == (Datapath("binary", 4, 8, 1), Datapath("xnor", 32, 1, 1))
    # at least one lane of the widest codes: 8-bit words, 8 XNOR lanes
    assert model_modes(model, 1) == (Datapath("binary", 1, 8, 1), Datapath("xnor", 8, 1, 1))
    engine = engine_for_model(model, rows=3, cols=4)
    a = engine.accelerator
    assert (a.scheme, a.lanes, a.a_bits) == ("binary", 4, 8)
    assert a.more_modes == (Datapath("xnor", 32, 1, 1),)
    assert layer_modes(model, a) == [0, 1, 1, 1]
    program = compile_program(model, engine)
    assert [d.mode for d in program.layers] == [0, 1, 1, 1]
    assert [d.config["mode"] for d in program.layers] == [0, 1, 1, 1]
    assert [d.params.lanes for d in program.layers] == [4, 32, 32, 32]
    # the post-processor writes the XNOR layers' 32-lane words
    assert [d.post["lanes"] for d in program.layers[:-1]] == [32, 32, 32]
    assert engine.post.word_bits == a.a_word_bits == 32


def test_image_words_take_layer_0_modes_width():
    """One lane of 8-bit words: the pixel codes as they are (one channel, not split)."""
    model = _model("binarynet")
    program = compile_program(model, engine_for_model(model, rows=3, cols=4, lanes=1))
    assert program.split == 1
    image = DIGITS.x_test[0]
    codes = model.layers[0].encode_inputs(image[None])[0].ravel()      # one channel
    want = [int(v) for v in to_unsigned_bits(codes, 8)]                 # A6 codes at 8 bits
    assert program.input_words(image) == want
    assert len(want) == program.header["input_words"] == 64


def test_a_split_first_layer_takes_shifted_pixels_in_its_lanes():
    """Four lanes and one channel: layer 0 (5x5, padding 2) runs split, its 5 columns as
    channels: word ``k`` of pixel ``(h, f)`` holds the padded image's pixels ``(h, f + s)``
    for ``s = 4k .. 4k + 3`` (``s < 5``; the other lanes 0), channel-word major."""
    model = _model("binarynet")
    program = compile_program(model, engine_for_model(model, rows=3, cols=4))
    assert program.split == 5 and program.compiled.layers[0].weights.shape == (32, 5, 5, 1)
    image = DIGITS.x_test[3]
    codes = model.layers[0].encode_inputs(image[None])[0][0]            # [8, 8]
    padded = np.zeros((12, 12), dtype=np.int64)
    padded[2:10, 2:10] = codes
    want = []
    for k in range(2):
        for h in range(12):
            for f in range(8):
                lanes = [padded[h, f + s] if s < 5 else 0 for s in range(4 * k, 4 * k + 4)]
                want.append(sum(int(v) << (8 * lane) for lane, v in enumerate(lanes)))
    assert program.input_words(image) == want
    assert program.header["input_words"] == 192


def test_one_kind_of_layer_keeps_one_mode():
    xnor = submodel(_model("binarynet"), 1)
    assert model_modes(xnor) == (Datapath("xnor", 32, 1, 1),)
    engine = engine_for_model(xnor, rows=2, cols=2)
    assert engine.accelerator.more_modes == ()
    assert [d.mode for d in compile_program(xnor, engine).layers] == [0, 0, 0]


def test_widened_kinds_share_a_mode():
    """DoReFa-Net: dorefa A5 (pixels) and dorefa A3 layers share one mode (3-bit codes
    zero-extended); the int A4 head runs as int A5, on the same 5-bit words."""
    model = _model("dorefanet")
    assert [(ly.scheme, ly.a_bits) for ly in model.layers] == [
        ("dorefa", 5), ("dorefa", 3), ("dorefa", 3), ("int", 4)]
    assert model_modes(model) == (Datapath("dorefa", 1, 5, 1), Datapath("int", 1, 5, 8))
    engine = engine_for_model(model, rows=3, cols=4, lanes=4)
    assert [d.describe() for d in engine.accelerator.modes] == [
        "dorefa A5 W1 x4 lanes", "int A5 W8 x4 lanes"]
    assert layer_modes(model, engine.accelerator) == [0, 0, 0, 1]
    assert engine.post.code_bits == 5


def test_a_layer_no_mode_runs_is_refused():
    engine = engine_for_model(_model("binarynet"), rows=3, cols=4)
    with pytest.raises(ValueError, match=r"^the model does not fit the engine: layer 0 "
                       r"\(ternary A6 W2\) does not run on any datapath of the engine; its "
                       r"modes: binary A8 W1 x4 lanes; xnor A1 W1 x32 lanes$"):
        compile_program(_model("ternarynet"), engine)


def test_post_processor_writes_one_code_width():
    model = _model("ternarynet")
    model.layers[3].a_bits = 4        # its +/-1 inputs as 4-bit codes: a mode of A6 codes
    with pytest.raises(ValueError, match=r"^layers 1 and 3 take 3-bit and 6-bit codes in "
                       r"their modes; allowed: one code width"):
        engine_for_model(model, rows=3, cols=4)


def _run_on_engine(model, images: int, **sizes):
    from sim.run_model import EngineJob, engine_backend
    engine = engine_for_model(model, rows=2, cols=3, **sizes)
    program = compile_program(model, engine)
    x = DIGITS.x_test[:images]
    want = deploy.run_integer(model, x).layers[-1].accumulators.reshape(images, -1)
    job = EngineJob.of(program, [program.input_words(image) for image in x])
    results = engine_backend("amaranth").run(engine, job)
    expected = predict_program(program)
    assert len(results) == images
    for i, result in enumerate(results):
        np.testing.assert_array_equal(program.decode_scores(result.scores).ravel(), want[i])
        got = result.layer_counters()
        assert [{n: c[n] for n in COUNTERS} for c in got] == \
            [{n: c[n] for n in COUNTERS} for c in expected]
    return program


def test_binarynet_runs_on_one_engine():
    """The binary first layer (mode 0, 4 lanes of 8-bit pixel codes) and the XNOR layers
    (mode 1, 32 lanes) back to back in one engine, bit for bit."""
    program = _run_on_engine(_model("binarynet", (4, 8, 16)), 1)
    assert [d.mode for d in program.layers] == [0, 1, 1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ternarynet", "dorefanet"])
def test_widened_codes_run_on_one_engine(name, request):
    """Later layers' codes widened in their modes (ternary A2 as A3 with 2 lanes; dorefa A3
    and int A4 as A5), written so by the post-processor, bit for bit (-m slow)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("two more engine simulations (about a minute); run with -m slow")
    program = _run_on_engine(_model(name, (4, 8, 16)), 2)
    assert len({d.mode for d in program.layers}) == 2


def test_the_modes_are_in_the_fingerprint_and_the_board_identity():
    import dataclasses

    from boards.engine import decode_engine_info, engine_info
    from hw.program import engine_fingerprint
    engine = engine_for_model(_model("binarynet"), rows=3, cols=4)
    a = engine.accelerator
    other = dataclasses.replace(engine, accelerator=a.replace(
        more_modes=(Datapath("ternary", 4, 8),)))
    assert engine_fingerprint(other) != engine_fingerprint(engine)
    info = decode_engine_info(engine_info(engine))
    assert info["fingerprint"] == engine_fingerprint(engine)
    assert (info["rows"], info["cols"], info["lanes"]) == (3, 4, 4)
