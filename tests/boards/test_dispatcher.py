# amaranth: UnusedElaboratable=no
"""The command dispatcher against the protocol model (``boards.protocol.ReferenceDevice``)."""

import struct

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.dispatcher import CommandDispatcher, crc16_step
from boards.protocol import (
    READ_CHANNELS,
    REQUEST_SYNC,
    WRITE_CHANNELS,
    Command,
    Identity,
    ReferenceDevice,
    Status,
    crc16,
    decode_response,
    encode_request,
    encode_response,
)

FRAME_TIMEOUT = 40
TARGET_TIMEOUT = 30
IDENTITY = Identity(max_payload=24, clk_freq=12_000_000, baud=115200, target_info=b"\x07xyz")


def rtl_bursts(bursts, *, readable=None, write_ready=1, tx_ready=None, rx_gap=0,
               error_at=None, identity=IDENTITY):
    """Feed each burst of request bytes to the dispatcher, wait until it has answered and is
    idle, and return (responses per burst, bytes written per channel, START pulses).

    ``readable[name]`` are the bytes the design offers on read channel ``name``;
    ``write_ready`` is the design's ready on write channels; ``tx_ready(cycle)`` the
    transmitter's ready; ``rx_gap`` idle cycles between request bytes; ``error_at = (burst,
    byte)`` pulses ``rx_error`` instead of sending that byte.
    """
    dut = CommandDispatcher(identity=identity, frame_timeout=FRAME_TIMEOUT,
                            target_timeout=TARGET_TIMEOUT)
    readable = {name: bytearray((readable or {}).get(name, b"")) for name in READ_CHANNELS.values()}
    written = {name: bytearray() for name in WRITE_CHANNELS.values()}
    responses = []
    state = {"starts": 0, "cycle": 0}

    async def step(ctx, tx_bytes):
        """One clock cycle of the surroundings: the design's streams and the transmitter."""
        cycle = state["cycle"]
        tx_r = 1 if tx_ready is None else tx_ready(cycle)
        ctx.set(dut.tx_stream.ready, tx_r)
        for name in WRITE_CHANNELS.values():
            ctx.set(getattr(dut, f"{name}_stream").ready, write_ready)
        for name in READ_CHANNELS.values():
            s = getattr(dut, f"{name}_stream")
            ctx.set(s.valid, int(bool(readable[name])))
            ctx.set(s.payload, readable[name][0] if readable[name] else 0)
        await ctx.delay(0)
        if ctx.get(dut.tx_stream.valid) and tx_r:
            tx_bytes.append(ctx.get(dut.tx_stream.payload))
        for name in WRITE_CHANNELS.values():
            s = getattr(dut, f"{name}_stream")
            if ctx.get(s.valid) and write_ready:
                written[name].append(ctx.get(s.payload))
        for name in READ_CHANNELS.values():
            s = getattr(dut, f"{name}_stream")
            if ctx.get(s.valid) and ctx.get(s.ready):
                readable[name].pop(0)
        state["starts"] += ctx.get(dut.start)
        await ctx.tick()
        state["cycle"] += 1

    async def bench(ctx):
        for b, burst in enumerate(bursts):
            tx_bytes = []
            for i, byte in enumerate(burst):
                if error_at == (b, i):
                    ctx.set(dut.rx_error, 1)
                    await step(ctx, tx_bytes)
                    ctx.set(dut.rx_error, 0)
                    continue
                ctx.set(dut.rx_stream.payload, byte)
                ctx.set(dut.rx_stream.valid, 1)
                while True:
                    await ctx.delay(0)
                    taken = ctx.get(dut.rx_stream.ready)
                    await step(ctx, tx_bytes)
                    if taken:
                        break
                ctx.set(dut.rx_stream.valid, 0)
                for _ in range(rx_gap):
                    await step(ctx, tx_bytes)
            idle = 0
            while idle < FRAME_TIMEOUT + TARGET_TIMEOUT + 20:
                before = len(tx_bytes)
                await step(ctx, tx_bytes)
                idle = 0 if len(tx_bytes) != before else idle + 1
            responses.append(bytes(tx_bytes))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return responses, {k: bytes(v) for k, v in written.items()}, state["starts"]


def model_bursts(bursts, *, readable=None, identity=IDENTITY):
    device = ReferenceDevice(identity)
    for name, data in (readable or {}).items():
        device.readable[name] += data
    responses = [device.burst(b) for b in bursts]
    return responses, {k: bytes(v) for k, v in device.written.items()}, device.starts


def assert_same_as_model(bursts, readable=None, **kwargs):
    got = rtl_bursts(bursts, readable=readable, **kwargs)
    expected = model_bursts(bursts, readable=readable)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]
    return got


def test_crc_step_matches_the_model():
    from amaranth import Signal
    from amaranth.sim import Simulator

    crc, byte = Signal(16), Signal(8)
    out = Signal(16)
    rng = np.random.default_rng(5)
    pairs = [(0xFFFF, 0), (0, 0), (0xFFFF, 0xFF), (0x8000, 0x80)] + [
        (int(c), int(b)) for c, b in zip(rng.integers(0, 1 << 16, 200), rng.integers(0, 256, 200))]

    async def bench(ctx):
        for c, b in pairs:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc16(bytes([b]), crc=c)

    from amaranth import Module
    m = Module()
    m.d.comb += out.eq(crc16_step(crc, byte))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_identify_and_echo():
    echo = bytes(range(IDENTITY.max_payload))
    responses, _, _ = assert_same_as_model([
        encode_request(Command.IDENTIFY),
        encode_request(Command.ECHO, b""),
        encode_request(Command.ECHO, b"\x00"),
        encode_request(Command.ECHO, echo),
    ])
    first = decode_response(responses[0])
    assert (first.status, first.command) == (Status.OK, Command.IDENTIFY)
    assert Identity.decode(first.payload) == IDENTITY
    assert decode_response(responses[3]).payload == echo


def test_writes_reach_their_channels_in_order():
    rng = np.random.default_rng(11)
    bursts = []
    for code in WRITE_CHANNELS:
        for n in (1, 2, IDENTITY.max_payload, 0):
            bursts.append(encode_request(code, bytes(rng.integers(0, 256, n, dtype=np.uint8))))
    bursts.append(encode_request(Command.START))
    _, written, starts = assert_same_as_model(bursts)
    assert all(len(v) == 2 * 1 + 2 + IDENTITY.max_payload - 1 for v in written.values())
    assert starts == 1


def test_reads_take_their_channels_and_time_out_when_short():
    readable = {"outputs": bytes(range(100, 140)), "counters": bytes(range(10))}
    bursts = [
        encode_request(Command.READ_OUTPUTS, struct.pack("<H", 1)),
        encode_request(Command.READ_OUTPUTS, struct.pack("<H", IDENTITY.max_payload)),
        encode_request(Command.READ_OUTPUTS, struct.pack("<H", 0)),
        encode_request(Command.READ_COUNTERS, struct.pack("<H", 4)),
        encode_request(Command.READ_COUNTERS, struct.pack("<H", 10)),   # only 6 left: stall
        encode_request(Command.READ_OUTPUTS, struct.pack("<H", 15)),    # exactly what is left
    ]
    responses, _, _ = assert_same_as_model(bursts, readable)
    short = decode_response(responses[4])
    assert short.status == Status.TARGET_TIMEOUT and short.payload == bytes(range(4, 10))


def test_refusals_are_reported_and_never_executed():
    good = encode_request(Command.WRITE_WEIGHTS, b"\x01\x02\x03")
    bursts = [
        encode_request(0x7E, b"abc"),                                        # unknown command
        encode_request(Command.IDENTIFY, b"x"),                              # bad length
        encode_request(Command.START, b"\x00"),
        encode_request(Command.READ_OUTPUTS, b"\x01"),
        encode_request(Command.READ_OUTPUTS, struct.pack("<H", IDENTITY.max_payload + 1)),
        encode_request(Command.WRITE_INPUTS, bytes(IDENTITY.max_payload + 1)),  # too long
        good[:-1],                                                           # truncated
        good[:1],
        bytes([REQUEST_SYNC]) + b"\x11",
        b"\x00\x13\xff" + good,                                              # noise, then a frame
    ]
    responses, written, starts = assert_same_as_model(bursts, {"outputs": b"\x55" * 4})
    statuses = [decode_response(r).status for r in responses]
    assert statuses == [Status.UNKNOWN_COMMAND] + [Status.BAD_LENGTH] * 5 + \
        [Status.TIMEOUT] * 3 + [Status.OK]
    assert written["weights"] == b"\x01\x02\x03" and not written["inputs"] and starts == 0


def test_every_single_bit_corruption_is_refused():
    """Flip each bit of a WRITE and a START frame in turn: every one is answered with an error
    (mostly BAD_CHECKSUM; a corrupted sync or length gives silence or a timeout) and nothing
    reaches the design."""
    frames = [encode_request(Command.WRITE_CONFIG, b"\x5a\x00\xff"), encode_request(Command.START)]
    bursts = []
    for frame in frames:
        for position in range(1, len(frame)):  # a corrupted sync byte is just line noise
            for bit in range(8):
                corrupted = bytearray(frame)
                corrupted[position] ^= 1 << bit
                bursts.append(bytes(corrupted))
    responses, written, starts = assert_same_as_model(bursts)
    for r in responses:
        assert decode_response(r).status in (Status.BAD_CHECKSUM, Status.BAD_LENGTH,
                                             Status.TIMEOUT)
    assert written == {name: b"" for name in WRITE_CHANNELS.values()} and starts == 0


def test_random_frames_match_the_model():
    rng = np.random.default_rng(1234)
    codes = [int(c) for c in Command] + [0x00, 0x42, 0xFF]
    bursts = []
    for _ in range(40):
        code = codes[rng.integers(len(codes))]
        if code in READ_CHANNELS and rng.random() < 0.8:
            payload = struct.pack("<H", int(rng.integers(0, 8)))
        else:
            payload = bytes(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8))
        frame = bytearray(encode_request(code, payload))
        if rng.random() < 0.2:
            frame[rng.integers(1, len(frame))] ^= 1 << int(rng.integers(8))
        if rng.random() < 0.1:
            frame = frame[:rng.integers(1, len(frame))]
        bursts.append(bytes(frame))
    readable = {"outputs": bytes(rng.integers(0, 256, 60, dtype=np.uint8)),
                "counters": bytes(rng.integers(0, 256, 60, dtype=np.uint8))}
    assert_same_as_model(bursts, readable, rx_gap=1,
                         tx_ready=lambda cycle: int(cycle % 3 != 1))  # back-pressure


def test_uart_error_mid_frame_is_a_line_error():
    frame = encode_request(Command.WRITE_INPUTS, b"\x01\x02\x03\x04")
    responses, written, _ = rtl_bursts([frame, frame], error_at=(0, 5))
    assert responses[0] == encode_response(Status.LINE_ERROR, Command.WRITE_INPUTS)
    assert responses[1] == encode_response(Status.OK, Command.WRITE_INPUTS)
    assert written["inputs"] == b"\x01\x02\x03\x04"


def test_a_stalled_design_times_out_a_write():
    frame = encode_request(Command.WRITE_CONFIG, b"\x01\x02")
    responses, written, _ = rtl_bursts([frame], write_ready=0)
    assert responses[0] == encode_response(Status.TARGET_TIMEOUT, Command.WRITE_CONFIG)
    assert written["config"] == b""


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="max_payload"):
        CommandDispatcher(identity=Identity(1, 1, 1), frame_timeout=10, target_timeout=10)
    with pytest.raises(ValueError, match="frame_timeout"):
        CommandDispatcher(identity=IDENTITY, frame_timeout=1, target_timeout=10)
