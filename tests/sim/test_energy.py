"""The dataflow energy model at the level of layers and networks: the cost and compute
figures, the presets, the storage under equal area, the Eyeriss comparison (ratios and the
level each dataflow spends most on), the agreement with nn_dataflow, and the sanity
properties (costs, batch, all-zero ternary weights, bad input)."""

import json

import numpy as np
import pytest

from model import deploy, nets, quant
from model.shapes import LayerShape
from sim import energy
from sim.energy.hardware import Hardware
from sim.energy.specs import DATAFLOWS, LEVELS, PAPER_DATAFLOWS
from sim.energy_presets import NamedLayer, conv, layers_from_model, network

# ------------------------------------------------------------------------------------------
# Costs and compute (45 nm figures of REFERENCES.md).

def test_horowitz_points_are_reproduced():
    assert energy.add_pj(8) == pytest.approx(0.03)
    assert energy.add_pj(32) == pytest.approx(0.1)
    assert energy.multiply_pj(8, 8) == pytest.approx(0.2)
    assert energy.multiply_pj(32, 32) == pytest.approx(3.2)      # measured 3.1: within 4 %
    for size, pj_64b in ((8 * 1024, 10), (32 * 1024, 20), (1024 * 1024, 100)):
        assert energy.sram_pj_per_bit(size) * 64 == pytest.approx(pj_64b)
    assert energy.CostTable("45nm").access("dram", 32, Hardware()) == pytest.approx(640)
    with pytest.raises(ValueError, match="SRAM size"):
        energy.sram_pj_per_bit(0)


def test_normalised_costs_are_the_eyeriss_table():
    t = energy.CostTable("normalized")
    hw = Hardware()
    assert [t.access(lv, 16, hw) for lv in LEVELS] == [200, 6, 2, 1]
    assert t.mac(energy.compute_pj(energy.INT16, 16)["total"]) == pytest.approx(1.0)
    assert t.access("dram", 8, hw) == 100                      # packed 8-bit words


def test_compute_per_unit():
    int8 = energy.compute_pj(energy.Scheme("int", 8, 8), 24)
    binary = energy.compute_pj(energy.Scheme("binary", 8), 24)
    assert int8["product"] == pytest.approx(0.2)
    assert int8["accumulate"] == binary["accumulate"] == pytest.approx(energy.add_pj(24))
    assert binary["product"] < int8["product"] / 10           # an XOR row, no multiplier
    xnor = energy.compute_pj(energy.Scheme("xnor", 32, 32), 12)
    assert xnor["accumulate"] == pytest.approx(energy.add_pj(12) / 32)
    lut = energy.compute_pj(energy.Scheme("dorefa", 3, 1), 12)
    assert 0 < lut["product"] < int8["product"]


def test_default_sparsity_is_the_gaussian_twn_expectation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=200_000)
    measured = np.mean(quant.ternarize(w).codes == 0)
    assert energy.default_sparsity("ternary") == pytest.approx(measured, abs=0.005)
    assert energy.default_sparsity("binary") == 0.0


def test_cost_table_validation():
    with pytest.raises(ValueError, match="unknown cost table"):
        energy.cost_table("65nm")
    with pytest.raises(ValueError, match="unknown cost level"):
        energy.cost_table({"sram": 1})
    with pytest.raises(ValueError, match=">= 0"):
        energy.cost_table({"dram": -1})


# ------------------------------------------------------------------------------------------
# Presets and hardware.

def test_alexnet_shapes_give_the_known_macs():
    want = {"conv1": 105_415_200, "conv2": 223_948_800, "conv3": 149_520_384,
            "conv4": 112_140_288, "conv5": 74_760_192, "fc6": 37_748_736,
            "fc7": 16_777_216, "fc8": 4_096_000}
    layers = network("alexnet")
    assert {ly.name: ly.macs() for ly in layers} == want
    assert [ly.kind for ly in layers] == ["conv"] * 5 + ["fc"] * 3
    assert (layers[0].E, layers[1].E, layers[2].E) == (55, 27, 13)


def test_other_presets():
    vgg = network("vgg16")
    assert len(vgg) == 16 and sum(ly.macs() for ly in vgg if ly.kind == "conv") == 15_346_630_656
    lenet = network("lenet5")
    assert [ly.E for ly in lenet[:2]] == [28, 10] and lenet[2].C * lenet[2].H ** 2 == 400
    for name, hw, flat in (("mnist", 28, 64 * 7 * 7), ("digits", 8, 64 * 2 * 2)):
        c1, c2, f3, f4 = network(name)
        assert (c1.M, c2.M, c1.E, c2.E) == (32, 64, hw, hw // 2)
        assert (f3.C * f3.H * f3.W, f3.M, f4.C, f4.M) == (flat, 256, 256, 10)
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        network("resnet")
    with pytest.raises(ValueError, match="groups 2 must divide"):
        conv("bad", 3, 96, 11, 3, groups=2)
    with pytest.raises(ValueError, match="does not fit"):
        NamedLayer("bad", LayerShape(1, 1, 3, 3, 2, 2))
    with pytest.raises(ValueError, match="must be a LayerShape"):
        NamedLayer("bad", (1, 1, 3, 3, 2, 2))


def test_a_named_layer_reads_through_its_shape():
    ly = conv("c", 96, 256, 27, 5, padding=2, groups=2)
    assert ly.shape == LayerShape(256, 96, 5, 5, 27, 27, 1, 2, 2)
    assert (ly.C, ly.M, ly.H, ly.R, ly.E, ly.F, ly.groups) == (96, 256, 27, 5, 27, 27, 2)
    assert ly.macs(3) == 3 * ly.shape.macs and ly.weights() == 256 * 48 * 25
    assert energy.Problem.of(ly.shape, 4) == energy.Problem(4, 128, 48, 27, 27, 5, 5, 1)


def test_equal_area():
    ratio = 1.6
    hws = {df: energy.equal_area_hardware(df, 256, rf_area_ratio=ratio) for df in DATAFLOWS}
    assert (hws["rs"].rf_bytes, hws["rs"].glb_bytes) == (512, 128 * 1024)
    assert (hws["rs"].rows, hws["rs"].cols) == (16, 16)
    area = {df: 256 * h.rf_bytes * ratio + h.glb_bytes for df, h in hws.items()}
    assert max(area.values()) - min(area.values()) < 1      # equal up to rounding
    # What each keeps in its RF, in 16-bit words: RS and OS_A the baseline 512 B, WS one
    # weight, OS_B a partial sum and a 15-input FIFO, OS_C a partial sum, NLR none.
    assert {df: h.rf_bytes for df, h in hws.items()} == {
        "rs": 512, "ws": 2, "osa": 512, "osb": 32, "osc": 2, "nlr": 0, "ws_array": 2,
        "os_any": 2}
    assert hws["nlr"].glb_bytes == 128 * 1024 + int(256 * 512 * ratio)
    with pytest.raises(ValueError, match="does not give 256"):
        energy.equal_area_hardware("rs", 256, rows=10)
    with pytest.raises(ValueError, match="rf_area_ratio"):
        energy.equal_area_hardware("rs", 256, rf_area_ratio=0)


def test_default_area_ratio_gives_the_papers_storage_spread():
    # Section VI-B: buffers differ by up to 2.6x, total storage by up to 80 kB (256 PEs).
    hws = [energy.equal_area_hardware(df) for df in PAPER_DATAFLOWS]
    glb = [h.glb_bytes for h in hws]
    total = [h.glb_bytes + 256 * h.rf_bytes for h in hws]
    assert max(glb) / min(glb) == pytest.approx(2.6, abs=0.005)
    assert 75 * 1024 <= max(total) - min(total) <= 80 * 1024


# ------------------------------------------------------------------------------------------
# The published comparison (Eyeriss, ISCA 2016: AlexNet, 256 PEs, equal area, batch 16).

# The tests share this module's fixtures: one worker runs them all.
pytestmark = pytest.mark.xdist_group("sim.test_energy")


@pytest.fixture(scope="module")
def alexnet():
    return energy.network_energy("alexnet", batch=16, pes=256)


def test_rs_is_the_most_efficient_dataflow_on_alexnet(alexnet):
    for kind in ("conv", "fc"):
        ratios = alexnet.ratios(kind)
        assert set(ratios) == {"ws", "osa", "osb", "osc", "nlr"}
        assert all(r > 1.0 for r in ratios.values()), (kind, ratios)
    # The paper: RS 1.4x-2.5x better than each other dataflow in CONV layers, >= 1.3x in FC
    # layers (batch 16). Where docs/energy.md says we reach it (to the printed 2 digits), and
    # where we miss: FC WS (1.28x).
    conv, fc = alexnet.ratios("conv"), alexnet.ratios("fc")
    for df in ("ws", "osa", "osb", "osc", "nlr"):
        assert 1.385 <= conv[df] <= 2.545, (df, conv[df])
    for df in ("osa", "osb", "osc", "nlr"):
        assert fc[df] >= 1.3, (df, fc[df])
    assert 1.2 < fc["ws"] < 1.3


def test_the_level_each_dataflow_spends_most_on(alexnet):
    # CONV layers: RS spends most in its register files; WS, OS_A and OS_B in the array
    # (every input arrives through it), OS_C and NLR in the buffer (weights without reuse
    # in the array; everything). WS goes off chip more than any other dataflow (its
    # partial sums of the whole batch do not fit the buffer). FC layers: DRAM for every
    # dataflow (each weight is used by the batch only).
    top = {df: max(LEVELS, key=d.level_totals("conv").get)
           for df, d in alexnet.dataflows.items()}
    assert top == {"rs": "rf", "ws": "array", "osa": "array", "osb": "array", "osc": "glb",
                   "nlr": "glb"}
    dram = {df: d.level_totals("conv")["dram"] for df, d in alexnet.dataflows.items()}
    assert max(dram, key=dram.get) == "ws"
    for d in alexnet.dataflows.values():
        assert max(LEVELS, key=d.level_totals("fc").get) == "dram"


def test_rs_agrees_with_nn_dataflow(alexnet):
    # nn_dataflow (stanford-mast, commit 198a527; docs/energy.md says how it was run) gives
    # 61.668e9 for AlexNet CONV1-5 at batch 16 on a 16x16 array, 512 B RF, 128 kB buffer,
    # costs 200/6/2/1 and MAC 1. The goal: agreement within 15 %.
    ours = alexnet.dataflows["rs"].total_of("conv")
    assert ours / 61_667_559_680 == pytest.approx(1.0, abs=0.15)


def test_report_totals_are_sums(alexnet):
    for d in alexnet.dataflows.values():
        for le in d.layers:
            assert le.total == pytest.approx(sum(le.energy.values()))
            assert le.total == pytest.approx(sum(le.by_type.values()))
            assert le.macs == le.layer.macs(16)
            # Every MAC reads its two operands from the RF, or (bypassed) from the array.
            for x in ("inputs", "weights"):
                assert le.counts["rf"][x] + (le.counts["array"][x] if le.counts["rf"][x] == 0
                                             else 0) >= le.macs * (1 - 1e-12)
            # Every word comes from DRAM at least once; every output goes back once.
            assert le.counts["dram"]["weights"] >= le.layer.weights() * (1 - 1e-12)
            assert le.counts["dram"]["psums"] >= 16 * le.layer.M * le.layer.E * le.layer.F \
                * (1 - 1e-12)


def test_json_has_the_structure_of_the_issue(alexnet, tmp_path):
    path = tmp_path / "e.json"
    energy.write_json(alexnet, path)
    data = json.loads(path.read_text())
    assert set(data["dataflows"]) == set(PAPER_DATAFLOWS)
    for df, d in data["dataflows"].items():
        assert list(d["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                     "fc7", "fc8"]
        for name, ly in d["layers"].items():
            assert set(ly) >= {"total", "levels", "counts"}
            assert set(ly["levels"]) == {"dram", "glb", "array", "rf", "alu"}
            assert ly["total"] == pytest.approx(sum(ly["levels"].values()))
            assert set(ly["counts"]) == {"dram", "glb", "array", "rf", "macs", "skipped"}
            assert ly["total"] == pytest.approx(alexnet.dataflows[df].layers[
                [le.layer.name for le in alexnet.dataflows[df].layers].index(name)].total)
    assert data["ratios_to_rs"]["conv"]["nlr"] == pytest.approx(alexnet.ratios("conv")["nlr"])


def test_plots_are_written(alexnet, tmp_path):
    energy.plot_dataflows(alexnet, tmp_path / "d.png")
    energy.plot_schemes({"int16": alexnet.dataflows["rs"].layers,
                         "(nlr)": alexnet.dataflows["nlr"].layers}, tmp_path / "s.png",
                        unit=alexnet.unit, title="AlexNet")
    for name in ("d.png", "s.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "s.png"]  # no leftovers
    # model.files' writer: an existing output is replaced only with force
    with pytest.raises(ValueError, match="exists"):
        energy.plot_dataflows(alexnet, tmp_path / "d.png")
    with pytest.raises(ValueError, match="exists"):
        energy.write_json(alexnet, tmp_path / "s.png")
    energy.write_json(alexnet, tmp_path / "d.png", force=True)
    assert json.loads((tmp_path / "d.png").read_text())["network"] == alexnet.network


# ------------------------------------------------------------------------------------------
# Sanity properties.

SMALL_NETS = ("lenet5", "digits")


@pytest.mark.parametrize("net", SMALL_NETS)
def test_energy_never_decreases_when_a_cost_rises(net):
    rng = np.random.default_rng(11)
    for _ in range(3):
        base = {lv: float(v) for lv, v in zip(energy.ENERGY_LEVELS,
                                              rng.uniform(0.5, 300, size=5))}
        before = energy.network_energy(net, batch=2, pes=64, costs=base)
        for lv in energy.ENERGY_LEVELS:
            raised = dict(base, **{lv: base[lv] * rng.uniform(1.05, 3)})
            after = energy.network_energy(net, batch=2, pes=64, costs=raised)
            for df in before.dataflows:
                for a, b in zip(before.dataflows[df].layers, after.dataflows[df].layers):
                    assert b.total >= a.total * (1 - 1e-12), (net, lv, df, a.layer.name)


@pytest.mark.parametrize("net, costs", [(n, c) for n in SMALL_NETS for c in energy.COST_TABLES]
                         + [("alexnet", "normalized")])
def test_doubling_the_batch_never_more_than_doubles_energy(net, costs):
    # Every dataflow but WS may run a batch as two halves; WS keeps each weight for all the
    # batch's uses (its energy per image may grow with the batch, checked below).
    # AlexNet: batches whose doubles the search for 16 has already met (it is slow).
    dataflows = tuple(df for df in DATAFLOWS if DATAFLOWS[df].splits_batch)
    for batch in ((1, 4, 8) if net == "alexnet" else (1, 3, 8)):
        one = energy.network_energy(net, batch=batch, costs=costs, dataflows=dataflows)
        two = energy.network_energy(net, batch=2 * batch, costs=costs, dataflows=dataflows)
        for df in dataflows:
            for a, b in zip(one.dataflows[df].layers, two.dataflows[df].layers):
                assert b.total <= 2 * a.total * (1 + 1e-12), (net, batch, df, a.layer.name)
                assert b.total > a.total


def test_ws_pays_for_a_large_batch_off_chip():
    # WS on AlexNet CONV: the partial sums of the whole batch wait in the buffer while the
    # channels are summed; past what it holds they spill off chip.
    per_mac = {}
    for batch in (4, 16):
        d = energy.network_energy("alexnet", batch=batch, dataflows=("ws",)).dataflows["ws"]
        per_mac[batch] = d.level_totals("conv")["dram"] / d.macs("conv")
    assert per_mac[16] > 3 * per_mac[4]


def _ternary_model(tmp_path, zero_all: bool):
    net = nets.build("ternarynet", (1, 8, 8), 10, pixel_max=16, seed=3)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    if zero_all:
        for layer in model.layers:
            layer.weights = np.zeros_like(layer.weights)
    path = tmp_path / ("zero.npz" if zero_all else "model.npz")
    deploy.save(model, path)
    return path, model


def test_model_file_gives_layers_schemes_and_actual_sparsity(tmp_path):
    path, model = _ternary_model(tmp_path, zero_all=False)
    layers, schemes, sparsity = layers_from_model(path)
    assert [ly.name for ly in layers] == ["conv1", "conv2", "fc3", "fc4"]
    assert [(ly.C, ly.M, ly.H, ly.R, ly.padding) for ly in layers] == \
        [(1, 32, 8, 5, 2), (32, 64, 4, 5, 2), (256, 256, 1, 1, 0), (256, 10, 1, 1, 0)]
    for ly, src in zip(layers, model.layers):
        zeros = np.count_nonzero(src.weights == 0) / src.weights.size   # ternary code 0
        assert sparsity[ly.name] == pytest.approx(zeros)
        assert schemes[ly.name] == ("ternary", src.a_bits, 2, src.accumulator_width)
    layers2, name, scheme, sp = energy.resolve_network(str(path))
    report = energy.network_energy(layers2, name=name, scheme=scheme, sparsity=sp, batch=2,
                                   pes=16)
    le = report.dataflows["rs"].layers[1]
    assert le.skipped == pytest.approx(le.macs * sparsity["conv2"])
    dense_alu = energy.network_energy(layers2, scheme=scheme, sparsity=0.0, batch=2,
                                      pes=16).dataflows["rs"].layers[1].energy["alu"]
    assert le.energy["alu"] == pytest.approx(dense_alu * (1 - sparsity["conv2"]))


def test_a_grouped_model_file_keeps_its_groups(tmp_path):
    # mobilenet_tiny's depthwise layers: the energy model counts the MACs of each group's
    # channels only, as the integer model computes them
    net = nets.build("mobilenet_tiny", (1, 8, 8), pixel_max=16)
    model = deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16)
    path = tmp_path / "mobile.npz"
    deploy.save(model, path)
    layers, _, _ = layers_from_model(path)
    assert [ly.groups for ly in layers] == [il.groups for il in model.layers]
    assert any(ly.groups > 1 for ly in layers)
    for ly, il in zip(layers, model.layers):   # fan-in: the channels of one group
        assert ly.macs() == il.fan_in * il.out_channels * ly.E * ly.F
    report = energy.network_energy(*energy.resolve_network(str(path))[:1], batch=1, pes=16,
                                   dataflows=("rs",))
    assert [le.macs for le in report.dataflows["rs"].layers] == [ly.macs() for ly in layers]


def test_all_zero_ternary_weights_leave_only_data_movement(tmp_path):
    zero_path, _ = _ternary_model(tmp_path, zero_all=True)
    dense_path, _ = _ternary_model(tmp_path, zero_all=False)
    zero = energy.network_energy(**_resolved(zero_path), batch=2, pes=16)
    some = energy.network_energy(**_resolved(dense_path), batch=2, pes=16)
    for df in zero.dataflows:
        for z, s in zip(zero.dataflows[df].layers, some.dataflows[df].layers):
            assert z.skipped == z.macs and z.energy["alu"] == 0
            assert z.total == pytest.approx(z.data_movement) and z.total > 0
            assert z.counts == s.counts                    # the same words still move
            assert z.data_movement == pytest.approx(s.data_movement)


def _resolved(path):
    layers, name, scheme, sp = energy.resolve_network(str(path))
    return {"layers": layers, "name": name, "scheme": scheme, "sparsity": sp}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown dataflow 'xs'"):
        energy.parse_dataflows("rs,xs")
    with pytest.raises(ValueError, match="listed twice"):
        energy.parse_dataflows("rs,rs")
    with pytest.raises(ValueError, match="batch must be"):
        energy.network_energy("digits", batch=0)
    with pytest.raises(ValueError, match="sparsity of layer 'fc4'"):
        energy.network_energy("digits", sparsity={"fc4": 1.5})
    with pytest.raises(ValueError, match="unknown layer"):
        energy.network_energy("digits", sparsity={"fc9": 0.5})
    with pytest.raises(ValueError, match="unknown scheme"):
        energy.Scheme("float")
    with pytest.raises(ValueError, match="no such model file"):
        energy.resolve_network("no/such/file.npz")
