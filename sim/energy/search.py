"""The mapping search: every candidate mapping of a layer under a dataflow, with its counts.

Each dataflow (``sim.energy.specs``) fixes which dimensions may be spatial, which data
types the RF holds and which dimensions the PE iterates; the search enumerates RF tiles that
fill the RF, spatial assignments that use at least half of the PEs the dataflow can use for
the layer (RS: filter rows down the PE rows and output rows across the columns, replicated
for channels and filters, as physical sets -- the paper's logical PE sets folded onto the
physical array, section V-B; the others: whole filter planes or single taps per PE),
global-buffer tiles that fill the buffer (no dimension among N, M, C, E can be doubled;
rows and filter planes are held whole), and for the GLB and DRAM loop levels one of three
orders each (keeping inputs, weights or partial sums stationary). A dataflow that names
its stationary data type (WS: weights, the OS variants: partial sums) keeps that order at
both levels and only the mappings in which the data stays until all its uses are done: a
weight reaches its PE once and serves all N x E x F uses (section IV-A: "Once a weight is
fetched from DRAM to the RF of a PE, the PE runs through all NE^2 operations that use the
same filter weight"), a partial sum is completed in its PE (section IV-B: "The
accumulation of each ofmap pixel stays stationary in a PE"). Where the buffer admits no
such mapping (it would have to hold everything the complete accumulation reads), the legal
mappings are kept and the mapping says ``stationary_kept: False``. Sizes tried per
dimension are the powers of two and the whole dimension (RS output rows: every even split
of E). As in the paper (section VI-C) the search folds every dataflow in the filter, image
and channel dimensions and keeps the least-energy mapping.

The candidate set does not depend on the cost table, so the least energy is a minimum over
a fixed set: raising any cost can never lower it.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from sim.energy.hardware import Hardware
from sim.energy.specs import (DATA_TYPES, DATAFLOWS, DIMS, LEVELS, STATIONARY_ORDERS,
                              DataflowSpec)
from sim.energy.tiles import Problem, evaluate, footprint

__all__ = ["CandidateCounts", "candidate_counts", "describe"]


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
    return sum(int(footprint(x, ext, U)) * hw.bits(x) for x in spec.rf_keeps)


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
        else:  # padded extents, as evaluate sees them
            ext[d] = pass_ext[d] * remaining[d] if d in _GLB_WHOLE else pass_ext[d]
    total = sum(footprint(x, ext, problem.U) * b for x, b in zip(DATA_TYPES, bits))
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


def _stays(spec: DataflowSpec, problem: Problem, counts: dict) -> np.ndarray | bool:
    """Whether each candidate keeps the dataflow's stationary data until all its uses are
    done: every weight reaches an RF once (WS), every partial sum is completed in its PE
    and leaves it once (OS)."""
    if spec.stationary == "weights":
        weights = problem.M * problem.C * problem.R * problem.S
        return np.isclose(counts["array"]["weights"], weights, rtol=1e-9)
    if spec.stationary == "psums":
        outputs = problem.N * problem.M * problem.E * problem.F
        return np.isclose(counts["rf"]["psums"], 2 * (problem.macs - outputs), rtol=1e-9)
    return True


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
    evaluated = []
    stays = (spec.stationary,) if spec.stationary else DATA_TYPES
    for glb_stay in stays:
        for dram_stay in stays:
            counts, feasible, _ = evaluate(problem, spec, hw, trips,
                                           STATIONARY_ORDERS[glb_stay],
                                           STATIONARY_ORDERS[dram_stay])
            evaluated.append(((glb_stay, dram_stay), counts, feasible,
                              feasible & _stays(spec, problem, counts)))
    # Where no legal mapping can keep the stationary data (the buffer cannot hold what it
    # needs meanwhile), the dataflow falls back to the legal ones (marked in the mapping).
    kept = any(np.any(strict) for *_, strict in evaluated)
    all_counts = {lv: {x: [] for x in DATA_TYPES} for lv in LEVELS}
    orders, rows = [], []
    for order, counts, feasible, strict in evaluated:
        keep = np.nonzero(strict if kept else feasible)[0]
        for lv in LEVELS:
            for x in DATA_TYPES:
                all_counts[lv][x].append(counts[lv][x][keep])
        orders += [order] * len(keep)
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
                           _Mappings(trips, np.arange(len(keep)), orders,
                                     kept or not spec.stationary))


class _Mappings:
    """Lazy list of candidate mappings (built on access; there can be many)."""

    def __init__(self, trips, rows, orders, kept=True):
        self._trips, self._rows, self._orders, self._kept = trips, rows, orders, kept

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, i):
        row = self._rows[i]
        loops = {k: int(v[row]) for k, v in self._trips.items() if int(v[row]) > 1}
        pes = math.prod(n for (r, _), n in loops.items() if r == "sp")
        glb_stay, dram_stay = self._orders[i]
        return {"loops": loops, "glb_order": glb_stay, "dram_order": dram_stay,
                "pes_used": pes, "stationary_kept": self._kept}


def describe(mapping: dict) -> str:
    """A one-line description of a mapping, e.g. ``sp R3 E13 C2 M2 | rf M4 C8 S3 | ...``."""
    parts = []
    for region in ("sp", "rf", "pe", "glb", "dram"):
        loops = {d: n for (r, d), n in mapping["loops"].items() if r == region}
        if loops:
            parts.append(region + " " + " ".join(f"{d}{loops[d]}" for d in DIMS if d in loops))
    text = " | ".join(parts) + f" | glb-order {mapping['glb_order']}, " \
        f"dram-order {mapping['dram_order']}"
    if not mapping.get("stationary_kept", True):
        text += " (no legal mapping keeps the stationary data: not kept)"
    runs = mapping.get("batch_runs", 1)
    return text if runs == 1 else f"batch in {runs} runs of: {text}"
