"""The work of one design point, as functions a Dask worker runs.

Each takes the model file's bytes (workers need not share a file system with the client), the
board name and the point's parameters (``mulfree.explore.space``), and returns plain JSON-able
values. A point that cannot be built (its layers do not map onto the array, a tool fails)
raises; the client records the reason.

- ``estimate_point``: the cycle model over every layer, the energy per image and the area
  formula (``mulfree.explore.estimate``); well under a second.
- ``synthesize_point``: Yosys synthesis and nextpnr's packer through the build flow's
  synthesis-only path (``boards.build.estimate``): the exact resources of the packed design.
- ``place_point``: the whole build flow (``boards.build.build``: place and route) in a
  temporary folder: the achieved fmax.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

__all__ = ["estimate_point", "synthesize_point", "place_point", "accelerator"]


@contextlib.contextmanager
def _model_file(model_bytes: bytes):
    with tempfile.TemporaryDirectory(prefix="mulfree-explore-") as tmp:
        path = Path(tmp) / "model.npz"
        path.write_bytes(model_bytes)
        yield path


def _array(params: dict):
    from sim.cycle_model import ArrayParams
    return ArrayParams(params["rows"], params["cols"], params["lanes"], params["spad"],
                       params["spad"], params["tree_stages"])


def accelerator(path, params: dict):
    """The ``AcceleratorConfig`` ``mulfree build --model path`` builds at this point's size,
    and its one-line description; ``ValueError`` when the model's layers cannot run on it."""
    from mulfree.commands.build import _model_args
    from mulfree.errors import UsageError
    try:
        return _model_args(path, _array(params), None)
    except UsageError as exc:
        raise ValueError(str(exc).replace(str(path), "the model")) from None


def estimate_point(model_bytes: bytes, board: str, params: dict) -> dict:
    """Cycles per image, utilisation, images/s at the board clock, energy per image (nJ) and
    the area formula's ``{"logic", "brams"}`` of one point."""
    from boards.platforms import find_board
    from mulfree.explore.estimate import area_estimate
    from sim.model_cost import model_cost, totals

    described = find_board(board).describe()
    with _model_file(model_bytes) as path:
        config, _ = accelerator(path, params)
        costs = model_cost(path, _array(params))
    total = totals(costs)
    cycles = int(total["cycles"])
    busy = sum(c.utilisation * c.cycles for c in costs)
    clock_hz = described["clock_hz"]
    return {
        "cycles": cycles,
        "utilisation": round(busy / cycles, 4),
        "clock_mhz": clock_hz / 1e6,
        "images_per_s": clock_hz / cycles,
        "energy_nj": total["energy_pj"] / 1e3,
        "energy_by_level_nj": {lv: pj / 1e3 for lv, pj in total["energy_by_level_pj"].items()},
        "area": area_estimate(config, described["family"]),
        "accelerator": config.to_dict(),
    }


def _resources(utilisation) -> dict:
    found = {u.resource: (u.used, u.available) for u in utilisation}
    logic = found.get("logic cells") or found.get("LUT4") or (0, 0)
    return {"logic": logic[0], "logic_available": logic[1],
            "brams": found.get("block RAM", (0, 0))[0],
            "brams_available": found.get("block RAM", (0, 0))[1],
            "dsps": found.get("DSP", (0, 0))[0],
            "fits": all(used <= available for used, available in found.values())}


def synthesize_point(model_bytes: bytes, board: str, params: dict) -> dict:
    """The packed design's resources (``_resources``) and the seconds it took."""
    from boards.accelerator import AcceleratorTarget
    from boards.build import estimate
    from boards.top import BoardTop

    started = time.monotonic()
    with _model_file(model_bytes) as path:
        config, _ = accelerator(path, params)
    packed = estimate(board, BoardTop(lambda: AcceleratorTarget(config)))
    return dict(_resources(packed), seconds=round(time.monotonic() - started, 1),
                worker_pid=os.getpid())


def place_point(model_bytes: bytes, board: str, params: dict) -> dict:
    """Place and route the point (``boards.build.build``): the slowest clock's fmax (MHz) and
    the placed design's resources; raises ``boards.build.BuildError`` when a tool fails."""
    from boards.accelerator import AcceleratorTarget
    from boards.build import build
    from boards.top import BoardTop

    started = time.monotonic()
    with _model_file(model_bytes) as path:
        config, _ = accelerator(path, params)
        report = build(board, BoardTop(lambda: AcceleratorTarget(config)),
                       path.parent / "build")
    return dict(_resources(report.utilisation),
                fmax_mhz=min(report.fmax_mhz.values()) if report.fmax_mhz else None,
                seconds=round(time.monotonic() - started, 1))
