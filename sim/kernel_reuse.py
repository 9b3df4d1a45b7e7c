"""The reuse mapping of repeated binary filter rows: a first-order cycle and energy model.

``model.kernels`` counts, exactly, what a layer with +/-1 weights needs when every distinct
filter row (up to sign) is convolved with an input row once and its partial sums are reused
-- negated where needed -- by every filter row equal to it: ``products`` MACs plus ``adds``
partial-sum additions, against the plain layer's ``macs`` (``model.kernels.reuse_counts``;
``reuse_conv2d`` is its golden model, equal to ``model.ops.conv2d``).

This module prices that on our array, starting from the plain layer under the array's own
mapping (``sim.cycle_model.choose_mapping``, ``predict`` and ``utilisation_breakdown``;
``sim.energy.shape_counters`` and ``array_energy`` at 45 nm). Assumptions, first order:

- every MAC and every reuse addition takes one slot of a PE (on a pass/negate unit a MAC
  *is* a negate-and-add, the same operation as adding a negated partial sum), so the compute
  slots of the layer's passes scale by ``(products + adds) / macs``; the set-up, the waits
  for weights, inputs and old partial sums and the tail are kept as they are (the weights
  shrink to the distinct rows plus an index and a sign per row, which would only shorten
  the weight waits);
- register-file traffic: a MAC reads an input word and a filter word, a reuse addition
  reads the shared partial sum and the row's index and sign -- two reads each, as a MAC
  (the input and filter scratchpad reads scale with the slots); the buffer, inter-PE and
  off-chip counts of the plain mapping are kept;
- compute energy: an addition costs what one MAC of the layer's scheme costs.

An ``xnor`` layer runs on PEs of as many lanes as its words hold (one word per slot).
What it leaves out is the hardware that makes reuse possible: keeping ``D`` distinct partial
sums per input row in the PE (a store of ``D`` x the segment length, which the array's PEs
do not have: their partial sums pass down the column) and, for the ``input_row`` scope,
sharing them between the PEs of a diagonal. The model therefore bounds
what reuse can save; it does not prove an implementation reaches it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model import kernels
from sim import energy
from sim.cycle_model import ArrayParams, LayerShape, choose_mapping, utilisation_breakdown
from sim.energy_presets import NamedLayer

__all__ = ["ReuseEstimate", "estimate"]


@dataclass(frozen=True)
class ReuseEstimate:
    """A binary layer on the array, plain and with reuse (cycles, energy in pJ at 45 nm)."""

    name: str
    scope: str
    counts: kernels.ReuseCounts
    cycles_plain: int
    cycles_reuse: int
    energy_plain_pj: float
    energy_reuse_pj: float
    compute_energy_plain_pj: float
    compute_energy_reuse_pj: float

    @property
    def cycles_saved(self) -> float:
        return 1.0 - self.cycles_reuse / self.cycles_plain

    @property
    def energy_saved(self) -> float:
        return 1.0 - self.energy_reuse_pj / self.energy_plain_pj


def estimate(scheme: str, weights, *, height: int, width: int, stride: int = 1,
             padding: int = 0, a_bits: int, lanes: int = 1, params: ArrayParams | None = None,
             scope: str = "input_row", name: str = "layer") -> ReuseEstimate:
    """The plain and the reuse mapping of a ``binary`` or ``xnor`` layer on ``params``'s array.

    ``weights`` are codes ``[M, C, R, S]`` (``xnor``: words of ``lanes`` lanes, C words);
    ``a_bits`` the activation width of a ``binary`` layer (``xnor``: the lanes).
    """
    params = params or ArrayParams()
    w = np.asarray(weights)
    m, c, r, s = w.shape
    counts = kernels.reuse_counts(scheme, w, height=height, width=width, stride=stride,
                                  padding=padding, lanes=lanes, scope=scope)
    words = lanes if scheme == "xnor" else 1      # channels per word (and lanes of the PE)
    if scheme == "xnor":
        params = dataclasses.replace(params, lanes=lanes)
    shape = LayerShape(m, c * words, r, s, height, width, stride, padding)
    mapping = choose_mapping(shape, params)
    parts = utilisation_breakdown(shape, params, mapping)
    if parts["macs"] != counts.macs * words:
        raise AssertionError(f"MACs differ: cycle model {parts['macs']}, "
                             f"model.kernels {counts.macs} words of {words}")
    ratio = (counts.products + counts.adds) / counts.macs
    compute = int(round(parts["compute"] * ratio))
    cycles_reuse = parts["cycles"] - parts["compute"] + compute

    layer = NamedLayer(name, shape)
    sc = energy.Scheme("xnor", lanes, lanes) if scheme == "xnor" else \
        energy.Scheme("binary", a_bits)
    plain = energy.shape_counters(layer, params, scheme=sc)
    if plain["cycles"] != parts["cycles"]:
        raise AssertionError("the energy model and the cycle model disagree on the cycles")
    hw = energy.array_hardware(params, scheme=sc, acc_bits=sc.layer_acc_bits(layer),
                               glb_words=plain["offchip_words"])
    before = energy.array_energy(layer, plain, hw, scheme=sc, costs="45nm")
    # every slot (a MAC, or a reuse addition) reads its input-side and filter-side words
    slots = int(round(plain["slots"] * ratio))
    filter_reads = int(round(plain["filter_reads"] * ratio))
    reuse = dict(plain, cycles=cycles_reuse, slots=slots, filter_reads=filter_reads,
                 macs=(counts.products + counts.adds) * words, rf_reads=slots + filter_reads,
                 by_type=dict(plain["by_type"],
                              rf_reads={"inputs": slots, "weights": filter_reads}))
    after = energy.array_energy(layer, reuse, hw, scheme=sc, costs="45nm")
    return ReuseEstimate(name, scope, counts, int(parts["cycles"]), int(cycles_reuse),
                         before.total, after.total, before.energy["alu"],
                         after.energy["alu"])
