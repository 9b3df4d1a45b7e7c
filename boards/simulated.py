"""A simulated board behind a serial-port interface, for the host driver.

``SimulatedSerial`` is a transport for ``boards.host.BoardClient``: the bytes the driver
writes are turned into UART line levels (``boards.protocol.uart_encode`` timing, one level
per clock) on the design's ``rx`` input, and the design's ``tx`` output is decoded sample by
sample with ``boards.protocol.UARTLineDecoder``. Time passes only while the driver waits
for bytes; timeouts are in simulated seconds.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from boards.protocol import UARTLineDecoder, clocks_per_bit

__all__ = ["SimulatedSerial"]


class SimulatedSerial:
    """A serial port wired to a simulated design's ``rx``/``tx`` (Amaranth simulator).

    Parameters
    ----------
    design
        The elaboratable to simulate (its ``sync`` domain is clocked at ``clk_freq``).
    rx, tx
        The design's serial input and output signals.
    clk_freq, baud : float
        Clock frequency and baud rate (the bit period is ``clocks_per_bit(clk_freq, baud)``).
    testbenches
        More background testbenches (async functions of ``ctx``), e.g. a model of the rest
        of the board.
    """

    def __init__(self, design, *, rx, tx, clk_freq: float, baud: float, testbenches=()):
        self._cpb = clocks_per_bit(clk_freq, baud)
        self._period = 1 / clk_freq
        self._rx, self._tx = rx, tx
        self._to_device: deque[int] = deque()   # line levels still to drive, one per bit
        self._from_device = bytearray()
        self.line_errors = 0                    # framing errors seen on tx
        self.cycles = 0
        self._decoder = UARTLineDecoder(self._cpb)
        self._sim = Simulator(design)
        self._sim.add_clock(self._period)
        self._sim.add_testbench(self._drive_rx, background=True)
        self._sim.add_testbench(self._watch_tx, background=True)
        for bench in testbenches:
            self._sim.add_testbench(bench, background=True)
        self._now = 0.0

    async def _drive_rx(self, ctx):
        ctx.set(self._rx, 1)
        while True:
            if self._to_device:
                ctx.set(self._rx, self._to_device.popleft())
                await ctx.tick().repeat(self._cpb)
            else:
                ctx.set(self._rx, 1)
                await ctx.tick()

    async def _watch_tx(self, ctx):
        async for _, _, level in ctx.tick().sample(self._tx):
            self.cycles += 1
            event = self._decoder.push(level)
            if event == "framing":
                self.line_errors += 1
            elif event is not None:
                self._from_device.append(event)

    def _run(self, seconds: float) -> None:
        self._now += seconds
        self._sim.run_until(self._now)

    # --- the transport interface ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        for byte in bytes(data):
            self._to_device.extend([0, *((byte >> k) & 1 for k in range(8)), 1])

    def read(self, count: int, timeout: float) -> bytes:
        byte_time = 10 * self._cpb * self._period
        waited = 0.0
        while len(self._from_device) < count and waited < timeout:
            self._run(byte_time)
            waited += byte_time
        out = bytes(self._from_device[:count])
        del self._from_device[:count]
        return out

    def discard_input(self) -> None:
        self._from_device.clear()

    def close(self) -> None:
        pass

    def idle(self, seconds: float) -> None:
        """Let simulated time pass with nothing sent."""
        self._run(seconds)
