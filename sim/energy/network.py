"""Energy of layers and networks under each dataflow: the least-energy mapping, priced.

Energy = access counts x cost per access, summed over the storage levels (DRAM, global
buffer, array, register file) and the data types (inputs, weights, partial sums), plus the
compute term (``alu``) of the product unit and its accumulator. The counts are those of the
least-energy legal mapping of each layer under each dataflow (``sim.energy.search``,
searched with the chosen cost table); a batch may also run as two halves, recursively, so
doubling the batch never more than doubles the energy. Each dataflow runs on the storage
it gets under equal area (``sim.energy.hardware``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace

import numpy as np

from sim.energy.compute import INT16, Scheme, can_skip, compute_pj, default_sparsity
from sim.energy.costs import ENERGY_LEVELS, cost_table
from sim.energy.hardware import DEFAULT_RF_AREA_RATIO, Hardware, equal_area_hardware
from sim.energy.search import CandidateCounts, candidate_counts, describe
from sim.energy.specs import DATA_TYPES, DATAFLOWS, LEVELS, PAPER_DATAFLOWS, check_dataflow
from sim.energy.tiles import Problem
from sim.energy_presets import NamedLayer, layers_from_model, network

__all__ = ["LayerEnergy", "layer_energy", "DataflowEnergy", "EnergyReport", "network_energy",
           "resolve_network"]


@dataclass
class LayerEnergy:
    """Energy of one layer (all groups, whole batch) under one dataflow.

    ``counts[level][data_type]`` are word accesses, ``energy[level]`` and ``by_type`` the
    energy by level and by data type (``alu`` is the compute term), ``mapping`` the chosen
    mapping of one group.
    """

    layer: NamedLayer
    dataflow: str
    batch: int
    counts: dict
    macs: float
    skipped: float
    energy: dict
    by_type: dict
    mapping: dict
    acc_bits: int
    scheme: Scheme

    @property
    def total(self) -> float:
        return float(sum(self.energy.values()))

    @property
    def data_movement(self) -> float:
        return float(sum(self.energy[lv] for lv in LEVELS))

    def to_dict(self) -> dict:
        counts = {lv: {x: float(self.counts[lv][x]) for x in DATA_TYPES} for lv in LEVELS}
        counts.update(macs=float(self.macs), skipped=float(self.skipped))
        return {"total": self.total,
                "levels": {lv: float(self.energy[lv]) for lv in ENERGY_LEVELS},
                "counts": counts,
                "by_type": {k: float(v) for k, v in self.by_type.items()},
                "kind": self.layer.kind,
                "shape": self.layer.to_dict(),
                "scheme": self.scheme.to_dict() | {"acc_bits": self.acc_bits},
                "mapping": describe(self.mapping)}


@functools.lru_cache(maxsize=64)  # candidate arrays can be megabytes each
def _candidates(problem: Problem, dataflow: str, hw: Hardware) -> CandidateCounts:
    return candidate_counts(problem, dataflow, hw)


def layer_energy(layer: NamedLayer, dataflow: str, hw: Hardware, *, batch: int = 1,
                 costs="normalized", scheme: Scheme = INT16,
                 sparsity: float = 0.0) -> LayerEnergy:
    """Least energy of ``layer`` under ``dataflow`` on ``hw`` (searched with ``costs``).

    The search also considers running the batch as two halves one after the other (and so
    on recursively), so that doubling the batch can never more than double the energy --
    except for WS, whose weight serves all the batch's uses once fetched (section IV-A of
    the paper): its partial sums of the whole batch must wait in the buffer or spill.
    """
    table = cost_table(costs)
    check_dataflow(dataflow)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], not {sparsity!r}")
    acc_bits = scheme.layer_acc_bits(layer)
    bits = {x: scheme.word_bits(x, acc_bits) for x in DATA_TYPES}
    # The storage holds the scheme's words; the search sees the same widths.
    hw_words = replace(hw, input_bits=bits["inputs"], weight_bits=bits["weights"],
                       psum_bits=bits["psums"])
    price = tuple(table.access(lv, bits[x], hw) for lv in LEVELS for x in DATA_TYPES)
    movement, counts, mapping = _least_movement(Problem.of(layer.shape, 1), batch, dataflow,
                                                hw_words, price)
    g = layer.groups
    counts = {lv: {x: counts[lv][x] * g for x in DATA_TYPES} for lv in LEVELS}
    macs = float(layer.macs(batch))
    skipped = macs * sparsity if can_skip(scheme.name) else 0.0
    p = dict(zip([(lv, x) for lv in LEVELS for x in DATA_TYPES], price))
    by_level = {lv: sum(counts[lv][x] * p[(lv, x)] for x in DATA_TYPES) for lv in LEVELS}
    by_level["alu"] = (macs - skipped) * table.mac(compute_pj(scheme, acc_bits)["total"])
    by_type = {x: sum(counts[lv][x] * p[(lv, x)] for lv in LEVELS) for x in DATA_TYPES}
    by_type["compute"] = by_level["alu"]
    return LayerEnergy(layer, dataflow, batch, counts, macs, skipped, by_level, by_type,
                       mapping, acc_bits, scheme)


@functools.lru_cache(maxsize=16384)
def _least_movement(unit_problem: Problem, batch: int, dataflow: str, hw: Hardware,
                    price: tuple):
    """(energy, counts, mapping) of the least data-movement energy for ``batch`` images."""
    problem = replace(unit_problem, N=batch)
    cand = _candidates(problem, dataflow, hw)
    energy = cand.matrix() @ np.asarray(price)
    best = int(np.argmin(energy))
    counts = {lv: {x: float(cand.counts[lv][x][best]) for x in DATA_TYPES} for lv in LEVELS}
    mapping = dict(cand.mappings[best])
    mapping["batch_runs"] = 1
    result = (float(energy[best]), counts, mapping)
    if batch % 2 == 0 and DATAFLOWS[dataflow].splits_batch:
        half_energy, half_counts, half_mapping = _least_movement(unit_problem, batch // 2,
                                                                 dataflow, hw, price)
        if 2 * half_energy < result[0]:
            mapping = dict(half_mapping)
            mapping["batch_runs"] = 2 * half_mapping["batch_runs"]
            result = (2 * half_energy, {lv: {x: 2 * half_counts[lv][x] for x in DATA_TYPES}
                                        for lv in LEVELS}, mapping)
    return result


@dataclass
class DataflowEnergy:
    dataflow: str
    hardware: Hardware
    layers: list

    @property
    def total(self) -> float:
        return float(sum(le.total for le in self.layers))

    def total_of(self, kind: str) -> float:
        return float(sum(le.total for le in self.layers if le.layer.kind == kind))

    def level_totals(self, kind: str | None = None) -> dict:
        out = dict.fromkeys(ENERGY_LEVELS, 0.0)
        for le in self.layers:
            if kind is None or le.layer.kind == kind:
                for lv in ENERGY_LEVELS:
                    out[lv] += le.energy[lv]
        return out

    def type_totals(self, kind: str | None = None) -> dict:
        out = dict.fromkeys(DATA_TYPES + ("compute",), 0.0)
        for le in self.layers:
            if kind is None or le.layer.kind == kind:
                for k in out:
                    out[k] += le.by_type[k]
        return out

    def macs(self, kind: str | None = None) -> float:
        return float(sum(le.macs for le in self.layers
                         if kind is None or le.layer.kind == kind))


@dataclass
class EnergyReport:
    """Energy of a network under several dataflows (see ``network_energy``).

    ``schemes`` maps each layer name to its ``Scheme``.
    """

    network: str
    batch: int
    costs: str
    schemes: dict
    dataflows: dict
    sparsity: dict = field(default_factory=dict)

    @property
    def scheme_label(self) -> str:
        labels = {s.label for s in self.schemes.values()}
        return labels.pop() if len(labels) == 1 else "mixed schemes (" + ", ".join(
            f"{n} {s.label}" for n, s in self.schemes.items()) + ")"

    @property
    def unit(self) -> str:
        return cost_table(self.costs).unit

    def ratios(self, kind: str) -> dict:
        """Energy of each dataflow / energy of RS, over the layers of ``kind`` (conv, fc)."""
        if "rs" not in self.dataflows:
            return {}
        rs = self.dataflows["rs"].total_of(kind)
        if rs == 0:
            return {}
        return {name: d.total_of(kind) / rs for name, d in self.dataflows.items()
                if name != "rs"}

    def kinds(self) -> list[str]:
        first = next(iter(self.dataflows.values()))
        return [k for k in ("conv", "fc") if any(le.layer.kind == k for le in first.layers)]


def network_energy(layers, *, name: str = "network", dataflows=PAPER_DATAFLOWS,
                   batch: int = 16, pes: int = 256, rows: int | None = None,
                   costs: str = "normalized", scheme=INT16, sparsity=None,
                   hardware: dict | None = None,
                   rf_area_ratio: float = DEFAULT_RF_AREA_RATIO) -> EnergyReport:
    """Energy of ``layers`` (a preset name or a sequence of ``NamedLayer``) under ``dataflows``.

    ``scheme``: one ``Scheme`` for every layer or ``{layer name: Scheme}``. Each dataflow
    runs on ``hardware[dataflow]`` if given, else on ``equal_area_hardware`` of ``pes`` PEs
    in ``rows`` rows (default: nearest to square), storage sized for the widest words of the
    network. ``sparsity``: ``None`` (each
    scheme's ``default_sparsity``), one zero fraction for every layer, or
    ``{layer name: fraction}``.
    """
    table = cost_table(costs)
    if isinstance(layers, str):
        name, layers = layers, network(layers)
    layers = tuple(layers)
    if not layers:
        raise ValueError("the network has no convolution or dense layer")
    dataflows = tuple(check_dataflow(d) for d in dataflows)
    schemes = _schemes_per_layer(layers, scheme)
    per_layer = _sparsity_per_layer(layers, schemes, sparsity)
    widest = {x: max(schemes[ly.name].word_bits(x, schemes[ly.name].layer_acc_bits(ly))
                     for ly in layers) for x in DATA_TYPES}
    hardware = dict(hardware or {})
    result = {}
    for df in dataflows:
        hw = hardware.get(df) or equal_area_hardware(
            df, pes, rows=rows, rf_area_ratio=rf_area_ratio, input_bits=widest["inputs"],
            weight_bits=widest["weights"], psum_bits=widest["psums"])
        result[df] = DataflowEnergy(df, hw, [
            layer_energy(ly, df, hw, batch=batch, costs=table, scheme=schemes[ly.name],
                         sparsity=per_layer[ly.name]) for ly in layers])
    return EnergyReport(name, batch, table, schemes, result, per_layer)


def _schemes_per_layer(layers, scheme) -> dict:
    names = [ly.name for ly in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique, not {names}")
    if isinstance(scheme, Scheme):
        return dict.fromkeys(names, scheme)
    if not isinstance(scheme, dict) or set(scheme) != set(names) or not all(
            isinstance(v, Scheme) for v in scheme.values()):
        raise ValueError(f"scheme must be a Scheme or one Scheme per layer ({', '.join(names)})")
    return {n: scheme[n] for n in names}


def resolve_network(spec: str, *, scheme: Scheme | None = None, sparsity=None):
    """Layers, name, scheme and sparsity of a preset name or a deployment model file.

    A preset runs ``scheme`` (default: 16-bit ``int``); a model file brings its layers, its
    scheme and the zero fraction of each layer's weights (``scheme``/``sparsity`` override).
    """
    from sim.energy_presets import NETWORKS
    if spec in NETWORKS:
        return network(spec), spec, scheme or INT16, sparsity
    if os.path.exists(spec):
        layers, widths, model_sparsity = layers_from_model(spec)
        model_schemes = {n: Scheme(*w) for n, w in widths.items()}
        return (layers, os.path.splitext(os.path.basename(spec))[0], scheme or model_schemes,
                model_sparsity if sparsity is None else sparsity)
    raise ValueError(f"unknown network {spec!r}: not a preset ({', '.join(NETWORKS)}) "
                     f"and no such model file")


def _sparsity_per_layer(layers, schemes: dict, sparsity) -> dict:
    names = [ly.name for ly in layers]
    defaults = {n: default_sparsity(schemes[n].name) for n in names}
    if sparsity is None:
        return defaults
    if isinstance(sparsity, dict):
        unknown = set(sparsity) - set(names)
        if unknown:
            raise ValueError(f"sparsity given for unknown layer(s) {sorted(unknown)}; "
                             f"layers: {', '.join(names)}")
        out = {n: float(sparsity.get(n, defaults[n])) for n in names}
    else:
        out = dict.fromkeys(names, float(sparsity))
    for n, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"sparsity of layer {n!r} must be in [0, 1], not {v!r}")
    return out
