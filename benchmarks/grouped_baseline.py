"""Grouped and depthwise layers on today's array, each group run as a layer of its own.

The array runs ``groups = 1``; until groups are mapped onto it, a grouped layer can only run
as ``G`` separate layers of ``C / G`` channels and ``M / G`` filters. This prints what that
costs -- cycles and utilisation from ``sim.cycle_model`` (``choose_mapping`` and ``predict``
of one group, times ``G``) -- for the grouped layers of mobilenet_tiny (digits, 8 x 8) and of
MobileNet v1 and ShuffleNet v1 (224 x 224), next to the pointwise layers that follow them:
the baseline a group mapping has to beat (Eyeriss v2: a depthwise layer has no reduction
over channels to spread over the PE rows, so a plain row-stationary array starves).

    python benchmarks/grouped_baseline.py                    # 3x4 and 12x14 arrays
    python benchmarks/grouped_baseline.py --arrays 6x8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import nets  # noqa: E402
from model import layers as L  # noqa: E402
from sim.cycle_model import ArrayParams, LayerShape, predict, utilisation_breakdown  # noqa: E402
from sim.energy_presets import NETWORKS  # noqa: E402


def mobilenet_tiny_shapes():
    """(name, LayerShape) of mobilenet_tiny's convolutions on 8 x 8 digits."""
    net = nets.build("mobilenet_tiny", (1, 8, 8), pixel_max=16)
    shape, out = (1, 8, 8), []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, L.Conv2d):
            kind = "dw" if layer.groups > 1 else ("pw" if layer.kernel == (1, 1) else "conv")
            w = layer.params["weight"].shape
            out.append((f"{kind}{len(out) + 1}",
                        LayerShape.of(w, shape, layer.stride, layer.padding, layer.groups)))
            shape = layer.output_shape(shape)
    return out


def preset_shapes(name: str, layer_names):
    found = {ly.name: ly for ly in NETWORKS[name]}
    return [(n, LayerShape(found[n].M, found[n].C, found[n].R, found[n].S, found[n].H,
                           found[n].W, found[n].stride, found[n].padding, found[n].groups))
            for n in layer_names]


def one_group(s: LayerShape) -> LayerShape:
    return LayerShape(s.M // s.groups, s.C // s.groups, s.R, s.S, s.H, s.W, s.stride,
                      s.padding)


def row(label: str, s: LayerShape, params: ArrayParams) -> str:
    g = one_group(s)
    pred = predict(g, params)
    parts = utilisation_breakdown(g, params, pred["mapping"])
    cycles = s.groups * pred["cycles"]
    macs = s.groups * pred["macs"]
    mp = pred["mapping"]
    return (f"| {label} | {params.rows}x{params.cols} | {s.groups} | "
            f"[{s.M // s.groups}, {s.C // s.groups}, {s.R}, {s.S}] on {s.H}x{s.W}, "
            f"stride {s.stride} | "
            f"{mp.q}, {mp.p}, {mp.Fseg} | {cycles:,} | "
            f"{macs / (params.macs_per_cycle * cycles):.1%} "
            f"| {parts['row_fill']:.0%} | {parts['col_fill']:.0%} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", nargs="+", default=["3x4", "12x14"])
    args = parser.parse_args(argv)
    arrays = [ArrayParams(*(int(v) for v in a.split("x")[:2])) for a in args.arrays]
    cases = [("mobilenet_tiny", mobilenet_tiny_shapes()),
             ("mobilenet_v1", preset_shapes("mobilenet_v1", ["dw2", "pw2", "dw6", "pw6",
                                                             "dw14", "pw14"])),
             ("shufflenet_v1", preset_shapes("shufflenet_v1", [
                 "stage3_2_gconv1", "stage3_2_dw", "stage3_2_gconv2"]))]
    lines = ["| layer | array | groups | one group | mapping of a group (q, p, F') | "
             "cycles (all groups) | utilisation | row fill | column fill |",
             "|---|---|---:|---|---|---:|---:|---:|---:|"]
    for params in arrays:
        for net, shapes in cases:
            for name, s in shapes:
                lines.append(row(f"{net} {name}", s, params))
                print(lines[-1], file=sys.stderr)
    print("\n".join(lines))
    print("\nutilisation = MACs / (PEs x lanes x cycles); row fill = reduction units (channel "
          "words x filter rows of a group) over the PE rows of all row folds; column fill = "
          "output rows over the PE columns of all column folds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
