# amaranth: UnusedElaboratable=no
"""UART receiver and transmitter against the line model (``boards.protocol``)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.protocol import UARTLineDecoder, clocks_per_bit, uart_decode, uart_encode
from boards.uart import UARTReceiver, UARTTransmitter

CLK = 1_000_000


def rtl_transmit(data: bytes, cpb: int, *, gaps=None):
    """Offer ``data`` to the transmitter (``gaps[i]`` idle cycles before byte i); return the
    line at every cycle and the cycles at which each byte was accepted."""
    dut = UARTTransmitter(clk_freq=CLK, baud=CLK / cpb)
    line, accepted = [], []

    async def bench(ctx):
        cycle = 0
        for i, byte in enumerate(data):
            for _ in range(gaps[i] if gaps is not None else 0):
                line.append(ctx.get(dut.tx))
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i_stream.payload, byte)
            ctx.set(dut.i_stream.valid, 1)
            while True:
                line.append(ctx.get(dut.tx))
                ready = ctx.get(dut.i_stream.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    accepted.append(cycle - 1)
                    break
            ctx.set(dut.i_stream.valid, 0)
        for _ in range(10 * cpb + 2):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1 / CLK)
    sim.add_testbench(bench)
    sim.run()
    return np.array(line, dtype=np.uint8), accepted


def rtl_receive(line, cpb: int, *, ready=None):
    """Drive ``line`` into the receiver, one level per cycle; return its events (bytes and
    ``"framing"``/``"overrun"``) and the cycle each byte was offered."""
    dut = UARTReceiver(clk_freq=CLK, baud=CLK / cpb)
    events, offered = [], []
    extra = 3 * (10 * cpb)

    async def bench(ctx):
        samples = list(line) + [1] * extra
        for cycle, level in enumerate(samples):
            ctx.set(dut.rx, int(level))
            r = 1 if ready is None else ready(cycle)
            ctx.set(dut.o_stream.ready, r)
            await ctx.delay(0)
            if ctx.get(dut.o_stream.valid):
                if r:
                    events.append(ctx.get(dut.o_stream.payload))
                    offered.append(cycle)
            if ctx.get(dut.framing_error):
                events.append("framing")
            if ctx.get(dut.overrun):
                events.append("overrun")
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1 / CLK)
    sim.add_testbench(bench)
    sim.run()
    return events, offered


def cases(rng):
    """Edge-case payloads: every byte value once, the bit-pattern extremes, random bytes."""
    yield bytes(range(256))
    yield bytes([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0xFE, 0x7F])
    yield bytes(rng.integers(0, 256, 64, dtype=np.uint8))


@pytest.mark.parametrize("cpb", [4, 5, 16])
def test_transmitter_waveform_is_exactly_the_model(cpb):
    rng = np.random.default_rng(cpb)
    data = b"".join(cases(rng)) if cpb == 4 else bytes(rng.integers(0, 256, 40, dtype=np.uint8))
    line, accepted = rtl_transmit(data, cpb)
    start = accepted[0] + 1  # the start bit begins the cycle after acceptance
    expected = uart_encode(data, cpb)
    assert np.all(line[:start] == 1)
    np.testing.assert_array_equal(line[start:start + len(expected)], expected)
    assert np.all(line[start + len(expected):] == 1)
    # back to back: one byte every 10 bit periods
    assert np.diff(accepted).tolist() == [10 * cpb] * (len(data) - 1)


def test_transmitter_with_idle_gaps_decodes_to_the_data():
    rng = np.random.default_rng(1)
    data = bytes(rng.integers(0, 256, 30, dtype=np.uint8))
    gaps = rng.integers(0, 25, len(data)).tolist()
    line, _ = rtl_transmit(data, 7, gaps=gaps)
    assert uart_decode(line, 7) == list(data)


@pytest.mark.parametrize("cpb", [4, 7, 16])
def test_receiver_decodes_the_model_line(cpb):
    rng = np.random.default_rng(100 + cpb)
    data = b"".join(cases(rng))
    line = uart_encode(data, cpb, idle_before=3, idle_after=2)
    events, offered = rtl_receive(line, cpb)
    assert events == list(data)
    # latency: offered 3 + cpb//2 + 9*cpb cycles after the first start edge
    assert offered[0] == 3 + 3 + cpb // 2 + 9 * cpb


@pytest.mark.parametrize("rate_error", [-0.03, 0.03])
def test_receiver_tolerates_a_transmitter_3_percent_off(rate_error):
    cpb = 16
    data = bytes(np.random.default_rng(7).integers(0, 256, 40, dtype=np.uint8))
    line = uart_encode(data, cpb * (1 + rate_error), idle_before=5, idle_after=5)
    events, _ = rtl_receive(line, cpb)
    assert events == list(data)


def test_receiver_matches_the_model_on_noisy_lines():
    """Random lines with glitches, framing errors and rate errors: the receiver's events are
    exactly the model decoder's (delayed by the synchronizer)."""
    rng = np.random.default_rng(2024)
    framing_errors = 0
    for trial in range(6):
        cpb = int(rng.choice([4, 6, 9]))
        pieces = []
        for _ in range(8):
            kind = rng.integers(0, 4)
            if kind == 0:  # a short glitch: shorter than half a bit, not a start bit
                pieces.append(np.ones(int(rng.integers(1, 6)), np.uint8))
                pieces.append(np.zeros(int(rng.integers(1, cpb // 2)), np.uint8))
                pieces.append(np.ones(cpb, np.uint8))
            else:
                n = int(rng.integers(1, 4))
                stop = (rng.random(n) > 0.25).astype(int) if kind == 1 else None
                period = cpb * (1 + rng.uniform(-0.02, 0.02))
                pieces.append(uart_encode(bytes(rng.integers(0, 256, n, dtype=np.uint8)),
                                          period, idle_before=int(rng.integers(0, 4)),
                                          stop_bits=stop))
                if kind == 1:  # after a framing error the line must go high again
                    pieces.append(np.ones(2 * cpb, np.uint8))
        line = np.concatenate(pieces)
        events, _ = rtl_receive(line, cpb)
        expected = UARTLineDecoder(cpb).feed(np.concatenate([line, np.ones(30 * cpb, np.uint8)]))
        assert events == expected, f"trial {trial}"
        framing_errors += expected.count("framing")
    assert framing_errors > 0  # the lines did exercise the error path


def test_receiver_framing_error_drops_the_byte():
    cpb = 5
    line = np.concatenate([uart_encode(b"\x3c", cpb, stop_bits=[0]),
                           np.zeros(3 * cpb, np.uint8),   # a break: still low
                           np.ones(2 * cpb, np.uint8),
                           uart_encode(b"\xc3", cpb)])
    events, _ = rtl_receive(line, cpb)
    assert events == ["framing", 0xC3]


def test_receiver_overrun_keeps_the_first_byte():
    cpb = 4
    line = uart_encode(b"\x11\x22\x33", cpb, idle_before=2)
    stall_until = len(line) + 10

    events, _ = rtl_receive(line, cpb, ready=lambda cycle: int(cycle >= stall_until))
    assert events == ["overrun", "overrun", 0x11]


def test_baud_rates_out_of_range_are_refused():
    assert clocks_per_bit(12e6, 115200) == 104
    assert clocks_per_bit(25e6, 115200) == 217
    with pytest.raises(ValueError, match="too fast"):
        UARTReceiver(clk_freq=12e6, baud=4e6)
    with pytest.raises(ValueError, match="off the nearest rate"):
        UARTTransmitter(clk_freq=1e6, baud=1e6 / 4.5)
    with pytest.raises(ValueError, match="positive"):
        clocks_per_bit(12e6, 0)
