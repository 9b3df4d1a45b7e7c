"""What a deployment model costs on our array: weights, MACs, cycles and energy, per layer.

For each layer of a model file of ``model.deploy.save``: its weights and MACs (padding taps
included, +/-1 lanes counted one by one), the cycles of the array's fastest mapping
(``sim.cycle_model.choose_mapping`` and ``predict``; an ``xnor`` layer on PEs of as many lanes
as its words hold, ``sim.run_layer.lanes_for_words``) and the energy of those counters at
45 nm (``sim.energy.shape_counters``, ``array_hardware`` and ``array_energy``, priced as
``benchmarks/energy.py`` prices the seed's networks: one storage size for the whole model,
sized for its widest accumulator and its largest layer). One image, no batching.

The cycles and the energy are those of the array as ``sim.cycle_model`` models it today;
weights and MACs depend on the model only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model import deploy
from sim import energy
from sim.cycle_model import ArrayParams
from sim.energy_presets import layers_from_model
from sim.run_layer import lanes_for_words

__all__ = ["LayerCost", "model_cost", "totals"]


@dataclass(frozen=True)
class LayerCost:
    """One layer's weights, MACs, array cycles, utilisation and energy (pJ, 45 nm), in all and
    by level (``sim.energy.LEVELS`` and ``alu``)."""

    name: str
    scheme: str
    weights: int
    macs: int
    cycles: int
    utilisation: float
    energy_pj: float
    energy_by_level_pj: dict = dataclasses.field(default_factory=dict)


def model_cost(path, params: ArrayParams | None = None) -> list[LayerCost]:
    """The cost of every layer of the deployment model file ``path`` on ``params``'s array.

    Raises ``ValueError`` for a float checkpoint and for grouped layers (whole-model costs
    take ``groups = 1`` only; a grouped layer runs on the array alone).
    """
    params = params or ArrayParams()
    loaded = deploy.load(path)
    if not isinstance(loaded, deploy.IntegerModel):
        raise ValueError(f"{str(path)!r} holds a float network; costs on the array need an "
                         "integer deployment model")
    grouped = [i for i, ly in enumerate(loaded.layers) if ly.groups != 1]
    if grouped:
        raise ValueError(f"layers {grouped} of {str(path)!r} are grouped; whole-model costs "
                         "take groups = 1 only for now (a grouped layer runs on the array "
                         "alone: mulfree run-layer)")
    layers, widths, _ = layers_from_model(path)
    schemes = {name: energy.Scheme(*w) for name, w in widths.items()}
    counters, arrays = [], []
    for ly, il in zip(layers, loaded.layers):
        mine = params
        if il.scheme == "xnor":   # words of a_bits channels: one word per slot
            mine = dataclasses.replace(params, lanes=lanes_for_words(il.a_bits, params.lanes))
        arrays.append(mine)
        counters.append(energy.shape_counters(ly, mine, scheme=schemes[ly.name],
                                              weights=None if il.scheme == "xnor"
                                              else il.weights))
    widest = max(schemes[ly.name].layer_acc_bits(ly) for ly in layers)
    glb_words = max(k["offchip_words"] for k in counters)
    out = []
    for ly, k, mine in zip(layers, counters, arrays):
        sc = schemes[ly.name]
        cyc = k["cycles"]
        util = k["macs"] / (mine.macs_per_cycle * cyc)
        hw = energy.array_hardware(mine, scheme=sc, acc_bits=widest, glb_words=glb_words)
        le = energy.array_energy(ly, k, hw, scheme=sc, costs="45nm")
        out.append(LayerCost(ly.name, sc.name, int(ly.weights()), int(ly.macs()), cyc, util,
                             float(le.total), {lv: float(v) for lv, v in le.energy.items()}))
    return out


def totals(costs: list[LayerCost]) -> dict:
    """Sums over the layers: weights, macs, cycles, energy_pj, energy_by_level_pj."""
    levels = {lv for c in costs for lv in c.energy_by_level_pj}
    return {"weights": sum(c.weights for c in costs), "macs": sum(c.macs for c in costs),
            "cycles": sum(c.cycles for c in costs),
            "energy_pj": float(np.sum([c.energy_pj for c in costs])),
            "energy_by_level_pj": {lv: float(sum(c.energy_by_level_pj.get(lv, 0.0)
                                                 for c in costs)) for lv in sorted(levels)}}
