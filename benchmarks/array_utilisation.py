"""PE utilisation and cycles of the seed's MNIST layers and AlexNet CONV1-5 on the cycle model.

For each layer and array size (3x4, 6x8, 12x14) the best mapping (``sim.cycle_model``) is
chosen and its predicted cycles, utilisation = MACs / (PEs x cycles) and the off-chip words
are printed as one Markdown table. The cycle model equals the RTL's counters for every layer
the tests run (``tests/hw/test_accelerator.py``); these layers are too large to simulate.

Mapping: ``q`` channel words per PE, ``p`` filters per pass, output segments of ``F'``
columns (``sim.cycle_model.Mapping``); PEs of one lane (``--lanes``).

Cycles are those of the compute phase (``hw.accelerator``: data already in the global
buffer); ``+I/O`` adds one cycle per off-chip word for streaming weights and inputs in and
outputs out, which the accelerator does before and after computing.

``bound`` is the best utilisation the mapping's fills allow (every pass as long as its
compute slots; ``sim.cycle_model.utilisation_breakdown``); ``limited by`` names the fills
below 100 % (rows: reduction units over PE rows; columns: output rows x filter groups over
PE columns; padding: PEs whose input row is padding) and the waits that cost over 1 % of
the cycles (stalls, set-up, the last dot's way down the column).

Dense layers run with batch 1 and, as ``xN`` rows, ``N`` inputs at once as one 1x1
convolution (``model.batching``) laid out as ``sim.batching`` chooses: the inputs in one or
more rows, and extra filters when they divide the PE columns better (their MACs, and their
share of the bound, do not count). MACs count every input of the batch.

``--eyeriss-spads``: the Eyeriss chip's filter and input scratchpad capacities (224 and 12
entries per PE) instead of the defaults. The RTL's scratchpad banks are powers of two, so
this is an accelerator with 256/16-entry banks whose mappings use at most 224/12 entries;
the schedule, and so every cycle, does not depend on the bank size.

Usage: ``python benchmarks/array_utilisation.py [--eyeriss-spads | --filter-spad N
--ifmap-spad N] [--lanes N] [--batch N] [--arrays 3x4,6x8,12x14]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.batching import choose_dense_presentation  # noqa: E402
from sim.column_split import choose_column_split  # noqa: E402
from sim.cycle_model import (ArrayParams, LayerShape, predict,  # noqa: E402
                             utilisation_breakdown)

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
#: The Eyeriss chip's scratchpads per PE (filter, input entries; Chen et al., JSSC 2017).
EYERISS_SPADS = (224, 12)
GOAL = 0.9


def layers(batch: int) -> dict[str, tuple[LayerShape, int]]:
    """The benchmark's layers (name -> shape, batch), each dense layer also batched."""
    out = {}
    for name, shape in LAYERS.items():
        out[name] = (shape, 1)
        if (shape.R, shape.S, shape.H, shape.W) == (1, 1, 1, 1) and batch > 1:
            out[f"{name} x{batch}"] = (shape, batch)
    return out


def limits(b: dict) -> str:
    """The (at most three) largest losses: fills below 100 %, waits over 1 % of the cycles."""
    losses = [(1 - b[key], f"{label} {b[key]:.0%}") for key, label in (
        ("row_fill", "rows"), ("col_fill", "columns"), ("lane_fill", "lanes"),
        ("pad_rows", "padding"), ("pad_cols", "padded columns")) if b[key] < 0.995]
    losses += [(b[key] / b["cycles"], f"{label} {b[key] / b['cycles']:.0%} of cycles")
               for key, label in (("stalls", "stalls"), ("setup", "set-up"), ("tail", "tail"))
               if b[key] > 0.01 * b["cycles"]]
    return "; ".join(text for _, text in sorted(losses, reverse=True)[:3]) or "-"


def row(name: str, params: ArrayParams, shape: LayerShape, mapping=None, *,
        useful: int | None = None, layout: str = "", goal_applies: bool = True) -> str:
    """One table row: ``shape`` run under ``mapping`` (default: the chosen one); ``useful``
    MACs (default: all) count for utilisation and bound (a presented layer's extra filters,
    level-0 taps and explicit padding do not)."""
    b = utilisation_breakdown(shape, params, mapping)
    pred = predict(shape, params, b["mapping"])
    assert (b["cycles"], b["macs"]) == (pred["cycles"], pred["macs"])
    macs = pred["macs"] if useful is None else useful
    util = macs / (params.macs_per_cycle * pred["cycles"])
    bound = b["bound"] * macs / pred["macs"]
    why = limits(b)
    if macs < pred["macs"]:
        why = f"useful MACs {macs / pred['macs']:.0%}; {why}"
    goal = ("met" if util >= GOAL else "missed") if goal_applies else "n/a"
    mp = b["mapping"]
    return (f"| {name} | {params.rows}x{params.cols} | "
            f"{mp.q}, {mp.p}, {mp.Fseg}{layout} | {pred['cycles']:,} | "
            f"{pred['cycles'] + pred['offchip_words']:,} | {macs:,} | {util:.1%} | "
            f"{bound:.1%} | {why} | {goal} |")


def rows_of(name: str, shape: LayerShape, batch: int, params: ArrayParams) -> list[str]:
    """The layer's row; a dense batch as ``sim.batching`` presents it; for a convolution
    also its filter columns split (``sim.column_split``) when that is faster."""
    applies = shape.R <= params.rows
    if batch > 1:
        how = choose_dense_presentation(shape.M, shape.C, batch, params)
        layout = f"; {how.rows} row{'s' * (how.rows > 1)}"
        layout += f", +{how.filters - shape.M} filters" if how.filters > shape.M else ""
        return [row(name, params, how.shape, how.mapping, layout=layout,
                    useful=shape.M * shape.C * batch)]
    out = [row(name, params, shape, goal_applies=applies)]
    if shape.S > 1:
        split = choose_column_split(shape, params)
        if split.k > 1:
            useful = utilisation_breakdown(shape, params)["macs"]
            out.append(row(f"{name}, columns split in {split.k}", params, split.shape,
                           split.mapping, useful=useful, goal_applies=applies))
    return out


def table(filter_spad: int, ifmap_spad: int, batch: int = 16, arrays=tuple(ARRAYS),
          lanes: int = 1) -> list[str]:
    lines = ["| layer | array | mapping (q, p, F') | cycles | +I/O | MACs | utilisation | "
             "bound | limited by | goal (R <= rows) |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for name, (shape, n) in layers(batch).items():
        for rows, cols in arrays:
            params = ArrayParams(rows, cols, lanes, filter_spad, ifmap_spad)
            lines += rows_of(name, shape, n, params)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter-spad", type=int, default=256)
    parser.add_argument("--ifmap-spad", type=int, default=64)
    parser.add_argument("--lanes", type=int, default=1, help="MACs per PE per cycle")
    parser.add_argument("--eyeriss-spads", action="store_true",
                        help="scratchpads of the Eyeriss chip: filter 224, input 12")
    parser.add_argument("--batch", type=int, default=16,
                        help="inputs per batched dense layer (1: no batched rows)")
    parser.add_argument("--arrays", default=",".join(f"{r}x{c}" for r, c in ARRAYS),
                        help="array sizes ROWSxCOLS, comma-separated (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, not {args.batch}")
    try:
        arrays = [tuple(int(v) for v in size.split("x")) for size in args.arrays.split(",")]
        if any(len(a) != 2 or min(a) < 1 for a in arrays):
            raise ValueError
    except ValueError:
        parser.error(f"--arrays must be sizes like 3x4,12x14, not {args.arrays!r}")
    spads = EYERISS_SPADS if args.eyeriss_spads else (args.filter_spad, args.ifmap_spad)
    which = "the Eyeriss chip's" if args.eyeriss_spads else "the default"
    print(f"Scratchpads ({which}): filter {spads[0]} words per PE row, input {spads[1]} "
          f"words per PE (two banks each); {args.lanes} lane(s).\n")
    print("\n".join(table(*spads, batch=args.batch, arrays=arrays, lanes=args.lanes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
