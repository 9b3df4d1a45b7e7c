"""``mulfree explore`` measured: the synthesis sweep on 1 and 2 Dask workers, the area formula
against synthesis, and the Pareto front of binarynet on the digits for the iCEBreaker against
``mulfree build``'s default size.

    python benchmarks/explore.py --out build/explore-bench [--model MODEL.npz] [--points 32]
        [--build-default] [--place]

Without ``--model`` a binarynet is trained on scikit-learn's 8x8 digits (``mulfree train``).
The sweep is the iCEBreaker's default space (``mulfree.explore.space``), the ``--points`` most
promising points by the estimate (``--max-points``), synthesized twice from an empty cache:
on a LocalCluster of 1 worker, then of 2. ``--place`` reruns the 2-worker sweep from its
cache with ``--place`` (place and route of the Pareto points); ``--build-default`` runs
``mulfree build --board icebreaker --model MODEL.npz`` (its own size search) for the
default's size and fmax. Prints Markdown tables (``docs/explore.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _mulfree(*argv, check=True) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mulfree", *map(str, argv)],
                            capture_output=True, text=True)
    seconds = time.monotonic() - started
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
    rows = []
    for key, real_key, noun in (("logic", "lcs", "logic cells"), ("brams", "brams",
                                                                 "block RAMs")):
        pairs = [(p["estimate"]["area"][key], p["area"][real_key]) for p in points
                 if p["area"]]
        errors = [(e - r) / r for e, r in pairs]
        rows.append(f"| {noun} | {len(pairs)} | {statistics.mean(errors):+.1%} | "
                    f"{statistics.mean(abs(x) for x in errors):.1%} | "
                    f"{max(errors, key=abs):+.1%} |")
    return ["| resource | points | mean error | mean abs. error | worst |",
            "|---|---|---|---|---|", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--place", action="store_true")
    parser.add_argument("--build-default", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
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
