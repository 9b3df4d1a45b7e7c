# amaranth: UnusedElaboratable=no
"""The host driver end to end: its bytes go through the simulated UART into the simulated link
and a stand-in design, and back."""

import numpy as np
import pytest

from boards.host import BoardClient, BoardError, SerialTransport
from boards.protocol import Command, Identity
from boards.simulated import SimulatedSerial
from boards.top import BoardCore, LinkLoopback

CLK = 1_000_000
BAUD = 250_000          # 4 clocks per bit: the fastest the receiver allows, so the test is quick
MAX_PAYLOAD = 64


class Board:
    """The simulated board (the link self-test design), a client on it, and what reached the
    design: weight bytes taken and START pulses."""

    def __init__(self, wrap=None):
        self.core = BoardCore(LinkLoopback(), clk_freq=CLK, baud=BAUD, max_payload=MAX_PAYLOAD,
                              frame_timeout=0.001, target_timeout=0.002)
        self.serial = SimulatedSerial(self.core, rx=self.core.rx, tx=self.core.tx,
                                      clk_freq=CLK, baud=BAUD, testbenches=[self._probe])
        self.probed = {"weights": 0, "starts": 0}
        transport = wrap(self.serial) if wrap else self.serial
        self.client = BoardClient(transport, timeout=0.02)

    async def _probe(self, ctx):
        weights = self.core.target.weights_stream
        async for _, _, valid, ready, start in ctx.tick().sample(weights.valid, weights.ready,
                                                                 self.core.target.start):
            self.probed["weights"] += valid & ready
            self.probed["starts"] += start


class CorruptOnce:
    """A transport that flips one bit of the ``index``-th byte written, once."""

    def __init__(self, inner, index, bit=3):
        self.inner, self.index, self.bit, self.written = inner, index, bit, 0

    def write(self, data):
        data = bytearray(data)
        if self.written <= self.index < self.written + len(data):
            data[self.index - self.written] ^= 1 << self.bit
        self.written += len(data)
        self.inner.write(bytes(data))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_identify_over_the_line():
    board = Board()
    identity = board.client.identify()
    assert identity == Identity(max_payload=MAX_PAYLOAD, clk_freq=CLK, baud=BAUD,
                                target_info=b"link-loopback")
    assert board.serial.line_errors == 0


def test_echo_write_read_and_start_round_trip():
    rng = np.random.default_rng(8)
    board = Board()
    client = board.client
    for n in (0, 1, MAX_PAYLOAD):
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        assert client.echo(data) == data
    data = bytes(rng.integers(0, 256, 3 * MAX_PAYLOAD + 5, dtype=np.uint8))
    client.write_inputs(data)                      # four frames
    assert client.read_outputs(len(data)) == data
    client.write_config(b"\x00\xff\x80")
    assert client.read_counters(3) == b"\x00\xff\x80"
    client.write_weights(bytes(100))
    client.start()
    client.start()
    board.serial.idle(1e-4)
    assert board.probed == {"weights": 100, "starts": 2}
    assert client.refusals == 0


def test_a_corrupted_request_is_refused_then_sent_again_and_runs_once():
    data = bytes(range(40))
    board = Board(wrap=lambda serial: CorruptOnce(serial, index=10))
    board.client.write_inputs(data)
    assert board.client.refusals == 1
    assert board.client.read_outputs(len(data)) == data
    with pytest.raises(BoardError, match="TARGET_TIMEOUT after 0 of 1 bytes"):
        board.client.read_outputs(1)               # nothing was written twice


def test_a_read_of_more_than_the_design_has_reports_how_much_came():
    board = Board()
    board.client.write_inputs(b"abc")
    with pytest.raises(BoardError, match="TARGET_TIMEOUT after 3 of 5 bytes"):
        board.client.read_outputs(5)


def test_a_corrupted_response_is_detected():
    class CorruptReads:
        def __init__(self, inner):
            self.inner = inner

        def read(self, count, timeout):
            data = bytearray(self.inner.read(count, timeout))
            if count > 5 and data:
                data[0] ^= 0x40
            return bytes(data)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    board = Board(wrap=CorruptReads)
    with pytest.raises(BoardError, match="corrupted on the line"):
        board.client.echo(b"hello")


def test_refusal_after_every_retry_raises():
    class AlwaysCorrupt(CorruptOnce):
        def write(self, data):
            self.written = 0
            super().write(data)

    board = Board(wrap=lambda serial: AlwaysCorrupt(serial, index=4))  # a checksum byte
    with pytest.raises(BoardError, match=r"START was refused by the board \(BAD_CHECKSUM"):
        board.client.start()
    assert board.client.refusals == 3
    board.serial.idle(1e-4)
    assert board.probed["starts"] == 0


def test_silence_and_strangers_are_reported():
    class Silent:
        def write(self, data):
            pass

        def read(self, count, timeout):
            return b""

        def discard_input(self):
            pass

    with pytest.raises(BoardError, match="no answer from the board"):
        BoardClient(Silent(), timeout=0.01).identify()
    # pyserial's loopback URL answers with our own request: not a mulfree response
    port = SerialTransport("loop://", 115200)
    with pytest.raises(BoardError, match="not a mulfree response"):
        BoardClient(port, timeout=0.2).identify()
    port.close()
    with pytest.raises(ValueError, match="cannot open serial port"):
        SerialTransport("/dev/mulfree-no-such-port", 115200)


def test_write_and_read_commands_are_checked():
    client = BoardClient(transport=None)
    with pytest.raises(ValueError, match="not a write command"):
        client.write(Command.READ_OUTPUTS, b"x")
    with pytest.raises(ValueError, match="not a read command"):
        client.read(Command.WRITE_INPUTS, 1)


def test_link_and_core_parameters_are_checked():
    from boards.link import HostLink

    assert HostLink(clk_freq=12e6, baud=9600).frame_timeout_cycles == 250_000  # 20 bytes
    assert HostLink(clk_freq=12e6).frame_timeout_cycles == 240_000             # 20 ms
    with pytest.raises(ValueError, match="frame timeout 0.001 s is shorter than 20 bytes"):
        HostLink(clk_freq=12e6, baud=115200, frame_timeout=0.001)
    with pytest.raises(TypeError, match="target must be a component with the members"):
        BoardCore(HostLink(clk_freq=12e6), clk_freq=12e6)


def test_bring_up_check_over_a_pyserial_port(capsys):
    """``python -m boards.host socket://...``: the check a user runs on a fresh board, here
    through pyserial into the simulated link self-test design."""
    from boards.host import main
    from boards.simulated import TcpBridge

    board = Board()
    with TcpBridge(board.serial, linger=0.005) as bridge:
        status = main([bridge.url, "--timeout", "20"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert out[0].startswith("identified: protocol 1, 1 MHz clock, 250000 baud, frames up to "
                             f"{MAX_PAYLOAD} bytes, design b'link-loopback'")
    assert out[1].startswith("echo: 7 frames") and out[1].endswith("came back intact")
    assert out[2] == f"loopback: {3 * MAX_PAYLOAD + 7} bytes written and read back intact"


def test_bring_up_check_reports_a_silent_port(capsys):
    from boards.host import main

    status = main(["loop://", "--timeout", "0.2"])
    assert status == 1
    assert capsys.readouterr().err.startswith("board check failed: the board's answer is not")
