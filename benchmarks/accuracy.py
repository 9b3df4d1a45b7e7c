"""Test accuracy of the seed's networks on the digits (and MNIST when its files are given).

Trains every network of ``model.nets`` with its default settings (the ones ``mulfree train``
uses) for each seed, folds the quantized ones into the integer model and prints a Markdown
table: training time on this machine, the trained network's test accuracy, the integer
model's test accuracy and their agreement (which must be 100 %), next to the papers' MNIST
numbers; then the goals on digits (the default network trains in under 60 s; ternary within
1 point of float; binary and DoReFa within 3 points).

A second table trains dorefanet with k-bit gradients (``mulfree train --net dorefanet
--bits W,A,G``): one row per (W, A, G) of ``--dorefa-bits``, next to the tensorpack
reproduction's AlexNet top-1 error for the same widths.

    python benchmarks/accuracy.py                 # digits, seeds 0 1 2
    python benchmarks/accuracy.py --seeds 0 --nets binarynet float
    python benchmarks/accuracy.py --mnist PATH    # adds an MNIST column (slow: 60,000 images)
    python benchmarks/accuracy.py --nets --dorefa-bits 1,2,32 1,2,6 1,2,4 1,3,6   # only k-bit G
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import data, deploy, nets  # noqa: E402
from model import train as training  # noqa: E402
from mulfree.commands.train import one_blas_thread  # noqa: E402

#: The papers' MNIST test accuracy, with where it comes from (REFERENCES.md).
PAPER_MNIST = {
    "float": "99.41 % (LeNet-5, TWN paper's full-precision row)",
    "binarynet": "99.04 % (BNN Table 1: 0.96 % error, Theano; an MLP of 3x4096)",
    "ternarynet": "99.35 % (TWN, LeNet-5; float activations)",
    "dorefanet": "no MNIST number in the paper",
    "lenet300": "98.36 % (Deep Compression, 1.64 % error)",
    "binarymlp": "no paper number (FINN's larger SFC-max: 95.8 %)",
    "mobilenet_tiny": "no paper number (MobileNet's blocks, our widths)",
}

#: DoReFa-Net's AlexNet top-1 error (tensorpack reproduction, REFERENCES.md) by (W, A, G).
PAPER_DOREFA = {(1, 2, 32): "46.6 %", (1, 2, 6): "46.8 %", (1, 2, 4): "54.0 %"}


def run_one(name: str, ds: data.Dataset, seed: int, bits=None) -> dict:
    spec = nets.NETS[name]
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=seed,
                     bits=bits)
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    start = time.perf_counter()
    training.train(net, x_train, ds.y_train, epochs=spec.epochs, batch_size=spec.batch_size,
                   lr=spec.lr, lr_end=spec.lr_end, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    float_pred = training.predict(net, x_test)
    row = {"seconds": seconds, "trained": float(np.mean(float_pred == ds.y_test))}
    if spec.quantized:
        model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
        int_pred = deploy.predict(model, ds.x_test)
        row["integer"] = float(np.mean(int_pred == ds.y_test))
        row["agreement"] = float(np.mean(int_pred == float_pred))
    return row


def mean_pm(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nets", nargs="*", default=list(nets.NETS), choices=list(nets.NETS))
    parser.add_argument("--dorefa-bits", nargs="*", default=[], metavar="W,A,G",
                        help="also train dorefanet with these widths (e.g. 1,2,32 1,2,6)")
    parser.add_argument("--mnist", default=None, metavar="PATH",
                        help="folder of the MNIST IDX files (adds an MNIST column, seed 0)")
    args = parser.parse_args(argv)
    sets = [("digits", data.load_digits())]
    if args.mnist:
        sets.append(("mnist", data.load_mnist(args.mnist)))
    results: dict[tuple[str, str], list[dict]] = {}
    with one_blas_thread():
        for set_name, ds in sets:
            seeds = args.seeds if set_name == "digits" else args.seeds[:1]
            for name in args.nets:
                for seed in seeds:
                    row = run_one(name, ds, seed)
                    results.setdefault((set_name, name), []).append(row)
                    print(f"# {set_name} {name} seed {seed}: {row}", file=sys.stderr)

    if args.nets:
        print_main_table(args, results)
    if args.dorefa_bits:
        dorefa_table(args.dorefa_bits, args.seeds, sets[0][1])
    return 0


def print_main_table(args, results: dict) -> None:
    """The table of every network of ``args.nets`` and the goals on digits."""
    print(f"Digits (scikit-learn, 1438 train / 359 test, fixed split), seeds "
          f"{' '.join(map(str, args.seeds))} (mean ± std); one BLAS thread on this machine.\n")
    header = ["network", "epochs", "train time (s)", "trained net (%)", "integer model (%)",
              "agreement (%)"]
    if args.mnist:
        header.append("MNIST integer/float (%)")
    header.append("paper, MNIST")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name in args.nets:
        rows = results[("digits", name)]
        cells = [name, str(nets.NETS[name].epochs),
                 mean_pm([r["seconds"] for r in rows], 1.0, 1),
                 mean_pm([r["trained"] for r in rows])]
        if "integer" in rows[0]:
            cells += [mean_pm([r["integer"] for r in rows]),
                      f"{100 * min(r['agreement'] for r in rows):.2f}"]
        else:
            cells += ["float (not folded)", "—"]
        if args.mnist:
            m = results[("mnist", name)][0]
            cells.append(f"{100 * m.get('integer', m['trained']):.2f}")
        cells.append(PAPER_MNIST[name])
        print("| " + " | ".join(cells) + " |")
    if not args.mnist:
        print("\nMNIST: no MNIST files on this machine (nothing is downloaded); run with "
              "--mnist PATH to add the column.")

    def mean_acc(name):
        rows = results.get(("digits", name))
        if not rows:
            return None
        return statistics.fmean(r.get("integer", r["trained"]) for r in rows) * 100

    print("\nGoals on digits:")
    default = results.get(("digits", nets.DEFAULT_NET))
    if default:
        worst = max(r["seconds"] for r in default)
        print(f"- default network ({nets.DEFAULT_NET}) trains in under 60 s: "
              f"{'met' if worst < 60 else 'NOT met'} (slowest seed {worst:.1f} s)")
    base = mean_acc("float")
    for name, limit in (("ternarynet", 1.0), ("binarynet", 3.0), ("dorefanet", 3.0)):
        acc = mean_acc(name)
        if acc is None or base is None:
            continue
        gap = base - acc
        print(f"- {name} within {limit:g} point(s) of float: {'met' if gap <= limit else 'NOT met'}"
              f" ({acc:.2f} % vs {base:.2f} %, gap {gap:+.2f})")
    agreements = [r["agreement"] for rows in results.values() for r in rows if "agreement" in r]
    if agreements:
        print(f"- integer model equals the trained network on every test image: "
              f"{'yes' if min(agreements) == 1.0 else 'NO'} ({len(agreements)} runs)")


def dorefa_table(specs: list[str], seeds: list[int], ds: data.Dataset) -> None:
    """dorefanet with k-bit gradients: one row per (W, A, G), mean +- std over ``seeds``."""
    widths = [nets.parse_bits(spec) for spec in specs]
    rows = {}
    with one_blas_thread():
        for bits in widths:
            for seed in seeds:
                row = run_one("dorefanet", ds, seed, bits=bits)
                rows.setdefault(bits, []).append(row)
                print(f"# dorefanet {bits} seed {seed}: {row}", file=sys.stderr)
    print(f"\nDoReFa-Net with k-bit gradients (dorefanet, digits, seeds "
          f"{' '.join(map(str, seeds))}, mean ± std; {nets.NETS['dorefanet'].epochs} epochs):\n")
    print("| W, A, G | train time (s) | trained net (%) | integer model (%) | agreement (%) | "
          "paper, AlexNet top-1 error |")
    print("|---|---|---|---|---|---|")
    for bits in widths:
        r = rows[bits]
        print(f"| {', '.join(map(str, bits))} | {mean_pm([x['seconds'] for x in r], 1.0, 1)} | "
              f"{mean_pm([x['trained'] for x in r])} | {mean_pm([x['integer'] for x in r])} | "
              f"{100 * min(x['agreement'] for x in r):.2f} | {PAPER_DOREFA.get(bits, '—')} |")


if __name__ == "__main__":
    sys.exit(main())
