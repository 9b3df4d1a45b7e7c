"""Our accelerator: what each of its counters moves, and the energy of what it ran.

This is the one module that knows the accelerator's counters (``hw.schedule.COUNTERS``, the
names the RTL reports, and the derived ``macs``, ``rf_reads``, ``rf_writes`` of
``hw.schedule.derived_counters``: what ``mulfree run-layer`` writes to OUT.npz).
``COUNTER_USE`` says, for each counter, the storage level it prices and how its count
divides among the data types; the rest of the energy model sees only counts per level and
data type.

The array (``hw.schedule``): a PE does ``lanes`` MACs per slot over ``lanes`` channels, so
every scratchpad, buffer and stream word carries ``lanes`` codes (a layer's ``C`` channels
are ``ceil(C / lanes)`` words; ``xnor`` codes are 1 bit). Each PE has an input scratchpad
(one read per slot, ``slots``; ``input_writes``); each PE row shares one filter scratchpad
(``filter_reads``, one per row and slot; ``filter_writes``); partial sums never enter a
scratchpad: each PE's accumulator starts from the finished sum of the PE above
(``array_transfers``) and the bottom row's sums go to the global buffer.

The counts come from the RTL (``mulfree energy --run``) or from the cycle model
(``sim.cycle_model.predict``, which equals the RTL exactly, tests assert it); the split of
the global-buffer counters by data type is the cycle model's ``by_type``. Compute is priced
per MAC that was not skipped, on a PE of ``lanes`` lanes (``sim.energy.compute``).
"""

from __future__ import annotations

import dataclasses

import math
from collections.abc import Callable
from dataclasses import dataclass

from hw.schedule import COUNTER_MEANINGS, COUNTERS, DERIVED_COUNTERS, channel_words
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
    """What one counter counts: the level it prices (None: not an access, or counted
    through others) and how its count divides among inputs, weights and psums
    (``split(counters, by_type, sizes)``)."""

    level: str | None
    meaning: str
    split: Callable[[dict, dict, _Sizes], dict]


def _none(k, t, s):
    return {}


def _only(data_type: str, name: str):
    return lambda k, t, s: {data_type: k[name]}


_DERIVED_MEANINGS = {
    "macs": "real lanes of the slots (derived; priced as compute unless skipped)",
    "rf_reads": "slots + filter_reads (derived; priced through them)",
    "rf_writes": "filter_writes + input_writes (derived; priced through them)",
}

#: Counter -> level and data types (the counters of ``hw.schedule``).
COUNTER_USE = {
    "cycles": CounterUse(None, COUNTER_MEANINGS["cycles"] + ": time, not an access", _none),
    "slots": CounterUse("rf", COUNTER_MEANINGS["slots"], _only("inputs", "slots")),
    "last_slots": CounterUse(None, COUNTER_MEANINGS["last_slots"] + ": they give macs",
                             _none),
    "skipped": CounterUse(None, COUNTER_MEANINGS["skipped"] + ": no compute", _none),
    "filter_reads": CounterUse("rf", COUNTER_MEANINGS["filter_reads"],
                               _only("weights", "filter_reads")),
    "filter_writes": CounterUse("rf", COUNTER_MEANINGS["filter_writes"],
                                _only("weights", "filter_writes")),
    "input_writes": CounterUse("rf", COUNTER_MEANINGS["input_writes"],
                               _only("inputs", "input_writes")),
    "array_transfers": CounterUse("array", COUNTER_MEANINGS["array_transfers"],
                                  _only("psums", "array_transfers")),
    "glb_reads": CounterUse("glb", COUNTER_MEANINGS["glb_reads"] + ", by data type as the "
                            "cycle model splits them", lambda k, t, s: dict(t["glb_reads"])),
    "glb_writes": CounterUse("glb", COUNTER_MEANINGS["glb_writes"] + ", by data type as the "
                             "cycle model splits them", lambda k, t, s: dict(t["glb_writes"])),
    "offchip_words": CounterUse(
        "dram", COUNTER_MEANINGS["offchip_words"] + ": each weight and input word in once, "
        "each output out once",
        lambda k, t, s: {"inputs": s.inputs, "weights": s.weights, "psums": s.outputs}),
    **{name: CounterUse(None, _DERIVED_MEANINGS[name], _none) for name in DERIVED_COUNTERS},
}


def run_lanes(counters: dict) -> int:
    """Lanes of the PE that produced ``counters`` (their ``lanes``, as OUT.npz and
    ``shape_counters`` give it; 1 when absent)."""
    return int(counters.get("lanes", 1))


def _sizes(layer: NamedLayer, lanes: int) -> _Sizes:
    """Words of ``layer`` on PEs of ``lanes`` lanes (channels packed ``lanes`` to a word)."""
    cw = layer.groups * channel_words(layer.C // layer.groups, lanes)[0]
    return _Sizes(weights=layer.M * (cw // layer.groups) * layer.R * layer.S,
                  inputs=cw * layer.H * layer.W, outputs=layer.M * layer.E * layer.F)


def counts_by_level(layer: NamedLayer, counters: dict, by_type: dict, *,
                    lanes: int | None = None) -> dict:
    """``{level: {data type: words}}`` of the counters of one run of ``layer`` (one image).

    ``counters`` are the accelerator's (keys: ``COUNTER_USE``), ``by_type`` the cycle model's
    split by data type (``counters_by_type``), ``lanes`` the PE's (default:
    ``run_lanes(counters)``). Refuses counters of another layer (their ``offchip_words``
    differ) and a split that does not add up to its counter.
    """
    missing = set(COUNTER_USE) - set(counters)
    if missing:
        raise ValueError(f"counters of layer {layer.name!r} lack {sorted(missing)}")
    sizes = _sizes(layer, run_lanes(counters) if lanes is None else lanes)
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


def array_counters(layer, params=None) -> dict:
    """The counters our accelerator reports for ``layer`` (a ``model.layer_file.Layer``).

    Under the array's own row-stationary mapping (``sim.cycle_model.choose_mapping``), from
    ``sim.cycle_model.predict`` -- the one place that holds the array's folding arithmetic;
    ``skipped`` comes from the layer's weights. An ``xnor`` file's packed words count as
    their channels (``sim.run_layer.layer_shape``, ``layer_codes``). Keys:
    ``hw.schedule.COUNTERS`` and ``DERIVED_COUNTERS``.
    """
    from sim.cycle_model import ArrayParams, predict
    from sim.run_layer import layer_codes, layer_shape

    pred = predict(layer_shape(layer), params or ArrayParams(),
                   weights=layer_codes(layer)[0], scheme=layer.scheme, w_bits=layer.w_bits,
                   codebook=getattr(layer, "codebook", None))
    return {k: int(pred[k]) for k in COUNTERS + DERIVED_COUNTERS}


def counters_by_type(layer, params=None) -> dict:
    """How ``glb_reads``, ``glb_writes``, ``rf_reads`` and ``rf_writes`` of
    ``array_counters`` split by data type."""
    from sim.cycle_model import ArrayParams, predict
    from sim.run_layer import layer_shape

    return predict(layer_shape(layer), params or ArrayParams())["by_type"]


def shape_counters(layer: NamedLayer, params=None, *, scheme: Scheme = INT16,
                   weights=None) -> dict:
    """``array_counters`` of a named layer (batch 1), without building inputs.

    ``weights`` (codes ``[M, C, R, S]``, one code per channel) give ``skipped``; without
    them it is 0. Channels are packed ``params.lanes`` to a word (``xnor`` too: 1-bit codes).
    Also returns ``by_type`` (``counters_by_type``) and the ``lanes``.
    """
    from sim.cycle_model import ArrayParams, predict

    params = params or ArrayParams()
    if layer.groups > params.groups:    # the groups run one after the other on the array
        params = dataclasses.replace(params, groups=layer.groups)
    shape = LayerShape(layer.M, layer.C, layer.R, layer.S, layer.H, layer.W, layer.stride,
                       layer.padding, layer.groups)
    pred = predict(shape, params, weights=weights, scheme=scheme.name, w_bits=scheme.w_bits)
    out = {k: int(pred[k]) for k in COUNTERS + DERIVED_COUNTERS}
    out["by_type"] = pred["by_type"]
    out["lanes"] = params.lanes
    return out


def array_hardware(params=None, *, scheme: Scheme = INT16, acc_bits: int = 16,
                   glb_words: int = 0) -> Hardware:
    """Our array as a ``Hardware`` for pricing: the register file of a PE is its input
    scratchpad plus its share of its row's filter scratchpad (two banks each), in words of
    ``params.lanes`` codes; the buffer holds ``glb_words`` words of the accumulator's width."""
    from sim.cycle_model import ArrayParams

    params = params or ArrayParams()
    a = params.lanes * scheme.word_bits("inputs", acc_bits)
    w = params.lanes * scheme.word_bits("weights", acc_bits)
    rf_bits = 2 * (params.ifmap_spad * a + params.filter_spad * w / params.cols)
    return Hardware(pes=params.pes, rows=params.rows, cols=params.cols,
                    rf_bytes=math.ceil(rf_bits / 8),
                    glb_bytes=max(1, math.ceil(glb_words * acc_bits / 8)),
                    input_bits=a, weight_bits=w, psum_bits=acc_bits)


def _compute_scheme(scheme: Scheme, lanes: int) -> Scheme:
    """The scheme whose MAC the PE computes: ``xnor`` on ``lanes`` 1-bit lanes."""
    if scheme.name == "xnor" and scheme.a_bits != lanes:
        return Scheme("xnor", lanes, lanes, scheme.acc_bits)
    return scheme


def array_energy(layer: NamedLayer, counters: dict, hw: Hardware, *,
                 scheme: Scheme = INT16, costs="45nm", batch: int = 1,
                 lanes: int | None = None) -> LayerEnergy:
    """Energy of ``layer`` on our accelerator from its counters (``COUNTER_USE``).

    ``counters``: the accelerator's counters plus ``by_type`` (``counters_by_type``). Every
    access is priced at its data type's word width (``hw``: words of ``lanes`` codes; psums
    at the accumulator width): the register files are the input scratchpads (``slots``
    reads, ``input_writes``) and the filter scratchpads (``filter_reads``,
    ``filter_writes``), with no psum traffic; the buffer by ``by_type``. Compute is ``macs -
    skipped`` MACs on a PE of ``lanes`` lanes (default: ``run_lanes(counters)``;
    ``sim.energy.compute.mac_pj``). ``batch`` images run one after the other (every count
    scales with it).
    """
    table = cost_table(costs)
    lanes = run_lanes(counters) if lanes is None else lanes
    acc = scheme.layer_acc_bits(layer)
    width = {"inputs": hw.input_bits, "weights": hw.weight_bits, "psums": acc}
    counts = counts_by_level(layer, counters, counters["by_type"], lanes=lanes)
    counts = {lv: {x: float(n) * batch for x, n in c.items()} for lv, c in counts.items()}
    energy_of = {(lv, x): counts[lv][x] * table.access(lv, width[x], hw)
                 for lv in LEVELS for x in DATA_TYPES}
    by_level = {lv: sum(energy_of[(lv, x)] for x in DATA_TYPES) for lv in LEVELS}
    by_type = {x: sum(energy_of[(lv, x)] for lv in LEVELS) for x in DATA_TYPES}
    macs, skipped = counters["macs"] * batch, counters["skipped"] * batch
    mac = table.mac(mac_pj(_compute_scheme(scheme, lanes), acc, lanes,
                           channels=layer.C // layer.groups))
    by_level["alu"] = by_type["compute"] = (macs - skipped) * mac
    return LayerEnergy(layer, OUR_ARRAY, batch, counts, float(macs), float(skipped),
                       by_level, by_type, {"loops": {}, "glb_order": "-", "dram_order": "-"},
                       acc, scheme)
