"""Our accelerator in the energy model: the counter table covers the counters, the counters the
model uses equal the RTL's, every level is priced from exactly the counters its definition
names, a run-layer output is priced beside the prediction, and the lane PE's compute."""

import itertools
import shutil

import numpy as np
import pytest

from hw.schedule import COUNTERS, DERIVED_COUNTERS
from model.layer_file import load_outputs, save_layer, save_outputs
from model.layer_file import Layer as LayerFile
from sim import energy
from sim.cycle_model import ArrayParams
from sim.energy.costs import GATE_PJ
from sim.energy.runs import RUN_PARAMETERS, split_like
from sim.energy_presets import conv
from sim.run_layer import layer_shape

#: Two lanes: layer 0's 3 channels are 2 words, the second with an idle lane.
PARAMS = ArrayParams(rows=3, cols=4, lanes=2, filter_spad=16, ifmap_spad=16)
NAMES = COUNTERS + DERIVED_COUNTERS


def test_the_counter_table_covers_the_accelerators_counters():
    # One table says what every counter moves: a counter added or renamed in hw.schedule
    # (what the RTL and OUT.npz report) without an entry there fails here.
    assert set(energy.COUNTER_USE) == set(NAMES)
    priced = {n: use.level for n, use in energy.COUNTER_USE.items() if use.level}
    assert priced == {"slots": "rf", "input_writes": "rf", "filter_reads": "rf",
                      "filter_writes": "rf", "array_transfers": "array", "glb_reads": "glb",
                      "glb_writes": "glb", "offchip_words": "dram"}


# ------------------------------------------------------------------------------------------
# Against our RTL: the counters the energy model uses for our accelerator equal the ones the
# accelerator reports in simulation (Amaranth backend of sim.run_layer).

def _rtl_layers(rng):
    def codes(lo, hi, shape):
        return rng.integers(lo, hi + 1, size=shape)

    ternary = [  # (weights, inputs, stride, padding): a shared accelerator, one simulation
        (codes(-1, 1, (4, 3, 3, 3)), codes(-8, 7, (3, 6, 6)), 1, 1),     # padding, zeros
        (codes(-1, 1, (2, 2, 3, 3)), codes(-8, 7, (2, 7, 7)), 2, 0),     # stride 2
        (codes(-1, 1, (2, 1, 5, 5)), codes(-8, 7, (1, 6, 6)), 1, 2),     # R > rows: row folds
        (codes(-1, 1, (2, 2, 3, 1)), codes(-8, 7, (2, 9, 3)), 1, 0),     # E > cols
        (codes(-1, 1, (5, 12, 1, 1)), codes(-8, 7, (12, 1, 1)), 1, 0),   # dense
    ]
    pow2 = [(codes(-2, 2, (3, 2, 3, 3)), codes(-8, 7, (2, 5, 5)), 1, 1)]
    return ([LayerFile("ternary", w, a, s, p, a_bits=4) for w, a, s, p in ternary],
            [LayerFile("pow2", w, a, s, p, a_bits=4) for w, a, s, p in pow2])


def _zero_products(layer):
    """Products with a zero weight level whose tap lands inside the image (brute force)."""
    w, (_, h, wd) = np.asarray(layer.weights), np.shape(layer.inputs)
    _, _, R, S = w.shape
    U, P = int(layer.stride), int(layer.padding)
    E, F = (h + 2 * P - R) // U + 1, (wd + 2 * P - S) // U + 1
    count = 0
    for r, s_ in itertools.product(range(R), range(S)):
        zeros = int(np.sum(w[:, :, r, s_] == 0))
        inside = sum(0 <= e * U + r - P < h and 0 <= f * U + s_ - P < wd
                     for e in range(E) for f in range(F))
        count += zeros * inside
    return count


def _named(layer, name="l"):
    from sim.energy_presets import NamedLayer
    return NamedLayer(name, layer_shape(layer))


@pytest.fixture(scope="module")
def rtl_runs():
    from sim.run_layer import run_layers

    rng = np.random.default_rng(2024)
    out = []
    for group in _rtl_layers(rng):
        out += list(zip(group, run_layers(group, backend="amaranth", params=PARAMS)))
    return out


def test_array_counters_equal_the_rtl(rtl_runs):
    for layer, run in rtl_runs:
        predicted = energy.array_counters(layer, PARAMS)
        assert predicted == {k: int(v) for k, v in run.counters.items()}
        assert predicted["skipped"] == _zero_products(layer)


def test_every_level_is_priced_from_its_counters(rtl_runs):
    # With 16-bit codes and partial sums and the normalised costs (per 16 bits), each
    # level's energy is its counters times its cost, a word of 2 lanes costing 2, with
    # nothing else in it: a level counted twice (or half) is off by a factor of two here.
    hw = energy.array_hardware(PARAMS, scheme=energy.INT16, acc_bits=16, glb_words=4096)
    assert (hw.input_bits, hw.weight_bits, hw.psum_bits) == (32, 32, 16)
    table = energy.cost_table("normalized")
    for layer, run in rtl_runs:
        k = {n: int(v) for n, v in run.counters.items()}
        t = energy.counters_by_type(layer, PARAMS)
        named = _named(layer)
        le = energy.array_energy(named, dict(k, by_type=t), hw, scheme=energy.INT16,
                                 costs="normalized", lanes=PARAMS.lanes)
        n_out = named.M * named.E * named.F
        assert le.energy["dram"] == 200 * (2 * (k["offchip_words"] - n_out) + n_out)
        glb = {x: t["glb_reads"][x] + t["glb_writes"][x] for x in ("inputs", "weights", "psums")}
        assert le.energy["glb"] == 6 * (2 * (glb["inputs"] + glb["weights"]) + glb["psums"])
        assert le.energy["array"] == 2 * k["array_transfers"]
        assert le.energy["rf"] == 1 * 2 * (k["rf_reads"] + k["rf_writes"])
        mac = table.mac(energy.mac_pj(energy.INT16, 16, 2, channels=named.C))
        assert le.energy["alu"] == pytest.approx((k["macs"] - k["skipped"]) * mac)
        assert le.macs == k["macs"] and le.skipped == k["skipped"]


def test_counts_by_level_and_data_type(rtl_runs):
    layer, run = rtl_runs[0]                       # ternary [4,3,3,3] on [3,6,6], padding 1
    k = {n: int(v) for n, v in run.counters.items()}
    t = energy.counters_by_type(layer, PARAMS)
    c = energy.counts_by_level(_named(layer), k, t, lanes=PARAMS.lanes)
    n_w, n_in, n_out = 4 * 2 * 9, 2 * 36, 4 * 36   # 3 channels in 2 words of 2 lanes
    assert c["dram"] == {"inputs": n_in, "weights": n_w, "psums": n_out}
    assert c["glb"] == {x: t["glb_reads"][x] + t["glb_writes"][x]
                        for x in ("inputs", "weights", "psums")}
    assert t["glb_writes"]["inputs"] == n_in and t["glb_writes"]["weights"] == n_w
    assert c["array"] == {"inputs": 0, "weights": 0, "psums": k["array_transfers"]}
    # register files: the input scratchpads (a read per slot, the words taken) and the
    # filter scratchpads (a read per row and slot, the words written); no partial sums
    assert c["rf"] == {"inputs": k["slots"] + k["input_writes"],
                       "weights": k["filter_reads"] + k["filter_writes"], "psums": 0}
    # The split by data type adds up to the RTL's counters, and its weight words are what
    # the definitions say: each weight word (2 per filter row) is sent once per block, a
    # block being one column fold (E = 6 on 4 columns: 2) and one output-column segment.
    for name in ("glb_reads", "glb_writes", "rf_reads", "rf_writes"):
        assert sum(t[name].values()) == k[name], name
    segments = -(-6 // run.mapping.Fseg)
    assert t["glb_reads"]["weights"] == n_w * 2 * segments
    # the idle lane of the last word is no MAC
    assert k["macs"] == 2 * k["slots"] - k["last_slots"]


def test_counters_of_another_layer_are_refused(rtl_runs):
    (layer, run), (other, _) = rtl_runs[0], rtl_runs[1]
    k = {n: int(v) for n, v in run.counters.items()}
    t = energy.counters_by_type(layer, PARAMS)
    with pytest.raises(ValueError, match="do not belong to layer"):
        energy.counts_by_level(_named(other), k, t, lanes=PARAMS.lanes)
    with pytest.raises(ValueError, match="do not belong to layer"):    # another lane count
        energy.counts_by_level(_named(layer), k, t, lanes=1)
    bad = {"glb_reads": dict(t["glb_reads"], psums=t["glb_reads"]["psums"] + 1),
           "glb_writes": t["glb_writes"]}
    with pytest.raises(ValueError, match="does not add up"):
        energy.counts_by_level(_named(layer), k, bad, lanes=PARAMS.lanes)
    with pytest.raises(ValueError, match="lack"):
        energy.counts_by_level(_named(layer), {n: v for n, v in k.items() if n != "macs"}, t,
                               lanes=PARAMS.lanes)


def test_all_zero_weights_leave_no_compute():
    from sim.run_layer import run_layers

    layer = _rtl_layers(np.random.default_rng(1))[0][0]
    layer = LayerFile("ternary", np.zeros_like(layer.weights), layer.inputs, 1, 1, a_bits=4)
    run = run_layers([layer], backend="amaranth", params=PARAMS)[0]
    counters = energy.array_counters(layer, PARAMS)
    assert counters == {k: int(v) for k, v in run.counters.items()}
    assert counters["skipped"] == counters["macs"] > 0
    counters["by_type"] = energy.counters_by_type(layer, PARAMS)
    scheme = energy.Scheme("ternary", 4, acc_bits=None)
    hw = energy.array_hardware(PARAMS, scheme=scheme, acc_bits=8, glb_words=1024)
    le = energy.array_energy(conv("z", 3, 4, 6, 3, padding=1), counters, hw, scheme=scheme,
                             lanes=PARAMS.lanes)
    assert le.energy["alu"] == 0 and le.data_movement > 0
    assert le.total == pytest.approx(le.data_movement)
    assert le.counts["dram"] == {"inputs": 2 * 36, "weights": 4 * 2 * 9, "psums": 4 * 36}


# ------------------------------------------------------------------------------------------
# What ran, priced beside the model (the files of mulfree run-layer).

@pytest.fixture(scope="module")
def run_files(tmp_path_factory, rtl_runs):
    folder = tmp_path_factory.mktemp("runs")
    layer, run = rtl_runs[0]
    save_layer(folder / "layer.npz", layer)
    mp = run.mapping
    array = {name: getattr(PARAMS, name) for name in RUN_PARAMETERS}   # as run-layer does
    save_outputs(folder / "out.npz", run.outputs, run.counters,
                 extra={**array, "q": mp.q, "p": mp.p, "Fseg": mp.Fseg})
    return folder


def test_a_run_is_priced_beside_the_model(run_files):
    # the array (lanes and scratchpads included) is the one OUT.npz records
    r = energy.price_run(run_files / "layer.npz", run_files / "out.npz")
    assert r.counters_equal and r.array == (3, 4) and r.unit == "pJ"
    assert r.ran_energy.counts == r.model_energy.counts
    assert r.ran_energy.total == r.model_energy.total > 0
    assert r.ran_energy.counts["dram"] == {"inputs": 72, "weights": 72, "psums": 144}
    data = r.to_dict()
    assert data["counters"]["ran"] == data["counters"]["model"]
    # told another lane count, the run is no longer this layer's
    with pytest.raises(ValueError, match="do not belong to layer"):
        energy.price_run(run_files / "layer.npz", run_files / "out.npz", lanes=1)
    with pytest.raises(ValueError, match="unknown array parameter 'psum_spad'"):
        energy.price_run(run_files / "layer.npz", run_files / "out.npz", psum_spad=16)


def test_a_run_that_differs_from_the_model_shows_where(run_files, tmp_path):
    shutil.copy(run_files / "layer.npz", tmp_path / "layer.npz")
    out = load_outputs(run_files / "out.npz")
    counters = {k: out[k] for k in NAMES}
    counters["glb_reads"] += 10
    counters["array_transfers"] += 4
    save_outputs(tmp_path / "out.npz", out["outputs"], counters,
                 extra={"rows": 3, "cols": 4})
    # this OUT.npz does not record the lanes and scratchpads: they are given
    r = energy.price_run(tmp_path / "layer.npz", tmp_path / "out.npz", lanes=2, filter_spad=16,
                         ifmap_spad=16, costs="normalized")
    assert not r.counters_equal
    ran, model = r.ran_energy.counts, r.model_energy.counts
    assert sum(ran["glb"].values()) == sum(model["glb"].values()) + 10
    assert ran["array"]["psums"] == model["array"]["psums"] + 4
    assert ran["rf"] == model["rf"] and ran["dram"] == model["dram"]


def test_a_run_of_another_layer_is_refused(run_files, tmp_path, rtl_runs):
    save_layer(tmp_path / "other.npz", rtl_runs[1][0])
    with pytest.raises(ValueError, match="not the same layer"):
        energy.price_run(tmp_path / "other.npz", run_files / "out.npz")
    with pytest.raises(ValueError, match="not a run-layer output"):
        energy.price_run(run_files / "layer.npz", run_files / "layer.npz")


def test_split_like():
    assert split_like({"a": 2, "b": 3}, 5) == {"a": 2, "b": 3}
    assert split_like({"a": 2, "b": 2}, 9) == {"a": 4, "b": 5}
    assert sum(split_like({"a": 1, "b": 1, "c": 1}, 10).values()) == 10


# ------------------------------------------------------------------------------------------
# The lane PE: products, a reduction tree, one accumulator add per slot.

def test_tree_adds():
    assert energy.tree_adds(1, 9) == []
    assert energy.tree_adds(2, 9) == [9]
    assert energy.tree_adds(8, 9) == [9, 9, 9, 9, 10, 10, 11]
    assert energy.tree_adds(5, 9) == [9, 9, 10, 11]         # 5 -> 3 -> 2 -> 1
    for n in range(1, 40):
        assert len(energy.tree_adds(n, 4)) == n - 1


def test_compute_of_a_lane_pe():
    binary = energy.Scheme("binary", 8)
    one = energy.compute_pj(binary, 24)
    assert one["product"] == pytest.approx(8 * GATE_PJ)
    assert one["tree"] == 0 and one["accumulate"] == pytest.approx(energy.add_pj(24))
    eight = energy.compute_pj(binary, 24, lanes=8)
    tree = 4 * energy.add_pj(9) + 2 * energy.add_pj(10) + energy.add_pj(11)
    assert eight["tree"] == pytest.approx(tree / 8)
    assert eight["accumulate"] == pytest.approx(energy.add_pj(24) / 8)
    assert eight["total"] == pytest.approx(one["product"] + (tree + energy.add_pj(24)) / 8)
    # Padding lanes are idle: 5 working lanes of 8 cost a 5-input tree and the add, over 5.
    five = energy.compute_pj(binary, 24, lanes=8, active=5)
    assert five["tree"] == pytest.approx(sum(map(energy.add_pj, [9, 9, 10, 11])) / 5)
    # A layer of 13 channels per group on 8 lanes: one full slot and one of 5 per tap.
    assert energy.mac_pj(binary, 24, 8, channels=13) == pytest.approx(
        (8 * eight["total"] + 5 * five["total"]) / 13)
    assert energy.mac_pj(binary, 24, 8, channels=16) == pytest.approx(eight["total"])
    assert energy.mac_pj(binary, 24, 1, channels=3) == pytest.approx(one["total"])
    int8 = energy.compute_pj(energy.Scheme("int", 8, 8), 24, lanes=8)
    assert int8["product"] == pytest.approx(0.2)
    assert int8["tree"] == pytest.approx((4 * energy.add_pj(16) + 2 * energy.add_pj(17)
                                          + energy.add_pj(18)) / 8)
    xnor = energy.compute_pj(energy.Scheme("xnor", 32, 32), 12)
    assert xnor["accumulate"] == pytest.approx(energy.add_pj(12) / 32)
    assert xnor == energy.compute_pj(energy.Scheme("xnor", 32, 32), 12, lanes=32)
    with pytest.raises(ValueError, match="xnor lanes"):
        energy.compute_pj(energy.Scheme("xnor", 32, 32), 12, lanes=8)
    with pytest.raises(ValueError, match="active lanes"):
        energy.compute_pj(binary, 24, lanes=4, active=5)
    with pytest.raises(ValueError, match="lanes must be"):
        energy.compute_pj(binary, 24, lanes=0)


def test_lanes_share_the_accumulator_add():
    # The saving the lanes bring to a multiplier-free MAC: the accumulator add shared.
    ratio = {}
    for lanes in (1, 8):
        int8 = energy.compute_pj(energy.Scheme("int", 8, 8), 24, lanes=lanes)["total"]
        binary = energy.compute_pj(energy.Scheme("binary", 8), 24, lanes=lanes)["total"]
        ratio[lanes] = int8 / binary
    assert ratio[8] > ratio[1] * 1.4
