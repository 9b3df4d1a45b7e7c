"""``mulfree demo``: the main job on the embedded default, with a report folder.

Trains the default network on the bundled 8x8 digits, folds it into the integer model and
reports its accuracy, runs test images through the generated accelerator in RTL simulation
and checks every accumulator against the golden model, shows cycles, utilisation, energy by
scheme and by dataflow and the synthesis estimate for the iCEBreaker, and writes
``report.md``, ``summary.json``, the model, the Verilog and the plots (``mulfree.demo``).
"""

from __future__ import annotations

import sys
import time

from mulfree.errors import UsageError


def register(subparsers) -> None:
    from model import nets
    from mulfree.demo import DemoSettings
    d = DemoSettings()
    parser = subparsers.add_parser(
        "demo", help="train, fold, simulate bit-exact, energy, synthesis: the whole story",
        description="Train the default network on the bundled digits, fold it to the integer "
                    "model, run test images through the accelerator in RTL simulation (every "
                    "accumulator checked against the golden model), price the run, estimate "
                    "its size on a board, and write a report folder.")
    parser.add_argument("-o", "--output", default="mulfree-demo", metavar="DIR",
                        help="report folder (default mulfree-demo)")
    parser.add_argument("--force", action="store_true", help="replace an existing report folder")
    parser.add_argument("--net", default=d.net, metavar="NAME",
                        help=f"network ({', '.join(nets.ARRAY_NETS)};"
                             f" default {d.net})")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the "
                        "network's)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed (default 0)")
    parser.add_argument("--images", type=int, default=d.images,
                        help=f"test images through the RTL simulation (default {d.images})")
    parser.add_argument("--backend", default=d.backend, choices=["amaranth", "verilator", "icarus"],
                        help="RTL simulator (default amaranth)")
    parser.add_argument("--rows", type=int, default=d.rows,
                        help=f"PE rows (default {d.rows}: with the default columns, an "
                             "accelerator that fits the iCEBreaker)")
    parser.add_argument("--cols", type=int, default=d.cols,
                        help=f"PE columns (default {d.cols})")
    parser.add_argument("--board", default=d.board,
                        help=f"board of the synthesis estimate and --build (default {d.board})")
    parser.add_argument("--no-synthesis", action="store_true",
                        help="skip the synthesis estimate (saves a minute or two)")
    parser.add_argument("--build", action="store_true", help="also build the bitstream")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from model import nets
    from mulfree.demo import DemoSettings, run_demo, summary_lines

    quantized = nets.QUANTIZED_NETS
    if args.net not in nets.NETS:
        raise UsageError(f"unknown network {args.net!r}; allowed: {', '.join(nets.ARRAY_NETS)}")
    if args.net not in quantized:
        raise UsageError(f"network {args.net!r} is a float network; the demo needs a quantized "
                         f"one: {', '.join(nets.ARRAY_NETS)}")
    if args.net not in nets.ARRAY_NETS:
        raise UsageError(f"network {args.net!r} has grouped (depthwise) layers, which the array "
                         f"does not run yet; the demo runs {', '.join(nets.ARRAY_NETS)}")
    for name, value, lo in (("--images", args.images, 1), ("--rows", args.rows, 1),
                            ("--cols", args.cols, 1)):
        if value < lo:
            raise UsageError(f"{name} must be at least {lo}, not {value}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, not {args.epochs}")
    if args.backend != "amaranth":
        from sim.run_layer import CocotbBackend
        ok, why = CocotbBackend(args.backend).available()
        if not ok:
            raise UsageError(f"backend {args.backend!r} is unavailable: {why}")
    from boards.platforms import find_board
    find_board(args.board)
    settings = DemoSettings(net=args.net, epochs=args.epochs, seed=args.seed,
                            images=args.images, backend=args.backend, rows=args.rows,
                            cols=args.cols, board=args.board,
                            synthesize=not args.no_synthesis, build=args.build,
                            progress=not args.no_progress)
    started = time.monotonic()

    def say(line):
        print(f"[{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    summary = run_demo(settings, args.output, force=args.force, say=say)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nreport: {args.output}/report.md")
    ok = summary["rtl"]["bit_exact"] and summary["rtl"]["counters_equal_cycle_model"]
    return 0 if ok else 1
