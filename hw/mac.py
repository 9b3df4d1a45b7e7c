"""The MAC cell: a product unit and an accumulator that cannot overflow, on stream handshakes."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.units import check_unit, product_unit
from model.ops import accumulator_width

__all__ = ["MacCell", "MAC_LATENCY", "check_mac"]

#: Cycles from accepting the last beat of a sum to the sum on ``o_stream`` (valid high).
MAC_LATENCY = 1


def check_mac(scheme: str, *, a_bits: int, w_bits: int | None = None, fan_in: int) -> int:
    """The accumulator width of a ``MacCell`` with these arguments, every one checked
    (``ValueError`` naming the bad value); builds nothing."""
    width = accumulator_width(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    check_unit(scheme, a_bits=a_bits, w_bits=w_bits)
    return width


class MacCell(wiring.Component):
    """Sum of ``fan_in`` exact products, one (activation, weight) pair per cycle.

    Each beat accepted on ``i_stream`` carries an activation code ``a``, a weight code ``w``
    (the encodings of ``hw.units``) and ``last``, which ends a sum. The product unit of
    ``scheme`` (``hw.units.product_unit``) feeds a signed accumulator of
    ``model.ops.accumulator_width(scheme, a_bits=, w_bits=, fan_in=)`` bits, so a sum of up to
    ``fan_in`` beats cannot overflow (longer sums are the caller's error). The accumulator is
    only clocked when it must change: a beat whose weight has level 0 (the unit's ``skip``)
    costs no accumulator toggle. The accumulator itself is ``o_stream.payload``: once a sum
    is complete it is held there with ``valid`` high until ``o_stream.ready``; the cycle it
    is taken, the next sum may already start (its first product replaces it).

    ``clear`` (synchronous, priority over everything) drops the sum in progress and any sum
    not yet taken; ``i_stream.ready`` is low while ``clear`` is high.

    Latency: ``MAC_LATENCY`` = 1 cycle from accepting the ``last`` beat to ``o_stream.valid``.
    Throughput: one beat per cycle; ``i_stream.ready`` is low only while a finished sum waits
    with ``o_stream.ready`` low (or during ``clear``). ``o_stream.valid`` does not depend on
    ``o_stream.ready``; ``i_stream.ready`` does (combinationally).

    Model: the sum of ``model.ops.product(scheme, a, w, a_bits=, w_bits=)`` over the beats of
    each sum.

    Parameters
    ----------
    scheme : str
        Scheme name (``model.quant.SCHEMES``).
    a_bits, w_bits : int
        Code widths as for ``hw.units.product_unit``.
    fan_in : int
        Largest number of beats in one sum (sizes the accumulator).

    Members
    -------
    i_stream : In(stream.Signature(StructLayout({"a": a, "w": w, "last": 1})))
    o_stream : Out(stream.Signature(signed(accumulator_width)))
    clear : In(1)
    """

    def __init__(self, scheme: str, *, a_bits: int, w_bits: int | None = None, fan_in: int):
        # Every argument is checked before any hardware is built (check_mac).
        self._acc_width = check_mac(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
        self._unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits)
        self._fan_in = int(fan_in)
        self._beat_layout = data.StructLayout({
            "a": self._unit.a.shape(), "w": self._unit.w.shape(), "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self._beat_layout)),
            "o_stream": Out(stream.Signature(signed(self._acc_width))),
            "clear": In(1),
        })

    @property
    def unit(self):
        """The product unit (a ``hw.units`` component)."""
        return self._unit

    @property
    def scheme(self) -> str:
        return self._unit.scheme

    @property
    def a_bits(self) -> int:
        return self._unit.a_bits

    @property
    def w_bits(self) -> int:
        return self._unit.w_bits

    @property
    def fan_in(self) -> int:
        """Largest number of beats in one sum."""
        return self._fan_in

    @property
    def acc_width(self) -> int:
        """Width of the signed accumulator (``model.ops.accumulator_width``)."""
        return self._acc_width

    @property
    def beat_layout(self) -> data.StructLayout:
        """Layout of an ``i_stream`` beat: ``a`` in the low bits, then ``w``, then ``last``."""
        return self._beat_layout

    @property
    def latency(self) -> int:
        return MAC_LATENCY

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        beat = self.i_stream.payload
        m.d.comb += [unit.a.eq(beat.a), unit.w.eq(beat.w)]
        skip = unit.skip if unit.can_skip else Const(0, 1)

        acc = self.o_stream.payload
        done = self.o_stream.valid
        accept = Signal()
        taken = Signal()
        m.d.comb += [
            self.i_stream.ready.eq(~self.clear & (~done | self.o_stream.ready)),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            taken.eq(done & self.o_stream.ready),
        ]
        # A finished sum is replaced, not added to, when the next one starts.
        running = Mux(done, 0, acc)

        with m.If(self.clear):
            m.d.sync += [acc.eq(0), done.eq(0)]
        with m.Else():
            with m.If(accept & ~skip):
                m.d.sync += acc.eq(running + unit.p)
            with m.Elif(taken):
                m.d.sync += acc.eq(0)
            with m.If(accept & beat.last):
                m.d.sync += done.eq(1)
            with m.Elif(taken):
                m.d.sync += done.eq(0)
        return m
