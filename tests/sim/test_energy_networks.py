"""The compact networks of the energy model: layer shapes and totals against the papers."""

import pytest

from mulfree.cli import main
from sim import energy
from sim.energy_presets import NETWORKS


def by_name(name):
    return {ly.name: ly for ly in NETWORKS[name]}


def test_mobilenet_v1_shapes_and_569_million_macs():
    layers = NETWORKS["mobilenet_v1"]
    assert len(layers) == 28  # conv1, 13 x (depthwise, pointwise), fc
    assert sum(ly.macs() for ly in layers) == 568_740_352  # the paper: 569 M mult-adds
    assert sum(ly.weights() for ly in layers) == 4_209_088  # the paper: 4.2 M parameters
    named = by_name("mobilenet_v1")
    assert (named["conv1"].E, named["conv1"].M) == (112, 32)
    for i in range(2, 15):
        dw, pw = named[f"dw{i}"], named[f"pw{i}"]
        assert dw.groups == dw.C == dw.M and (dw.R, dw.S) == (3, 3)
        assert pw.groups == 1 and (pw.R, pw.S) == (1, 1) and pw.H == dw.E and pw.C == dw.M
    assert [named[f"dw{i}"].stride for i in range(2, 15)] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1,
                                                             2, 1]
    assert (named["pw14"].E, named["pw14"].M) == (7, 1024)
    assert named["fc"].is_dense and (named["fc"].C, named["fc"].M) == (1024, 1000)


def test_squeezenet1_0_matches_torchvision():
    layers = NETWORKS["squeezenet1_0"]
    assert len(layers) == 26  # conv1, 8 fire modules x 3, conv10
    assert sum(ly.macs() for ly in layers) == 818_924_576  # torchvision: 0.82 GFLOPS
    # torchvision's parameter count: these weights plus one bias per filter.
    assert sum(ly.weights() + ly.M for ly in layers) == 1_248_424
    named = by_name("squeezenet1_0")
    assert named["conv1"].E == 109
    assert [named[f"fire{i}_squeeze"].H for i in range(2, 10)] == [54] * 3 + [27] * 4 + [13]
    for i in range(2, 10):
        sq, e1, e3 = (named[f"fire{i}_{part}"] for part in ("squeeze", "expand1x1",
                                                            "expand3x3"))
        assert e1.C == e3.C == sq.M and e1.M == e3.M and (e3.R, e3.padding) == (3, 1)
        assert e3.E == e1.E == sq.E
    assert (named["conv10"].C, named["conv10"].M, named["conv10"].H) == (512, 1000, 13)


def test_shufflenet_v1_g3_grouped_pointwise_and_depthwise():
    layers = NETWORKS["shufflenet_v1"]
    assert len(layers) == 1 + 3 * 16 + 1
    assert sum(ly.macs() for ly in layers) == 137_460_672  # the paper: about 140 MFLOPs
    weights = sum(ly.weights() for ly in layers)
    batch_norms = 2 * sum(ly.M for ly in layers[:-1])
    assert weights + 1000 + batch_norms == 1_865_728  # imgclsmob's parameter count
    named = by_name("shufflenet_v1")
    assert named["stage2_1_gconv1"].groups == 1  # 24 input channels: not grouped
    for name, ly in named.items():
        if name.endswith("gconv2") or (name.endswith("gconv1") and name != "stage2_1_gconv1"):
            assert ly.groups == 3 and (ly.R, ly.S) == (1, 1), name
        if name.endswith("_dw"):
            assert ly.groups == ly.C == ly.M, name
    # A stride-2 unit's branch is concatenated with its input: 240 = 24 + 216.
    assert named["stage2_1_gconv2"].M == 216 and named["stage3_1_gconv2"].M == 240
    assert (named["stage4_4_gconv2"].E, named["stage4_4_gconv2"].M) == (7, 960)


def test_energy_searches_every_compact_network_layer_by_group():
    """Each group is one problem of C / G channels and M / G filters; MACs add up."""
    layers = [by_name("mobilenet_v1")["dw14"], by_name("shufflenet_v1")["stage3_2_gconv1"]]
    report = energy.network_energy(layers, dataflows=("rs", "nlr"), batch=1, pes=64)
    for le in report.dataflows["rs"].layers:
        assert le.macs == le.layer.macs() and le.total > 0


@pytest.mark.parametrize("name", ["mobilenet_v1", "squeezenet1_0", "shufflenet_v1"])
def test_energy_command_lists_the_compact_networks(name, capsys):
    assert main(["energy", "--help"]) == 0
    assert name in capsys.readouterr().out


def test_energy_command_runs_shufflenet(capsys):
    assert main(["energy", "--network", "shufflenet_v1", "--dataflows", "rs,ws", "--batch",
                 "1", "--pes", "64"]) == 0
    out = capsys.readouterr().out
    assert "stage2_1_dw" in out and "stage4_4_gconv2" in out
