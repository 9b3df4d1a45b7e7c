"""Outputs of the energy model: the table, JSON and plots (files written whole or not at all,
``model.files.atomic_write``; an existing file is replaced only with ``force``)."""

from __future__ import annotations

import json
import os

import numpy as np

from model.files import atomic_write
from sim.energy.costs import ENERGY_LEVELS, cost_table
from sim.energy.network import EnergyReport
from sim.energy.specs import DATA_TYPES, DATAFLOWS

__all__ = ["format_table", "format_runs", "to_json", "write_json", "plot_dataflows",
           "plot_schemes", "fmt"]


def fmt(x: float) -> str:
    """A number for a table: 3 significant digits, exponent form when large or tiny."""
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-2:
        return f"{x:.3e}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.0f}"


def format_table(report: EnergyReport) -> str:
    """Per layer, per dataflow, per level; then totals and the RS ratios by layer kind."""
    levels = ENERGY_LEVELS
    head = ["layer", "dataflow"] + list(levels) + ["total", "per MAC"]
    rows = [head]
    names = [le.layer.name for le in next(iter(report.dataflows.values())).layers]
    for i, lname in enumerate(names):
        for df, d in report.dataflows.items():
            le = d.layers[i]
            rows.append([lname, DATAFLOWS[df].label] + [fmt(le.energy[lv]) for lv in levels]
                        + [fmt(le.total), fmt(le.total / le.macs)])
    for kind in report.kinds():
        for df, d in report.dataflows.items():
            lt = d.level_totals(kind)
            total = d.total_of(kind)
            rows.append([f"all {kind}", DATAFLOWS[df].label] + [fmt(lt[lv]) for lv in levels]
                        + [fmt(total), fmt(total / d.macs(kind))])
    widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
    lines = [f"{report.network}: batch {report.batch}, {report.scheme_label}, "
             f"energy in {report.unit} units"]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if k > 1 else c.ljust(w)
                               for k, (c, w) in enumerate(zip(r, widths))))
    for kind in report.kinds():
        ratios = report.ratios(kind)
        if ratios:
            lines.append(f"{kind.upper()} layers, energy relative to RS: " + ", ".join(
                f"{DATAFLOWS[df].label} {r:.2f}x" for df, r in ratios.items()))
    return "\n".join(lines)


def to_json(report: EnergyReport) -> dict:
    """The report as JSON-ready data: ``dataflows[df]["layers"][layer]`` = total/levels/counts."""
    table = cost_table(report.costs)
    out = {"network": report.network, "batch": report.batch, "costs": table.name,
           "cost_table": {lv: getattr(table, lv) for lv in ENERGY_LEVELS}
           if table.name != "45nm" else "Horowitz 45 nm (see sim.energy.costs)",
           "unit": report.unit,
           "schemes": {n: sc.to_dict() for n, sc in report.schemes.items()},
           "sparsity": report.sparsity, "dataflows": {}, "ratios_to_rs": {}}
    for df, d in report.dataflows.items():
        out["dataflows"][df] = {
            "total": d.total,
            "hardware": d.hardware.to_dict(),
            "description": DATAFLOWS[df].description,
            "layers": {le.layer.name: le.to_dict() for le in d.layers},
        }
    for kind in report.kinds():
        out["ratios_to_rs"][kind] = report.ratios(kind)
    return out


def write_json(report: EnergyReport, path, *, force: bool = False) -> None:
    """``to_json(report)`` as a JSON file (replacing an existing one only with ``force``)."""
    data = to_json(report)
    with atomic_write(path, force=force, mode="w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


_LEVEL_COLOURS = {"dram": "#4c72b0", "glb": "#55a868", "array": "#c44e52", "rf": "#8172b2",
                  "alu": "#ccb974"}
_TYPE_COLOURS = {"inputs": "#4c72b0", "weights": "#55a868", "psums": "#c44e52",
                 "compute": "#ccb974"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_dataflows(report: EnergyReport, path, *, force: bool = False) -> None:
    """Stacked bars of energy per MAC by level and by data type, per dataflow and layer kind."""
    plt = _pyplot()
    kinds = report.kinds()
    fig, axes = plt.subplots(2, len(kinds), figsize=(5 * len(kinds), 7), squeeze=False)
    names = list(report.dataflows)
    for col, kind in enumerate(kinds):
        for row, (parts, colours, getter) in enumerate((
                (ENERGY_LEVELS, _LEVEL_COLOURS, "level_totals"),
                (DATA_TYPES + ("compute",), _TYPE_COLOURS, "type_totals"))):
            ax = axes[row][col]
            bottom = np.zeros(len(names))
            for part in parts:
                vals = np.array([getattr(report.dataflows[n], getter)(kind)[part]
                                 / report.dataflows[n].macs(kind) for n in names])
                ax.bar([DATAFLOWS[n].label for n in names], vals, bottom=bottom, label=part,
                       color=colours[part])
                bottom += vals
            ax.set_title(f"{report.network} {kind.upper()} layers, by "
                         f"{'level' if row == 0 else 'data type'}")
            ax.set_ylabel(f"energy per MAC ({report.unit})")
            ax.legend(fontsize="small")
    fig.suptitle(f"batch {report.batch}, {report.scheme_label}, "
                 f"{next(iter(report.dataflows.values())).hardware.pes} PEs")
    fig.tight_layout()
    _save(fig, path, force)
    plt.close(fig)


def _image_format(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return ext or "png"


def _save(fig, path, force: bool) -> None:
    """The figure as an image file of ``path``'s type (no extension: PNG)."""
    with atomic_write(path, force=force) as f:
        fig.savefig(f, format=_image_format(path), dpi=110)


def plot_schemes(results: dict, path, *, unit: str = "pJ", title: str = "",
                 force: bool = False) -> None:
    """Stacked bars of energy per inference by scheme: data movement and compute.

    ``results`` maps a scheme label to the ``LayerEnergy`` list of one inference (or of a
    batch: each layer's energy is divided by its ``batch``).
    """
    plt = _pyplot()
    labels = list(results)
    compute = np.array([sum(le.energy["alu"] / le.batch for le in results[k]) for k in labels])
    movement = np.array([sum(le.data_movement / le.batch for le in results[k])
                         for k in labels])
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 3, 4.2))
    ax.bar(labels, movement, label="data movement", color=_LEVEL_COLOURS["dram"])
    ax.bar(labels, compute, bottom=movement, label="compute", color=_LEVEL_COLOURS["alu"])
    for i, (c, m) in enumerate(zip(compute, movement)):
        ax.annotate(f"{100 * c / (c + m):.1f}% compute", (i, c + m), ha="center",
                    va="bottom", fontsize="small")
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend()
    fig.tight_layout()
    _save(fig, path, force)
    plt.close(fig)


def _columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                                for k, (c, w) in enumerate(zip(r, widths)))).rstrip()
            for r in rows]


def format_runs(runs: list) -> str:
    """What ran (``sim.energy.runs.RunEnergy``), per layer and per level, beside the model."""
    if not runs:
        return ""
    unit = runs[0].unit
    lines = []
    for run in runs:
        ly, sc = run.layer, run.scheme
        mp = ", ".join(f"{k}={v}" for k, v in run.mapping.items())
        grouped = f", groups {ly.groups}" if ly.groups > 1 else ""
        lines.append(f"{ly.name}: {sc.label} [{ly.M},{ly.C // ly.groups},{ly.R},{ly.S}] on "
                     f"[{ly.C},{ly.H},{ly.W}], stride {ly.stride}, padding {ly.padding}"
                     f"{grouped}; "
                     f"array {run.array[0]}x{run.array[1]}, mapping {mp}; accumulator "
                     f"{run.ran_energy.acc_bits} bits")
        rows = [["counter", "ran", "model", ""]]
        for name in run.ran:
            same = run.ran[name] == run.model[name]
            rows.append([name, str(run.ran[name]), str(run.model[name]),
                         "" if same else f"differs by {run.ran[name] - run.model[name]:+d}"])
        lines += _columns(rows)
        lines += _level_rows(run.ran_energy, run.model_energy, unit)
        lines.append(f"  counters equal the model: {'yes' if run.counters_equal else 'NO'}")
    if len(runs) > 1:
        lines.append(f"all {len(runs)} layers ({unit}):")
        ran = sum(r.ran_energy.total for r in runs)
        model = sum(r.model_energy.total for r in runs)
        lines.append(f"  total energy: ran {fmt(ran)}, model {fmt(model)}")
    return "\n".join(lines)


def _level_rows(ran, model, unit: str) -> list[str]:
    rows = [["level", "words ran", "words model", f"ran ({unit})", f"model ({unit})",
             "share"]]
    for lv in ENERGY_LEVELS:
        if lv == "alu":
            words = (f"{ran.macs - ran.skipped:.0f}", f"{model.macs - model.skipped:.0f}")
        else:
            words = (f"{sum(ran.counts[lv].values()):.0f}",
                     f"{sum(model.counts[lv].values()):.0f}")
        rows.append([lv if lv != "alu" else "alu (MACs)", *words, fmt(ran.energy[lv]),
                     fmt(model.energy[lv]), f"{100 * ran.energy[lv] / ran.total:.1f} %"])
    rows.append(["total", "", "", fmt(ran.total), fmt(model.total), ""])
    return _columns(rows)
