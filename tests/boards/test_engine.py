"""A whole network on the simulated board: the host's program, weight and image frames go
through the simulated UART into the network engine (``boards.engine.EngineTarget``) and the
scores and counters come back bit-exact (``model.deploy.run_integer``,
``sim.program.predict_program``); a board holding another engine is refused before anything
is sent."""

import numpy as np
import pytest

from boards.engine import BoardEngineBackend, EngineTarget, decode_engine_info, engine_info
from boards.host import BoardError
from boards.simulated import SimulatedSerial
from boards.top import BoardCore
from model import deploy
from sim.program import compile_program, engine_for_model, image_cycles, predict_program
from sim.run_model import EngineJob
from tests.sim.test_engine_run import _xnor_body

CLK = 1_000_000
BAUD = 250_000


def _board(engine):
    core = BoardCore(EngineTarget(engine), clk_freq=CLK, baud=BAUD, max_payload=128,
                     frame_timeout=0.001, target_timeout=0.05)
    serial = SimulatedSerial(core, rx=core.rx, tx=core.tx, clk_freq=CLK, baud=BAUD)
    return BoardEngineBackend(serial, timeout=0.5)


@pytest.mark.timeout(300)
def test_a_network_on_the_simulated_board_is_bit_exact():
    model, inputs = _xnor_body("binarymlp", 8)
    engine = engine_for_model(model, rows=1, cols=2)
    program = compile_program(model, engine)
    board = _board(engine)
    assert board.info()["fingerprint"] == decode_engine_info(engine_info(engine))["fingerprint"]
    job = EngineJob.of(program, [program.input_words(x) for x in inputs[:2]])
    results = board.run(engine, job)
    want = deploy.run_integer(model, inputs[:2]).layers[-1].accumulators.reshape(2, -1)
    for i, r in enumerate(results):
        np.testing.assert_array_equal(program.decode_scores(r.scores).ravel(), want[i])
        got = r.layer_counters()
        assert got == [{k: e[k] for k in got[0]} for e in predict_program(program)]
        assert r.cycles == image_cycles(program)


@pytest.mark.timeout(300)
def test_a_board_with_another_engine_is_refused():
    model, _ = _xnor_body("binarymlp", 9)
    engine = engine_for_model(model, rows=1, cols=2)
    other = engine_for_model(model, rows=1, cols=3)
    board = _board(other)
    with pytest.raises(ValueError, match="is not the one this model compiles for"):
        board.run(engine, EngineJob.of(compile_program(model, engine), []))


def test_engine_info_round_trips_and_rejects_other_designs():
    model, _ = _xnor_body("binarymlp", 9)
    engine = engine_for_model(model, rows=1, cols=2)
    info = decode_engine_info(engine_info(engine))
    assert (info["rows"], info["cols"], info["lanes"]) == (1, 2, 32)
    with pytest.raises(BoardError, match="not a network engine"):
        decode_engine_info(b"RSA4" + bytes(10))
