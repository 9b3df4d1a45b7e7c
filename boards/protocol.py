"""The host link, as a model: UART line coding and the framed command protocol (Python only).

This module is the golden model of the board's host link and the one place its encodings
are defined; the hardware (``boards.uart``, ``boards.dispatcher``) and the host driver
(``boards.host``) both follow it, and the tests compare the hardware with it byte for byte.

Line coding
    8N1 UART: idle high, a start bit (0), eight data bits least significant first, a stop bit
    (1). ``uart_encode`` gives the line level at every clock cycle, ``uart_decode`` samples a
    line exactly as ``boards.uart.UARTReceiver`` does.

Frames (all multi-byte fields little-endian, except the CRC)
    request:  ``0xA5  command  length_lo length_hi  payload[length]  crc_hi crc_lo``
    response: ``0x5A  status  command  length_lo length_hi  payload[length]  crc_hi crc_lo``

    The checksum is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
    reflection, no final XOR) over every byte after the sync byte up to the end of the
    payload, sent high byte first; so the CRC run over everything after the sync byte
    *including* the checksum is zero, which is how the hardware checks it. A request whose
    length exceeds the device's ``max_payload``, whose checksum is wrong, which stops
    arriving for longer than the frame timeout, or during which the UART saw a framing error
    or an overrun is refused: nothing is executed, the device ignores the line until it has
    been quiet for the frame timeout, then answers with an error status and an empty payload.
    The host waits for each response before sending the next request.

Commands
    ``IDENTIFY`` (no payload) answers with the ``Identity`` of the design. ``ECHO`` answers
    with its payload. ``WRITE_CONFIG``/``WRITE_WEIGHTS``/``WRITE_INPUTS`` pass their payload
    bytes, in order, to the design's configuration/weight/input stream. ``START`` (no payload)
    pulses the design's start signal. ``READ_OUTPUTS``/``READ_COUNTERS`` carry a 2-byte count
    and answer with that many bytes taken from the design's output/counter stream. A command
    the design does not know answers ``UNKNOWN_COMMAND``, a wrong payload length for the
    command ``BAD_LENGTH``; both are refused, not executed. If the design stalls (does not
    accept or produce a byte) for the target timeout, the answer is ``TARGET_TIMEOUT``, with
    the bytes read so far for a read and an empty payload for a write.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

import numpy as np

__all__ = [
    "REQUEST_SYNC", "RESPONSE_SYNC", "PROTOCOL_VERSION", "MAGIC",
    "Command", "Status", "REFUSED", "WRITE_CHANNELS", "READ_CHANNELS",
    "clocks_per_bit", "uart_encode", "uart_decode", "UARTLineDecoder",
    "crc16", "encode_request", "decode_request", "encode_response", "decode_response",
    "response_length", "IDENTITY_HEADER", "MAX_IDENTITY_INFO",
    "Response",
    "ProtocolError", "Identity", "ReferenceDevice", "word_bytes", "pack_words", "unpack_words",
]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
PROTOCOL_VERSION = 1
MAGIC = b"MLFR"

#: Slowest sampling the receiver supports, and the largest baud-rate error accepted.
MIN_CLOCKS_PER_BIT = 4
MAX_BAUD_ERROR = 0.02


class Command(enum.IntEnum):
    """Request command codes."""

    IDENTIFY = 0x01
    ECHO = 0x02
    WRITE_CONFIG = 0x10
    WRITE_WEIGHTS = 0x11
    WRITE_INPUTS = 0x12
    START = 0x20
    READ_OUTPUTS = 0x30
    READ_COUNTERS = 0x31


class Status(enum.IntEnum):
    """Response status codes."""

    OK = 0x00
    BAD_CHECKSUM = 0x01
    BAD_LENGTH = 0x02
    UNKNOWN_COMMAND = 0x03
    TIMEOUT = 0x04
    LINE_ERROR = 0x05
    TARGET_TIMEOUT = 0x06


#: Statuses of a refused request: nothing was executed, so the request may be sent again.
REFUSED = frozenset({Status.BAD_CHECKSUM, Status.BAD_LENGTH, Status.UNKNOWN_COMMAND,
                     Status.TIMEOUT, Status.LINE_ERROR})

#: The design stream each write and read command talks to.
WRITE_CHANNELS = {Command.WRITE_CONFIG: "config", Command.WRITE_WEIGHTS: "weights",
                  Command.WRITE_INPUTS: "inputs"}
READ_CHANNELS = {Command.READ_OUTPUTS: "outputs", Command.READ_COUNTERS: "counters"}


class ProtocolError(Exception):
    """A response that cannot be decoded (bad sync byte, checksum or length)."""


# --- UART line coding ---------------------------------------------------------------------------

def clocks_per_bit(clk_freq: float, baud: float) -> int:
    """Clock cycles per UART bit for ``baud`` at ``clk_freq`` Hz (the nearest integer).

    Raises ``ValueError`` if that is under ``MIN_CLOCKS_PER_BIT`` or the rate it gives is more
    than 2 % off ``baud``.
    """
    if not clk_freq > 0:
        raise ValueError(f"clock frequency must be positive, not {clk_freq!r}")
    if not baud > 0:
        raise ValueError(f"baud rate must be positive, not {baud!r}")
    cpb = round(clk_freq / baud)
    if cpb < MIN_CLOCKS_PER_BIT:
        raise ValueError(f"baud rate {baud:g} is too fast for a {clk_freq / 1e6:g} MHz clock; "
                         f"allowed: up to {clk_freq / MIN_CLOCKS_PER_BIT:g} "
                         f"({MIN_CLOCKS_PER_BIT} clocks per bit)")
    error = abs(clk_freq / cpb - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud rate {baud:g} is {error:.1%} off the nearest rate a "
                         f"{clk_freq / 1e6:g} MHz clock gives ({clk_freq / cpb:g}); allowed: "
                         f"within {MAX_BAUD_ERROR:.0%}")
    return cpb


def uart_encode(data: bytes, bit_period: float, *, idle_before: int = 0,
                idle_after: int = 0, stop_bits=None) -> np.ndarray:
    """Line level (0/1) at each clock cycle for ``data`` sent back to back as 8N1 frames.

    ``bit_period`` is in clock cycles and may be fractional (a transmitter whose rate is off);
    bit ``k`` of the whole sequence covers cycles ``[k * bit_period, (k + 1) * bit_period)``,
    after ``idle_before`` idle (high) cycles. ``stop_bits`` may override the stop bit of each
    byte (0 makes a framing error).
    """
    bits = []
    for i, byte in enumerate(bytes(data)):
        stop = 1 if stop_bits is None else int(stop_bits[i])
        bits += [0] + [(byte >> k) & 1 for k in range(8)] + [stop]
    n = int(np.ceil(len(bits) * bit_period - 1e-9))
    index = np.floor(np.arange(n) / bit_period + 1e-9).astype(np.int64)
    line = np.asarray(bits, dtype=np.uint8)[np.minimum(index, len(bits) - 1)] if bits else \
        np.zeros(0, dtype=np.uint8)
    return np.concatenate([np.ones(idle_before, np.uint8), line, np.ones(idle_after, np.uint8)])


class UARTLineDecoder:
    """Incremental 8N1 decoder with the receiver's sampling rule.

    A low sample while idle at cycle ``i`` is a candidate start bit; it is confirmed if the
    line is still low at ``i + cpb // 2``; data bit ``k`` is sampled at
    ``i + cpb // 2 + (k + 1) * cpb`` and the stop bit at ``i + cpb // 2 + 9 * cpb``; the decoder
    is idle again from the next cycle. A stop bit of 0 is a framing error: no byte, and
    nothing is decoded until the line has been high again.

    Events are ``int`` bytes or the string ``"framing"``.
    """

    def __init__(self, clocks_per_bit: int):
        if clocks_per_bit < MIN_CLOCKS_PER_BIT:
            raise ValueError(f"clocks per bit must be at least {MIN_CLOCKS_PER_BIT}, "
                             f"not {clocks_per_bit}")
        self._cpb = clocks_per_bit
        self._state = "idle"
        self._count = 0  # cycles since the candidate start edge
        self._bits = 0

    def push(self, level: int):
        """Take one sample; return the byte or ``"framing"`` it completes, else ``None``."""
        if self._state == "idle":
            if level == 0:
                self._state, self._count, self._bits = "start", 0, 0
            return None
        if self._state == "break":
            if level == 1:
                self._state = "idle"
            return None
        self._count += 1
        half, cpb = self._cpb // 2, self._cpb
        if self._count == half:
            if level != 0:
                self._state = "idle"  # a glitch, not a start bit
            return None
        offset = self._count - half
        if offset <= 0 or offset % cpb:
            return None
        k = offset // cpb
        if k <= 8:
            self._bits |= level << (k - 1)
            return None
        if level == 1:
            self._state = "idle"
            return self._bits
        self._state = "break"
        return "framing"

    def feed(self, samples) -> list:
        """Take many samples; return the events they complete."""
        events = []
        for level in np.asarray(samples, dtype=np.uint8).tolist():
            event = self.push(level)
            if event is not None:
                events.append(event)
        return events


def uart_decode(samples, clocks_per_bit: int) -> list:
    """Decode a whole line (see ``UARTLineDecoder``): a list of bytes and ``"framing"``."""
    return UARTLineDecoder(clocks_per_bit).feed(samples)


# --- frames -------------------------------------------------------------------------------------

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (polynomial 0x1021, MSB first), continuing from ``crc``."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _with_crc(body: bytes) -> bytes:
    crc = crc16(body)
    return body + bytes([crc >> 8, crc & 0xFF])


def _check_payload(payload) -> bytes:
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes; allowed: at most 65535")
    return payload


def encode_request(command: int, payload: bytes = b"") -> bytes:
    """The bytes of a request frame."""
    payload = _check_payload(payload)
    if not 0 <= int(command) <= 0xFF:
        raise ValueError(f"command {command!r} is not a byte")
    body = bytes([int(command)]) + struct.pack("<H", len(payload)) + payload
    return bytes([REQUEST_SYNC]) + _with_crc(body)


def encode_response(status: int, command: int, payload: bytes = b"") -> bytes:
    """The bytes of a response frame."""
    payload = _check_payload(payload)
    for name, value in (("status", status), ("command", command)):
        if not 0 <= int(value) <= 0xFF:
            raise ValueError(f"{name} {value!r} is not a byte")
    body = bytes([int(status), int(command)]) + struct.pack("<H", len(payload)) + payload
    return bytes([RESPONSE_SYNC]) + _with_crc(body)


@dataclasses.dataclass(frozen=True)
class Response:
    """A decoded response frame."""

    status: int
    command: int
    payload: bytes

    @property
    def status_name(self) -> str:
        try:
            return Status(self.status).name
        except ValueError:
            return f"0x{self.status:02x}"


def decode_request(frame: bytes) -> tuple[int, bytes]:
    """``(command, payload)`` of one complete request frame; ``ProtocolError`` if it is
    malformed or corrupted (the inverse of ``encode_request``)."""
    frame = bytes(frame)
    if len(frame) < 6 or frame[0] != REQUEST_SYNC:
        raise ProtocolError(f"a request frame starts with 0x{REQUEST_SYNC:02x} and has at "
                            f"least 6 bytes, not {frame[:8].hex()}")
    length = struct.unpack("<H", frame[2:4])[0]
    if len(frame) != 4 + length + 2:
        raise ProtocolError(f"request of {len(frame)} bytes, its header says {4 + length + 2}")
    if crc16(frame[1:]) != 0:
        raise ProtocolError("request checksum is wrong")
    return frame[1], frame[4:-2]


def response_length(header: bytes) -> int:
    """Total length of the response frame whose first five bytes are ``header``."""
    if len(header) < 5:
        raise ProtocolError(f"response header of {len(header)} bytes; need 5")
    if header[0] != RESPONSE_SYNC:
        raise ProtocolError(f"response starts with 0x{header[0]:02x}, not 0x{RESPONSE_SYNC:02x}")
    return 5 + struct.unpack("<H", bytes(header[3:5]))[0] + 2


def decode_response(frame: bytes) -> Response:
    """Decode one complete response frame; ``ProtocolError`` if it is malformed or corrupted."""
    frame = bytes(frame)
    if len(frame) != response_length(frame[:5]):
        raise ProtocolError(f"response of {len(frame)} bytes, its header says "
                            f"{response_length(frame[:5])}")
    if crc16(frame[1:]) != 0:
        raise ProtocolError("response checksum is wrong")
    return Response(frame[1], frame[2], frame[5:-2])


#: Bytes of an identity before its ``target_info``: magic, version, max payload, clock, baud.
IDENTITY_HEADER = len(MAGIC) + struct.calcsize("<BHII")
#: The longest ``target_info`` an ``IDENTIFY`` answer (one frame) can carry.
MAX_IDENTITY_INFO = 0xFFFF - IDENTITY_HEADER


@dataclasses.dataclass(frozen=True)
class Identity:
    """What ``IDENTIFY`` answers: the protocol and link parameters, then the design's own
    description (``target_info``, opaque to the link)."""

    max_payload: int
    clk_freq: int
    baud: int
    target_info: bytes = b""
    version: int = PROTOCOL_VERSION

    def __post_init__(self):
        for name, bits in (("version", 8), ("max_payload", 16), ("clk_freq", 32), ("baud", 32)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value < 1 << bits:
                raise ValueError(f"identity {name} must be an integer in [0, {(1 << bits) - 1}]"
                                 f", not {value!r}")
        info = bytes(self.target_info)
        if len(info) > MAX_IDENTITY_INFO:
            raise ValueError(f"identity target_info of {len(info)} bytes; allowed: at most "
                             f"{MAX_IDENTITY_INFO}")
        object.__setattr__(self, "target_info", info)

    def encode(self) -> bytes:
        return (MAGIC + struct.pack("<BHII", self.version, self.max_payload, self.clk_freq,
                                    self.baud) + bytes(self.target_info))

    @classmethod
    def decode(cls, payload: bytes) -> "Identity":
        """The identity in an ``IDENTIFY`` answer (its ``target_info`` may be empty)."""
        payload = bytes(payload)
        if payload[:4] != MAGIC or len(payload) < IDENTITY_HEADER:
            raise ProtocolError("the device did not identify as a mulfree design "
                                f"(answer {payload[:16].hex()})")
        version, max_payload, clk_freq, baud = struct.unpack("<BHII",
                                                             payload[4:IDENTITY_HEADER])
        return cls(max_payload, clk_freq, baud, payload[IDENTITY_HEADER:], version)


# --- words on a byte stream -------------------------------------------------------------------

def word_bytes(bits: int) -> int:
    """Bytes a word of ``bits`` bits takes on the link (whole bytes, little-endian)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"word width must be a positive integer, not {bits!r}")
    return (int(bits) + 7) // 8


def pack_words(words, bits: int) -> bytes:
    """Words as bytes: each word's ``bits``-bit two's-complement pattern, little-endian, in
    ``word_bytes(bits)`` bytes. Model of ``boards.adapters.BytesToWords`` (in reverse)."""
    n = word_bytes(bits)
    mask = (1 << int(bits)) - 1
    out = bytearray()
    for word in words:
        word = int(word)
        if not -(1 << (bits - 1)) <= word <= mask:
            raise ValueError(f"word {word} does not fit in {bits} bits")
        out += (word & mask).to_bytes(n, "little")
    return bytes(out)


def unpack_words(data: bytes, bits: int, *, signed: bool = False) -> list[int]:
    """Inverse of ``pack_words``: the words (sign-extended from ``bits`` when ``signed``).
    Model of ``boards.adapters.WordsToBytes`` (in reverse)."""
    n = word_bytes(bits)
    data = bytes(data)
    if len(data) % n:
        raise ValueError(f"{len(data)} bytes is not a whole number of {n}-byte words")
    mask = (1 << int(bits)) - 1
    words = []
    for offset in range(0, len(data), n):
        word = int.from_bytes(data[offset:offset + n], "little") & mask
        if signed and word >> (bits - 1):
            word -= 1 << bits
        words.append(word)
    return words


# --- the device, as a model ---------------------------------------------------------------------

class ReferenceDevice:
    """The dispatcher's behaviour on bytes: model of ``boards.dispatcher.CommandDispatcher``.

    ``burst(data)`` takes the bytes of one burst (the line is quiet for longer than the frame
    timeout afterwards) and returns the response bytes the device sends. Stream traffic is
    recorded in ``written[name]`` (bytes passed to each write channel) and read from
    ``readable[name]`` (bytes the design has ready on each read channel; a read that asks for
    more stalls and answers ``TARGET_TIMEOUT``); ``starts`` counts START pulses.
    """

    def __init__(self, identity: Identity):
        self.identity = identity
        self.written = {name: bytearray() for name in WRITE_CHANNELS.values()}
        self.readable = {name: bytearray() for name in READ_CHANNELS.values()}
        self.starts = 0

    def burst(self, data: bytes) -> bytes:
        data = bytes(data)
        out = bytearray()
        i = 0
        while i < len(data):
            if data[i] != REQUEST_SYNC:
                i += 1  # bytes outside a frame are ignored
                continue
            frame = data[i + 1:]
            if len(frame) < 3:
                command = frame[0] if frame else 0
                return bytes(out + encode_response(Status.TIMEOUT, command))
            command = frame[0]
            length = struct.unpack("<H", frame[1:3])[0]
            if length > self.identity.max_payload:
                return bytes(out + encode_response(Status.BAD_LENGTH, command))
            if len(frame) < 3 + length + 2:
                return bytes(out + encode_response(Status.TIMEOUT, command))
            if crc16(frame[:3 + length + 2]) != 0:
                return bytes(out + encode_response(Status.BAD_CHECKSUM, command))
            out += self._execute(command, frame[3:3 + length])
            i += 1 + 3 + length + 2
        return bytes(out)

    def _execute(self, command: int, payload: bytes) -> bytes:
        if command == Command.IDENTIFY:
            if payload:
                return encode_response(Status.BAD_LENGTH, command)
            return encode_response(Status.OK, command, self.identity.encode())
        if command == Command.ECHO:
            return encode_response(Status.OK, command, payload)
        if command == Command.START:
            if payload:
                return encode_response(Status.BAD_LENGTH, command)
            self.starts += 1
            return encode_response(Status.OK, command)
        if command in WRITE_CHANNELS:
            self.written[WRITE_CHANNELS[Command(command)]] += payload
            return encode_response(Status.OK, command)
        if command in READ_CHANNELS:
            if len(payload) != 2:
                return encode_response(Status.BAD_LENGTH, command)
            count = struct.unpack("<H", payload)[0]
            if count > self.identity.max_payload:
                return encode_response(Status.BAD_LENGTH, command)
            source = self.readable[READ_CHANNELS[Command(command)]]
            got = bytes(source[:count])
            del source[:count]
            status = Status.OK if len(got) == count else Status.TARGET_TIMEOUT
            return encode_response(status, command, got)
        return encode_response(Status.UNKNOWN_COMMAND, command)
