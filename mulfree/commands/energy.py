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

from model.files import atomic_write, check_new_file
from model.quant import SCHEMES
from mulfree import flags
from mulfree.errors import UsageError
from sim import energy
from sim.energy_presets import network_names


#: The most PEs and images per batch the energy model is asked for: its counts stay exact
#: well below int64 (a batch of 10**15 images overflowed them into negative energies).
MAX_PES = 1 << 16
MAX_BATCH = 1 << 16


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
    parser.add_argument("--pes", type=flags.integer(1, MAX_PES), default=256,
                        help="number of PEs (default 256)")
    parser.add_argument("--rows", type=flags.integer(1, MAX_PES), default=None,
                        help="PE rows (default: nearest to square; with --run: the run's)")
    parser.add_argument("--batch", type=flags.integer(1, MAX_BATCH), default=16,
                        help="images per batch (default 16)")
    parser.add_argument("--dataflows", default=energy.PAPER_DATAFLOWS,
                        type=flags.checked(energy.parse_dataflows),
                        help="comma-separated dataflows (default: the paper's six, "
                             f"{','.join(energy.PAPER_DATAFLOWS)}; also "
                             f"{', '.join(alternatives)})")
    parser.add_argument("--costs", default=None,
                        type=flags.choice(energy.COST_TABLES, "cost table"),
                        help=f"cost table: {' or '.join(energy.COST_TABLES)} (Eyeriss "
                             "normalised or 45 nm picojoules; default: normalized, with "
                             "--run: 45nm)")
    parser.add_argument("--scheme", default=None, type=flags.choice(SCHEMES, "scheme"),
                        help="product scheme of every layer (default: int, 16-bit words; "
                             "a deployment model brings its own)")
    parser.add_argument("--a-bits", type=flags.integer(1, 64), default=None,
                        help="activation width (xnor: lanes; default 16 for int, else 8)")
    parser.add_argument("--w-bits", type=flags.integer(1, 64), default=None,
                        help="weight width for int/dorefa (default: a-bits for int, 1 dorefa)")
    parser.add_argument("--sparsity", type=flags.real(0.0, 1.0), default=None,
                        help="zero-weight fraction for the skipping units (default: from the "
                             "model, else the scheme's default)")
    parser.add_argument("--rf-area-ratio", type=flags.real(0.0, 1000.0, lo_open=True),
                        default=energy.DEFAULT_RF_AREA_RATIO,
                        help="area of a register-file byte in global-buffer bytes (default "
                             f"{energy.DEFAULT_RF_AREA_RATIO}, derived from the paper)")
    parser.add_argument("--run", metavar="OUT.npz", action="append", default=None,
                        help="price the counters of a run-layer output (repeat for several "
                             "layers, each with its --layer)")
    parser.add_argument("--layer", metavar="LAYER.npz", action="append", default=None,
                        help="the layer file each --run ran, in the same order")
    for name in ("filter", "ifmap"):
        parser.add_argument(f"--{name}-spad", type=flags.config_field(f"{name}_spad"),
                            default=None, metavar="N",
                            help=f"with --run: the run's {name} scratchpad words per bank "
                                 "(default: as OUT.npz records them)")
    parser.add_argument("--json", metavar="F", default=None, help="write the results as JSON")
    parser.add_argument("--plot", metavar="F.png", default=None,
                        help="write stacked bars by level and data type per dataflow")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def _check_plot(path: str) -> None:
    """The plot's file type (its extension; none: PNG) must be one matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    allowed = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in allowed:
        raise UsageError(f"--plot {path}: unknown image type {ext!r}; allowed: "
                         f"{', '.join(sorted(allowed))}")


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
    if args.json is not None:
        check_new_file(args.json, force=args.force)
    if args.run or args.layer:
        return _price_runs(args)
    if args.rows is not None and args.pes % args.rows:
        raise UsageError(f"--rows {args.rows} does not divide --pes {args.pes}")
    if args.plot is not None:
        check_new_file(args.plot, force=args.force)
        _check_plot(args.plot)
    if args.json and args.plot and os.path.abspath(args.json) == os.path.abspath(args.plot):
        raise UsageError("--json and --plot name the same file")

    layers, name, scheme, sparsity = energy.resolve_network(
        args.network, scheme=_scheme(args) if (args.scheme or args.a_bits or args.w_bits)
        else None, sparsity=args.sparsity)
    report = energy.network_energy(layers, name=name, dataflows=args.dataflows, batch=args.batch,
                                   pes=args.pes, rows=args.rows,
                                   costs=args.costs or "normalized", scheme=scheme,
                                   sparsity=sparsity, rf_area_ratio=args.rf_area_ratio)
    print(energy.format_table(report))
    if args.json:
        energy.write_json(report, args.json, force=args.force)
        print(f"wrote {args.json}")
    if args.plot:
        energy.plot_dataflows(report, args.plot, force=args.force)
        print(f"wrote {args.plot}")
    return 0


def _price_runs(args) -> int:
    outs, layers = args.run or [], args.layer or []
    if len(outs) != len(layers):
        raise UsageError(f"--run and --layer come in pairs: {len(outs)} --run, "
                         f"{len(layers)} --layer")
    if args.plot:
        raise UsageError("--plot draws the dataflow comparison; with --run use --json")
    for path in outs + layers:
        if not os.path.isfile(path):
            raise UsageError(f"{path} does not exist")
    runs = [energy.price_run(layer, out, filter_spad=args.filter_spad,
                             ifmap_spad=args.ifmap_spad, rows=args.rows,
                             costs=args.costs or "45nm")
            for out, layer in zip(outs, layers)]
    print(energy.format_runs(runs))
    if args.json:
        with atomic_write(args.json, force=args.force, mode="w") as f:
            json.dump({"runs": [r.to_dict() for r in runs]}, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0 if all(r.counters_equal for r in runs) else 1
