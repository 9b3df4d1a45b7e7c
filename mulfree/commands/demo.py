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

from mulfree import flags
from mulfree.errors import UsageError
from mulfree.flags import MAX_EPOCHS


def register(subparsers) -> None:
    from model import nets
    from mulfree.demo import DemoSettings, check_net
    d = DemoSettings()
    parser = subparsers.add_parser(
        "demo", help="train, fold, simulate bit-exact, energy, synthesis: the whole story",
        description="Train the default network on the bundled digits, fold it to the integer "
                    "model, run test images through the accelerator in RTL simulation (every "
                    "accumulator checked against the golden model), price the run, estimate "
                    "its size on a board, and write a report folder.")
    parser.add_argument("-o", "--output", default="mulfree-demo", metavar="DIR",
                        help="report folder (default mulfree-demo)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing report folder, and run a simulation "
                             "predicted to take long")
    parser.add_argument("--net", default=d.net, metavar="NAME",
                        type=flags.checked(check_net),
                        help=f"network ({', '.join(nets.ARRAY_NETS)}; default {d.net})")
    parser.add_argument("--epochs", type=flags.integer(1, MAX_EPOCHS), default=None,
                        help="training epochs (default: the network's)")
    parser.add_argument("--seed", type=flags.SEED, default=d.seed,
                        help="seed (default 0)")
    parser.add_argument("--images", type=flags.integer(1), default=d.images,
                        help=f"test images through the RTL simulation (default {d.images})")
    parser.add_argument("--backend", default=d.backend,
                        type=flags.choice(["amaranth", "verilator", "icarus"], "backend"),
                        help="RTL simulator: amaranth, verilator or icarus (default amaranth)")
    parser.add_argument("--rows", type=flags.config_field("rows"), default=d.rows,
                        help=f"PE rows (default {d.rows}: with the default columns, an "
                             "accelerator that fits the iCEBreaker)")
    parser.add_argument("--cols", type=flags.config_field("cols"), default=d.cols,
                        help=f"PE columns (default {d.cols})")
    parser.add_argument("--board", default=d.board,
                        help=f"board of the synthesis estimate and --build (default {d.board})")
    parser.add_argument("--no-synthesis", action="store_true",
                        help="skip the synthesis estimate (saves a minute or two)")
    parser.add_argument("--build", action="store_true", help="also build the bitstream")
    parser.add_argument("--engine-images", type=flags.integer(0), default=None, metavar="N",
                        help="test images through the whole network on the network engine "
                             "(default: all on Verilator when it is here, else one on the "
                             "Amaranth simulator; 0 skips the stage)")
    parser.add_argument("--engine-rows", type=flags.config_field("rows"), default=d.engine_rows,
                        help=f"PE rows of the network engine (default {d.engine_rows}: with the "
                             "default columns, the largest engine for binarynet that fits the "
                             "iCEBreaker)")
    parser.add_argument("--engine-cols", type=flags.config_field("cols"), default=d.engine_cols,
                        help=f"PE columns of the network engine (default {d.engine_cols})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from model.files import check_new_folder
    from mulfree.commands.run_layer import refuse_long_simulation
    from mulfree.demo import DemoSettings, engine_ok, preflight, run_demo, summary_lines

    check_new_folder(args.output, force=args.force)
    if args.backend != "amaranth":
        from sim.run_layer import CocotbBackend
        ok, why = CocotbBackend(args.backend).available()
        if not ok:
            raise UsageError(f"backend {args.backend!r} is unavailable: {why}")
    settings = DemoSettings(net=args.net, epochs=args.epochs, seed=args.seed,
                            images=args.images, backend=args.backend, rows=args.rows,
                            cols=args.cols, board=args.board,
                            synthesize=not args.no_synthesis, build=args.build,
                            progress=not args.no_progress,
                            engine_images=args.engine_images, engine_rows=args.engine_rows,
                            engine_cols=args.engine_cols)
    seconds = preflight(settings)
    refuse_long_simulation(seconds, args.backend, args.force,
                           f"simulating {args.images} images through every layer on a "
                           f"{args.rows}x{args.cols} array",
                           "fewer --images, a larger array")
    started = time.monotonic()

    def say(line):
        print(f"[{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    summary = run_demo(settings, args.output, force=args.force, say=say)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nreport: {args.output}/report.md")
    ok = summary["rtl"]["bit_exact"] and summary["rtl"]["counters_equal_cycle_model"]
    eng = summary.get("engine")
    if eng:
        ok = ok and engine_ok(eng)
    return 0 if ok else 1
