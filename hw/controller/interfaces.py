"""What the controller's parts tell each other: typed signatures and data layouts.

Each signature is seen from the part that drives it (``Out`` members are its outputs); the
part that listens has it flipped (``In(...)``) and ``wiring.connect`` joins the two.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from hw.pe import addr_bits
from hw.schedule import CONFIG_FIELDS, AcceleratorConfig, config_field_bits, config_limits

__all__ = ["config_layout", "dot_state_layout", "Progress", "SequencerStatus", "RowFlags",
           "DotEvents", "Limits"]


class Limits:
    """The configuration limits and field widths of an accelerator, with counter helpers."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.values = config_limits(config)
        self.bits = config_field_bits(config)

    def __getitem__(self, name: str) -> int:
        return self.values[name]


def config_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Layout of the configuration register (fields of ``config_field_bits`` widths)."""
    bits = config_field_bits(config)
    return data.StructLayout({name: unsigned(bits[name]) for name in CONFIG_FIELDS})


def dot_state_layout(config: AcceleratorConfig) -> data.StructLayout:
    """What a PE row needs to know about a dot.

    ``pp``/``bp`` (its filter and input banks), ``fb`` (its filter's first scratchpad word,
    ``mi * q * S``), ``fu`` (its output column times the stride), ``lo``/``hi`` (the taps it
    runs), ``vlo``/``vhi`` (those inside the image; ``vlo > vhi`` when none is), ``paddr``
    (its psum address), ``kr_first`` (first row fold: it starts from 0), ``kv_last`` (last
    column fold: ``cols_last`` columns)."""
    lim = config_limits(config)
    taps = unsigned(max(1, lim["S"].bit_length()))
    return data.StructLayout({
        "pp": unsigned(1), "bp": unsigned(1),
        "fb": unsigned(addr_bits(config.filter_spad)),
        "fu": unsigned(max(1, lim["FsegU"].bit_length())),
        "lo": taps, "hi": taps, "vlo": taps, "vhi": taps,
        "paddr": unsigned(addr_bits(config.pb_depth)),
        "kr_first": unsigned(1), "kv_last": unsigned(1),
    })


class Progress(wiring.Signature):
    """A loader's progress: ``done``, how many passes (blocks) it has written."""

    def __init__(self, limit: int):
        super().__init__({"done": Out(range(limit + 1))})


class SequencerStatus(wiring.Signature):
    """What the loaders need from the compute sequencer: ``running``, how many passes and
    blocks row 0 has entered, and which filter and input banks a row still reads."""

    def __init__(self, passes: int, blocks: int):
        super().__init__({
            "running": Out(1),
            "passes_entered": Out(range(passes + 1)),
            "blocks_entered": Out(range(blocks + 1)),
            "filter_bank_busy": Out(2), "input_bank_busy": Out(2),
        })


class RowFlags(wiring.Signature):
    """Per PE row and input bank, set by the input loader for the block it loads: ``used``
    (the row holds a reduction unit) and ``last_cg`` (its channel group is the last one)."""

    def __init__(self, rows: int):
        super().__init__({"used": Out(data.ArrayLayout(2, rows)),
                          "last_cg": Out(data.ArrayLayout(2, rows))})


class DotEvents(wiring.Signature):
    """For the psum unit: ``top`` (row 0 runs the first slot of this dot now) and
    ``bottom`` (the bottom row runs the last slot of this dot now), each valid for one
    cycle."""

    def __init__(self, config: AcceleratorConfig):
        layout = dot_state_layout(config)
        super().__init__({"top_valid": Out(1), "top": Out(layout),
                          "bottom_valid": Out(1), "bottom": Out(layout)})

