"""Byte streams to word streams and back, for the host link's design side.

A word of ``width`` bits travels as ``word_bytes(width)`` bytes, least significant first
(``boards.protocol.pack_words`` / ``unpack_words``).
"""

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from boards.protocol import word_bytes

__all__ = ["BytesToWords", "WordsToBytes", "WordMuxToBytes", "connect_target"]


class BytesToWords(wiring.Component):
    """Assemble words from little-endian bytes.

    Latency: a word is offered the cycle after its last byte is taken. Throughput: one byte
    per cycle; no byte is taken while a finished word waits for ``o_stream.ready``.
    Model: ``boards.protocol.pack_words`` (this is its inverse).

    Parameters
    ----------
    width : int
        Bits per word (the high bits of the last byte beyond ``width`` are dropped).

    Members
    -------
    i_stream : ``In(stream.Signature(8))``
    o_stream : ``Out(stream.Signature(width))``
    """

    def __init__(self, width: int):
        self._width = width
        self._bytes = word_bytes(width)
        super().__init__({"i_stream": In(stream.Signature(8)),
                          "o_stream": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        n = self._bytes
        shifter = Signal(8 * n)
        count = Signal(range(n + 1))
        full = count == n
        m.d.comb += [self.o_stream.payload.eq(shifter[:self._width]),
                     self.o_stream.valid.eq(full), self.i_stream.ready.eq(~full)]
        with m.If(self.i_stream.valid & ~full):
            m.d.sync += [shifter.eq(Cat(shifter[8:], self.i_stream.payload)), count.eq(count + 1)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += count.eq(0)
        return m


class WordsToBytes(wiring.Component):
    """Send each word as little-endian bytes.

    Latency: the first byte is offered the cycle after a word is taken. Throughput: one byte
    per cycle, so one word per ``word_bytes(width)`` cycles.
    Model: ``boards.protocol.unpack_words`` (this is its inverse).

    Parameters
    ----------
    width : int
        Bits per word (sent sign- or zero-agnostic: the bit pattern, padded with zeros).

    Members
    -------
    i_stream : ``In(stream.Signature(width))``
    o_stream : ``Out(stream.Signature(8))``
    """

    def __init__(self, width: int):
        self._width = width
        self._bytes = word_bytes(width)
        super().__init__({"i_stream": In(stream.Signature(width)),
                          "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        n = self._bytes
        shifter = Signal(8 * n)
        left = Signal(range(n + 1))
        m.d.comb += [self.o_stream.payload.eq(shifter[:8]), self.o_stream.valid.eq(left != 0),
                     self.i_stream.ready.eq(left == 0)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [shifter.eq(shifter >> 8), left.eq(left - 1)]
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [shifter.eq(self.i_stream.payload), left.eq(n)]
        return m


class WordMuxToBytes(wiring.Component):
    """Send ``count`` words as little-endian bytes, word 0 first, through a byte multiplexer
    (no copy of the words is kept).

    The words must hold still while they are read (the accelerator's counters do while it is
    idle). A reader that takes all ``count * word_bytes(width)`` bytes is back at word 0,
    byte 0. The byte read is marked by a one-hot ring (one flip-flop per byte) and picked by
    AND-OR: on the iCE40 that is about a third smaller than a multiplexer addressed by a
    binary position.
    Latency: combinational (``o_stream`` is always valid). Throughput: one byte per cycle.
    Model: ``boards.protocol.unpack_words(bytes, width)`` gives back the words.

    Members
    -------
    values : ``In(data.ArrayLayout(width, count))``
    o_stream : ``Out(stream.Signature(8))``
    """

    def __init__(self, count: int, width: int):
        self._count = count
        self._width = width
        self._bytes = word_bytes(width)
        super().__init__({"values": In(data.ArrayLayout(width, count)),
                          "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        n = self._bytes
        pieces = []
        for k in range(self._count):
            word = Signal(8 * n, name=f"word{k}")
            m.d.comb += word.eq(self.values[k])
            pieces += [word[8 * b:8 * b + 8] for b in range(n)]
        selected = Signal(len(pieces), init=1)   # one-hot: the byte offered
        with m.If(self.o_stream.ready):
            m.d.sync += selected.eq(selected.rotate_left(1))
        m.d.comb += [
            self.o_stream.payload.eq(_or_all([piece & selected[i].replicate(8)
                                               for i, piece in enumerate(pieces)])),
            self.o_stream.valid.eq(1),
        ]
        return m


def _or_all(values):
    """The OR of ``values``, as a balanced tree."""
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def connect_target(m: Module, target, *, config, weights, inputs, outputs, counters,
                   config_port, weight_port, input_port) -> None:
    """Join a link target's byte streams (``boards.top.TARGET_SIGNATURE``) to its adapters:
    ``config``, ``weights`` and ``inputs`` (``BytesToWords``) from the host, their words into
    the design's ``config_port``, ``weight_port`` and ``input_port``; ``outputs`` and
    ``counters`` (byte adapters the caller feeds) back to the host."""
    wiring.connect(m, wiring.flipped(target.config_stream), config.i_stream)
    wiring.connect(m, wiring.flipped(target.weights_stream), weights.i_stream)
    wiring.connect(m, wiring.flipped(target.inputs_stream), inputs.i_stream)
    wiring.connect(m, outputs.o_stream, wiring.flipped(target.outputs_stream))
    wiring.connect(m, counters.o_stream, wiring.flipped(target.counters_stream))
    for words, port in ((config.o_stream, config_port), (weights.o_stream, weight_port),
                        (inputs.o_stream, input_port)):
        m.d.comb += [Value.cast(port.payload).eq(words.payload), port.valid.eq(words.valid),
                     words.ready.eq(port.ready)]
