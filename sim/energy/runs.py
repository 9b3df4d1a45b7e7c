"""The energy of what ran: a ``mulfree run-layer`` output priced beside the model's prediction.

``price_run`` reads the layer (LAYER.npz, ``model.layer_file``) and what the accelerator
reported for it (OUT.npz: the outputs and the counters), prices the counters per level
(``sim.energy.array``) and does the same for the counters ``sim.cycle_model.predict``
expects for the same layer on the same array. The two agree exactly when the RTL behaves as
modelled (the tests assert it); where they differ the table shows by how much.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hw.schedule import COUNTERS, DERIVED_COUNTERS
from model.layer_file import load_layer, load_outputs
from sim.cycle_model import ArrayParams, predict
from sim.energy.array import array_energy, array_hardware
from sim.energy.compute import Scheme
from sim.energy.costs import cost_table
from sim.energy.network import LayerEnergy
from sim.energy_presets import NamedLayer

__all__ = ["RunEnergy", "price_run", "split_like", "RUN_PARAMETERS"]


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


def _scheme(layer, lanes: int) -> Scheme:
    """The product scheme of a layer file on PEs of ``lanes`` lanes (``xnor``: 1-bit codes,
    one per lane)."""
    if layer.scheme == "xnor":
        return Scheme("xnor", lanes, lanes)
    if layer.scheme in ("int", "dorefa"):
        return Scheme(layer.scheme, layer.a_bits, layer.w_bits)
    return Scheme(layer.scheme, layer.a_bits)


#: The array parameters a run-layer output records (OUT.npz scalars): ``ArrayParams``' fields.
RUN_PARAMETERS = tuple(f.name for f in dataclasses.fields(ArrayParams))


def price_run(layer_path, out_path, *, costs="45nm", **array) -> RunEnergy:
    """Price OUT.npz (``out_path``) of LAYER.npz (``layer_path``) and the model's prediction.

    The array is the one OUT.npz records (``RUN_PARAMETERS``: ``mulfree run-layer`` writes
    them; one missing takes ``sim.cycle_model.ArrayParams``' default) unless given as a
    keyword (``rows=``, ``filter_spad=``...; None: the run's). ``ValueError`` (one line) when
    the files do not belong together.
    """
    from sim.run_layer import layer_codes, layer_shape

    unknown = sorted(set(array) - set(RUN_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown array parameter {unknown[0]!r}; allowed: "
                         f"{', '.join(RUN_PARAMETERS)}")
    layer = load_layer(layer_path)
    names = COUNTERS + DERIVED_COUNTERS
    try:
        out = load_outputs(out_path, counters=names)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(out_path)!r} is not a run-layer output ({exc})") from None
    if tuple(out["outputs"].shape) != layer.output_shape:
        raise ValueError(f"{str(out_path)!r} holds outputs {list(out['outputs'].shape)} but "
                         f"{str(layer_path)!r} gives {list(layer.output_shape)}: not the same "
                         f"layer")
    defaults = ArrayParams()
    values = {}
    for name in RUN_PARAMETERS:
        value = array.get(name)
        if value is None:
            value = out.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{str(out_path)!r}: {name} must be an integer, not {value!r}")
        values[name] = value
    # a grouped layer ran its groups one after the other (AcceleratorConfig.groups)
    values["groups"] = max(values["groups"], layer.groups)
    params = ArrayParams(**values)
    shape = layer_shape(layer)
    pred = predict(shape, params, weights=layer_codes(layer)[0], scheme=layer.scheme,
                   w_bits=layer.w_bits, codebook=layer.codebook)
    scheme = _scheme(layer, params.lanes)
    named = NamedLayer(Path(layer_path).stem, shape)
    ran = {k: int(out[k]) for k in names}
    model = {k: int(pred[k]) for k in names}
    acc = scheme.layer_acc_bits(named)
    hw = array_hardware(params, scheme=scheme, acc_bits=acc, glb_words=ran["offchip_words"])
    by_type = pred["by_type"]
    ran_split = {name: split_like(by_type[name], ran[name]) for name in by_type}
    mapping = {k: int(out[k]) for k in ("q", "p", "Fseg") if k in out}
    return RunEnergy(
        named, scheme, (params.rows, params.cols), mapping or {"q": pred["mapping"].q,
                                                               "p": pred["mapping"].p,
                                                               "Fseg": pred["mapping"].Fseg},
        ran, model,
        array_energy(named, dict(ran, by_type=ran_split), hw, scheme=scheme, costs=costs,
                     lanes=params.lanes),
        array_energy(named, dict(model, by_type=by_type), hw, scheme=scheme, costs=costs,
                     lanes=params.lanes),
        cost_table(costs).unit)
