"""Every host-link message of ``boards.protocol`` round-trips, with empty and maximal fields.

Requests and responses of every command and status, identities with an empty and a maximal
``target_info`` and every field at its extremes, words of every width; and what does not
belong to a field is refused.
"""

import struct

import pytest

from boards.protocol import (IDENTITY_HEADER, MAGIC, MAX_IDENTITY_INFO, PROTOCOL_VERSION,
                             Command, Identity, ProtocolError, Status, decode_request,
                             decode_response, encode_request, encode_response, pack_words,
                             unpack_words)

PAYLOADS = [b"", b"\x00", bytes(range(256)), b"\xff" * 0xFFFF]


@pytest.mark.parametrize("command", list(Command) + [0x00, 0xFF])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_every_request_round_trips(command, payload):
    frame = encode_request(command, payload)
    assert len(frame) == 1 + 3 + len(payload) + 2
    assert decode_request(frame) == (int(command), payload)


@pytest.mark.parametrize("status", list(Status) + [0xFF])
@pytest.mark.parametrize("command", [Command.IDENTIFY, Command.READ_COUNTERS, 0xFF])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_every_response_round_trips(status, command, payload):
    response = decode_response(encode_response(status, command, payload))
    assert (response.status, response.command, response.payload) == (status, command, payload)


IDENTITIES = [
    Identity(max_payload=0, clk_freq=0, baud=0, target_info=b"", version=0),
    Identity(max_payload=24, clk_freq=12_000_000, baud=115200),                 # empty info
    Identity(max_payload=24, clk_freq=12_000_000, baud=115200, target_info=b"\x00"),
    Identity(max_payload=0xFFFF, clk_freq=2**32 - 1, baud=2**32 - 1,
             target_info=bytes(range(256)) * (MAX_IDENTITY_INFO // 256)
             + b"\xff" * (MAX_IDENTITY_INFO % 256), version=255),
]


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"{len(i.target_info)}B info")
def test_identities_round_trip_through_an_identify_answer(identity):
    payload = identity.encode()
    assert payload[:4] == MAGIC and len(payload) == IDENTITY_HEADER + len(identity.target_info)
    answer = decode_response(encode_response(Status.OK, Command.IDENTIFY, payload))
    decoded = Identity.decode(answer.payload)
    assert decoded == identity
    assert decoded.target_info == identity.target_info  # an empty info stays empty


def test_an_identity_with_an_empty_info_is_exactly_the_header():
    identity = Identity(max_payload=128, clk_freq=1_000_000, baud=250_000)
    assert identity.encode() == MAGIC + struct.pack("<BHII", PROTOCOL_VERSION, 128, 1_000_000,
                                                    250_000)
    assert Identity.decode(identity.encode()).target_info == b""


@pytest.mark.parametrize("answer", [b"", MAGIC, MAGIC + b"\x01" * (IDENTITY_HEADER - 5),
                                    b"MLFX" + b"\x00" * 20])
def test_short_or_foreign_identify_answers_are_refused(answer):
    with pytest.raises(ProtocolError, match="did not identify as a mulfree design"):
        Identity.decode(answer)


@pytest.mark.parametrize("fields, message", [
    ({"max_payload": 0x10000}, "max_payload must be an integer in [0, 65535], not 65536"),
    ({"max_payload": -1}, "max_payload must be an integer in [0, 65535], not -1"),
    ({"clk_freq": 2**32}, "clk_freq must be an integer in [0, 4294967295]"),
    ({"baud": 1.5}, "baud must be an integer"),
    ({"version": 256}, "version must be an integer in [0, 255]"),
    ({"target_info": b"x" * (MAX_IDENTITY_INFO + 1)}, f"at most {MAX_IDENTITY_INFO}"),
])
def test_identity_fields_out_of_range_are_refused(fields, message):
    values = dict(max_payload=16, clk_freq=1, baud=1) | fields
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Identity(**values)


def test_frames_out_of_their_fields_are_refused():
    with pytest.raises(ValueError, match="payload of 65536 bytes; allowed: at most 65535"):
        encode_request(Command.ECHO, b"\x00" * 0x10000)
    with pytest.raises(ValueError, match="command 256 is not a byte"):
        encode_request(256)
    with pytest.raises(ValueError, match="status 256 is not a byte"):
        encode_response(256, Command.ECHO)
    frame = bytearray(encode_request(Command.ECHO, b"abc"))
    frame[5] ^= 0x01
    with pytest.raises(ProtocolError, match="checksum"):
        decode_request(bytes(frame))
    with pytest.raises(ProtocolError, match="header says"):
        decode_request(encode_request(Command.ECHO, b"abc")[:-1])


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 16, 31, 32, 33, 63, 64])
def test_words_of_every_width_round_trip_with_their_extremes(bits):
    signed = [-(1 << (bits - 1)), -1, 0, 1, (1 << (bits - 1)) - 1] if bits > 1 else [-1, 0]
    unsigned = [0, 1, (1 << bits) - 1]
    assert unpack_words(pack_words([], bits), bits) == []
    assert unpack_words(pack_words(signed, bits), bits, signed=True) == signed
    assert unpack_words(pack_words(unsigned, bits), bits) == unsigned
    with pytest.raises(ValueError, match=f"does not fit in {bits} bits"):
        pack_words([1 << bits], bits)
