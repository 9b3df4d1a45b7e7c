"""Board tops: the host link wired to a design, and that pair wired to a board's pins.

A *target* is the design behind the link: a ``wiring.Component`` whose members are the
link's design side, flipped (``TARGET_SIGNATURE``): ``config_stream``, ``weights_stream``,
``inputs_stream`` (``In(stream.Signature(8))``), ``outputs_stream``, ``counters_stream``
(``Out(stream.Signature(8))``) and ``start`` (``In(1)``). It may describe itself to the host
with a ``target_info`` attribute (bytes, appended to the ``IDENTIFY`` answer).
"""

import math

from amaranth import Elaboratable, Module, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from boards.link import DEFAULT_BAUD, DEFAULT_MAX_PAYLOAD, HostLink
from boards.protocol import READ_CHANNELS, WRITE_CHANNELS

__all__ = ["TARGET_SIGNATURE", "LinkLoopback", "BoardCore", "Heartbeat", "BoardTop"]

TARGET_SIGNATURE = wiring.Signature({
    **{f"{name}_stream": In(stream.Signature(8)) for name in WRITE_CHANNELS.values()},
    **{f"{name}_stream": Out(stream.Signature(8)) for name in READ_CHANNELS.values()},
    "start": In(1),
})


class LinkLoopback(wiring.Component):
    """The link self-test design: what is written comes back.

    Input bytes come back on the output stream and configuration bytes on the counter stream,
    each through a FIFO; weight bytes are taken and dropped; ``start`` is ignored. Built on a
    board, it checks the serial link end to end before the accelerator is involved.
    Latency: 1 cycle through each FIFO. Throughput: one byte per cycle.
    Model: the identity (``read_outputs(n) == the last n bytes written to inputs``).
    """

    target_info = b"link-loopback"

    def __init__(self, *, depth: int = 512):
        self._depth = depth
        super().__init__(TARGET_SIGNATURE)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inputs_fifo = inputs_fifo = SyncFIFOBuffered(width=8, depth=self._depth)
        m.submodules.config_fifo = config_fifo = SyncFIFOBuffered(width=8, depth=64)
        for source, fifo, sink in ((self.inputs_stream, inputs_fifo, self.outputs_stream),
                                   (self.config_stream, config_fifo, self.counters_stream)):
            m.d.comb += [fifo.w_data.eq(source.payload), fifo.w_en.eq(source.valid),
                         source.ready.eq(fifo.w_rdy),
                         sink.payload.eq(fifo.r_data), sink.valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(sink.ready)]
        m.d.comb += self.weights_stream.ready.eq(1)
        return m


class BoardCore(wiring.Component):
    """The host link and a target, between two serial pins (what runs on the board, without
    the board: this is what the end-to-end tests simulate).

    Latency and throughput: those of ``HostLink`` and the target.
    Model: ``boards.protocol.ReferenceDevice`` in front of the target's own model.

    Parameters
    ----------
    target : wiring.Component
        The design behind the link (``TARGET_SIGNATURE``).
    clk_freq : float
        Clock frequency in Hz.
    baud, max_payload, frame_timeout, target_timeout
        Passed to ``HostLink``.

    Members
    -------
    rx : ``In(1)``
    tx : ``Out(1)``
    activity : ``Out(1)``
        High while the host line is low (a start bit or data), for an LED.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    activity: Out(1)

    def __init__(self, target, *, clk_freq: float, baud: float = DEFAULT_BAUD,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, frame_timeout: float | None = None,
                 target_timeout: float = 1.0):
        if not isinstance(target, wiring.Component) or target.signature != TARGET_SIGNATURE:
            raise TypeError(f"target must be a component with the members of "
                            f"TARGET_SIGNATURE, not {target!r}")
        super().__init__()
        self.target = target
        self.link = HostLink(clk_freq=clk_freq, baud=baud, max_payload=max_payload,
                             target_info=getattr(target, "target_info", b""),
                             frame_timeout=frame_timeout, target_timeout=target_timeout)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.target = target = self.target
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), self.activity.eq(~self.rx),
                     target.start.eq(link.start)]
        for name in (*WRITE_CHANNELS.values(), *READ_CHANNELS.values()):
            wiring.connect(m, getattr(link, f"{name}_stream"), getattr(target, f"{name}_stream"))
        return m


class Heartbeat(wiring.Component):
    """An LED level that blinks about once a second: the design is alive.

    The top bit of a free-running counter: the period is the power of two of clock cycles
    nearest to one second (1.4 s at 12 MHz, 0.67 s at 25 MHz), high for its second half.

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.

    Members
    -------
    led : ``Out(1)``
    """

    led: Out(1)

    def __init__(self, *, clk_freq: float):
        self._bits = max(1, round(math.log2(clk_freq)))
        super().__init__()

    @property
    def period(self) -> int:
        """Clock cycles per blink."""
        return 1 << self._bits

    def elaborate(self, platform):
        m = Module()
        count = Signal(self._bits)
        m.d.sync += count.eq(count + 1)
        m.d.comb += self.led.eq(count[-1])
        return m


class BoardTop(Elaboratable):
    """A target behind the host link on a board: the UART pins, and two LEDs when the board
    has them (LED 0 blinks about once a second: the design is alive; LED 1 lights while the
    host line is busy).

    Parameters
    ----------
    target_factory : callable
        Returns the target (called once, at elaboration).
    baud, max_payload
        Passed to ``BoardCore``.
    """

    def __init__(self, target_factory, *, baud: float = DEFAULT_BAUD,
                 max_payload: int = DEFAULT_MAX_PAYLOAD):
        self._target_factory = target_factory
        self._baud = baud
        self._max_payload = max_payload

    def elaborate(self, platform):
        try:
            uart = platform.request("uart", 0, dir="-")
        except ResourceError:
            raise ValueError(f"{type(platform).__name__} has no 'uart' resource in "
                             "amaranth-boards; the host link needs a serial port") from None
        m = Module()
        clk_freq = platform.default_clk_frequency
        m.submodules.core = core = BoardCore(self._target_factory(), clk_freq=clk_freq,
                                             baud=self._baud, max_payload=self._max_payload)
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buffer.i), tx_buffer.o.eq(core.tx)]

        leds = []
        for number in range(2):
            try:
                leds.append(platform.request("led", number, dir="-"))
            except ResourceError:  # the board has fewer LEDs
                break
        m.submodules.heartbeat = heartbeat = Heartbeat(clk_freq=clk_freq)
        lit = [heartbeat.led, core.activity]
        for number, (led, level) in enumerate(zip(leds, lit)):
            buffer = io.Buffer("o", led)
            m.submodules[f"led{number}_buffer"] = buffer
            m.d.comb += buffer.o.eq(level)
        return m
