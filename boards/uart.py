"""UART receiver and transmitter (8N1) with stream interfaces.

Both take the clock frequency and the baud rate and derive the bit period
(``boards.protocol.clocks_per_bit``: at least 4 clocks per bit, at most 2 % rate error).
Model: ``boards.protocol.uart_encode`` / ``boards.protocol.uart_decode``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from boards.protocol import clocks_per_bit as _clocks_per_bit

__all__ = ["UARTTransmitter", "UARTReceiver"]


class _BitTimedComponent(wiring.Component):
    """A component whose timing is ``clocks_per_bit``, derived from ``clk_freq`` and ``baud``."""

    def __init__(self, members: dict, *, clk_freq: float, baud: float):
        self._clocks_per_bit = _clocks_per_bit(clk_freq, baud)
        super().__init__(members, src_loc_at=1)

    @property
    def clocks_per_bit(self) -> int:
        """Clock cycles per bit period on the line."""
        return self._clocks_per_bit


class UARTTransmitter(_BitTimedComponent):
    """Send each byte of a stream as an 8N1 frame.

    Latency: the start bit begins on the line the cycle after a byte is accepted.
    Throughput: one byte per ``10 * clocks_per_bit`` cycles; a byte offered in time is
    accepted in the last cycle of the previous stop bit, so frames follow back to back.
    Model: ``boards.protocol.uart_encode``.

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.
    baud : float
        Baud rate.

    Members
    -------
    i_stream : ``In(stream.Signature(8))``
        Bytes to send.
    tx : ``Out(1)``
        The serial line (high when idle).
    """

    def __init__(self, *, clk_freq: float, baud: float):
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        }, clk_freq=clk_freq, baud=baud)

    def elaborate(self, platform):
        m = Module()
        cpb = self._clocks_per_bit

        # The frame being sent, least significant bit on the line; shifted in with 1s.
        shifter = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))
        count = Signal(range(cpb))
        last_cycle_of_bit = count == cpb - 1

        m.d.comb += [
            self.tx.eq(shifter[0]),
            self.i_stream.ready.eq((bits_left == 0) | ((bits_left == 1) & last_cycle_of_bit)),
        ]
        with m.If(bits_left != 0):
            m.d.sync += count.eq(Mux(last_cycle_of_bit, 0, count + 1))
            with m.If(last_cycle_of_bit):
                m.d.sync += [
                    shifter.eq(Cat(shifter[1:], Const(1, 1))),
                    bits_left.eq(bits_left - 1),
                ]
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [
                shifter.eq(Cat(Const(0, 1), self.i_stream.payload, Const(1, 1))),
                bits_left.eq(10),
                count.eq(0),
            ]
        return m


class UARTReceiver(_BitTimedComponent):
    """Receive 8N1 frames from a serial line into a stream of bytes.

    The line goes through a two-flip-flop synchronizer. A low level while idle starts a frame
    if it is still low half a bit later (shorter glitches are ignored); each data bit and the
    stop bit are sampled one bit period apart from there, i.e. in the middle of the bit.
    A stop bit of 0 is a framing error: the byte is dropped, ``framing_error`` pulses for one
    cycle and nothing is received until the line is high again. A byte completed while the
    previous one has not been taken is dropped and ``overrun`` pulses.

    Latency: a byte is offered ``3 + clocks_per_bit // 2 + 9 * clocks_per_bit`` cycles after
    the falling edge of its start bit reaches ``rx`` (the middle of its stop bit, plus two
    cycles of synchronizer and one of output register). Throughput: one byte per frame on the
    line (10 bit periods), with a one-byte holding register.
    Model: ``boards.protocol.UARTLineDecoder`` (same sampling instants).

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.
    baud : float
        Baud rate.

    Members
    -------
    rx : ``In(1)``
        The serial line (asynchronous; high when idle).
    o_stream : ``Out(stream.Signature(8))``
        Received bytes.
    framing_error : ``Out(1)``
        One-cycle pulse: a frame ended with a stop bit of 0.
    overrun : ``Out(1)``
        One-cycle pulse: a byte was dropped because ``o_stream`` still held the previous one.
    """

    #: Cycles the input synchronizer adds.
    SYNCHRONIZER_LATENCY = 2

    def __init__(self, *, clk_freq: float, baud: float):
        super().__init__({
            "rx": In(1, init=1),
            "o_stream": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        }, clk_freq=clk_freq, baud=baud)

    def elaborate(self, platform):
        m = Module()
        cpb = self._clocks_per_bit
        half = cpb // 2

        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1)

        # `count` reaches cpb - 1 at each sampling instant: half a bit after the start edge
        # (the start bit is checked), then once per bit period.
        count = Signal(range(cpb))
        sample = count == cpb - 1
        # Data bits shift in at the top behind a marker 1: when the marker has reached bit 0,
        # eight bits are in and the next sample is the stop bit.
        shifter = Signal(9, reset_less=True)

        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        m.d.sync += count.eq(Mux(sample, 0, count + 1))

        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += count.eq(cpb - half)
                with m.If(~line):
                    m.next = "START"
            with m.State("START"):
                with m.If(sample):
                    m.d.sync += shifter.eq(1 << 8)
                    m.next = "DATA"
                    with m.If(line):
                        m.next = "IDLE"
            with m.State("DATA"):
                with m.If(sample & ~shifter[0]):
                    m.d.sync += shifter.eq(Cat(shifter[1:], line))
                with m.If(sample & shifter[0]):
                    with m.If(line):
                        with m.If(self.o_stream.valid & ~self.o_stream.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o_stream.payload.eq(shifter[1:]),
                                         self.o_stream.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
