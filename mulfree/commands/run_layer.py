"""``mulfree run-layer LAYER.npz -o OUT.npz``: one layer on the simulated accelerator.

Reads LAYER.npz (``model.layer_file``), runs it on the row-stationary accelerator in the
chosen simulator (``sim.run_layer``), checks the sums against the golden model, and writes
OUT.npz with the outputs, the cycles and every access counter. A layer that cannot be mapped
(a scratchpad too small, a stride over the array's) is refused with one line, exit 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.layer_file import load_layer, save_outputs
from mulfree.errors import UsageError, flag_error

#: Above this many predicted cycles the Amaranth simulation shows a progress bar.
PROGRESS_CYCLES = 20_000


def register(subparsers) -> None:
    from sim.cycle_model import ArrayParams
    from sim.run_layer import BACKENDS
    parser = subparsers.add_parser(
        "run-layer", help="run one layer on the simulated accelerator (outputs + counters)",
        description="Run LAYER.npz (scheme, weights [M,C,R,S], inputs [C,H,W], stride, "
                    "padding) on the row-stationary accelerator and write OUT.npz: the exact "
                    "sums [M,E,F], the cycles and the access counters.")
    parser.add_argument("layer", metavar="LAYER.npz", help="the layer file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                        help="where to write outputs and counters")
    parser.add_argument("--backend", default="amaranth", choices=[*BACKENDS, "board"],
                        help="simulator, or a board built by mulfree build (default: amaranth)")
    parser.add_argument("--port", default=None, metavar="PORT",
                        help="serial port of the board (--backend board), e.g. /dev/ttyUSB1")
    parser.add_argument("--baud", type=int, default=115200,
                        help="baud rate of the board's link (default 115200)")
    for flag, help_text in (("--rows", "PE rows"), ("--cols", "PE columns"),
                            ("--lanes", "MACs per PE per cycle (1, 2, 4, ... 64)"),
                            ("--filter-spad", "filter scratchpad words per bank (power of two)"),
                            ("--ifmap-spad", "input scratchpad words per bank (power of two)"),
                            ("--tree-stages", "pipeline registers in each PE's lane tree")):
        default = getattr(ArrayParams(), flag[2:].replace("-", "_"))
        parser.add_argument(flag, type=int, default=default, metavar="N",
                            help=f"{help_text} (default {default})")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.npz")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _golden(layer) -> np.ndarray:
    if layer.codebook is not None:
        from model.compress import codebook_conv2d
        return codebook_conv2d(layer.inputs, layer.weights, layer.codebook,
                               stride=layer.stride, padding=layer.padding, a_bits=layer.a_bits)
    from model.ops import conv2d
    return conv2d(layer.scheme, layer.inputs, layer.weights, stride=layer.stride,
                  padding=layer.padding, a_bits=layer.a_bits, w_bits=layer.w_bits)


def run(args) -> int:
    from hw.schedule import AcceleratorConfig
    from sim.cycle_model import ArrayParams, check_mappable, predict
    from sim.run_layer import BACKENDS, layer_codes, layer_shape, run_layer

    out_path = Path(args.output)
    if out_path.exists() and not args.force:
        raise UsageError(f"{str(out_path)!r} exists; use --force to overwrite it")
    if not out_path.parent.is_dir():
        raise UsageError(f"folder {str(out_path.parent)!r} does not exist")
    names = ("rows", "cols", "lanes", "filter_spad", "ifmap_spad", "tree_stages")
    try:   # the array's parameters are checked where they are defined
        AcceleratorConfig(**{name: getattr(args, name) for name in names})
    except ValueError as exc:
        raise flag_error(exc) from None
    layer = load_layer(args.layer)
    params = ArrayParams(**{name: getattr(args, name) for name in names})
    shape = layer_shape(layer)
    try:
        check_mappable(shape, params)
    except ValueError as exc:
        raise UsageError(f"cannot map the layer on a {args.rows}x{args.cols} array: {exc}")
    if args.backend == "board":
        if not args.port:
            raise UsageError("--backend board needs --port (the board's serial port)")
        from boards.accelerator import register_board_backend
        register_board_backend(args.port, baud=args.baud)
    backend = BACKENDS[args.backend]()
    if hasattr(backend, "available"):
        ok, why = backend.available()
        if not ok:
            raise UsageError(f"backend {args.backend!r} is unavailable: {why}")
    model = predict(shape, params, weights=layer_codes(layer)[0], scheme=layer.scheme,
                    codebook=layer.codebook)
    progress = not args.quiet and model["cycles"] > PROGRESS_CYCLES
    result = run_layer(layer, backend=args.backend, params=params, progress=progress)
    expected = _golden(layer)
    exact = np.array_equal(result.outputs, expected)
    counters = result.counters
    mp = result.mapping
    save_outputs(out_path, result.outputs, counters, force=args.force, extra={
        "rows": args.rows, "cols": args.cols, "lanes": args.lanes, "q": mp.q, "p": mp.p,
        "Fseg": mp.Fseg})
    M, C, R, S = layer.weights.shape
    print(f"{layer.scheme} layer [{M},{C},{R},{S}] on {list(layer.inputs.shape)}, stride "
          f"{layer.stride}, padding {layer.padding} -> {list(result.outputs.shape)}")
    print(f"array {args.rows}x{args.cols}x{args.lanes} lanes ({args.backend}), mapping "
          f"q={mp.q} p={mp.p} segment={mp.Fseg}: {counters['cycles']} cycles, utilisation "
          f"{counters['macs'] / (params.macs_per_cycle * counters['cycles']):.1%}")
    print("  " + ", ".join(f"{k} {v}" for k, v in counters.items() if k != "cycles"))
    matches = all(counters[k] == model[k] for k in counters)
    print(f"outputs equal the golden model: {'yes' if exact else 'NO'}; counters equal the "
          f"cycle model: {'yes' if matches else 'NO'}")
    print(f"wrote {out_path}")
    return 0 if exact and matches else 1
