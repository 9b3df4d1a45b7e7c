"""The pure parts of benchmarks/system_area.py: ratios, the size model, tables, goals, JSON.

No synthesis runs here (the benchmark itself measures).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sa():
    spec = importlib.util.spec_from_file_location("system_area",
                                                  ROOT / "benchmarks" / "system_area.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["system_area"] = module     # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["system_area"]


def _result(sa, design, size, logic, fmax, device="ice40", placed=True):
    key = "logic cells" if device == "ice40" else "LUT4"
    return sa.Result(device, design, *size, {key: logic, "block RAM": 3, "DSP": 0},
                     {key: 5280, "block RAM": 30, "DSP": 8}, fmax_mhz=fmax, placed=placed)


def test_metrics_and_ratios(sa):
    base = _result(sa, "int8 DSP", (1, 2, 4), 4000, 20.0)
    tern = _result(sa, "ternary", (2, 2, 8), 5000, 30.0)
    assert tern.macs_per_cycle == 32
    assert tern.macs_per_second == 32 * 30e6
    assert tern.macs_per_second_per_lut == 32 * 30e6 / 5000
    q = sa.ratios(tern, base)
    assert q["macs_per_cycle"] == 4.0
    assert q["macs_per_second"] == pytest.approx(32 * 30 / (8 * 20))
    assert q["macs_per_second_per_lut"] == pytest.approx((32 * 30 / 5000) / (8 * 20 / 4000))
    assert q["macs_per_cycle_per_lut"] == pytest.approx((32 / 5000) / (8 / 4000))
    assert sa.ratios(tern, None)["macs_per_second"] is None
    assert sa.ratio(None, 3) is None and sa.ratio(3, 0) is None


def test_unplaced_design_has_no_rate_but_a_per_cycle_ratio(sa):
    base = _result(sa, "int8 DSP", (1, 1, 8), 4000, 20.0)
    r = _result(sa, "binary", (2, 2, 4), 4000, None, placed=False)
    assert r.macs_per_second is None and r.macs_per_second_per_lut is None
    assert sa.ratios(r, base)["macs_per_cycle_per_lut"] == 2.0
    line = sa.system_table([base, r]).splitlines()[-1]
    assert "not placed" in line and "2.00×" in line


def test_table_shape_and_baseline_row(sa):
    rows = [_result(sa, "int8 DSP", (1, 1, 8), 4000, 20.0),
            _result(sa, "xnor", (2, 2, 64), 4000, 40.0)]
    lines = sa.system_table(rows).splitlines()
    assert len(lines) == 4
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| 1.00× | 1.00× | 1.00× |" in lines[2]
    assert "64.00×" in lines[3]          # MAC/s per LUT: 256 * 40 vs 8 * 20, same logic


def test_goals_never_round_a_miss_into_a_hit(sa):
    base = _result(sa, "int8 DSP", (1, 1, 8), 4000, 20.0)
    just_below = _result(sa, "ternary", (2, 2, 12), 4000, 19.99)   # 5.997x peak
    lines = sa.goals([base, just_below])
    peak = next(line for line in lines if "ternary peak MAC/s" in line)
    assert "MISSED" in peak and "5.99×" in peak          # shown rounded down, not 6.00
    size = next(line for line in lines if "3x4 PEs" in line)
    assert "MISSED" in size                                        # 4 PEs, not 12
    at_goal = _result(sa, "ternary", (3, 4, 4), 4000, 24.0)
    assert any("3x4 PEs" in line and "reached" in line for line in sa.goals([base, at_goal]))


def test_size_model_is_exact_on_its_own_form(sa):
    def cost(p, lanes):
        return 1000 + 30 * lanes + p * (50 + 20 * lanes)
    points = {(p, lanes): cost(p, lanes) for p in (1, 4) for lanes in (2, 16)}
    model = sa.fit_model(points)
    for p, lanes in ((9, 8), (30, 4), (1, 64)):
        assert sa.predict(model, p, lanes) == pytest.approx(cost(p, lanes))


def test_candidates_most_macs_first_within_every_limit(sa):
    models = {"LUT4": sa.fit_model({(p, lanes): 1000 + p * 100 * lanes
                                    for p in (1, 4) for lanes in (2, 16)}),
              "block RAM": sa.fit_model({(p, lanes): 2 * p for p in (1, 4)
                                         for lanes in (2, 16)})}
    limits = {"LUT4": 10_000, "block RAM": 40}
    sizes = sa.candidates(models, limits, (1, 2, 4, 8))
    macs = [r * c * lanes for r, c, lanes in sizes]
    assert macs == sorted(macs, reverse=True)
    for r, c, lanes in sizes:
        assert 1000 + r * c * 100 * lanes <= 10_000 and 2 * r * c <= 40
    r, c, lanes = sizes[0]
    assert r * c <= 20                      # block RAM binds one lane's arrays


def test_shapes_are_near_square_and_grow(sa):
    shapes = sa.shapes()
    assert shapes[0] == (1, 1)
    assert all(r <= c <= max(3, r + 2) for r, c in shapes)
    pes = [r * c for r, c in shapes]
    assert pes == sorted(pes)
    assert sa.next_shape(3, 4) in shapes and sa.next_shape(3, 4)[0] * sa.next_shape(3, 4)[1] > 12


def test_flip_flops_from_both_yosys_stat_layouts(sa):
    old = "Printing statistics.\n\n   SB_DFF     3\n   SB_DFFE   4\n   SB_LUT4  9\n"
    new = "Printing statistics.\n\n        5   SB_DFFER\n        9   SB_LUT4\n"
    assert sa.flip_flops_in_log(old) == 7
    assert sa.flip_flops_in_log(new) == 5
    assert sa.flip_flops_in_log("no statistics") is None
    hierarchy = ("2.50. Printing statistics.\n\n=== top ===\n       322   SB_DFF\n"
                 "       10   SB_LUT4\n\n=== design hierarchy ===\n\n       322   SB_DFF\n"
                 "       152   SB_DFFE\n\n2.51. Executing CHECK pass\n  99   SB_DFF\n")
    assert sa.flip_flops_in_log(hierarchy) == 474      # the total once, nothing after it


def test_json_round_trip_and_merge(sa):
    a = _result(sa, "ternary", (2, 2, 8), 5000, None, placed=False)
    b = _result(sa, "ternary", (2, 2, 8), 5100, 30.0)
    c = _result(sa, "int8 DSP", (1, 1, 8), 4000, 20.0)
    merged, _ = sa.merge_saved([{"results": [a.to_json(), c.to_json()]},
                                {"results": [b.to_json()]}])
    by = {r.design: r for r in merged}
    assert by["ternary"] == b and by["int8 DSP"] == c


def test_command_names_every_non_default(sa):
    cmd = sa.command_of("ecp5", "dorefa W2A2", 4, 5, 8, 2)
    assert cmd.startswith("mulfree build --board ulx3s-85f --scheme dorefa --rows 4 --cols 5 "
                          "--lanes 8 --tree-stages 2")
    assert "--a-bits 2" in cmd and "--w-bits 2" in cmd
    assert "--multipliers dsp" in sa.command_of("ice40", "int8 DSP", 1, 1, 8, 2)
    wide = sa.config_of("int8 DSP", 1, 1, 64, 0)
    assert wide.acc_bits >= wide.min_acc_bits


def test_a_size_exactly_at_a_limit_is_a_candidate(sa):
    """Least squares may land a hair above an integer limit (e.g. 8.000000001 DSPs)."""
    dsp = sa.fit_model({(p, lanes): p * lanes for p in (1, 4) for lanes in (2, 8)})
    assert (1, 1, 8) in sa.candidates({"DSP": dsp}, {"DSP": 8}, (8,))


def test_grow_tries_more_pes_then_more_lanes(sa):
    class Budget:                       # fits while PEs * (10 + lanes) <= 200
        def fits(self, r, c, lanes):
            return r * c * (10 + lanes) <= 200
    r, c, lanes = sa.grow(Budget(), (1, 1, 8))
    assert r * c * (10 + lanes) <= 200
    assert r * c * lanes > 8 * 2      # beyond 1x2x8, the size the model had confirmed
    # nothing larger of either kind fits
    assert not Budget().fits(*sa.next_shape(r, c), lanes)


def test_summary_table_marks_unplaced_designs(sa):
    rows = [_result(sa, "int8 DSP", (1, 2, 4), 4000, 20.0),
            _result(sa, "ternary", (2, 2, 8), 4000, None, placed=False)]
    lines = sa.summary_table(rows).splitlines()
    assert lines[2].endswith("| 1.00× | 1.00× |")
    assert "not placed" in lines[3] and "4.00× per cycle" in lines[3]


def test_grow_does_not_pack_what_the_model_rules_out(sa):
    class Counting:
        asked = []

        def limits(self):
            return {"DSP": 8}

        def fits(self, r, c, lanes):
            self.asked.append((r, c, lanes))
            return r * c * lanes <= 8
    dsp = sa.fit_model({(p, lanes): p * lanes for p in (1, 4) for lanes in (2, 8)})
    packer = Counting()
    assert sa.grow(packer, (1, 2, 4), {"DSP": dsp}) == (1, 2, 4)
    assert packer.asked == []             # 1x3x4 and 1x3x8 need 12 and 24 DSPs
