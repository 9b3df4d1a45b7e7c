"""Our accelerator: what each of its counters moves, and the energy of what it ran.

This is the one module that knows the accelerator's counters (``sim.cycle_model.COUNTERS``,
the names the RTL reports and ``mulfree run-layer`` writes to OUT.npz). ``COUNTER_USE`` says,
for each counter, the storage level it prices and how its count divides among the data
types; the rest of the energy model sees only counts per level and data type. When the
array changes (lanes, shared filter scratchpads, partial sums passed accumulator to
accumulator), this table, ``array_hardware`` (the scratchpads a PE has) and ``run_lanes``
are what change.

The counts come from the RTL (``mulfree energy --run``) or from the cycle model
(``sim.cycle_model.predict``, which equals the RTL exactly, tests assert it); the split of
the counters that mix data types (``glb_reads``, ``rf_writes``) is the cycle model's
``by_type``. Compute is priced per MAC that was not skipped, on a PE of ``lanes`` lanes
(``sim.energy.compute``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.shapes import LayerShape
from sim.energy.compute import INT16, Scheme, mac_pj
from sim.energy.costs import cost_table
from sim.energy.hardware import Hardware
from sim.energy.network import LayerEnergy
from sim.energy.specs import DATA_TYPES, LEVELS
from sim.energy_presets import NamedLayer

__all__ = ["COUNTER_USE", "CounterUse", "counts_by_level", "array_counters",
           "counters_by_type", "shape_counters", "array_hardware", "array_energy",
           "run_lanes", "OUR_ARRAY"]

#: The ``dataflow`` of a ``LayerEnergy`` priced from our accelerator's counters.
OUR_ARRAY = "rs (our array)"


@dataclass(frozen=True)
class _Sizes:
    """Words of one layer's weights, inputs and outputs as the accelerator stores them."""

    weights: int
    inputs: int
    outputs: int


@dataclass(frozen=True)
class CounterUse:
    """What one counter counts: the level it prices (None: not an access) and how its
    count divides among inputs, weights and psums (``split(counters, by_type, sizes)``)."""

    level: str | None
    meaning: str
    split: Callable[[dict, dict, _Sizes], dict]


def _none(k, t, s):
    return {}


#: Counter -> level and data types (the accelerator's counter definitions, ``hw.accelerator``).
COUNTER_USE = {
    "cycles": CounterUse(None, "clock cycles: time, not an access", _none),
    "macs": CounterUse(None, "products computed (priced as compute unless skipped)", _none),
    "skipped": CounterUse(None, "products gated by a zero weight (no compute)", _none),
    "rf_reads": CounterUse(
        "rf", "each MAC reads its weight and its input word; the rest are psum reads",
        lambda k, t, s: {"inputs": k["macs"], "weights": k["macs"],
                         "psums": k["rf_reads"] - 2 * k["macs"]}),
    "rf_writes": CounterUse("rf", "scratchpad writes, by data type as the cycle model splits "
                            "them", lambda k, t, s: dict(t["rf_writes"])),
    "array_transfers": CounterUse("array", "psums passed to the PE below",
                                  lambda k, t, s: {"psums": k["array_transfers"]}),
    "glb_reads": CounterUse("glb", "buffer reads, by data type as the cycle model splits "
                            "them", lambda k, t, s: dict(t["glb_reads"])),
    "glb_writes": CounterUse(
        "glb", "the layer's weights and inputs arriving from the streams; the rest psums",
        lambda k, t, s: {"inputs": s.inputs, "weights": s.weights,
                         "psums": k["glb_writes"] - s.weights - s.inputs}),
    "offchip_words": CounterUse(
        "dram", "each weight and input word in once, each output out once",
        lambda k, t, s: {"inputs": s.inputs, "weights": s.weights, "psums": s.outputs}),
}


def _sizes(layer: NamedLayer, scheme: Scheme) -> _Sizes:
    cin = layer.C // (scheme.a_bits if scheme.name == "xnor" else 1)
    return _Sizes(weights=layer.M * cin * layer.R * layer.S, inputs=cin * layer.H * layer.W,
                  outputs=layer.M * layer.E * layer.F)


def counts_by_level(layer: NamedLayer, counters: dict, by_type: dict,
                    scheme: Scheme = INT16) -> dict:
    """``{level: {data type: words}}`` of the counters of one run of ``layer`` (one image).

    ``counters`` are the accelerator's (keys: ``COUNTER_USE``), ``by_type`` the cycle model's
    split of ``glb_reads`` and ``rf_writes``. Refuses counters of another layer (their
    ``offchip_words`` differ) and a split that does not add up to its counter.
    """
    missing = set(COUNTER_USE) - set(counters)
    if missing:
        raise ValueError(f"counters of layer {layer.name!r} lack {sorted(missing)}")
    sizes = _sizes(layer, scheme)
    expected = sizes.weights + sizes.inputs + sizes.outputs
    if counters["offchip_words"] != expected:
        raise ValueError(f"counters do not belong to layer {layer.name!r}: "
                         f"{counters['offchip_words']} off-chip words, not {expected}")
    for name, parts in by_type.items():
        if sum(parts.values()) != counters[name]:
            raise ValueError(f"by_type of {name} ({sum(parts.values())}) does not add up to "
                             f"the counter ({counters[name]}) of layer {layer.name!r}")
    counts = {lv: dict.fromkeys(DATA_TYPES, 0) for lv in LEVELS}
    for name, use in COUNTER_USE.items():
        for x, n in use.split(counters, by_type, sizes).items():
            counts[use.level][x] += int(n)
    return counts


def run_lanes(counters: dict) -> int:
    """Lanes of the PE that produced ``counters`` (the array before lanes: 1)."""
    return int(counters.get("lanes", 1))


def _shape_of(layer) -> LayerShape:
    return LayerShape.of(np.shape(layer.weights), np.shape(layer.inputs), int(layer.stride),
                         int(layer.padding))


def array_counters(layer, params=None) -> dict:
    """The counters our accelerator reports for ``layer`` (a ``model.layer_file.Layer``).

    Under the array's own row-stationary mapping (``sim.cycle_model.choose_mapping``), from
    ``sim.cycle_model.predict`` -- the one place that holds the array's folding arithmetic;
    ``skipped`` comes from the layer's weights. Keys: ``sim.cycle_model.COUNTERS``.
    """
    from sim.cycle_model import COUNTERS, ArrayParams, predict

    pred = predict(_shape_of(layer), params or ArrayParams(), weights=layer.weights,
                   scheme=layer.scheme, w_bits=layer.w_bits,
                   codebook=getattr(layer, "codebook", None))
    return {k: int(pred[k]) for k in COUNTERS}


def counters_by_type(layer, params=None) -> dict:
    """How ``glb_reads`` and ``rf_writes`` of ``array_counters`` split by data type."""
    from sim.cycle_model import ArrayParams, predict

    return predict(_shape_of(layer), params or ArrayParams())["by_type"]


def shape_counters(layer: NamedLayer, params=None, *, scheme: Scheme = INT16,
                   weights=None) -> dict:
    """``array_counters`` of a named layer (batch 1), without building inputs.

    ``weights`` (codes ``[M, C, R, S]``, ``xnor``: packed words) give ``skipped``; without
    them it is 0. ``xnor`` layers run ``C / lanes`` packed words. Also returns ``by_type``
    (``counters_by_type``).
    """
    from sim.cycle_model import COUNTERS, ArrayParams, predict

    if layer.groups != 1:
        raise ValueError(f"layer {layer.name!r}: the accelerator runs one group; split "
                         f"groups={layer.groups} into separate layers")
    c = layer.C
    if scheme.name == "xnor":
        if c % scheme.a_bits:
            raise ValueError(f"layer {layer.name!r}: {c} channels do not pack into words "
                             f"of {scheme.a_bits} lanes")
        c //= scheme.a_bits
    shape = LayerShape(layer.M, c, layer.R, layer.S, layer.H, layer.W, layer.stride,
                       layer.padding)
    pred = predict(shape, params or ArrayParams(), weights=weights, scheme=scheme.name,
                   w_bits=scheme.w_bits)
    out = {k: int(pred[k]) for k in COUNTERS}
    out["by_type"] = pred["by_type"]
    return out


def array_hardware(params=None, *, scheme: Scheme = INT16, acc_bits: int = 16,
                   glb_words: int = 0) -> Hardware:
    """Our array as a ``Hardware`` for pricing: scratchpad bytes per PE, buffer bytes."""
    from sim.cycle_model import ArrayParams

    params = params or ArrayParams()
    a = scheme.word_bits("inputs", acc_bits)
    w = scheme.word_bits("weights", acc_bits)
    # Two banks of each scratchpad (hw.pe double-buffers filters, inputs and psums).
    rf_bits = 2 * (params.filter_spad * w + params.ifmap_spad * a + params.psum_spad * acc_bits)
    return Hardware(pes=params.pes, rows=params.rows, cols=params.cols,
                    rf_bytes=math.ceil(rf_bits / 8),
                    glb_bytes=max(1, math.ceil(glb_words * acc_bits / 8)),
                    input_bits=a, weight_bits=w, psum_bits=acc_bits)


def array_energy(layer: NamedLayer, counters: dict, hw: Hardware, *,
                 scheme: Scheme = INT16, costs="45nm", batch: int = 1,
                 lanes: int | None = None) -> LayerEnergy:
    """Energy of ``layer`` on our accelerator from its counters (``COUNTER_USE``).

    ``counters``: the accelerator's counters plus ``by_type`` (``counters_by_type``). Every
    access is priced at its data type's width; compute is ``macs - skipped`` MACs on a PE
    of ``lanes`` lanes (default: ``run_lanes(counters)``; ``sim.energy.compute.mac_pj``).
    ``batch`` images run one after the other (every count scales with it).
    """
    table = cost_table(costs)
    acc = scheme.layer_acc_bits(layer)
    width = {"inputs": scheme.word_bits("inputs", acc),
             "weights": scheme.word_bits("weights", acc), "psums": acc}
    counts = counts_by_level(layer, counters, counters["by_type"], scheme)
    counts = {lv: {x: float(n) * batch for x, n in c.items()} for lv, c in counts.items()}
    energy_of = {(lv, x): counts[lv][x] * table.access(lv, width[x], hw)
                 for lv in LEVELS for x in DATA_TYPES}
    by_level = {lv: sum(energy_of[(lv, x)] for x in DATA_TYPES) for lv in LEVELS}
    by_type = {x: sum(energy_of[(lv, x)] for lv in LEVELS) for x in DATA_TYPES}
    macs, skipped = counters["macs"] * batch, counters["skipped"] * batch
    lanes = run_lanes(counters) if lanes is None else lanes
    mac = table.mac(mac_pj(scheme, acc, lanes, channels=layer.C // layer.groups))
    by_level["alu"] = by_type["compute"] = (macs - skipped) * mac
    return LayerEnergy(layer, OUR_ARRAY, batch, counts, float(macs), float(skipped),
                       by_level, by_type, {"loops": {}, "glb_order": "-", "dram_order": "-"},
                       acc, scheme)
