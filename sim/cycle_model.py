"""The mapping of a layer onto the row-stationary array, and its exact cycle and access model.

One place holds the folding arithmetic: the accelerator (``hw.accelerator``) only counts
through the loops this module configures (``config_values``), and ``predict`` computes, from
the layer's shape and the array's parameters alone, the cycles and every counter the RTL
reports (only ``skipped`` needs the weights). Tests assert equality for every layer run.

Mapping (see ``hw.controller``): reduction units ``(cg, r)`` (``q`` channels, one filter
row) down the PE rows; column units ``(gsub, e)`` (``Gc`` filter groups side by side, each
over the ``E`` output rows) across the PE columns; output columns in segments of ``Fseg``;
filters ``p`` at a time. Loop order: row fold ``kr``, column fold ``kv``, segment ``kf``
(one *block*), inner filter group ``g`` (one *pass*).

``mappings`` lists the mappings the controller runs that fit the scratchpads (every
``q``, ``p``, ``Gc``; the longest and the equal-split segments); ``choose_mapping`` takes
the fastest, timing them with ``predict_cycles`` (the cycles of ``predict``, computed with
arrays) in order of ``cycles_lower_bound``. ``utilisation_breakdown`` says where a layer's
cycles go and what utilisation the mapping's fills allow.

For ``xnor`` a layer's channels are packed words: ``C`` counts words of ``lanes`` channels
(``model.ops.xnor_conv2d``), each word is one activation code and one MAC slot.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from model.shapes import LayerShape

__all__ = ["LayerShape", "ArrayParams", "Mapping", "check_mappable", "mappings",
           "choose_mapping", "config_values", "weight_stream_order", "output_stream_order",
           "predict", "memory_depths", "COUNTERS", "cycles_lower_bound", "predict_cycles",
           "utilisation_breakdown", "fastest_shape"]

#: Counter names, in the accelerator's order.
COUNTERS = ("cycles", "macs", "skipped", "rf_reads", "rf_writes", "array_transfers",
            "glb_reads", "glb_writes", "offchip_words")

_MAX_STRIDE = 4         # hw.pe.MAX_STRIDE
_ROW_LIMIT = 1 << 11    # 2 ** (hw.pe.ROW_BITS - 1)


@dataclasses.dataclass(frozen=True)
class ArrayParams:
    """The array's size and its PE scratchpad sizes (entries per bank)."""

    rows: int = 3
    cols: int = 4
    filter_spad: int = 32
    ifmap_spad: int = 32
    psum_spad: int = 32

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclasses.dataclass(frozen=True)
class Mapping:
    """``q`` channels and ``p`` filters per PE, output segments of ``Fseg`` columns, and
    ``Gc`` filter groups side by side across the PE columns (column unit ``v = gsub * E + e``
    computes output row ``e`` of filter group ``g * Gc + gsub``)."""

    q: int
    p: int
    Fseg: int
    Gc: int = 1


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def check_mappable(shape: LayerShape, params: ArrayParams) -> None:
    """Raise ``ValueError`` naming the limit if the layer cannot run on this array at all."""
    s = shape
    for name in ("M", "C", "R", "S", "H", "W"):
        if getattr(s, name) < 1:
            raise ValueError(f"layer dimension {name} must be >= 1, not {getattr(s, name)}")
    if not 1 <= s.stride <= _MAX_STRIDE:
        raise ValueError(f"stride {s.stride} is not supported; allowed: 1 to {_MAX_STRIDE}")
    if s.padding < 0:
        raise ValueError(f"padding must be >= 0, not {s.padding}")
    if s.H + s.padding >= _ROW_LIMIT or (s.E - 1) * s.stride >= _ROW_LIMIT:
        raise ValueError(f"input height {s.H} + padding {s.padding} is over the array's "
                         f"row tags; allowed: below {_ROW_LIMIT}")
    if s.H + 2 * s.padding < s.R or s.W + 2 * s.padding < s.S:
        raise ValueError(f"the {s.R}x{s.S} filter exceeds the padded {s.H}x{s.W} input")
    if s.S > params.filter_spad:
        raise ValueError(f"filter width {s.S} exceeds the filter scratchpad "
                         f"({params.filter_spad} entries)")
    if s.S > params.ifmap_spad:
        raise ValueError(f"filter width {s.S} exceeds the input scratchpad "
                         f"({params.ifmap_spad} entries)")
    if not mappings(shape, params):
        raise ValueError("no mapping fits the scratchpads (filter "
                         f"{params.filter_spad}, input {params.ifmap_spad}, psum "
                         f"{params.psum_spad} entries)")


def _segment_lengths(F: int, fmax: int) -> list[int]:
    """Segment lengths worth trying when segments of up to ``fmax`` columns fit: the
    longest, and for every segment count the equal split ``ceil(F / n)`` (shorter segments
    trade per-pass overheads for a smaller last segment and less input per block)."""
    return sorted({fmax} | {_ceil(F, n) for n in range(_ceil(F, fmax), F + 1)}, reverse=True)


def mappings(shape: LayerShape, params: ArrayParams) -> list[Mapping]:
    """Every mapping the accelerator runs whose scratchpad needs fit.

    ``q`` divides ``C``, ``p`` divides ``M`` and ``Gc`` divides ``M / p`` (the controller
    counts ``Cg = C / q`` channel groups and ``Gi = M / p / Gc`` inner filter groups); every
    such ``Gc`` is tried (more than ``cols`` too: the column folds then cut across filter
    groups). The filter scratchpad holds ``p * q * S`` weights, the input scratchpad ``q``
    rows of ``(F' - 1) * U + S`` words and the psum scratchpad ``p * F'`` sums; segment
    lengths ``F'`` are those of ``_segment_lengths``.
    """
    s = shape
    out = []
    for q in _divisors(s.C):
        for p in _divisors(s.M):
            if p * q * s.S > params.filter_spad:
                continue
            # longest segment: q * ((Fseg - 1) * U + S) <= ifmap, p * Fseg <= psum
            fmax = min(s.F, params.psum_spad // p,
                       (params.ifmap_spad // q - s.S) // s.stride + 1
                       if params.ifmap_spad // q >= s.S else 0)
            if fmax < 1:
                continue
            gcs = _divisors(s.M // p)
            for fseg in _segment_lengths(s.F, fmax):
                out.extend(Mapping(q, p, fseg, gc) for gc in gcs)
    return out


def cycles_lower_bound(shape: LayerShape, params: ArrayParams, mp: Mapping) -> int:
    """A lower bound on ``predict(...)["cycles"]`` from the pass lengths alone (cheap).

    Every pass lasts at least its compute slots and the previous pass's drain, every pass
    but the last at least one filter group's weights (``p * q * S + 1``); before them the
    set-up cycle and the first pass's weights and inputs, after them the last drain. Later
    input loading and extra filter groups per pass are left out.
    """
    s, Y, fo = shape, params.rows, _folds(shape, params, mp)
    taps_f = np.maximum(1, _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F))
    starts = np.arange(fo.n_f) * mp.Fseg
    seg_taps = np.add.reduceat(taps_f, starts)
    fv = np.full(fo.n_f, mp.Fseg)
    fv[-1] = fo.F_last
    lc = mp.p * mp.q * seg_taps                      # compute slots per pass, by segment
    ld = mp.p * fv + Y + 2                           # drain per pass, by segment
    lw = mp.p * mp.q * s.S + 1
    ld_before = np.roll(ld, 1)                       # the drain before a block's first pass
    period = int((np.maximum(np.maximum(lc, ld_before), lw)
                  + (fo.Gi - 1) * np.maximum(np.maximum(lc, ld), lw)).sum())
    periods = fo.n_r * fo.n_v
    total = periods * period
    # the first pass has no drain before it; the last pass loads no weights
    total += int(max(lc[0], lw) - max(lc[0], ld_before[0], lw))
    last_prev = ld[-1] if fo.Gi > 1 else (ld_before[-1] if fo.n_f > 1 or periods > 1 else 0)
    total += int(max(lc[-1], last_prev) - max(lc[-1], last_prev, lw))
    # before the first pass: its weights and the first block's inputs
    first = _block_geometry(shape, params, mp, fo, 0, 0, 0)
    words, gsubs = first[3], first[6]
    return 1 + max(gsubs * (lw - 1) + 1, words + 3) + total + int(ld[-1])


def choose_mapping(shape: LayerShape, params: ArrayParams) -> Mapping:
    """The mapping with the fewest predicted cycles (ties: fewer global-buffer reads, then
    more filters, more channels, fewer filter groups across, longer segments).

    Mappings are timed (``predict_cycles``) in order of ``cycles_lower_bound`` until a bound
    exceeds the fewest cycles found, so the result is that of predicting every mapping.
    """
    check_mappable(shape, params)
    ranked = sorted(((cycles_lower_bound(shape, params, mp), i, mp)
                     for i, mp in enumerate(mappings(shape, params))), key=lambda t: t[:2])
    fewest, tied = None, []
    for bound, _, mp in ranked:
        if fewest is not None and bound > fewest:
            break
        cycles = predict_cycles(shape, params, mp)
        if fewest is None or cycles < fewest:
            fewest, tied = cycles, [mp]
        elif cycles == fewest:
            tied.append(mp)
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=lambda mp: (_timeline(shape, params, mp)["glb_reads"], -mp.p, -mp.q,
                                     mp.Gc, -mp.Fseg))


def fastest_shape(candidates, params: ArrayParams):
    """Of ``(key, shape)`` candidates (ways of presenting one computation to the array), the
    first with the fewest predicted cycles among those that map: ``(key, shape, mapping,
    cycles)``, or None when none maps."""
    best = None
    for key, shape in candidates:
        try:
            mp = choose_mapping(shape, params)
        except ValueError:
            continue
        cycles = predict_cycles(shape, params, mp)
        if best is None or cycles < best[3]:
            best = (key, shape, mp, cycles)
    return best


@dataclasses.dataclass(frozen=True)
class _Folds:
    Cg: int
    G: int
    Gi: int
    units: int
    n_r: int
    rows_last: int
    V: int
    n_v: int
    cols_last: int
    n_f: int
    F_last: int
    Wseg: int


def _folds(shape: LayerShape, params: ArrayParams, mp: Mapping) -> _Folds:
    s, Y, X = shape, params.rows, params.cols
    Cg, G = s.C // mp.q, s.M // mp.p
    units = Cg * s.R
    n_r = _ceil(units, Y)
    V = mp.Gc * s.E
    n_v = _ceil(V, X)
    n_f = _ceil(s.F, mp.Fseg)
    return _Folds(Cg=Cg, G=G, Gi=G // mp.Gc, units=units, n_r=n_r,
                  rows_last=units - (n_r - 1) * Y, V=V, n_v=n_v,
                  cols_last=V - (n_v - 1) * X, n_f=n_f, F_last=s.F - (n_f - 1) * mp.Fseg,
                  Wseg=(mp.Fseg - 1) * s.stride + s.S)


def memory_depths(shape: LayerShape, params: ArrayParams, mp: Mapping) -> tuple[int, int, int]:
    """Global-buffer words the layer needs: (input buffer, per weight bank, per psum bank)."""
    fo = _folds(shape, params, mp)
    s = shape
    return (s.C * s.H * s.W, _ceil(fo.units, params.rows) * s.M * mp.q * s.S,
            fo.n_v * fo.Gi * mp.p * s.F)


def config_values(shape: LayerShape, params: ArrayParams, mp: Mapping) -> dict[str, int]:
    """The configuration fields (``hw.controller.CONFIG_FIELDS``) for this layer."""
    s, Y, X, fo = shape, params.rows, params.cols, _folds(shape, params, mp)
    U, P = s.stride, s.padding
    v = {
        "H": s.H, "W": s.W, "R": s.R, "S": s.S, "U": U, "P": P, "E": s.E,
        "q": mp.q, "p": mp.p, "Cg": fo.Cg, "Gi": fo.Gi, "Gc": mp.Gc, "Fseg": mp.Fseg,
        "n_f": fo.n_f, "F_last": fo.F_last, "Wseg": fo.Wseg, "n_r": fo.n_r,
        "rows_last": fo.rows_last, "n_v": fo.n_v, "cols_last": fo.cols_last,
        "YdivR": Y // s.R, "YmodR": Y % s.R, "qS": mp.q * s.S, "pqS": mp.p * mp.q * s.S,
        "MqS": s.M * mp.q * s.S, "n_weights": s.M * s.C * s.R * s.S, "HW": s.H * s.W,
        "qHW": mp.q * s.H * s.W, "YdivR_qHW": (Y // s.R) * mp.q * s.H * s.W,
        "n_inputs": s.C * s.H * s.W, "PW": P * s.W, "FsegU": mp.Fseg * U,
        "Fp": s.F * mp.p, "GiFp": fo.Gi * s.F * mp.p, "Fsegp": mp.Fseg * mp.p,
        "FsU1": (mp.Fseg - 1) * U, "FlU1": (fo.F_last - 1) * U, "Flastp": fo.F_last * mp.p,
        "GcpqS": mp.Gc * mp.p * mp.q * s.S, "XmodE": X % s.E, "XdivE": X // s.E,
        "XmodEU": (X % s.E) * U, "EU": s.E * U, "E1U": (s.E - 1) * U,
        "XmodEUW": (X % s.E) * U * s.W, "EUW": s.E * U * s.W,
        "XdivE_pqS": (X // s.E) * mp.p * mp.q * s.S,
    }
    # Each value is checked against the accelerator's own limit (hw.controller.config_limits)
    # by sim.run_layer.check_job.
    return v


def weight_stream_order(shape: LayerShape, params: ArrayParams, mp: Mapping) -> np.ndarray:
    """Flat indices into ``weights.ravel()`` ([M, C, R, S]) in ``weight_stream`` order.

    For each reduction unit ``u = cg * R + r`` (bank ``u % rows``): every filter ``m``, then
    the ``q`` channels of the group, then the ``S`` taps.
    """
    s = shape
    cg, r, m, cq, t = np.meshgrid(np.arange(s.C // mp.q), np.arange(s.R), np.arange(s.M),
                                  np.arange(mp.q), np.arange(s.S), indexing="ij")
    c = cg * mp.q + cq
    return (((m * s.C + c) * s.R + r) * s.S + t).ravel()


def output_stream_order(shape: LayerShape, params: ArrayParams, mp: Mapping) -> np.ndarray:
    """Flat indices into the output [M, E, F] of each ``output_stream`` word, in order.

    Column unit by column unit (``v = kv * cols + j = gsub * E + e``), each column's psum
    bank in address order: inner filter group ``g``, output column ``f``, filter ``mi``
    (filter ``m = (g * Gc + gsub) * p + mi``).
    """
    s, fo = shape, _folds(shape, params, mp)
    g, f, mi = np.meshgrid(np.arange(fo.Gi), np.arange(s.F), np.arange(mp.p), indexing="ij")
    order = []
    for v in range(fo.V):
        gsub, e = divmod(v, s.E)
        m = (g * mp.Gc + gsub) * mp.p + mi
        order.append(((m * s.E + e) * s.F + f).ravel())
    return np.concatenate(order)


def _valid_counts(size: int, kernel: int, stride: int, padding: int, out: int) -> np.ndarray:
    """For each tap k: how many output positions put it inside the image."""
    pos = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] - padding
    return ((pos >= 0) & (pos < size)).sum(axis=0)


def _valid_taps_per_output(size: int, kernel: int, stride: int, padding: int,
                           out: int) -> np.ndarray:
    """For each output position: how many of its taps fall inside the image."""
    pos = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] - padding
    return ((pos >= 0) & (pos < size)).sum(axis=1)


def _block_geometry(shape, params, mp, fo, kr, kv, kf):
    """Input words, active PEs, words per active PE and filter groups of one block."""
    s, Y, X = shape, params.rows, params.cols
    U, P = s.stride, s.padding
    rows_valid = fo.rows_last if kr == fo.n_r - 1 else Y
    cols_valid = fo.cols_last if kv == fo.n_v - 1 else X
    fv = fo.F_last if kf == fo.n_f - 1 else mp.Fseg
    u0 = kr * Y
    cg_lo, cg_hi = u0 // s.R, (u0 + rows_valid - 1) // s.R
    gsub, e = np.divmod(kv * X + np.arange(cols_valid), s.E)
    gsubs = int(gsub[-1] - gsub[0] + 1)
    e_lo, e_hi = (0, s.E - 1) if gsubs > 1 else (int(e[0]), int(e[-1]))
    hlo, hhi = max(0, e_lo * U - P), min(s.H - 1, e_hi * U + s.R - 1 - P)
    ws = kf * mp.Fseg * U - P
    wlo, whi = max(0, ws), min(s.W - 1, ws + (fv - 1) * U + s.S - 1)
    nh, nw = max(0, hhi - hlo + 1), max(0, whi - wlo + 1)
    words = (cg_hi - cg_lo + 1) * mp.q * nh * nw
    r_of_row = (u0 + np.arange(rows_valid)) % s.R
    h = e[None, :] * U + r_of_row[:, None] - P
    active = int(((h >= 0) & (h < s.H)).sum()) if nw > 0 else 0
    return rows_valid, cols_valid, fv, words, active, nw, gsubs


def predict(shape: LayerShape, params: ArrayParams, mp: Mapping | None = None, *,
            weights=None, scheme: str | None = None, w_bits: int | None = None,
            codebook=None) -> dict:
    """Cycles and every counter of ``hw.accelerator.Accelerator`` for this layer.

    ``skipped`` is counted from ``weights`` (codes, [M, C, R, S]) when ``scheme``'s product
    unit can skip (``ternary``, ``pow2``, or a ``codebook`` with a 0 level: the weights are
    then codebook indices); without weights it is 0. Also returns ``utilisation`` = macs /
    (PEs x cycles) and the ``mapping``.
    """
    s, Y, X = shape, params.rows, params.cols
    mp = mp or choose_mapping(shape, params)
    fo = _folds(shape, params, mp)
    pqS = mp.p * mp.q * s.S

    blocks = [(kr, kv, kf) for kr in range(fo.n_r) for kv in range(fo.n_v)
              for kf in range(fo.n_f)]
    geo = [_block_geometry(shape, params, mp, fo, *b) for b in blocks]
    counters = dict.fromkeys(COUNTERS, 0)

    # ---- timeline: a pass starts when its predecessors' engines are all done -----------
    # slots per output column: the taps inside the image's width (at least one)
    taps_f = np.maximum(1, _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F))
    seg_taps = [int(taps_f[kf * mp.Fseg:kf * mp.Fseg + geo[b][2]].sum())
                for b, (_, _, kf) in enumerate(blocks)]

    def lc(b):
        return mp.p * mp.q * seg_taps[b]

    def ld(b):  # tokens, the column, the read latency and the array's input register
        return mp.p * geo[b][2] + Y + 2

    def lw(b):  # the weights of one pass: every filter group of the block's columns
        return geo[b][6] * pqS + 1

    n_blocks, G = len(blocks), fo.Gi
    T = max(1 + lw(0), 1 + geo[0][3] + 3)
    prev_ld = None
    for b in range(n_blocks):
        block_start = T
        last_block = b == n_blocks - 1
        for g in (range(G) if G <= 3 else (0, 1, None, G - 1)):
            if g is None:            # the G - 3 identical middle passes
                T += (G - 3) * max(lc(b), lw(b), ld(b))
                continue
            ends = [T + lc(b)]
            if not (last_block and g == G - 1):
                ends.append(T + lw(b + 1 if g == G - 1 else b))
            if prev_ld is not None:
                ends.append(T + prev_ld)
            if g == G - 1 and not last_block:
                ends.append(block_start + geo[b + 1][3] + 3)
            prev_ld = ld(b)
            T = max(ends)
    counters["cycles"] = T + prev_ld

    # ---- counters ----------------------------------------------------------------------
    nr = _valid_counts(s.H, s.R, s.stride, s.padding, s.E)      # per r
    ns = _valid_counts(s.W, s.S, s.stride, s.padding, s.F)      # per s
    macs = s.M * s.C * int(nr.sum()) * int(ns.sum())
    skipped = 0
    if weights is not None and (codebook is not None or scheme in ("ternary", "pow2")):
        if codebook is not None:                                  # level 0 <=> codebook 0
            zero = np.asarray(codebook)[np.asarray(weights)] == 0
        else:
            zero = (np.asarray(weights) == 0)                     # level 0 <=> code 0
        skipped = int((zero.sum(axis=(0, 1)) * np.outer(nr, ns)).sum())
    psum_rf = rf_w = transfers = glb_r = glb_w = 0
    in_glb = w_glb = in_rf = w_rf = 0  # the inputs' and weights' shares (for by_type)
    for b, (kr, kv, kf) in enumerate(blocks):
        rows_valid, cols_valid, fv, words, active, nw, gsubs = geo[b]
        pf = mp.p * fv
        psum_rf += G * active * pf
        rf_w += G * rows_valid * cols_valid * pqS + active * mp.q * nw + G * active * pf
        transfers += G * cols_valid * (Y - 1) * pf
        glb_r += (words + G * rows_valid * gsubs * pqS
                  + (G * cols_valid * pf if kr > 0 else 0))
        glb_w += G * cols_valid * pf
        in_glb, w_glb = in_glb + words, w_glb + G * rows_valid * gsubs * pqS
        in_rf, w_rf = in_rf + active * mp.q * nw, w_rf + G * rows_valid * cols_valid * pqS
    n_w, n_in, n_out = s.M * s.C * s.R * s.S, s.C * s.H * s.W, s.M * s.E * s.F
    # Words by data type of the counters that mix them (sim.energy prices each at its width).
    counters["by_type"] = {
        "glb_reads": {"inputs": in_glb, "weights": w_glb, "psums": glb_r - in_glb - w_glb + n_out},
        "rf_writes": {"inputs": in_rf, "weights": w_rf, "psums": rf_w - in_rf - w_rf},
    }
    counters.update(macs=macs, skipped=skipped, rf_reads=2 * macs + psum_rf, rf_writes=rf_w,
                    array_transfers=transfers, glb_reads=glb_r + n_out,
                    glb_writes=glb_w + n_w + n_in, offchip_words=n_w + n_in + n_out)
    counters["utilisation"] = macs / (params.pes * counters["cycles"])
    counters["mapping"] = mp
    return counters


# ---- the same timeline, vectorised over the blocks (the mapping search and the analysis) ---

def _axis_geometry(shape: LayerShape, params: ArrayParams, mp: Mapping, fo: _Folds):
    """``_block_geometry`` split by loop: per row fold the input words of one row and column
    (channels x q), per column fold the input rows and filter groups, per segment the input
    columns, the output columns and the compute slots (as arrays)."""
    s, Y, X = shape, params.rows, params.cols
    U, P = s.stride, s.padding
    kr = np.arange(fo.n_r)
    rows_valid = np.where(kr == fo.n_r - 1, fo.rows_last, Y)
    chans = ((kr * Y + rows_valid - 1) // s.R - (kr * Y) // s.R + 1) * mp.q
    kv = np.arange(fo.n_v)
    cols_valid = np.where(kv == fo.n_v - 1, fo.cols_last, X)
    g0, e0 = np.divmod(kv * X, s.E)
    g1, e1 = np.divmod(kv * X + cols_valid - 1, s.E)
    gsubs = g1 - g0 + 1
    e_lo, e_hi = np.where(gsubs > 1, 0, e0), np.where(gsubs > 1, s.E - 1, e1)
    nh = np.maximum(0, np.minimum(s.H - 1, e_hi * U + s.R - 1 - P)
                    - np.maximum(0, e_lo * U - P) + 1)
    kf = np.arange(fo.n_f)
    fv = np.where(kf == fo.n_f - 1, fo.F_last, mp.Fseg)
    ws = kf * mp.Fseg * U - P
    nw = np.maximum(0, np.minimum(s.W - 1, ws + (fv - 1) * U + s.S - 1)
                    - np.maximum(0, ws) + 1)
    taps_f = np.maximum(1, _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F))
    seg_taps = np.add.reduceat(taps_f, kf * mp.Fseg)
    return chans, nh, gsubs, nw, fv, seg_taps


def _timeline(shape: LayerShape, params: ArrayParams, mp: Mapping) -> dict:
    """The schedule of ``predict`` block by block: for every block (loop order kr, kv, kf)
    its compute slots, its passes' lengths and its length, plus the set-up and last drain
    (and ``glb_reads``, the tie-break of ``choose_mapping``)."""
    s, Y, fo = shape, params.rows, _folds(shape, params, mp)
    chans, nh, gsubs, nw, fv, seg_taps = _axis_geometry(shape, params, mp, fo)
    n_rv = fo.n_r * fo.n_v
    pqS, G = mp.p * mp.q * s.S, fo.Gi
    words = (chans[:, None, None] * nh[None, :, None] * nw[None, None, :]).ravel()
    lw = np.repeat(np.tile(gsubs * pqS + 1, fo.n_r), fo.n_f)       # a pass's weights
    lc = np.tile(mp.p * mp.q * seg_taps, n_rv)                      # a pass's slots
    ld = np.tile(mp.p * fv + Y + 2, n_rv)                           # a pass's drain
    lw_next = np.append(lw[1:], 0)            # the next block's first pass (none at the end)
    ld_prev = np.insert(ld[:-1], 0, 0)        # the previous block's last pass (none at first)
    # each pass waits for its slots, the next pass's weights and the previous pass's drain;
    # the cycles beyond the slots go to whichever of the two waits is longer
    kinds = [(1, lw_next, ld_prev)] if G == 1 else [(1, lw, ld_prev), (G - 2, lw, ld),
                                                    (1, lw_next, ld)]
    passes, wait_w, wait_d = 0, 0, 0
    for n, w, d in kinds:
        longest = np.maximum(lc, np.maximum(w, d))
        passes = passes + n * longest
        wait_w = wait_w + n * np.where(w >= d, longest - lc, 0)
        wait_d = wait_d + n * np.where(w >= d, 0, longest - lc)
    inputs_next = np.append(words[1:] + 3, 0)  # the next block's inputs, from block start
    glb_reads = (int(words.sum()) + G * pqS * fo.n_f * fo.units * int(gsubs.sum())
                 + G * mp.p * (fo.n_r - 1) * fo.V * s.F + s.M * s.E * s.F)
    return {"setup": max(1 + int(lw[0]), 1 + int(words[0]) + 3), "compute": G * lc,
            "passes": passes, "weights": lw, "drains": ld, "inputs_next": inputs_next,
            "blocks": np.maximum(passes, inputs_next), "last_drain": int(ld[-1]),
            "glb_reads": glb_reads, "wait_weights": wait_w, "wait_drains": wait_d}


def predict_cycles(shape: LayerShape, params: ArrayParams, mp: Mapping) -> int:
    """``predict(shape, params, mp)["cycles"]``, computed with arrays (fast)."""
    t = _timeline(shape, params, mp)
    return t["setup"] + int(t["blocks"].sum()) + t["last_drain"]


def utilisation_breakdown(shape: LayerShape, params: ArrayParams,
                          mp: Mapping | None = None) -> dict:
    """Where the cycles of a layer go, and the best utilisation its mapping's fills allow.

    ``bound`` = MACs / (PEs x compute slots) is the utilisation if every pass lasted just
    its slots; it is the product of four fills: ``row_fill`` (reduction units over the PE
    rows of all row folds), ``col_fill`` (column units over the PE columns of all column
    folds), ``pad_rows`` (PEs whose input row is padding idle for the pass) and
    ``pad_cols`` (an output column whose taps are all padding still takes a slot).
    ``cycles`` = ``setup`` (set-up, first weights and inputs) + ``compute`` (the slots) +
    ``wait_weights`` / ``wait_drains`` (passes held by the next pass's weights or the
    previous pass's drain) + ``wait_inputs`` (blocks held by the next block's inputs) +
    ``last_drain``; ``utilisation`` = ``bound`` x compute / cycles.
    """
    s, mp = shape, mp or choose_mapping(shape, params)
    fo, t = _folds(shape, params, mp), _timeline(shape, params, mp)
    nr = _valid_counts(s.H, s.R, s.stride, s.padding, s.E)
    ns = _valid_counts(s.W, s.S, s.stride, s.padding, s.F)
    taps_f = np.maximum(1, _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F))
    macs = s.M * s.C * int(nr.sum()) * int(ns.sum())
    compute = int(t["compute"].sum())
    parts = {"setup": t["setup"], "compute": compute,
             "wait_weights": int(t["wait_weights"].sum()),
             "wait_drains": int(t["wait_drains"].sum()),
             "wait_inputs": int((t["blocks"] - t["passes"]).sum()),
             "last_drain": t["last_drain"]}
    cycles = sum(parts.values())
    return {"mapping": mp, "macs": macs, "cycles": cycles, **parts,
            "row_fill": fo.units / (fo.n_r * params.rows),
            "col_fill": fo.V / (fo.n_v * params.cols),
            "pad_rows": int(nr.sum()) / (s.R * s.E),
            "pad_cols": int(ns.sum()) / int(taps_f.sum()),
            "bound": macs / (params.pes * compute),
            "utilisation": macs / (params.pes * cycles)}
