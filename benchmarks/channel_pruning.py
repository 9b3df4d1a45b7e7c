"""Structured (channel) pruning of the digits networks: accuracy, weights, MACs, cycles, energy.

For each quantized digits network: train it with its defaults (as ``mulfree train``), then
keep 75, 50 and 25 % of every hidden layer's channels -- by L1 norm and by LASSO with
least-squares reconstruction (He et al. 2017) -- fine-tune (``mulfree compress --channels``
defaults: 20 epochs, learning rate 3e-3 to 1e-4) and fold into the integer model. Printed
per network and setting: the integer model's test accuracy (and right after pruning, before
fine-tuning), weights, MACs, cycles on the array (``sim.cycle_model.choose_mapping`` and
``predict``, one image) and energy at 45 nm (``sim.energy``), through ``sim.model_cost``.
A last column trains the pruned widths from scratch with the network's own defaults, to
tell what the pruning itself is worth.

Weights and MACs depend on the network only; cycles and energy on the array as
``sim.cycle_model`` models it (re-run this script when the array changes).

    python benchmarks/channel_pruning.py                       # about 15 min on 2 cores
    python benchmarks/channel_pruning.py --nets binarynet --ratios 0.5 --selects lasso
    python benchmarks/channel_pruning.py --rows 6 --cols 8     # another array
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import data, deploy, nets  # noqa: E402
from model import train as training  # noqa: E402
from mulfree.channel_pruning import prune_and_finetune  # noqa: E402
from mulfree.commands.train import one_blas_thread  # noqa: E402
from sim.cycle_model import ArrayParams  # noqa: E402
from sim.model_cost import model_cost, totals  # noqa: E402

NETS = ("binarynet", "ternarynet", "dorefanet", "binarymlp")


def train_default(name: str, ds, seed: int, widths=None):
    spec = nets.NETS[name]
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=seed,
                     widths=widths)
    training.train(net, ds.x_train.astype(np.float64), ds.y_train, epochs=spec.epochs,
                   batch_size=spec.batch_size, lr=spec.lr, lr_end=spec.lr_end, seed=seed,
                   progress=False)
    return net


def measure(net, ds, folder: Path, label: str, params: ArrayParams) -> dict:
    """Fold, check, save and cost the network: accuracy and the totals of ``model_cost``."""
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
    pred = deploy.predict(model, ds.x_test)
    agree = np.array_equal(pred, training.predict(net, ds.x_test.astype(np.float64)))
    path = folder / f"{label}.npz"
    deploy.save(model, path, overwrite=True)
    row = totals(model_cost(path, params))
    row.update(accuracy=float(np.mean(pred == ds.y_test)), agreement=agree)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.5, 0.25])
    parser.add_argument("--selects", nargs="+", default=["l1", "lasso"],
                        choices=["l1", "lasso"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--cols", type=int, default=4)
    parser.add_argument("--no-scratch", action="store_true",
                        help="skip training the pruned widths from scratch")
    args = parser.parse_args(argv)
    params = ArrayParams(rows=args.rows, cols=args.cols)
    ds = data.load_digits()
    lines = [f"Digits, seed {args.seed}; cycles on a {args.rows}x{args.cols} array, one image; "
             "energy at 45 nm on that array.", "",
             "| network | channels kept | selection | widths | accuracy after pruning | "
             "after fine-tuning | trained from scratch | weights | MACs | cycles | energy (nJ) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp, one_blas_thread():
        folder = Path(tmp)
        for name in args.nets:
            start = time.perf_counter()
            net = train_default(name, ds, args.seed)
            base = measure(net, ds, folder, f"{name}_full", params)
            widths = nets.NETS[name].widths
            lines.append(f"| {name} | 100 % | — | {','.join(map(str, widths))} | — | "
                         f"{100 * base['accuracy']:.2f} % | — | {base['weights']:,} | "
                         f"{base['macs']:,} | {base['cycles']:,} | "
                         f"{base['energy_pj'] / 1e3:,.1f} |")
            for ratio in args.ratios:
                scratch = None
                for select in args.selects:
                    result, pruned_acc = prune_and_finetune(net, name, {}, ds, ratio,
                                                            select=select, seed=args.seed)
                    row = measure(result.net, ds, folder, f"{name}_{ratio}_{select}", params)
                    if scratch is None and not args.no_scratch:
                        small = train_default(name, ds, args.seed, widths=result.widths)
                        scratch = measure(small, ds, folder, f"{name}_{ratio}_scratch",
                                          params)["accuracy"]
                    assert row["agreement"], "the integer model disagrees with the network"
                    rel = {k: row[k] / base[k] for k in ("weights", "macs", "cycles",
                                                         "energy_pj")}
                    lines.append(
                        f"| {name} | {100 * ratio:g} % | {select} | "
                        f"{','.join(map(str, result.widths))} | {100 * pruned_acc:.2f} % | "
                        f"{100 * row['accuracy']:.2f} % | "
                        + (f"{100 * scratch:.2f} %" if scratch is not None else "—")
                        + f" | {row['weights']:,} ({rel['weights']:.2f}x) | "
                        f"{row['macs']:,} ({rel['macs']:.2f}x) | "
                        f"{row['cycles']:,} ({rel['cycles']:.2f}x) | "
                        f"{row['energy_pj'] / 1e3:,.1f} ({rel['energy_pj']:.2f}x) |")
                    print(lines[-1], file=sys.stderr)
            print(f"# {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    lines += ["", "Accuracy: the integer model on the 359 test images (one image is 0.28 "
                  "points); its predictions equal the fine-tuned network's in every row. "
                  "(x) = after / before."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
