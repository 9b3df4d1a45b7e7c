"""``mulfree train --bits`` and ``--net mobilenet_tiny``, ``mulfree compress --channels``."""

import re

import numpy as np
import pytest

from model import data, deploy, nets
from mulfree.cli import main
from sim.cycle_model import ArrayParams
from tests.conftest import one_error_line

QUICK = ["--no-progress", "--finetune-epochs", "1"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def binarymlp(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "mlp.npz"
    assert main(["train", "--net", "binarymlp", "--epochs", "2", "--no-progress", "-o",
                 str(path)]) == 0
    return path


def test_train_dorefanet_with_k_bit_gradients(tmp_path, capsys):
    path = tmp_path / "d.npz"
    code, out, err = run_cli(capsys, "train", "--net", "dorefanet", "--bits", "1,2,4",
                             "--epochs", "1", "--no-progress", "-o", path)
    assert code == 0, err
    assert "W,A,G = 1,2,4" in out
    model = deploy.load(path)
    assert model.meta["bits"] == [1, 2, 4] and model.meta["accuracy"]["agreement"] == 1.0
    assert [ly.a_bits for ly in model.layers] == [5, 2, 2, 3]  # pixels, A2, A2, int head
    net = nets.build("dorefanet", model.input_shape, pixel_max=model.pixel_max,
                     **nets.build_options(model.meta))
    net.load_state_dict(model.state)  # the file rebuilds the very network it came from


@pytest.mark.parametrize("argv, needle", [
    (["--net", "binarynet", "--bits", "1,2,6"], "--bits sets DoReFa widths; allowed with "
                                                "--net dorefanet, not 'binarynet'"),
    (["--net", "dorefanet", "--bits", "1,2"], "bits must be three integers W,A,G"),
    (["--net", "dorefanet", "--bits", "1,2,0"], "bits 1,2,0 out of range"),
    (["--net", "dorefanet", "--bits", "9,2,6"], "bits 9,2,6 out of range"),
])
def test_bad_bits_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    path = tmp_path / "m.npz"
    code, _, err = run_cli(capsys, "train", "-o", path, "--no-progress", *argv)
    assert code == 2 and needle in one_error_line(err, "train")
    assert not path.exists()


def test_train_mobilenet_tiny_folds_its_depthwise_layers(tmp_path, capsys):
    path = tmp_path / "mb.npz"
    code, out, err = run_cli(capsys, "train", "--net", "mobilenet_tiny", "--epochs", "1",
                             "--no-progress", "-o", path)
    assert code == 0, err
    assert "agrees with the trained network on 100.00 %" in out
    assert out.count("groups ") == 3  # the three depthwise layers
    model = deploy.load(path)
    assert [ly.groups for ly in model.layers] == [1, 32, 1, 64, 1, 128, 1, 1]


def test_channel_pruning_of_an_integer_model(binarymlp, tmp_path, capsys):
    out_path = tmp_path / "half.npz"
    code, out, err = run_cli(capsys, "compress", binarymlp, "--channels", "0.5", *QUICK,
                             "-o", out_path)
    assert code == 0, err
    model = deploy.load(out_path)
    assert model.meta["widths"] == [128] and model.meta["pruned_from"]["widths"] == [256]
    # The second layer is XNOR-popcount: 128 +/-1 inputs in 4 words of 32 lanes.
    assert [ly.weights.shape for ly in model.layers] == [(128, 64, 1, 1), (10, 4, 1, 1)]
    rows = {line.split()[0]: line for line in out.splitlines()
            if re.match(r"(fc\d|total) ", line)}
    assert list(rows) == ["fc1", "fc2", "total"]
    assert "256 -> 128" in rows["fc1"] and "16,384 -> 8,192" in rows["fc1"]
    assert "18,944 -> 9,472" in rows["total"]          # weights: 64x256 + 256x10 halved
    from sim.model_cost import model_cost
    cycles = [c.cycles for c in model_cost(binarymlp)], [c.cycles for c in model_cost(out_path)]
    assert f"{sum(cycles[0]):,} -> {sum(cycles[1]):,}" in rows["total"]
    assert sum(cycles[1]) < sum(cycles[0])
    after = float(re.search(r"after fine-tuning ([\d.]+) %", out).group(1))
    ds = data.load_digits()
    assert after == round(100 * np.mean(deploy.predict(model, ds.x_test) == ds.y_test), 2)
    assert model.meta["accuracy"]["agreement"] == 1.0


def test_channel_pruning_of_a_float_checkpoint_with_l1(tmp_path, capsys):
    ckpt, small = tmp_path / "lenet.npz", tmp_path / "small.npz"
    assert main(["train", "--net", "lenet300", "--epochs", "1", "--no-progress", "-o",
                 str(ckpt)]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "compress", ckpt, "--channels", "0.5,0.25", "--select",
                             "l1", *QUICK, "-o", small)
    assert code == 0, err
    loaded = deploy.load(small)
    assert isinstance(loaded, deploy.FloatCheckpoint) and loaded.meta["widths"] == [150, 25]
    assert "cycles" not in out  # a float network has no array costs
    code, out, err = run_cli(capsys, "evaluate", small)
    assert code == 0 and "float network lenet300" in out, err


def test_channel_pruning_refusals(binarymlp, tmp_path, capsys):
    out_path = tmp_path / "never.npz"
    ds = data.load_digits()
    mobile = tmp_path / "mobile.npz"
    net = nets.build("mobilenet_tiny", ds.input_shape, pixel_max=ds.pixel_max)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        meta={"net": "mobilenet_tiny", "dataset": "digits"})
    deploy.save(model, mobile)
    stateless = tmp_path / "stateless.npz"
    model = deploy.load(binarymlp)
    model.state = None
    deploy.save(model, stateless)
    for argv, needle in [
        ([binarymlp, "--channels", "0"], "--channels: '0' holds 0; allowed: fractions in "
                                         "(0, 1]"),
        ([binarymlp, "--channels", "0.75,1.5"], "holds 1.5"),
        ([binarymlp, "--channels", "0.5,0.5"], "2 channel ratios for 1 prunable layers"),
        ([binarymlp, "--channels", "0.5", "--huffman"], "--huffman belongs to Deep "
                                                        "Compression"),
        ([binarymlp, "--channels", "0.5", "--lr", "0"], "--lr: must be a finite number in "
                                                        "(0, 10], not 0"),
        ([mobile, "--channels", "0.5"], "network 'mobilenet_tiny'"),
        ([stateless, "--channels", "0.5"], "has no training state"),
    ]:
        code, _, err = run_cli(capsys, "compress", *argv, *QUICK, "-o", out_path)
        assert code == 2 and needle in one_error_line(err, "compress"), (argv, err)
        assert not out_path.exists()
    # argparse refuses both modes at once
    code, _, err = run_cli(capsys, "compress", binarymlp, "--channels", "0.5", "--prune", "0.5",
                           "-o", out_path)
    assert code == 2
    assert "not allowed with argument --channels" in one_error_line(err, "compress")


def test_inspect_prints_repeated_kernels_of_binary_layers(binarymlp, tmp_path, capsys):
    from model import kernels

    code, out, err = run_cli(capsys, "inspect", binarymlp)
    assert code == 0, err
    model = deploy.load(binarymlp)
    assert out.splitlines()[0].startswith(f"{binarymlp}: integer model of binarymlp on digits")
    first = model.layers[0]                               # binary weights on pixel codes
    ks = kernels.kernel_stats("binary", first.weights)
    assert (f"kernels 1x1 (per filter and +/-1 input channel): {ks.distinct:,} of 16,384 "
            "distinct") in out
    rc = kernels.reuse_counts("binary", first.weights, height=1, width=1)
    assert f"reuse, each distinct row once per input row: {rc.products:,} of 16,384 MACs" in out
    # A 1x1 +/-1 row is a sign: reuse saves products but each filter still adds.
    assert rc.products == 64 and rc.adds == 16_384
    assert "needs 0.4 % more MAC slots" in out
    assert out.count("filter rows (1 word of 32 lanes)") == 1   # the xnor layer


def test_inspect_other_files(tmp_path, capsys):
    ds = data.load_digits()
    net = nets.build("ternarynet", ds.input_shape, pixel_max=ds.pixel_max)
    path = tmp_path / "t.npz"
    deploy.save(deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max), path)
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "no layer has +/-1 weights: nothing to reuse" in out
    ckpt = tmp_path / "f.npz"
    deploy.save_float(nets.build("lenet300", ds.input_shape, pixel_max=ds.pixel_max), ckpt,
                      net_name="lenet300", input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                      classes=10)
    code, out, _ = run_cli(capsys, "inspect", ckpt)
    assert code == 0 and "float checkpoint of lenet300" in out and "no binary kernels" in out
    code, _, err = run_cli(capsys, "inspect", tmp_path / "none.npz")
    assert code == 2 and "not found" in one_error_line(err, "inspect")


def test_demo_and_build_refuse_grouped_networks(tmp_path, capsys):
    code, _, err = run_cli(capsys, "demo", "--net", "mobilenet_tiny", "-o", tmp_path / "d")
    assert code == 2 and "has grouped (depthwise) layers" in one_error_line(err, "demo")
    ds = data.load_digits()
    net = nets.build("mobilenet_tiny", ds.input_shape, pixel_max=ds.pixel_max)
    path = tmp_path / "mb.npz"
    deploy.save(deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max), path)
    code, _, err = run_cli(capsys, "build", "--board", "icebreaker", "--model", path, "-o",
                           tmp_path / "b")
    assert code == 2 and ("layer 1 cannot run on the engine's array: grouped convolution "
                          "(groups 32) does not run on the array") in one_error_line(err, "build")


def test_run_layer_and_energy_run_take_a_grouped_layer(tmp_path, capsys):
    # A depthwise layer runs on the array, its groups one after the other: exact sums, every
    # counter equal to the cycle model, and the run priced by the energy model.
    from hw.schedule import COUNTERS, DERIVED_COUNTERS
    from model.layer_file import Layer, load_outputs, save_layer
    from tests.conftest import assert_run_exact
    rng = np.random.default_rng(3)
    layer = Layer("ternary", rng.integers(-1, 2, (4, 1, 3, 3)),
                  rng.integers(-8, 8, (4, 6, 6)), 2, 1, a_bits=4, groups=4)
    path = tmp_path / "dw.npz"
    save_layer(path, layer)
    out = tmp_path / "out.npz"
    code, text, _ = run_cli(capsys, "run-layer", path, "-o", out, "--quiet")
    assert code == 0 and "padding 1, groups 4 -> [4, 3, 3]" in text
    assert "outputs equal the golden model: yes; counters equal the cycle model: yes" in text
    ran = load_outputs(out)
    assert_run_exact(layer, ran["outputs"], {k: ran[k] for k in COUNTERS + DERIVED_COUNTERS},
                     ArrayParams(groups=4))
    code, text, _ = run_cli(capsys, "energy", "--run", out, "--layer", path)
    assert code == 0 and re.search(rf"^  cycles +{ran['cycles']} +{ran['cycles']}$", text,
                                   re.MULTILINE)


def test_run_layer_packs_groups_side_by_side(tmp_path, capsys):
    from model.layer_file import Layer, load_outputs, save_layer
    rng = np.random.default_rng(5)
    path = tmp_path / "dw.npz"
    save_layer(path, Layer("ternary", rng.integers(-1, 2, (8, 1, 3, 3)),
                           rng.integers(-8, 8, (8, 6, 6)), 1, 1, a_bits=4, groups=8))
    cycles = []
    for k in (1, 4):
        out = tmp_path / f"out{k}.npz"
        code, text, _ = run_cli(capsys, "run-layer", path, "-o", out, "--lanes", "4",
                                "--pack-groups", k, "--quiet")
        assert code == 0 and "counters equal the cycle model: yes" in text
        cycles.append(load_outputs(out)["cycles"])
    assert "groups 2 (each of 4 groups side by side)" in text
    assert "without the other groups' zero weights" in text
    assert cycles[1] < cycles[0]
    code, _, err = run_cli(capsys, "run-layer", path, "-o", tmp_path / "bad.npz",
                           "--pack-groups", 3, "--quiet")
    assert code == 2 and ("--pack-groups 3: groups side by side must divide the layer's "
                          "groups (8), not 3") in one_error_line(err, "run-layer")
    assert not (tmp_path / "bad.npz").exists()
