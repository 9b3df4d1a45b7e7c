"""Post-training quantization on the digits: a float network's weights in the quantized nets.

Trains the ``float`` network with its default settings (as ``mulfree train --net float``),
then quantizes it into each quantized network of the same shape (``model.ptq.quantize``, as
``mulfree quantize``): the test accuracy with the weights merely quantized, after the batch
norms are recalibrated, and after 1 and 3 fine-tuning epochs; the last is folded into the
integer model, whose accuracy (and agreement with the network, which must be 100 %) closes
the row. One Markdown table; compare with training from scratch (``benchmarks/accuracy.py``).

    python benchmarks/ptq.py [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import data, deploy, nets, ptq  # noqa: E402
from model import train as training  # noqa: E402
from mulfree.commands.train import one_blas_thread  # noqa: E402

TARGETS = ("binarynet", "ternarynet", "dorefanet")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ds = data.load_digits()
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    spec = nets.NETS["float"]
    with one_blas_thread():
        source = nets.build("float", ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                            seed=args.seed)
        start = time.perf_counter()
        training.train(source, x_train, ds.y_train, epochs=spec.epochs,
                       batch_size=spec.batch_size, lr=spec.lr, lr_end=spec.lr_end,
                       seed=args.seed, progress=False)
        print(f"float network trained in {time.perf_counter() - start:.1f} s "
              f"({spec.epochs} epochs, seed {args.seed})\n")
        print("| network | float | weights quantized | + BN recalibrated | + 1 epoch "
              "| + 3 epochs | integer model (agreement) |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name in TARGETS:
            cells = []
            for epochs in (1, 3):
                target = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                                    seed=args.seed)
                acc = ptq.quantize(source, target, x_train, ds.y_train, x_test, ds.y_test,
                                   epochs=epochs, batch_size=nets.NETS[name].batch_size,
                                   seed=args.seed)
                cells.append(acc["fine_tuned"])
            model = deploy.fold(target, input_shape=ds.input_shape, pixel_max=ds.pixel_max)
            int_pred = deploy.predict(model, ds.x_test)
            integer = float(np.mean(int_pred == ds.y_test))
            agreement = float(np.mean(int_pred == training.predict(target, x_test)))
            pct = [f"{100 * v:.2f} %" for v in (acc["float_checkpoint"], acc["transferred"],
                                                acc["recalibrated"], *cells, integer)]
            print(f"| {name} | {' | '.join(pct[:-1])} | {pct[-1]} ({100 * agreement:.0f} %) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
