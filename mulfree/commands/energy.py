"""``mulfree energy``: the dataflow energy comparison, and the energy of what ran.

Without ``--run``: search the least-energy mapping of every layer of a network under each
dataflow (equal storage area, as in the Eyeriss comparison) and print the energy per layer
and storage level; optionally JSON and a plot. With ``--run OUT.npz --layer LAYER.npz``:
price the counters a ``mulfree run-layer`` output holds, per level, beside the cycle
model's prediction for the same layer.
"""

from __future__ import annotations

import json
import os

from model.quant import SCHEMES
from mulfree.errors import UsageError
from sim import energy
from sim.energy_presets import network_names


def register(subparsers) -> None:
    alternatives = [n for n, d in energy.DATAFLOWS.items() if not d.paper]
    parser = subparsers.add_parser(
        "energy", help="energy of a network under RS, WS, OS_A/B/C and NLR, or of a run",
        description="Search the least-energy mapping of every layer under each dataflow "
                    "(equal storage area, as in the Eyeriss comparison) and print the energy "
                    "per layer and storage level; optionally write JSON and a plot. With "
                    "--run OUT.npz --layer LAYER.npz, price what a run-layer output counted, "
                    "beside the cycle model's prediction.")
    parser.add_argument("--network", default="alexnet",
                        help=f"a preset ({', '.join(network_names())}) or a deployment "
                             "model file (default: alexnet)")
    parser.add_argument("--pes", type=int, default=256, help="number of PEs (default 256)")
    parser.add_argument("--rows", type=int, default=None,
                        help="PE rows (default: nearest to square; with --run: the run's)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--dataflows", default=",".join(energy.PAPER_DATAFLOWS),
                        help="comma-separated dataflows (default: the paper's six, "
                             f"{','.join(energy.PAPER_DATAFLOWS)}; also "
                             f"{', '.join(alternatives)})")
    parser.add_argument("--costs", default=None, choices=energy.COST_TABLES,
                        help="cost table: Eyeriss normalised or 45 nm picojoules (default: "
                             "normalized; with --run: 45nm)")
    parser.add_argument("--scheme", default=None, choices=SCHEMES,
                        help="product scheme of every layer (default: int, 16-bit words; "
                             "a deployment model brings its own)")
    parser.add_argument("--a-bits", type=int, default=None,
                        help="activation width (xnor: lanes; default 16 for int, else 8)")
    parser.add_argument("--w-bits", type=int, default=None,
                        help="weight width for int/dorefa (default: a-bits for int, 1 dorefa)")
    parser.add_argument("--sparsity", type=float, default=None,
                        help="zero-weight fraction for the skipping units (default: from the "
                             "model, else the scheme's default)")
    parser.add_argument("--rf-area-ratio", type=float, default=energy.DEFAULT_RF_AREA_RATIO,
                        help="area of a register-file byte in global-buffer bytes (default "
                             f"{energy.DEFAULT_RF_AREA_RATIO}, derived from the paper)")
    parser.add_argument("--run", metavar="OUT.npz", action="append", default=None,
                        help="price the counters of a run-layer output (repeat for several "
                             "layers, each with its --layer)")
    parser.add_argument("--layer", metavar="LAYER.npz", action="append", default=None,
                        help="the layer file each --run ran, in the same order")
    for name in ("filter", "ifmap", "psum"):
        parser.add_argument(f"--{name}-spad", type=int, default=32, metavar="N",
                            help=f"with --run: the run's {name} scratchpad entries per bank "
                                 "(run-layer's default 32)")
    parser.add_argument("--json", metavar="F", default=None, help="write the results as JSON")
    parser.add_argument("--plot", metavar="F.png", default=None,
                        help="write stacked bars by level and data type per dataflow")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def _check_output(path: str | None, force: bool) -> None:
    if path is None:
        return
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"folder {folder} of {path} does not exist")


def _scheme(args) -> energy.Scheme:
    name = args.scheme or "int"
    if name == "int":
        a = 16 if args.a_bits is None else args.a_bits
        w = a if args.w_bits is None else args.w_bits
        return energy.Scheme("int", a, w, 16 if (a, w) == (16, 16) else None)
    if name == "dorefa":
        return energy.Scheme(name, 8 if args.a_bits is None else args.a_bits,
                             1 if args.w_bits is None else args.w_bits)
    if name == "xnor":
        lanes = 8 if args.a_bits is None else args.a_bits
        return energy.Scheme(name, lanes, lanes)
    if args.w_bits is not None:
        raise ValueError(f"scheme {name!r} has a fixed weight width; drop --w-bits")
    return energy.Scheme(name, 8 if args.a_bits is None else args.a_bits, None)


def run(args) -> int:
    _check_output(args.json, args.force)
    if args.run or args.layer:
        return _price_runs(args)
    for name, value, lo in (("--pes", args.pes, 1), ("--batch", args.batch, 1)):
        if value < lo:
            raise UsageError(f"{name} must be >= {lo}, not {value}")
    if args.rows is not None and (args.rows < 1 or args.pes % args.rows):
        raise UsageError(f"--rows {args.rows} does not divide --pes {args.pes}")
    if args.sparsity is not None and not 0.0 <= args.sparsity <= 1.0:
        raise UsageError(f"--sparsity must be in [0, 1], not {args.sparsity}")
    if not args.rf_area_ratio > 0:
        raise UsageError(f"--rf-area-ratio must be > 0, not {args.rf_area_ratio}")
    dataflows = energy.parse_dataflows(args.dataflows)
    _check_output(args.plot, args.force)
    if args.json and args.plot and os.path.abspath(args.json) == os.path.abspath(args.plot):
        raise UsageError("--json and --plot name the same file")

    layers, name, scheme, sparsity = energy.resolve_network(
        args.network, scheme=_scheme(args) if (args.scheme or args.a_bits or args.w_bits)
        else None, sparsity=args.sparsity)
    report = energy.network_energy(layers, name=name, dataflows=dataflows, batch=args.batch,
                                   pes=args.pes, rows=args.rows,
                                   costs=args.costs or "normalized", scheme=scheme,
                                   sparsity=sparsity, rf_area_ratio=args.rf_area_ratio)
    print(energy.format_table(report))
    if args.json:
        energy.write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        energy.plot_dataflows(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _price_runs(args) -> int:
    from hw.pe import check_spad_size

    outs, layers = args.run or [], args.layer or []
    if len(outs) != len(layers):
        raise UsageError(f"--run and --layer come in pairs: {len(outs)} --run, "
                         f"{len(layers)} --layer")
    if args.plot:
        raise UsageError("--plot draws the dataflow comparison; with --run use --json")
    for path in outs + layers:
        if not os.path.isfile(path):
            raise UsageError(f"{path} does not exist")
    for name in ("filter_spad", "ifmap_spad", "psum_spad"):
        check_spad_size(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.rows is not None and args.rows < 1:
        raise UsageError(f"--rows must be >= 1, not {args.rows}")
    runs = [energy.price_run(layer, out, filter_spad=args.filter_spad,
                             ifmap_spad=args.ifmap_spad, psum_spad=args.psum_spad,
                             rows=args.rows, costs=args.costs or "45nm")
            for out, layer in zip(outs, layers)]
    print(energy.format_runs(runs))
    if args.json:
        data = {"runs": [r.to_dict() for r in runs]}

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
        energy.write_atomically(args.json, write)
        print(f"wrote {args.json}")
    return 0 if all(r.counters_equal for r in runs) else 1
