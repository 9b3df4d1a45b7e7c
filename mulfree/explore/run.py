"""``explore``: evaluate a design space on a Dask cluster, then mark the Pareto front.

The steps, each a batch of Dask tasks (``mulfree.explore.tasks``):

1. the cheap estimate of every point (cycle model, energy model, area formula); points whose
   layers do not map are recorded as failed, points that cannot fit by the formula as pruned;
2. synthesis (Yosys and nextpnr's packer) of the remaining points, or of the ``max_points``
   most promising ones by the estimate; results come from the cache where they can;
3. with ``place``, place and route of the Pareto points, then images/s rescored at the clock
   each design reaches (the board clock, or its fmax if lower) and the front marked again.

Tasks are submitted with ``retries=1``; a worker that dies loses only the task it was running,
which the scheduler gives to another worker. Every finished result is written to the cache as
it arrives, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys

from mulfree.explore import tasks
from mulfree.explore.cache import Cache
from mulfree.explore.estimate import prune_reason
from mulfree.explore.pareto import choose, mark_pareto
from mulfree.explore.space import point_name

__all__ = ["Exploration", "explore", "connect", "SCHEDULER_TIMEOUT_S"]

#: Seconds to wait for a ``--scheduler`` to answer before refusing it.
SCHEDULER_TIMEOUT_S = 10


@dataclasses.dataclass
class Exploration:
    """What a run found: every point (the ``points.json`` records) and the chosen one."""

    points: list
    chosen: dict | None
    counts: dict


class MissingDask(ValueError):
    """Dask is not installed (the ``explore`` extra): one line, exit status 2."""


class SchedulerUnreachable(ValueError):
    """``--scheduler`` did not answer (bad input: one line, exit status 2)."""


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None):
    """A ``dask.distributed.Client``: of the cluster at ``scheduler``, or of a new
    ``LocalCluster`` of ``workers`` processes with one thread each (closed afterwards)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        missing = (exc.name or "distributed").split(".")[0]
        raise MissingDask(f"mulfree explore needs the explore extra ({missing} is missing): "
                          "pip install 'mulfree[explore]'") from None

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachable(f"cannot reach the Dask scheduler {scheduler!r} "
                                       f"({' '.join(str(exc).split()) or type(exc).__name__})"
                                       "; give the address `dask scheduler` prints, e.g. "
                                       "tcp://host:8786") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


class _Progress:
    """Points done / failed / cached: a tqdm bar on a terminal, else a line per point."""

    def __init__(self, total: int, what: str, say):
        self.counts = {"done": 0, "failed": 0, "cached": 0}
        self._say, self._what, self._total = say, what, total
        self._bar = None
        if total and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=what, unit="point", file=sys.stderr)

    def step(self, outcome: str, name: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if self._bar is not None:
            self._bar.set_postfix(self.counts, refresh=False)
            self._bar.update(1)
        else:
            n = sum(self.counts.values())
            self._say(f"{self._what} {n}/{self._total}: {name} {outcome}"
                      f"{' (' + detail + ')' if detail else ''} -- done {self.counts['done']}, "
                      f"failed {self.counts['failed']}, cached {self.counts['cached']}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _record(params: dict) -> dict:
    return {"params": params, "estimate": None, "area": None, "fmax_mhz": None,
            "images_per_s": None, "energy_nj": None, "fits": None, "pareto": False,
            "status": "ok", "reason": None}


def _promise(objective: str):
    """Sort key of the most promising points by the estimate, for ``max_points``."""
    if objective == "energy":
        return lambda p: (p["estimate"]["energy_nj"], -p["estimate"]["images_per_s"])
    if objective == "luts":
        return lambda p: ((p["estimate"]["area"] or {}).get("logic", 0),
                          -p["estimate"]["images_per_s"])
    return lambda p: (-p["estimate"]["images_per_s"],
                      (p["estimate"]["area"] or {}).get("logic", 0))


def _run_step(client, step: str, function, model, board: str, records: list, cache: Cache,
              say, apply) -> dict:
    """Run ``function`` for each record (from ``cache`` where it has the result), ``apply``
    each result to its record; a failure sets status ``failed`` and its reason."""
    from distributed import as_completed

    progress = _Progress(len(records), step, say)
    futures = {}
    try:
        for rec in records:
            cached = cache.get(step, rec["params"])
            if cached is not None:
                apply(rec, cached)
                rec["status"] = "cached"
                progress.step("cached", point_name(rec["params"]))
                continue
            future = client.submit(function, model, board, rec["params"], retries=1,
                                   key=f"{step}-{cache.key(step, rec['params'])}")
            futures[future] = rec
        for future in as_completed(list(futures)):
            rec = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - every failure is recorded with its reason
                rec["status"], rec["reason"] = "failed", f"{step}: {_reason(exc)}"
                progress.step("failed", point_name(rec["params"]), rec["reason"])
                continue
            cache.put(step, rec["params"], result)
            apply(rec, result)
            progress.step("done", point_name(rec["params"]))
    finally:
        progress.close()
    return progress.counts


def _apply_synthesis(rec: dict, result: dict, logic: str) -> None:
    rec["area"] = {logic: result["logic"], "brams": result["brams"], "dsps": result["dsps"]}
    rec["fits"] = bool(result["fits"])
    if not rec["fits"]:
        rec["reason"] = (f"does not fit: {result['logic']:,} {logic} of "
                         f"{result['logic_available']:,}, {result['brams']} block RAMs of "
                         f"{result['brams_available']}")


def _apply_placement(rec: dict, result: dict) -> None:
    rec["fmax_mhz"] = result["fmax_mhz"]
    estimate = rec["estimate"]
    if result["fmax_mhz"]:
        clock = min(estimate["clock_mhz"], result["fmax_mhz"])
        rec["images_per_s"] = clock * 1e6 / estimate["cycles"]


def explore(model_bytes: bytes, board: str, points: list[dict], *, client, cache: Cache,
            family: str | None, device: str, max_points: int | None = None,
            place: bool = False, objective: str = "images_per_s", say=print) -> Exploration:
    """Evaluate ``points`` (``mulfree.explore.space``) of ``board`` on ``client``'s cluster."""
    from mulfree.explore.estimate import logic_name

    logic = logic_name(family)
    records = [_record(p) for p in points]
    # The bytes go with each task (not scattered): scattered data has no recipe, so a worker
    # that dies holding it would take the tasks that need it down with it.
    model = model_bytes
    counts = {}

    class _NoCache:          # estimates take less than a second: always computed afresh
        def get(self, step, params):
            return None

        def put(self, step, params, result):
            pass

        def key(self, step, params):
            return cache.key(step, params)

    def apply_estimate(rec, result):
        rec["estimate"] = result
        rec["images_per_s"], rec["energy_nj"] = result["images_per_s"], result["energy_nj"]

    counts["estimate"] = _run_step(client, "estimate", tasks.estimate_point, model, board,
                                   records, _NoCache(), say, apply_estimate)
    estimated = [r for r in records if r["status"] != "failed"]
    for rec in estimated:
        reason = prune_reason(rec["estimate"]["area"], device)
        if reason:
            rec["status"], rec["reason"], rec["fits"] = "pruned", reason, False
    chosen_for_synthesis = sorted((r for r in estimated if r["status"] != "pruned"),
                                  key=_promise(objective))
    if max_points is not None:
        for rec in chosen_for_synthesis[max_points:]:
            rec["status"] = "pruned"
            rec["reason"] = f"not among the {max_points} most promising points (--max-points)"
        chosen_for_synthesis = chosen_for_synthesis[:max_points]
    say(f"{len(records)} points: {len(records) - len(estimated)} failed, "
        f"{len(estimated) - len(chosen_for_synthesis)} pruned, "
        f"{len(chosen_for_synthesis)} to synthesize")
    counts["synthesis"] = _run_step(client, "synthesis", tasks.synthesize_point, model, board,
                                    chosen_for_synthesis, cache, say,
                                    lambda rec, res: _apply_synthesis(rec, res, logic))
    mark_pareto(records)
    if place:
        front = [r for r in records if r["pareto"]]
        placed_before = {id(r): r["status"] for r in front}
        counts["placement"] = _run_step(client, "placement", tasks.place_point, model, board,
                                        front, cache, say, _apply_placement)
        for rec in front:
            if rec["status"] == "failed":
                rec["fits"] = False
            elif placed_before[id(rec)] == "ok":
                rec["status"] = "ok"    # synthesized in this run; placement from the cache or not
        mark_pareto(records)
    return Exploration(records, choose(records, objective), counts)
