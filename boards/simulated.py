"""A simulated board behind a serial-port interface, for the host driver.

``SimulatedSerial`` is a transport for ``boards.host.BoardClient``: the bytes the driver
writes are turned into UART line levels (``boards.protocol.uart_encode`` timing, one level
per clock) on the design's ``rx`` input, and the design's ``tx`` output is decoded sample by
sample with ``boards.protocol.UARTLineDecoder``. Time passes only while the driver waits
for bytes; timeouts are in simulated seconds.
"""

from __future__ import annotations

import socket
import threading
from collections import deque

from amaranth.sim import Simulator

from boards.protocol import UARTLineDecoder, clocks_per_bit

__all__ = ["SimulatedSerial", "TcpBridge"]


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

    @property
    def sending(self) -> bool:
        """Whether bits written are still being driven onto the design's line."""
        return bool(self._to_device)

    def run_for(self, seconds: float) -> bytes:
        """Let ``seconds`` of simulated time pass; return every byte the design sent."""
        self._run(seconds)
        out = bytes(self._from_device)
        self._from_device.clear()
        return out


class TcpBridge:
    """Serve a ``SimulatedSerial`` on a local TCP port, so that anything that opens a serial
    port through pyserial (``socket://127.0.0.1:PORT``, e.g. ``mulfree run-layer --backend
    board --port ...``) talks to the simulated board.

    Simulated time runs while bytes are on their way in, and for ``linger`` simulated seconds
    after the last byte in either direction (long enough for a command to finish).
    """

    def __init__(self, serial: SimulatedSerial, *, linger: float):
        self._serial = serial
        self._linger = linger
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)

    def _serve(self):
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                continue
            with connection:
                self._relay(connection)

    def _relay(self, connection):
        connection.settimeout(0.002)
        slice_seconds = self._linger / 50
        busy = 0.0
        while not self._stop.is_set():
            try:
                data = connection.recv(4096)
                if not data:
                    return
                self._serial.write(data)
                busy = self._linger
            except socket.timeout:
                pass
            except OSError:
                return
            if busy > 0 or self._serial.sending:
                out = self._serial.run_for(slice_seconds)
                busy -= slice_seconds
                if out:
                    connection.sendall(out)
                    busy = self._linger
