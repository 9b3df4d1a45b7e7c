"""Dataflow energy: the Eyeriss comparison, its sensitivity, nn_dataflow, schemes and lanes.

1. ``comparison``: AlexNet, 256 PEs, batch 16, equal storage area (Chen, Emer, Sze, ISCA
   2016) -- energy of each of the paper's dataflows relative to RS in the CONV and the FC
   layers, with the normalised and the 45 nm cost tables, beside the published range; the
   two named alternatives; the energy per MAC by storage level (the paper's breakdown).
2. ``sensitivity``: how each ratio moves with the RF/buffer area ratio, the batch size and
   the PE count.
3. ``agreement``: RS on AlexNet CONV1-5 against nn_dataflow's Eyeriss reproduction, layer by
   layer (nn_dataflow's figures: ``NN_DATAFLOW`` below, or ``--nn-dataflow-json`` for a
   fresh run of its search tool).
4. ``schemes``: energy per inference of the seed's MNIST networks on our own accelerator (its
   counters, ``sim.cycle_model``, equal to the RTL's) by product scheme, at 45 nm.
5. ``lanes``: compute energy of the multiplier-free schemes against int8 on a PE of 1 to 32
   lanes (a reduction tree shares the accumulator add), over the MNIST network.

Weights of sections 4 and 5 are seeded Gaussian draws quantized by ``model.quant`` (TWN for
ternary, INQ for the five levels): their zeros are what the skipping units skip.

    python benchmarks/energy.py                      # every section; plots into out/energy/
    python benchmarks/energy.py --only comparison,sensitivity
    python benchmarks/energy.py --rows 3 --cols 4    # sections 4 and 5 on the 3 x 4 array
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import deploy, quant  # noqa: E402
from sim import energy  # noqa: E402
from sim.cycle_model import ArrayParams  # noqa: E402
from sim.energy_presets import network  # noqa: E402
from sim.run_layer import lanes_for_words  # noqa: E402

SECTIONS = ("comparison", "sensitivity", "agreement", "schemes", "lanes")
PAPER = {"conv": "1.4x to 2.5x", "fc": "at least 1.3x"}
OTHERS = tuple(df for df in energy.PAPER_DATAFLOWS if df != "rs")
#: nn_dataflow (stanford-mast/nn_dataflow, commit 198a527) on AlexNet at batch 16, 16 x 16
#: PEs, 512 B RF, 128 kB buffer, costs 200/6/2/1 and MAC 1: each CONV layer's cost (its two
#: halves summed). How it was run: docs/energy.md.
NN_DATAFLOW = {"conv1": 10_600_233_216, "conv2": 19_984_158_720, "conv3": 13_825_118_208,
               "conv4": 10_422_312_960, "conv5": 6_835_736_576}


def _labels(names) -> str:
    return " | ".join(energy.DATAFLOWS[df].label for df in names)


def _ratio_row(report, kind: str, names) -> str:
    r = report.ratios(kind)
    return " | ".join(f"{r[df]:.2f}" for df in names)


def section_comparison(out: Path) -> list[str]:
    lines = ["## AlexNet: energy of each dataflow relative to RS (256 PEs, batch 16, equal "
             "storage area)", "",
             f"| cost table | layers | {_labels(OTHERS)} | paper (RS better by) |",
             "|---|---|" + "---|" * len(OTHERS) + "---|"]
    reports = {}
    for costs in energy.COST_TABLES:
        t = time.process_time()
        rep = energy.network_energy("alexnet", batch=16, pes=256, costs=costs)
        reports[costs] = (rep, time.process_time() - t)
        for kind in ("conv", "fc"):
            lines.append(f"| {costs} | {kind.upper()} | {_ratio_row(rep, kind, OTHERS)} | "
                         f"{PAPER[kind]} |")
        energy.plot_dataflows(rep, out / f"alexnet_dataflows_{costs}.png", force=True)
    alternatives = ("ws_array", "os_any")
    alt = energy.network_energy("alexnet", batch=16, pes=256,
                                dataflows=("rs",) + alternatives)
    lines += ["", "The named alternatives (normalised table): " + "; ".join(
        f"{kind.upper()} " + ", ".join(f"{energy.DATAFLOWS[df].label} "
                                        f"{alt.ratios(kind)[df]:.2f}" for df in alternatives)
        for kind in ("conv", "fc")) + ".", "",
              "Energy per MAC by level (normalised table), the storage each dataflow gets, "
              "and the level it spends most on:", "",
              "| dataflow | RF B/PE | buffer kB | layers | DRAM | buffer | array | RF | ALU "
              "| total | most |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    rep = reports["normalized"][0]
    for df, d in rep.dataflows.items():
        for kind in ("conv", "fc"):
            lt, macs = d.level_totals(kind), d.macs(kind)
            most = max(energy.LEVELS, key=lt.get)
            lines.append(f"| {energy.DATAFLOWS[df].label} | {d.hardware.rf_bytes} | "
                         f"{d.hardware.glb_bytes / 1024:.0f} | {kind.upper()} | " + " | ".join(
                             f"{lt[lv] / macs:.2f}" for lv in energy.ENERGY_LEVELS)
                         + f" | {d.total_of(kind) / macs:.2f} | {most} |")
    kept = [f"{energy.DATAFLOWS[df].label} {le.layer.name}" for df, d in rep.dataflows.items()
            for le in d.layers if not le.mapping.get("stationary_kept", True)]
    lines += ["", "Layers where no legal mapping keeps the dataflow's stationary data (the "
                  "buffer cannot hold what a complete accumulation reads): "
              + (", ".join(kept) or "none") + ".",
              "", "Least-energy mapping per layer (normalised table):", ""]
    for df in ("rs", "ws"):
        for le in rep.dataflows[df].layers:
            lines.append(f"- {energy.DATAFLOWS[df].label} {le.layer.name}: "
                         f"{energy.describe(le.mapping)}")
    lines += ["", f"(search time: {reports['normalized'][1]:.1f} s CPU for the six "
                  f"dataflows and eight layers)"]
    return lines


def section_sensitivity() -> list[str]:
    lines = ["## How robust the comparison is (AlexNet, normalised table; one setting varied "
             "from 256 PEs, batch 16, RF/buffer area 1.6)", "",
             f"| setting | CONV: {_labels(OTHERS)} | FC: {_labels(OTHERS)} | CONV in band |",
             "|---|" + "---|" * (2 * len(OTHERS)) + "---|"]
    rows = ([("RF/buffer area", r, {"rf_area_ratio": r}) for r in (1.0, 1.6, 2.0, 4.0)]
            + [("batch", b, {"batch": b}) for b in (1, 4, 16, 64)]
            + [("PEs", p, {"pes": p}) for p in (64, 256, 1024)])
    for name, value, kw in rows:
        rep = energy.network_energy("alexnet", **{"batch": 16, "pes": 256, **kw})
        conv = rep.ratios("conv")
        band = sum(1.395 <= conv[df] <= 2.545 for df in OTHERS)
        lines.append(f"| {name} {value:g} | {_ratio_row(rep, 'conv', OTHERS)} | "
                     f"{_ratio_row(rep, 'fc', OTHERS)} | {band} of {len(OTHERS)} |")
    return lines


def _nn_dataflow_figures(path: str | None) -> tuple[dict, str]:
    if path is None:
        return NN_DATAFLOW, "recorded (NN_DATAFLOW)"
    data = json.loads(Path(path).read_text())
    out = {}
    for name, sched in data["schedules"].items():
        if name.startswith("conv"):
            key = name.split("_")[0]
            out[key] = out.get(key, 0) + sched[0]["cost"]
    return out, path


def section_agreement(nn_json: str | None) -> list[str]:
    ref, source = _nn_dataflow_figures(nn_json)
    rep = energy.network_energy("alexnet", batch=16, pes=256, dataflows=("rs",))
    ours = {le.layer.name: le.total for le in rep.dataflows["rs"].layers}
    lines = ["## RS against nn_dataflow (AlexNet CONV, batch 16, 256 PEs, 512 B RF, 128 kB, "
             f"costs 200/6/2/1; nn_dataflow: {source})", "",
             "| layer | ours | nn_dataflow | ours / nn_dataflow |", "|---|---|---|---|"]
    for name in sorted(ref):
        lines.append(f"| {name} | {ours[name]:.4g} | {ref[name]:.4g} | "
                     f"{ours[name] / ref[name]:.3f} |")
    total_ours = sum(ours[n] for n in ref)
    total_ref = sum(ref.values())
    lines.append(f"| CONV1-5 | {total_ours:.4g} | {total_ref:.4g} | "
                 f"{total_ours / total_ref:.3f} |")
    return lines


def _weights(layer, scheme: energy.Scheme, rng) -> np.ndarray | None:
    """Seeded Gaussian weights quantized to the scheme's codes (only zeros matter here)."""
    if scheme.name not in ("ternary", "pow2"):
        return None
    w = rng.normal(0.0, np.sqrt(2.0 / (layer.C * layer.R * layer.S)),
                   size=(layer.M, layer.C, layer.R, layer.S))
    q = quant.ternarize(w) if scheme.name == "ternary" else quant.quantize_pow2(w)
    return q.codes


def _array_for(sc, params: ArrayParams) -> ArrayParams:
    """The array a layer of scheme ``sc`` runs on: ``xnor`` words of ``a_bits`` channels on
    PEs of that many lanes (one word per slot), the other schemes on ``params``' PEs."""
    if sc.name != "xnor":
        return params
    return dataclasses.replace(params, lanes=lanes_for_words(sc.a_bits, params.lanes))


def _on_array(layers, schemes: dict, params: ArrayParams, rng) -> list:
    """LayerEnergy (45 nm) of each layer on our accelerator, one image."""
    counters = {}
    for ly in layers:
        sc = schemes[ly.name]
        counters[ly.name] = energy.shape_counters(ly, _array_for(sc, params), scheme=sc,
                                                  weights=_weights(ly, sc, rng))
    widest = max(schemes[ly.name].layer_acc_bits(ly) for ly in layers)
    glb_words = max(k["offchip_words"] for k in counters.values())
    out = []
    for ly in layers:
        sc = schemes[ly.name]
        hw = energy.array_hardware(_array_for(sc, params), scheme=sc, acc_bits=widest,
                                   glb_words=glb_words)
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


SCHEMES = [
    ("int8 multiplier", energy.Scheme("int", 8, 8)),
    ("binary (W1 A8)", energy.Scheme("binary", 8)),
    ("ternary (W2 A8)", energy.Scheme("ternary", 8)),
    ("five-level (W3 A8)", energy.Scheme("pow2", 8)),
    ("DoReFa W1A3", energy.Scheme("dorefa", 3, 1)),
]


def _scheme_results(net: str, params: ArrayParams) -> dict:
    layers = network(net)
    rng = np.random.default_rng(0)
    results = {label: _on_array(layers, {ly.name: sc for ly in layers}, params, rng)
               for label, sc in SCHEMES}
    results["BinaryNet (binary conv1, XNOR after)"] = _on_array(
        layers, _binarynet_schemes(layers), params, rng)
    return results


def section_schemes(out: Path, params: ArrayParams) -> list[str]:
    lines = []
    for net in ("mnist", "digits"):
        results = _scheme_results(net, params)
        base = results["int8 multiplier"]
        base_c = sum(le.energy["alu"] for le in base)
        base_t = sum(le.total for le in base)
        lines += [f"## {net}: energy per inference on our {params.rows}x{params.cols} array "
                  f"(scalar PEs), 45 nm", "",
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
        energy.plot_schemes(results, out / f"{net}_schemes.png", unit="pJ", force=True,
                            title=f"{net}: energy per inference on a {params.rows}x"
                                  f"{params.cols} array (45 nm)")
        lines.append("")
    return lines


def section_lanes(params: ArrayParams) -> list[str]:
    layers = network("mnist")
    results = _scheme_results("mnist", params)
    labels = [label for label, _ in SCHEMES]

    def compute(label, lanes):
        sc = dict(SCHEMES)[label]
        return sum((le.macs - le.skipped) * energy.mac_pj(sc, le.acc_bits, lanes,
                                                            channels=ly.C)
                   for ly, le in zip(layers, results[label]))

    macs = sum(le.macs for le in results["int8 multiplier"])
    lines = ["## Compute energy on a PE of `lanes` lanes (mnist, 45 nm): int8 / scheme", "",
             "| lanes | int8 (pJ per MAC) | " + " | ".join(labels[1:]) + " | binary >= 5x |",
             "|---|---|" + "---|" * (len(labels) - 1) + "---|"]
    for lanes in (1, 2, 4, 8, 16, 32):
        int8 = compute(labels[0], lanes)
        ratios = [int8 / compute(label, lanes) for label in labels[1:]]
        lines.append(f"| {lanes} | {int8 / macs:.3f} | "
                     + " | ".join(f"{r:.2f}x" for r in ratios)
                     + f" | {'met' if ratios[0] >= 5 else 'not met'} |")
    acc = results["binary (W1 A8)"][1].acc_bits
    parts = {lab: energy.compute_pj(dict(SCHEMES)[lab], acc, 8)
             for lab in ("int8 multiplier", "binary (W1 A8)")}
    lines += ["", f"Per MAC at 8 lanes, {acc}-bit accumulator (conv2), pJ: " + "; ".join(
        f"{lab}: product {p['product']:.3f}, tree {p['tree']:.3f}, accumulator "
        f"{p['accumulate']:.4f}" for lab, p in parts.items()) + "."]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/energy", help="folder for the plots")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections (default all: {','.join(SECTIONS)})")
    parser.add_argument("--rows", type=int, default=12, help="array rows for sections 4, 5")
    parser.add_argument("--cols", type=int, default=14, help="array columns for sections 4, 5")
    parser.add_argument("--nn-dataflow-json", default=None, metavar="F",
                        help="output of nn_dataflow's nn_dataflow_search.py for alex_net "
                             "(default: the recorded figures)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; allowed: {', '.join(SECTIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = ArrayParams(rows=args.rows, cols=args.cols)
    makers = {"comparison": lambda: section_comparison(out),
              "sensitivity": section_sensitivity,
              "agreement": lambda: section_agreement(args.nn_dataflow_json),
              "schemes": lambda: section_schemes(out, params),
              "lanes": lambda: section_lanes(params)}
    for name in SECTIONS:
        if name in only:
            print("\n".join(makers[name]()), end="\n\n", flush=True)
    print(f"plots in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
