"""The device side of the host link: frame parser, checksum, and command dispatcher.

Model: ``boards.protocol.ReferenceDevice`` (the frame format and every command are defined in
``boards.protocol``).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from boards.protocol import (
    READ_CHANNELS,
    REQUEST_SYNC,
    RESPONSE_SYNC,
    WRITE_CHANNELS,
    Command,
    Identity,
    Status,
)

__all__ = ["CommandDispatcher", "crc16_step"]


def _crc16_step_matrix() -> list[int]:
    """For each bit of the updated CRC, the mask of inputs it is the XOR of (bits 0-15: the
    old CRC, bits 16-23: the byte). The CRC is linear, so running the bitwise algorithm on
    masks instead of bits gives these equations."""
    value = [1 << j for j in range(16)]
    for k in range(8):
        value[8 + k] ^= 1 << (16 + k)
    for _ in range(8):
        top = value[15]
        value = [([0] + value[:15])[j] ^ (top if (0x1021 >> j) & 1 else 0) for j in range(16)]
    return value


_CRC16_STEP = _crc16_step_matrix()


def crc16_step(crc, byte):
    """Combinational CRC-16/CCITT-FALSE update of ``crc`` (16 bits) by ``byte`` (8 bits): one
    XOR of a few inputs per bit. Model: ``boards.protocol.crc16``."""
    inputs = Cat(crc, byte)
    return Cat(*[(inputs & mask).xor() for mask in _CRC16_STEP])


class CommandDispatcher(wiring.Component):
    """Parse request frames from a byte stream, check them, run them, and send the response.

    A request's payload is kept in a buffer of ``identity.max_payload`` bytes until its
    checksum has been verified, so a refused frame never reaches the design: nothing is
    written, read or started. After an error found while receiving (bad length, bad checksum,
    UART error) the dispatcher drops bytes until the line has been quiet for
    ``frame_timeout`` cycles, then responds; a frame that stops arriving for that long is
    answered ``TIMEOUT``. Write commands replay the buffered payload into the design's stream,
    reads collect the requested bytes into the buffer and send them in the response.

    Latency: the response to a frame starts 2 cycles after its last checksum byte for
    ``IDENTIFY``/``ECHO``/``START``/refusals, after the last byte is accepted by (writes) or
    taken from (reads) the design otherwise; ``frame_timeout`` cycles after the last byte for
    errors found while receiving. Throughput: one byte per cycle in and out of the design
    streams and from ``rx_stream``; the link is half duplex (one request at a time; bytes that
    arrive while a command runs or its response is sent are not taken).
    Model: ``boards.protocol.ReferenceDevice``.

    Parameters
    ----------
    identity : Identity
        What ``IDENTIFY`` answers; its ``max_payload`` sizes the frame buffer.
    frame_timeout : int
        Cycles without a byte after which a frame is abandoned (and a drain ends).
    target_timeout : int
        Cycles the design may stall a write or a read before the command gives up.

    Members
    -------
    rx_stream : ``In(stream.Signature(8))``
        Request bytes from the UART receiver.
    rx_error : ``In(1)``
        Pulses on a UART framing error or overrun.
    tx_stream : ``Out(stream.Signature(8))``
        Response bytes to the UART transmitter.
    config_stream, weights_stream, inputs_stream : ``Out(stream.Signature(8))``
        Payloads of ``WRITE_CONFIG``, ``WRITE_WEIGHTS``, ``WRITE_INPUTS``.
    outputs_stream, counters_stream : ``In(stream.Signature(8))``
        Bytes for ``READ_OUTPUTS`` and ``READ_COUNTERS``.
    start : ``Out(1)``
        One-cycle pulse on ``START``.
    """

    def __init__(self, *, identity: Identity, frame_timeout: int, target_timeout: int):
        if not 2 <= identity.max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be in [2, 65535], not {identity.max_payload!r}")
        for name, value in (("frame_timeout", frame_timeout), ("target_timeout", target_timeout)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer number of cycles >= 2, not {value!r}")
        self._identity = identity
        self._frame_timeout = frame_timeout
        self._target_timeout = target_timeout
        members = {
            "rx_stream": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx_stream": Out(stream.Signature(8)),
            "start": Out(1),
        }
        for name in WRITE_CHANNELS.values():
            members[f"{name}_stream"] = Out(stream.Signature(8))
        for name in READ_CHANNELS.values():
            members[f"{name}_stream"] = In(stream.Signature(8))
        super().__init__(members)

    @property
    def identity(self) -> Identity:
        return self._identity

    def elaborate(self, platform):
        m = Module()
        max_payload = self._identity.max_payload
        identity_bytes = self._identity.encode()

        m.submodules.buffer = buffer = Memory(shape=8, depth=max_payload, init=[])
        write = buffer.write_port()
        read = buffer.read_port()

        command = Signal(8)
        length = Signal(16)        # request payload length
        argument = Signal(16)      # first two payload bytes (the count of a read)
        status = Signal(8)
        response_length = Signal(16)
        from_identity = Signal()   # response payload from the identity bytes, not the buffer
        channel = Signal(range(max(len(WRITE_CHANNELS), len(READ_CHANNELS))))
        header_index = Signal(range(5))

        # `index` walks the buffer; the read port is addressed with its next value, so that
        # `read.data` always holds buffer[index].
        index = Signal(range(max_payload + 1))
        index_next = Signal.like(index)
        # Bytes still to go in the current payload (received, replayed, read or sent).
        remaining = Signal(16)
        last = remaining == 1
        m.d.comb += [index_next.eq(index), read.addr.eq(index_next)]
        m.d.sync += index.eq(index_next)

        crc = Signal(16)
        crc_byte = Signal(8)
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_step(crc, crc_byte))

        quiet = Signal(range(self._frame_timeout))
        stall = Signal(range(self._target_timeout))

        rx, tx = self.rx_stream, self.tx_stream
        write_streams = [getattr(self, f"{n}_stream") for n in WRITE_CHANNELS.values()]
        read_streams = [getattr(self, f"{n}_stream") for n in READ_CHANNELS.values()]
        m.submodules.identity_rom = identity_rom = Memory(shape=8, depth=len(identity_bytes),
                                                          init=identity_bytes)
        identity_read = identity_rom.read_port()
        m.d.comb += identity_read.addr.eq(index_next)

        def respond(code, payload_length=0):
            m.d.sync += [status.eq(code), response_length.eq(payload_length)]
            m.next = "RESPOND"

        def refuse_and_drain(code):
            m.d.sync += [status.eq(code), response_length.eq(0), quiet.eq(0)]
            m.next = "DRAIN"

        def receiving(on_byte):
            """Common part of every state inside a request frame."""
            m.d.comb += [rx.ready.eq(1), crc_byte.eq(rx.payload)]
            with m.If(self.rx_error):
                refuse_and_drain(Status.LINE_ERROR)
            with m.Elif(rx.valid):
                m.d.sync += [quiet.eq(0), crc.eq(crc_next)]
                on_byte(rx.payload)
            with m.Elif(quiet == self._frame_timeout - 1):
                respond(Status.TIMEOUT)
            with m.Else():
                m.d.sync += quiet.eq(quiet + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid & (rx.payload == REQUEST_SYNC)):
                    m.d.sync += [crc.eq(0xFFFF), command.eq(0), quiet.eq(0)]
                    m.next = "COMMAND"

            with m.State("COMMAND"):
                def on_command(byte):
                    m.d.sync += command.eq(byte)
                    m.next = "LENGTH_LOW"
                receiving(on_command)

            with m.State("LENGTH_LOW"):
                def on_length_low(byte):
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LENGTH_HIGH"
                receiving(on_length_low)

            with m.State("LENGTH_HIGH"):
                def on_length_high(byte):
                    full = Cat(length[:8], byte)
                    m.d.sync += [length[8:].eq(byte), argument.eq(0), remaining.eq(full)]
                    m.d.comb += index_next.eq(0)
                    with m.If(full > max_payload):
                        refuse_and_drain(Status.BAD_LENGTH)
                    with m.Elif(full == 0):
                        m.next = "CHECKSUM_HIGH"
                    with m.Else():
                        m.next = "PAYLOAD"
                receiving(on_length_high)

            with m.State("PAYLOAD"):
                def on_payload(byte):
                    m.d.comb += [write.addr.eq(index), write.data.eq(byte), write.en.eq(1),
                                 index_next.eq(index + 1)]
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(index == 0):
                        m.d.sync += argument[:8].eq(byte)
                    with m.If(index == 1):
                        m.d.sync += argument[8:].eq(byte)
                    with m.If(last):
                        m.next = "CHECKSUM_HIGH"
                receiving(on_payload)

            with m.State("CHECKSUM_HIGH"):
                def on_checksum_high(byte):
                    m.next = "CHECKSUM_LOW"
                receiving(on_checksum_high)

            with m.State("CHECKSUM_LOW"):
                def on_checksum_low(byte):
                    with m.If(crc_next == 0):
                        m.next = "DECODE"
                    with m.Else():
                        refuse_and_drain(Status.BAD_CHECKSUM)
                receiving(on_checksum_low)

            with m.State("DRAIN"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid | self.rx_error):
                    m.d.sync += quiet.eq(0)
                with m.Elif(quiet == self._frame_timeout - 1):
                    m.next = "RESPOND"
                with m.Else():
                    m.d.sync += quiet.eq(quiet + 1)

            with m.State("DECODE"):
                m.d.sync += [from_identity.eq(0), stall.eq(0)]
                m.d.comb += index_next.eq(0)
                with m.Switch(command):
                    with m.Case(Command.IDENTIFY):
                        with m.If(length != 0):
                            respond(Status.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += from_identity.eq(1)
                            respond(Status.OK, len(identity_bytes))
                    with m.Case(Command.ECHO):
                        respond(Status.OK, length)
                    with m.Case(Command.START):
                        with m.If(length != 0):
                            respond(Status.BAD_LENGTH)
                        with m.Else():
                            m.d.comb += self.start.eq(1)
                            respond(Status.OK)
                    for number, code in enumerate(WRITE_CHANNELS):
                        with m.Case(code):
                            m.d.sync += [channel.eq(number), remaining.eq(length)]
                            with m.If(length == 0):
                                respond(Status.OK)
                            with m.Else():
                                m.next = "WRITE"
                    for number, code in enumerate(READ_CHANNELS):
                        with m.Case(code):
                            m.d.sync += [channel.eq(number), remaining.eq(argument)]
                            with m.If((length != 2) | (argument > max_payload)):
                                respond(Status.BAD_LENGTH)
                            with m.Elif(argument == 0):
                                respond(Status.OK)
                            with m.Else():
                                m.next = "READ"
                    with m.Default():
                        respond(Status.UNKNOWN_COMMAND)

            with m.State("WRITE"):
                target = Array(write_streams)[channel]
                for number, s in enumerate(write_streams):
                    m.d.comb += [s.payload.eq(read.data), s.valid.eq(channel == number)]
                with m.If(target.ready):
                    m.d.sync += [stall.eq(0), remaining.eq(remaining - 1)]
                    m.d.comb += index_next.eq(index + 1)
                    with m.If(last):
                        respond(Status.OK)
                with m.Elif(stall == self._target_timeout - 1):
                    respond(Status.TARGET_TIMEOUT)
                with m.Else():
                    m.d.sync += stall.eq(stall + 1)

            with m.State("READ"):
                source = Array(read_streams)[channel]
                for number, s in enumerate(read_streams):
                    m.d.comb += s.ready.eq(channel == number)
                with m.If(source.valid):
                    m.d.sync += [stall.eq(0), remaining.eq(remaining - 1)]
                    m.d.comb += [write.addr.eq(index), write.data.eq(source.payload),
                                 write.en.eq(1), index_next.eq(index + 1)]
                    with m.If(last):
                        respond(Status.OK, argument)
                with m.Elif(stall == self._target_timeout - 1):
                    respond(Status.TARGET_TIMEOUT, index)
                with m.Else():
                    m.d.sync += stall.eq(stall + 1)

            with m.State("RESPOND"):
                header = Array([Const(RESPONSE_SYNC, 8), status, command,
                                response_length[:8], response_length[8:]])
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header[header_index]),
                             crc_byte.eq(tx.payload), index_next.eq(0)]
                with m.If(tx.ready):
                    m.d.sync += [header_index.eq(header_index + 1), crc.eq(crc_next)]
                    with m.If(header_index == 0):
                        m.d.sync += crc.eq(0xFFFF)
                    with m.If(header_index == 4):
                        m.d.sync += [header_index.eq(0), remaining.eq(response_length)]
                        with m.If(response_length == 0):
                            m.next = "SEND_CHECKSUM_HIGH"
                        with m.Else():
                            m.next = "SEND_PAYLOAD"

            with m.State("SEND_PAYLOAD"):
                m.d.comb += [tx.valid.eq(1),
                             tx.payload.eq(Mux(from_identity, identity_read.data, read.data)),
                             crc_byte.eq(tx.payload)]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc_next), remaining.eq(remaining - 1)]
                    m.d.comb += index_next.eq(index + 1)
                    with m.If(last):
                        m.next = "SEND_CHECKSUM_HIGH"

            with m.State("SEND_CHECKSUM_HIGH"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc[8:])]
                with m.If(tx.ready):
                    m.next = "SEND_CHECKSUM_LOW"

            with m.State("SEND_CHECKSUM_LOW"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc[:8])]
                with m.If(tx.ready):
                    m.next = "IDLE"
        return m
