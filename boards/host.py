"""The host side of the link: a driver that speaks ``boards.protocol`` over a serial port.

``BoardClient`` works over any *transport* with ``write(data)``, ``read(count, timeout)``
(which may return fewer bytes on timeout), ``discard_input()`` and ``close()``:
``SerialTransport`` is a real port (pyserial; any pyserial URL such as ``/dev/ttyUSB1``,
``COM3`` or ``socket://host:port``), ``boards.simulated.SimulatedSerial`` the simulated board.
"""

from __future__ import annotations

import struct

from boards.protocol import (
    READ_CHANNELS,
    REFUSED,
    WRITE_CHANNELS,
    Command,
    Identity,
    ProtocolError,
    Response,
    Status,
    decode_response,
    encode_request,
    response_length,
)

__all__ = ["BoardError", "BoardClient", "SerialTransport", "check_board"]


class BoardError(Exception):
    """The board refused a request, answered with an error, or did not answer."""


class SerialTransport:
    """A serial port through pyserial (8N1, no flow control)."""

    def __init__(self, port: str, baud: int):
        import serial  # imported here so that the rest of mulfree works without pyserial

        try:
            self._port = serial.serial_for_url(port, baudrate=baud, timeout=1.0)
        except (serial.SerialException, ValueError) as exc:
            raise ValueError(f"cannot open serial port {port!r}: {exc}") from None

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def read(self, count: int, timeout: float) -> bytes:
        self._port.timeout = timeout
        return bytes(self._port.read(count))

    def discard_input(self) -> None:
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._port.close()


class BoardClient:
    """Requests to a mulfree board: identify, echo, write streams, start, read streams.

    Large writes and reads are split into frames of at most the board's ``max_payload``. A
    request the board refuses (``boards.protocol.REFUSED``: it was not executed) is sent
    again up to ``retries`` times; any other error raises ``BoardError``.

    Parameters
    ----------
    transport
        The byte pipe to the board (see the module docstring).
    timeout : float
        Seconds to wait for each response.
    retries : int
        How many times a refused request is sent again.
    """

    def __init__(self, transport, *, timeout: float = 3.0, retries: int = 2):
        self._transport = transport
        self._timeout = timeout
        self._retries = retries
        self._identity: Identity | None = None
        self.refusals = 0  # refused requests seen (each one was sent again or raised)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- one request ----------------------------------------------------------------------------

    def _receive(self) -> Response:
        header = self._transport.read(5, self._timeout)
        if len(header) < 5:
            raise BoardError(f"no answer from the board within {self._timeout:g} s "
                             f"(got {len(header)} bytes); is it programmed, and the baud rate "
                             "right?")
        try:
            rest = response_length(header) - 5
        except ProtocolError as exc:
            self._transport.discard_input()
            raise BoardError(f"the board's answer is not a mulfree response: {exc}") from None
        body = self._transport.read(rest, self._timeout)
        if len(body) < rest:
            raise BoardError(f"the board's answer stopped after {5 + len(body)} of "
                             f"{5 + rest} bytes")
        try:
            return decode_response(header + body)
        except ProtocolError as exc:
            raise BoardError(f"the board's answer was corrupted on the line: {exc}") from None

    def exchange(self, command: int, payload: bytes = b"") -> Response:
        """Send one request and return its response, sending it again while the board refuses
        it (up to ``retries`` times). ``BoardError`` if it is still refused or the answer is
        unreadable; other statuses are returned."""
        frame = encode_request(command, payload)
        for attempt in range(self._retries + 1):
            self._transport.write(frame)
            response = self._receive()
            if response.status in REFUSED:
                self.refusals += 1
                if attempt < self._retries:
                    continue
                raise BoardError(f"{_name(command)} was refused by the board "
                                 f"({response.status_name}, not executed)")
            if response.command != command:
                raise BoardError(f"the board answered command 0x{response.command:02x} to "
                                 f"0x{int(command):02x}")
            return response
        raise AssertionError("unreachable")

    def request(self, command: int, payload: bytes = b"") -> Response:
        """Send one request and return its response; ``BoardError`` unless its status is OK."""
        response = self.exchange(command, payload)
        if response.status != Status.OK:
            raise BoardError(f"{_name(command)} failed: the board answered "
                             f"{response.status_name}")
        return response

    # --- commands -------------------------------------------------------------------------------

    def identify(self) -> Identity:
        """The board's ``Identity`` (asked once, then remembered)."""
        if self._identity is None:
            try:
                self._identity = Identity.decode(self.request(Command.IDENTIFY).payload)
            except ProtocolError as exc:
                raise BoardError(str(exc)) from None
        return self._identity

    def echo(self, data: bytes) -> bytes:
        return self.request(Command.ECHO, data).payload

    def start(self) -> None:
        self.request(Command.START)

    def write(self, command: Command, data: bytes) -> None:
        """Pass ``data`` to the design stream of a write command, in frames."""
        if command not in WRITE_CHANNELS:
            raise ValueError(f"{_name(command)} is not a write command")
        size = self.identify().max_payload
        data = bytes(data)
        for offset in range(0, len(data), size):
            self.request(command, data[offset:offset + size])

    def read(self, command: Command, count: int) -> bytes:
        """Take ``count`` bytes from the design stream of a read command, in frames."""
        if command not in READ_CHANNELS:
            raise ValueError(f"{_name(command)} is not a read command")
        size = self.identify().max_payload
        out = bytearray()
        while len(out) < count:
            n = min(size, count - len(out))
            response = self.exchange(command, struct.pack("<H", n))
            out += response.payload
            if response.status != Status.OK:
                raise BoardError(f"{_name(command)} failed: the board answered "
                                 f"{response.status_name} after {len(out)} of {count} bytes")
        return bytes(out)

    def write_config(self, data: bytes) -> None:
        self.write(Command.WRITE_CONFIG, data)

    def write_weights(self, data: bytes) -> None:
        self.write(Command.WRITE_WEIGHTS, data)

    def write_inputs(self, data: bytes) -> None:
        self.write(Command.WRITE_INPUTS, data)

    def read_outputs(self, count: int) -> bytes:
        return self.read(Command.READ_OUTPUTS, count)

    def read_counters(self, count: int) -> bytes:
        return self.read(Command.READ_COUNTERS, count)


def _name(command) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"command 0x{int(command):02x}"


def check_board(client: BoardClient, *, rounds: int = 4, seed: int = 0) -> list[str]:
    """Bring-up check of a board: identify it, echo random frames, and for the link self-test
    design write and read back random inputs. Returns report lines; ``BoardError`` on any
    failure."""
    import numpy as np

    rng = np.random.default_rng(seed)
    identity = client.identify()
    lines = [f"identified: protocol {identity.version}, {identity.clk_freq / 1e6:g} MHz clock, "
             f"{identity.baud} baud, frames up to {identity.max_payload} bytes, design "
             f"{identity.target_info[:24]!r}"]
    sizes = [0, 1, identity.max_payload] + [int(n) for n in
                                            rng.integers(1, identity.max_payload + 1, rounds)]
    for size in sizes:
        data = rng.bytes(size)
        if client.echo(data) != data:
            raise BoardError(f"echo of {size} bytes came back different")
    lines.append(f"echo: {len(sizes)} frames ({sum(sizes)} bytes) came back intact")
    if identity.target_info == b"link-loopback":
        data = rng.bytes(3 * identity.max_payload + 7)
        client.write_inputs(data)
        if client.read_outputs(len(data)) != data:
            raise BoardError("loopback: the bytes read back differ from those written")
        lines.append(f"loopback: {len(data)} bytes written and read back intact")
    lines.append(f"refused frames sent again: {client.refusals}")
    return lines


def main(argv=None) -> int:
    """``python -m boards.host PORT [--baud N]``: the bring-up check of a board."""
    import argparse
    import sys

    from boards.link import DEFAULT_BAUD

    parser = argparse.ArgumentParser(prog="python -m boards.host",
                                     description="Check the serial link to a mulfree board.")
    parser.add_argument("port", help="serial port or pyserial URL, e.g. /dev/ttyUSB1")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per response")
    args = parser.parse_args(argv)
    try:
        with BoardClient(SerialTransport(args.port, args.baud), timeout=args.timeout) as client:
            for line in check_board(client):
                print(line)
    except (BoardError, ValueError) as exc:
        print(f"board check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
