"""The device side of the host link: frame parser, checksum, and command dispatcher.

Model: ``boards.protocol.ReferenceDevice`` (the frame format and every command are defined in
``boards.protocol``).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
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

        # The state machine below only decides: it raises one-bit controls, and each
        # register is updated in one place from them (a few sources each, so that synthesis
        # gives small multiplexers). Within a state, `index` tells the bytes apart.
        m.submodules.buffer = buffer = Memory(shape=8, depth=max_payload, init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        # The identity answer: a small ROM, read combinationally (LUTs, no output register).
        m.submodules.identity_rom = identity_rom = Memory(shape=8, depth=len(identity_bytes),
                                                          init=identity_bytes)
        identity_read = identity_rom.read_port(domain="comb")
        rx, tx = self.rx_stream, self.tx_stream

        # `index` walks the header, the payload (frame buffer, identity ROM) and the checksum
        # of a frame; the buffer's read port is addressed with its next value, so that
        # `read.data` always holds buffer[index].
        longest = max(max_payload, len(identity_bytes))
        index = Signal(range(max(longest, 5) + 1), reset_less=True)
        index_plus_one = index + 1
        index_clear = Signal()
        index_step = Signal()
        index_next = Mux(index_clear, 0, Mux(index_step, index_plus_one, index))
        m.d.sync += index.eq(index_next)
        # The buffer is never read where it is written, and no read is used in the states that
        # write it; not reading there spares the logic that would give a defined answer to a
        # read and a write of the same address in one cycle (which the iCE40 RAM lacks).
        filling = Signal()   # the buffer is being written (a request's payload, a read)
        store = Signal()     # write the byte in hand at `index`
        m.d.comb += [write.en.eq(filling & store), read.addr.eq(index_next), read.en.eq(~filling),
                     identity_read.addr.eq(index)]

        # `length` is the payload length of the frame in hand: the request's while it is
        # received, replayed or checked, then the response's (a read's count, the identity's
        # size, the bytes read before a stall, or 0). A length arrives low byte first and is
        # checked against `max_payload` in the cycle after its high byte. `byte_in` is the
        # byte being taken: from the line, or (a read's count) from the buffer.
        length = Signal(max(8, longest.bit_length()), reset_less=True)
        # `last`: index + 1 == length, kept in a register (updated from registers only, so
        # that the decisions taken on it do not wait for a carry chain and a comparison).
        # It is right whenever `length` has not changed in the previous cycle, which holds
        # wherever it is used (the payload, write, read and response loops).
        last = Signal()
        m.d.sync += last.eq(Mux(index_clear, length == 1,
                                Mux(index_step, index + 2 == length, index_plus_one == length)))
        byte_in = Signal(8)
        length_low, length_high, length_clear, length_identity, length_index = \
            (Signal(name=f"length_{n}") for n in ("low", "high", "clear", "identity", "index"))
        with m.If(length_clear):
            m.d.sync += length.eq(0)
        with m.Elif(length_identity):
            m.d.sync += length.eq(len(identity_bytes))
        with m.Elif(length_index):
            m.d.sync += length.eq(index)
        with m.Elif(length_low):
            m.d.sync += length.eq(byte_in)
        with m.Elif(length_high):
            m.d.sync += length[8:].eq(byte_in)
        # A length just taken (checked in the next cycle, from registers only): over the
        # limit (`length_over`: high bits that `length` does not keep are set), or zero.
        length_over = Signal()
        with m.If(length_high):
            m.d.sync += length_over.eq(byte_in[len(length) - 8:] != 0)
        too_long = length_over | (length > max_payload)
        is_empty = length == 0

        command = Signal(8, reset_less=True)
        command_clear, command_load = Signal(), Signal()
        with m.If(command_clear):
            m.d.sync += command.eq(0)
        with m.Elif(command_load):
            m.d.sync += command.eq(rx.payload)
        # A frame's status is TIMEOUT until it has been received or refused.
        status = Signal(range(max(Status) + 1), reset_less=True)
        # The response's payload comes from the identity ROM, not the buffer.
        from_identity = Signal(reset_less=True)

        # The checksum takes each byte one cycle after it has gone by: the byte is kept in
        # `crc_byte` and `crc_pending` is set, so no path runs from the byte multiplexers
        # through the CRC. `crc` is up to date when `crc_pending` is low.
        crc = Signal(16, reset_less=True)
        crc_byte = Signal(8, reset_less=True)
        crc_pending = Signal()
        crc_next = crc16_step(crc, crc_byte)
        crc_init, crc_update, sending = Signal(), Signal(), Signal()
        m.d.sync += crc_pending.eq(crc_update & ~crc_init)
        with m.If(crc_update):
            m.d.sync += crc_byte.eq(Mux(sending, tx.payload, rx.payload))
        with m.If(crc_init):
            m.d.sync += crc.eq(0xFFFF)
        with m.Elif(crc_pending):
            m.d.sync += crc.eq(crc_next)

        # One timer for both timeouts: the line's (in a frame and while draining) and the
        # design's (while a write or read runs). It counts every cycle and is cleared where a
        # wait starts or anything arrives.
        timer = Signal(range(max(self._frame_timeout, self._target_timeout)), reset_less=True)
        timer_clear = Signal()
        m.d.sync += timer.eq(Mux(timer_clear, 0, timer + 1))
        # timer == timeout - 1, registered (compared a cycle ahead, off the decision paths).
        line_quiet, target_stalled = Signal(), Signal()
        m.d.sync += [line_quiet.eq(~timer_clear & (timer == self._frame_timeout - 2)),
                     target_stalled.eq(~timer_clear & (timer == self._target_timeout - 2))]

        write_streams = [getattr(self, f"{n}_stream") for n in WRITE_CHANNELS.values()]
        read_streams = [getattr(self, f"{n}_stream") for n in READ_CHANNELS.values()]
        # The channel of a write or read command, from the command code itself.
        write_channel = _code_bits(list(WRITE_CHANNELS), command)
        read_channel = _code_bits(list(READ_CHANNELS), command)
        source = Array(read_streams)[read_channel]
        reading = Signal()   # the buffer is written from the design (a read), not the line
        m.d.comb += [write.addr.eq(index), write.data.eq(Mux(reading, source.payload,
                                                             rx.payload))]
        for s in write_streams:
            m.d.comb += s.payload.eq(read.data)

        def respond(code=None, clear_length=False):
            if code is not None:
                m.d.sync += status.eq(code)
            m.d.comb += [index_clear.eq(1), length_clear.eq(clear_length)]
            m.next = "RESPOND"

        def refuse_and_drain(code):
            m.d.sync += status.eq(code)
            m.d.comb += [length_clear.eq(1), timer_clear.eq(1)]
            m.next = "DRAIN"

        def receiving(on_byte):
            """Common part of every state inside a request frame: a frame the line stops
            sending answers TIMEOUT (its status so far)."""
            m.d.comb += [rx.ready.eq(1), byte_in.eq(rx.payload)]
            with m.If(self.rx_error):
                refuse_and_drain(Status.LINE_ERROR)
            with m.Elif(rx.valid):
                m.d.comb += [timer_clear.eq(1), crc_update.eq(1)]
                on_byte()
            with m.Elif(line_quiet):
                respond(clear_length=True)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid & (rx.payload == REQUEST_SYNC)):
                    m.d.sync += status.eq(Status.TIMEOUT)
                    m.d.comb += [crc_init.eq(1), command_clear.eq(1), timer_clear.eq(1),
                                 index_clear.eq(1)]
                    m.next = "HEADER"

            # index 0: the command, 1 and 2: the payload length.
            with m.State("HEADER"):
                def on_header():
                    m.d.comb += index_step.eq(1)
                    with m.Switch(index[:2]):
                        with m.Case(0):
                            m.d.comb += command_load.eq(1)
                        with m.Case(1):
                            m.d.comb += length_low.eq(1)
                        with m.Default():
                            m.d.comb += [length_high.eq(1), index_clear.eq(1)]
                            m.next = "CHECK_LENGTH"
                receiving(on_header)

            with m.State("CHECK_LENGTH"):
                with m.If(self.rx_error):
                    refuse_and_drain(Status.LINE_ERROR)
                with m.Elif(too_long):
                    refuse_and_drain(Status.BAD_LENGTH)
                with m.Elif(is_empty):
                    m.next = "CHECKSUM"
                with m.Else():
                    m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += filling.eq(1)

                def on_payload():
                    m.d.comb += [store.eq(1), index_step.eq(1)]
                    with m.If(last):
                        m.d.comb += index_clear.eq(1)
                        m.next = "CHECKSUM"
                receiving(on_payload)

            # index 0: the checksum's high byte, 1: its low byte.
            with m.State("CHECKSUM"):
                def on_checksum():
                    m.d.comb += index_step.eq(1)
                    with m.If(index[0]):
                        m.next = "DECODE"
                receiving(on_checksum)

            with m.State("DRAIN"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid | self.rx_error):
                    m.d.comb += timer_clear.eq(1)
                with m.Elif(line_quiet):
                    respond()

            # The frame is complete; its checksum is right if the CRC over it all, the
            # checksum included (its last byte still pending), is zero.
            with m.State("DECODE"):
                m.d.sync += from_identity.eq(0)
                m.d.comb += [index_clear.eq(1), timer_clear.eq(1)]
                with m.If(crc_next != 0):
                    refuse_and_drain(Status.BAD_CHECKSUM)
                with m.Else():
                    with m.Switch(command):
                        with m.Case(Command.IDENTIFY):
                            with m.If(length != 0):
                                respond(Status.BAD_LENGTH, clear_length=True)
                            with m.Else():
                                m.d.sync += from_identity.eq(1)
                                m.d.comb += length_identity.eq(1)
                                respond(Status.OK)
                        with m.Case(Command.ECHO):
                            respond(Status.OK)
                        with m.Case(Command.START):
                            with m.If(length != 0):
                                respond(Status.BAD_LENGTH, clear_length=True)
                            with m.Else():
                                m.d.comb += self.start.eq(1)
                                respond(Status.OK)
                        with m.Case(*WRITE_CHANNELS):
                            m.d.sync += status.eq(Status.OK)
                            with m.If(length == 0):
                                respond()
                            with m.Else():
                                m.next = "WRITE"
                        with m.Case(*READ_CHANNELS):
                            m.d.sync += status.eq(Status.OK)
                            with m.If(length != 2):
                                respond(Status.BAD_LENGTH, clear_length=True)
                            with m.Else():
                                m.next = "COUNT"
                        with m.Default():
                            respond(Status.UNKNOWN_COMMAND, clear_length=True)

            # A read's count: the two payload bytes, read back from the buffer (index 0, 1).
            with m.State("COUNT"):
                m.d.comb += [byte_in.eq(read.data), index_step.eq(1), timer_clear.eq(1)]
                with m.If(~index[0]):
                    m.d.comb += length_low.eq(1)
                with m.Else():
                    m.d.comb += [length_high.eq(1), index_clear.eq(1)]
                    m.next = "CHECK_COUNT"

            with m.State("CHECK_COUNT"):
                m.d.comb += timer_clear.eq(1)
                with m.If(too_long):
                    respond(Status.BAD_LENGTH, clear_length=True)
                with m.Elif(is_empty):
                    respond()
                with m.Else():
                    m.next = "READ"

            with m.State("WRITE"):
                for number, s in enumerate(write_streams):
                    m.d.comb += s.valid.eq(write_channel == number)
                with m.If(Array(write_streams)[write_channel].ready):
                    m.d.comb += [timer_clear.eq(1), index_step.eq(1)]
                    with m.If(last):
                        respond(clear_length=True)
                with m.Elif(target_stalled):
                    respond(Status.TARGET_TIMEOUT, clear_length=True)

            with m.State("READ"):
                m.d.comb += [reading.eq(1), filling.eq(1)]
                for number, s in enumerate(read_streams):
                    m.d.comb += s.ready.eq(read_channel == number)
                with m.If(source.valid):
                    m.d.comb += [timer_clear.eq(1), store.eq(1), index_step.eq(1)]
                    with m.If(last):
                        respond()
                with m.Elif(target_stalled):
                    m.d.comb += length_index.eq(1)
                    respond(Status.TARGET_TIMEOUT)

            # The response header, byte `index`; the checksum starts after the sync byte.
            with m.State("RESPOND"):
                header = Array([Const(RESPONSE_SYNC, 8), status, command,
                                length[:8], length[8:]])
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header[index[:3]]), sending.eq(1)]
                with m.If(tx.ready):
                    m.d.comb += [index_step.eq(1), crc_update.eq(1), crc_init.eq(index == 0)]
                    with m.If(index == 4):
                        m.d.comb += index_clear.eq(1)
                        with m.If(length == 0):
                            m.next = "SEND_CHECKSUM"
                        with m.Else():
                            m.next = "SEND_PAYLOAD"

            with m.State("SEND_PAYLOAD"):
                m.d.comb += [tx.valid.eq(1), sending.eq(1),
                             tx.payload.eq(Mux(from_identity, identity_read.data, read.data))]
                with m.If(tx.ready):
                    m.d.comb += [index_step.eq(1), crc_update.eq(1)]
                    with m.If(last):
                        m.d.comb += index_clear.eq(1)
                        m.next = "SEND_CHECKSUM"

            # The checksum goes out high byte first (index 0, 1) through the CRC itself: a
            # byte equal to the CRC's high byte moves its low byte up
            # (crc16_step(crc, crc[8:]) == crc << 8).
            with m.State("SEND_CHECKSUM"):
                m.d.comb += [tx.valid.eq(~crc_pending), tx.payload.eq(crc[8:]), sending.eq(1)]
                with m.If(tx.valid & tx.ready):
                    m.d.comb += [index_step.eq(1), crc_update.eq(1)]
                    with m.If(index[0]):
                        m.next = "IDLE"
        return m


def _code_bits(codes: list[int], command: Value) -> Value:
    """The number of ``command`` among ``codes`` (valid only if it is one of them), from as few
    of its bits as tell the codes apart; the codes must be numbered in their bits' order."""
    for low in range(8):
        for width in range(1, 9 - low):
            field = [(code >> low) & ((1 << width) - 1) for code in codes]
            if field == list(range(len(codes))):
                return command[low:low + width]
    raise ValueError(f"command codes {codes} are not numbered by a bit field")
