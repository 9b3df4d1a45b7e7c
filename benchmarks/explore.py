"""``mulfree explore`` measured: the synthesis sweep on 1 and 2 Dask workers, the area formula
against synthesis, and the Pareto front of binarynet on the digits for the iCEBreaker against
``mulfree build``'s default size.

    python benchmarks/explore.py --out build/explore-bench [--model MODEL.npz] [--points 32]
        [--build-default] [--place]
    python benchmarks/explore.py --out build/explore-bench --ulx3s 4
    python benchmarks/explore.py --out build/explore-bench --errors build/explore-bench/sweep-1

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


#: The ULX3S sweep: arrays around ``mulfree build``'s default 3x4 up to the largest that fits.
ULX3S_SPACE = ("rows = [3, 6, 8, 12]\ncols = [4, 8, 11, 14]\nlanes = [1]\nspad = [32]\n"
               "tree_stages = [0]\n")


def ulx3s(out: Path, points: int) -> None:
    """An MNIST-shaped binarynet (1x28x28, untrained: cycles and area depend on the shapes
    only) on the ULX3S-85F: the ``points`` most promising of ``ULX3S_SPACE`` synthesized."""
    from model import deploy, nets
    model = out / "binarynet-28x28.npz"
    if not model.exists():
        net = nets.build("binarynet", (1, 28, 28), pixel_max=255)
        deploy.save(deploy.fold(net, input_shape=(1, 28, 28), pixel_max=255), model)
    space = out / "ulx3s-space.toml"
    space.write_text(ULX3S_SPACE)
    seconds, _ = _mulfree("explore", "--model", model, "--board", "ulx3s-85f", "-o",
                          out / "ulx3s", "--cache", out / "cache-ulx3s", "--workers", 2,
                          "--space", space, "--max-points", points, "--force")
    found = _points(out / "ulx3s")
    document = json.loads((out / "ulx3s" / "points.json").read_text())
    chosen = found[document["chosen"]] if document["chosen"] is not None else None
    print(f"## ULX3S-85F, binarynet for 28x28 inputs ({len(found)} points, {points} "
          f"synthesized, {seconds:.0f} s on 2 workers)\n")
    print("| point | images/s (25 MHz) | cycles | LUT4 (est.) | LUT4 | block RAM | fits | "
          "status |")
    print("|---|---|---|---|---|---|---|---|")
    for p in found:
        if p["status"] == "pruned" and (p["params"]["rows"], p["params"]["cols"]) != (3, 4):
            continue
        area = p["area"] or {}
        est = p["estimate"] or {}
        print(f"| {_name(p)}{' (chosen)' if p is chosen else ''} | "
              f"{p['images_per_s'] or 0:,.1f} | {est.get('cycles', 0):,} | "
              f"{(est.get('area') or {}).get('logic', 0):,} | {area.get('luts', '-')} | "
              f"{area.get('brams', '-')} | {p['fits']} | {p['status']} |")
    default = next(p for p in found if (p["params"]["rows"], p["params"]["cols"]) == (3, 4))
    if chosen is not None:
        print(f"\nchosen / `mulfree build`'s default 3x4 (images/s, same clock): "
              f"{chosen['images_per_s'] / default['images_per_s']:.2f}x")


def formula_errors(folder: Path) -> None:
    """The current area formula against the synthesized points of ``folder``."""
    from boards.platforms import find_board
    from hw.schedule import AcceleratorConfig
    from mulfree.explore.estimate import area_estimate
    board = json.loads((folder / "points.json").read_text())["board"]
    family = find_board(board).describe()["family"]
    points = [p for p in _points(folder) if p["area"]]
    for p in points:
        config = AcceleratorConfig.from_dict(p["estimate"]["accelerator"])
        p["estimate"]["area"] = area_estimate(config, family)
    print(f"## The area formula against synthesis: {folder}\n")
    print("\n".join(_errors(points)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--place", action="store_true")
    parser.add_argument("--build-default", action="store_true")
    parser.add_argument("--ulx3s", type=int, metavar="N",
                        help="only the ULX3S sweep, N points synthesized")
    parser.add_argument("--errors", type=Path, metavar="DIR",
                        help="only the area formula's error on the points of an explore "
                             "output folder (the formula of the code run now)")
    args = parser.parse_args()
    if args.errors:
        formula_errors(args.errors)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ulx3s:
        ulx3s(args.out, args.ulx3s)
        return
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
