"""What holds for every executor: one driver per results folder (a second one, of either
executor, gets a one-line error), progress shows cells done/running/failed with an ETA,
executor flags are checked before anything runs, Ray stays optional, and a local worker
process killed mid-cell costs no row (the cell runs again).

The Ray executor's own tests (a local Ray instance) are in tests/test_bench_ray.py.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.process_helpers import descendants, wait_for
from vlmeft.bench.executors import WorkerSpec, run_in_worker
from vlmeft.bench.plan import Cell, Selection
from vlmeft.bench.profiles import Profile, ProtocolPlan, get_profile
from vlmeft.bench.progress import Progress
from vlmeft.bench.runner import results_path, run_bench
from vlmeft.bench.store import DriverLock, cell_key, read_results
from vlmeft.cli import main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# --------------------------------------------------------------------------- progress
def test_progress_shows_done_running_failed_and_an_eta():
    out = io.StringIO()
    bar = Progress("bench t", total=4, finished=1, file=out)  # one cell finished by an earlier run
    bar.set_running(2)
    bar.finished("coop digits")
    bar.finished("vp digits", "ValueError: boom")
    bar.close()
    text = out.getvalue()
    assert "bench t: 1/4 cells" in text and "3/4 cells" in text
    assert "running 2, failed 0" in text and "running 2, failed 1" in text
    assert "failed: vp digits: ValueError: boom" in text
    assert re.search(r"3/4 cells .*\[\d\d:\d\d<\d\d:\d\d, running", text), text  # elapsed < ETA


# ------------------------------------------------------------------------ driver lock
def _other_driver(folder: Path, executor: str) -> subprocess.Popen:
    """Another process holding the results folder's driver lock, as a running driver does."""
    code = ("import sys, time; from vlmeft.bench.store import DriverLock; "
            "lock = DriverLock(sys.argv[1], sys.argv[2]).__enter__(); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), executor], stdout=subprocess.PIPE, text=True,
                            env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("mine, theirs", [("local", "ray"), ("ray", "local"), ("local", "local")])
def test_a_second_driver_on_a_results_folder_gets_a_one_line_error(tmp_path, capsys, mine, theirs):
    other = _other_driver(tmp_path, theirs)
    try:
        # It fails at once (exit 2) instead of waiting for the lock or running the cells again.
        assert main(["bench", "--profile", "test", "--out", str(tmp_path), "--no-progress", "--executor", mine]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path}: another vlmeft bench (pid {other.pid} on ") and len(
            err.strip().splitlines()) == 1, err
        assert f"executor {theirs}" in err and "use another --out" in err
        assert not list(tmp_path.glob("*.json"))  # nothing written
    finally:
        other.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops the lock
        other.wait()
    with DriverLock(tmp_path, mine):  # so a killed driver leaves no stale lock
        pass


def test_the_driver_lock_is_per_folder(tmp_path):
    with DriverLock(tmp_path / "a", "local"), DriverLock(tmp_path / "b", "ray"):
        pass


# ----------------------------------------------------------------------------- flags
@pytest.mark.parametrize("argv, fragment", [
    (["--address", "auto"], "--address: applies to --executor ray only"),
    (["--gpus-per-cell", "0.5"], "--gpus-per-cell: applies to --executor ray only"),
    (["--executor", "ray", "--jobs", "2"], "--jobs: sets local worker processes"),
    (["--executor", "ray", "--fail-fast"], "--fail-fast: runs the cells in this process"),
    (["--executor", "ray", "--address", "headnode"], "expected auto or HOST:PORT"),
    (["--executor", "ray", "--address", "head:99999"], "expected auto or HOST:PORT"),
    (["--executor", "ray", "--gpus-per-cell", "0.5"], "cells run on --device cpu; add --device cuda"),
    (["--executor", "ray", "--gpus-per-cell", "1.5", "--device", "cuda"], "whole number of GPUs"),
    (["--executor", "ray", "--gpus-per-cell", "-1", "--device", "cuda"], "must be 0 or more GPUs"),
    (["--executor", "ray", "--cpus-per-cell", "0"], "must be a positive number of CPUs"),
    (["--jobs", "0"], "jobs must be positive"),
])
def test_executor_flags_are_checked_before_anything_runs(tmp_path, capsys, argv, fragment):
    assert main(["bench", "--profile", "test", "--out", str(tmp_path), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not tmp_path.joinpath(DriverLock.NAME).exists()  # refused before taking the folder


def test_without_ray_the_ray_executor_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    monkeypatch.delitem(sys.modules, "vlmeft.bench.ray_executor", raising=False)
    assert main(["bench", "--profile", "test", "--out", str(tmp_path), "--no-progress", "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --executor ray: needs Ray, an optional extra: pip install -e '.[ray]' (or pip install " \
                  "'vlmeft[ray]')\n"


def test_the_local_executor_needs_no_ray():
    code = ("import sys; sys.modules['ray'] = None; from vlmeft.bench.executors import make_executor; "
            "from vlmeft.bench.runner import run_bench; print(make_executor('local', jobs=2).describe())")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2 local worker processes", done.stderr[-2000:]


# ------------------------------------------------------------------- worker checks
def test_a_worker_refuses_cells_it_cannot_vouch_for(synthclip):
    """A worker on other code, or other weights, than the driver's reports an error, not a row."""
    spec = WorkerSpec(profile=get_profile("test"), backbone=synthclip.name, pretrained=synthclip.pretrained,
                      weights_id=synthclip.weights_id, device="cpu", code={"zsclip": "0123456789ab"})
    cell = Cell("zsclip", "digits", "few-shot", 0, 1, synthclip.name, synthclip.weights_id).to_dict()
    kind, value, where = run_in_worker(spec, cell)
    assert kind == "error" and "code for 'zsclip'" in value and "is not the driver's (0123456789ab)" in value
    assert where["executor"] == "local" and where["pid"] == os.getpid()
    kind, value, _ = run_in_worker(replace(spec, code={}, weights_id="synthclip:other"), cell)
    assert kind == "error" and "the driver's are synthclip:other" in value
    kind, value, _ = run_in_worker(replace(spec, code={}), cell)
    assert kind == "row" and value["method"] == "zsclip"


# ------------------------------------------------------------- a killed local worker
def test_a_local_worker_killed_mid_cell_costs_no_row(tmp_path, synthclip):
    """--jobs 2: SIGKILL one worker process while cells run; the cells in flight run again in
    a fresh pool, and every cell ends with exactly one row."""
    profile = Profile(name="kill", description="", seeds=(1, 2, 3, 4),
                      plans=(ProtocolPlan("few-shot", ("digits",), (1,)),), methods=("coop",),
                      overrides={"coop": {"epochs": "20"}})
    path = results_path(tmp_path, profile)
    killed: dict[str, object] = {}

    def kill_a_worker() -> None:
        try:
            wait_for(lambda: path.is_file() and read_results(path)["rows"], 600, "a first row")
            workers = wait_for(lambda: [p for p, cmd in descendants().items() if "spawn_main" in cmd], 60,
                               "a worker process")
            os.kill(workers[0], signal.SIGKILL)
            killed["pid"] = workers[0]
        except BaseException as err:  # noqa: BLE001 (reported by the test thread)
            killed["error"] = err

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    summary = run_bench(profile, Selection(), tmp_path, backbone=synthclip, progress=False, jobs=2)
    killer.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    assert "pid" in killed
    doc = read_results(path)
    assert (summary.ran, summary.failed, doc["failures"]) == (4, [], [])
    keys = [cell_key(r) for r in doc["rows"]]
    assert len(keys) == len(set(keys)) == 4  # none lost, none twice
    retried = [r for r in doc["rows"] if r["ran_on"]["attempt"] >= 2]
    assert retried, [r["ran_on"] for r in doc["rows"]]
    assert all(r["ran_on"]["pid"] != killed["pid"] and r["ran_on"]["executor"] == "local" for r in retried)
