"""``mulfree explore``: a small space on Dask (a LocalCluster, and a scheduler and workers
started with Dask's own command-line tools), the cache, failures, a killed worker, and
``mulfree build --config`` reading the chosen point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import one_error_line

# One synthesis-heavy module: its tests share the reference run.
pytestmark = pytest.mark.xdist_group("explore")

#: 8 points: spad 4 cannot hold the 5-wide filters (failed at the estimate), 1x32 and 2x32 are
#: pruned by the area formula, 1x1 and 2x1 are synthesized.
SPACE = "rows = [1, 2]\ncols = [1, 32]\nlanes = [1]\nspad = [4, 32]\ntree_stages = [0]\n"
SYNTHESIZED = ({"rows": 1, "cols": 1}, {"rows": 2, "cols": 1})

#: What must not change between runs (the status may: ok, then cached).
COMPARED = ("params", "estimate", "area", "fmax_mhz", "images_per_s", "energy_nj", "fits",
            "pareto")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A binarynet for the 8x8 digits (untrained: the design depends on shapes only) and the
    space file."""
    from model import deploy, nets
    folder = tmp_path_factory.mktemp("explore")
    net = nets.build("binarynet", (1, 8, 8), pixel_max=16)
    deploy.save(deploy.fold(net, input_shape=(1, 8, 8), pixel_max=16), folder / "model.npz")
    (folder / "space.toml").write_text(SPACE)
    return folder


def _explore(files, out, cache, *extra):
    """Run ``mulfree explore`` in a subprocess (Dask's cluster needs a real process tree)."""
    argv = [sys.executable, "-m", "mulfree", "explore", "--model", files / "model.npz",
            "--board", "icebreaker", "--space", files / "space.toml", "-o", out,
            "--cache", cache, *extra]
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          env=dict(os.environ, **_ENV_EXTRA), timeout=900)


_ENV_EXTRA: dict = {}


def _points(out) -> list[dict]:
    return json.loads((Path(out) / "points.json").read_text())["points"]


def _same(a: list[dict], b: list[dict]) -> None:
    assert [{k: p[k] for k in COMPARED} for p in a] == [{k: p[k] for k in COMPARED} for p in b]


@pytest.fixture(scope="module")
def local_run(files):
    """The reference: the space on a LocalCluster of 2 workers."""
    out = files / "local"
    result = _explore(files, out, files / "cache", "--workers", "2")
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_local_cluster_run_records_every_point(local_run, files):
    out, result = local_run
    points = _points(out)
    assert len(points) == 8
    by_status = {}
    for p in points:
        by_status.setdefault(p["status"], []).append(p)
    assert sorted(by_status) == ["failed", "ok", "pruned"]
    # failures are recorded with their reason, never dropped
    assert len(by_status["failed"]) == 4
    for p in by_status["failed"]:
        assert p["params"]["spad"] == 4
        assert p["reason"] == ("estimate: ValueError: layer 0 of the model cannot run on a "
                               f"{p['params']['rows']}x{p['params']['cols']} array: filter "
                               "width 5 exceeds the filter scratchpad (4 words)")
        assert p["area"] is None and p["pareto"] is False
    assert [p["params"]["cols"] for p in by_status["pruned"]] == [32, 32]
    for p in by_status["pruned"]:
        assert p["reason"].startswith("pruned by the estimate: about ")
        assert p["estimate"]["area"]["logic"] > 5280 and p["area"] is None
    ok = by_status["ok"]
    assert [{k: p["params"][k] for k in ("rows", "cols")} for p in ok] == list(SYNTHESIZED)
    for p in ok:
        area, estimate = p["area"], p["estimate"]
        assert set(area) == {"lcs", "brams", "dsps"} and 1000 < area["lcs"] <= 5280
        assert p["fits"] is True and p["fmax_mhz"] is None and p["reason"] is None
        assert estimate["clock_mhz"] == 12.0
        assert p["images_per_s"] == pytest.approx(12e6 / estimate["cycles"])
        assert p["energy_nj"] > 0 and 0 < estimate["utilisation"] <= 1
        assert sum(estimate["energy_by_level_nj"].values()) == pytest.approx(p["energy_nj"])
    one, two = ok
    assert two["estimate"]["cycles"] < one["estimate"]["cycles"]
    assert two["area"]["lcs"] > one["area"]["lcs"]
    # neither dominates the other: both are on the front; the faster is chosen
    assert one["pareto"] and two["pareto"]
    chosen = json.loads((out / "chosen.json").read_text())
    assert chosen == {"board": "icebreaker", "model": str((files / "model.npz").resolve()),
                      "design": "accelerator", "rows": 2, "cols": 1, "lanes": 1, "spad": 32,
                      "tree_stages": 0}
    table = (out / "pareto.md").read_text()
    assert "| **2x1 L1 S32 T0** (chosen) |" in table and "| 1x1 L1 S32 T0 |" in table
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "synthesis 2/2" in result.stderr and "failed 0" in result.stderr
    assert "8 points: 4 failed, 2 ok, 2 pruned" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_rerun_is_all_cached_and_runs_no_synthesis(local_run, files, monkeypatch):
    """With Yosys replaced by ``false`` any synthesis would fail: the rerun has none."""
    out, _ = local_run
    monkeypatch.setitem(_ENV_EXTRA, "YOSYS", "false")
    again = _explore(files, files / "again", files / "cache", "--workers", "2")
    assert again.returncode == 0, again.stderr
    points = _points(files / "again")
    assert [p["status"] for p in points if p["area"]] == ["cached", "cached"]
    _same(points, _points(out))
    assert "done 0, failed 0, cached 2" in again.stderr


@pytest.mark.timeout(300)
def test_a_failing_synthesis_is_recorded_with_its_reason(files, monkeypatch):
    monkeypatch.setitem(_ENV_EXTRA, "YOSYS", "false")
    result = _explore(files, files / "broken", files / "empty-cache", "--workers", "2")
    assert result.returncode == 1     # nothing fits: nothing chosen
    points = _points(files / "broken")
    failed = [p for p in points if p["params"]["spad"] == 32 and p["params"]["cols"] == 1]
    assert len(failed) == 2
    for p in failed:
        assert p["status"] == "failed"
        assert p["reason"].startswith("synthesis: BuildError: yosys failed: "), p["reason"]
    assert not (files / "broken" / "chosen.json").exists()
    assert not list((files / "empty-cache").rglob("*.json"))      # failures are not cached


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_place_rescores_the_front_with_the_real_fmax(local_run, files, monkeypatch):
    """``--place`` places and routes the Pareto point (its synthesis comes from the cache);
    a rerun takes the placement from the cache too (with the tools replaced by ``false``)."""
    space = files / "space1.toml"
    space.write_text("rows = [1]\ncols = [1]\nlanes = [1]\nspad = [32]\ntree_stages = [0]\n")
    runs = []
    for name in ("placed", "placed-again"):
        argv = [sys.executable, "-m", "mulfree", "explore", "--model", files / "model.npz",
                "--board", "icebreaker", "--space", space, "-o", files / name, "--cache",
                files / "cache", "--workers", "1", "--place"]
        env = dict(os.environ)
        if runs:
            env.update(YOSYS="false", NEXTPNR_ICE40="false", ICEPACK="false")
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                                env=env, timeout=900)
        assert result.returncode == 0, result.stderr
        runs.append(_points(files / name))
    (point,), (again,) = runs
    reference = next(p for p in _points(local_run[0]) if p["params"] == point["params"])
    assert point["status"] == "cached" and point["area"] == reference["area"]
    assert point["pareto"] and 5 < point["fmax_mhz"] < 200
    clock = min(12.0, point["fmax_mhz"])
    assert point["images_per_s"] == pytest.approx(clock * 1e6 / point["estimate"]["cycles"])
    assert again == point
    assert json.loads((files / "placed" / "chosen.json").read_text())["rows"] == 1


def _start_cluster(folder: Path, workers: int):
    """``dask scheduler`` and ``workers`` ``dask worker`` processes: (address, scheduler,
    [workers])."""
    dask = [sys.executable, "-m", "dask", "scheduler"]
    worker = [sys.executable, "-m", "dask", "worker"]
    info = folder / "scheduler.json"
    env = dict(os.environ)
    scheduler = subprocess.Popen([*dask, "--scheduler-file", str(info), "--port", "0",
                                  "--dashboard-address", ":0"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if info.exists() and info.read_text().strip():
            break
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    procs = [subprocess.Popen([*worker, "--scheduler-file", str(info), "--nthreads", "1",
                               "--no-nanny", "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    from distributed import Client
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(workers, timeout=60)
    return address, scheduler, procs


def _stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dask_scheduler_and_workers_give_the_same_results(local_run, files):
    out, _ = local_run
    folder = files / "cluster"
    folder.mkdir()
    address, scheduler, workers = _start_cluster(folder, 2)
    try:
        result = _explore(files, folder / "out", folder / "cache", "--scheduler", address)
    finally:
        _stop(*workers, scheduler)
    assert result.returncode == 0, result.stderr
    points = _points(folder / "out")
    assert [p["status"] for p in points if p["area"]] == ["ok", "ok"]
    _same(points, _points(out))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_worker_loses_nothing(local_run, files):
    """One of two workers is killed once the first synthesis is cached: its task is retried
    on the other and every result equals the reference run."""
    out, _ = local_run
    folder = files / "killed"
    folder.mkdir()
    address, scheduler, workers = _start_cluster(folder, 2)
    killed = []

    def kill_one_when_a_result_is_in():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not list((folder / "cache").rglob("*.json")):
            time.sleep(0.2)
        os.kill(workers[0].pid, signal.SIGKILL)
        killed.append(workers[0].pid)

    # three syntheses on two workers: when the first is in, both workers are busy
    space = files / "space3.toml"
    space.write_text(SPACE.replace("rows = [1, 2]", "rows = [1, 2, 3]")
                     .replace("cols = [1, 32]", "cols = [1]").replace("[4, 32]", "[32]"))
    watcher = threading.Thread(target=kill_one_when_a_result_is_in)
    watcher.start()
    try:
        argv = [sys.executable, "-m", "mulfree", "explore", "--model", files / "model.npz",
                "--board", "icebreaker", "--space", space, "-o", folder / "out", "--cache",
                folder / "cache", "--scheduler", address]
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                                timeout=900)
    finally:
        watcher.join()
        _stop(*workers, scheduler)
    assert killed and workers[0].returncode == -signal.SIGKILL
    assert result.returncode == 0, result.stderr
    points = _points(folder / "out")
    assert [p["status"] for p in points] == ["ok", "ok", "ok"]
    reference = {json.dumps(p["params"]): p for p in _points(out)}
    _same(points[:2], [reference[json.dumps(p["params"])] for p in points[:2]])
    assert points[2]["area"]["lcs"] > points[1]["area"]["lcs"]


# ---- bad input: one line, exit 2, nothing written ------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--board", "nosuch"], "unknown board 'nosuch'"),
    (["--board", "icebreaker", "--workers", "0"], "--workers: must be an integer in [1, 1024]"),
    (["--board", "icebreaker", "--objective", "speed"], "unknown objective 'speed'"),
    (["--board", "icebreaker", "--workers", "2", "--scheduler", "tcp://x:1"],
     "not allowed with argument"),
    (["--board", "icebreaker", "--space", "bad-key.toml"], "unknown key 'colz'; allowed: "
                                                          "rows, cols, lanes, spad, tree_stages"),
    (["--board", "icebreaker", "--space", "bad-value.toml"], "space: lanes = 3: lanes must "
                                                            "be one of 1, 2, 4"),
    (["--board", "icebreaker", "--space", "depth.toml"], "depth is not explored"),
    (["--board", "icebreaker", "--space", "broken.toml"], "is not valid TOML"),
    (["--board", "icebreaker", "--model", "nonexistent.npz"], "'nonexistent.npz' not found"),
    ([], "--board is required"),
])
def test_bad_input_is_one_line_and_status_2(cli, files, tmp_path, extra, message):
    (tmp_path / "bad-key.toml").write_text("colz = [1]\n")
    (tmp_path / "bad-value.toml").write_text("lanes = [1, 3]\n")
    (tmp_path / "depth.toml").write_text("depth = [256]\n")
    (tmp_path / "broken.toml").write_text("rows = [1,\n")
    extra = [str(tmp_path / e) if e.endswith(".toml") else e for e in extra]
    status, out, err = cli("explore", "--model", files / "model.npz", "-o", tmp_path / "out",
                           *extra)
    assert status == 2
    assert message in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_an_existing_output_folder_and_an_unreachable_scheduler_are_refused(
        cli, files, tmp_path, monkeypatch):
    from mulfree.explore import run
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    status, _, err = cli("explore", "--model", files / "model.npz", "--board", "icebreaker",
                         "-o", tmp_path / "out")
    assert status == 2 and "exists and is not empty; use --force" in one_error_line(err)
    monkeypatch.setattr(run, "SCHEDULER_TIMEOUT_S", 1)
    status, _, err = cli("explore", "--model", files / "model.npz", "--board", "icebreaker",
                         "-o", tmp_path / "new", "--scheduler", "tcp://127.0.0.1:1")
    assert status == 2
    assert "cannot reach the Dask scheduler 'tcp://127.0.0.1:1'" in one_error_line(err)
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "out" / "keep").read_text() == "x"
