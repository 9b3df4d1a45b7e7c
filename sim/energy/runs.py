"""The energy of what ran: a ``mulfree run-layer`` output priced beside the model's prediction.

``price_run`` reads the layer (LAYER.npz, ``model.layer_file``) and what the accelerator
reported for it (OUT.npz: the outputs and the counters), prices the counters per level
(``sim.energy.array``) and does the same for the counters ``sim.cycle_model.predict``
expects for the same layer on the same array. The two agree exactly when the RTL behaves as
modelled (the tests assert it); where they differ the table shows by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.layer_file import load_layer, load_outputs
from model.shapes import LayerShape
from sim.energy.array import array_energy, array_hardware
from sim.energy.compute import Scheme
from sim.energy.costs import cost_table
from sim.energy.network import LayerEnergy
from sim.energy_presets import NamedLayer

__all__ = ["RunEnergy", "price_run", "split_like"]


@dataclass
class RunEnergy:
    """One layer's run: its counters and energy, beside the model's for the same layer."""

    layer: NamedLayer
    scheme: Scheme
    array: tuple[int, int]
    mapping: dict
    ran: dict
    model: dict
    ran_energy: LayerEnergy
    model_energy: LayerEnergy
    unit: str

    @property
    def counters_equal(self) -> bool:
        return all(self.ran[k] == self.model[k] for k in self.ran)

    def to_dict(self) -> dict:
        return {"layer": self.layer.to_dict(), "scheme": self.scheme.to_dict(), "unit": self.unit,
                "array": list(self.array), "mapping": self.mapping,
                "counters": {"ran": self.ran, "model": self.model},
                "counters_equal": self.counters_equal,
                "ran": self.ran_energy.to_dict(), "model": self.model_energy.to_dict()}


def split_like(parts: dict, total: int) -> dict:
    """``total`` divided among the keys of ``parts`` in their proportions (integers, the
    rounding remainder to the last key); ``parts`` itself when it already adds up."""
    have = sum(parts.values())
    if have == total:
        return dict(parts)
    keys = list(parts)
    out = {k: (parts[k] * total // have if have else 0) for k in keys}
    out[keys[-1]] += total - sum(out.values())
    return out


def _scheme(layer) -> Scheme:
    if layer.scheme == "xnor":
        return Scheme("xnor", layer.a_bits, layer.a_bits)
    if layer.scheme in ("int", "dorefa"):
        return Scheme(layer.scheme, layer.a_bits, layer.w_bits)
    return Scheme(layer.scheme, layer.a_bits)


def price_run(layer_path, out_path, *, filter_spad: int = 32, ifmap_spad: int = 32,
              psum_spad: int = 32, rows: int | None = None, cols: int | None = None,
              costs="45nm") -> RunEnergy:
    """Price OUT.npz (``out_path``) of LAYER.npz (``layer_path``) and the model's prediction.

    The array is OUT.npz's (its ``rows`` and ``cols``) unless ``rows``/``cols`` are given;
    the scratchpad sizes are those the run used (``mulfree run-layer``'s defaults unless
    told). ``ValueError`` (one line) when the files do not belong together.
    """
    from sim.cycle_model import COUNTERS, ArrayParams, predict

    layer = load_layer(layer_path)
    try:
        out = load_outputs(out_path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(out_path)!r} is not a run-layer output ({exc})") from None
    if tuple(out["outputs"].shape) != layer.output_shape:
        raise ValueError(f"{str(out_path)!r} holds outputs {list(out['outputs'].shape)} but "
                         f"{str(layer_path)!r} gives {list(layer.output_shape)}: not the same "
                         f"layer")
    rows = int(out.get("rows", 3)) if rows is None else rows
    cols = int(out.get("cols", 4)) if cols is None else cols
    params = ArrayParams(rows, cols, filter_spad, ifmap_spad, psum_spad)
    shape = LayerShape.of(layer.weights.shape, layer.inputs.shape, layer.stride, layer.padding)
    pred = predict(shape, params, weights=layer.weights, scheme=layer.scheme,
                   w_bits=layer.w_bits, codebook=layer.codebook)
    scheme = _scheme(layer)
    lanes = scheme.a_bits if scheme.name == "xnor" else 1
    named = NamedLayer(Path(layer_path).stem, LayerShape(
        shape.M, shape.C * lanes, shape.R, shape.S, shape.H, shape.W, shape.stride,
        shape.padding))
    ran = {k: int(out[k]) for k in COUNTERS}
    model = {k: int(pred[k]) for k in COUNTERS}
    acc = scheme.layer_acc_bits(named)
    hw = array_hardware(params, scheme=scheme, acc_bits=acc, glb_words=ran["offchip_words"])
    by_type = pred["by_type"]
    ran_split = {name: split_like(by_type[name], ran[name]) for name in by_type}
    mapping = {k: int(out[k]) for k in ("q", "p", "Fseg") if k in out}
    return RunEnergy(
        named, scheme, (rows, cols), mapping or {"q": pred["mapping"].q,
                                                 "p": pred["mapping"].p,
                                                 "Fseg": pred["mapping"].Fseg},
        ran, model,
        array_energy(named, dict(ran, by_type=ran_split), hw, scheme=scheme, costs=costs),
        array_energy(named, dict(model, by_type=by_type), hw, scheme=scheme, costs=costs),
        cost_table(costs).unit)
