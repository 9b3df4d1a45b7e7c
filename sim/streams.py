"""Reusable cocotb pieces for ``valid``/``ready``/``payload`` streams (``amaranth.lib.stream``).

A beat moves at a rising clock edge where ``valid`` and ``ready`` are both high. Both pieces
drive their signals just after a rising edge and look at the settled values in the
``ReadOnly`` phase before the next one, so they see ``ready`` even when the device computes
it combinationally from its own output's ``ready``.

- ``StreamDriver`` offers beats (idle cycles with probability ``1 - p_valid``) and holds each
  one until it is taken; ``valid`` never waits for ``ready``.
- ``StreamMonitor`` drives ``ready`` (high with probability ``p_ready``: random
  back-pressure) and records every beat that moves.
- ``pack_fields``/``unpack_fields`` convert between a dict of field values and the flat
  payload of an ``amaranth.lib.data.StructLayout`` (``fields`` as in the manifests of
  ``hw.generate``: name -> offset, width, signed).

Only ``random`` and cocotb are used, so any testbench can import this module.
"""

from __future__ import annotations

import random

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "pack_fields", "unpack_fields", "to_signed"]


def to_signed(value: int, width: int) -> int:
    """The two's-complement value of the ``width``-bit pattern ``value``."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def pack_fields(fields: dict, values: dict) -> int:
    """Flat payload of ``values`` (name -> int) laid out as ``fields``."""
    word = 0
    for name, field in fields.items():
        value = values[name]
        lo = -(1 << (field["width"] - 1)) if field["signed"] else 0
        hi = (1 << (field["width"] - (1 if field["signed"] else 0))) - 1
        if not lo <= value <= hi:
            raise ValueError(f"field {name!r} holds {value}; allowed: integers in [{lo}, {hi}]")
        word |= (value & ((1 << field["width"]) - 1)) << field["offset"]
    return word


def unpack_fields(fields: dict, word: int) -> dict:
    """Inverse of ``pack_fields``."""
    values = {}
    for name, field in fields.items():
        raw = (word >> field["offset"]) & ((1 << field["width"]) - 1)
        values[name] = to_signed(raw, field["width"]) if field["signed"] else raw
    return values


class StreamDriver:
    """Offers payloads on a stream into the device under test.

    Parameters
    ----------
    clock, valid, ready, payload
        The cocotb handles of the clock and of the stream's signals.
    p_valid : float
        Probability of offering the next beat in a cycle (1.0: no idle cycles).
    rng : random.Random, optional
        Source of the idle cycles (seeded by the caller for reproducible runs).
    """

    def __init__(self, clock, valid, ready, payload, *, p_valid: float = 1.0,
                 rng: random.Random | None = None):
        self.clock, self.valid, self.ready, self.payload = clock, valid, ready, payload
        self.p_valid = p_valid
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.valid.value = 0

    async def send(self, word: int) -> None:
        """Offer ``word`` (the flat payload) after a random idle time; return once taken.

        Call right after a rising edge (or at time 0); returns right after the edge at which
        the beat moved.
        """
        while self.rng.random() >= self.p_valid:
            self.valid.value = 0
            await RisingEdge(self.clock)
        self.valid.value = 1
        self.payload.value = word
        while True:
            await ReadOnly()
            taken = bool(self.ready.value)
            await RisingEdge(self.clock)
            if taken:
                break
        self.valid.value = 0
        self.sent += 1

    async def send_all(self, words) -> None:
        """Send every word in order."""
        for word in words:
            await self.send(word)


class StreamMonitor:
    """Takes beats from a stream out of the device under test, with random back-pressure.

    ``run()`` (start it with ``cocotb.start_soon``) drives ``ready`` every cycle and appends
    each beat that moves to ``received`` (as an int; signed if ``signed``), with the index
    of the clock edge it moved at to ``edges``.
    """

    def __init__(self, clock, valid, ready, payload, *, p_ready: float = 1.0,
                 signed: bool = False, rng: random.Random | None = None):
        self.clock, self.valid, self.ready, self.payload = clock, valid, ready, payload
        self.p_ready = p_ready
        self.signed = signed
        self.rng = rng or random.Random(1)
        self.received: list[int] = []
        self.edges: list[int] = []
        self.ready.value = 0

    async def run(self) -> None:
        edge = 0
        while True:
            self.ready.value = int(self.rng.random() < self.p_ready)
            await ReadOnly()
            if self.valid.value == 1 and self.ready.value == 1:
                value = self.payload.value
                self.received.append(value.to_signed() if self.signed else value.to_unsigned())
                self.edges.append(edge)
            await RisingEdge(self.clock)
            edge += 1

    async def wait_for(self, count: int, *, timeout_cycles: int = 100_000) -> list[int]:
        """Wait until ``count`` beats have moved (``TimeoutError`` after ``timeout_cycles``)."""
        for _ in range(timeout_cycles):
            if len(self.received) >= count:
                return self.received[:count]
            await RisingEdge(self.clock)
        raise TimeoutError(f"only {len(self.received)} of {count} beats arrived in "
                           f"{timeout_cycles} cycles")
