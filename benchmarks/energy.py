"""Dataflow energy: RS against WS/OS/NLR on AlexNet, and the seed's MNIST networks by scheme.

1. The Eyeriss comparison (ISCA 2016): AlexNet, 256 PEs, equal storage area, batch 16 --
   energy of each dataflow relative to RS for the CONV and the FC layers, with the
   normalised and the 45 nm cost tables, next to the published range; and how the result
   moves with the one figure we had to assume (RF area per byte / buffer area per byte).
2. Energy per inference of the seed's MNIST networks (28 x 28 MNIST and 8 x 8 digits) on
   our own accelerator (its row-stationary mapping and counters, ``sim.cycle_model``,
   equal to the RTL's), by product scheme, at 45 nm: compute against data movement, and the
   goal -- multiplier-free compute energy at least 5x below the int8 multiplier's for the
   binary and ternary layers -- with the total ratio.

Weights of section 2 are seeded Gaussian draws quantized by ``model.quant`` (TWN for
ternary, INQ for the five levels): their zeros are what the skipping units skip. A trained
model has its own zero fraction (``mulfree energy --network MODEL.npz`` uses it).

    python benchmarks/energy.py                      # tables; plots into out/energy/
    python benchmarks/energy.py --rows 3 --cols 4    # section 2 on the 3 x 4 array
    python benchmarks/energy.py --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import deploy, quant  # noqa: E402
from sim import energy  # noqa: E402
from sim.cycle_model import ArrayParams  # noqa: E402
from sim.energy_presets import network  # noqa: E402

PAPER = {"conv": "1.4x to 2.5x", "fc": "at least 1.3x"}

#: (label, scheme of the hidden layers) for section 2; BinaryNet is handled apart.
SCHEMES = [
    ("int8 multiplier", energy.Scheme("int", 8, 8)),
    ("binary (W1 A8)", energy.Scheme("binary", 8)),
    ("ternary (W2 A8)", energy.Scheme("ternary", 8)),
    ("five-level (W3 A8)", energy.Scheme("pow2", 8)),
    ("DoReFa W1A3", energy.Scheme("dorefa", 3, 1)),
]


def section_alexnet(out: Path) -> list[str]:
    lines = ["## AlexNet: energy of each dataflow relative to RS (256 PEs, batch 16, "
             "equal storage area)", ""]
    lines += ["| cost table | layers | WS / RS | OS / RS | NLR / RS | paper (RS better by) |",
              "|---|---|---|---|---|---|"]
    reports = {}
    for costs in energy.COST_TABLES:
        t = time.process_time()
        rep = energy.network_energy("alexnet", batch=16, pes=256, costs=costs)
        reports[costs] = (rep, time.process_time() - t)
        for kind in ("conv", "fc"):
            r = rep.ratios(kind)
            lines.append(f"| {costs} | {kind.upper()} | {r['ws']:.2f} | {r['os']:.2f} | "
                         f"{r['nlr']:.2f} | {PAPER[kind]} |")
        energy.plot_dataflows(rep, out / f"alexnet_dataflows_{costs}.png")
    lines += ["", "Energy per MAC by level (normalised table, CONV / FC layers):", "",
              "| dataflow | RF B/PE | GLB KB | layers | DRAM | GLB | array | RF | ALU | total |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rep = reports["normalized"][0]
    for df, d in rep.dataflows.items():
        for kind in ("conv", "fc"):
            lt, macs = d.level_totals(kind), d.macs(kind)
            lines.append(f"| {df.upper()} | {d.hardware.rf_bytes} | "
                         f"{d.hardware.glb_bytes / 1024:.0f} | {kind.upper()} | " + " | ".join(
                             f"{lt[lv] / macs:.2f}" for lv in energy.ENERGY_LEVELS)
                         + f" | {d.total_of(kind) / macs:.2f} |")
    lines += ["", "Sensitivity to the assumed RF/buffer area per byte (normalised table):", "",
              "| RF area / buffer area per byte | GLB of WS, OS (KB) | CONV: WS, OS, NLR "
              "/ RS | FC: WS, OS, NLR / RS |", "|---|---|---|---|"]
    for ratio in (1.0, 2.0, 4.0):
        r = energy.network_energy("alexnet", batch=16, pes=256, rf_area_ratio=ratio)
        conv, fc = r.ratios("conv"), r.ratios("fc")
        lines.append(f"| {ratio:g} | {r.dataflows['ws'].hardware.glb_bytes / 1024:.0f} | "
                     + ", ".join(f"{conv[d]:.2f}" for d in ("ws", "os", "nlr")) + " | "
                     + ", ".join(f"{fc[d]:.2f}" for d in ("ws", "os", "nlr")) + " |")
    lines += ["", "Least-energy RS mapping per layer (normalised table):", ""]
    for le in rep.dataflows["rs"].layers:
        lines.append(f"- {le.layer.name}: {le.to_dict()['mapping']}")
    lines += ["", f"(search time: {reports['normalized'][1]:.1f} s CPU for the four "
                  f"dataflows and eight layers)"]
    return lines


def _weights(layer, scheme: energy.Scheme, rng) -> np.ndarray | None:
    """Seeded Gaussian weights quantized to the scheme's codes (only zeros matter here)."""
    if scheme.name not in ("ternary", "pow2"):
        return None
    cin = layer.C // (scheme.a_bits if scheme.name == "xnor" else 1)
    w = rng.normal(0.0, np.sqrt(2.0 / (cin * layer.R * layer.S)),
                   size=(layer.M, cin, layer.R, layer.S))
    q = quant.ternarize(w) if scheme.name == "ternary" else quant.quantize_pow2(w)
    return q.codes


def _on_array(layers, schemes: dict, params: ArrayParams, rng) -> list:
    """LayerEnergy (45 nm) of each layer on our accelerator, one image."""
    counters = {}
    for ly in layers:
        sc = schemes[ly.name]
        counters[ly.name] = energy.shape_counters(ly, params, scheme=sc,
                                                  weights=_weights(ly, sc, rng))
    widest = max(schemes[ly.name].layer_acc_bits(ly) for ly in layers)
    glb_words = max(k["offchip_words"] for k in counters.values())
    out = []
    for ly in layers:
        sc = schemes[ly.name]
        hw = energy.array_hardware(params, scheme=sc, acc_bits=widest, glb_words=glb_words)
        out.append(energy.array_energy(ly, counters[ly.name], hw, scheme=sc, costs="45nm"))
    return out


def _binarynet_schemes(layers) -> dict:
    """BinaryNet as deployed: binary weights on the 8-bit pixels, XNOR-popcount after."""
    out = {}
    for i, ly in enumerate(layers):
        if i == 0:
            out[ly.name] = energy.Scheme("binary", 8)
        else:
            lanes = deploy.xnor_lanes(ly.C)
            out[ly.name] = energy.Scheme("xnor", lanes, lanes)
    return out


def section_schemes(out: Path, params: ArrayParams) -> list[str]:
    lines = []
    for net in ("mnist", "digits"):
        layers = network(net)
        rng = np.random.default_rng(0)
        results = {}
        for label, sc in SCHEMES:
            results[label] = _on_array(layers, {ly.name: sc for ly in layers}, params, rng)
        results["BinaryNet (binary conv1, XNOR after)"] = _on_array(
            layers, _binarynet_schemes(layers), params, rng)
        base = results["int8 multiplier"]
        base_c = sum(le.energy["alu"] for le in base)
        base_t = sum(le.total for le in base)
        lines += [f"## {net}: energy per inference on our {params.rows}x{params.cols} array, "
                  f"45 nm", "",
                  "| scheme | compute (nJ) | data movement (nJ) | total (nJ) | compute share |"
                  " zero weights | int8 / scheme: compute | int8 / scheme: total |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, les in results.items():
            c = sum(le.energy["alu"] for le in les)
            t = sum(le.total for le in les)
            zeros = sum(le.skipped for le in les) / sum(le.macs for le in les)
            lines.append(f"| {label} | {c / 1e3:.2f} | {(t - c) / 1e3:.1f} | {t / 1e3:.1f} | "
                         f"{100 * c / t:.1f} % | {100 * zeros:.0f} % | {base_c / c:.1f}x | "
                         f"{base_t / t:.1f}x |")
        lines += ["", "Per layer, compute energy of int8 / scheme (goal: >= 5x for binary "
                      "and ternary):", "",
                  "| layer | " + " | ".join(label for label, _ in SCHEMES[1:]) + " |",
                  "|---|" + "---|" * (len(SCHEMES) - 1)]
        for i, ly in enumerate(layers):
            cells = []
            for label, _ in SCHEMES[1:]:
                cells.append(f"{base[i].energy['alu'] / results[label][i].energy['alu']:.1f}x")
            lines.append(f"| {ly.name} | " + " | ".join(cells) + " |")
        for label in ("binary (W1 A8)", "ternary (W2 A8)"):
            c = sum(le.energy["alu"] for le in results[label])
            t = sum(le.total for le in results[label])
            verdict = "met" if base_c / c >= 5 else "NOT met"
            lines.append(f"\nGoal, {label}: compute {base_c / c:.1f}x below int8 "
                         f"(goal 5x: {verdict}); total with data movement {base_t / t:.1f}x.")
        energy.plot_schemes(results, out / f"{net}_schemes.png", unit="pJ",
                            title=f"{net}: energy per inference on a {params.rows}x"
                                  f"{params.cols} array (45 nm)")
        lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/energy", help="folder for the plots")
    parser.add_argument("--rows", type=int, default=12, help="array rows for section 2")
    parser.add_argument("--cols", type=int, default=14, help="array columns for section 2")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = section_alexnet(out)
    lines += [""] + section_schemes(out, ArrayParams(rows=args.rows, cols=args.cols))
    print("\n".join(lines))
    print(f"\nplots in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
