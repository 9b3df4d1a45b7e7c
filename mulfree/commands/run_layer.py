"""``mulfree run-layer LAYER.npz -o OUT.npz``: one layer on the simulated accelerator.

Reads LAYER.npz (``model.layer_file``), runs it on the row-stationary accelerator in the
chosen simulator (``sim.run_layer``), checks the sums against the golden model, and writes
OUT.npz with the outputs, the cycles and every access counter. A grouped (depthwise) layer runs
its groups one after the other on the array. A layer that cannot be mapped
(a scratchpad too small, a stride over the array's) is refused with one line, exit 2.
"""

from __future__ import annotations

import time

import numpy as np

from model.files import check_new_file
from model.layer_file import golden_outputs, load_layer, save_outputs
from model.progress import on_terminal, report
from mulfree import flags
from mulfree.errors import UsageError, flag_error

#: Above this many predicted cycles the Amaranth simulation shows a progress bar.
PROGRESS_CYCLES = 20_000


def register(subparsers) -> None:
    from sim.cycle_model import ArrayParams
    from sim.run_layer import BACKENDS
    parser = subparsers.add_parser(
        "run-layer", help="run one layer on the simulated accelerator (outputs + counters)",
        description="Run LAYER.npz (scheme, weights [M,C/groups,R,S], inputs [C,H,W], "
                    "stride, padding, groups) on the row-stationary accelerator and write "
                    "OUT.npz: the exact sums [M,E,F], the cycles and the access counters.")
    parser.add_argument("layer", metavar="LAYER.npz", help="the layer file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                        help="where to write outputs and counters")
    parser.add_argument("--backend", default="amaranth",
                        type=flags.choice([*BACKENDS, "board"], "backend"),
                        help="amaranth, verilator, icarus, or board: a board built by "
                             "mulfree build (default: amaranth)")
    parser.add_argument("--port", default=None, metavar="PORT",
                        help="serial port of the board (--backend board), e.g. /dev/ttyUSB1")
    parser.add_argument("--baud", type=flags.integer(1, 100_000_000), default=115200,
                        help="baud rate of the board's link (default 115200)")
    for flag, help_text in (("--rows", "PE rows"), ("--cols", "PE columns"),
                            ("--lanes", "MACs per PE per cycle (1, 2, 4, ... 64)"),
                            ("--filter-spad", "filter scratchpad words per bank (power of two)"),
                            ("--ifmap-spad", "input scratchpad words per bank (power of two)"),
                            ("--tree-stages", "pipeline registers in each PE's lane tree")):
        name = flag[2:].replace("-", "_")
        default = getattr(ArrayParams(), name)
        parser.add_argument(flag, type=flags.config_field(name), default=default, metavar="N",
                            help=f"{help_text} (default {default})")
    parser.add_argument("--pack-groups", type=flags.integer(1, 1 << 16), default=1,
                        metavar="K",
                        help="run K groups of a grouped layer side by side in a word's lanes "
                             "(block-diagonal weights: zero codes on the other groups' "
                             "channels; the same outputs; needs a zero weight level). "
                             "Default 1")
    parser.add_argument("--force", action="store_true",
                        help="overwrite OUT.npz, and run a simulation predicted to take long")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.set_defaults(func=run)


def refuse_long_simulation(seconds: float, backend: str, force: bool, what: str,
                           smaller: str) -> None:
    """``UsageError`` with the estimate and what to do instead when ``seconds`` (the
    predicted wall time of ``what`` on ``backend``) exceeds ``sim.sim_time.LIMIT_SECONDS`` and
    ``force`` is not set; ``smaller`` names the smaller job (``"a smaller layer"``)."""
    from sim.sim_time import LIMIT_SECONDS, describe
    if seconds > LIMIT_SECONDS and not force:
        faster = "" if backend == "verilator" else "--backend verilator, "
        raise UsageError(f"{what} would take {describe(seconds)} on {backend}; use {faster}"
                         f"{smaller}, or --force to run it anyway")


def run(args) -> int:
    from hw.schedule import AcceleratorConfig
    from sim.cycle_model import ArrayParams, check_mappable, predict
    from sim.run_layer import BACKENDS, layer_codes, layer_shape, run_layer
    from sim.sim_time import SPEED, simulation_seconds

    if args.backend == "board" and not args.port:
        raise UsageError("--backend board needs --port (the board's serial port)")
    if args.port and args.backend != "board":
        raise UsageError(f"--port is for --backend board, not --backend {args.backend}")
    names = ("rows", "cols", "lanes", "filter_spad", "ifmap_spad", "tree_stages")
    try:   # the array's parameters are checked where they are defined
        AcceleratorConfig(**{name: getattr(args, name) for name in names})
    except ValueError as exc:
        raise flag_error(exc) from None
    out_path = check_new_file(args.output, force=args.force)
    layer = load_layer(args.layer)
    if args.pack_groups > 1:
        from sim.run_layer import pack_groups
        try:
            layer = pack_groups(layer, args.pack_groups)
        except ValueError as exc:
            raise UsageError(f"--pack-groups {args.pack_groups}: {exc}") from None
    # a grouped layer's groups run one after the other (AcceleratorConfig.groups)
    params = ArrayParams(**{name: getattr(args, name) for name in names}, groups=layer.groups)
    shape = layer_shape(layer)
    try:
        check_mappable(shape, params)
    except ValueError as exc:
        raise UsageError(f"cannot map the layer on a {args.rows}x{args.cols} array: {exc}")
    model = predict(shape, params, weights=layer_codes(layer)[0], scheme=layer.scheme,
                    codebook=layer.codebook)
    seconds = 0.0
    if args.backend in SPEED:
        cycles = model["cycles"] + model["offchip_words"]
        seconds = simulation_seconds(args.backend, cycles, params.pes)
        refuse_long_simulation(seconds, args.backend, args.force,
                               f"simulating this layer ({cycles:,} cycles on a "
                               f"{args.rows}x{args.cols} array)",
                               "a smaller layer or a larger array")
    if args.backend == "board":
        from boards.accelerator import register_board_backend
        register_board_backend(args.port, baud=args.baud)
    backend = BACKENDS[args.backend]()
    if hasattr(backend, "available"):
        ok, why = backend.available()
        if not ok:
            raise UsageError(f"backend {args.backend!r} is unavailable: {why}")
    show = not args.quiet
    bar = show and on_terminal() and model["cycles"] > PROGRESS_CYCLES
    started = time.monotonic()
    if show and not bar:
        from sim.sim_time import describe
        estimate = f", {describe(seconds)}" if seconds else ""
        report(f"running the layer on {args.backend}: {model['cycles']:,} predicted cycles"
               f"{estimate}")
    result = run_layer(layer, backend=args.backend, params=params, progress=bar)
    if show and not bar:
        report(f"ran in {time.monotonic() - started:.1f} s")
    expected = golden_outputs(layer)
    exact = np.array_equal(result.outputs, expected)
    counters = result.counters
    mp = result.mapping
    save_outputs(out_path, result.outputs, counters, force=args.force, extra={
        **{name: getattr(args, name) for name in names}, "q": mp.q, "p": mp.p,
        "Fseg": mp.Fseg})
    M, C, R, S = layer.weights.shape
    grouped = f", groups {layer.groups}" if layer.groups > 1 else ""
    if args.pack_groups > 1:
        grouped += f" (each of {args.pack_groups} groups side by side)"
    print(f"{layer.scheme} layer [{M},{C},{R},{S}] on {list(layer.inputs.shape)}, stride "
          f"{layer.stride}, padding {layer.padding}{grouped} -> {list(result.outputs.shape)}")
    peak = params.macs_per_cycle * counters["cycles"]
    useful = ""
    if args.pack_groups > 1:    # each word's lanes: k groups, a filter's own group only
        useful = (f" ({counters['macs'] // args.pack_groups / peak:.1%} without the other "
                  "groups' zero weights)")
    print(f"array {args.rows}x{args.cols}x{args.lanes} lanes ({args.backend}), mapping "
          f"q={mp.q} p={mp.p} segment={mp.Fseg}: {counters['cycles']} cycles, utilisation "
          f"{counters['macs'] / peak:.1%}{useful}")
    print("  " + ", ".join(f"{k} {v}" for k, v in counters.items() if k != "cycles"))
    matches = all(counters[k] == model[k] for k in counters)
    print(f"outputs equal the golden model: {'yes' if exact else 'NO'}; counters equal the "
          f"cycle model: {'yes' if matches else 'NO'}")
    print(f"wrote {out_path}")
    return 0 if exact and matches else 1
