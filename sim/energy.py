"""Dataflow energy model: row stationary (RS) against WS, OS and NLR, for any network and scheme.

Energy = access counts x cost per access, summed over the storage levels (DRAM, global
buffer, array, register file) and the data types (inputs, weights, partial sums), plus the
compute term (``alu``) of the product unit and its accumulator. The counts come from
``sim.dataflows`` (the least-energy legal mapping of each layer under each dataflow, searched
with the chosen cost table; a batch may also run as two halves, recursively, so doubling the
batch never more than doubles the energy); this module adds the costs, the hardware each
dataflow gets under equal storage area, and the outputs (table, JSON, plots).

Our own accelerator (``hw.accelerator``) is priced from its counters: ``array_counters``
gives, for a layer under the array's row-stationary mapping, exactly the counters the RTL
reports (through ``sim.cycle_model.predict``, the one place that holds the array's folding
arithmetic), and ``array_energy`` turns them into energy by level.

Cost tables (``COST_TABLES``)
-----------------------------
``normalized``
    Eyeriss (ISCA 2016, 65 nm), relative to one 16-bit MAC: DRAM 200, global buffer 6,
    array (inter-PE) 2, register file 1, MAC 1 -- per 16-bit word, scaled linearly for
    other widths (packed storage). Other product units cost their 45 nm energy divided by
    the 45 nm energy of a 16-bit MAC.
a dict ``{level: cost}``
    A custom table in the normalised form (keys among dram, glb, array, rf, alu).
``45nm``
    Absolute picojoules from Horowitz (ISSCC 2014, 45 nm, 0.9 V) and Han et al. (NIPS 2015):

    - DRAM: 640 pJ per 32-bit word (20 pJ/bit; Horowitz gives 1.3-2.6 nJ per 64 bits, we
      take the low end, which is Han et al.'s figure).
    - SRAM (global buffer and register file): 64-bit reads cost 10 pJ at 8 KB, 20 pJ at
      32 KB, 100 pJ at 1 MB; energy per bit is interpolated linearly in log(size)-log(energy)
      between these points and extrapolated with the nearest segment (512 B: 0.039 pJ/bit,
      128 KB: 0.59 pJ/bit). *Assumption*: a register file costs what an SRAM of its size
      costs.
    - Array (one inter-PE transfer): twice a 512-B register-file access per bit, the Eyeriss
      ratio (no 45 nm figure exists). *Assumption.*
    - Compute, from the adder and multiplier figures (8-bit add 0.03 pJ, 32-bit add 0.1 pJ,
      8-bit multiply 0.2 pJ, 32-bit multiply 3.1 pJ):

      * add of b bits: linear through the two adder points (``0.03 + (b - 8) * 0.07 / 24``),
        proportional below 8 bits;
      * a x w-bit multiply: ``0.2 * a * w / 64`` (array-multiplier area ~ a*w; gives 3.2 pJ
        at 32 bits against the measured 3.1);
      * a full-adder cell: an 8-bit add / 8 (0.00375 pJ); an XOR, XNOR or 2:1 mux cell:
        half a full adder. *Assumptions.*

      Per product unit (every non-skipped product is also accumulated: one add of the
      accumulator width):

      * ``int``: the multiplier;
      * ``binary``: pass/negate = a row of a_bits XORs, the +1 of the negation is the
        accumulator's carry-in;
      * ``ternary``: as ``binary``; a zero weight is skipped (gated: no product, no add);
      * ``pow2``: shift by 0 or 1 (a row of a_bits + 1 muxes) and the negate row; zero skipped;
      * ``dorefa``: one read of a product word from a table of 2^(w_bits + a_bits) entries,
        priced as an SRAM of that size;
      * ``xnor``: per lane one XNOR and one popcount full adder; the accumulate add is shared
        by the ``lanes`` lanes of a word.

Zero skipping saves only the compute term: the weight is still read to learn it is zero, so
data movement is unchanged. The zero fraction comes from a deployment model when one is
given, else ``default_sparsity`` (ternary: the expectation for Gaussian weights under the TWN
threshold, 0.7 E|w|; every other scheme: 0).

Equal storage area (Eyeriss ISCA 2016, section VI)
--------------------------------------------------
The baseline area of ``pes`` PEs is ``pes x area(512-B RF) + area(pes x 512-B buffer)``.
RS gets 512 B of RF per PE and a ``pes x 512`` B global buffer (128 KB at 256 PEs). Each
other dataflow gets an RF sized to what it keeps there -- WS one weight, OS one partial sum,
NLR nothing -- and the area left over goes to its global buffer. *Assumptions*: a byte of
RF costs ``rf_area_ratio`` (default 2) bytes of buffer area (we did not find the paper's
figure; the normalised ratios move by less than 0.03 between 1 and 4), and the RF sizes of
WS, OS and NLR are our choice (the smallest that holds what they keep, which leaves them the
largest buffer).
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from model.ops import accumulator_width
from model.quant import check_scheme, weight_bits
from sim.dataflows import (DATA_TYPES, DATAFLOWS, LEVELS, CandidateCounts, Hardware, Problem,
                           candidate_counts, describe)
from sim.energy_presets import Layer, layers_from_model, network

__all__ = [
    "COST_TABLES", "ENERGY_LEVELS", "Scheme", "Hardware", "equal_area_hardware",
    "default_sparsity", "add_pj", "multiply_pj", "sram_pj_per_bit", "compute_pj",
    "LayerEnergy", "DataflowEnergy", "EnergyReport", "layer_energy", "network_energy",
    "format_table", "to_json", "write_json", "plot_dataflows", "plot_schemes",
    "parse_dataflows", "resolve_network", "array_counters", "counters_by_type",
    "shape_counters", "array_hardware", "array_energy",
]

ENERGY_LEVELS = LEVELS + ("alu",)
COST_TABLES = ("normalized", "45nm")

# ---------------------------------------------------------------------------------------
# 45 nm figures (Horowitz, ISSCC 2014; Han et al., NIPS 2015).

_ADD8_PJ, _ADD32_PJ = 0.03, 0.1
_MULT8_PJ = 0.2
_DRAM_PJ_PER_BIT = 640.0 / 32
_SRAM_POINTS = ((8 * 1024, 10.0 / 64), (32 * 1024, 20.0 / 64), (1024 * 1024, 100.0 / 64))
_FULL_ADDER_PJ = _ADD8_PJ / 8
_GATE_PJ = _FULL_ADDER_PJ / 2
_HOP_REFERENCE_RF_BYTES = 512


def add_pj(bits: int) -> float:
    """Energy of one ``bits``-bit addition at 45 nm (pJ)."""
    if bits <= 8:
        return _ADD8_PJ * bits / 8
    return _ADD8_PJ + (bits - 8) * (_ADD32_PJ - _ADD8_PJ) / 24


def multiply_pj(a_bits: int, w_bits: int) -> float:
    """Energy of one ``a_bits`` x ``w_bits`` multiplication at 45 nm (pJ)."""
    return _MULT8_PJ * a_bits * w_bits / 64


def sram_pj_per_bit(size_bytes: float) -> float:
    """Read energy per bit of an SRAM of ``size_bytes`` at 45 nm (log-log interpolation)."""
    if size_bytes <= 0:
        raise ValueError(f"SRAM size must be > 0 bytes, not {size_bytes!r}")
    pts = _SRAM_POINTS
    if size_bytes <= pts[1][0]:
        (s0, e0), (s1, e1) = pts[0], pts[1]
    else:
        (s0, e0), (s1, e1) = pts[1], pts[2]
    slope = math.log(e1 / e0) / math.log(s1 / s0)
    return e0 * (size_bytes / s0) ** slope


#: 45 nm energy of the 16-bit MAC that the normalised table calls 1.
REFERENCE_MAC_PJ = multiply_pj(16, 16) + add_pj(16)


@dataclass(frozen=True)
class Scheme:
    """A product scheme and its widths: what the PEs compute and what the words hold.

    ``acc_bits`` ``None`` means: each layer's accumulator width from
    ``model.ops.accumulator_width``. ``w_bits`` ``None``: the scheme's fixed width, or
    ``a_bits`` for ``int``. For ``xnor`` ``a_bits`` = ``w_bits`` = lanes per word and every
    lane counts as one MAC moving 1-bit words.
    """

    name: str = "int"
    a_bits: int = 16
    w_bits: int | None = None
    acc_bits: int | None = None

    def __post_init__(self):
        check_scheme(self.name)
        if isinstance(self.a_bits, bool) or not isinstance(self.a_bits, int) \
                or not 1 <= self.a_bits <= 64:
            raise ValueError(f"a_bits must be an integer in [1, 64], not {self.a_bits!r}")
        if self.name == "xnor" and self.w_bits not in (None, self.a_bits):
            raise ValueError(f"xnor needs a_bits == w_bits (lanes), not {self.a_bits} "
                             f"and {self.w_bits}")
        w = self.w_bits
        if w is None and self.name in ("int", "xnor"):
            w = self.a_bits
        object.__setattr__(self, "w_bits", weight_bits(self.name, w))

    @property
    def label(self) -> str:
        if self.name == "int":
            return f"int{self.w_bits}"
        if self.name == "dorefa":
            return f"dorefa W{self.w_bits}A{self.a_bits}"
        return self.name

    def word_bits(self, data_type: str, acc_bits: int) -> int:
        if data_type == "psums":
            return acc_bits
        if self.name == "xnor":
            return 1
        return self.a_bits if data_type == "inputs" else self.w_bits

    def layer_acc_bits(self, layer: Layer) -> int:
        if self.acc_bits is not None:
            return self.acc_bits
        fan_in = (layer.C // layer.groups) * layer.R * layer.S
        if self.name == "xnor":
            fan_in = math.ceil(fan_in / self.a_bits)
        return accumulator_width(self.name, a_bits=self.a_bits, w_bits=self.w_bits,
                                 fan_in=fan_in)

    def to_dict(self) -> dict:
        return {"name": self.name, "a_bits": self.a_bits, "w_bits": self.w_bits,
                "acc_bits": self.acc_bits}


#: The 16-bit multiplier of the Eyeriss comparison.
INT16 = Scheme("int", 16, 16, 16)


def compute_pj(scheme: Scheme, acc_bits: int) -> dict:
    """45 nm energy of one product and its accumulation (pJ), by part (see module docstring).

    Returns ``{"product": ..., "accumulate": ..., "total": ...}`` for one non-skipped MAC
    (for ``xnor``: one lane).
    """
    a, w = scheme.a_bits, scheme.w_bits
    accumulate = add_pj(acc_bits)
    if scheme.name == "int":
        product = multiply_pj(a, w)
    elif scheme.name in ("binary", "ternary"):
        product = a * _GATE_PJ
    elif scheme.name == "pow2":
        product = (a + 1) * _GATE_PJ + (a + 1) * _GATE_PJ
    elif scheme.name == "dorefa":
        entries = 2 ** (w + a)
        word = max(1, (2 ** w - 1).bit_length() + a + 1)
        product = word * sram_pj_per_bit(entries * word / 8)
    else:  # xnor: per lane, XNOR + popcount adder; the accumulate shared by the lanes
        product = _GATE_PJ + _FULL_ADDER_PJ
        accumulate = accumulate / a
    return {"product": product, "accumulate": accumulate, "total": product + accumulate}


def default_sparsity(scheme: str) -> float:
    """Zero-weight fraction assumed when no model is given (see module docstring)."""
    if scheme == "ternary":
        # P(|w| <= 0.7 E|w|) for Gaussian w: E|w| = sigma sqrt(2/pi).
        return math.erf(0.7 * math.sqrt(2 / math.pi) / math.sqrt(2))
    return 0.0


def _can_skip(scheme: str) -> bool:
    return scheme in ("ternary", "pow2")


# ---------------------------------------------------------------------------------------
# Costs per access.

@dataclass(frozen=True)
class CostTable:
    """Cost of one access per level and of one MAC.

    ``normalized`` and custom tables price a 16-bit word at ``dram``/``glb``/``array``/``rf``
    (linear in the word width) and a MAC at ``alu`` times its 45 nm energy relative to a
    16-bit MAC; ``45nm`` uses the physical figures of the module docstring (the level fields
    are then unused).
    """

    name: str = "normalized"
    dram: float = 200.0
    glb: float = 6.0
    array: float = 2.0
    rf: float = 1.0
    alu: float = 1.0

    @property
    def unit(self) -> str:
        return {"normalized": "MAC-normalised", "45nm": "pJ"}.get(self.name, "custom")

    def access(self, level: str, bits: int, hw: Hardware) -> float:
        """Energy of one access of a ``bits``-bit word at ``level``."""
        if self.name != "45nm":
            return getattr(self, level) * bits / 16
        if level == "dram":
            per_bit = _DRAM_PJ_PER_BIT
        elif level == "glb":
            per_bit = sram_pj_per_bit(hw.glb_bytes)
        elif level == "rf":
            per_bit = sram_pj_per_bit(hw.rf_bytes) if hw.rf_bytes else 0.0
        else:
            per_bit = 2 * sram_pj_per_bit(_HOP_REFERENCE_RF_BYTES)
        return per_bit * bits

    def mac(self, scheme: "Scheme", acc_bits: int) -> float:
        """Energy of one non-skipped MAC."""
        pj = compute_pj(scheme, acc_bits)["total"]
        return pj if self.name == "45nm" else self.alu * pj / REFERENCE_MAC_PJ


def cost_table(costs) -> CostTable:
    """``"normalized"``, ``"45nm"``, a ``CostTable``, or a dict of level costs (custom)."""
    if isinstance(costs, CostTable):
        return costs
    if isinstance(costs, str):
        if costs not in COST_TABLES:
            raise ValueError(f"unknown cost table {costs!r}; allowed: {', '.join(COST_TABLES)}")
        return CostTable(costs)
    if isinstance(costs, dict):
        allowed = ENERGY_LEVELS
        unknown = set(costs) - set(allowed)
        if unknown:
            raise ValueError(f"unknown cost level(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(allowed)}")
        for k, v in costs.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 \
                    or not math.isfinite(v):
                raise ValueError(f"cost of {k!r} must be a finite number >= 0, not {v!r}")
        return CostTable("custom", **{k: float(v) for k, v in costs.items()})
    raise ValueError(f"costs must be one of {', '.join(COST_TABLES)} or a dict of level "
                     f"costs, not {costs!r}")


# ---------------------------------------------------------------------------------------
# Hardware under equal storage area.

def equal_area_hardware(dataflow: str, pes: int = 256, *, rows: int | None = None,
                        cols: int | None = None, baseline_rf_bytes: int = 512,
                        rf_area_ratio: float = 2.0, input_bits: int = 16,
                        weight_bits: int = 16, psum_bits: int = 16) -> Hardware:
    """The hardware ``dataflow`` gets under the storage area of RS (module docstring)."""
    dataflow = check_dataflow(dataflow)
    if isinstance(pes, bool) or not isinstance(pes, int) or pes < 1:
        raise ValueError(f"pes must be a positive integer, not {pes!r}")
    if rows is None and cols is None:
        rows = _near_square_rows(pes)
    if rows is None:
        rows = pes // cols
    if cols is None:
        cols = pes // rows
    if rows * cols != pes:
        raise ValueError(f"a {rows}x{cols} arrangement does not give {pes} PEs")
    if not rf_area_ratio > 0:
        raise ValueError(f"rf_area_ratio must be > 0, not {rf_area_ratio!r}")
    needs = {"rs": baseline_rf_bytes * 8, "ws": weight_bits, "os": psum_bits, "nlr": 0}[dataflow]
    rf_bytes = math.ceil(needs / 8)
    area = pes * baseline_rf_bytes * rf_area_ratio + pes * baseline_rf_bytes
    glb_bytes = int(area - pes * rf_bytes * rf_area_ratio)
    return Hardware(pes=pes, rows=rows, cols=cols, rf_bytes=rf_bytes, glb_bytes=glb_bytes,
                    input_bits=input_bits, weight_bits=weight_bits, psum_bits=psum_bits)


def _near_square_rows(pes: int) -> int:
    rows = int(math.isqrt(pes))
    while pes % rows:
        rows -= 1
    return rows


def check_dataflow(name: str) -> str:
    if name not in DATAFLOWS:
        raise ValueError(f"unknown dataflow {name!r}; allowed: {', '.join(DATAFLOWS)}")
    return name


def parse_dataflows(text: str) -> tuple[str, ...]:
    """``"rs,ws"`` -> ``("rs", "ws")``, refusing unknown or repeated names."""
    names = tuple(n.strip().lower() for n in str(text).split(",") if n.strip())
    if not names:
        raise ValueError(f"no dataflow in {text!r}; allowed: {', '.join(DATAFLOWS)}")
    for n in names:
        check_dataflow(n)
    if len(set(names)) != len(names):
        raise ValueError(f"dataflow listed twice in {text!r}")
    return names


# ---------------------------------------------------------------------------------------
# Energy of layers and networks.

@dataclass
class LayerEnergy:
    """Energy of one layer (all groups, whole batch) under one dataflow.

    ``counts[level][data_type]`` are word accesses, ``energy[level]`` and ``by_type`` the
    energy by level and by data type (``alu`` is the compute term), ``mapping`` the chosen
    mapping of one group.
    """

    layer: Layer
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


def layer_problem(layer: Layer, batch: int) -> Problem:
    """The loop bounds of one group of ``layer`` over ``batch`` images."""
    return Problem(batch, layer.M // layer.groups, layer.C // layer.groups, layer.E, layer.F,
                   layer.R, layer.S, layer.stride)


def layer_energy(layer: Layer, dataflow: str, hw: Hardware, *, batch: int = 1,
                 costs="normalized", scheme: Scheme = INT16,
                 sparsity: float = 0.0) -> LayerEnergy:
    """Least energy of ``layer`` under ``dataflow`` on ``hw`` (searched with ``costs``).

    The search also considers running the batch as two halves one after the other (and so
    on recursively), so that doubling the batch can never more than double the energy.
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
    movement, counts, mapping = _least_movement(layer_problem(layer, 1), batch, dataflow,
                                                hw_words, price)
    g = layer.groups
    counts = {lv: {x: counts[lv][x] * g for x in DATA_TYPES} for lv in LEVELS}
    macs = float(layer.macs(batch))
    skipped = macs * sparsity if _can_skip(scheme.name) else 0.0
    p = dict(zip([(lv, x) for lv in LEVELS for x in DATA_TYPES], price))
    by_level = {lv: sum(counts[lv][x] * p[(lv, x)] for x in DATA_TYPES) for lv in LEVELS}
    by_level["alu"] = (macs - skipped) * table.mac(scheme, acc_bits)
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
    if batch % 2 == 0:
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


def network_energy(layers, *, name: str = "network", dataflows=("rs", "ws", "os", "nlr"),
                   batch: int = 16, pes: int = 256, rows: int | None = None,
                   costs: str = "normalized", scheme=INT16, sparsity=None,
                   hardware: dict | None = None, rf_area_ratio: float = 2.0) -> EnergyReport:
    """Energy of ``layers`` (a preset name or a sequence of ``Layer``) under ``dataflows``.

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


# ---------------------------------------------------------------------------------------
# Our accelerator: its own row-stationary mapping and counters (hw.accelerator).

def _array_keys() -> tuple:
    from hw.schedule import COUNTERS
    return (*COUNTERS, "macs", "rf_reads", "rf_writes")


def array_counters(layer, params=None) -> dict:
    """The counters our accelerator reports for ``layer`` (a ``model.layer_file.Layer``).

    Under the array's own row-stationary mapping (``sim.cycle_model.choose_mapping``), from
    ``sim.cycle_model.predict`` -- the one place that holds the array's folding arithmetic;
    ``skipped`` comes from the layer's weights. Keys: ``hw.schedule.COUNTERS`` and the
    derived ``macs``, ``rf_reads``, ``rf_writes``.
    """
    from sim.cycle_model import ArrayParams, predict
    from sim.run_layer import layer_codes, layer_shape

    params = params or ArrayParams()
    pred = predict(layer_shape(layer), params, weights=layer_codes(layer)[0],
                   scheme=layer.scheme, w_bits=layer.w_bits,
                   codebook=getattr(layer, "codebook", None))
    return {k: int(pred[k]) for k in _array_keys()}


def counters_by_type(layer, params=None) -> dict:
    """How ``glb_reads``, ``glb_writes``, ``rf_reads`` and ``rf_writes`` of
    ``array_counters`` split by data type."""
    from sim.cycle_model import ArrayParams, predict
    from sim.run_layer import layer_shape

    return predict(layer_shape(layer), params or ArrayParams())["by_type"]


def shape_counters(layer: Layer, params=None, *, scheme: Scheme = INT16,
                   weights=None) -> dict:
    """``array_counters`` of a preset-style ``Layer`` (batch 1), without building inputs.

    ``weights`` (codes ``[M, C, R, S]``, one code per channel) give ``skipped``; without them
    it is 0. Channels are packed ``params.lanes`` to a word. Also returns ``by_type``
    (``counters_by_type``).
    """
    from sim.cycle_model import ArrayParams, LayerShape, predict

    if layer.groups != 1:
        raise ValueError(f"layer {layer.name!r}: the accelerator runs one group; split "
                         f"groups={layer.groups} into separate layers")
    params = params or ArrayParams()
    shape = LayerShape(layer.M, layer.C, layer.R, layer.S, layer.H, layer.W, layer.stride,
                       layer.padding)
    pred = predict(shape, params, weights=weights, scheme=scheme.name, w_bits=scheme.w_bits)
    out = {k: int(pred[k]) for k in _array_keys()}
    out["by_type"] = pred["by_type"]
    return out


def _lane_bits(scheme: Scheme, data_type: str) -> int:
    """Bits of one lane's code on our array (``xnor``: 1)."""
    if scheme.name == "xnor":
        return 1
    return scheme.a_bits if data_type == "inputs" else scheme.w_bits


def array_hardware(params=None, *, scheme: Scheme = INT16, acc_bits: int = 16,
                   glb_words: int = 0) -> Hardware:
    """Our array as a ``Hardware`` for pricing: scratchpad bytes per PE (its input
    scratchpad and its share of its row's filter scratchpad, two banks each), buffer bytes;
    words carry ``params.lanes`` codes."""
    from sim.cycle_model import ArrayParams

    params = params or ArrayParams()
    a = params.lanes * _lane_bits(scheme, "inputs")
    w = params.lanes * _lane_bits(scheme, "weights")
    rf_bits = 2 * (params.ifmap_spad * a + params.filter_spad * w / params.cols)
    return Hardware(pes=params.pes, rows=params.rows, cols=params.cols,
                    rf_bytes=math.ceil(rf_bits / 8),
                    glb_bytes=max(1, math.ceil(glb_words * acc_bits / 8)),
                    input_bits=a, weight_bits=w, psum_bits=acc_bits)


def array_energy(layer: Layer, counters: dict, hw: Hardware, *, scheme: Scheme = INT16,
                 costs="45nm", batch: int = 1) -> LayerEnergy:
    """Energy of ``layer`` on our accelerator from its counters.

    ``counters``: ``array_counters`` plus ``by_type`` (``counters_by_type``). With the
    accelerator's counter definitions (``hw.schedule.COUNTERS``) every access has a data
    type and is priced at that type's word width (``hw.input_bits``/``weight_bits``: a word
    of ``lanes`` codes):

    - ``offchip_words``: the layer's weight, input and output words;
    - ``glb_reads``/``glb_writes``: by ``by_type``;
    - register files: the input scratchpad (``slots`` reads, ``input_writes``), the filter
      scratchpads (``filter_reads``, ``filter_writes``); psums stay in the accumulators;
    - ``array_transfers``: psums handed down the columns; compute: ``macs - skipped`` MACs.

    ``batch`` images run one after the other (every count scales with it).
    """
    table = cost_table(costs)
    acc = scheme.layer_acc_bits(layer)
    width = {"inputs": hw.input_bits, "weights": hw.weight_bits, "psums": acc}
    k = counters
    n_in = k["by_type"]["glb_writes"]["inputs"]
    n_w = k["by_type"]["glb_writes"]["weights"]
    n_out = layer.M * layer.E * layer.F
    if k["offchip_words"] != n_w + n_in + n_out:
        raise ValueError(f"counters do not belong to layer {layer.name!r}: "
                         f"{k['offchip_words']} off-chip words, not {n_w + n_in + n_out}")
    macs = k["macs"]
    reads, writes = k["by_type"]["glb_reads"], k["by_type"]["glb_writes"]
    if sum(reads.values()) != k["glb_reads"] or sum(writes.values()) != k["glb_writes"]:
        raise ValueError(f"by_type of layer {layer.name!r} does not add up to its counters")
    counts = {
        "dram": {"inputs": n_in, "weights": n_w, "psums": n_out},
        "glb": {x: reads[x] + writes[x] for x in ("inputs", "weights", "psums")},
        "array": {"inputs": 0, "weights": 0, "psums": k["array_transfers"]},
        "rf": {"inputs": k["slots"] + k["input_writes"],
               "weights": k["filter_reads"] + k["filter_writes"], "psums": 0},
    }
    counts = {lv: {x: float(n) * batch for x, n in c.items()} for lv, c in counts.items()}
    energy_of = {(lv, x): counts[lv][x] * table.access(lv, width[x], hw)
                 for lv in LEVELS for x in DATA_TYPES}
    by_level = {lv: sum(energy_of[(lv, x)] for x in DATA_TYPES) for lv in LEVELS}
    by_type = {x: sum(energy_of[(lv, x)] for lv in LEVELS) for x in DATA_TYPES}
    skipped = k["skipped"] * batch
    by_level["alu"] = by_type["compute"] = (macs * batch - skipped) * table.mac(scheme, acc)
    return LayerEnergy(layer, "rs (our array)", batch, counts, float(macs * batch),
                       float(skipped), by_level, by_type,
                       {"loops": {}, "glb_order": "-", "dram_order": "-"}, acc, scheme)


# ---------------------------------------------------------------------------------------
# Outputs.

def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-2:
        return f"{x:.3e}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.0f}"


def format_table(report: EnergyReport) -> str:
    """Per layer, per dataflow, per level; then totals and the RS ratios by layer kind."""
    levels = ENERGY_LEVELS
    head = ["layer", "dataflow"] + list(levels) + ["total", "per MAC"]
    rows = [head]
    names = [le.layer.name for le in next(iter(report.dataflows.values())).layers]
    for i, lname in enumerate(names):
        for df, d in report.dataflows.items():
            le = d.layers[i]
            rows.append([lname, df.upper()] + [_fmt(le.energy[lv]) for lv in levels]
                        + [_fmt(le.total), _fmt(le.total / le.macs)])
    for kind in report.kinds():
        for df, d in report.dataflows.items():
            lt = d.level_totals(kind)
            total = d.total_of(kind)
            rows.append([f"all {kind}", df.upper()] + [_fmt(lt[lv]) for lv in levels]
                        + [_fmt(total), _fmt(total / d.macs(kind))])
    widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
    lines = [f"{report.network}: batch {report.batch}, {report.scheme_label}, "
             f"energy in {report.unit} units"]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if k > 1 else c.ljust(w)
                               for k, (c, w) in enumerate(zip(r, widths))))
    for kind in report.kinds():
        ratios = report.ratios(kind)
        if ratios:
            lines.append(f"{kind.upper()} layers, energy relative to RS: " + ", ".join(
                f"{df.upper()} {r:.2f}x" for df, r in ratios.items()))
    return "\n".join(lines)


def to_json(report: EnergyReport) -> dict:
    """The report as JSON-ready data: ``dataflows[df]["layers"][layer]`` = total/levels/counts."""
    table = cost_table(report.costs)
    out = {"network": report.network, "batch": report.batch, "costs": table.name,
           "cost_table": {lv: getattr(table, lv) for lv in ENERGY_LEVELS}
           if table.name != "45nm" else "Horowitz 45 nm (see sim.energy)",
           "unit": report.unit,
           "schemes": {n: sc.to_dict() for n, sc in report.schemes.items()},
           "sparsity": report.sparsity, "dataflows": {}, "ratios_to_rs": {}}
    for df, d in report.dataflows.items():
        out["dataflows"][df] = {
            "total": d.total,
            "hardware": d.hardware.to_dict(),
            "description": DATAFLOWS[df].description,
            "layers": {le.layer.name: le.to_dict() for le in d.layers},
        }
    for kind in report.kinds():
        out["ratios_to_rs"][kind] = report.ratios(kind)
    return out


def write_atomically(path, write) -> None:
    """Write ``path`` through a temporary file in its folder, replaced only when complete."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs follow the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(report: EnergyReport, path) -> None:
    data = to_json(report)

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    write_atomically(path, write)


_LEVEL_COLOURS = {"dram": "#4c72b0", "glb": "#55a868", "array": "#c44e52", "rf": "#8172b2",
                  "alu": "#ccb974"}
_TYPE_COLOURS = {"inputs": "#4c72b0", "weights": "#55a868", "psums": "#c44e52",
                 "compute": "#ccb974"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_dataflows(report: EnergyReport, path) -> None:
    """Stacked bars of energy per MAC by level and by data type, per dataflow and layer kind."""
    plt = _pyplot()
    kinds = report.kinds()
    fig, axes = plt.subplots(2, len(kinds), figsize=(5 * len(kinds), 7), squeeze=False)
    names = list(report.dataflows)
    for col, kind in enumerate(kinds):
        for row, (parts, colours, getter) in enumerate((
                (ENERGY_LEVELS, _LEVEL_COLOURS, "level_totals"),
                (DATA_TYPES + ("compute",), _TYPE_COLOURS, "type_totals"))):
            ax = axes[row][col]
            bottom = np.zeros(len(names))
            for part in parts:
                vals = np.array([getattr(report.dataflows[n], getter)(kind)[part]
                                 / report.dataflows[n].macs(kind) for n in names])
                ax.bar([n.upper() for n in names], vals, bottom=bottom, label=part,
                       color=colours[part])
                bottom += vals
            ax.set_title(f"{report.network} {kind.upper()} layers, by "
                         f"{'level' if row == 0 else 'data type'}")
            ax.set_ylabel(f"energy per MAC ({report.unit})")
            ax.legend(fontsize="small")
    fig.suptitle(f"batch {report.batch}, {report.scheme_label}, "
                 f"{next(iter(report.dataflows.values())).hardware.pes} PEs")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format=_image_format(path), dpi=110))
    plt.close(fig)


def _image_format(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return ext or "png"


def plot_schemes(results: dict, path, *, unit: str = "pJ", title: str = "") -> None:
    """Stacked bars of energy per inference by scheme: data movement and compute.

    ``results`` maps a scheme label to the ``LayerEnergy`` list of one inference (or of a
    batch: each layer's energy is divided by its ``batch``).
    """
    plt = _pyplot()
    labels = list(results)
    compute = np.array([sum(le.energy["alu"] / le.batch for le in results[k]) for k in labels])
    movement = np.array([sum(le.data_movement / le.batch for le in results[k])
                         for k in labels])
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 3, 4.2))
    ax.bar(labels, movement, label="data movement", color=_LEVEL_COLOURS["dram"])
    ax.bar(labels, compute, bottom=movement, label="compute", color=_LEVEL_COLOURS["alu"])
    for i, (c, m) in enumerate(zip(compute, movement)):
        ax.annotate(f"{100 * c / (c + m):.1f}% compute", (i, c + m), ha="center",
                    va="bottom", fontsize="small")
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format=_image_format(path), dpi=110))
    plt.close(fig)
