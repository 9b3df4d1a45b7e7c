"""Layers on the simulated board: the host driver's bytes go through the simulated UART into
the simulated accelerator and back, and the sums are bit-exact."""

import numpy as np
import pytest

from boards.accelerator import (AcceleratorTarget, BoardBackend, check_runs_on,
                                decode_accelerator_info, encode_accelerator_info,
                                run_layers_on_board)
from boards.host import BoardClient, BoardError
from boards.simulated import SimulatedSerial, TcpBridge
from boards.top import BoardCore, LinkLoopback
from hw.schedule import COUNTERS
from model import ops
from model.layer_file import Layer
from sim.cycle_model import ArrayParams, choose_mapping, predict
from sim.run_layer import accelerator_config, layer_shape

CLK = 1_000_000
BAUD = 250_000
PARAMS = ArrayParams(rows=2, cols=2, lanes=2, filter_spad=16, ifmap_spad=16)


def simulated_board(args, wrap=None):
    core = BoardCore(AcceleratorTarget(args), clk_freq=CLK, baud=BAUD, max_payload=128,
                     frame_timeout=0.001, target_timeout=0.01)
    serial = SimulatedSerial(core, rx=core.rx, tx=core.tx, clk_freq=CLK, baud=BAUD)
    return BoardBackend(wrap(serial) if wrap else serial, timeout=0.05)


def golden(layer):
    return ops.conv2d(layer.scheme, layer.inputs[None], layer.weights, stride=layer.stride,
                      padding=layer.padding, a_bits=layer.a_bits, w_bits=layer.w_bits)[0]


def predicted_counters(layer):
    shape = layer_shape(layer)
    predicted = predict(shape, PARAMS, choose_mapping(shape, PARAMS), weights=layer.weights,
                        scheme=layer.scheme, w_bits=layer.w_bits)
    return {name: predicted[name] for name in (*COUNTERS, "macs", "rf_reads", "rf_writes")}


def layers(rng):
    """A 3x3 conv with padding and stride 2 (R > rows: folded), a dense layer whose weights
    are all zero (every MAC skipped), and a conv at the extremes of the codes."""
    conv = Layer("ternary", rng.integers(-1, 2, (3, 2, 3, 3)), rng.integers(-8, 8, (2, 5, 5)),
                 stride=2, padding=1, a_bits=4)
    dense = Layer("ternary", np.zeros((3, 6, 1, 1), dtype=np.int64),
                  rng.integers(-8, 8, (6, 1, 1)), a_bits=4)
    extreme = Layer("ternary", -np.ones((2, 2, 2, 2), dtype=np.int64),
                    np.full((2, 3, 3), -8), a_bits=4)
    return [conv, dense, extreme]


def test_layers_on_the_simulated_board_are_bit_exact():
    batch = layers(np.random.default_rng(2024))
    args = accelerator_config(batch, PARAMS)
    runs = run_layers_on_board(batch, simulated_board(args), PARAMS)
    for layer, run in zip(batch, runs):
        np.testing.assert_array_equal(run.outputs, golden(layer))
        assert run.counters == predicted_counters(layer)
    assert runs[1].counters["skipped"] == runs[1].counters["macs"] > 0
    assert runs[2].outputs.max() == 8 * 2 * 2 * 2   # -1 * -8 over the 8 taps: the bound


def test_a_corrupted_frame_mid_layer_is_sent_again_and_the_result_stays_exact():
    class CorruptOnce:
        def __init__(self, inner, index):
            self.inner, self.index, self.written = inner, index, 0

        def write(self, data):
            data = bytearray(data)
            if self.written <= self.index < self.written + len(data):
                data[self.index - self.written] ^= 0x10
            self.written += len(data)
            self.inner.write(bytes(data))

        def __getattr__(self, name):
            return getattr(self.inner, name)

    layer = layers(np.random.default_rng(5))[0]
    args = accelerator_config([layer], PARAMS)
    backend = simulated_board(args, wrap=lambda s: CorruptOnce(s, index=50))  # in the config
    (run,) = run_layers_on_board([layer], backend, PARAMS)
    assert backend.client.refusals == 1
    np.testing.assert_array_equal(run.outputs, golden(layer))
    assert run.counters == predicted_counters(layer)


def test_a_layer_the_board_cannot_hold_is_refused_before_anything_is_sent():
    rng = np.random.default_rng(1)
    small = Layer("ternary", rng.integers(-1, 2, (1, 1, 2, 2)), rng.integers(-8, 8, (1, 3, 3)),
                  a_bits=4)
    big = Layer("ternary", rng.integers(-1, 2, (1, 1, 2, 2)), rng.integers(-8, 8, (1, 9, 9)),
                a_bits=4)
    backend = simulated_board(accelerator_config([small], PARAMS))
    with pytest.raises(ValueError, match=r"in_depth >= 81, the board's accelerator has 9"):
        run_layers_on_board([big], backend, PARAMS)
    wider = ArrayParams(rows=3, cols=2, lanes=2, filter_spad=16, ifmap_spad=16)
    with pytest.raises(ValueError, match="rows = 3, the board's has 2"):
        run_layers_on_board([small], backend, wider)


def test_accelerator_info_round_trips_and_a_loopback_board_is_not_an_accelerator():
    config = accelerator_config(layers(np.random.default_rng(0)), PARAMS)
    info = encode_accelerator_info(config)
    assert decode_accelerator_info(info) == config
    check_runs_on(config, decode_accelerator_info(info))
    shared = config.replace(scheme="dorefa", a_bits=3, w_bits=2, codebook=(-3, 0, 1, 2),
                            counter_bits=20, lanes=8, tree_stages=2)
    assert decode_accelerator_info(encode_accelerator_info(shared)) == shared
    with pytest.raises(ValueError, match=r"codebook = \(-3, 0, 1, 2\), the board's has None"):
        check_runs_on(shared, decode_accelerator_info(encode_accelerator_info(shared)).replace(
            codebook=None))
    with pytest.raises(BoardError, match="not an accelerator"):
        decode_accelerator_info(LinkLoopback.target_info)

    core = BoardCore(LinkLoopback(), clk_freq=CLK, baud=BAUD, frame_timeout=0.001)
    serial = SimulatedSerial(core, rx=core.rx, tx=core.tx, clk_freq=CLK, baud=BAUD)
    backend = BoardBackend(serial, timeout=0.05)
    with pytest.raises(BoardError, match="not an accelerator"):
        backend.accelerator()
    assert isinstance(backend.client, BoardClient)


def test_run_layer_command_on_a_board_through_a_serial_port(tmp_path, capsys):
    """``mulfree run-layer --backend board --port URL`` with pyserial's socket:// port: the
    command's bytes go through a real pyserial port into the simulated UART and accelerator."""
    from model.layer_file import load_outputs, save_layer
    from mulfree.cli import main

    layer = layers(np.random.default_rng(77))[0]
    save_layer(tmp_path / "layer.npz", layer)
    core = BoardCore(AcceleratorTarget(accelerator_config([layer], PARAMS)), clk_freq=CLK,
                     baud=BAUD, max_payload=64, frame_timeout=0.001, target_timeout=0.01)
    serial = SimulatedSerial(core, rx=core.rx, tx=core.tx, clk_freq=CLK, baud=BAUD)
    with TcpBridge(serial, linger=0.02) as bridge:
        status = main(["run-layer", str(tmp_path / "layer.npz"), "-o", str(tmp_path / "out.npz"),
                       "--backend", "board", "--port", bridge.url, "--rows", "2", "--cols", "2",
                       "--lanes", "2", "--filter-spad", "16", "--ifmap-spad", "16"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "outputs equal the golden model: yes; counters equal the cycle model: yes" in printed
    saved = load_outputs(tmp_path / "out.npz")
    np.testing.assert_array_equal(saved["outputs"], golden(layer))
    assert {name: int(saved[name]) for name in predicted_counters(layer)} == \
        predicted_counters(layer)


def test_run_layer_command_needs_a_port_for_the_board(tmp_path, capsys):
    from model.layer_file import save_layer
    from mulfree.cli import main

    save_layer(tmp_path / "layer.npz", layers(np.random.default_rng(1))[0])
    status = main(["run-layer", str(tmp_path / "layer.npz"), "-o", str(tmp_path / "o.npz"),
                   "--backend", "board"])
    assert status == 2
    assert capsys.readouterr().err.strip() == \
        "mulfree run-layer: error: --backend board needs --port (the board's serial port)"


def test_narrower_signed_activations_run_on_a_wider_board():
    """A board built for 8-bit activations and 16-bit sums runs 4-bit layers exactly (the host
    sign-extends the codes); the refusal still names a wider need."""
    rng = np.random.default_rng(31)
    inputs = np.where(rng.random((2, 3, 3)) < 0.5, -8, rng.integers(-8, 8, (2, 3, 3)))
    layer = Layer("ternary", rng.integers(-1, 2, (2, 2, 2, 2)), inputs, a_bits=4)
    assert inputs.min() == -8  # the most negative 4-bit code: its sign extension matters
    board_args = accelerator_config([layer], PARAMS).replace(a_bits=8, acc_bits=16)
    (run,) = run_layers_on_board([layer], simulated_board(board_args), PARAMS)
    np.testing.assert_array_equal(run.outputs, golden(layer))
    wide = Layer("ternary", layer.weights, layer.inputs, a_bits=9)
    with pytest.raises(ValueError, match="a_bits = 9, the board's has 8"):
        check_runs_on(accelerator_config([wide], PARAMS), decode_accelerator_info(
            encode_accelerator_info(board_args)))


def test_a_two_mode_board_describes_its_modes_and_runs_layers_of_both():
    """The IDENTIFY answer carries every mode; layers of both modes run exactly on one board;
    a board with other modes is refused by name."""
    from hw.schedule import Datapath
    rng = np.random.default_rng(41)
    first = Layer("binary", rng.integers(0, 2, (2, 3, 2, 2)), rng.integers(-8, 8, (3, 3, 3)),
                  a_bits=4)
    xnor = Layer("xnor", rng.integers(0, 1 << 5, (2, 1, 2, 2)), rng.integers(0, 1 << 5, (1, 3, 3)),
                 a_bits=5, w_bits=5)
    config = accelerator_config([first, xnor], PARAMS)
    assert config.more_modes == (Datapath("xnor", 8, 1),)
    assert decode_accelerator_info(encode_accelerator_info(config)) == config
    booked = config.replace(scheme="dorefa", a_bits=2, w_bits=2, codebook=(-3, 0, 1, 2),
                            lanes=4, acc_bits=12,
                            more_modes=(Datapath("dorefa", 2, 4, 2, (1, 0, -1, 5)),
                                        config.more_modes[0]))
    assert decode_accelerator_info(encode_accelerator_info(booked)) == booked
    for cut in (1, 5, 9):           # a truncated answer is not an accelerator
        with pytest.raises(BoardError, match="not an accelerator"):
            decode_accelerator_info(encode_accelerator_info(booked)[:-cut])
    with pytest.raises(ValueError, match="more_modes = "):
        check_runs_on(accelerator_config([first], PARAMS), config)
    runs = run_layers_on_board([first, xnor], simulated_board(config), PARAMS)
    np.testing.assert_array_equal(runs[0].outputs, golden(first))
    np.testing.assert_array_equal(runs[1].outputs, ops.conv2d("xnor", xnor.inputs, xnor.weights,
                                                              a_bits=5, w_bits=5))
    assert runs[1].params.lanes == 8
