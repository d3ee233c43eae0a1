"""`vlmeft bench --executor ray` on one module-scoped local Ray instance (2 CPUs, no
dashboard, nothing leaves the machine): the same rows as the local executor on every
protocol of the quick profile, and the three faults done for real: a Ray worker killed
by its pid mid-cell, the driver killed by a signal, a cell that raises.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from tests.process_helpers import cmdline, descendants, wait_for
from vlmeft.bench.plan import Selection, build_cells
from vlmeft.bench.profiles import Profile, ProtocolPlan, get_profile
from vlmeft.bench.ray_executor import RayExecutor
from vlmeft.bench.runner import results_path, run_bench
from vlmeft.bench.store import RUN_FIELDS, DriverLock, cell_key, measured, read_results
from vlmeft.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs owned by this test process; its GCS address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _rows(path: Path) -> list[dict]:
    return read_results(path)["rows"] if path.is_file() else []


# ------------------------------------------------------------------- same rows as local
def test_ray_rows_equal_local_rows_on_every_protocol_of_quick(cluster, synthclip, tmp_path):
    quick = get_profile("quick")
    selection = Selection(methods=["zsclip", "coop", "red-circle"], shots=[1], seeds=[1])
    cells = build_cells(quick, selection, synthclip, warn=False)
    assert {c.protocol for c in cells} == {p.protocol for p in quick.plans}  # the subset covers every protocol

    local = run_bench(quick, selection, tmp_path / "local", backbone=synthclip, progress=False)
    on_ray = run_bench(quick, selection, tmp_path / "ray", backbone=synthclip, progress=False,
                       executor=RayExecutor())
    assert (local.ran, on_ray.ran, local.failed, on_ray.failed) == (len(cells), len(cells), [], [])
    a, b = _rows(local.path), _rows(on_ray.path)
    assert [measured(r) for r in a] == [measured(r) for r in b]  # everything but timing and ran_on
    assert all(set(r) - set(RUN_FIELDS) == set(measured(r)) and len(measured(r)) > 12 for r in b)
    node = ray.get_runtime_context().get_node_id()
    assert {r["ran_on"]["executor"] for r in a} == {"local"}
    assert all(r["ran_on"]["executor"] == "ray" and r["ran_on"]["node_id"] == node and r["ran_on"]["attempt"] == 1
               and r["ran_on"]["node"] == socket.gethostname() for r in b)
    assert {r["ran_on"]["pid"] for r in b}.isdisjoint({os.getpid()})  # measured in Ray workers, not here


# ------------------------------------------------------------------ a worker killed
def test_a_ray_worker_killed_mid_cell_is_retried_and_no_row_is_lost(cluster, synthclip, tmp_path, capsys):
    profile = Profile(name="kill", description="", seeds=(1, 2, 3, 4),
                      plans=(ProtocolPlan("few-shot", ("digits",), (1,)),), methods=("coop",),
                      overrides={"coop": {"epochs": "60"}})  # about a second a cell on an idle core
    path = results_path(tmp_path, profile)
    killed: dict[str, object] = {}

    def busy_workers() -> dict[int, str]:
        # Ray titles a worker process "ray::<task name>" while it runs a task; ours are cell labels.
        return {p: cmd[5:] for p, cmd in descendants().items() if cmd.startswith("ray::coop digits few-shot")}

    def kill_a_worker() -> None:
        try:
            wait_for(lambda: _rows(path), 600, "a first row")  # the workers have loaded their backbone
            for _ in range(20):
                pid, label = next(iter(wait_for(busy_workers, 120, "a worker running a cell").items()))
                time.sleep(0.1)
                if cmdline(pid).startswith(f"ray::{label}"):  # still in the same cell: kill it there
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, label=label)
                    return
            raise AssertionError("no worker stayed in a cell for 0.1 s")
        except BaseException as err:  # noqa: BLE001 (reported by the test thread)
            killed["error"] = err

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    summary = run_bench(profile, Selection(), tmp_path, backbone=synthclip, executor=RayExecutor())
    killer.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    doc = read_results(path)
    assert (summary.ran, summary.failed, doc["failures"]) == (4, [], [])
    keys = [cell_key(r) for r in doc["rows"]]
    assert len(keys) == len(set(keys)) == 4  # none lost, none twice
    row = next(r for r in doc["rows"] if f"seed {r['seed']}" in killed["label"])
    assert row["ran_on"]["attempt"] == 2 and row["ran_on"]["pid"] != killed["pid"]  # Ray ran it again
    assert all(r["ran_on"]["attempt"] == 1 for r in doc["rows"] if r is not row)
    err = capsys.readouterr().err
    assert "running 2, failed 0" in err  # the progress line read both busy CPUs


# ------------------------------------------------------------------ a cell that raises
def test_a_cell_that_raises_is_recorded_as_failed_and_the_rest_go_on(cluster, synthclip, tmp_path):
    """CoOp with momentum -1 builds (planning passes) but SGD refuses it when training starts."""
    profile = Profile(name="raises", description="", seeds=(1, 2), plans=(ProtocolPlan("few-shot", ("digits",), (1,)),),
                      methods=("zsclip", "coop"), overrides={"coop": {"momentum": "-1"}})
    docs = {}
    for name, executor in (("local", None), ("ray", RayExecutor())):
        summary = run_bench(profile, Selection(), tmp_path / name, backbone=synthclip, progress=False,
                            executor=executor)
        assert summary.ran == 1 and [c.method for c, _ in summary.failed] == ["coop", "coop"]
        docs[name] = read_results(summary.path)
    for name, doc in docs.items():
        assert [r["method"] for r in doc["rows"]] == ["zsclip"]
        assert [f["error"] for f in doc["failures"]] == ["ValueError: Invalid momentum value: -1.0"] * 2
        assert {f["ran_on"]["executor"] for f in doc["failures"]} == {name}
    assert measured(docs["local"]["rows"][0]) == measured(docs["ray"]["rows"][0])


# -------------------------------------------------------------------- the driver killed
def _bench(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vlmeft", "bench", "--profile", "quick", "--methods", "zsclip,coop",
            "--protocols", "few-shot", "--shots", "1,4", "--out", str(out), "--no-progress", *extra]


def test_a_killed_driver_resumes_and_a_second_driver_is_refused(cluster, tmp_path, capsys):
    out = tmp_path / "bench"
    cmd = _bench(out, "--executor", "ray", "--address", cluster)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    path = results_path(out, get_profile("quick"))
    total = 1 + 2 * 2  # zsclip once; coop at 1 and 4 shots x 2 seeds
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / DriverLock.NAME

    def holds_lock() -> bool:
        return driver.poll() is not None or (lock.is_file() and f'"pid": {driver.pid},' in lock.read_text())

    try:
        wait_for(holds_lock, 300, "the driver to take the results folder")
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        # A second driver on the same folder, of the other executor, is refused at once (the
        # first has not even loaded its backbone yet: it cannot have finished in between).
        assert main(["bench", "--profile", "quick", "--methods", "zsclip", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out}: another vlmeft bench (pid {driver.pid} on ") and err.count("\n") == 1
        assert "executor ray" in err
        wait_for(lambda: _rows(path) or driver.poll() is not None, 600, "a first row")
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    kept = _rows(path)
    assert 1 <= len(kept) < total
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{total} cells, {len(kept)} already finished, {total - len(kept)} to run on Ray" in again.stderr
    final = _rows(path)
    keys = [cell_key(r) for r in final]
    assert len(keys) == len(set(keys)) == total
    assert all(r in final for r in kept)  # the finished rows are kept as they were: not run again
    assert not list(out.glob("*.tmp"))


# ------------------------------------------------------------------------ bad input
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_cluster_input_is_one_line_exit_2(cluster, tmp_path, capsys):
    base = ["bench", "--profile", "test", "--out", str(tmp_path), "--no-progress", "--executor", "ray"]
    cases = [
        (["--address", f"127.0.0.1:{_free_port()}"], "--address: cannot reach a Ray cluster at 127.0.0.1:"),
        (["--address", cluster, "--gpus-per-cell", "0.5", "--device", "cuda"],
         "--gpus-per-cell: asks for 0.5 GPU per cell, but the cluster (Ray at"),
        (["--address", cluster, "--cpus-per-cell", "3"], "--cpus-per-cell: no node has 3 CPUs (the most on one node: 2)"),
    ]
    for argv, fragment in cases:
        assert main([*base, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
    assert ray.is_initialized()  # the test's own connection is left as it was
    assert not list(tmp_path.glob("*.json"))
