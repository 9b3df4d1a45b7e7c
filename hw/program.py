"""The network engine's layer program: its configuration, its format, one place for both.

A *program* is what ``hw.engine.NetworkEngine`` runs: a header and one descriptor per
layer, sent as *beats* (``program_beat_bits`` wide) through the engine's program stream into
its program memory. A beat holds one field in its low bits (signed fields in two's
complement); fields go in the order of ``header_fields`` and then, layer by layer, of
``layer_fields``:

- the header (``HEADER_FIELDS``): ``fingerprint`` (``engine_fingerprint``: the format
  version, every field's name and width and the engine's parameters; the engine refuses a
  program whose fingerprint is not its own), ``version`` (``PROGRAM_VERSION``), ``layers``,
  ``bank_words`` (weight words per weight bank, every bank padded to this count),
  ``thr_entries`` (threshold-memory entries), ``input_words`` (the image's activation words),
  ``scores`` (the last layer's outputs);
- per layer: the accelerator's configuration (``hw.schedule.CONFIG_FIELDS``, with
  ``wb_base``, ``in_base`` and ``mode`` placing the layer), then the post-processor's
  (``hw.postproc.PostConfig``, each name prefixed ``post_``).

After the program, the engine's weight stream takes ``rows * bank_words`` weight words (bank
by bank) and then ``thr_entries`` threshold entries, each ``threshold_entry_words`` words
(the ``ThresholdEntry`` bits, low word first).

Model: this module is the format's definition; ``hw.engine`` reads it.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
from dataclasses import dataclass

from amaranth.hdl import Shape

from hw.postproc import PostConfig, PostProcessorParams, ThresholdEntry
from hw.schedule import CONFIG_FIELDS, COUNTERS, AcceleratorConfig, config_field_bits

__all__ = ["PROGRAM_VERSION", "HEADER_FIELDS", "EngineConfig", "header_fields",
           "layer_fields", "program_beat_bits", "engine_fingerprint", "encode_beats",
           "threshold_entry_words", "POST_PREFIX", "descriptor_values", "threshold_words",
           "decode_beats", "decode_program"]

#: The program format's version (part of the fingerprint).
PROGRAM_VERSION = 1

#: The header's fields, in beat order.
HEADER_FIELDS = {
    "fingerprint": "engine_fingerprint of the engine the program was compiled for",
    "version": "PROGRAM_VERSION",
    "layers": "layers of the program",
    "bank_words": "weight words per weight bank (every bank padded to this count)",
    "thr_entries": "threshold-memory entries",
    "input_words": "the image's activation words",
    "scores": "outputs of the last layer",
}

#: Post-processor fields are named ``post_<field>`` in a layer's descriptor.
POST_PREFIX = "post_"

_MIN_BEAT_BITS = 16           # the fingerprint is a CRC-16


@dataclass(frozen=True)
class EngineConfig:
    """Everything the network engine's generator takes.

    Members
    -------
    accelerator : hw.schedule.AcceleratorConfig
        The array, its modes and its memories: ``wb_depth`` words per weight bank (every
        layer's weights), ``in_depth`` activation words (a layer's input and output side by
        side), ``pb_depth`` psum words per column.
    post : hw.postproc.PostProcessorParams
        The post-processor; its ``depth`` is the activation buffer's (``in_depth``) and its
        word the accelerator's activation word.
    max_layers : int
        Layers the program memory holds.
    counters : bool
        Per-layer counters (``hw.schedule.COUNTERS``) saved and streamed after each image
        (default); without them the counter stream gives the image's cycles alone.
    builtin : tuple of int, or None
        A program built into the bitstream (its beats, ``Program.beats``): the engine then runs
        that program only, with every descriptor field a constant of the logic (no program
        memory, no descriptor register); the host still sends the program, and one that
        differs from the built-in one in any beat is refused. ``None`` (default): programs are
        loaded at run time.
    """

    accelerator: AcceleratorConfig
    post: PostProcessorParams
    max_layers: int = 8
    counters: bool = True
    builtin: tuple | None = None

    def __post_init__(self):
        a, p = self.accelerator, self.post
        if not isinstance(a, AcceleratorConfig):
            raise TypeError(f"accelerator must be an AcceleratorConfig, not {a!r}")
        if not isinstance(p, PostProcessorParams):
            raise TypeError(f"post must be a PostProcessorParams, not {p!r}")
        n = self.max_layers
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"max_layers must be an integer in [1, 256], not {n!r}")
        if p.depth != a.in_depth:
            raise ValueError(f"the post-processor's depth {p.depth} must equal the activation "
                             f"buffer's in_depth {a.in_depth}")
        if p.word_bits != a.a_word_bits:
            raise ValueError(f"the post-processor's word ({p.word_bits} bits) must equal the "
                             f"accelerator's activation word ({a.a_word_bits} bits)")
        if p.acc_bits > a.acc_bits:
            raise ValueError(f"the post-processor's acc_bits {p.acc_bits} exceed the "
                             f"accelerator's {a.acc_bits}")
        if not isinstance(self.counters, bool):
            raise TypeError(f"counters must be a bool, not {self.counters!r}")
        if self.builtin is not None:
            decode_program(self, self.builtin)      # ValueError if it is not a program

    def n_counter_words(self, layers: int) -> int:
        """Counter words after an image of ``layers`` layers: each layer's
        ``hw.schedule.COUNTERS`` (when ``counters``), then the image's cycles."""
        return (layers * len(COUNTERS) if self.counters else 0) + 1

    def without_builtin(self) -> "EngineConfig":
        """The same engine loading its programs at run time."""
        return dataclasses.replace(self, builtin=None)

    @property
    def program_depth(self) -> int:
        """Beats of the program memory: the header and ``max_layers`` descriptors."""
        if self.builtin is not None:
            return len(self.builtin)
        return len(HEADER_FIELDS) + self.max_layers * len(layer_fields(self))


def _width(shape) -> int:
    return Shape.cast(shape).width


def layer_fields(engine: EngineConfig) -> dict[str, tuple[int, bool]]:
    """A layer descriptor's fields in beat order: name -> (width, signed)."""
    fields = {name: (bits, False) for name, bits in
              config_field_bits(engine.accelerator).items()}
    assert list(fields) == list(CONFIG_FIELDS)
    for name, field in PostConfig(engine.post):
        shape = Shape.cast(field.shape)
        fields[POST_PREFIX + name] = (shape.width, shape.signed)
    return fields


def _header_counts(engine: EngineConfig) -> dict[str, tuple[int, bool]]:
    a = engine.accelerator

    def bits(n):
        return (max(1, int(n).bit_length()), False)
    return {"layers": bits(engine.max_layers), "bank_words": bits(a.wb_depth),
            "thr_entries": bits(engine.post.thr_depth), "input_words": bits(a.in_depth),
            "scores": bits(a.pb_depth * a.cols)}


def header_fields(engine: EngineConfig) -> dict[str, tuple[int, bool]]:
    """The header's fields in beat order: name -> (width, signed)."""
    beat = program_beat_bits(engine)
    return {"fingerprint": (_MIN_BEAT_BITS, False), "version": (beat, False),
            **_header_counts(engine)}


def program_beat_bits(engine: EngineConfig) -> int:
    """Width of a program beat: the widest field, at least 16."""
    widths = [w for w, _ in (*layer_fields(engine).values(), *_header_counts(engine).values())]
    return max(_MIN_BEAT_BITS, *widths)


def threshold_entry_words(engine: EngineConfig) -> int:
    """Weight-stream words per threshold entry."""
    bits = ThresholdEntry(engine.post).size
    return -(-bits // engine.accelerator.w_word_bits)


def engine_fingerprint(engine: EngineConfig) -> int:
    """CRC-16 of the format version, every field's name and width, and the engine's
    parameters: a program compiled for another engine (or format) has another.

    The CRC is CRC-16/CCITT-FALSE (``binascii.crc_hqx`` from 0xFFFF), the host link's."""
    parts = [f"v{PROGRAM_VERSION}"]
    parts += [f"{n}:{w}:{int(s)}" for n, (w, s) in layer_fields(engine).items()]
    parts += [f"{n}={v}" for n, v in sorted(engine.accelerator.to_dict().items())]
    parts += [f"{n}={getattr(engine.post, n)}" for n in sorted(vars(engine.post))]
    parts.append(f"max_layers={engine.max_layers}")
    if not engine.counters:
        parts.append("counters=0")
    return binascii.crc_hqx(";".join(parts).encode(), 0xFFFF)


def encode_beats(fields: dict[str, tuple[int, bool]], values: dict[str, int]) -> list[int]:
    """The beats of ``values`` in the order of ``fields`` (signed values in two's complement
    of their width). ``ValueError`` naming a value that does not fit its field."""
    beats = []
    for name, (width, signed) in fields.items():
        if name not in values:
            raise ValueError(f"no value for field {name!r}")
        v = int(values[name])
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"field {name} = {v} does not fit its {width} bits; allowed: "
                             f"[{lo}, {hi}]")
        beats.append(v & ((1 << width) - 1))
    return beats


def decode_beats(fields: dict[str, tuple[int, bool]], beats) -> dict[str, int]:
    """The values of ``beats`` in the order of ``fields`` (``encode_beats`` undone)."""
    values = {}
    for (name, (width, signed)), beat in zip(fields.items(), beats, strict=True):
        v = int(beat) & ((1 << width) - 1)
        values[name] = v - (1 << width) if signed and v >> (width - 1) else v
    return values


def decode_program(engine: EngineConfig, beats) -> tuple[dict[str, int], list[dict[str, int]]]:
    """(header, one descriptor per layer) of a program's beats for ``engine``: ``ValueError``
    (one line) when the beats are not a whole program of this engine's format."""
    beats = tuple(beats)
    head, fields = header_fields(engine), layer_fields(engine)
    if len(beats) < len(head) or any(isinstance(b, bool) or not isinstance(b, int) or b < 0
                                     for b in beats):
        raise ValueError(f"a program is {len(head)} header beats and its layers' descriptors "
                         f"(non-negative integers), not {len(beats)} beats")
    header = decode_beats(head, beats[:len(head)])
    n = header["layers"]
    if header["fingerprint"] != engine_fingerprint(engine) or \
            header["version"] != PROGRAM_VERSION:
        raise ValueError(f"the program's fingerprint {header['fingerprint']:#06x} / version "
                         f"{header['version']} are not this engine's "
                         f"({engine_fingerprint(engine):#06x} / {PROGRAM_VERSION})")
    if not 1 <= n <= engine.max_layers or len(beats) != len(head) + n * len(fields):
        raise ValueError(f"the program has {n} layers in {len(beats)} beats; allowed: 1 to "
                         f"{engine.max_layers} layers of {len(fields)} beats after the "
                         f"{len(head)} of the header")
    layers = [decode_beats(fields, beats[len(head) + k * len(fields):
                                         len(head) + (k + 1) * len(fields)])
              for k in range(n)]
    return header, layers


def _int(value) -> int:
    """An enumeration member's value, or the integer itself."""
    return int(value.value) if isinstance(value, enum.Enum) else int(value)


def descriptor_values(config: dict, post: dict) -> dict[str, int]:
    """A layer descriptor's values by field name (``layer_fields``): the accelerator's
    configuration ``config`` (``hw.schedule.CONFIG_FIELDS``) and the post-processor's
    ``post`` (``hw.postproc.PostConfig``, each name prefixed ``post_``; enumeration members
    as their values)."""
    values = {name: _int(v) for name, v in config.items()}
    values.update({POST_PREFIX + name: _int(v) for name, v in post.items()})
    return values


def threshold_words(engine: EngineConfig, entry: dict) -> list[int]:
    """The weight-stream words of one threshold entry (a ``ThresholdEntry`` dict,
    ``hw.postproc.threshold_entries``): its bits, ``w_word_bits`` per word, low word first
    (``threshold_entry_words`` of them)."""
    bits = ThresholdEntry(engine.post).const(entry).as_bits()
    width = engine.accelerator.w_word_bits
    mask = (1 << width) - 1
    return [(bits >> (k * width)) & mask for k in range(threshold_entry_words(engine))]
