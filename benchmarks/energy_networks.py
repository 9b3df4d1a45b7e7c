"""The compact networks (MobileNet v1, SqueezeNet 1.0, ShuffleNet v1) in the dataflow energy model.

1. The presets checked against their published totals: layers, MACs and weights of
   ``sim.energy_presets.NETWORKS`` next to the figures of the papers and implementations.
2. Energy of each of the paper's dataflows (``sim.energy.PAPER_DATAFLOWS``) for each
   network -- 256 PEs, batch 16, equal storage area, the Eyeriss set-up of
   ``benchmarks/energy.py`` -- by kind of layer: depthwise (groups = C = M), grouped
   (1 < groups < C), pointwise 1 x 1, other convolutions and dense layers. Per kind: energy
   per MAC of RS, and every other dataflow relative to RS. AlexNet is the reference row.

    python benchmarks/energy_networks.py                  # normalised cost table
    python benchmarks/energy_networks.py --costs 45nm
    python benchmarks/energy_networks.py --networks mobilenet_v1 --batch 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim import energy  # noqa: E402
from sim.energy import PAPER_DATAFLOWS  # noqa: E402
from sim.energy_presets import NETWORKS  # noqa: E402

#: Published totals: (MACs, what they are, weights or parameters, what they are).
PUBLISHED = {
    "mobilenet_v1": (569e6, "569 M mult-adds (Howard et al. 2017)",
                     4.2e6, "4.2 M parameters"),
    "squeezenet1_0": (0.82e9, "0.82 GFLOPS (torchvision, multiply-adds)",
                      1_248_424, "1,248,424 parameters incl. 3,976 biases (torchvision)"),
    "shufflenet_v1": (140e6, "about 140 MFLOPs, 1x g = 3 (Zhang et al. 2018)",
                      1_865_728, "1,865,728 parameters incl. biases and batch norms "
                                 "(imgclsmob)"),
    "alexnet": (724e6, "724 M MACs (Eyeriss, ISCA 2016)", 61e6, "61 M weights"),
}

NETS = ("mobilenet_v1", "squeezenet1_0", "shufflenet_v1", "alexnet")


def layer_kind(layer) -> str:
    """depthwise, grouped, pointwise, conv (every other convolution) or dense."""
    if layer.is_dense:
        return "dense"
    if layer.groups > 1 and layer.groups == layer.C == layer.M:
        return "depthwise"
    if layer.groups > 1:
        return "grouped"
    if layer.R == layer.S == 1:
        return "pointwise"
    return "conv"


def parameter_count(name: str, layers) -> int:
    """What the published parameter count of ``name`` counts, from our layers."""
    weights = sum(ly.weights() for ly in layers)
    if name == "squeezenet1_0":
        return weights + sum(ly.M for ly in layers)                       # + biases
    if name == "shufflenet_v1":
        return weights + layers[-1].M + 2 * sum(ly.M for ly in layers[:-1])  # + bias, BN
    return weights


def section_totals(names) -> list[str]:
    lines = ["## The presets against their published totals", "",
             "| network | layers | MACs | published | weights / parameters | published |",
             "|---|---:|---:|---|---:|---|"]
    for name in names:
        layers = NETWORKS[name]
        macs = sum(ly.macs() for ly in layers)
        pub_macs, macs_text, pub_params, params_text = PUBLISHED[name]
        lines.append(f"| {name} | {len(layers)} | {macs / 1e6:,.1f} M "
                     f"({100 * (macs / pub_macs - 1):+.1f} %) | {macs_text} | "
                     f"{parameter_count(name, layers):,} | {params_text} |")
    return lines


def section_dataflows(names, *, costs: str, batch: int, pes: int) -> list[str]:
    others = [df for df in PAPER_DATAFLOWS if df != "rs"]
    lines = ["", f"## Energy by dataflow ({pes} PEs, batch {batch}, equal storage area, "
                 f"{costs} cost table, 16-bit words)", "",
             "| network | layers | share of MACs | RS energy / MAC | "
             + " | ".join(f"{energy.DATAFLOWS[df].label} / RS" for df in others) + " |",
             "|---|---|---:|---:|" + "---:|" * len(others)]
    for name in names:
        start = time.process_time()
        report = energy.network_energy(name, batch=batch, pes=pes, costs=costs)
        kinds = [k for k in ("depthwise", "grouped", "pointwise", "conv", "dense")
                 if any(layer_kind(ly) == k for ly in NETWORKS[name])]
        rs = report.dataflows["rs"]
        all_macs = rs.macs()
        for kind in kinds + ["all"]:
            def total(df):
                return sum(le.total for le in report.dataflows[df].layers
                           if kind == "all" or layer_kind(le.layer) == kind)
            macs = sum(le.macs for le in rs.layers
                       if kind == "all" or layer_kind(le.layer) == kind)
            base = total("rs")
            lines.append(f"| {name} | {kind} | {100 * macs / all_macs:.1f} % | "
                         f"{base / macs:.2f} | " + " | ".join(
                             f"{total(df) / base:.2f}" for df in others) + " |")
        print(f"# {name}: {time.process_time() - start:.1f} s CPU", file=sys.stderr)
    lines += ["", f"RS energy per MAC in {energy.cost_table(costs).unit} units"
                  + (" (one 16-bit MAC = 1)." if costs == "normalized" else ".")]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETS), choices=list(PUBLISHED))
    parser.add_argument("--costs", default="normalized", choices=energy.COST_TABLES)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pes", type=int, default=256)
    args = parser.parse_args(argv)
    lines = section_totals(args.networks)
    lines += section_dataflows(args.networks, costs=args.costs, batch=args.batch, pes=args.pes)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
