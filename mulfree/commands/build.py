"""``mulfree build --board NAME -o DIR``: a bitstream with the open toolchain, and its report.

The design is the accelerator behind the serial host link (``boards.accelerator``), sized from
flags (``--scheme --rows --cols``; ``--scheme ternary`` when no design is named); or the
network engine that runs a whole deployed model (``--model``: ``boards.engine``, compiled by
``sim.program``, weights in the iCE40UP's SPRAM where they fit; the report adds images/s at
the board clock and at fmax; ``--design accelerator`` builds instead the one-layer
accelerator sized for the model's layers of the scheme with the most MACs); or the link
self-test design (``--link-test``).
Synthesis, place-and-route and packing run through YoWASP (``boards.build``); the report gives
the utilisation of each resource, its share of the device and fmax against the board clock.
Without ``--rows``/``--cols`` the array is the one with the most PEs, up to 3x4, that fits
the board: the largest whose packed design fits the device is placed and routed, and if that
fails (or misses the board clock) the largest that leaves ``boards.build.LOGIC_HEADROOM`` of
the logic for placement is built instead. An array asked for that cannot fit is refused after
synthesis, before place-and-route, with the largest array that fits. Counters are
``--counter-bits`` wide (default: 20 with ``--scheme``, just wide enough for the model's
layers and an image's cycles with ``--model``); the host refuses a layer whose counts would not fit
(``sim.run_layer.check_job``). ``--multipliers dsp|lut`` puts multipliers (the ``int``
scheme's) on the device's DSP blocks or in logic (``boards.build.synthesis_options``); by
default each synthesizer decides (iCE40: logic, ECP5: DSP blocks).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from boards.build import MULTIPLIERS
from model.ops import MAX_ACC_BITS
from model.quant import SCHEMES
from mulfree import flags
from mulfree.errors import UsageError, flag_error
from sim.program import DEFAULT_ARRAY

#: The accelerator's defaults on a board (the same scratchpads as ``mulfree run-layer``).
#: Buffers of 256 words and 20-bit counters keep the controller small enough for the
#: iCEBreaker (every layer that fits 256-word buffers counts below 2**20 on a small array; the
#: host refuses one that would not).
DEFAULTS = {"a_bits": 8, "acc_bits": 20, "depth": 256, "spad": 32, "counter_bits": 20,
            "rows": 3, "cols": 4, "lanes": 1, "tree_stages": 0}


#: What ``--model`` builds (``--design``).
DESIGNS = ("engine", "accelerator")

#: Where the network engine's program lives (``--program``): loaded at run time into a program
#: memory, or built into the logic (``hw.program.EngineConfig.builtin``).
PROGRAMS = ("loaded", "builtin")

#: The flags that size the accelerator of ``--scheme`` only.
SCHEME_ONLY = ("a_bits", "w_bits", "acc_bits", "depth")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build a bitstream for a board (open toolchain) and report its size/fmax",
        description="Build the accelerator behind a UART host link for an FPGA board with "
                    "Yosys and nextpnr (YoWASP), and print LUTs/logic cells, RAM blocks, "
                    "DSPs, their share of the device, and fmax against the board clock.")
    parser.add_argument("--board", metavar="NAME",
                        help="board name: icebreaker, ulx3s-85f (tested) or any amaranth-boards "
                             "platform (see --list-boards)")
    parser.add_argument("--list-boards", action="store_true",
                        help="list every board, its device and whether it builds here")
    flags.output_folder(parser, "build tree, bitstream, report.txt/report.json")
    parser.add_argument("--config", metavar="FILE",
                        help="a JSON or TOML file of these options by name (board, model, "
                             "rows, cols, lanes, spad, ...), e.g. `mulfree explore`'s "
                             "chosen.json; a flag given on the command line wins")
    design = parser.add_argument_group("design (one of)")
    design.add_argument("--scheme", metavar="SCHEME", type=flags.choice(SCHEMES, "scheme"),
                        help="product scheme of the accelerator")
    design.add_argument("--model", metavar="MODEL.npz",
                        help="a deployed model (mulfree train): the network engine that runs "
                             "the whole model on the chip (mulfree run-model --backend board), "
                             f"a {DEFAULT_ARRAY[0]}x{DEFAULT_ARRAY[1]} array unless "
                             "--rows/--cols say otherwise; reports images/s")
    design.add_argument("--design", default="engine",
                        type=flags.choice(DESIGNS, "design"), metavar="KIND",
                        help="with --model: engine (default: the network engine running the "
                             "whole model) or accelerator (the one-layer accelerator sized for "
                             "the model's layers of the scheme with the most MACs, which the "
                             "host runs layer by layer)")
    design.add_argument("--link-test", action="store_true",
                        help="only the host link and a loopback design (link bring-up)")
    sizes = parser.add_argument_group("accelerator size")
    sizes.add_argument("--rows", type=flags.config_field("rows"), default=None,
                       help="PE rows (default: the largest array up to 3x4 that fits)")
    sizes.add_argument("--cols", type=flags.config_field("cols"), default=None,
                       help="PE columns (default: the largest array up to 3x4 that fits)")
    sizes.add_argument("--lanes", type=flags.config_field("lanes"), default=None,
                       metavar="N", help=f"MACs per PE per cycle (1, 2, 4, ... 64; default "
                                         f"{DEFAULTS['lanes']}, with --model what its layers "
                                         "pack into a word)")
    sizes.add_argument("--tree-stages", type=flags.config_field("tree_stages"),
                       default=DEFAULTS["tree_stages"], metavar="N",
                       help="pipeline registers in each PE's lane tree (0 to 2; default "
                            f"{DEFAULTS['tree_stages']})")
    sizes.add_argument("--a-bits", type=flags.integer(1, 64), default=None, metavar="N",
                       help=f"activation width per lane with --scheme (default "
                            f"{DEFAULTS['a_bits']}; 1 for xnor)")
    sizes.add_argument("--w-bits", type=flags.integer(1, 64), default=None, metavar="N",
                       help="weight width per lane with --scheme (dorefa, int)")
    sizes.add_argument("--acc-bits", type=flags.integer(2, MAX_ACC_BITS), default=None,
                       metavar="N",
                       help=f"partial-sum width with --scheme (default {DEFAULTS['acc_bits']})")
    sizes.add_argument("--depth", type=flags.integer(16, 1 << 20), default=None, metavar="N",
                       help="global-buffer words per bank with --scheme (default "
                            f"{DEFAULTS['depth']})")
    sizes.add_argument("--spad", type=flags.config_field("filter_spad"), default=DEFAULTS["spad"],
                       metavar="N",
                       help=f"PE scratchpad words per bank (default {DEFAULTS['spad']})")
    sizes.add_argument("--counter-bits", type=flags.config_field("counter_bits"), default=None,
                       metavar="N",
                       help=f"width of each access counter (default {DEFAULTS['counter_bits']} "
                            "with --scheme, what the layers need with --model; the host "
                            "refuses a layer whose counts would not fit)")
    engine = parser.add_argument_group("network engine (--model)")
    engine.add_argument("--program", type=flags.choice(PROGRAMS, "program"), default=None,
                        metavar="WHERE",
                        help="loaded (a program memory: any program of this engine's shapes "
                             "runs) or builtin (the model's program is part of the logic, which "
                             "is smaller; weights still load at run time); default: builtin on "
                             "the iCE40, loaded elsewhere")
    engine.add_argument("--counters", action=argparse.BooleanOptionalAction, default=None,
                        help="per-layer counters read after each image (default: on, except "
                             "on the iCE40, where --no-counters leaves room for a larger array; "
                             "each image's cycles are always counted)")
    parser.add_argument("--multipliers", type=flags.choice(MULTIPLIERS, "multiplier placement"),
                        default=None, metavar="WHERE",
                        help="where synthesis puts multipliers (the int scheme's): dsp (the "
                             "device's DSP blocks: synth_ice40 -dsp) or lut (logic only: "
                             "synth_ecp5 -nodsp); default: the synthesizer's own (iCE40: "
                             "logic, ECP5: DSP blocks)")
    parser.add_argument("--baud", type=flags.integer(1, 100_000_000), default=115200,
                        help="host link baud rate (default 115200)")
    parser.set_defaults(func=run)
    _CONFIG_ACTIONS.clear()
    _CONFIG_ACTIONS.update({a.dest: a for a in parser._actions if a.dest in CONFIG_KEYS})


#: The options a ``--config`` file may set (by their names with underscores).
CONFIG_KEYS = ("board", "model", "design", "scheme", "rows", "cols", "lanes", "tree_stages",
               "a_bits", "w_bits", "acc_bits", "depth", "spad", "counter_bits", "multipliers",
               "baud")
_CONFIG_ACTIONS: dict = {}


def _read_config(path) -> dict:
    """The ``--config`` file's table (JSON, or TOML by its ``.toml`` suffix)."""
    from pathlib import Path
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --config {str(path)!r}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            table = tomllib.loads(text)
        else:
            table = json.loads(text)
    except ValueError as exc:   # JSONDecodeError and TOMLDecodeError are ValueErrors
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise UsageError(f"--config {str(path)!r} is not valid {kind}: "
                         f"{' '.join(str(exc).split())}") from None
    if not isinstance(table, dict):
        raise UsageError(f"--config {str(path)!r} must hold a table of options, not "
                         f"{type(table).__name__}")
    return table


def apply_config(args) -> None:
    """Fill ``args`` from its ``--config`` file: every option the command line left at its
    default takes the file's value, checked as the flag's would be; ``UsageError`` (one line)
    for an unknown key or a bad value. A relative ``model`` path is taken from the file's
    folder."""
    import argparse
    from pathlib import Path
    table = _read_config(args.config)
    for key, value in table.items():
        action = _CONFIG_ACTIONS.get(key)
        if action is None:
            raise UsageError(f"--config {args.config}: unknown option {key!r}; allowed: "
                             f"{', '.join(CONFIG_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise UsageError(f"--config {args.config}: {key} must be "
                             f"{'an integer' if action.type not in (None, str) else 'a string'}"
                             f", not {value!r}")
        if key == "model":
            value = str(Path(args.config).parent / value)
        try:
            parsed = action.type(str(value)) if action.type else str(value)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--config {args.config}: {key} {value!r}: {exc}") from None
        if getattr(args, key) == action.default:
            setattr(args, key, parsed)


_STARTED = time.monotonic()


def _say(line: str) -> None:
    print(f"[{time.monotonic() - _STARTED:5.0f} s] {line}", file=sys.stderr, flush=True)


def _list_boards() -> int:
    from boards.platforms import list_boards
    rows = [("board", "device", "clock", "builds")]
    for board in list_boards():
        try:
            d = board.describe()
        except ValueError as exc:
            rows.append((board.name, "?", "?", f"broken in amaranth-boards ({exc})"[:60]))
            continue
        clock = f"{d['clock_hz'] / 1e6:g} MHz" if d["clock_hz"] else "-"
        how = ("here (tested)" if board.tested else "here") if d["open_toolchain"] else \
            f"tree only: needs {d['needs']}"
        rows.append((board.name, str(d["device"]), clock, how))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def _scheme_args(args, params) -> tuple:
    from hw.schedule import AcceleratorConfig
    from model.quant import check_scheme
    scheme = check_scheme(args.scheme)
    a_bits = 1 if scheme == "xnor" and args.a_bits is None else (
        args.a_bits if args.a_bits is not None else DEFAULTS["a_bits"])
    try:
        config = AcceleratorConfig(
            scheme=scheme, rows=params.rows, cols=params.cols, lanes=params.lanes,
            a_bits=a_bits, w_bits=args.w_bits, acc_bits=args.acc_bits,
            filter_spad=params.filter_spad, ifmap_spad=params.ifmap_spad,
            in_depth=args.depth, wb_depth=args.depth, pb_depth=args.depth,
            tree_stages=params.tree_stages,
            counter_bits=args.counter_bits or DEFAULTS["counter_bits"])
    except ValueError as exc:
        raise flag_error(exc) from None
    return config, (f"{scheme} accelerator, {params.lanes} lanes, A{config.a_bits} "
                    f"W{config.w_bits}, {args.acc_bits}-bit sums")


def _model_args(path, params, counter_bits: int | None) -> tuple[dict, str]:
    """The accelerator for the layers of ``path`` with the most MACs, and a note; counters
    ``counter_bits`` wide, or (None) just wide enough for those layers."""
    from model import deploy
    from model.layer_file import Layer
    from sim.cycle_model import check_mappable
    from sim.run_layer import (accelerator_config, check_job, counter_bits_needed, layer_shape,
                               plan)

    loaded = deploy.load(path)
    if not isinstance(loaded, deploy.IntegerModel):
        raise UsageError(f"{path} is a float checkpoint; the accelerator needs a quantized "
                         "model (mulfree train --scheme ...)")
    groups = {}
    for index, il in enumerate(loaded.layers):
        book = None if il.codebook is None else tuple(int(v) for v in il.codebook)
        key = (il.scheme, il.a_bits, il.w_bits, book)   # layers of one accelerator
        macs = il.fan_in * il.out_channels * _out_pixels(il)
        groups.setdefault(key, []).append((index, il, macs))
    key = max(groups, key=lambda k: sum(m for _, _, m in groups[k]))
    chosen = groups[key]
    # a grouped (depthwise) layer runs its groups one after the other (AcceleratorConfig.groups)
    params = dataclasses.replace(params, groups=max(params.groups,
                                                    *(il.groups for _, il, _ in chosen)))
    layers = []
    for index, il, _ in chosen:
        layer = Layer(il.scheme, il.weights, _zeros(il.in_shape), stride=il.stride,
                      padding=il.padding, a_bits=il.a_bits, w_bits=il.w_bits,
                      codebook=il.codebook, groups=il.groups)
        try:
            check_mappable(layer_shape(layer), params)
        except ValueError as exc:
            raise UsageError(f"layer {index} of {path} cannot run on a {params.rows}x"
                             f"{params.cols} array: {exc}") from None
        layers.append(layer)
    others = [i for k, g in groups.items() if k != key for i, _, _ in g]
    lut = " (look-up table)" if key[3] is not None else ""
    note = (f"{key[0]}{lut} accelerator, A{key[1]} W{key[2]}, for layers "
            f"{', '.join(str(i) for i, _, _ in chosen)} of {path}")
    if others:
        which = (f"layer {others[0]} uses" if len(others) == 1 else
                 f"layers {', '.join(map(str, others))} use")
        note += f" ({which} another scheme or width)"
    jobs = [plan(layer, params)[2] for layer in layers]
    accel = accelerator_config(layers, params,
                               counter_bits=counter_bits or counter_bits_needed(jobs))
    for index, job in zip((i for i, _, _ in chosen), jobs):
        check_job(accel, job, f"layer {index} of {path}")
    return accel, note


def _out_pixels(il) -> int:
    from model.ops import conv_output_size
    _, h, w = il.in_shape
    _, _, r, s = il.weights.shape
    return (conv_output_size(h, r, il.stride, il.padding)
            * conv_output_size(w, s, il.stride, il.padding))


def _zeros(shape):
    import numpy as np
    return np.zeros(tuple(int(v) for v in shape), dtype=np.int64)


def _refuse_with_largest(args, board, make_top, overflow):
    """``UsageError`` for an array of the user's size that does not fit, naming the largest
    that does (within ``LOGIC_HEADROOM``)."""
    from boards.build import largest_array_that_fits
    r, c, packed = largest_array_that_fits(board, make_top, args.rows, args.cols, overflow,
                                           progress=_say, synth_opts=args.synth_opts)
    if r == 0:
        worst = max(packed, key=lambda u: u.share)
        raise UsageError(f"{overflow}; no array fits: even 1x1 needs {worst.used:,} "
                         f"{worst.resource} ({worst.share:.0%})")
    used = next(u for u in packed if u.resource == overflow.resource)
    raise UsageError(f"{overflow}; the largest that fits is {r}x{c} ({used.used:,} "
                     f"{used.resource}, {used.share:.0%}, with room for place-and-route)")


def _build_largest(args, board, make_top, extra_for, overflow):
    """Build the array with the most PEs (up to ``args.rows x args.cols``) whose packed
    design fits; if placement, routing or timing fails, the largest within 95 % of the logic,
    then within ``LOGIC_HEADROOM``. The report, or None after printing why nothing was
    built."""
    from boards.build import LOGIC_HEADROOM, BuildError, build, largest_array_that_fits

    wanted = (args.rows, args.cols)
    tried, written, failure, late = set(), False, None, None
    for headroom in (1.0, 0.95, LOGIC_HEADROOM):
        r, c, packed = largest_array_that_fits(board, make_top, *wanted, overflow,
                                               progress=_say, headroom=headroom,
                                               most_pes=True, synth_opts=args.synth_opts)
        if r == 0:
            worst = max(packed, key=lambda u: u.share)
            raise UsageError(f"{overflow}; no array fits: even 1x1 needs {worst.used:,} "
                             f"{worst.resource} ({worst.share:.0%})")
        if (r, c) in tried:
            continue
        tried.add((r, c))
        how = ("the most PEs whose packed design fits" if headroom == 1.0 else
               f"the most PEs within {headroom:.0%} of the logic")
        _say(f"{wanted[0]}x{wanted[1]} does not fit; building {how}: {r}x{c}")
        args.rows, args.cols = r, c
        try:
            report = build(board, make_top(r, c), args.output, force=args.force or written,
                           progress=_say, extra_files=extra_for(r, c),
                           synth_opts=args.synth_opts)
        except BuildError as exc:
            failure = exc
            _say(f"{r}x{c} did not build ({str(exc).splitlines()[0]}); trying a smaller array")
            continue
        written = True
        if report.built and report.meets_timing is False and headroom == 1.0:
            _say(f"{r}x{c} misses the board clock; trying a smaller array")
            late = report
            continue
        return report
    if late is not None:
        return late          # nothing smaller to try: the caller warns about the clock
    print(f"mulfree build: error: {failure}", file=sys.stderr)
    return None


def run(args) -> int:
    if args.config:
        apply_config(args)
    if args.list_boards:
        return _list_boards()
    if not args.board:
        raise UsageError("--board is required (e.g. --board icebreaker; --list-boards lists "
                         "them)")
    if not args.output:
        raise UsageError("-o/--output DIR is required")
    chosen = [bool(args.scheme), bool(args.model), args.link_test]
    if sum(chosen) > 1:
        raise UsageError("give exactly one of --scheme SCHEME, --model MODEL.npz, --link-test")
    if not any(chosen):
        args.scheme = "ternary"
    if not args.scheme:
        given = [f"--{name.replace('_', '-')}" for name in SCHEME_ONLY
                 if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{given[0]} sizes the accelerator of --scheme; with "
                             f"{'--model' if args.model else '--link-test'} it does not apply")
    for name in ("acc_bits", "depth"):
        if getattr(args, name) is None:
            setattr(args, name, DEFAULTS[name])
    if args.link_test and (args.rows is not None or args.cols is not None):
        raise UsageError("--rows and --cols size the accelerator; --link-test has none")
    if args.model and args.design == "engine":
        return _build_engine(args)
    if args.design != "engine" and not args.model:
        raise UsageError("--design accelerator sizes the one-layer accelerator for the layers "
                         "of --model MODEL.npz; give --model")
    if args.lanes is None:
        args.lanes = DEFAULTS["lanes"]
    auto_size = args.rows is None and args.cols is None
    args.rows = DEFAULTS["rows"] if args.rows is None else args.rows
    args.cols = DEFAULTS["cols"] if args.cols is None else args.cols

    from boards.build import (BuildError, DoesNotFit, build, check_output,
                              synthesis_options)
    from boards.platforms import find_board
    from boards.protocol import clocks_per_bit
    from boards.top import BoardTop, LinkLoopback

    check_output(args.output, args.force)
    board = find_board(args.board)
    described = board.describe()
    try:
        args.synth_opts = synthesis_options(board, args.multipliers)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if described["clock_hz"] is None:
        raise UsageError(f"board {board.name!r} has no default clock in amaranth-boards")
    clocks_per_bit(described["clock_hz"], args.baud)

    if args.link_test:
        note = "host link self-test (loopback)"
        make_top = None
        extra = {}
        top = BoardTop(LinkLoopback, baud=args.baud)
    else:
        from hw.schedule import AcceleratorConfig
        from sim.cycle_model import ArrayParams
        try:   # the array's parameters are checked where they are defined
            AcceleratorConfig(rows=args.rows, cols=args.cols, lanes=args.lanes,
                              filter_spad=args.spad, ifmap_spad=args.spad,
                              tree_stages=args.tree_stages)
        except ValueError as exc:
            raise flag_error(str(exc).replace("filter_spad", "spad")) from None

        def params_for(rows, cols):
            return ArrayParams(rows, cols, args.lanes, args.spad, args.spad, args.tree_stages)

        def accel_for(rows, cols):
            if args.model:
                return _model_args(args.model, params_for(rows, cols), args.counter_bits)
            return _scheme_args(args, params_for(rows, cols))

        accel, note = accel_for(args.rows, args.cols)

        def make_top(rows, cols):
            from boards.accelerator import AcceleratorTarget
            a = accel_for(rows, cols)[0]
            return BoardTop(lambda: AcceleratorTarget(a), baud=args.baud)

        top = make_top(args.rows, args.cols)
        note = f"{args.rows}x{args.cols} {note}"
        extra = {"accelerator.json": json.dumps(dict(accel.to_dict(), baud=args.baud),
                                                indent=2) + "\n"}

    _say(f"{board.name}: {note}")
    try:
        report = build(board, top, args.output, force=args.force, progress=_say,
                       extra_files=extra, synth_opts=args.synth_opts)
    except DoesNotFit as overflow:
        if make_top is None:
            raise
        if not auto_size:
            _refuse_with_largest(args, board, make_top, overflow)

        def extra_for(rows, cols):
            return {"accelerator.json": json.dumps(dict(accel_for(rows, cols)[0].to_dict(),
                                                        baud=args.baud), indent=2) + "\n"}
        report = _build_largest(args, board, make_top, extra_for, overflow)
        if report is None:
            return 1
    except BuildError as exc:
        print(f"mulfree build: error: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    if report.built and report.meets_timing is False:
        print(f"mulfree build: warning: fmax is below the {report.clock_hz / 1e6:g} MHz board "
              "clock; the bitstream may not work", file=sys.stderr)
        return 1
    return 0


def _build_engine(args) -> int:
    """``--model``: the network engine for the whole model behind the host link; the report
    adds the images per second at the board clock and at fmax (``sim.program``). Without
    --rows/--cols: the array with the most PEs, up to ``DEFAULT_ARRAY``'s rows and twice its
    columns, whose design fits the device."""
    from boards.build import BuildError, DoesNotFit, build, check_output, synthesis_options
    from boards.engine import EngineTarget, engine_options
    from boards.platforms import find_board
    from boards.protocol import clocks_per_bit
    from boards.top import BoardTop
    from hw.buffer import SPRAM_WORDS, spram_blocks
    from model import deploy
    from sim.program import compile_program, engine_for_model, image_cycles, report

    check_output(args.output, args.force)
    board = find_board(args.board)
    described = board.describe()
    if described["clock_hz"] is None:
        raise UsageError(f"board {board.name!r} has no default clock in amaranth-boards")
    clocks_per_bit(described["clock_hz"], args.baud)
    try:
        args.synth_opts = synthesis_options(board, args.multipliers)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model = deploy.load(args.model)
    if not isinstance(model, deploy.IntegerModel):
        raise UsageError(f"{args.model} is a float checkpoint; the engine needs a quantized "
                         "model (mulfree train, quantize or import)")
    device = str(described["device"])
    defaults = engine_options(device)
    builtin = defaults["builtin"] if args.program is None else args.program == "builtin"
    counters = defaults["counters"] if args.counters is None else args.counters
    auto_size = args.rows is None and args.cols is None
    args.rows = DEFAULT_ARRAY[0] if args.rows is None else args.rows
    if args.cols is None:
        args.cols = 2 * DEFAULT_ARRAY[1] if auto_size else DEFAULT_ARRAY[1]

    def engine_at(rows, cols):
        try:
            engine = engine_for_model(model, rows=rows, cols=cols, lanes=args.lanes,
                                      filter_spad=args.spad, ifmap_spad=args.spad,
                                      tree_stages=args.tree_stages,
                                      counter_bits=args.counter_bits, counters=counters,
                                      builtin=builtin)
            program = compile_program(model, engine)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        a = engine.accelerator
        blocks = spram_blocks(a.rows, a.wb_depth, a.w_word_bits)
        weight_ram = "spram" if device.upper().startswith("ICE40UP") and blocks <= 4 and \
            a.wb_depth <= 2 * SPRAM_WORDS else "memory"
        return engine, program, weight_ram, blocks

    def make_top(rows, cols):
        engine, _, weight_ram, _ = engine_at(rows, cols)
        return BoardTop(lambda: EngineTarget(engine, weight_ram=weight_ram), baud=args.baud)

    def extra_for(rows, cols):
        engine, program, weight_ram, _ = engine_at(rows, cols)
        a = engine.accelerator
        cycles = image_cycles(program) + program.header["input_words"]
        return {"engine.txt": "\n".join(report(program)) + "\n",
                "engine.json": json.dumps({"model": str(args.model), "rows": a.rows,
                                           "cols": a.cols, "lanes": a.lanes,
                                           "weight_ram": weight_ram, "baud": args.baud,
                                           "program": "builtin" if builtin else "loaded",
                                           "counters": counters,
                                           "cycles_per_image": cycles}, indent=2) + "\n"}

    engine, program, weight_ram, blocks = engine_at(args.rows, args.cols)
    a = engine.accelerator
    where = f"{blocks} SPRAM blocks" if weight_ram == "spram" else "block RAM"
    _say(f"{board.name}: network engine for {args.model}: {a.rows}x{a.cols} PEs, {a.lanes} "
         f"lanes, {len(program.layers)} layers, weights in {where}, program "
         f"{'built in' if builtin else 'loaded at run time'}, "
         f"{'per-layer counters' if counters else 'no per-layer counters'}")
    try:
        built = build(board, make_top(args.rows, args.cols), args.output, force=args.force,
                      progress=_say, extra_files=extra_for(args.rows, args.cols),
                      synth_opts=args.synth_opts)
    except DoesNotFit as overflow:
        if not auto_size:
            _refuse_with_largest(args, board, make_top, overflow)
        built = _build_largest(args, board, make_top, extra_for, overflow)
        if built is None:
            return 1
    except BuildError as exc:
        print(f"mulfree build: error: {exc}", file=sys.stderr)
        return 1
    for line in built.lines():
        print(line)
    engine, program, _, _ = engine_at(args.rows, args.cols)
    cycles = image_cycles(program) + program.header["input_words"]
    clock = described["clock_hz"]
    line = (f"images/s: {clock / cycles:,.0f} at the {clock / 1e6:g} MHz board clock "
            f"({cycles:,} cycles per image, cycle model)")
    if built.fmax_mhz:
        fmax = min(built.fmax_mhz.values()) * 1e6
        line += f", {fmax / cycles:,.0f} at fmax {fmax / 1e6:.1f} MHz"
    print(line)
    if built.built and built.meets_timing is False:
        print(f"mulfree build: warning: fmax is below the {clock / 1e6:g} MHz board clock; "
              "the bitstream may not work", file=sys.stderr)
        return 1
    return 0
