"""The network engine runs whole networks: every image's scores equal the integer model's
(``model.deploy.run_integer``), every layer's counters equal ``sim.program.predict_program``
and every image's cycles equal ``sim.program.image_cycles``, on the Amaranth simulator and on
the generated Verilog (Verilator, Icarus); a program for another engine is refused."""

from __future__ import annotations

import numpy as np
import pytest

from hw.program import (HEADER_FIELDS, PROGRAM_VERSION, encode_beats, engine_fingerprint,
                        header_fields, threshold_entry_words)
from model import deploy, nets
from sim import toolchain
from sim.program import (compile_program, engine_for_model, image_cycles, predict_program,
                         submodel)
from sim.run_model import EngineJob, engine_backend
from tests.model.test_channels import randomize_batch_norms

SHAPE = (1, 8, 8)


def _folded(name: str, seed: int, **kwargs) -> deploy.IntegerModel:
    net = nets.build(name, SHAPE, pixel_max=16, seed=seed, **kwargs)
    randomize_batch_norms(net, np.random.default_rng(seed))
    return deploy.fold(net, input_shape=SHAPE, pixel_max=16)


def _xnor_body(name: str, seed: int, **kwargs):
    """The layers after the first (all XNOR) of a randomly initialised network, with
    random batch norms folded into thresholds, and inputs for them from random images."""
    full = _folded(name, seed, **kwargs)
    images = np.random.default_rng(seed).integers(0, 17, size=(3,) + SHAPE)
    inputs = deploy.run_integer(full, images).layers[0].outputs
    return submodel(full, 1), inputs


def _check(model, inputs, backend: str, rows: int, cols: int, **options):
    engine = engine_for_model(model, rows=rows, cols=cols, **options)
    program = compile_program(model, engine)
    job = EngineJob.of(program, [program.input_words(x) for x in inputs])
    results = engine_backend(backend).run(engine, job)
    want = deploy.run_integer(model, inputs).layers[-1].accumulators.reshape(len(inputs), -1)
    expected = predict_program(program)
    assert len(results) == len(inputs)
    for i, r in enumerate(results):
        np.testing.assert_array_equal(program.decode_scores(r.scores).ravel(), want[i])
        if engine.counters:
            assert r.layer_counters() == [{k: e[k] for k in r.layer_counters()[0]}
                                          for e in expected]
        else:
            assert len(r.counter_words) == 1
        assert r.cycles == image_cycles(program)
    return program


@pytest.mark.timeout(300)
def test_binarynet_body_on_amaranth():
    """Two XNOR convolutions with max-pool, a thresholded dense layer and the scores, on a
    2x2 array of 32-lane PEs: 8 and 16 channels leave padding lanes in every word."""
    model, inputs = _xnor_body("binarynet", 3, widths=(8, 16, 32))
    program = _check(model, inputs[:2], "amaranth", 2, 2)
    assert [d.post["pool"] for d in program.layers][:1] == [2]


@pytest.mark.timeout(300)
def test_binarymlp_scores_layer_on_amaranth():
    """A lone scores layer (no thresholds, no activation words written) on a 1x3 array."""
    model, inputs = _xnor_body("binarymlp", 4)
    _check(model, inputs, "amaranth", 1, 3)


@pytest.mark.skipif(not toolchain.verilator_available()[0],
                    reason="Verilator is not available")
@pytest.mark.timeout(600)
def test_binarynet_body_on_verilator():
    model, inputs = _xnor_body("binarynet", 5)
    _check(model, inputs, "verilator", 3, 2)


@pytest.mark.skipif(not toolchain.icarus_available()[0], reason="Icarus is not available")
@pytest.mark.timeout(600)
def test_binarynet_body_on_icarus():
    model, inputs = _xnor_body("binarynet", 6, widths=(8, 16, 32))
    _check(model, inputs[:1], "icarus", 2, 1)


@pytest.mark.timeout(300)
def test_a_builtin_program_without_counters_on_amaranth():
    """The program built into the logic and no per-layer counters (the iCEBreaker's engine):
    the same scores and the same image cycles."""
    model, inputs = _xnor_body("binarynet", 3, widths=(8, 16, 32))
    program = _check(model, inputs[:1], "amaranth", 2, 2, counters=False, builtin=True)
    assert program.engine.builtin == tuple(program.beats())


@pytest.mark.skipif(not toolchain.verilator_available()[0],
                    reason="Verilator is not available")
@pytest.mark.timeout(600)
def test_a_whole_binarynet_with_a_builtin_program_on_verilator():
    """A whole BinaryNet (binary A8 first layer, then XNOR layers) on a 1x1 engine with its
    program built in and no per-layer counters, as ``mulfree build`` makes for the UP5K."""
    model = _folded("binarynet", 8, widths=(8, 16, 32))
    images = np.random.default_rng(8).integers(0, 17, size=(2,) + SHAPE)
    _check(model, images, "verilator", 1, 1, counters=False, builtin=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("beat", ["descriptor", "last"])
def test_a_builtin_engine_refuses_any_other_program(beat):
    """One beat of a layer's descriptor changed (the fingerprint and header intact): the
    engine with that program built in takes the whole program, refuses it, runs no image."""
    model, inputs = _xnor_body("binarymlp", 9)
    engine = engine_for_model(model, rows=1, cols=2, builtin=True)
    program = compile_program(model, engine)
    job = EngineJob.of(program, [program.input_words(inputs[0])])
    index = len(HEADER_FIELDS) + 3 if beat == "descriptor" else len(job.beats) - 1
    job.beats[index] ^= 1
    with pytest.raises(RuntimeError, match="refused the program"):
        engine_backend("amaranth").run(engine, job)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("field, change", [("fingerprint", 1), ("version", 1),
                                           ("layers", 1)])
def test_a_foreign_program_is_refused(field, change):
    """A program whose fingerprint or version is not the engine's, or with more layers than
    the engine holds, is taken to its last beat and dropped; no image runs."""
    model, inputs = _xnor_body("binarymlp", 7)
    engine = engine_for_model(model, rows=1, cols=2)
    program = compile_program(model, engine)
    job = EngineJob.of(program, [program.input_words(inputs[0])])
    assert len(encode_beats(header_fields(engine), program.header)) == len(HEADER_FIELDS)
    index = list(HEADER_FIELDS).index(field)          # one beat per header field
    job.beats[index] += change
    if field == "layers":         # a whole program, of one layer more than the engine holds
        n_layer = (len(job.beats) - len(HEADER_FIELDS)) // len(program.layers)
        job.beats += job.beats[-n_layer:]
    with pytest.raises(RuntimeError, match="refused the program"):
        engine_backend("amaranth").run(engine, job)


def test_the_compiler_against_a_hand_worked_program():
    """The places of a three-layer XNOR network on a 1x2 engine, worked by hand: a 5x5 conv
    of 16 filters on one 32-lane word per pixel of a 4x4 map (pool 2), a dense layer of 32 on
    its 64 flattened signs (two words), a dense layer of 10 scores on one word."""
    model, _ = _xnor_body("binarynet", 3, widths=(8, 16, 32))
    program = compile_program(model, engine_for_model(model, rows=1, cols=2))
    # weights, one bank (one PE row): 16 x 25 words, then 32 x 2, then 10 x 1
    assert [d.bank_words for d in program.layers] == [400, 64, 10]
    assert [d.config["wb_base"] for d in program.layers] == [0, 400, 464]
    # activations: 16 input words; 16 channels x 2 x 2 pooled signs = 2 words; 32 signs = 1
    assert [(d.in_words, d.out_words) for d in program.layers] == [(16, 2), (2, 1), (1, 0)]
    assert program.engine.accelerator.in_depth == 16 + 2        # the largest layer's both
    # layer 0 reads at 0 and writes at the top (18 - 2), layer 1 the other way round
    assert [d.config["in_base"] for d in program.layers] == [0, 16, 0]
    assert [d.post["dst_base"] for d in program.layers][:2] == [16, 0]
    # thresholds: 16 channels of layer 0, then layer 1's 32
    assert [(d.post["thr_base"], d.thr_entries) for d in program.layers][:2] == [(0, 16),
                                                                               (16, 32)]
    assert [d.post["pool"] for d in program.layers] == [2, 0, 0]
    header = dict(program.header)
    assert header.pop("fingerprint") == engine_fingerprint(program.engine)
    assert header == {"version": PROGRAM_VERSION, "layers": 3, "bank_words": 474,
                      "thr_entries": 48, "input_words": 16, "scores": 10}
    assert len(program.weight_words()) == 474 + 48 * threshold_entry_words(program.engine)
