"""``mulfree import MODEL.onnx -o MODEL.npz``: a QONNX model as a mulfree deployment model.

Reads a QONNX graph (Brevitas ``export_qonnx``, FINN, hls4ml), maps it onto mulfree's integer
layers with thresholds found by qonnx's own executor (``model.qonnx_import``), compares the
result with the executor on random inputs (``--check``), and writes MODEL.npz for
``mulfree evaluate``, ``mulfree build --model``. Needs the ``qonnx`` extra. A graph that does
not map is refused with one line naming the node, its op type and why (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model.files import check_new_file
from mulfree import flags
from mulfree.errors import UsageError

#: Random inputs ``--check`` compares on by default, and at most.
CHECK_SAMPLES = 16
MAX_CHECK_SAMPLES = 1 << 20


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="import a QONNX model (Brevitas, FINN, hls4ml), exact to qonnx",
        description="Read a QONNX graph and write a mulfree deployment model whose codes, "
                    "accumulators and predictions equal those of qonnx's executor. Needs "
                    "pip install 'mulfree[qonnx]'.")
    parser.add_argument("model", metavar="MODEL.onnx", help="the QONNX graph")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.npz",
                        help="where to write the deployment model")
    parser.add_argument("--check", type=flags.integer(0, MAX_CHECK_SAMPLES),
                        default=CHECK_SAMPLES, metavar="N",
                        help="compare with qonnx's executor on N random inputs before "
                             f"writing (default {CHECK_SAMPLES}; 0: skip)")
    parser.add_argument("--seed", type=flags.SEED, default=0, help="seed of the --check inputs")
    parser.add_argument("--force", action="store_true", help="overwrite MODEL.npz")
    parser.set_defaults(func=run)


def _modules():
    try:
        from model import qonnx_compare, qonnx_import
    except ImportError as exc:
        missing = (exc.name or "qonnx").split(".")[0]
        raise UsageError(f"mulfree import needs the qonnx extra ({missing} is missing): "
                         "pip install 'mulfree[qonnx]'") from None
    return qonnx_import, qonnx_compare


def check_inputs(model, count: int, seed: int) -> np.ndarray:
    """``count`` random float inputs a little beyond the input quantizer's range."""
    io = model.float_io
    lo, hi = io.quantizer.code_range
    span = (hi - lo) * io.quantizer.scale
    low, high = lo * io.quantizer.scale - 0.1 * span, hi * io.quantizer.scale + 0.1 * span
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (count, *io.input_shape)).astype(np.float32)


def run(args) -> int:
    from model import deploy

    out = check_new_file(args.output, force=args.force)
    qonnx_import, qonnx_compare = _modules()
    model, reports = qonnx_import.import_qonnx(args.model, name=Path(args.model).stem)
    print(f"imported {args.model}: {len(model.layers)} layers, input "
          f"{list(model.float_io.input_shape)} quantized {model.float_io.quantizer.describe()}")
    for line, report in zip(model.summary(), reports):
        print(f"  {line}")
        ops = f" + {', '.join(report.ops)}" if report.ops else ""
        into = f" -> thresholds of {report.output!r}" if report.output else " -> scores"
        exact = ("exact float32 sum" if report.max_delta_units == 0 else
                 f"float32 sum within +/-{report.max_delta_units:.2g} accumulator units")
        negated = int(np.sum(report.weight_sign < 0))
        flipped = (f", {negated} channel{'s' if negated > 1 else ''} negated for max pooling"
                   if negated else "")
        print(f"     from {report.linear!r} (weights {report.weights!r}){ops}{into}; "
              f"{exact}{flipped}")
    if args.check:
        x = check_inputs(model, args.check, args.seed)
        c = qonnx_compare.compare(args.model, model, reports, x, thresholds=False)
        ties = f" ({c.argmax_ties} exact ties of integer scores)" if c.argmax_ties else ""
        print(f"against qonnx's executor on {c.samples} random inputs: codes "
              f"{'equal' if c.max_code_diff == 0 else f'differ by up to {c.max_code_diff}'}, "
              f"accumulators equal {c.acc_equal}/{c.acc_checked}, argmax equal "
              f"{c.argmax_equal}/{c.samples}{ties}, scores within {c.max_rel_score_error:.2g} "
              "relative")
        if not c.exact:
            print(f"mulfree import: the model differs from the executor ({c.failures[0]}); "
                  "nothing written", file=sys.stderr)
            return 1
    deploy.save(model, out, overwrite=args.force)
    print(f"wrote {out}")
    return 0
