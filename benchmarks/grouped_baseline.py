"""Grouped and depthwise layers on the array: the groups in one run, and one group at a time.

The array runs a grouped layer's groups one after the other in one schedule
(``AcceleratorConfig.groups``: the group is the controller's outermost loop, loads
double-buffered across group changes). This prints, for the grouped layers of mobilenet_tiny
(digits, 8 x 8) and of MobileNet v1 and ShuffleNet v1 (224 x 224), next to the pointwise
layers that follow them, the cycles and utilisation from ``sim.cycle_model`` (equal to the
RTL's, ``tests/hw/test_grouped.py``) of

- the baseline: each group run as a layer of its own (``choose_mapping`` and ``predict`` of
  one group, times ``G``: every group pays its own set-up and drain);
- the grouped layer on the array (``choose_mapping`` and ``predict`` of the whole layer),
  with where its cycles go (``utilisation_breakdown``: stalls are row 0 waiting for loads)
  and the best its mapping allows (``bound``: no stalls).

Eyeriss v2 explains why depthwise layers starve a row-stationary array: one channel per
group leaves only the R filter rows to spread over the PE rows, and each input word serves
few MACs, so the one-word-per-cycle input loads, not the PEs, set the pace. The second table
puts several groups side by side in a word's lanes (``sim.cycle_model.lane_packing``,
``sim.run_layer.pack_groups``: block-diagonal weights) on PEs of 4 and 8 lanes, against one
group per word.

    python benchmarks/grouped_baseline.py                    # 3x4 and 12x14 arrays, both tables
    python benchmarks/grouped_baseline.py --arrays 6x8 --nets mobilenet_tiny --tables lanes
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import nets  # noqa: E402
from model import layers as L  # noqa: E402
from sim.cycle_model import (ArrayParams, LayerShape, choose_mapping, group_shape,  # noqa: E402
                             lane_packing, packed_shape, predict, utilisation_breakdown)
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


def row(label: str, s: LayerShape, params: ArrayParams) -> str:
    g = group_shape(s)
    pred = predict(g, params)
    parts = utilisation_breakdown(g, params, pred["mapping"])
    cycles = s.groups * pred["cycles"]
    macs = s.groups * pred["macs"]
    mp = pred["mapping"]
    grouped = dataclasses.replace(params, groups=s.groups)
    gmp = choose_mapping(s, grouped)
    run = utilisation_breakdown(s, grouped, gmp)
    assert run["macs"] == macs
    return (f"| {label} | {params.rows}x{params.cols} | {s.groups} | "
            f"[{g.M}, {g.C}, {s.R}, {s.S}] on {s.H}x{s.W}, stride {s.stride} | "
            f"{mp.q}, {mp.p}, {mp.Fseg} | {cycles:,} | "
            f"{macs / (params.macs_per_cycle * cycles):.1%} "
            f"| {parts['row_fill']:.0%} | {parts['col_fill']:.0%} "
            f"| {gmp.q}, {gmp.p}, {gmp.Fseg} | {run['cycles']:,} | {run['utilisation']:.1%} "
            f"| {cycles / run['cycles']:.2f}x | {run['stalls'] / run['cycles']:.0%} "
            f"| {run['bound']:.1%} |")


def lanes_row(label: str, s: LayerShape, params: ArrayParams) -> str | None:
    """A grouped layer on PEs of ``params.lanes`` lanes: one group per word, and ``k``
    groups side by side in each word (``lane_packing``; block-diagonal weights). Utilisation
    counts the layer's own MACs only (not the zero weights of the other groups' lanes)."""
    k = lane_packing(s, params.lanes)
    if k == 1:
        return None
    grouped = dataclasses.replace(params, groups=s.groups)
    plain = utilisation_breakdown(s, grouped, choose_mapping(s, grouped))
    packed = packed_shape(s, k)
    mp = choose_mapping(packed, grouped)
    run = utilisation_breakdown(packed, grouped, mp)
    macs, peak = plain["macs"], params.macs_per_cycle
    return (f"| {label} | {params.rows}x{params.cols}x{params.lanes} | {s.groups} | "
            f"{plain['cycles']:,} | {macs / (peak * plain['cycles']):.1%} "
            f"| {plain['stalls'] / plain['cycles']:.0%} | {k} | {mp.q}, {mp.p}, {mp.Fseg} "
            f"| {run['cycles']:,} | {macs / (peak * run['cycles']):.1%} "
            f"| {plain['cycles'] / run['cycles']:.2f}x | {run['stalls'] / run['cycles']:.0%} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", nargs="+", default=["3x4", "12x14"])
    parser.add_argument("--nets", nargs="+", default=["mobilenet_tiny", "mobilenet_v1",
                                                      "shufflenet_v1"],
                        choices=["mobilenet_tiny", "mobilenet_v1", "shufflenet_v1"])
    parser.add_argument("--lanes", nargs="+", type=int, default=[4, 8],
                        help="lanes for the second table (groups side by side in the lanes)")
    parser.add_argument("--tables", choices=["groups", "lanes", "both"], default="both")
    args = parser.parse_args(argv)
    arrays = [ArrayParams(*(int(v) for v in a.split("x")[:2])) for a in args.arrays]
    cases = [("mobilenet_tiny", mobilenet_tiny_shapes()),
             ("mobilenet_v1", preset_shapes("mobilenet_v1", ["dw2", "pw2", "dw6", "pw6",
                                                             "dw14", "pw14"])),
             ("shufflenet_v1", preset_shapes("shufflenet_v1", [
                 "stage3_2_gconv1", "stage3_2_dw", "stage3_2_gconv2"]))]
    cases = [case for case in cases if case[0] in args.nets]
    if args.tables in ("groups", "both"):
        groups_table(arrays, cases)
    if args.tables in ("lanes", "both"):
        lanes_table(arrays, cases, args.lanes)
    return 0


def groups_table(arrays, cases) -> None:
    lines = ["| layer | array | groups | one group | group alone: mapping (q, p, F') | "
             "groups apart: cycles | utilisation | row fill | column fill | on the array: "
             "mapping | cycles | utilisation | speed-up | stalls | bound |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for params in arrays:
        for net, shapes in cases:
            for name, s in shapes:
                lines.append(row(f"{net} {name}", s, params))
                print(lines[-1], file=sys.stderr)
    print("\n".join(lines))
    print("\nutilisation = MACs / (PEs x lanes x cycles); row fill = reduction units (channel "
          "words x filter rows of a group) over the PE rows of all row folds; column fill = "
          "output rows over the PE columns of all column folds; groups apart = each group "
          "run as a layer of its own (G x one group's cycles); on the array = the grouped "
          "layer in one run; speed-up = groups apart / on the array; stalls = share of the "
          "cycles row 0 waits for loads; bound = utilisation without stalls.")


def lanes_table(arrays, cases, lanes) -> None:
    lines = ["| layer | array | groups | one group per word: cycles | utilisation | stalls | "
             "groups per word | mapping (q, p, F') | cycles | utilisation | speed-up | "
             "stalls |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for params in arrays:
        for n in lanes:
            wide = dataclasses.replace(params, lanes=n)
            for net, shapes in cases:
                for name, s in shapes:
                    line = lanes_row(f"{net} {name}", s, wide)
                    if line:
                        lines.append(line)
                        print(line, file=sys.stderr)
    print("\n" + "\n".join(lines))
    print("\nutilisation = the layer's MACs / (PEs x lanes x cycles) (the zero weights on the "
          "other groups' lanes not counted); groups per word = sim.cycle_model.lane_packing; "
          "speed-up = one group per word / groups side by side.")


if __name__ == "__main__":
    sys.exit(main())
