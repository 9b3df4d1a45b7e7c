"""``mulfree explore`` measured: the synthesis sweep on 1 and 2 Dask workers, the area formula
against synthesis, and the Pareto front of binarynet on the digits for the iCEBreaker against
``mulfree build``'s default size.

    python benchmarks/explore.py --out build/explore-bench [--model MODEL.npz] [--points 32]
        [--build-default] [--place]
    python benchmarks/explore.py --out build/explore-bench --ulx3s [--workers 1] [--place]
    python benchmarks/explore.py --out build/explore-bench --errors build/explore-bench/sweep-1
    python benchmarks/explore.py --out build/explore-bench --fit build/explore-bench/ulx3s

Without ``--model`` a binarynet is trained on scikit-learn's 8x8 digits (``mulfree train``).
The sweep is the iCEBreaker's default space (``mulfree.explore.space``), the ``--points`` most
promising points by the estimate (``--max-points``), synthesized twice from an empty cache:
on a LocalCluster of 1 worker, then of 2. ``--place`` reruns the 2-worker sweep from its
cache with ``--place`` (place and route of the Pareto points); ``--build-default`` runs
``mulfree build --board icebreaker --model MODEL.npz`` (its own size search) for the
default's size and fmax. Prints Markdown tables (``docs/explore.md``).

``--ulx3s``: an MNIST-shaped binarynet (1x28x28) on the ULX3S-85F, ``ULX3S_SPACE`` on a
LocalCluster of ``--workers`` (default 1: each synthesis is one single-threaded process), every
point that may fit synthesized (or the ``--points`` most promising, and ``mulfree build``'s
default 3x4 in any case); the front, the area formula's error and the chosen point against the
default. With ``--place`` both are placed and routed (``mulfree explore --place`` on each one
alone; a placement still running after ``--place-minutes`` is stopped and its fmax reported
as not measured) and compared at the clock they reach. ``--fit DIR...`` prints the
least-squares logic formula (``mulfree.explore.estimate``) from explore output folders.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _mulfree(*argv, check=True, timeout=None) -> tuple[float, subprocess.CompletedProcess | None]:
    """Run ``python -m mulfree ARGV``: (seconds, the finished process, or None when it was
    stopped after ``timeout`` seconds, with every process it started)."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "mulfree", *map(str, argv)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)    # its Dask workers and tools too
        process.communicate()
        return time.monotonic() - started, None
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)
        raise
    seconds = time.monotonic() - started
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        sys.exit(f"mulfree {' '.join(map(str, argv))} failed:\n{result.stderr[-2000:]}")
    return seconds, result


def _points(folder: Path) -> list[dict]:
    return json.loads((folder / "points.json").read_text())["points"]


def _name(p: dict) -> str:
    from mulfree.explore.space import point_name
    return point_name(p["params"])


def sweep(model: Path, out: Path, points: int, workers: int) -> tuple[float, list[dict]]:
    seconds, _ = _mulfree("explore", "--model", model, "--board", "icebreaker", "-o",
                          out / f"sweep-{workers}", "--cache", out / f"cache-{workers}",
                          "--workers", workers, "--max-points", points, "--force")
    return seconds, _points(out / f"sweep-{workers}")


def _errors(points: list[dict]) -> list[str]:
    """The area formula's error (``estimate.area``) against synthesis (``area``)."""
    from mulfree.explore.pareto import logic_of
    rows = []
    for noun, formula, real in (("logic cells" if any("lcs" in p["area"] for p in points)
                                 else "LUT4", lambda p: p["estimate"]["area"]["logic"],
                                 logic_of),
                                ("block RAMs", lambda p: p["estimate"]["area"]["brams"],
                                 lambda p: p["area"]["brams"])):
        errors = [(formula(p) - real(p)) / real(p) for p in points if p["area"]]
        rows.append(f"| {noun} | {len(errors)} | {statistics.mean(errors):+.1%} | "
                    f"{statistics.mean(abs(x) for x in errors):.1%} | "
                    f"{max(errors, key=abs):+.1%} |")
    return ["| resource | points | mean error | mean abs. error | worst |",
            "|---|---|---|---|---|", *rows]


#: The ULX3S sweep: ``mulfree build``'s default 3x4 and arrays around the network's shapes (5x5
#: filters: rows 5 fill the array's height; 28- and 14-wide maps: cols 7, 14, 28). One lane and
#: 32-word scratchpads: for this network more lanes change no cycle count and 16 or 64 words move
#: the cycles by 2-3 % (the estimate), only costing logic.
ULX3S_SPACE = ("rows = [3, 5, 6, 8, 12]\ncols = [4, 7, 14, 28]\nlanes = [1]\nspad = [32]\n"
               "tree_stages = [0]\n")


def _build_default() -> dict:
    """The point ``mulfree build --design accelerator`` builds without a size (its defaults)."""
    from mulfree.commands.build import DEFAULTS
    from mulfree.explore.space import DIMENSIONS
    return {name: DEFAULTS[name] for name in DIMENSIONS}


def _space_file(path: Path, params: dict) -> Path:
    path.write_text("".join(f"{k} = [{v}]\n" for k, v in params.items()))
    return path


def _place(model: Path, out: Path, cache: Path, params: dict, workers: int,
           minutes: float) -> tuple[float, dict | None, str]:
    """``mulfree explore --place`` on the one point ``params`` (its synthesis from ``cache``):
    (seconds, the placed point or None, why not); stopped after ``minutes``."""
    name = "x".join(str(params[k]) for k in ("rows", "cols"))
    space = _space_file(out / f"place-{name}.toml", params)
    folder = out / f"ulx3s-place-{name}"
    seconds, result = _mulfree("explore", "--model", model, "--board", "ulx3s-85f", "-o",
                               folder, "--cache", cache, "--workers", workers, "--space",
                               space, "--place", "--force", check=False,
                               timeout=60 * minutes)
    if result is None:
        return seconds, None, f"place and route not finished after {minutes:.0f} min"
    if result.returncode != 0:
        return seconds, None, " ".join(result.stderr.split())[-300:]
    placed = _points(folder)[0]
    if placed["status"] == "failed":
        return seconds, None, placed["reason"]
    return seconds, placed, ""


def ulx3s(out: Path, points: int | None, workers: int, place: bool, minutes: float) -> None:
    """An MNIST-shaped binarynet (1x28x28, untrained: cycles and area depend on the shapes
    only) on the ULX3S-85F: ``ULX3S_SPACE`` estimated, the fitting points (at most ``points``,
    the most promising) and ``mulfree build``'s default size synthesized; with ``place``, the
    chosen point and the default placed and routed and compared at the clock they reach."""
    from mulfree.explore.space import point_name
    from model import deploy, nets
    model = out / "binarynet-28x28.npz"
    if not model.exists():
        net = nets.build("binarynet", (1, 28, 28), pixel_max=255)
        deploy.save(deploy.fold(net, input_shape=(1, 28, 28), pixel_max=255), model)
    cache = out / "cache-ulx3s"
    space = out / "ulx3s-space.toml"
    space.write_text(ULX3S_SPACE)
    seconds, _ = _mulfree("explore", "--model", model, "--board", "ulx3s-85f", "-o",
                          out / "ulx3s", "--cache", cache, "--workers", workers,
                          "--space", space, *(("--max-points", points) if points else ()),
                          "--force")
    found = _points(out / "ulx3s")
    document = json.loads((out / "ulx3s" / "points.json").read_text())
    chosen = found[document["chosen"]] if document["chosen"] is not None else None
    wanted = _build_default()
    default = next((p for p in found if p["params"] == wanted), None)
    if default is None or not default["area"]:
        # not in the space, or not among the most promising: synthesize it on its own
        _mulfree("explore", "--model", model, "--board", "ulx3s-85f", "-o",
                 out / "ulx3s-default", "--cache", cache, "--workers", workers, "--space",
                 _space_file(out / "default-space.toml", wanted), "--force")
        default = _points(out / "ulx3s-default")[0]
    synthesized = sum(1 for p in found if p["area"])
    print(f"## ULX3S-85F, binarynet for 28x28 inputs ({len(found)} points, {synthesized} "
          f"synthesized, {seconds:.0f} s on {workers} worker{'s' if workers > 1 else ''})\n")
    print("| point | images/s (25 MHz) | cycles/image | utilisation | LUT4 (formula) | LUT4 | "
          "block RAM | energy/image (nJ) | fits | front | status |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in found:
        area = p["area"] or {}
        est = p["estimate"] or {}
        name = point_name(p["params"])
        if p is chosen:
            name = f"**{name}** (chosen)"
        elif p["params"] == wanted:
            name += " (`mulfree build`)"
        print(f"| {name} | {p['images_per_s'] or 0:,.1f} | {est.get('cycles', 0):,} | "
              f"{est.get('utilisation', 0):.1%} | "
              f"{(est.get('area') or {}).get('logic', 0):,} | "
              f"{format(area['luts'], ',') if area else '-'} | {area.get('brams', '-')} | "
              f"{p['energy_nj'] or 0:,.1f} | {p['fits']} | {'yes' if p['pareto'] else ''} | "
              f"{p['status']} |")
    print(f"\n### The front ({out / 'ulx3s' / 'pareto.md'})\n")
    print((out / "ulx3s" / "pareto.md").read_text().split("\n\n", 2)[2])
    print("### The area formula against these syntheses\n")
    print("\n".join(_errors(_with_formula([p for p in found if p["area"]], "ecp5"))))
    if chosen is None:
        print("\nno point fits: nothing chosen")
        return

    rows = [("explore's choice", chosen), ("`mulfree build` default", default)]
    if place:
        print("\n### Placed and routed (`mulfree explore --place`, one point each)\n")
        for label, p in rows:
            took, placed, why = _place(model, out, cache, p["params"], workers, minutes)
            p["fmax_mhz"] = placed["fmax_mhz"] if placed else None
            p["placed_s"] = took
            if placed:
                p["images_per_s"] = placed["images_per_s"]
            print(f"- {label} {point_name(p['params'])}: "
                  + (f"fmax {placed['fmax_mhz']:.1f} MHz ({took:.0f} s)" if placed else
                     f"fmax not measured: {why} ({took:.0f} s)"))
    print("\n| design | images/s | at clock (MHz) | cycles/image | LUT4 | block RAM | "
          "energy/image (nJ) | fmax (MHz) |\n|---|---|---|---|---|---|---|---|")
    for label, p in rows:
        est = p["estimate"]
        clock = min(est["clock_mhz"], p["fmax_mhz"] or est["clock_mhz"])
        print(f"| {label}: {point_name(p['params'])} | {p['images_per_s']:,.1f} | "
              f"{clock:g} | {est['cycles']:,} | {p['area']['luts']:,} | {p['area']['brams']} "
              f"| {p['energy_nj']:,.1f} | "
              f"{'not measured' if p['fmax_mhz'] is None else format(p['fmax_mhz'], '.1f')} |")
    print(f"\nchosen / `mulfree build`'s default {point_name(default['params'])} (images/s): "
          f"{chosen['images_per_s'] / default['images_per_s']:.2f}x"
          + ("" if chosen["fmax_mhz"] and default["fmax_mhz"] else
             " (at the board clock where fmax was not measured)"))


def _with_formula(points: list[dict], family: str) -> list[dict]:
    """``points`` with ``estimate.area`` recomputed by the current formula."""
    from hw.schedule import AcceleratorConfig
    from mulfree.explore.estimate import area_estimate
    for p in points:
        config = AcceleratorConfig.from_dict(p["estimate"]["accelerator"])
        p["estimate"]["area"] = area_estimate(config, family)
    return points


def formula_errors(folder: Path) -> None:
    """The current area formula against the synthesized points of ``folder``."""
    from boards.platforms import find_board
    board = json.loads((folder / "points.json").read_text())["board"]
    family = find_board(board).describe()["family"]
    points = _with_formula([p for p in _points(folder) if p["area"]], family)
    print(f"## The area formula against synthesis: {folder}\n")
    print("\n".join(_errors(points)))


def fit_formula(folders: list[Path]) -> None:
    """Least-squares logic formula (``estimate._LOGIC``: fixed, per row, per column, per PE)
    from the synthesized points of ``folders``; the per-lane part is kept (it is fitted only
    where the points vary the lanes)."""
    import numpy as np
    from boards.platforms import find_board
    from mulfree.explore.estimate import _LOGIC
    from mulfree.explore.pareto import logic_of
    points, family = [], None
    for folder in folders:
        board = json.loads((folder / "points.json").read_text())["board"]
        family = find_board(board).describe()["family"]
        points += [p for p in _points(folder) if p["area"]]
    per_lane = _LOGIC[family][4]
    design = np.array([[1, p["params"]["rows"], p["params"]["cols"],
                        p["params"]["rows"] * p["params"]["cols"]] for p in points], float)
    lanes = np.array([(p["params"]["lanes"] - 1) * p["params"]["rows"] * p["params"]["cols"]
                      for p in points], float)
    real = np.array([logic_of(p) for p in points], float)
    coef, *_ = np.linalg.lstsq(design, real - per_lane * lanes, rcond=None)
    fitted = tuple(int(round(c)) for c in coef) + (per_lane,)
    errors = (design @ coef + per_lane * lanes - real) / real
    print(f"{family}: {len(points)} synthesized points -> _LOGIC[{family!r}] = {fitted} "
          f"(in-sample mean abs. error {np.mean(np.abs(errors)):.1%}, worst "
          f"{errors[np.argmax(np.abs(errors))]:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--points", type=int)
    parser.add_argument("--place", action="store_true")
    parser.add_argument("--build-default", action="store_true")
    parser.add_argument("--ulx3s", action="store_true",
                        help="only the ULX3S sweep (with --points N: at most N synthesized, "
                             "else every point that may fit; --place: the chosen point and "
                             "the default placed and routed)")
    parser.add_argument("--workers", type=int, default=1,
                        help="Dask workers of the ULX3S sweep (default 1)")
    parser.add_argument("--place-minutes", type=float, default=20,
                        help="stop a ULX3S placement after this many minutes (default 20)")
    parser.add_argument("--errors", type=Path, metavar="DIR",
                        help="only the area formula's error on the points of an explore "
                             "output folder (the formula of the code run now)")
    parser.add_argument("--fit", type=Path, nargs="+", metavar="DIR",
                        help="only the least-squares logic formula from the synthesized "
                             "points of explore output folders (one board)")
    args = parser.parse_args()
    if args.fit:
        fit_formula(args.fit)
        return
    if args.errors:
        formula_errors(args.errors)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ulx3s:
        ulx3s(args.out, args.points, args.workers, args.place, args.place_minutes)
        return
    args.points = args.points or 32
    model = args.model
    if model is None:
        model = args.out / "binarynet.npz"
        if not model.exists():
            seconds, _ = _mulfree("train", "--net", "binarynet", "-o", model, "--no-progress")
            print(f"trained binarynet on the digits in {seconds:.0f} s: {model}\n")

    timing = {}
    results = {}
    for workers in (1, 2):
        timing[workers], results[workers] = sweep(model, args.out, args.points, workers)
    synthesized = [p for p in results[2] if p["area"]]
    same = ([{k: p[k] for k in ("params", "area", "images_per_s", "energy_nj")}
             for p in results[1]] == [{k: p[k] for k in ("params", "area", "images_per_s",
                                                         "energy_nj")} for p in results[2]])
    counts = {s: sum(p["status"] == s for p in results[2]) for s in ("ok", "failed",
                                                                    "pruned")}
    print(f"## Sweep: {len(results[2])} points of the iCEBreaker's default space, "
          f"{counts['pruned']} pruned (estimate or --max-points), {counts['failed']} failed, "
          f"{len(synthesized)} synthesized; 1- and 2-worker results identical: {same}\n")
    print("| workers | seconds | points synthesized / hour | speed-up |")
    print("|---|---|---|---|")
    for workers in (1, 2):
        n = sum(1 for p in results[workers] if p["area"])
        print(f"| {workers} | {timing[workers]:.0f} | {3600 * n / timing[workers]:.0f} | "
              f"{timing[1] / timing[workers]:.2f}x |")
    print("\n## The area formula against synthesis (packed design)\n")
    print("\n".join(_errors(synthesized)))

    final = args.out / "sweep-2"
    if args.place:
        seconds, _ = _mulfree("explore", "--model", model, "--board", "icebreaker", "-o",
                              args.out / "placed", "--cache", args.out / "cache-2",
                              "--workers", 2, "--max-points", args.points, "--place",
                              "--force")
        final = args.out / "placed"
        print(f"\n(--place rerun from the cache: {seconds:.0f} s)")
    points = _points(final)
    document = json.loads((final / "points.json").read_text())
    chosen = points[document["chosen"]] if document["chosen"] is not None else None
    print(f"\n## Pareto front, binarynet on the digits, iCEBreaker ({final.name})\n")
    print((final / "pareto.md").read_text().split("\n\n", 2)[2])

    if args.build_default:
        seconds, result = _mulfree("build", "--board", "icebreaker", "--model", model, "-o",
                                   args.out / "default-build", "--force", check=False)
        if result.returncode != 0:
            print(f"\n`mulfree build --model` (default size search) built nothing in "
                  f"{seconds:.0f} s:\n\n    " + "\n    ".join(result.stderr.splitlines()))
            return
        config = json.loads((args.out / "default-build" / "accelerator.json").read_text())
        report = json.loads((args.out / "default-build" / "report.json").read_text())
        size = {"rows": config["rows"], "cols": config["cols"], "lanes": config["lanes"],
                "spad": config["filter_spad"], "tree_stages": config["tree_stages"]}
        default = next((p for p in points if p["params"] == size), None)
        fmax = min(report["fmax_mhz"].values()) if report["fmax_mhz"] else None
        print(f"\n`mulfree build --model` (default size search, {seconds:.0f} s): "
              f"{size['rows']}x{size['cols']} lanes {size['lanes']} spad {size['spad']}, "
              f"fmax {fmax} MHz")
        if default is not None and chosen is not None:
            print("\n| design | images/s | logic cells | energy/image (nJ) |\n|---|---|---|---|")
            for label, p in (("`mulfree build` default", default), ("explore's choice",
                                                                   chosen)):
                print(f"| {label}: {_name(p)} | {p['images_per_s']:,.1f} | "
                      f"{p['area']['lcs'] if p['area'] else '-'} | {p['energy_nj']:,.1f} |")
            print(f"\nchosen / default images/s: "
                  f"{chosen['images_per_s'] / default['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
