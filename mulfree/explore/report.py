"""What ``mulfree explore`` writes: ``points.json``, ``pareto.md``, ``pareto.png`` and the
chosen point as a ``mulfree build --config`` file (``chosen.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from mulfree.explore.pareto import logic_of
from mulfree.explore.space import point_name

__all__ = ["write_outputs", "build_config", "markdown_table", "CONFIG_NAME"]

#: The chosen point's ``mulfree build --config`` file in the output folder.
CONFIG_NAME = "chosen.json"


def build_config(point: dict, board: str, model_path) -> dict:
    """The ``mulfree build --config`` options that build ``point``: the one-layer accelerator
    for the model's main layers (``--design accelerator``), which is what was explored."""
    return dict({"board": board, "model": str(Path(model_path).resolve()),
                 "design": "accelerator"}, **point["params"])


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def markdown_table(points: list[dict], logic: str, chosen: dict | None) -> str:
    """The Pareto points as a Markdown table, fastest first; the chosen one in bold."""
    front = sorted((p for p in points if p["pareto"]), key=lambda p: -p["images_per_s"])
    lines = [f"| point | images/s | cycles/image | utilisation | {logic} | block RAM | "
             "energy/image (nJ) | fmax (MHz) |", "|---|---|---|---|---|---|---|---|"]
    for p in front:
        name = point_name(p["params"])
        if p is chosen:
            name = f"**{name}** (chosen)"
        e = p["estimate"]
        lines.append(f"| {name} | {p['images_per_s']:,.1f} | {e['cycles']:,} | "
                     f"{e['utilisation']:.1%} | {logic_of(p):,} | {p['area']['brams']} | "
                     f"{p['energy_nj']:,.1f} | {_fmt(p['fmax_mhz'], '.1f')} |")
    return "\n".join(lines) + "\n"


def _plot(points: list[dict], logic: str, chosen: dict | None, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fitting = [p for p in points if p["status"] in ("ok", "cached") and p["fits"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if fitting:
        sc = ax.scatter([logic_of(p) for p in fitting], [p["images_per_s"] for p in fitting],
                        c=[p["energy_nj"] for p in fitting], cmap="viridis", s=28,
                        label="fits")
        fig.colorbar(sc, ax=ax, label="energy per image (nJ)")
    front = sorted((p for p in points if p["pareto"]), key=logic_of)
    if front:
        ax.plot([logic_of(p) for p in front], [p["images_per_s"] for p in front], "o",
                mfc="none", mec="red", ms=11, label="Pareto front")
    if chosen is not None:
        ax.annotate(point_name(chosen["params"]), (logic_of(chosen), chosen["images_per_s"]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("logic cells" if logic == "lcs" else "LUT4")
    ax.set_ylabel("images / s")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(folder: Path, points: list[dict], *, board: str, model_path, logic: str,
                  chosen: dict | None, objective: str, space: dict) -> None:
    """Write every output into ``folder`` (a staged folder: all or nothing)."""
    document = {"board": board, "model": str(model_path), "objective": objective,
                "space": space, "points": points,
                "chosen": None if chosen is None else points.index(chosen)}
    (folder / "points.json").write_text(json.dumps(document, indent=1) + "\n")
    title = f"{Path(model_path).name} on {board}: {sum(p['pareto'] for p in points)} " \
            f"Pareto points of {len(points)}"
    head = f"# Pareto front: {title}\n\nObjective: {objective}.\n\n"
    (folder / "pareto.md").write_text(head + markdown_table(points, logic, chosen))
    _plot(points, logic, chosen, title, folder / "pareto.png")
    if chosen is not None:
        (folder / CONFIG_NAME).write_text(
            json.dumps(build_config(chosen, board, model_path), indent=2) + "\n")
