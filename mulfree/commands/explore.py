"""``mulfree explore --model MODEL.npz --board NAME -o DIR``: the best accelerator for a model on
a board, by a design-space sweep on Dask.

Every point of the space (``mulfree.explore.space``: rows, cols, lanes, scratchpad words, lane
tree stages) is estimated (cycle and energy models, an area formula that prunes what cannot
fit), the rest synthesized (Yosys and nextpnr's packer, the build flow's synthesis-only path),
and with ``--place`` the Pareto points placed and routed; the tasks run on a ``LocalCluster``
of ``--workers`` processes or on the cluster at ``--scheduler``. Results are cached
(``--cache``) so a rerun does no synthesis again. ``DIR`` gets ``points.json``, ``pareto.md``,
``pareto.png`` and ``chosen.json``, which ``mulfree build --config`` builds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mulfree import flags
from mulfree.errors import UsageError
from mulfree.explore.pareto import OBJECTIVES

#: Worker processes of the local cluster by default: the machine's cores.
DEFAULT_WORKERS = max(1, os.cpu_count() or 1)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explore", help="design-space sweep on Dask: the Pareto front of accelerators for a "
                        "model on a board",
        description="Estimate, synthesize (and with --place, place and route) accelerator "
                    "sizes for a model on a board, in parallel on a Dask cluster; write the "
                    "Pareto front (images/s, logic, energy per image) and the chosen design "
                    "as a `mulfree build --config` file.")
    parser.add_argument("--model", metavar="MODEL.npz",
                        help="a deployed model (mulfree train)")
    parser.add_argument("--board", metavar="NAME",
                        help="board name (mulfree build --list-boards)")
    flags.output_folder(parser, "points.json, pareto.md, pareto.png, chosen.json")
    parser.add_argument("--space", metavar="SPACE.toml",
                        help="TOML file of lists replacing the board's default space "
                             "(keys: rows, cols, lanes, spad, tree_stages)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=flags.integer(1, 1024), metavar="N",
                       help=f"worker processes of a local Dask cluster (default: the cores, "
                            f"{DEFAULT_WORKERS})")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (tcp://host:8786) instead "
                            "of a local cluster")
    parser.add_argument("--max-points", type=flags.integer(1, 1_000_000), metavar="N",
                        help="synthesize at most N points, the most promising by the estimate")
    parser.add_argument("--place", action="store_true",
                        help="place and route the Pareto points (nextpnr) and rescore them "
                             "with their real fmax")
    parser.add_argument("--objective", type=flags.choice(OBJECTIVES, "objective"),
                        default="images_per_s", metavar="NAME",
                        help=f"what the chosen point is best in: {', '.join(OBJECTIVES)} "
                             "(default images_per_s)")
    parser.add_argument("--cache", metavar="DIR",
                        help="result cache (default $XDG_CACHE_HOME/mulfree/explore)")
    parser.add_argument("--list-space", action="store_true",
                        help="print the space's points and exit")
    parser.set_defaults(func=run)


_STARTED = time.monotonic()


def _say(line: str) -> None:
    print(f"[{time.monotonic() - _STARTED:5.0f} s] {line}", file=sys.stderr, flush=True)


def _check_model(path: str) -> bytes:
    from model import deploy
    try:
        loaded = deploy.load(path)
    except OSError as exc:
        raise UsageError(f"cannot read model {path!r}: {exc.strerror or exc}") from None
    if not isinstance(loaded, deploy.IntegerModel):
        raise UsageError(f"{path} is a float checkpoint; the accelerator needs a quantized "
                         "model (mulfree train --scheme ...)")
    return Path(path).read_bytes()


def run(args) -> int:
    from boards.build import check_output
    from boards.platforms import find_board
    from mulfree.explore.cache import Cache, default_cache_dir
    from mulfree.explore.estimate import logic_name
    from mulfree.explore.report import CONFIG_NAME, write_outputs
    from mulfree.explore.run import connect, explore
    from mulfree.explore.space import default_space, load_space, point_name
    from model.files import staged_folder

    if not args.board:
        raise UsageError("--board is required (e.g. --board icebreaker; `mulfree build "
                         "--list-boards` lists them)")
    board = find_board(args.board)
    described = board.describe()
    if not described["open_toolchain"]:
        raise UsageError(f"board {board.name!r} needs {described['needs']}; explore "
                         "synthesizes with the open toolchain (iCE40, ECP5 boards)")
    family = described["family"]
    space = load_space(args.space, family) if args.space else default_space(family)
    points = space.points()
    if args.list_space:
        for p in points:
            print(point_name(p))
        return 0
    for flag, value in (("--model MODEL.npz", args.model), ("-o/--output DIR", args.output)):
        if not value:
            raise UsageError(f"{flag} is required")
    check_output(args.output, args.force)
    model_bytes = _check_model(args.model)
    cache = Cache(args.cache or default_cache_dir(), model_bytes, board.name)

    workers = None if args.scheduler else (args.workers or DEFAULT_WORKERS)
    with connect(workers, args.scheduler) as client:
        where = (f"the cluster at {args.scheduler}" if args.scheduler else
                 f"a local cluster of {workers} worker processes")
        _say(f"{board.name} ({described['device']}): {len(points)} points on {where}")
        result = explore(model_bytes, board.name, points, client=client, cache=cache,
                         family=family, device=str(described["device"]),
                         max_points=args.max_points, place=args.place,
                         objective=args.objective, say=_say)
    with staged_folder(args.output, force=args.force) as work:
        write_outputs(work, result.points, board=board.name, model_path=args.model,
                      logic=logic_name(family), chosen=result.chosen,
                      objective=args.objective, space=space.to_dict())
    statuses = {}
    for p in result.points:
        statuses[p["status"]] = statuses.get(p["status"], 0) + 1
    print(f"{len(result.points)} points: " + ", ".join(f"{n} {s}" for s, n in
                                                        sorted(statuses.items())))
    front = sum(p["pareto"] for p in result.points)
    print(f"Pareto front: {front} points (pareto.md, pareto.png in {args.output})")
    chosen = result.chosen
    if chosen is None:
        print("no point fits the board: nothing chosen")
        return 1
    area = chosen["area"]
    logic = logic_name(family)
    print(f"chosen ({args.objective}): {point_name(chosen['params'])}: "
          f"{chosen['images_per_s']:,.1f} images/s, {area[logic]:,} {logic}, "
          f"{area['brams']} block RAMs, {chosen['energy_nj']:,.1f} nJ per image")
    print(f"build it: mulfree build --config {Path(args.output) / CONFIG_NAME} -o DIR")
    return 0
