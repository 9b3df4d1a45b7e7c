"""Access counts of a layer under the RS, WS, OS and NLR dataflows, and the mapping search.

The analysis follows the framework of the Eyeriss paper (Chen, Emer, Sze, ISCA 2016, section
V): a storage hierarchy of off-chip DRAM, a global buffer (GLB), the PE array's
interconnect (``array``) and a register file (RF) in each PE, and for each data type

- inputs and weights: ``a`` DRAM reads, ``ab`` GLB reads, ``abc`` array deliveries (one per
  receiving PE) and ``abcd`` RF reads, where ``abcd`` is the number of MACs that use the
  datum;
- partial sums: ``2a - 1`` DRAM accesses, ``2a(b - 1)`` GLB accesses, ``ab(c - 1)`` array
  transfers and ``2abc(d - 1)`` RF accesses, where ``abcd`` is the accumulation length.

As in the paper, the one-time writes that fill a level from its parent are not counted
separately, and an access moves one word of the data type. Where a dataflow keeps no copy
of a data type in the RF (the RF is *bypassed*), the ALU takes the operand straight from the
array (``d = 1``) and no RF access is counted for it.

The reuse factors are not written by hand per dataflow: each mapping is a loop nest

``[DRAM loops] GLB [GLB loops] [spatial loops over PEs] [PE loops] RF [RF-resident tile]``

over the seven dimensions N, M, C, E, F, R, S, and a generic tile analysis gives the counts:
a level holds one tile and is refilled whenever a loop above it that indexes the data type
advances. Loops over other dimensions inside the innermost such loop leave the data
stationary; a step of that innermost loop fetches only what is new (for inputs, the new rows
or columns of the sliding window, with the gaps a stride wider than the filter tile leaves);
any other change of tile refetches all of it. A *pass* is one iteration of the loops above
the spatial ones: a word the PEs need during a pass is read from the GLB once and delivered to
every PE that needs it (multicast, or forwarded PE to PE), so spatial loops over a dimension
a data type does not depend on multicast it, and spatial loops over a reduction dimension add
partial sums across PEs (array transfers). ``tests/sim/test_energy.py`` checks every count
against a walk of the loop nest that tracks the exact words each tile holds.
Dimensions that do not divide evenly are padded up to the mapping's tiles; the counts of a
data type are scaled by its real / padded volume (a partial tile still costs one refetch of
what it needs), and per-MAC counts use the real MACs.

Each dataflow fixes which dimensions may be spatial, which data types the RF holds and which
dimensions the PE iterates (``DATAFLOWS``); the search enumerates RF tiles that fill the RF,
spatial assignments that use at least half of the PEs the dataflow can use for the layer
(RS: filter rows down the PE rows and output rows across the columns, replicated for
channels and filters, as physical sets; WS: whole filter planes or single taps per PE),
global-buffer tiles that fill the buffer (no dimension among N, M, C, E can be doubled; rows
and filter planes are held whole), and for the GLB and DRAM loop levels one of three orders
each (keeping inputs, weights or partial sums stationary). Sizes tried per dimension are the
powers of two and the whole dimension (RS output rows: every even split of E).
The candidate set does not depend on the cost table, so the least energy is a minimum over
a fixed set: raising any cost can never lower it.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DIMS", "DATA_TYPES", "LEVELS", "DATAFLOWS", "DataflowSpec", "Problem", "Hardware",
    "CandidateCounts", "candidate_counts", "describe",
]

DIMS = ("N", "M", "C", "E", "F", "R", "S")
DATA_TYPES = ("inputs", "weights", "psums")
LEVELS = ("dram", "glb", "array", "rf")
RELEVANT = {"inputs": frozenset("NCEFRS"), "weights": frozenset("MCRS"),
            "psums": frozenset("NMEF")}
# Canonical loop order (outer to inner) inside a group of loops: the sliding-window
# dimensions innermost so that a step fetches only the new rows/columns.
_CANON = ("N", "M", "C", "R", "S", "E", "F")
#: Loop orders of a level: the named data type stays while the loops it ignores run inside.
STATIONARY_ORDERS = {
    x: tuple(d for d in _CANON if d in RELEVANT[x]) + tuple(d for d in _CANON
                                                                 if d not in RELEVANT[x])
    for x in DATA_TYPES
}


@dataclass(frozen=True)
class Hardware:
    """What the dataflow runs on.

    Parameters
    ----------
    pes : int
        Number of processing elements.
    rows, cols : int
        Their arrangement (the row-stationary mapping needs it; the other dataflows use the
        PEs as a flat pool).
    rf_bytes : int
        Register-file bytes per PE (0: no RF).
    glb_bytes : int
        Global-buffer bytes.
    input_bits, weight_bits, psum_bits : int
        Word widths; storage holds words packed at these widths.
    offchip : str
        Off-chip memory the DRAM cost stands for (documentation only).
    """

    pes: int = 256
    rows: int = 16
    cols: int = 16
    rf_bytes: int = 512
    glb_bytes: int = 128 * 1024
    input_bits: int = 16
    weight_bits: int = 16
    psum_bits: int = 16
    offchip: str = "DRAM"

    def __post_init__(self):
        for name in ("pes", "rows", "cols", "glb_bytes", "input_bits", "weight_bits",
                     "psum_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"hardware {name} must be a positive integer, not {value!r}")
        if isinstance(self.rf_bytes, bool) or not isinstance(self.rf_bytes, int) \
                or self.rf_bytes < 0:
            raise ValueError(f"hardware rf_bytes must be an integer >= 0, not {self.rf_bytes!r}")
        if self.rows * self.cols != self.pes:
            raise ValueError(f"hardware arrangement {self.rows}x{self.cols} does not give "
                             f"pes={self.pes}")

    def bits(self, data_type: str) -> int:
        return {"inputs": self.input_bits, "weights": self.weight_bits,
                "psums": self.psum_bits}[data_type]

    def to_dict(self) -> dict:
        return {"pes": self.pes, "rows": self.rows, "cols": self.cols,
                "rf_bytes": self.rf_bytes, "glb_bytes": self.glb_bytes,
                "input_bits": self.input_bits, "weight_bits": self.weight_bits,
                "psum_bits": self.psum_bits, "offchip": self.offchip}


@dataclass(frozen=True)
class Problem:
    """One convolution (one group of it) over a batch: the seven loop bounds and the stride."""

    N: int
    M: int
    C: int
    E: int
    F: int
    R: int
    S: int
    U: int = 1

    @property
    def dims(self) -> dict:
        return {d: getattr(self, d) for d in DIMS}

    @property
    def macs(self) -> int:
        return math.prod(self.dims.values())


@dataclass(frozen=True)
class DataflowSpec:
    """What distinguishes a dataflow: RF contents, spatial dimensions, PE loops.

    ``rf_dims`` are the dimensions of the RF-resident tile (searched), ``pe_order`` the loops
    a PE runs over its RF tile within one pass (full extent of the dimension unless
    ``pe_split``), ``spatial`` the dimensions spread over PEs.
    """

    name: str
    description: str
    rf_keeps: frozenset
    rf_dims: tuple
    rf_full: tuple
    pe_order: tuple
    spatial: tuple
    row_stationary: bool = False


DATAFLOWS = {
    "rs": DataflowSpec(
        "rs", "row stationary: PE(i, j) convolves filter row i with input row j*U + i; "
              "filter rows, input window and partial sums of p filters x q channels in the RF",
        frozenset(DATA_TYPES), ("M", "C"), ("S",), ("F",), ("R", "E", "C", "M"),
        row_stationary=True),
    "ws": DataflowSpec(
        "ws", "weight stationary: each PE keeps one weight in its RF and runs every MAC "
              "that uses it; inputs are broadcast, partial sums move PE to PE",
        frozenset({"weights"}), (), (), ("E", "F"), ("M", "C", "R", "S")),
    "os": DataflowSpec(
        "os", "output stationary: each PE accumulates one output's partial sum in its RF; "
              "inputs and weights arrive through the array for every MAC",
        frozenset({"psums"}), (), (), ("R", "S"), ("E", "F", "M")),
    "nlr": DataflowSpec(
        "nlr", "no local reuse: no RF; inputs multicast across filters, partial sums "
               "added across channels in the array, everything else from the GLB",
        frozenset(), (), (), (), ("M", "C")),
}


def _ceil_div(a, b):
    return -(-a // b)


def _fold_sizes(n: int, limit: int) -> list[int]:
    """Even splits of ``n`` into chunks of at most ``limit``: ceil(n / k) for each k."""
    out = set()
    for k in range(1, n + 1):
        size = _ceil_div(n, k)
        if size <= limit:
            out.add(size)
    return sorted(out)


# ----------------------------------------------------------------------------------------
# The generic tile analysis, vectorised over candidate mappings.

def _span(outputs, taps, U):
    """Distinct input rows under ``outputs`` output rows x ``taps`` filter rows at stride U.

    The windows ``[e*U, e*U + taps)`` overlap or touch when ``U <= taps`` (one run of
    ``(outputs - 1) * U + taps`` rows); with a larger stride they leave gaps.
    """
    return (outputs - 1) * np.minimum(U, taps) + taps


def _footprint(x: str, ext: dict, U) -> np.ndarray:
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
    fp = _footprint(x, ext, U)
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


@dataclass
class CandidateCounts:
    """Access counts of every candidate mapping of one layer group (arrays over candidates).

    ``counts[level][data_type]`` are word accesses, ``macs`` the MACs (all already scaled to
    the real, unpadded layer); ``mappings`` describes each candidate.
    """

    counts: dict
    macs: float
    mappings: object = field(default_factory=list)

    def __len__(self):
        return len(self.mappings)

    def matrix(self) -> np.ndarray:
        """Counts as a (candidates, levels x data types) matrix, in LEVELS x DATA_TYPES order."""
        return np.stack([self.counts[lv][x] for lv in LEVELS for x in DATA_TYPES], axis=1)


def _evaluate(problem: Problem, spec: DataflowSpec, hw: Hardware, trips: dict,
              glb_order: tuple, dram_order: tuple):
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
    scale = {x: _footprint(x, real, U) / _footprint(x, padded, U) for x in DATA_TYPES}
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
        multicast = _footprint(x, ext_arr, U) / (_footprint(x, ext_pe, U) * pes)
        counts["array"][x] = delivered
        counts["glb"][x] = delivered * multicast
        counts["dram"][x] = _fills(dram_loops, x, ext_glb, U) * scale[x]

    outputs = float(problem.N * problem.M * problem.E * problem.F)
    if "psums" in spec.rf_keeps:
        rf_segments = np.minimum(_fills(above_rf, "psums", ext_rf, U) * pes * scale["psums"],
                                 macs)
    else:
        rf_segments = np.full(len(one), macs)
    reduce = _footprint("psums", ext_arr, U) / (_footprint("psums", ext_pe, U) * pes)
    array_results = rf_segments * reduce
    glb_segments = np.minimum(_fills(dram_loops, "psums", ext_glb, U) * scale["psums"],
                              array_results)
    counts["rf"]["psums"] = 2 * (macs - rf_segments)
    counts["array"]["psums"] = rf_segments - array_results
    counts["glb"]["psums"] = 2 * (array_results - glb_segments)
    counts["dram"]["psums"] = 2 * glb_segments - outputs

    rf_bits = sum(_footprint(x, ext_rf, U) * hw.bits(x) for x in spec.rf_keeps) \
        if spec.rf_keeps else np.zeros(len(one))
    glb_bits = sum(_footprint(x, ext_glb, U) * hw.bits(x) for x in DATA_TYPES)
    feasible = (rf_bits <= 8 * hw.rf_bytes) & (glb_bits <= 8 * hw.glb_bytes)
    return counts, feasible, pes


# ----------------------------------------------------------------------------------------
# The mapping spaces.
#
# Only choices that change the counts are enumerated. A loop over N, M or C can run at the PE
# level or at the GLB level with the same counts (the GLB orders include one that puts it
# innermost), so the PE loops are limited to what makes a dataflow what it is: whole rows F
# for RS (the sliding window), whole filter planes R x S for OS, and for WS a number of output
# rows per pass (how far an input streamed from the GLB is reused across the filter plane).

def _sizes(n: int, limit: int | None = None) -> list[int]:
    """Tile sizes worth trying for a dimension of ``n``: powers of two and ``n`` itself."""
    limit = n if limit is None else min(n, limit)
    out = {limit}
    p = 1
    while p <= limit:
        out.add(p)
        p *= 2
    return sorted(out)


def _spatial_options(problem: Problem, spec: DataflowSpec, hw: Hardware) -> list[dict]:
    dims = problem.dims
    options = []
    if spec.row_stationary:
        r_fold = _ceil_div(problem.R, hw.rows)
        r_sp = _ceil_div(problem.R, r_fold)
        for e_sp in _fold_sizes(problem.E, hw.cols):
            sets = (hw.rows // r_sp) * (hw.cols // e_sp)
            for c_sp in _sizes(problem.C, sets):
                for m_sp in _sizes(problem.M, sets // c_sp):
                    options.append({"R": r_sp, "E": e_sp, "C": c_sp, "M": m_sp})
    else:
        # A PE holds a whole filter row/plane or single taps of it: R and S are spread over
        # PEs entirely or not at all (as in 2-D convolution engines).
        choices = [sorted({1, dims[d]}) if d in ("R", "S") else _sizes(dims[d], hw.pes)
                   for d in spec.spatial]
        for combo in itertools.product(*choices):
            if math.prod(combo) <= hw.pes:
                options.append(dict(zip(spec.spatial, combo)))
    # Keep the assignments that use at least half of the PEs this dataflow can use here.
    used = [math.prod(min(dims[d], s) for d, s in o.items()) for o in options]
    best = max(used)
    return [o for o, u in zip(options, used) if 2 * u >= best]


def _rf_tiles(problem: Problem, spec: DataflowSpec, hw: Hardware, per_pe: dict) -> list[dict]:
    """RF-resident tiles that fit and fill the RF (no searched dimension can be doubled)."""
    if not spec.rf_keeps:
        return [{}]
    choices = [_sizes(per_pe[d]) for d in spec.rf_dims]
    fitting = {}
    for combo in itertools.product(*choices):
        tile = dict(zip(spec.rf_dims, combo))
        tile.update({d: per_pe[d] for d in spec.rf_full})
        if _rf_bits(tile, spec, hw, problem.U) <= 8 * hw.rf_bytes:
            fitting[combo] = tile
    tiles = []
    for combo, tile in fitting.items():
        grows = False
        for k, d in enumerate(spec.rf_dims):
            i = choices[k].index(combo[k])
            if i + 1 < len(choices[k]):
                bigger = combo[:k] + (choices[k][i + 1],) + combo[k + 1:]
                grows |= bigger in fitting
        if not grows:
            tiles.append(tile)
    return tiles


def _array_mappings(problem: Problem, spec: DataflowSpec, hw: Hardware) -> list[dict]:
    """RF tiles, PE loops and spatial assignments of one pass (``{(region, dim): trips}``)."""
    dims = problem.dims
    mappings = []
    for sp in _spatial_options(problem, spec, hw):
        per_pe = {d: _ceil_div(dims[d], sp.get(d, 1)) for d in DIMS}
        pe_choices = [_fold_sizes_pow2(per_pe[d]) if d == "E" else [per_pe[d]]
                      for d in spec.pe_order]
        for tile in _rf_tiles(problem, spec, hw, per_pe):
            for pe_combo in itertools.product(*pe_choices):
                m = {("sp", d): s for d, s in sp.items() if s > 1}
                m.update({("rf", d): s for d, s in tile.items() if s > 1})
                for d, s in zip(spec.pe_order, pe_combo):
                    trips = _ceil_div(s, tile.get(d, 1))
                    if trips > 1:
                        m[("pe", d)] = trips
                mappings.append(m)
    return mappings


def _fold_sizes_pow2(n: int) -> list[int]:
    """ceil(n / 2**k) for k = 0, 1, ...: halving splits of a dimension."""
    out, k = set(), 1
    while True:
        out.add(_ceil_div(n, k))
        if k >= n:
            return sorted(out)
        k *= 2


def _rf_bits(tile: dict, spec: DataflowSpec, hw: Hardware, U: int) -> int:
    ext = {d: tile.get(d, 1) for d in DIMS}
    return sum(int(_footprint(x, ext, U)) * hw.bits(x) for x in spec.rf_keeps)


#: Dimensions the global buffer always holds whole (rows and filter planes).
_GLB_WHOLE = ("F", "R", "S")


def _glb_tiles(problem: Problem, hw: Hardware, pass_ext: dict) -> dict:
    """Global-buffer tiles (trips of passes per dimension) that fit and fill the buffer.

    Returns ``{dim: array of trips}`` over the tiles found (empty arrays if none fits).
    """
    return _glb_tiles_cached(problem, hw.glb_bytes, tuple(hw.bits(x) for x in DATA_TYPES),
                             tuple(pass_ext[d] for d in DIMS))


@functools.lru_cache(maxsize=65536)
def _glb_tiles_cached(problem: Problem, glb_bytes: int, bits: tuple, pass_ext: tuple) -> dict:
    dims = problem.dims
    pass_ext = dict(zip(DIMS, pass_ext))
    remaining = {d: _ceil_div(dims[d], pass_ext[d]) for d in DIMS}
    free = [d for d in DIMS if d not in _GLB_WHOLE and remaining[d] > 1]
    choices = [np.array(_sizes(remaining[d])) for d in free]
    # Open grids: axis k varies dimension free[k]; footprints broadcast to the full grid.
    ext = {}
    for d in DIMS:
        if d in free:
            k = free.index(d)
            shape = [1] * len(free)
            shape[k] = len(choices[k])
            ext[d] = (pass_ext[d] * choices[k]).reshape(shape)
        else:  # padded extents, as _evaluate sees them
            ext[d] = pass_ext[d] * remaining[d] if d in _GLB_WHOLE else pass_ext[d]
    total = sum(_footprint(x, ext, problem.U) * b for x, b in zip(DATA_TYPES, bits))
    fits = np.broadcast_to(np.asarray(total) <= 8 * glb_bytes,
                           tuple(len(c) for c in choices))
    maximal = fits.copy()
    for axis in range(len(free)):
        index = [slice(None)] * len(free)
        index[axis] = slice(0, -1)
        source = [slice(None)] * len(free)
        source[axis] = slice(1, None)
        maximal[tuple(index)] &= ~fits[tuple(source)]
    picked = np.nonzero(np.atleast_1d(maximal)) if free else ()
    count = int(np.count_nonzero(maximal))
    tiles = {d: np.full(count, remaining[d]) for d in _GLB_WHOLE}
    for k, d in enumerate(free):
        tiles[d] = choices[k][picked[k]]
    return tiles


def candidate_counts(problem: Problem, dataflow: str, hw: Hardware) -> CandidateCounts:
    """Counts of every candidate mapping of ``problem`` under ``dataflow`` on ``hw``."""
    spec = DATAFLOWS[dataflow]
    dims = problem.dims
    array_keys = [(r, d) for r in ("rf", "pe", "sp") for d in DIMS]
    scalars = {k: [] for k in array_keys}
    lengths, glb_parts, dram_parts = [], {d: [] for d in DIMS}, {d: [] for d in DIMS}
    for array_map in _array_mappings(problem, spec, hw):
        pass_ext = {d: math.prod(array_map.get((r, d), 1) for r in ("rf", "pe", "sp"))
                    for d in DIMS}
        glb = _glb_tiles(problem, hw, pass_ext)
        count = len(glb["F"])
        if not count:
            continue
        lengths.append(count)
        for k in array_keys:
            scalars[k].append(array_map.get(k, 1))
        for d in DIMS:
            g = glb.get(d)
            g = np.ones(count, dtype=np.int64) if g is None else g.astype(np.int64)
            glb_parts[d].append(g)
            dram_parts[d].append(_ceil_div(_ceil_div(dims[d], pass_ext[d]), g))
    if not lengths:
        raise ValueError(f"no legal {dataflow.upper()} mapping of layer {problem} fits "
                         f"RF {hw.rf_bytes} B/PE and GLB {hw.glb_bytes} B")
    trips = {k: np.repeat(np.array(v, dtype=np.int64), lengths) for k, v in scalars.items()}
    for d in DIMS:
        trips[("glb", d)] = np.concatenate(glb_parts[d])
        trips[("dram", d)] = np.concatenate(dram_parts[d])
    all_counts = {lv: {x: [] for x in DATA_TYPES} for lv in LEVELS}
    orders, rows = [], []
    for glb_stay in DATA_TYPES:
        for dram_stay in DATA_TYPES:
            counts, feasible, _ = _evaluate(problem, spec, hw, trips,
                                            STATIONARY_ORDERS[glb_stay],
                                            STATIONARY_ORDERS[dram_stay])
            keep = np.nonzero(feasible)[0]
            for lv in LEVELS:
                for x in DATA_TYPES:
                    all_counts[lv][x].append(counts[lv][x][keep])
            orders += [(glb_stay, dram_stay)] * len(keep)
            rows.append(keep)
    if not orders:
        raise ValueError(f"no legal {dataflow.upper()} mapping of layer {problem} fits "
                         f"RF {hw.rf_bytes} B/PE and GLB {hw.glb_bytes} B")
    counts = {lv: {x: np.concatenate(all_counts[lv][x]) for x in DATA_TYPES}
              for lv in LEVELS}
    # Candidates with identical counts cost the same under every cost table: keep one.
    matrix = np.stack([counts[lv][x] for lv in LEVELS for x in DATA_TYPES], axis=1)
    keep = np.sort(np.unique(matrix, axis=0, return_index=True)[1])
    counts = {lv: {x: counts[lv][x][keep] for x in DATA_TYPES} for lv in LEVELS}
    rows = np.concatenate(rows)[keep]
    trips = {k: v[rows] for k, v in trips.items()}
    orders = [orders[i] for i in keep]
    return CandidateCounts(counts, float(problem.macs),
                           _Mappings(trips, np.arange(len(keep)), orders))


class _Mappings:
    """Lazy list of candidate mappings (built on access; there can be many)."""

    def __init__(self, trips, rows, orders):
        self._trips, self._rows, self._orders = trips, rows, orders

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, i):
        row = self._rows[i]
        loops = {k: int(v[row]) for k, v in self._trips.items() if int(v[row]) > 1}
        pes = math.prod(n for (r, _), n in loops.items() if r == "sp")
        glb_stay, dram_stay = self._orders[i]
        return {"loops": loops, "glb_order": glb_stay, "dram_order": dram_stay,
                "pes_used": pes}


def describe(mapping: dict) -> str:
    """A one-line description of a mapping, e.g. ``sp R3 E13 C2 M2 | rf M4 C8 S3 | ...``."""
    parts = []
    for region in ("sp", "rf", "pe", "glb", "dram"):
        loops = {d: n for (r, d), n in mapping["loops"].items() if r == region}
        if loops:
            parts.append(region + " " + " ".join(f"{d}{loops[d]}" for d in DIMS if d in loops))
    text = " | ".join(parts) + f" | glb-order {mapping['glb_order']}, " \
        f"dram-order {mapping['dram_order']}"
    runs = mapping.get("batch_runs", 1)
    return text if runs == 1 else f"batch in {runs} runs of: {text}"
