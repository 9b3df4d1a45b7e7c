"""QONNX import against qonnx's executor: every example graph, one table row each.

Builds each graph of ``model.qonnx_examples`` (the five of the tests, requantization onto
exact ties, the larger TFC and CNV shapes, CNV with float per-channel weight scales, and a
deliberately ambiguous layer), imports it (``model.qonnx_import``) and compares it with
``execute_onnx`` after qonnx's clean-up on random float inputs (a quarter of them on half
steps of the input grid), layer by layer (``model.qonnx_compare``): the largest difference
of any quantizer's codes, how many layer outputs have accumulators equal to
``rint((output - bias) / (s_a * s_w))``, how many (channel, accumulator) pairs over every
accumulator in range get the executor's code from the thresholds, how many of those sit on
an exact tie of the quantizer and how many of the ties the executor rounds down (thresholds
that count ``x >= t``, rounding every tie up as FINN's do, would be one code off there),
argmax agreement and the largest relative score error. A refused graph shows the refusal.
One Markdown table (``docs/import.md``).

    python benchmarks/qonnx_import.py [--samples 64] [--seed 1] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import qonnx_examples as ex  # noqa: E402
from model.qonnx_compare import compare  # noqa: E402
from model.qonnx_graph import ImportRefused  # noqa: E402
from model.qonnx_import import import_qonnx  # noqa: E402


def _schemes(model) -> str:
    names = []
    for layer in model.layers:
        name = layer.scheme + ("+LUT" if layer.codebook is not None else "")
        names.append(name)
    return ", ".join(names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="float inputs per graph")
    parser.add_argument("--seed", type=int, default=1, help="seed of the inputs")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME",
                        help=f"graphs to run (default: all of {', '.join(ex.EXAMPLES)})")
    args = parser.parse_args(argv)
    names = args.only or list(ex.EXAMPLES)
    print("| graph | layers (mulfree schemes) | float32 sum | import (s) | max code diff "
          "| accumulators equal | thresholds equal (channel x accumulator) | ties (rounded down) "
          "| argmax equal | max rel. score error | compare (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        graph = ex.build(name)
        start = time.perf_counter()
        try:
            model, reports = import_qonnx(graph)
        except ImportRefused as exc:
            print(f"| {name} | refused: {exc} | | {time.perf_counter() - start:.2f} "
                  "| | | | | | | |")
            continue
        took = time.perf_counter() - start
        delta = max(r.max_delta_units for r in reports[:-1]) if len(reports) > 1 else 0.0
        exact = "exact" if delta == 0 else f"within {delta:.2g} units"
        x = ex.sample_inputs(name, graph, args.samples, seed=args.seed)
        start = time.perf_counter()
        c = compare(graph, model, reports, x)
        ties = f" (+{c.argmax_ties} tie{'s' if c.argmax_ties > 1 else ''})" \
            if c.argmax_ties else ""
        print(f"| {name} | {len(model.layers)} ({_schemes(model)}) | {exact} | {took:.2f} "
              f"| {c.max_code_diff} | {c.acc_equal}/{c.acc_checked} "
              f"| {c.threshold_equal:,}/{c.threshold_checked:,} | {c.ties:,} ({c.ties_down:,}) "
              f"| {c.argmax_equal}/{c.samples}{ties} | {c.max_rel_score_error:.1e} "
              f"| {time.perf_counter() - start:.1f} |")
        if c.failures:
            print(f"failures in {name}: {', '.join(c.failures[:5])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
