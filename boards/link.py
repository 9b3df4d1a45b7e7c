"""The host link: UART receiver and transmitter around the command dispatcher."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from boards.dispatcher import CommandDispatcher
from boards.protocol import READ_CHANNELS, WRITE_CHANNELS, Identity, clocks_per_bit
from boards.uart import UARTReceiver, UARTTransmitter

__all__ = ["HostLink", "DEFAULT_BAUD", "DEFAULT_MAX_PAYLOAD"]

DEFAULT_BAUD = 115200
#: One iCE40 block RAM (512 x 8 bits) of frame buffer.
DEFAULT_MAX_PAYLOAD = 512


class HostLink(wiring.Component):
    """A serial line in, a serial line out, and the design's command streams.

    Composes ``UARTReceiver`` -> ``CommandDispatcher`` -> ``UARTTransmitter``; the design side
    is the dispatcher's (``config_stream``, ``weights_stream``, ``inputs_stream``, ``start``
    out; ``outputs_stream``, ``counters_stream`` in). Latency and throughput are those of the
    UART (one byte per 10 bit periods each way) plus the dispatcher's.
    Model: ``boards.protocol`` (``uart_encode``/``uart_decode`` and ``ReferenceDevice``).

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.
    baud : float
        Baud rate of the serial line.
    max_payload : int
        Largest payload of a frame, in bytes (the frame buffer's size).
    target_info : bytes
        The design's own description, appended to the ``IDENTIFY`` answer.
    frame_timeout : float, optional
        Seconds without a byte after which a frame is abandoned (at least 20 byte times;
        default: 20 ms or 20 byte times, whichever is longer).
    target_timeout : float
        Seconds the design may stall a write or read command.

    Members
    -------
    rx : ``In(1)``
        Serial line from the host.
    tx : ``Out(1)``
        Serial line to the host.
    config_stream, weights_stream, inputs_stream : ``Out(stream.Signature(8))``
    outputs_stream, counters_stream : ``In(stream.Signature(8))``
    start : ``Out(1)``
    """

    def __init__(self, *, clk_freq: float, baud: float = DEFAULT_BAUD,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, target_info: bytes = b"",
                 frame_timeout: float | None = None, target_timeout: float = 1.0):
        self._clocks_per_bit = clocks_per_bit(clk_freq, baud)
        byte_cycles = 10 * self._clocks_per_bit
        if frame_timeout is None:
            frame_timeout = max(0.02, 20 * byte_cycles / clk_freq)
        frame_cycles = round(frame_timeout * clk_freq)
        if frame_cycles < 20 * byte_cycles:
            raise ValueError(f"frame timeout {frame_timeout:g} s is shorter than 20 bytes at "
                             f"{baud:g} baud; allowed: at least {20 * byte_cycles / clk_freq:g} s")
        target_cycles = round(target_timeout * clk_freq)
        if target_cycles < 2:
            raise ValueError(f"target timeout {target_timeout!r} s is under two clock cycles")
        self._identity = Identity(max_payload=max_payload, clk_freq=round(clk_freq),
                                  baud=round(baud), target_info=bytes(target_info))
        self._frame_cycles = frame_cycles
        self._target_cycles = target_cycles
        members = {"rx": In(1, init=1), "tx": Out(1, init=1), "start": Out(1)}
        for name in WRITE_CHANNELS.values():
            members[f"{name}_stream"] = Out(stream.Signature(8))
        for name in READ_CHANNELS.values():
            members[f"{name}_stream"] = In(stream.Signature(8))
        super().__init__(members)
        self._clk_freq = clk_freq
        self._baud = baud

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def clocks_per_bit(self) -> int:
        return self._clocks_per_bit

    @property
    def frame_timeout_cycles(self) -> int:
        return self._frame_cycles

    @property
    def target_timeout_cycles(self) -> int:
        return self._target_cycles

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(clk_freq=self._clk_freq, baud=self._baud)
        m.submodules.transmitter = transmitter = UARTTransmitter(clk_freq=self._clk_freq,
                                                                 baud=self._baud)
        m.submodules.dispatcher = dispatcher = CommandDispatcher(
            identity=self._identity, frame_timeout=self._frame_cycles,
            target_timeout=self._target_cycles)

        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            dispatcher.rx_error.eq(receiver.framing_error | receiver.overrun),
            self.start.eq(dispatcher.start),
        ]
        wiring.connect(m, receiver.o_stream, dispatcher.rx_stream)
        wiring.connect(m, dispatcher.tx_stream, transmitter.i_stream)
        for name in (*WRITE_CHANNELS.values(), *READ_CHANNELS.values()):
            wiring.connect(m, getattr(dispatcher, f"{name}_stream"),
                           wiring.flipped(getattr(self, f"{name}_stream")))
        return m
