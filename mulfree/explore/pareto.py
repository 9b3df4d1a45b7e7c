"""The Pareto front of explored points and the point chosen by an objective.

A point is on the front when it fits the device and no other fitting point is at least as good
in all three of images/s (higher is better), logic (LUTs or logic cells, lower) and energy per
image (lower), and better in one.
"""

from __future__ import annotations

__all__ = ["OBJECTIVES", "candidates", "mark_pareto", "choose", "logic_of"]

#: ``--objective`` names: what the chosen point is best in (ties: the next ones).
OBJECTIVES = ("images_per_s", "energy", "luts")


def logic_of(point: dict) -> int | None:
    """The point's logic (``area["lcs"]`` or ``area["luts"]``), or None."""
    area = point.get("area") or {}
    return area.get("lcs", area.get("luts"))


def candidates(points: list[dict]) -> list[dict]:
    """Points measured to fit: synthesized (``ok`` or ``cached``), with ``fits`` true."""
    return [p for p in points if p["status"] in ("ok", "cached") and p["fits"]
            and logic_of(p) is not None and p["images_per_s"] is not None]


def _scores(point: dict) -> tuple:
    return (point["images_per_s"], -logic_of(point), -point["energy_nj"])


def _dominates(a: tuple, b: tuple) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def mark_pareto(points: list[dict]) -> None:
    """Set every point's ``pareto``."""
    pool = candidates(points)
    scores = [_scores(p) for p in pool]
    front = {id(p) for p, s in zip(pool, scores) if not any(_dominates(t, s) for t in scores)}
    for p in points:
        p["pareto"] = id(p) in front


def _rank(objective: str):
    if objective == "images_per_s":
        return lambda p: (-p["images_per_s"], logic_of(p), p["energy_nj"])
    if objective == "energy":
        return lambda p: (p["energy_nj"], -p["images_per_s"], logic_of(p))
    if objective == "luts":
        return lambda p: (logic_of(p), -p["images_per_s"], p["energy_nj"])
    raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")


def choose(points: list[dict], objective: str) -> dict | None:
    """The Pareto point best in ``objective`` (None when no point fits)."""
    front = [p for p in points if p.get("pareto")]
    return min(front, key=_rank(objective)) if front else None
