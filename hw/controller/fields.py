"""The field loader: a register of named fields, written one field per beat of a stream.

A configuration (``hw.schedule.CONFIG_FIELDS`` for the accelerator, a post-processing
configuration for the network engine) arrives as beats, one field per beat in the order of
the layout's fields; a field takes the low bits of its beat. ``first`` marks the cycle the
first beat is taken, ``done`` the cycle the last one is.

Latency: a field holds its beat's value from the cycle after the beat. Throughput: one
field per cycle (``i_stream.ready`` is ``enable``).

Model: the layout itself (``fields`` after ``len(layout)`` beats ``b`` is ``{name: b[k] mod
2**width}``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FieldLoader"]


class FieldLoader(wiring.Component):
    """The field loader (see the module docstring).

    Parameters
    ----------
    layout : data.StructLayout
        The fields, in beat order.
    beat_bits : int
        Width of a beat (at least the widest field).

    Members
    -------
    i_stream : In(stream.Signature(beat_bits))
    enable : In(1)
        Take beats (``i_stream.ready``).
    fields : Out(layout)
    first, done : Out(1)
        The first, the last beat is taken this cycle.
    """

    def __init__(self, layout: data.StructLayout, beat_bits: int):
        widest = max(field.width for _, field in layout)
        if beat_bits < widest:
            raise ValueError(f"beat_bits {beat_bits} is narrower than the widest field; "
                             f"allowed: at least {widest}")
        self._layout = layout
        self._names = [name for name, _ in layout]
        super().__init__({"i_stream": In(stream.Signature(beat_bits)), "enable": In(1),
                          "fields": Out(layout), "first": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = len(self._names)
        k = Signal(range(max(2, n)))
        take = Signal()
        m.d.comb += [self.i_stream.ready.eq(self.enable),
                     take.eq(self.enable & self.i_stream.valid),
                     self.first.eq(take & (k == 0)), self.done.eq(take & (k == n - 1))]
        with m.If(take):
            with m.Switch(k):
                for index, name in enumerate(self._names):
                    field = getattr(self.fields, name)
                    with m.Case(index):
                        m.d.sync += field.eq(self.i_stream.payload[:len(field)])
            m.d.sync += k.eq(k + 1)
            with m.If(k == n - 1):
                m.d.sync += k.eq(0)
        return m
