"""The parts of ``mulfree explore`` that need no cluster: the space, the area formula, the
Pareto front, the cache key, and ``mulfree build --config``."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest

from mulfree.explore import pareto
from mulfree.explore.estimate import PRUNE_MARGIN, area_estimate, block_rams, prune_reason
from mulfree.explore.space import DIMENSIONS, Space, default_space, load_space


# ---- the space ------------------------------------------------------------------------------

def test_points_are_every_combination_once_in_a_fixed_order():
    space = Space({"rows": [2, 1, 2], "cols": [1, 4], "lanes": [1], "spad": [32],
                   "tree_stages": [0, 1]})
    points = space.points()
    assert [(p["rows"], p["cols"], p["tree_stages"]) for p in points] == \
        list(itertools.product([1, 2], [1, 4], [0, 1]))
    assert all(list(p) == list(DIMENSIONS) for p in points)


def test_a_toml_file_replaces_the_dimensions_it_names(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("rows = [1]\nlanes = 2\n")
    space = load_space(path, "iCE40")
    default = default_space("iCE40").to_dict()
    assert space.to_dict() == dict(default, rows=[1], lanes=[2])
    assert len(space.points()) == len(default["cols"]) * len(default["spad"])


@pytest.mark.parametrize("text, message", [
    ("rows = []\n", "rows must be a non-empty list of integers, not []"),
    ("cols = [1, true]\n", "cols must be a list of integers, not True"),
    ("spad = [24]\n", "spad = 24: spad must be a power of two"),
    ("rows = [65]\n", "rows = 65: rows must be"),
    ("acc_bits = [20]\n", "acc_bits is not explored: the partial-sum width"),
])
def test_bad_spaces_are_refused_naming_the_value(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"space") as info:
        load_space(path, "ecp5")
    assert message in str(info.value)


# ---- the area formula -----------------------------------------------------------------------

@pytest.mark.parametrize("family, depth, width, blocks", [
    ("iCE40", 256, 16, 1), ("iCE40", 257, 16, 2), ("iCE40", 2048, 11, 6),
    ("iCE40", 4096, 1, 2), ("iCE40", 64, 6, 1), ("iCE40", 512, 8, 1), ("iCE40", 512, 9, 2),
    ("ecp5", 64, 36, 0), ("ecp5", 65, 36, 1), ("ecp5", 2048, 11, 2), ("ecp5", 16384, 1, 1),
])
def test_block_rams_take_the_cheapest_shape(family, depth, width, blocks):
    assert block_rams(family, depth, width) == blocks


def test_the_formula_grows_with_pes_and_lanes_and_prunes_with_a_margin():
    from hw.schedule import AcceleratorConfig
    small = AcceleratorConfig(rows=1, cols=1)
    assert area_estimate(small, "gowin") is None
    one = area_estimate(small, "iCE40")
    more = area_estimate(small.replace(rows=2, cols=3), "iCE40")
    wide = area_estimate(small.replace(lanes=4), "iCE40")
    assert more["logic"] > one["logic"] and wide["logic"] > one["logic"]
    assert more["brams"] > one["brams"]
    assert prune_reason(one, "iCE40UP5K") is None
    assert prune_reason({"logic": int(5280 * PRUNE_MARGIN), "brams": 1}, "iCE40UP5K") is None
    assert prune_reason({"logic": int(5280 * PRUNE_MARGIN) + 1, "brams": 1}, "iCE40UP5K") == \
        f"pruned by the estimate: about {int(5280 * PRUNE_MARGIN) + 1:,} logic, the " \
        "iCE40UP5K has 5,280"
    assert "block RAMs" in prune_reason({"logic": 1, "brams": 40}, "iCE40UP5K")
    assert prune_reason({"logic": 10**9, "brams": 1}, "unknown device") is None


def test_the_ecp5_formula_costs_a_row_more_than_a_column_and_prunes_only_far_off():
    from hw.schedule import AcceleratorConfig
    base = AcceleratorConfig(rows=3, cols=4)
    one = area_estimate(base, "ecp5")["logic"]
    row = area_estimate(base.replace(rows=4), "ecp5")["logic"] - one
    col = area_estimate(base.replace(cols=5), "ecp5")["logic"] - one
    lane = area_estimate(base.replace(lanes=2), "ecp5")["logic"] - one
    assert row > col > 0 and lane > 0
    # binary arrays that pack into the LFE5U-85F stay in; one far beyond it is pruned
    assert prune_reason(area_estimate(base.replace(rows=12, cols=28), "ecp5"),
                        "LFE5U-85F") is None
    huge = area_estimate(base.replace(rows=32, cols=32, lanes=8), "ecp5")
    assert prune_reason(huge, "LFE5U-85F").startswith("pruned by the estimate: about ")


# ---- the Pareto front -----------------------------------------------------------------------

def _point(ips, lcs, nj, *, status="ok", fits=True):
    return {"params": {"ips": ips}, "images_per_s": ips, "energy_nj": nj, "fits": fits,
            "status": status, "area": {"lcs": lcs, "brams": 1, "dsps": 0}, "pareto": None}


def _brute_front(points):
    pool = [p for p in points if p["status"] in ("ok", "cached") and p["fits"]]

    def better(a, b):   # a dominates b
        ge = (a["images_per_s"] >= b["images_per_s"], a["area"]["lcs"] <= b["area"]["lcs"],
              a["energy_nj"] <= b["energy_nj"])
        gt = (a["images_per_s"] > b["images_per_s"], a["area"]["lcs"] < b["area"]["lcs"],
              a["energy_nj"] < b["energy_nj"])
        return all(ge) and any(gt)

    return [p for p in pool if not any(better(q, p) for q in pool)]


def test_the_front_is_the_non_dominated_fitting_points():
    points = [_point(100, 1000, 5.0), _point(200, 2000, 5.0), _point(150, 2500, 6.0),
              _point(200, 2000, 5.0), _point(300, 900, 1.0, fits=False),
              _point(500, 100, 1.0, status="failed"), _point(90, 1000, 4.0),
              _point(300, 900, 4.5, status="cached")]
    pareto.mark_pareto(points)
    assert [p["pareto"] for p in points] == [False, False, False, False, False, False, True,
                                             True]
    assert [p for p in points if p["pareto"]] == _brute_front(points)


def test_the_front_matches_a_brute_force_on_random_points():
    import numpy as np
    rng = np.random.default_rng(7)
    for _ in range(50):
        points = [_point(int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                         float(rng.integers(1, 6)), fits=bool(rng.integers(0, 4)))
                  for _ in range(int(rng.integers(1, 12)))]
        pareto.mark_pareto(points)
        front = _brute_front(points)
        assert [p for p in points if p["pareto"]] == front
        for objective in pareto.OBJECTIVES:
            chosen = pareto.choose(points, objective)
            assert (chosen is None) == (not front)


def test_each_objective_chooses_its_best_point():
    points = [_point(100, 1000, 5.0), _point(200, 2000, 6.0), _point(150, 1500, 4.0)]
    pareto.mark_pareto(points)
    assert all(p["pareto"] for p in points)
    assert pareto.choose(points, "images_per_s") is points[1]
    assert pareto.choose(points, "energy") is points[2]
    assert pareto.choose(points, "luts") is points[0]
    with pytest.raises(ValueError, match="unknown objective 'speed'; allowed: images_per_s"):
        pareto.choose(points, "speed")


# ---- the cache key --------------------------------------------------------------------------

def test_the_cache_key_changes_with_the_model_point_step_and_board(tmp_path):
    from mulfree.explore.cache import Cache
    a = Cache(tmp_path, b"model", "icebreaker")
    point = {"rows": 1, "cols": 1}
    keys = {a.key("synthesis", point), a.key("placement", point),
            a.key("synthesis", {"rows": 1, "cols": 2}),
            Cache(tmp_path, b"model2", "icebreaker").key("synthesis", point),
            Cache(tmp_path, b"model", "ulx3s-85f").key("synthesis", point)}
    assert len(keys) == 5
    assert a.get("synthesis", point) is None
    a.put("synthesis", point, {"logic": 7})
    assert Cache(tmp_path, b"model", "icebreaker").get("synthesis", point) == {"logic": 7}
    assert a.get("placement", point) is None
    assert not list(tmp_path.rglob(".entry-*"))


# ---- mulfree build --config -----------------------------------------------------------------

def _build_args(cli_argv):
    from mulfree.cli import build_parser
    return build_parser().parse_args(["build", *cli_argv])


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_build_takes_its_options_from_a_config_file(tmp_path, suffix):
    from mulfree.commands.build import apply_config
    values = {"board": "icebreaker", "model": "model.npz", "rows": 2, "cols": 1, "lanes": 2,
              "spad": 16, "tree_stages": 1}
    path = tmp_path / f"chosen{suffix}"
    path.write_text(json.dumps(values) if suffix == ".json" else
                    "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    args = _build_args(["--config", str(path), "-o", "out", "--cols", "3"])
    apply_config(args)
    assert (args.board, args.rows, args.cols, args.lanes, args.spad, args.tree_stages) == \
        ("icebreaker", 2, 3, 2, 16, 1)                       # --cols on the command line wins
    assert args.model == str(tmp_path / "model.npz")         # beside the config file


@pytest.mark.parametrize("text, message", [
    ('{"rows": 2, "colz": 1}', "unknown option 'colz'; allowed: board, model"),
    ('{"rows": 0}', "rows 0: must be an integer in [1, 64], not 0"),
    ('{"lanes": 3}', "lanes 3: must be one of 1, 2, 4"),
    ('{"rows": true}', "rows must be an integer, not True"),
    ('[1, 2]', "must hold a table of options, not list"),
    ('{"rows": ', "is not valid JSON"),
])
def test_a_bad_config_file_is_one_line_and_status_2(cli, tmp_path, text, message):
    from tests.conftest import assert_config_refused
    assert_config_refused(cli, tmp_path, "bad.json", text, message, "build")


def test_explores_chosen_file_is_a_build_config(tmp_path):
    from mulfree.commands.build import apply_config
    from mulfree.explore.report import build_config
    point = {"params": {"rows": 2, "cols": 1, "lanes": 1, "spad": 32, "tree_stages": 0}}
    path = tmp_path / "chosen.json"
    path.write_text(json.dumps(build_config(point, "icebreaker", tmp_path / "m.npz")))
    args = _build_args(["--config", str(path), "-o", "out"])
    apply_config(args)
    assert isinstance(args, argparse.Namespace)
    assert (args.board, args.model, args.design, args.rows, args.cols, args.lanes, args.spad,
            args.tree_stages) == ("icebreaker", str(tmp_path / "m.npz"), "accelerator", 2, 1,
                                  1, 32, 0)
