"""``mulfree energy``: dataflow energy comparison (RS/WS/OS/NLR): table, JSON and plots."""

from __future__ import annotations

import os

from model.quant import SCHEMES
from mulfree.errors import UsageError
from sim import energy
from sim.energy_presets import network_names


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "energy", help="energy of a network under the RS, WS, OS and NLR dataflows",
        description="Search the least-energy mapping of every layer under each dataflow "
                    "(equal storage area, as in the Eyeriss comparison) and print the energy "
                    "per layer and storage level; optionally write JSON and a plot.")
    parser.add_argument("--network", default="alexnet",
                        help=f"a preset ({', '.join(network_names())}) or a deployment "
                             "model file (default: alexnet)")
    parser.add_argument("--pes", type=int, default=256, help="number of PEs (default 256)")
    parser.add_argument("--rows", type=int, default=None,
                        help="PE rows of the arrangement (default: nearest to square)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--dataflows", default="rs,ws,os,nlr",
                        help="comma-separated subset of rs,ws,os,nlr (default: all)")
    parser.add_argument("--costs", default="normalized", choices=energy.COST_TABLES,
                        help="cost table: Eyeriss normalised or 45 nm picojoules")
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
    parser.add_argument("--rf-area-ratio", type=float, default=2.0,
                        help="area of a register-file byte in global-buffer bytes (default 2)")
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
    _check_output(args.json, args.force)
    _check_output(args.plot, args.force)
    if args.json and args.plot and os.path.abspath(args.json) == os.path.abspath(args.plot):
        raise UsageError("--json and --plot name the same file")

    layers, name, scheme, sparsity = energy.resolve_network(
        args.network, scheme=_scheme(args) if (args.scheme or args.a_bits or args.w_bits)
        else None, sparsity=args.sparsity)
    report = energy.network_energy(layers, name=name, dataflows=dataflows, batch=args.batch,
                                   pes=args.pes, rows=args.rows, costs=args.costs,
                                   scheme=scheme, sparsity=sparsity,
                                   rf_area_ratio=args.rf_area_ratio)
    print(energy.format_table(report))
    if args.json:
        energy.write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        energy.plot_dataflows(report, args.plot)
        print(f"wrote {args.plot}")
    return 0
