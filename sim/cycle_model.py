"""The mapping of a layer onto the row-stationary array, and its exact cycle and access model.

One place holds the folding arithmetic: the accelerator (``hw.accelerator``) only counts
through the loops this module configures (``config_values``), and ``predict`` computes, from
the layer's shape and the array's parameters alone, the cycles and every counter the RTL
reports (only ``skipped`` needs the weights). Tests assert equality for every layer run.
The latencies and counter names come from ``hw.schedule``.

Words. A PE does ``lanes`` MACs per slot over ``lanes`` channels: a layer's ``C`` channels
are ``Cw = ceil(C / lanes)`` *channel words* (``hw.schedule.channel_words``), the last one
holding ``n_last`` real channels and zero codes in its other lanes.

Mapping. Reduction units ``(cg, r)`` (``q`` channel words, one filter row) go down the PE
rows, ``n_r = ceil(Cg * R / rows)`` row folds; output rows ``e`` go across the PE columns,
``n_v = ceil(E / cols)`` column folds; output columns are cut into segments of ``Fseg``
(``n_f`` of them; the input scratchpad holds one segment's ``q`` rows); filters are taken
``p`` at a time (``Gi = M / p`` filter groups). Loop order: row fold ``kr``, column fold
``kv``, segment ``kf`` (one *block*: its inputs stay in the input scratchpads), filter group
``g`` (one *pass*: its weights stay in the filter scratchpads). A pass is ``p * F'`` dots
(output column ``fi``, filter ``mi``), each one *period* of ``d = q * S`` slots (channel
word ``cq``, tap ``s``).

Groups. A grouped layer (``groups`` > 1, depthwise included) runs its groups one after the
other in one schedule: the group is the outermost loop, each group mapped as its own
``M / groups`` filters on ``C / groups`` channels (``group_shape``; its channels packed into
words of their own), with the same mapping. The loaders and the dot source go straight from
one group's last pass and block to the next group's first, so the double-buffered loads hide
the group changes as they hide fold changes.

Schedule (``hw.controller``, exact). Row 0 issues one dot per period; row ``i`` runs the
dot row 0 ran ``i`` periods earlier and starts its accumulator from the PE above's finished
sum, so a dot issued in the period starting at cycle ``c`` is written to the psum buffer at
``c + rows * d + INPUT_LATENCY + accumulate_latency``. When the next dot is not ready, row 0
runs an empty period. The next dot is ready when its pass's weights are in the filter
scratchpads, its block's inputs in the input scratchpads, and (after the first row fold) the
old psum it starts from has been written: dot ``g`` needs dot ``g - fold_dots`` written two
cycles before the period starts. The weight loader fills the other filter bank with pass
``m`` once row 0 has entered pass ``m - 1`` and no row still computes pass ``m - 2`` (the
bank's last user), in ``p * q * S + WEIGHT_LOAD_OVERHEAD`` cycles; the input loader does the
same for blocks (``words + INPUT_LOAD_OVERHEAD`` cycles). ``predict`` follows these rules
with one recurrence over the dots' periods.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hw.schedule import (COUNTERS, INPUT_LATENCY, INPUT_LOAD_OVERHEAD, MAX_PADDING,
                         MAX_STRIDE, ROW_BITS, WEIGHT_LOAD_OVERHEAD, accumulate_latency,
                         ceil_div, channel_words, derived_counters)
from model.shapes import LayerShape

__all__ = ["LayerShape", "ArrayParams", "Mapping", "check_mappable", "group_shape", "lane_packing",
           "packed_shape", "mappings",
           "choose_mapping", "config_values", "weight_word_order", "output_stream_order",
           "predict", "memory_depths", "COUNTERS", "cycles_lower_bound", "predict_cycles",
           "utilisation_breakdown", "fastest_shape", "layer_words", "dot_taps"]

_ROW_LIMIT = 1 << (ROW_BITS - 1)


@dataclasses.dataclass(frozen=True)
class ArrayParams:
    """What the schedule depends on: the array's size, lanes, scratchpad words per bank and
    the lane tree's pipeline registers, and the most groups its controller runs (``groups``:
    a grouped layer's groups one after the other; 1: ungrouped layers only)
    (``hw.schedule.AcceleratorConfig`` has them all)."""

    rows: int = 3
    cols: int = 4
    lanes: int = 1
    filter_spad: int = 32
    ifmap_spad: int = 32
    tree_stages: int = 0
    groups: int = 1

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.lanes

    @classmethod
    def of(cls, config, mode: int = 0) -> "ArrayParams":
        """The schedule parameters of an ``AcceleratorConfig`` for layers run in its mode
        ``mode`` (``config.modes[mode]``: the lanes are that mode's)."""
        modes = config.modes
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode < len(modes):
            raise ValueError(f"mode must be an integer in [0, {len(modes) - 1}] (the "
                             f"accelerator's modes), not {mode!r}")
        return cls(config.rows, config.cols, modes[mode].lanes, config.filter_spad,
                   config.ifmap_spad, config.tree_stages, groups=config.groups)


@dataclasses.dataclass(frozen=True)
class Mapping:
    """``q`` channel words per PE, ``p`` filters per pass, output segments of ``Fseg``."""

    q: int
    p: int
    Fseg: int


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layer_words(shape: LayerShape, params: ArrayParams) -> tuple[int, int]:
    """``(Cw, n_last)`` of the layer on ``params.lanes`` lanes: of one group's ``C / groups``
    channels (a grouped layer's groups are packed into words each of their own)."""
    return channel_words(shape.C // shape.groups, params.lanes)


def group_shape(shape: LayerShape) -> LayerShape:
    """One group of a grouped layer: ``M / groups`` filters on ``C / groups`` channels (the
    layer itself when it has one group). The array runs the groups one after the other, each
    mapped as this shape (the group is the outermost loop of the schedule)."""
    if shape.groups == 1:
        return shape
    g = shape.groups
    return dataclasses.replace(shape, M=shape.M // g, C=shape.C // g, groups=1)


def lane_packing(shape: LayerShape, lanes: int) -> int:
    """How many groups of ``shape`` fill a word of ``lanes`` lanes side by side: the most
    ``k`` with ``k * C / groups <= lanes`` that divides ``groups`` (1: no packing pays).

    Groups side by side (``packed_shape``): a depthwise layer's one channel per group leaves
    ``lanes - 1`` lanes of every word idle and its input loads (one word per cycle) set the
    pace; ``k`` groups in one word's lanes, each filter's weights zero on the other groups'
    lanes (``sim.run_layer.pack_groups``), load ``k`` times fewer words and run ``k``
    filters per word."""
    c = shape.C // shape.groups
    return max(k for k in range(1, max(1, lanes // c) + 1) if shape.groups % k == 0)


def packed_shape(shape: LayerShape, k: int) -> LayerShape:
    """``shape`` with ``k`` groups side by side: ``groups / k`` groups of ``k`` times the
    channels and filters (block-diagonal weights; the same outputs)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or shape.groups % k:
        raise ValueError(f"groups side by side must divide the layer's groups "
                         f"({shape.groups}), not {k!r}")
    return dataclasses.replace(shape, groups=shape.groups // k)


def check_mappable(shape: LayerShape, params: ArrayParams) -> None:
    """Raise ``ValueError`` naming the limit if the layer cannot run on this array at all."""
    s = shape
    if s.groups > params.groups:
        allowed = ("groups 1" if params.groups == 1 else
                   f"groups up to {params.groups} (AcceleratorConfig.groups)")
        raise ValueError(f"grouped convolution (groups {s.groups}) does not run on the array; "
                         f"allowed: {allowed}")
    if s.stride > MAX_STRIDE:
        raise ValueError(f"stride {s.stride} is not supported; allowed: 1 to {MAX_STRIDE}")
    if s.padding > MAX_PADDING:
        raise ValueError(f"padding {s.padding} is not supported; allowed: 0 to {MAX_PADDING}")
    if s.H + s.padding >= _ROW_LIMIT or (s.E - 1) * s.stride >= _ROW_LIMIT:
        raise ValueError(f"input height {s.H} + padding {s.padding} is over the array's "
                         f"row tags; allowed: below {_ROW_LIMIT}")
    if s.H + 2 * s.padding < s.R or s.W + 2 * s.padding < s.S:
        raise ValueError(f"the {s.R}x{s.S} filter exceeds the padded {s.H}x{s.W} input")
    if s.S > params.filter_spad:
        raise ValueError(f"filter width {s.S} exceeds the filter scratchpad "
                         f"({params.filter_spad} words)")
    if s.S > params.ifmap_spad:
        raise ValueError(f"filter width {s.S} exceeds the input scratchpad "
                         f"({params.ifmap_spad} words)")
    if not mappings(shape, params):
        raise ValueError("no mapping fits the scratchpads (filter "
                         f"{params.filter_spad}, input {params.ifmap_spad} words)")


def _segment_lengths(F: int, fmax: int) -> list[int]:
    """Segment lengths worth trying when segments of up to ``fmax`` columns fit: the
    longest, and for every segment count the equal split ``ceil(F / n)``."""
    return sorted({fmax} | {ceil_div(F, n) for n in range(ceil_div(F, fmax), F + 1)},
                  reverse=True)


def mappings(shape: LayerShape, params: ArrayParams) -> list[Mapping]:
    """Every mapping the accelerator runs whose scratchpad needs fit.

    ``q`` divides ``Cw`` and ``p`` divides ``M`` (of one group: ``group_shape``); the filter
    scratchpad holds ``p * q * S`` words and the input scratchpad ``q`` rows of ``(F' - 1) * U
    + S`` words.
    """
    s = group_shape(shape)
    cw, _ = layer_words(shape, params)
    out = []
    for q in _divisors(cw):
        if params.ifmap_spad // q < s.S:
            continue
        fmax = min(s.F, (params.ifmap_spad // q - s.S) // s.stride + 1)
        for p in _divisors(s.M):
            if p * q * s.S > params.filter_spad:
                continue
            out.extend(Mapping(q, p, fseg) for fseg in _segment_lengths(s.F, fmax))
    return out


@dataclasses.dataclass(frozen=True)
class _Folds:
    Cw: int
    n_last: int
    Cg: int
    Gi: int
    units: int
    n_r: int
    rows_last: int
    n_v: int
    cols_last: int
    n_f: int
    F_last: int
    Wseg: int
    d: int


def _folds(shape: LayerShape, params: ArrayParams, mp: Mapping) -> _Folds:
    """The folds of one group (``group_shape``)."""
    s, Y, X = group_shape(shape), params.rows, params.cols
    cw, n_last = layer_words(shape, params)
    Cg = cw // mp.q
    units = Cg * s.R
    n_r = ceil_div(units, Y)
    n_v = ceil_div(s.E, X)
    n_f = ceil_div(s.F, mp.Fseg)
    return _Folds(Cw=cw, n_last=n_last, Cg=Cg, Gi=s.M // mp.p, units=units, n_r=n_r,
                  rows_last=units - (n_r - 1) * Y, n_v=n_v, cols_last=s.E - (n_v - 1) * X,
                  n_f=n_f, F_last=s.F - (n_f - 1) * mp.Fseg,
                  Wseg=(mp.Fseg - 1) * s.stride + s.S, d=mp.q * s.S)


def memory_depths(shape: LayerShape, params: ArrayParams, mp: Mapping) -> tuple[int, int, int]:
    """Global-buffer words the layer needs: (input buffer, per weight bank, per psum bank)."""
    fo = _folds(shape, params, mp)
    s, G = shape, shape.groups
    return (G * fo.Cw * s.H * s.W, fo.n_r * s.M * mp.q * s.S, fo.n_v * G * fo.Gi * mp.p * s.F)


def config_values(shape: LayerShape, params: ArrayParams, mp: Mapping, *,
                  mode: int = 0) -> dict[str, int]:
    """The configuration fields (``hw.schedule.CONFIG_FIELDS``) for this layer, run in the
    accelerator's mode ``mode`` (whose lanes ``params`` has: ``ArrayParams.of``)."""
    s, Y, X, fo = shape, params.rows, params.cols, _folds(shape, params, mp)
    U, P, G = s.stride, s.padding, s.groups
    fold_dots = fo.n_v * fo.Gi * s.F * mp.p
    return {
        "H": s.H, "W": s.W, "R": s.R, "S": s.S, "U": U, "P": P, "E": s.E,
        "q": mp.q, "p": mp.p, "Cg": fo.Cg, "Gi": fo.Gi, "Fseg": mp.Fseg, "n_f": fo.n_f,
        "F_last": fo.F_last, "Wseg": fo.Wseg, "n_r": fo.n_r, "rows_last": fo.rows_last,
        "n_v": fo.n_v, "cols_last": fo.cols_last, "YdivR": Y // s.R, "YmodR": Y % s.R,
        "qS": fo.d, "pqS": mp.p * fo.d, "MqS": s.M // G * fo.d,
        "n_weights": s.M * fo.Cw * s.R * s.S,
        "HW": s.H * s.W, "qHW": mp.q * s.H * s.W, "YdivR_qHW": (Y // s.R) * mp.q * s.H * s.W,
        "n_inputs": G * fo.Cw * s.H * s.W, "PW": P * s.W, "FsegU": mp.Fseg * U,
        "Fp": s.F * mp.p, "GiFp": G * fo.Gi * s.F * mp.p, "Fsegp": mp.Fseg * mp.p,
        "FsU1": (mp.Fseg - 1) * U, "FlU1": (fo.F_last - 1) * U, "XU": X * U,
        "XUW": X * U * s.W, "CL1U": (fo.cols_last - 1) * U, "n_last": fo.n_last,
        "n_min": dot_taps(s, mp.Fseg)[2], "fold_dots": fold_dots, "wb_base": 0,
        "in_base": 0, "mode": mode, "groups": G,
        "grp_inputs": fo.Cw * s.H * s.W if G > 1 else 0,
        "grp_psums": fo.Gi * s.F * mp.p if G > 1 else 0,
    }


def weight_word_order(shape: LayerShape, params: ArrayParams, mp: Mapping) -> np.ndarray:
    """Flat indices into the weight words ``[M, Cw, R, S]`` in ``weight_stream`` order.

    For each reduction unit ``u = cg * R + r`` (bank ``u % rows``): every filter ``m``, then
    the ``q`` channel words of the group, then the ``S`` taps. A grouped layer's groups come
    one after the other, each with its own ``M / groups`` filters (``Cw``: a group's words).
    """
    s, G = shape, shape.groups
    cw, _ = layer_words(shape, params)
    grp, cg, r, m, cq, t = np.meshgrid(np.arange(G), np.arange(cw // mp.q), np.arange(s.R),
                                       np.arange(s.M // G), np.arange(mp.q), np.arange(s.S),
                                       indexing="ij")
    c = cg * mp.q + cq
    m = grp * (s.M // G) + m
    return (((m * cw + c) * s.R + r) * s.S + t).ravel()


def output_stream_order(shape: LayerShape, params: ArrayParams, mp: Mapping) -> np.ndarray:
    """Flat indices into the output [M, E, F] of each ``output_stream`` word, in order.

    Column fold by column fold, each used column's psum bank in address order: filter group
    ``g``, output column ``f``, filter ``mi`` (filter ``m = g * p + mi``, output row
    ``e = kv * cols + j``; a grouped layer's filter groups are every group's, in order).
    """
    s, fo, X = shape, _folds(shape, params, mp), params.cols
    g, f, mi = np.meshgrid(np.arange(s.M // mp.p), np.arange(s.F), np.arange(mp.p),
                           indexing="ij")
    m = g * mp.p + mi
    order = []
    for kv in range(fo.n_v):
        for j in range(fo.cols_last if kv == fo.n_v - 1 else X):
            e = kv * X + j
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


@dataclasses.dataclass(frozen=True)
class _Blocks:
    """Per block (loop order group, kr, kv, kf): rows and columns used, segment length, input
    words, active PEs, active PEs on the last channel group, input columns, valid taps, row
    fold."""

    rows: np.ndarray
    cols: np.ndarray
    fv: np.ndarray
    words: np.ndarray
    active: np.ndarray
    active_last: np.ndarray
    nw: np.ndarray
    taps: np.ndarray
    kr: np.ndarray


def _blocks(shape: LayerShape, params: ArrayParams, mp: Mapping, fo: _Folds) -> _Blocks:
    s, Y, X = shape, params.rows, params.cols
    U, P = s.stride, s.padding
    # per row fold
    kr = np.arange(fo.n_r)
    rows_valid = np.where(kr == fo.n_r - 1, fo.rows_last, Y)
    units = kr[:, None] * Y + np.arange(Y)[None, :]                       # [n_r, Y]
    used = np.arange(Y)[None, :] < rows_valid[:, None]
    cg, r = np.divmod(units, s.R)
    chans = ((kr * Y + rows_valid - 1) // s.R - (kr * Y) // s.R + 1) * mp.q
    # per column fold
    kv = np.arange(fo.n_v)
    cols_valid = np.where(kv == fo.n_v - 1, fo.cols_last, X)
    e = kv[:, None] * X + np.arange(X)[None, :]                            # [n_v, X]
    col_used = np.arange(X)[None, :] < cols_valid[:, None]
    e_lo, e_hi = kv * X, kv * X + cols_valid - 1
    nh = np.maximum(0, np.minimum(s.H - 1, e_hi * U + s.R - 1 - P)
                    - np.maximum(0, e_lo * U - P) + 1)
    # active PEs per (kr, kv): input row inside the image
    h = e[None, :, None, :] * U + r[:, None, :, None] - P                 # [n_r, n_v, Y, X]
    act = ((h >= 0) & (h < s.H) & used[:, None, :, None] & col_used[None, :, None, :])
    active = act.sum(axis=(2, 3))
    last = (cg == fo.Cg - 1)[:, None, :, None]
    active_last = (act & last).sum(axis=(2, 3))
    # per segment
    kf = np.arange(fo.n_f)
    fv = np.where(kf == fo.n_f - 1, fo.F_last, mp.Fseg)
    ws = kf * mp.Fseg * U - P
    nw = np.maximum(0, np.minimum(s.W - 1, ws + (fv - 1) * U + s.S - 1) - np.maximum(0, ws) + 1)
    taps_f = _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F)
    taps = np.add.reduceat(taps_f, kf * mp.Fseg)
    # blocks in loop order
    shape3 = (fo.n_r, fo.n_v, fo.n_f)
    b_kr = np.broadcast_to(kr[:, None, None], shape3).ravel()
    b_rows = np.broadcast_to(rows_valid[:, None, None], shape3).ravel()
    b_cols = np.broadcast_to(cols_valid[None, :, None], shape3).ravel()
    b_fv = np.broadcast_to(fv[None, None, :], shape3).ravel()
    b_nw = np.broadcast_to(nw[None, None, :], shape3).ravel()
    b_taps = np.broadcast_to(taps[None, None, :], shape3).ravel()
    b_active = np.where(b_nw > 0, np.broadcast_to(active[:, :, None], shape3).ravel(), 0)
    b_active_last = np.where(b_nw > 0,
                             np.broadcast_to(active_last[:, :, None], shape3).ravel(), 0)
    b_words = (chans[:, None, None] * nh[None, :, None] * nw[None, None, :]).ravel()
    blocks = _Blocks(rows=b_rows, cols=b_cols, fv=b_fv, words=b_words, active=b_active,
                     active_last=b_active_last, nw=b_nw, taps=b_taps, kr=b_kr)
    if shape.groups == 1:
        return blocks
    # a grouped layer: every group's blocks, group after group
    return _Blocks(**{f.name: np.tile(getattr(blocks, f.name), shape.groups)
                      for f in dataclasses.fields(_Blocks)})


def dot_taps(shape: LayerShape, Fseg: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output column ``f``: the taps a dot of that column runs (``n_eff``) and how many of
    them are inside the image (``n_s``), and ``n_min``.

    A dot runs the taps inside the image (padding costs no slot) but at least ``n_min =
    ceil((max n_s + 1) / 2)``: then any two dots in a row outlast the longest, which is what
    lets a PE row hold only one finished dot for the row below (``hw.controller.rows``)."""
    s = shape
    n_s = _valid_taps_per_output(s.W, s.S, s.stride, s.padding, s.F)
    n_min = (int(n_s.max()) + 2) // 2
    return np.maximum(n_s, n_min), n_s, n_min


def _running(start: np.ndarray, lens: np.ndarray, carry_t: int, carry_len: int) -> np.ndarray:
    """``t[k] = max(t[k - 1] + len[k - 1], start[k])`` over a run of dots, ``t[-1]`` and
    ``len[-1]`` being ``carry_t`` and ``carry_len`` (a max-plus recurrence as a running max
    of ``start[k] - S[k]``, ``S`` the prefix sums of the lengths)."""
    prefix = np.concatenate(([0], np.cumsum(lens[:-1])))
    base = np.maximum.accumulate(np.maximum(start - prefix, carry_t + carry_len
                                            if carry_t is not None else start[0]))
    return base + prefix


def _schedule(shape: LayerShape, params: ArrayParams, mp: Mapping, fo: _Folds,
              bl: _Blocks) -> dict:
    """The exact schedule: when each PE row starts each dot, and the last psum write.

    Dots in loop order; dot ``k`` of output column ``f`` lasts ``len = q * n_eff(f)`` cycles
    (``dot_taps``). Row 0 starts dot ``k`` at ``T0[k] = max(T0[k-1] + len[k-1], ready[k] +
    1)``, ``ready[k]`` being the cycle its pass's weights and block's inputs are seen written
    and (after the first row fold) the psum of dot ``k - fold_dots`` is written; row ``i``
    starts it at ``T[i][k] = max(T[i][k-1] + len[k-1], T[i-1][k] + len[k])``, once row ``i-1``
    has finished it. The bottom row's sum is written at ``T[rows-1][k] + len[k] +
    INPUT_LATENCY + A``. The loaders' decisions follow the controller's rules (module
    docstring): the weights of pass ``n`` once row 0 has been handed pass ``n - 1`` and the
    bottom row has finished pass ``n - 2``; the inputs of block ``b`` likewise.

    First the schedule with no waits after the first dot (the usual case, all arrays);
    if a load or an old psum would come late, the dots are scheduled pass by pass.
    """
    Y, q, p = params.rows, mp.q, mp.p
    A = accumulate_latency(params.tree_stages)
    pqS = p * fo.d
    G, n_blocks = fo.Gi, len(bl.words)
    n_eff, _, _ = dot_taps(shape, mp.Fseg)
    fold_dots = fo.n_v * G * shape.F * p
    seg_lens = []
    for kf in range(fo.n_f):
        fv = fo.F_last if kf == fo.n_f - 1 else mp.Fseg
        seg_lens.append(np.repeat(q * n_eff[kf * mp.Fseg + np.arange(fv)], p))
    runs = [seg_lens[b % fo.n_f] for b in range(n_blocks) for _ in range(G)]
    sizes = np.array([len(r) for r in runs])
    first_dot = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    last_dot = first_dot + sizes - 1
    lens = np.concatenate(runs)
    pass_block = np.repeat(np.arange(n_blocks), G)
    w_vis0 = 1 + pqS + WEIGHT_LOAD_OVERHEAD
    i_vis0 = 1 + int(bl.words[0]) + INPUT_LOAD_OVERHEAD
    start0 = max(1, w_vis0, i_vis0) + 1

    def rows_below(t0, lens_, carry=None):
        """The other rows' starts from row 0's (and each row's previous dot)."""
        T = np.empty((Y, len(t0)), dtype=np.int64)
        T[0] = t0
        for i in range(1, Y):
            c = carry[i] if carry else (None, None)
            T[i] = _running(T[i - 1] + lens_, lens_, *c)
        return T

    # ---- no waits after the first dot: check the loads and the old psums ---------------
    prefix = np.concatenate(([0], np.cumsum(lens[:-1])))
    T = rows_below(start0 + prefix, lens)
    write = T[Y - 1] + lens + INPUT_LATENCY + A
    old_psum = np.repeat(bl.kr[pass_block] > 0, sizes)     # dots that start from an old psum
    if _no_waits(T, lens, write, first_dot, last_dot, pass_block, bl, G, pqS, fold_dots,
                 old_psum):
        return {"T": T, "lens": lens, "write": write, "cycles": int(write[-1]) + 1}

    # ---- the general case: pass by pass --------------------------------------------------
    T = np.empty((Y, len(lens)), dtype=np.int64)
    write = np.empty(len(lens), dtype=np.int64)
    push_first, w_dec, i_dec = [], [], []
    carry = [(None, None)] * Y
    for n, run in enumerate(runs):
        b = int(pass_block[n])
        if n % G == 0:
            t = 1
            if b >= 1:
                t = i_dec[b - 1] + int(bl.words[b - 1]) + INPUT_LOAD_OVERHEAD
            if b >= 2:
                prev_first, old_last = (b - 1) * G, (b - 1) * G - 1
                t = max(t, push_first[prev_first] + 1,
                        int(T[Y - 1, last_dot[old_last]] + lens[last_dot[old_last]]))
            i_dec.append(t)
        t = 1 if n == 0 else w_dec[n - 1] + pqS + 1
        if n >= 2:
            t = max(t, push_first[n - 1] + 1,
                    int(T[Y - 1, last_dot[n - 2]] + lens[last_dot[n - 2]]))
        w_dec.append(t)
        idx = np.arange(first_dot[n], last_dot[n] + 1)
        ready = np.ones(len(idx), dtype=np.int64)
        ready[0] = max(w_dec[n] + pqS + WEIGHT_LOAD_OVERHEAD,
                       i_dec[b] + int(bl.words[b]) + INPUT_LOAD_OVERHEAD if n % G == 0 else 1)
        if bl.kr[b] > 0:
            ready = np.maximum(ready, write[idx - fold_dots] + 1)
        t0 = _running(ready + 1, run, *carry[0])
        free = np.concatenate(([carry[0][0] if carry[0][0] is not None else 1], t0[:-1]))
        push_first.append(int(max(free[0], ready[0])))
        T[:, idx] = rows_below(t0, run, carry)
        carry = [(int(T[i, idx[-1]]), int(run[-1])) for i in range(Y)]
        write[idx] = T[Y - 1, idx] + run + INPUT_LATENCY + A
    # ``running`` falls the cycle after the last write is counted
    return {"T": T, "lens": lens, "write": write, "cycles": int(write[-1]) + 1}


def _no_waits(T, lens, write, first_dot, last_dot, pass_block, bl, G, pqS, fold_dots,
              old_psum) -> bool:
    """Whether the schedule ``T`` (row 0 never waiting after its first dot) keeps every
    rule: each pass's weights, each block's inputs and each old psum are ready in time."""
    Y = T.shape[0]
    t0 = T[0]
    k = np.flatnonzero(old_psum)                # old psums: written before they are read
    if len(k) and np.any(write[k - fold_dots] + 2 > t0[k]):
        return False
    # push of a pass's first dot: when row 0 is done with the dot before, or ready
    n_passes = len(first_dot)
    w_dec = 1
    i_dec, i_words = 1, int(bl.words[0])
    push_prev = push_first_block = None      # set at pass 0, before any use
    for n in range(n_passes):
        b = int(pass_block[n])
        f = int(first_dot[n])
        if n % G == 0 and b >= 1:
            i_dec = i_dec + i_words + INPUT_LOAD_OVERHEAD
            if b >= 2:
                old = int(last_dot[(b - 1) * G - 1])
                i_dec = max(i_dec, push_first_block + 1, int(T[Y - 1, old] + lens[old]))
            i_words = int(bl.words[b])
        if n >= 1:
            w_dec = w_dec + pqS + 1
            if n >= 2:
                old = int(last_dot[n - 2])
                w_dec = max(w_dec, push_prev + 1, int(T[Y - 1, old] + lens[old]))
        ready = w_dec + pqS + WEIGHT_LOAD_OVERHEAD
        if n % G == 0:
            ready = max(ready, i_dec + i_words + INPUT_LOAD_OVERHEAD)
        if n >= 1 and ready + 1 > t0[f]:
            return False
        push_prev = max(int(t0[f - 1]) if f else 1, ready)
        if n % G == 0:
            push_first_block = push_prev
    return True


def predict(shape: LayerShape, params: ArrayParams, mp: Mapping | None = None, *,
            weights=None, scheme: str | None = None, w_bits: int | None = None,
            codebook=None) -> dict:
    """Cycles and every counter of ``hw.accelerator.Accelerator`` for this layer
    (``hw.schedule.COUNTERS``), the derived ``macs``, ``rf_reads``, ``rf_writes``, the words
    by data type (``by_type``), ``utilisation`` = macs / (PEs x lanes x cycles) and the
    ``mapping``.

    ``skipped`` is counted from ``weights`` (codes, [M, C / groups, R, S], one code per
    channel) when
    ``scheme``'s product unit can skip (``ternary``, ``pow2``, or a ``codebook`` with a 0
    level: the weights are then codebook indices); without weights it is 0.
    """
    s, Y = shape, params.rows
    mp = mp or choose_mapping(shape, params)
    fo = _folds(shape, params, mp)
    bl = _blocks(shape, params, mp, fo)
    sched = _schedule(shape, params, mp, fo, bl)
    G, p, q, S = fo.Gi, mp.p, mp.q, s.S

    nr = _valid_counts(s.H, s.R, s.stride, s.padding, s.E)      # per r
    ns = _valid_counts(s.W, s.S, s.stride, s.padding, s.F)      # per s
    skipped = 0
    if weights is not None and (codebook is not None or scheme in ("ternary", "pow2")):
        w = np.asarray(weights)
        zero = (np.asarray(codebook)[w] == 0) if codebook is not None else (w == 0)
        skipped = int((zero.sum(axis=(0, 1)) * np.outer(nr, ns)).sum())
    taps = bl.taps.astype(np.int64)
    slots = int(G * (bl.active * p * q * taps).sum())
    last_slots = int(G * (bl.active_last * p * taps).sum())
    filter_reads = int(G * (bl.rows * p * q * taps).sum())
    filter_writes = int(G * (bl.rows * p * q * S).sum())
    input_writes = int((bl.active * q * bl.nw).sum())
    dots_cols = G * p * bl.fv * bl.cols                    # psums written per block
    transfers = int((dots_cols * (Y - 1)).sum())
    in_glb = int(bl.words.sum())
    w_glb = filter_writes
    old_psums = int(dots_cols[bl.kr > 0].sum())
    n_w = s.M * fo.Cw * s.R * S
    n_in = s.groups * fo.Cw * s.H * s.W
    n_out = s.M * s.E * s.F
    counters = {
        "cycles": sched["cycles"], "slots": slots, "last_slots": last_slots,
        "skipped": skipped, "filter_reads": filter_reads, "filter_writes": filter_writes,
        "input_writes": input_writes, "array_transfers": transfers,
        "glb_reads": in_glb + w_glb + old_psums + n_out,
        "glb_writes": n_w + n_in + int(dots_cols.sum()),
        "offchip_words": n_w + n_in + n_out,
    }
    counters.update(derived_counters(counters, lanes=params.lanes, n_last=fo.n_last))
    counters["by_type"] = {
        "glb_reads": {"inputs": in_glb, "weights": w_glb, "psums": old_psums + n_out},
        "glb_writes": {"inputs": n_in, "weights": n_w, "psums": int(dots_cols.sum())},
        "rf_reads": {"inputs": slots, "weights": filter_reads},
        "rf_writes": {"inputs": input_writes, "weights": filter_writes},
    }
    counters["utilisation"] = counters["macs"] / (params.macs_per_cycle * counters["cycles"])
    counters["mapping"] = mp
    return counters


def predict_cycles(shape: LayerShape, params: ArrayParams, mp: Mapping) -> int:
    """``predict(shape, params, mp)["cycles"]`` without the counters."""
    fo = _folds(shape, params, mp)
    return _schedule(shape, params, mp, fo, _blocks(shape, params, mp, fo))["cycles"]


def cycles_lower_bound(shape: LayerShape, params: ArrayParams, mp: Mapping) -> int:
    """A lower bound on ``predict_cycles`` (a loop over the passes, no arrays).

    Row 0 runs every dot of a pass (``c`` cycles) after the pass before; and the weights of
    pass ``n + 2`` cannot be written before the bottom row has finished pass ``n``, which is
    at least ``rows - 1`` of its last dot's lengths after row 0 did, so pass ``n + 2`` starts
    no sooner than that plus ``p * q * S + WEIGHT_LOAD_OVERHEAD + 1``. The last dot crosses
    every row and is written ``INPUT_LATENCY + A`` later.
    """
    fo = _folds(shape, params, mp)
    n_eff, _, _ = dot_taps(shape, mp.Fseg)
    Y = params.rows
    pqS = mp.p * fo.d
    seg = []
    for kf in range(fo.n_f):
        fv = fo.F_last if kf == fo.n_f - 1 else mp.Fseg
        cols = n_eff[kf * mp.Fseg:kf * mp.Fseg + fv]
        seg.append((mp.p * mp.q * int(cols.sum()), mp.q * int(cols[-1])))
    n_passes = shape.groups * fo.n_r * fo.n_v * fo.n_f * fo.Gi
    start = 1 + pqS + WEIGHT_LOAD_OVERHEAD + 1      # the first pass's weights, then a cycle
    ends = []                   # (row 0's end, bottom row's earliest end) per pass
    for n in range(n_passes):
        c, last = seg[(n // fo.Gi) % fo.n_f]
        if n >= 2:
            e, bottom = ends[n - 2]
            start = max(start, bottom + pqS + WEIGHT_LOAD_OVERHEAD + 1)
        end = start + c
        ends.append((end, end + (Y - 1) * last))
        start = end
    return ends[-1][1] + INPUT_LATENCY + accumulate_latency(params.tree_stages) + 1


def choose_mapping(shape: LayerShape, params: ArrayParams) -> Mapping:
    """The mapping with the fewest predicted cycles (ties: fewer global-buffer reads, then
    more filters, more channel words, longer segments).

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
    return min(tied, key=lambda mp: (_glb_reads(shape, params, mp), -mp.p, -mp.q, -mp.Fseg))


def _glb_reads(shape: LayerShape, params: ArrayParams, mp: Mapping) -> int:
    fo = _folds(shape, params, mp)
    bl = _blocks(shape, params, mp, fo)
    dots_cols = fo.Gi * mp.p * bl.fv * bl.cols
    return int(bl.words.sum() + fo.Gi * (bl.rows * mp.p * fo.d).sum()
               + dots_cols[bl.kr > 0].sum())


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


def utilisation_breakdown(shape: LayerShape, params: ArrayParams,
                          mp: Mapping | None = None) -> dict:
    """Where the cycles of a layer go, and the best utilisation its mapping's fills allow.

    ``bound`` = MACs / (PEs x lanes x slots of row 0) is the utilisation if row 0 never
    waited; it is the product of five fills: ``row_fill`` (reduction units over the PE rows
    of all row folds), ``col_fill`` (output rows over the PE columns of all column folds),
    ``lane_fill`` (real channels over the lanes of the channel words), ``pad_rows`` (PEs whose
    input row is padding idle for the pass) and ``pad_cols`` (taps in the padding that a dot
    still runs to reach ``n_min``, ``dot_taps``). ``cycles`` = ``setup`` (until row 0's first
    dot) + ``compute`` (row 0's slots) + ``stalls`` (row 0 waiting for loads or old partial
    sums) + ``tail`` (the last dot's way down the column); ``utilisation`` = ``bound`` x
    compute / cycles.
    """
    s, mp = shape, mp or choose_mapping(shape, params)
    fo = _folds(shape, params, mp)
    bl = _blocks(shape, params, mp, fo)
    sched = _schedule(shape, params, mp, fo, bl)
    nr = _valid_counts(s.H, s.R, s.stride, s.padding, s.E)
    ns = _valid_counts(s.W, s.S, s.stride, s.padding, s.F)
    macs = s.M * (s.C // s.groups) * int(nr.sum()) * int(ns.sum())
    T, lens = sched["T"], sched["lens"]
    n_eff, _, _ = dot_taps(s, mp.Fseg)
    compute = int(lens.sum())
    setup = int(T[0, 0])
    tail = sched["cycles"] - int(T[0, -1] + lens[-1])
    stalls = sched["cycles"] - setup - compute - tail
    cycles = sched["cycles"]
    return {"mapping": mp, "macs": macs, "cycles": cycles, "setup": setup,
            "compute": compute, "stalls": stalls, "tail": tail,
            "row_fill": fo.units / (fo.n_r * params.rows),
            "col_fill": s.E / (fo.n_v * params.cols),
            "lane_fill": s.C // s.groups / (fo.Cw * params.lanes),
            "pad_rows": int(nr.sum()) / (s.R * s.E),
            "pad_cols": int(ns.sum()) / int(n_eff.sum()),
            "bound": macs / (params.macs_per_cycle * compute),
            "utilisation": macs / (params.macs_per_cycle * cycles)}
