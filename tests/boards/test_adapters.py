"""Byte/word adapters against ``boards.protocol.pack_words`` / ``unpack_words``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.adapters import BytesToWords, WordMuxToBytes, WordsToBytes
from boards.protocol import pack_words, unpack_words, word_bytes


def stream_through(dut, items, *, out_ready=lambda cycle: 1, in_gap=0):
    """Push ``items`` into ``dut.i_stream`` and collect ``dut.o_stream`` until quiet."""
    got = []

    async def producer(ctx):
        for item in items:
            ctx.set(dut.i_stream.payload, item)
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick().until(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
            if in_gap:
                await ctx.tick().repeat(in_gap)

    async def consumer(ctx):
        cycle = 0
        async for _, _, valid, payload in ctx.tick().sample(dut.o_stream.valid,
                                                              dut.o_stream.payload):
            if valid and ctx.get(dut.o_stream.ready):
                got.append(payload)
            cycle += 1
            ctx.set(dut.o_stream.ready, out_ready(cycle))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.run_until(1e-6 * (40 + 4 * len(items) * (1 + in_gap) + 40 * len(items)))
    return got


@pytest.mark.parametrize("bits", [1, 2, 8, 9, 20, 48])
def test_bytes_to_words_is_the_inverse_of_pack_words(bits):
    rng = np.random.default_rng(bits)
    words = [0, (1 << bits) - 1] + [int(w) for w in rng.integers(0, 1 << min(bits, 62), 30)]
    got = stream_through(BytesToWords(bits), list(pack_words(words, bits)),
                         out_ready=lambda cycle: cycle % 3 != 0)
    assert got == words


def test_bytes_to_words_for_a_1008_bit_configuration_word():
    rng = np.random.default_rng(3)
    words = [int.from_bytes(rng.bytes(126), "little") for _ in range(2)] + [(1 << 1008) - 1]
    got = stream_through(BytesToWords(1008), list(pack_words(words, 1008)))
    assert got == words


@pytest.mark.parametrize("bits", [1, 8, 13, 32])
def test_words_to_bytes_gives_pack_words(bits):
    rng = np.random.default_rng(10 + bits)
    words = [0, (1 << bits) - 1] + [int(w) for w in rng.integers(0, 1 << bits, 25)]
    got = stream_through(WordsToBytes(bits), words, out_ready=lambda cycle: cycle % 4 != 1)
    assert bytes(got) == pack_words(words, bits)
    assert unpack_words(bytes(got), bits) == words


def test_signed_words_round_trip_through_the_model():
    words = [-128, -1, 0, 1, 127]
    assert unpack_words(pack_words(words, 8), 8, signed=True) == words
    assert unpack_words(pack_words([-(1 << 19)], 20), 20, signed=True) == [-(1 << 19)]
    with pytest.raises(ValueError, match="does not fit in 8 bits"):
        pack_words([256], 8)
    with pytest.raises(ValueError, match="whole number"):
        unpack_words(b"\x00\x00\x00", 9)
    assert word_bytes(1) == 1 and word_bytes(8) == 1 and word_bytes(9) == 2


@pytest.mark.parametrize("count, width", [(9, 48), (9, 20), (1, 8), (3, 1)])
def test_word_mux_sends_every_word_and_wraps_to_the_first(count, width):
    """Two full reads with dropped ``ready``, seeded random words plus the extremes, equal
    ``pack_words``; nothing is copied, so the second read shows the words as they are then."""
    rng = np.random.default_rng(count * 100 + width)
    first = [0, (1 << width) - 1, *(int(v) for v in rng.integers(0, 1 << width, count))][:count]
    second = [int(v) for v in rng.integers(0, 1 << width, count)]
    dut = WordMuxToBytes(count, width)
    pace = np.random.default_rng(7)
    reads = []

    async def bench(ctx):
        for words in (first, second):
            for k, word in enumerate(words):
                ctx.set(dut.values[k], word)
            got = []
            while len(got) < count * word_bytes(width):
                ready = bool(pace.random() < 0.6)
                ctx.set(dut.o_stream.ready, ready)
                valid, payload = (await ctx.tick().sample(dut.o_stream.valid,
                                                          dut.o_stream.payload))[2:]
                if valid and ready:
                    got.append(payload)
            ctx.set(dut.o_stream.ready, 0)
            await ctx.tick().repeat(2)
            reads.append(bytes(got))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert reads == [pack_words(first, width), pack_words(second, width)]
