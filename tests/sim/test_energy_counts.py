"""Access counts of the dataflow energy model: every count against a brute-force walk of the
loop nest, hand-worked counts of each dataflow, and the constraints that make each dataflow
the paper's (what stays stationary, the batch)."""

import itertools
import math

import numpy as np
import pytest

from sim.energy import network_energy
from sim.energy.hardware import Hardware
from sim.energy.network import layer_energy
from sim.energy.search import candidate_counts
from sim.energy.specs import DATA_TYPES, DATAFLOWS, DIMS, LEVELS, STATIONARY_ORDERS
from sim.energy.tiles import Problem, evaluate
from sim.energy_presets import conv

# ------------------------------------------------------------------------------------------
# A brute-force reference of the access counts: walk every iteration of a mapping's loop
# nest, keep the exact set of words each PE's RF and the global buffer hold, and count what
# changes. Independent of the analytic tile formulas of sim.energy.tiles.


def _words(x, n, m, c, e, f, r, s, U):
    if x == "inputs":
        return (n, c, e * U + r, f * U + s)
    if x == "weights":
        return (m, c, r, s)
    return (n, m, e, f)


RELEVANT = {"inputs": set("NCEFRS"), "weights": set("MCRS"), "psums": set("NMEF")}


def _slides(x, loops, changed, t):
    """Whether stepping loop ``changed`` keeps what overlaps (no indexing loop inside it).

    A level keeps the overlap of consecutive tiles only when the loop that advanced is the
    innermost one that indexes ``x`` (the sliding window); any other change refetches the
    whole tile (as a plain buffer controller does).
    """
    return not any(d in RELEVANT[x] and t[(reg, d)] > 1 for reg, d in loops[changed + 1:])


def reference_counts(problem, spec, trips, glb_order, dram_order):
    """Counts of one mapping (exactly divided dimensions) by walking its loop nest."""
    U = problem.U
    t = {(reg, d): trips.get((reg, d), 1) for reg in ("rf", "pe", "sp", "glb", "dram")
         for d in DIMS}
    for d in DIMS:
        assert math.prod(t[(reg, d)] for reg in ("rf", "pe", "sp", "glb", "dram")) == \
            problem.dims[d], "the reference needs exactly divided dimensions"
    temporal = [("dram", d) for d in dram_order] + [("glb", d) for d in glb_order] + \
        [("pe", d) for d in spec.pe_order]
    spatial = [("sp", d) for d in DIMS]
    inner = [("rf", d) for d in DIMS]

    def point(idx):  # iteration indices per (region, dim) -> coordinate per dim
        coord = {}
        for d in DIMS:
            v = 0
            for reg in ("dram", "glb", "sp", "pe", "rf"):
                v = v * t[(reg, d)] + idx.get((reg, d), 0)
            coord[d] = v
        return coord

    def ranges(keys):
        return list(itertools.product(*[range(t[k]) for k in keys]))

    def steps(loops):
        """``(index, changed)`` per iteration of ``loops`` (outermost first): the index of each
        loop, and the position of the outermost loop that advanced (None at the first)."""
        last = None
        for values in ranges(loops):
            changed = None if last is None else next(
                k for k, (a, b) in enumerate(zip(values, last)) if a != b)
            last = values
            yield dict(zip(loops, values)), changed

    def tile_words(idx, loops):
        """The words of each data type that the iterations of ``loops`` under ``idx`` touch."""
        tile = {x: set() for x in DATA_TYPES}
        for values in ranges(loops):
            p = point({**idx, **dict(zip(loops, values))})
            for x in DATA_TYPES:
                tile[x].add(_words(x, *(p[d] for d in DIMS), U))
        return tile

    counts = {lv: dict.fromkeys(DATA_TYPES, 0) for lv in LEVELS}
    macs = problem.macs
    kept = spec.rf_keeps
    prev = {}
    segments = 0
    pass_words = {x: set() for x in DATA_TYPES}
    pass_key = None
    once_per_pass = True
    received = {}

    def close_pass():
        for x in ("inputs", "weights"):
            counts["glb"][x] += len(pass_words[x])
        counts["array_results"] = counts.get("array_results", 0) + len(pass_words["psums"])

    for idx_above, changed in steps(temporal):
        key = tuple(v for k, v in idx_above.items() if k[0] != "pe")
        if key != pass_key:
            if pass_key is not None:
                close_pass()
            pass_key, pass_words = key, {x: set() for x in DATA_TYPES}
            received = {}
        for pe in ranges(spatial):
            tile = tile_words({**idx_above, **dict(zip(spatial, pe))}, inner)
            old = prev.get(pe, {x: set() for x in DATA_TYPES})
            for x in DATA_TYPES:
                if x not in kept:  # bypassed: every use is a delivery (one per MAC)
                    new = tile[x]
                elif changed is None or _slides(x, temporal, changed, t):
                    new = tile[x] - old[x]
                else:
                    new = tile[x]
                for w in new:
                    seen = received.setdefault((pe, x), set())
                    once_per_pass &= w not in seen
                    seen.add(w)
                pass_words[x] |= new
                if x == "psums":
                    segments += len(new)
                elif x in kept:
                    counts["array"][x] += len(new)
            prev[pe] = tile
    close_pass()
    for x in ("inputs", "weights"):
        counts["rf"][x] = macs if x in kept else 0
        if x not in kept:
            counts["array"][x] = macs
    # The global buffer's tile under the DRAM loops.
    below = [("glb", d) for d in glb_order] + spatial + [("pe", d) for d in spec.pe_order] \
        + inner
    dram_fills = dict.fromkeys(DATA_TYPES, 0)
    old = {x: set() for x in DATA_TYPES}
    dram_loops = [("dram", d) for d in dram_order]
    for idx, changed in steps(dram_loops):
        tile = tile_words(idx, below)
        for x in DATA_TYPES:
            slides = changed is None or _slides(x, dram_loops, changed, t)
            dram_fills[x] += len(tile[x] - old[x]) if slides else len(tile[x])
        old = tile
    outputs = problem.N * problem.M * problem.E * problem.F
    array_results = counts.pop("array_results")
    counts["dram"]["inputs"] = dram_fills["inputs"]
    counts["dram"]["weights"] = dram_fills["weights"]
    glb_segments = dram_fills["psums"]
    counts["rf"]["psums"] = 2 * (macs - segments)
    counts["array"]["psums"] = segments - array_results
    counts["glb"]["psums"] = 2 * (array_results - glb_segments)
    counts["dram"]["psums"] = 2 * glb_segments - outputs
    return counts, once_per_pass


SMALL = [
    Problem(N=2, M=4, C=2, E=4, F=3, R=3, S=2, U=1),
    Problem(N=2, M=2, C=4, E=2, F=2, R=3, S=3, U=2),
    Problem(N=4, M=8, C=4, E=1, F=1, R=1, S=1, U=1),  # dense
]


def _exact(problem, mapping):
    loops = mapping["loops"]
    return all(math.prod(n for (r, dd), n in loops.items() if dd == d) == problem.dims[d]
               for d in DIMS)


@pytest.mark.parametrize("dataflow", list(DATAFLOWS))
@pytest.mark.parametrize("problem", SMALL, ids=["conv", "conv-stride2", "dense"])
def test_counts_equal_a_walk_of_the_loop_nest(problem, dataflow):
    hw = Hardware(pes=12, rows=3, cols=4, rf_bytes=48, glb_bytes=320)
    cand = candidate_counts(problem, dataflow, hw)
    rng = np.random.default_rng(7)
    exact = [i for i in range(len(cand)) if _exact(problem, cand.mappings[i])]
    assert exact, "no exactly divided mapping to compare"
    compared = 0
    for i in rng.permutation(exact)[:12]:
        m = cand.mappings[int(i)]
        spec = DATAFLOWS[dataflow]
        ref, once = reference_counts(problem, spec, m["loops"], STATIONARY_ORDERS[m["glb_order"]],
                                     STATIONARY_ORDERS[m["dram_order"]])
        if not once:  # a PE gets a word twice in a pass: outside the model's pass semantics
            continue
        got = {lv: {x: cand.counts[lv][x][int(i)] for x in DATA_TYPES} for lv in LEVELS}
        for lv in LEVELS:
            for x in DATA_TYPES:
                assert got[lv][x] == pytest.approx(ref[lv][x], rel=1e-12, abs=1e-9), \
                    (lv, x, m)
        compared += 1
    assert compared >= min(3, len(exact))


# ------------------------------------------------------------------------------------------
# Hand-worked counts.

def _one(problem, dataflow, hw, trips, glb_stay="weights", dram_stay="weights"):
    arr = {k: np.array([v]) for k, v in trips.items()}
    counts, feasible, _ = evaluate(problem, DATAFLOWS[dataflow], hw, arr,
                                    STATIONARY_ORDERS[glb_stay], STATIONARY_ORDERS[dram_stay])
    return {lv: {x: float(counts[lv][x][0]) for x in DATA_TYPES} for lv in LEVELS}, \
        bool(feasible[0])


def test_nlr_dense_layer_by_hand():
    # 8 inputs x 4 outputs, batch 1, on 2 (filters) x 4 (channels) PEs; all in the buffer.
    p = Problem(N=1, M=4, C=8, E=1, F=1, R=1, S=1)
    hw = Hardware(pes=8, rows=2, cols=4, rf_bytes=0, glb_bytes=1024)
    c, ok = _one(p, "nlr", hw, {("sp", "M"): 2, ("sp", "C"): 4, ("glb", "M"): 2,
                                ("glb", "C"): 2})
    assert ok
    macs = 32
    assert c["dram"] == {"inputs": 8, "weights": 32, "psums": 4}     # each word once
    assert c["rf"] == dict.fromkeys(DATA_TYPES, 0)                   # no RF
    assert c["array"]["inputs"] == macs and c["array"]["weights"] == macs
    assert c["glb"]["inputs"] == macs / 2                            # multicast to 2 filters
    assert c["glb"]["weights"] == macs                               # no reuse at all
    # psums: 4 channels added in the array per pass (3 hops per result), 2 passes per output
    # (C in two halves) accumulated in the buffer: one read+write for the second.
    assert c["array"]["psums"] == macs - macs / 4
    assert c["glb"]["psums"] == 2 * (8 - 4)


def test_rs_row_primitive_by_hand():
    # One 3-tap filter row over a 6-wide input row: 4 outputs, on one PE (R=1 here).
    p = Problem(N=1, M=1, C=1, E=1, F=4, R=1, S=3)
    hw = Hardware(pes=1, rows=1, cols=1, rf_bytes=64, glb_bytes=1024)
    c, ok = _one(p, "rs", hw, {("rf", "S"): 3, ("pe", "F"): 4})
    assert ok
    assert c["array"]["weights"] == 3             # the row once into the RF
    assert c["array"]["inputs"] == 6              # the sliding window: each input once
    assert c["rf"]["inputs"] == 12 and c["rf"]["weights"] == 12
    assert c["rf"]["psums"] == 2 * (12 - 4)       # 3 products per output: 2 read+writes
    assert c["array"]["psums"] == 0 and c["glb"]["psums"] == 0
    assert c["dram"] == {"inputs": 6, "weights": 3, "psums": 4}


def test_ws_filter_plane_by_hand():
    # Weight stationary (paper, section IV-A): a 2x2 filter plane of each of 2 filters on
    # 2x2 PEs (8 PEs), one weight each; 2 channels in turn (a GLB loop); 3x3 outputs of a
    # 4x4 input. MACs = M C E F R S = 2 * 2 * 9 * 4 = 144.
    p = Problem(N=1, M=2, C=2, E=3, F=3, R=2, S=2)
    hw = Hardware(pes=8, rows=2, cols=4, rf_bytes=2, glb_bytes=4096)
    c, ok = _one(p, "ws", hw, {("sp", "M"): 2, ("sp", "R"): 2, ("sp", "S"): 2,
                               ("pe", "E"): 3, ("pe", "F"): 3, ("glb", "C"): 2})
    assert ok
    # Each weight is fetched once and read by the ALU for all its 9 uses.
    assert c["dram"]["weights"] == c["glb"]["weights"] == c["array"]["weights"] == 16
    assert c["rf"]["weights"] == 144
    # Inputs bypass the RF: every MAC takes its input from the array; the buffer sends each
    # input pixel of the channel once per pass (broadcast to the 8 PEs), 2 passes.
    assert c["rf"]["inputs"] == 0 and c["array"]["inputs"] == 144
    assert c["glb"]["inputs"] == c["dram"]["inputs"] == 2 * 16
    # Partial sums: added across the 4 taps in the array (3 hops of 4 products), the two
    # channels in the buffer (eq. 4: 2a(b - 1) = 2 per output), written out once.
    assert c["rf"]["psums"] == 0
    assert c["array"]["psums"] == 144 - 144 / 4
    assert c["glb"]["psums"] == 2 * 18
    assert c["dram"]["psums"] == 18


def test_osa_output_patch_by_hand():
    # OS_A (SOC-MOP): a 2x2 patch of outputs of one filter on 4 PEs, each accumulating its
    # pixel over the 2x2 taps (PE loops) of 2 channels (a GLB loop, partial sums stay in the
    # PE). 3x3 input per channel. MACs = C E F R S = 2 * 4 * 4 = 32.
    p = Problem(N=1, M=1, C=2, E=2, F=2, R=2, S=2)
    hw = Hardware(pes=4, rows=2, cols=2, rf_bytes=2, glb_bytes=4096)
    c, ok = _one(p, "osa", hw, {("sp", "E"): 2, ("sp", "F"): 2, ("pe", "R"): 2,
                                ("pe", "S"): 2, ("glb", "C"): 2}, "psums", "psums")
    assert ok
    assert c["rf"]["psums"] == 2 * (32 - 4)       # 8 products per pixel: 7 read+writes
    assert c["array"]["psums"] == c["glb"]["psums"] == 0
    assert c["dram"]["psums"] == 4
    for x in ("inputs", "weights"):               # both through the array for every MAC
        assert c["rf"][x] == 0 and c["array"][x] == 32
    assert c["glb"]["weights"] == c["dram"]["weights"] == 8    # broadcast to the 4 PEs
    assert c["glb"]["inputs"] == c["dram"]["inputs"] == 2 * 9  # each input once per pass


def test_osc_filters_of_one_pixel_by_hand():
    # OS_C (MOC-SOP) on a dense layer: 4 filters of one output on 4 PEs over a 2x2 input.
    p = Problem(N=1, M=4, C=1, E=1, F=1, R=2, S=2)
    hw = Hardware(pes=4, rows=2, cols=2, rf_bytes=2, glb_bytes=4096)
    c, ok = _one(p, "osc", hw, {("sp", "M"): 4, ("pe", "R"): 2, ("pe", "S"): 2},
                 "psums", "psums")
    assert ok
    assert c["array"]["inputs"] == c["array"]["weights"] == 16
    assert c["glb"]["inputs"] == 4                 # each input multicast to the 4 filters
    assert c["glb"]["weights"] == c["dram"]["weights"] == 16   # no weight reuse
    assert c["rf"]["psums"] == 2 * (16 - 4) and c["dram"]["psums"] == 4


@pytest.mark.parametrize("dataflow, stays", [("ws", {("weights", "weights")}),
                                             ("osa", {("psums", "psums")}),
                                             ("osb", {("psums", "psums")}),
                                             ("osc", {("psums", "psums")})])
def test_stationary_data_stays_until_all_its_uses_are_done(dataflow, stays):
    # WS: a weight fetched once serves all its uses; OS: a partial sum is completed before
    # it leaves the PE. Every candidate keeps that order at the GLB and DRAM levels.
    p = Problem(N=2, M=4, C=4, E=4, F=3, R=3, S=2)
    hw = Hardware(pes=12, rows=3, cols=4, rf_bytes=48, glb_bytes=320)
    cand = candidate_counts(p, dataflow, hw)
    assert {(m["glb_order"], m["dram_order"]) for m in
            (cand.mappings[i] for i in range(len(cand)))} == stays
    if dataflow == "ws":
        assert np.all(cand.counts["dram"]["weights"] == 4 * 4 * 3 * 2)  # each weight once
    else:
        outputs = 2 * 4 * 4 * 3
        assert np.all(cand.counts["dram"]["psums"] == outputs)         # written once
        assert np.all(cand.counts["glb"]["psums"] == 0)


def test_ws_runs_the_whole_batch_per_weight():
    # The other dataflows may run a batch as halves (refetching weights); WS may not.
    layer = conv("c", 16, 32, 13, 3, padding=1)
    for df, split_allowed in (("ws", False), ("rs", True), ("nlr", True)):
        report = network_energy([layer], batch=8, pes=16, dataflows=(df,))
        le = report.dataflows[df].layers[0]
        assert split_allowed or le.mapping["batch_runs"] == 1
    hw = Hardware(pes=16, rows=4, cols=4, rf_bytes=2, glb_bytes=2048)
    le = layer_energy(layer, "ws", hw, batch=8)
    assert le.mapping["batch_runs"] == 1
    assert le.counts["dram"]["weights"] == layer.weights()


def test_padding_scales_only_the_data_that_depends_on_it():
    # E = 5 output rows on 2-row passes (padded to 6); R, S, C, M exact.
    p = Problem(N=1, M=2, C=1, E=5, F=1, R=1, S=1)
    hw = Hardware(pes=2, rows=1, cols=2, rf_bytes=64, glb_bytes=4096)
    c, ok = _one(p, "nlr", hw, {("sp", "M"): 2, ("glb", "E"): 3}, "inputs", "inputs")
    assert ok
    assert c["dram"]["weights"] == 2              # weights do not depend on E: not scaled
    assert c["dram"]["inputs"] == 5 and c["dram"]["psums"] == 10


def test_capacity_is_enforced():
    p = Problem(N=1, M=4, C=8, E=1, F=1, R=1, S=1)
    hw = Hardware(pes=8, rows=2, cols=4, rf_bytes=0, glb_bytes=16)   # 8 words
    _, ok = _one(p, "nlr", hw, {("sp", "M"): 2, ("sp", "C"): 4, ("glb", "M"): 2,
                                ("glb", "C"): 2})
    assert not ok
    with pytest.raises(ValueError, match="no legal NLR mapping"):
        candidate_counts(Problem(N=1, M=64, C=64, E=1, F=1, R=1, S=1), "nlr",
                         Hardware(pes=1, rows=1, cols=1, rf_bytes=0, glb_bytes=2))


# ------------------------------------------------------------------------------------------
