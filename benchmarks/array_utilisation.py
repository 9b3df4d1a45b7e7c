"""PE utilisation and cycles of the seed's MNIST layers and AlexNet CONV1-5 on the cycle model.

For each layer and array size (3x4, 6x8, 12x14) the best mapping (``sim.cycle_model``) is
chosen and its predicted cycles, utilisation = MACs / (PEs x cycles) and the off-chip words
are printed as one Markdown table. The cycle model equals the RTL's counters for every layer
the tests run (``tests/hw/test_accelerator.py``); these layers are too large to simulate.

Mapping: ``q`` channels and ``p`` filters per PE, output segments of ``F'`` columns, ``Gc``
filter groups side by side across the PE columns (``sim.cycle_model.Mapping``).

Cycles are those of the compute phase (``hw.accelerator``: data already in the global
buffer); ``+I/O`` adds one cycle per off-chip word for streaming weights and inputs in and
outputs out, which the accelerator does before and after computing.

Usage: ``python benchmarks/array_utilisation.py [--filter-spad N --ifmap-spad N
--psum-spad N]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.cycle_model import ArrayParams, LayerShape, predict  # noqa: E402

#: name -> shape (M, C, R, S, H, W, stride, padding). MNIST: the seed networks on 28x28
#: (model.nets: 5x5 'same' convolutions, 2x2 pooling, 7x7x64 flattened). AlexNet: the
#: grouped shapes (C per filter), as in the Eyeriss paper.
LAYERS = {
    "MNIST conv1": LayerShape(32, 1, 5, 5, 28, 28, 1, 2),
    "MNIST conv2": LayerShape(64, 32, 5, 5, 14, 14, 1, 2),
    "MNIST dense 256": LayerShape(256, 3136, 1, 1, 1, 1),
    "MNIST dense 10": LayerShape(10, 256, 1, 1, 1, 1),
    "AlexNet CONV1": LayerShape(96, 3, 11, 11, 227, 227, 4, 0),
    "AlexNet CONV2": LayerShape(256, 48, 5, 5, 27, 27, 1, 2),
    "AlexNet CONV3": LayerShape(384, 256, 3, 3, 13, 13, 1, 1),
    "AlexNet CONV4": LayerShape(384, 192, 3, 3, 13, 13, 1, 1),
    "AlexNet CONV5": LayerShape(256, 192, 3, 3, 13, 13, 1, 1),
}
ARRAYS = [(3, 4), (6, 8), (12, 14)]


def table(filter_spad: int, ifmap_spad: int, psum_spad: int) -> list[str]:
    lines = ["| layer | array | mapping (q, p, F', Gc) | cycles | +I/O | MACs | utilisation | "
             "goal (R <= rows) |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for name, shape in LAYERS.items():
        for rows, cols in ARRAYS:
            params = ArrayParams(rows, cols, filter_spad, ifmap_spad, psum_spad)
            pred = predict(shape, params)
            mp = pred["mapping"]
            util = pred["utilisation"]
            applies = shape.R <= rows
            goal = ("met" if util >= 0.9 else "missed") if applies else "n/a"
            lines.append(f"| {name} | {rows}x{cols} | {mp.q}, {mp.p}, {mp.Fseg}, {mp.Gc} | "
                         f"{pred['cycles']:,} | {pred['cycles'] + pred['offchip_words']:,} | "
                         f"{pred['macs']:,} | {util:.1%} | {goal} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter-spad", type=int, default=256)
    parser.add_argument("--ifmap-spad", type=int, default=64)
    parser.add_argument("--psum-spad", type=int, default=32)
    args = parser.parse_args(argv)
    print(f"Scratchpads per PE and bank: filter {args.filter_spad}, input {args.ifmap_spad}, "
          f"psum {args.psum_spad} entries (two banks each).\n")
    print("\n".join(table(args.filter_spad, args.ifmap_spad, args.psum_spad)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
