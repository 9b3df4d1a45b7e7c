"""Access counts of one mapping: the generic tile analysis of a loop nest.

The framework is the Eyeriss paper's (Chen, Emer, Sze, ISCA 2016, section VI-C): a storage
hierarchy of off-chip DRAM, a global buffer (GLB), the PE array's interconnect (``array``)
and a register file (RF) in each PE, and for each data type

- inputs and weights (eq. 3): ``a`` DRAM reads, ``ab`` GLB reads, ``abc`` array deliveries
  (one per receiving PE) and ``abcd`` RF reads, where ``abcd`` is the number of MACs that
  use the datum;
- partial sums (eq. 4): ``2a - 1`` DRAM accesses, ``2a(b - 1)`` GLB accesses, ``ab(c - 1)``
  array transfers and ``2abc(d - 1)`` RF accesses, where ``abcd`` is the accumulation
  length.

As in the paper, the one-time writes that fill a level from its parent are not counted
separately, and an access moves one word of the data type. Where a dataflow keeps no copy
of a data type in the RF (the RF is *bypassed*), the ALU takes the operand straight from the
array (``d = 1``) and no RF access is counted for it.

The reuse factors are not written by hand per dataflow: each mapping is a loop nest

``[DRAM loops] GLB [GLB loops] [spatial loops over PEs] [PE loops] RF [RF-resident tile]``

over the seven dimensions N, M, C, E, F, R, S, and a level holds one tile and is refilled
whenever a loop above it that indexes the data type advances. Loops over other dimensions
inside the innermost such loop leave the data stationary; a step of that innermost loop
fetches only what is new (for inputs, the new rows or columns of the sliding window, with
the gaps a stride wider than the filter tile leaves); any other change of tile refetches
all of it. A *pass* is one iteration of the loops above the spatial ones: a word the PEs
need during a pass is read from the GLB once and delivered to every PE that needs it
(multicast, or forwarded PE to PE), so spatial loops over a dimension a data type does not
depend on multicast it, and spatial loops over a reduction dimension add partial sums
across PEs (array transfers). ``tests/sim/test_energy_counts.py`` checks every count
against a walk of the loop nest that tracks the exact words each tile holds.

Dimensions that do not divide evenly are padded up to the mapping's tiles; the counts of a
data type are scaled by its real / padded volume (a partial tile still costs one refetch of
what it needs), and per-MAC counts use the real MACs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.shapes import LayerShape
from sim.energy.hardware import Hardware
from sim.energy.specs import DATA_TYPES, DIMS, LEVELS, RELEVANT, DataflowSpec

__all__ = ["Problem", "evaluate", "footprint"]


@dataclass(frozen=True)
class Problem:
    """The loop bounds of one group of a layer over a batch (the mapping search's view).

    Not a second layer description: build it from the layer's ``LayerShape`` with
    ``Problem.of``.
    """

    N: int
    M: int
    C: int
    E: int
    F: int
    R: int
    S: int
    U: int = 1

    @classmethod
    def of(cls, shape: LayerShape, batch: int = 1) -> Problem:
        """One group of ``shape`` (``M / groups`` filters on ``C / groups`` channels)."""
        g = shape.groups
        return cls(batch, shape.M // g, shape.C // g, shape.E, shape.F, shape.R, shape.S,
                   shape.stride)

    @property
    def dims(self) -> dict:
        return {d: getattr(self, d) for d in DIMS}

    @property
    def macs(self) -> int:
        return math.prod(self.dims.values())


def _span(outputs, taps, U):
    """Distinct input rows under ``outputs`` output rows x ``taps`` filter rows at stride U.

    The windows ``[e*U, e*U + taps)`` overlap or touch when ``U <= taps`` (one run of
    ``(outputs - 1) * U + taps`` rows); with a larger stride they leave gaps.
    """
    return (outputs - 1) * np.minimum(U, taps) + taps


def footprint(x: str, ext: dict, U) -> np.ndarray:
    """Words of ``x`` in a tile of extents ``ext`` (inputs: the window under E x R, F x S)."""
    if x == "weights":
        return ext["M"] * ext["C"] * ext["R"] * ext["S"]
    if x == "psums":
        return ext["N"] * ext["M"] * ext["E"] * ext["F"]
    return ext["N"] * ext["C"] * _span(ext["E"], ext["R"], U) * _span(ext["F"], ext["S"], U)


def _step_fraction(x: str, dim: str, ext: dict, U) -> np.ndarray | float:
    """Share of a tile that is new when a loop over ``dim`` advances by one tile.

    Outputs advancing by ``e`` rows bring ``e * min(U, r)`` new input rows; filter rows
    advancing by ``r`` bring ``(e - 1) * (min(U, 2r) - min(U, r)) + r`` (both count the
    rows of the union of the two tiles that the first one lacks).
    """
    if x != "inputs" or dim in ("N", "C"):
        return 1.0
    outs, taps = ("E", "R") if dim in ("E", "R") else ("F", "S")
    e, r = ext[outs], ext[taps]
    if dim in ("E", "F"):
        new = e * np.minimum(U, r)
    else:
        new = (e - 1) * (np.minimum(U, 2 * r) - np.minimum(U, r)) + r
    return new / _span(e, r, U)


def _fills(loops: list, x: str, ext: dict, U) -> np.ndarray:
    """Words of ``x`` brought into a level whose tile is ``ext``, under ``loops`` (outer first).

    The tile is refetched when the innermost loop that indexes ``x`` advances (only the new
    part for a sliding window), and wholly again for every iteration of the loops outside it.
    """
    fp = footprint(x, ext, U)
    shape = np.shape(fp)
    found = np.zeros(shape, dtype=bool)
    outer = np.ones(shape)
    sweep = fp * 1.0
    for dim, trips in reversed(loops):
        trips = np.broadcast_to(trips, shape)
        if dim in RELEVANT[x]:
            first = ~found & (trips > 1)
            frac = _step_fraction(x, dim, ext, U)
            sweep = np.where(first, fp + (trips - 1) * fp * frac, sweep)
            outer = np.where(found, outer * trips, outer)
            found |= first
        else:
            outer = np.where(found, outer * trips, outer)
    return outer * sweep


def evaluate(problem: Problem, spec: DataflowSpec, hw: Hardware, trips: dict, glb_order: tuple,
             dram_order: tuple):
    """Counts and feasibility of candidates sharing one loop-order skeleton.

    ``trips[(region, dim)]`` are integer arrays over candidates, region in rf, pe, sp, glb,
    dram (missing entries are 1).
    """
    U = problem.U
    one = np.ones(len(next(iter(trips.values()))), dtype=np.int64)

    def t(region, dim):
        return trips.get((region, dim), one)

    ext_rf = {d: t("rf", d) for d in DIMS}
    ext_pe = {d: ext_rf[d] * t("pe", d) for d in DIMS}
    ext_arr = {d: ext_pe[d] * t("sp", d) for d in DIMS}
    ext_glb = {d: ext_arr[d] * t("glb", d) for d in DIMS}
    padded = {d: ext_glb[d] * t("dram", d) for d in DIMS}
    real = {d: np.full(len(one), v) for d, v in problem.dims.items()}
    # Padding a dimension inflates the data that depends on it: scale each data type by its
    # real / padded volume (a partial tile still costs one refetch of what it needs).
    scale = {x: footprint(x, real, U) / footprint(x, padded, U) for x in DATA_TYPES}
    macs = float(problem.macs)
    pes = np.prod(np.stack([t("sp", d) for d in DIMS]).astype(float), axis=0)

    dram_loops = [(d, t("dram", d)) for d in dram_order]
    above_rf = dram_loops + [(d, t("glb", d)) for d in glb_order] + \
        [(d, t("pe", d)) for d in spec.pe_order]

    counts = {lv: {} for lv in LEVELS}
    for x in ("inputs", "weights"):
        if x in spec.rf_keeps:
            delivered = _fills(above_rf, x, ext_rf, U) * pes * scale[x]
            counts["rf"][x] = np.full(len(one), macs)
        else:
            delivered = np.full(len(one), macs)
            counts["rf"][x] = np.zeros(len(one))
        multicast = footprint(x, ext_arr, U) / (footprint(x, ext_pe, U) * pes)
        counts["array"][x] = delivered
        counts["glb"][x] = delivered * multicast
        counts["dram"][x] = _fills(dram_loops, x, ext_glb, U) * scale[x]

    outputs = float(problem.N * problem.M * problem.E * problem.F)
    if "psums" in spec.rf_keeps:
        rf_segments = np.minimum(_fills(above_rf, "psums", ext_rf, U) * pes * scale["psums"],
                                 macs)
    else:
        rf_segments = np.full(len(one), macs)
    reduce = footprint("psums", ext_arr, U) / (footprint("psums", ext_pe, U) * pes)
    array_results = rf_segments * reduce
    glb_segments = np.minimum(_fills(dram_loops, "psums", ext_glb, U) * scale["psums"],
                              array_results)
    counts["rf"]["psums"] = 2 * (macs - rf_segments)
    counts["array"]["psums"] = rf_segments - array_results
    counts["glb"]["psums"] = 2 * (array_results - glb_segments)
    counts["dram"]["psums"] = 2 * glb_segments - outputs

    rf_bits = sum(footprint(x, ext_rf, U) * hw.bits(x) for x in spec.rf_keeps) \
        if spec.rf_keeps else np.zeros(len(one))
    glb_bits = sum(footprint(x, ext_glb, U) * hw.bits(x) for x in DATA_TYPES)
    feasible = (rf_bits <= 8 * hw.rf_bytes) & (glb_bits <= 8 * hw.glb_bytes)
    return counts, feasible, pes

