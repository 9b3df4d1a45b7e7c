"""``mulfree generate KIND``: Verilog and a JSON manifest for a product unit, a MAC cell, the
row-stationary array or the whole accelerator.

Each design kind is one entry of ``KINDS``: a help line, a function adding its flags to its
parser and a function turning the parsed flags into the keyword parameters of its builder
in ``hw.generate.GENERATORS``. Adding a kind is one more entry here, or a call to
``add_kind`` before the command line is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from hw.accelerator import accelerator_design
from hw.generate import (GENERATORS, check_module_name, check_outputs, default_module,
                         write_outputs)
from hw.schedule import LANES, AcceleratorConfig, Datapath
from model.ops import MAX_ACC_BITS
from model.quant import SCHEMES
from mulfree import flags
from mulfree.errors import UsageError, flag_error


@dataclass(frozen=True)
class Kind:
    """One design kind of ``mulfree generate``."""

    help: str
    add_arguments: Callable  # (parser) -> None
    parameters: Callable  # (args) -> dict of keyword parameters for GENERATORS[kind]


def _add_product_arguments(parser) -> None:
    parser.add_argument("--scheme", required=True, metavar="SCHEME",
                        type=flags.choice(SCHEMES, "scheme"),
                        help=f"product scheme: {', '.join(SCHEMES)}")
    parser.add_argument("--a-bits", type=flags.integer(1, 64), required=True, metavar="N",
                        help="activation code width (the lane count for xnor)")
    parser.add_argument("--w-bits", type=flags.integer(1, 64), default=None, metavar="N",
                        help="weight code width (needed for dorefa and int; fixed for binary, "
                             "ternary, pow2; the lane count for xnor)")


def _product_parameters(args) -> dict:
    return {"scheme": args.scheme, "a_bits": args.a_bits, "w_bits": args.w_bits}


def _add_mac_arguments(parser) -> None:
    _add_product_arguments(parser)
    parser.add_argument("--fan-in", type=flags.integer(1, 1 << 32), required=True, metavar="N",
                        help="largest number of products in one sum (sizes the accumulator)")


def _mac_parameters(args) -> dict:
    return dict(_product_parameters(args), fan_in=args.fan_in)


#: Design kind -> how its flags are read (the builders are ``hw.generate.GENERATORS``).
KINDS: dict[str, Kind] = {
    "unit": Kind("a combinational product unit (hw.units)", _add_product_arguments,
                 _product_parameters),
    "mac": Kind("a MAC cell: product unit + accumulator on stream handshakes (hw.mac)",
                _add_mac_arguments, _mac_parameters),
}


#: Flags of the array and accelerator kinds: (flag, help); the defaults are
#: ``hw.schedule.AcceleratorConfig``'s.
_ARRAY_FLAGS = (("--rows", "PE rows"), ("--cols", "PE columns"),
                ("--lanes", f"MACs per PE per cycle: {', '.join(map(str, LANES))}"),
                ("--filter-spad", "filter scratchpad words per bank (a power of two)"),
                ("--ifmap-spad", "input scratchpad words per bank (a power of two)"),
                ("--tree-stages", "pipeline registers in each PE's lane tree (0 to 2)"))
_BUFFER_FLAGS = (("--in-depth", "input buffer words"),
                 ("--wb-depth", "words per weight bank"),
                 ("--pb-depth", "words per psum bank"),
                 ("--counter-bits", "width of each counter"),
                 ("--groups", "the most groups of a grouped (depthwise) layer: the controller "
                              "runs them one after the other (1: no group loop)"))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AcceleratorConfig)}


def _add_sized_arguments(parser, sizes) -> None:
    parser.add_argument("--scheme", required=True, metavar="SCHEME",
                        type=flags.choice(SCHEMES, "scheme"),
                        help=f"product scheme: {', '.join(SCHEMES)}")
    parser.add_argument("--a-bits", type=flags.integer(1, 64), default=None, metavar="N",
                        help="activation code width per lane (1 for xnor, its default)")
    parser.add_argument("--w-bits", type=flags.integer(1, 64), default=None, metavar="N",
                        help="weight code width per lane (needed for dorefa and int)")
    parser.add_argument("--acc-bits", type=flags.integer(2, MAX_ACC_BITS), required=True,
                        metavar="N", help="partial-sum width: at least what one word's products "
                                          "need (model.ops.accumulator_width of the layers)")
    for flag, text in sizes:
        name = flag[2:].replace("-", "_")
        default = _DEFAULTS[name]
        parser.add_argument(flag, type=flags.config_field(name), default=default, metavar="N",
                            help=f"{text} (default {default})")
    parser.add_argument("--more-mode", action="append", default=None, metavar="SPEC",
                        help="a further datapath mode a layer can select, "
                             "SCHEME:LANES[:A_BITS[:W_BITS]] (repeatable; e.g. xnor:32 beside "
                             "--scheme binary --lanes 4 --a-bits 8); every mode's LANES * A_BITS "
                             "must equal the first's")


def parse_mode(spec) -> Datapath:
    """A ``--more-mode`` value ``SCHEME:LANES[:A_BITS[:W_BITS]]`` as a ``Datapath``."""
    parts = str(spec).split(":")
    if not 2 <= len(parts) <= 4 or not all(p.strip() for p in parts):
        raise UsageError(f"--more-mode {spec!r} is not SCHEME:LANES[:A_BITS[:W_BITS]] "
                         "(e.g. xnor:32 or ternary:2:8)")
    scheme, numbers = parts[0], parts[1:]
    try:
        values = [int(p) for p in numbers]
    except ValueError:
        raise UsageError(f"--more-mode {spec!r}: LANES, A_BITS and W_BITS must be integers"
                         ) from None
    lanes = values[0]
    a_bits = values[1] if len(values) > 1 else (1 if scheme == "xnor" else None)
    if a_bits is None:
        raise UsageError(f"--more-mode {spec!r} needs A_BITS (SCHEME:LANES:A_BITS)")
    w_bits = values[2] if len(values) > 2 else None
    try:
        return Datapath(scheme, lanes, a_bits, w_bits)
    except ValueError as exc:
        raise UsageError(f"--more-mode {spec!r}: {exc}") from None


def _config(args, sizes) -> dict:
    names = [flag[2:].replace("-", "_") for flag, _ in sizes]
    a_bits = args.a_bits
    if a_bits is None:
        if args.scheme != "xnor":
            raise UsageError("--a-bits needed (as a flag or in --config FILE.toml)")
        a_bits = 1
    try:
        more = tuple(parse_mode(spec) for spec in (args.more_mode or ()))
        config = AcceleratorConfig(scheme=args.scheme, a_bits=a_bits, w_bits=args.w_bits,
                                   acc_bits=args.acc_bits, more_modes=more,
                                   **{name: getattr(args, name) for name in names})
    except ValueError as exc:
        raise flag_error(exc) from None
    return {"config": config}


KINDS["array"] = Kind("the row-stationary PE array alone (hw.array)",
                      lambda parser: _add_sized_arguments(parser, _ARRAY_FLAGS),
                      lambda args: _config(args, _ARRAY_FLAGS))


KINDS["accelerator"] = Kind("the row-stationary accelerator: PE array, global buffer, "
                            "controller, streams (hw.accelerator)",
                            lambda parser: _add_sized_arguments(parser,
                                                                _ARRAY_FLAGS + _BUFFER_FLAGS),
                            lambda args: _config(args, _ARRAY_FLAGS + _BUFFER_FLAGS))
GENERATORS.setdefault("accelerator", accelerator_design)


def add_kind(name: str, kind: Kind) -> None:
    """Add a design kind (its builder must be in ``hw.generate.GENERATORS`` under ``name``)."""
    KINDS[name] = kind


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="write Verilog and a JSON manifest for a unit, a MAC cell, the array or "
                         "the accelerator",
        description="Write deterministic Verilog (<module>.v) and a JSON manifest "
                    "(<module>.json: scheme, widths, ports, latency) into a folder.")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, kind in KINDS.items():
        sub = kinds.add_parser(name, help=kind.help, description=f"Generate {kind.help}.")
        kind.add_arguments(sub)
        sub.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="output folder (created if missing)")
        sub.add_argument("--module", default=None, metavar="NAME",
                         type=flags.checked(check_module_name),
                         help="Verilog top module name (default: the class name in snake_case)")
        sub.add_argument("--force", action="store_true", help="overwrite existing files")
        sub.add_argument("--config", default=None, metavar="FILE.toml",
                         help="read the parameters from a TOML file (keys are the flag names, "
                              "e.g. scheme = \"ternary\", a-bits = 8; at the top level or "
                              f"under [{name}]); flags given on the command line win")
        # Flags the kind requires may come from the config file instead: checked in run().
        required = {a.dest: a.option_strings[0] for a in sub._actions
                    if a.required and a.option_strings}
        for action in sub._actions:
            action.required = action.required and not action.option_strings
        defaults = {a.dest: a.default for a in sub._actions
                    if a.option_strings and a.dest != "help"}
        types = {a.dest: a.type for a in sub._actions if a.option_strings and a.dest != "help"}
        sub.set_defaults(func=run, required_flags=required, flag_defaults=defaults,
                         flag_types=types)


def apply_config(args) -> None:
    """Fill the flags not given on the command line from ``--config``; check required flags.

    A flag counts as given when its value differs from its default.
    """
    names = {dest: "--" + dest.replace("_", "-") for dest in args.flag_defaults}
    config = {}
    if args.config is not None:
        path = Path(args.config)
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"config file {str(path)!r} not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        section = table.get(args.kind, {})
        if not isinstance(section, dict):
            raise UsageError(f"[{args.kind}] in {str(path)!r} must be a table")
        config = {k: v for k, v in table.items() if not isinstance(v, dict)} | section
    for key, value in config.items():
        dest = key.replace("-", "_")
        if dest not in names or dest in ("config", "force", "output"):
            allowed = ", ".join(sorted(f[2:] for d, f in names.items()
                                       if d not in ("config", "force", "output")))
            raise UsageError(f"unknown key {key!r} in {str(args.config)!r}; allowed: {allowed}")
        if getattr(args, dest) == args.flag_defaults[dest]:
            setattr(args, dest, _config_value(args, key, dest, value))
    missing = [flag for dest, flag in args.required_flags.items() if getattr(args, dest) is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} needed (as flags or in --config FILE.toml)")


def _config_value(args, key: str, dest: str, value):
    """A value of the config file, checked as its flag is: an integer for a number flag
    (true, 8.5 or "8" are refused), a string for the others, then the flag's own check."""
    kind = args.flag_types.get(dest)
    where = f"{key} = {value!r} in {str(args.config)!r}"
    if getattr(kind, "__name__", "") in ("integer", "power of two"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: must be an integer")
    elif not isinstance(value, str):
        raise UsageError(f"{where}: must be a string")
    if kind is None:
        return value
    try:
        return kind(str(value))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{where}: {exc}") from None


def run(args) -> int:
    apply_config(args)
    parameters = KINDS[args.kind].parameters(args)
    module = args.module or default_module(args.kind, args.scheme)
    if module is not None:
        check_outputs(args.output, [f"{module}.v", f"{module}.json"], force=args.force)
    else:
        check_outputs(args.output, [], force=args.force)
    design = GENERATORS[args.kind](**parameters, module=args.module)
    for path in write_outputs(args.output, design.files, force=args.force):
        print(path)
    return 0
