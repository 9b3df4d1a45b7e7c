"""The energy of our array, level by level, against the counters the RTL reports.

``sim.energy.array_energy`` turns the accelerator's counters into word accesses per storage
level and data type. Each level's accesses must add up to exactly the RTL's counters of that
level (not only the total), each level's energy must be those accesses at that level's cost,
and the compute energy must be the MACs that were not skipped: a count off by a factor in one
level fails here by name.
"""

import numpy as np
import pytest

from model.layer_file import Layer as LayerFile
from model.shapes import LayerShape
from sim import energy
from sim.cycle_model import ArrayParams
from sim.energy import DATA_TYPES, LEVELS
from sim.energy_presets import NamedLayer
from sim.run_layer import run_layers
from tests.conftest import random_codes

PARAMS = ArrayParams(rows=2, cols=3, lanes=2, filter_spad=16, ifmap_spad=16)

#: (M, C, R, S, H, W, stride, padding): padding, stride 2, R > rows, dense
SHAPES = [(3, 2, 3, 3, 5, 5, 1, 1), (2, 2, 3, 2, 7, 6, 2, 0), (2, 1, 4, 3, 6, 5, 1, 1),
          (4, 6, 1, 1, 1, 1, 1, 0)]


@pytest.fixture(scope="module")
def runs():
    rng = np.random.default_rng(11)
    layers = []
    for M, C, R, S, H, W, U, P in SHAPES:
        weights, inputs = random_codes(rng, "ternary", (M, C, R, S), (C, H, W), a_bits=4)
        layers.append(LayerFile("ternary", weights, inputs, U, P, a_bits=4))
    return list(zip(layers, run_layers(layers, backend="amaranth", params=PARAMS)))


def _priced(layer, run):
    M, C, R, S = layer.weights.shape
    _, H, W = layer.inputs.shape
    shape = NamedLayer("l", LayerShape(M, C, R, S, H, W, layer.stride, layer.padding))
    scheme = energy.Scheme("ternary", 4, acc_bits=None)
    counters = dict(run.counters, by_type=energy.counters_by_type(layer, PARAMS))
    hw = energy.array_hardware(PARAMS, scheme=scheme, acc_bits=12, glb_words=1024)
    return energy.array_energy(shape, counters, hw, scheme=scheme, lanes=PARAMS.lanes), hw, \
        scheme


#: Storage level -> the RTL counters whose sum is that level's word accesses.
LEVEL_COUNTERS = {"dram": ("offchip_words",), "glb": ("glb_reads", "glb_writes"),
                  "array": ("array_transfers",), "rf": ("rf_reads", "rf_writes")}


def test_every_level_is_the_rtl_counters_of_that_level(runs):
    assert set(LEVEL_COUNTERS) == set(LEVELS)
    for layer, run in runs:
        le, _, _ = _priced(layer, run)
        for level, names in LEVEL_COUNTERS.items():
            accesses = sum(le.counts[level][x] for x in DATA_TYPES)
            assert accesses == sum(run.counters[n] for n in names), (level, layer.weights.shape)
        # an input word is read per slot, a filter word per PE row and slot; psums never
        # enter a scratchpad
        k = run.counters
        assert le.counts["rf"] == {"inputs": k["slots"] + k["input_writes"],
                                   "weights": k["filter_reads"] + k["filter_writes"],
                                   "psums": 0}
        assert k["slots"] * PARAMS.lanes >= k["macs"] > 0
        words = -(-layer.inputs.shape[0] // PARAMS.lanes)      # channels, 2 to a word
        assert le.counts["dram"] == {"inputs": layer.inputs[:words].size,
                                     "weights": layer.weights[:, :words].size,
                                     "psums": run.outputs.size}


def test_each_level_is_priced_at_its_own_cost_and_compute_skips_zeros(runs):
    for layer, run in runs:
        le, hw, scheme = _priced(layer, run)
        table = energy.cost_table("45nm")
        acc = scheme.layer_acc_bits(le.layer)
        width = {"inputs": 2 * 4, "weights": 2 * 2, "psums": acc}   # words of 2 lanes
        assert (hw.input_bits, hw.weight_bits) == (width["inputs"], width["weights"])
        for level in LEVELS:
            expected = sum(le.counts[level][x] * table.access(level, width[x], hw)
                           for x in DATA_TYPES)
            assert le.energy[level] == pytest.approx(expected, rel=1e-12), level
        done = run.counters["macs"] - run.counters["skipped"]
        assert run.counters["skipped"] > 0
        mac = table.mac(energy.mac_pj(scheme, acc, PARAMS.lanes,
                                      channels=layer.weights.shape[1]))
        assert le.energy["alu"] == pytest.approx(done * mac, rel=1e-12)
        assert le.total == pytest.approx(sum(le.energy.values()), rel=1e-12)
