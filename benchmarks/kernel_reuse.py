"""Repeated binary kernels: how many there are, and what reusing them saves on the array.

1. The digits networks with +/-1 weights (binarynet, binarymlp), trained with their defaults:
   per binary layer the distinct kernels (BinaryNet's measure), the distinct filter rows up to
   sign, and the reuse mapping (``model.kernels``, priced by ``sim.kernel_reuse``) in both
   scopes: MACs saved, MAC slots saved once the reuse additions are paid, cycles and energy
   (45 nm) on the 3 x 4 array, plain against reuse.
2. A binarized AlexNet CONV3-shaped layer (384 filters of 256 x 3 x 3, 13 x 13 input,
   padding 1) on a 12 x 14 array, with random weights (seeded fair coin flips) and with
   trained weights: the same layer shape trained inside a small network on the digits
   (BinaryConv2d 256 3x3 -> pool -> BN -> sign -> BinaryConv2d 384 3x3 [the CONV3 shape]
   -> pool -> BN -> sign -> dense), its +/-1 weights then priced at AlexNet's 13 x 13. Each
   as ``binary`` (binary weights on 8-bit activations, BWN-style: one weight per MAC slot)
   and as ``xnor`` (binary activations too: 32 lanes per word, as the deployment model
   packs them).

    python benchmarks/kernel_reuse.py                 # about 5 min on 2 cores
    python benchmarks/kernel_reuse.py --epochs 2      # shorter training of the CONV3 layer
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import data, deploy, kernels, nets  # noqa: E402
from model import layers as L  # noqa: E402
from model import train as training  # noqa: E402
from mulfree.commands.train import one_blas_thread  # noqa: E402
from sim.cycle_model import ArrayParams  # noqa: E402
from sim.kernel_reuse import estimate  # noqa: E402

#: AlexNet CONV3: filters, channels, kernel, input size, padding (Krizhevsky et al. 2012).
CONV3 = dict(M=384, C=256, K=3, HW=13, padding=1)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def layer_rows(label: str, scheme: str, weights, *, height, width, stride, padding, a_bits,
               lanes, params) -> list[str]:
    ks = kernels.kernel_stats(scheme, weights, lanes)
    rs = kernels.row_stats(scheme, weights, lanes)
    out = []
    for scope in kernels.SCOPES:
        est = estimate(scheme, weights, height=height, width=width, stride=stride,
                       padding=padding, a_bits=a_bits, lanes=lanes, params=params, scope=scope)
        c = est.counts
        out.append(
            f"| {label} | {scheme} | {pct(ks.distinct / ks.kernels)} / "
            f"{pct(ks.distinct_up_to_sign / ks.kernels)} | "
            f"{pct(rs.per_channel / rs.rows)} | {scope.replace('_', ' ')} | "
            f"{pct(c.saved)} | {pct(c.net_saved)} | "
            f"{est.cycles_plain:,} -> {est.cycles_reuse:,} ({pct(est.cycles_saved)}) | "
            f"{est.energy_plain_pj / 1e3:,.1f} -> {est.energy_reuse_pj / 1e3:,.1f} nJ "
            f"({pct(est.energy_saved)}) |")
    return out


HEADER = ["| layer | scheme | distinct kernels / up to sign | distinct rows up to sign "
          "(per channel) | reuse scope | MACs saved | MAC slots saved (with the adds) | "
          "cycles | energy (45 nm) |", "|---|---|---|---|---|---:|---:|---|---|"]


def section_digits(seed: int) -> list[str]:
    ds = data.load_digits()
    params = ArrayParams()
    lines = ["## Digits networks (trained, seed %d; %dx%d array)" % (seed, params.rows,
                                                                       params.cols), ""]
    lines += HEADER
    for name in ("binarynet", "binarymlp"):
        spec = nets.NETS[name]
        net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=seed)
        training.train(net, ds.x_train.astype(np.float64), ds.y_train, epochs=spec.epochs,
                       batch_size=spec.batch_size, lr=spec.lr, lr_end=spec.lr_end, seed=seed,
                       progress=False)
        model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
        for i, ly in enumerate(model.layers):
            if ly.scheme not in kernels.BINARY_SCHEMES:
                continue
            _, h, w = ly.in_shape
            lines += layer_rows(f"{name} {ly.kind} {i}", ly.scheme, ly.weights, height=h,
                                width=w, stride=ly.stride, padding=ly.padding,
                                a_bits=ly.a_bits, lanes=ly.w_bits if ly.scheme == "xnor" else 1,
                                params=params)
    return lines


def conv3_net(seed: int, classes: int, pixel_max: int) -> L.Sequential:
    """A digits network whose second layer has AlexNet CONV3's shape (256 -> 384, 3 x 3)."""
    rng = np.random.default_rng(seed)
    c, m = CONV3["C"], CONV3["M"]
    return L.Sequential([
        L.BinaryConv2d(1, c, 3, padding=1, rng=rng, input_scale=1.0 / pixel_max),
        L.MaxPool2d(2), L.BatchNorm(c), L.HardTanh(), L.Sign(),
        L.BinaryConv2d(c, m, 3, padding=1, rng=rng),
        L.MaxPool2d(2), L.BatchNorm(m), L.Flatten(), L.Sign(),
        L.BinaryDense(m * 2 * 2, classes, rng=rng), L.BatchNorm(classes),
    ])


def section_conv3(seed: int, epochs: int) -> list[str]:
    ds = data.load_digits()
    params = ArrayParams(rows=12, cols=14)
    net = conv3_net(seed, ds.classes, ds.pixel_max)
    start = time.perf_counter()
    training.train(net, ds.x_train.astype(np.float64), ds.y_train, epochs=epochs, lr=1e-2,
                   lr_end=1e-4, seed=seed, progress=False)
    acc = training.accuracy(net, ds.x_test.astype(np.float64), ds.y_test)
    seconds = time.perf_counter() - start
    trained = net.layers[5].quantized_weight().codes            # binary codes, 1 = -1
    rng = np.random.default_rng(seed)
    random = rng.integers(0, 2, size=trained.shape)
    hw = CONV3["HW"]
    lines = ["", f"## A binarized AlexNet CONV3-shaped layer ({CONV3['M']} x {CONV3['C']} x 3 x 3 "
                 f"on {hw} x {hw}, padding 1; {params.rows}x{params.cols} array)", "",
             f"Trained: {epochs} epochs on the digits inside a small network ({100 * acc:.2f} % "
             f"test accuracy, {seconds:.0f} s); random: fair coin flips, seed {seed}.", ""]
    lines += HEADER
    for label, codes in (("random", random), ("trained", trained)):
        lines += layer_rows(f"CONV3 {label}", "binary", codes, height=hw, width=hw, stride=1,
                            padding=1, a_bits=8, lanes=1, params=params)
        lanes = 32
        levels = 1 - 2 * codes                                   # [M, C, R, S]
        grouped = levels.reshape(codes.shape[0], -1, lanes, 3, 3).transpose(0, 1, 3, 4, 2)
        from model.quant import pack_pm1
        words = pack_pm1(grouped)
        lines += layer_rows(f"CONV3 {label}", "xnor", words, height=hw, width=hw, stride=1,
                            padding=1, a_bits=lanes, lanes=lanes, params=params)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10,
                        help="training epochs of the CONV3-shaped layer (default 10)")
    args = parser.parse_args(argv)
    with one_blas_thread():
        lines = section_digits(args.seed)
        lines += section_conv3(args.seed, args.epochs)
    lines += ["", "Distinct kernels: per +/-1 input channel over the filters (BinaryNet's "
                  "measure; it reports about 42 % unique 3x3 kernels for a trained CIFAR-10 "
                  "network). Rows: per input channel over filters and filter rows. Scope "
                  "'input row': each distinct row once per input row (PEs of a diagonal "
                  "share partial sums); 'pe': once per PE (filter row and channel). Cycles: "
                  "the array's mapping with the compute slots scaled by (products + adds) / "
                  "MACs (sim.kernel_reuse)."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
