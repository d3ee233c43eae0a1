"""The Ray executor against the local one on the same machine, and what N workers would give.

Runs the same benchmark twice, as a user would, each into a fresh folder under ``build/``:

1. ``vlmeft bench --profile quick --jobs 1`` (the local executor, one process);
2. ``vlmeft bench --profile quick --executor ray --address ...`` on a Ray instance of
   2 CPUs that this script starts (its start-up is timed and counted in Ray's total).

It prints both wall times and their ratio, checks that both runs wrote the same rows
(timing and ``ran_on`` aside), and applies the cell-time model: on N workers (N GPUs at
``--gpus-per-cell 1``) a run takes about ``F + LPT_N(cells)``, where

- ``F`` is the one-process run's time outside its cells (start-up, planning, task data),
  which every worker also pays once, in parallel;
- ``LPT_N`` is the makespan of the cells' seconds from the rows, scheduled longest-first
  on N workers, one cell per worker at a time.

The model is applied to the rows' wall seconds (this machine's load included) and to
their CPU seconds (the cells run on one thread, so that is their time when each worker has
a core to itself). On a shared machine the two differ, and so does the Ray run from the
model: the CPU share the runs got is printed too. Last, the model's cell part is applied to
the committed full profile's rows (``results/bench``): the benchmark at its real size.

    python benchmarks/ray_executor.py                  # the quick profile (a few minutes on 2 cores)
    python benchmarks/ray_executor.py --profile test   # seconds: a check that it works
    python benchmarks/ray_executor.py --report build/ray-executor-bench-XXXX   # the report again
    python benchmarks/ray_executor.py --model path/to/results      # the model on any run's rows

The machine's load average is printed before and after: on a shared machine, quote the ratio.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = (1, 2, 4, 8, 16, 64)
COMMITTED = ROOT / "results" / "bench"  # the full profile's rows: the model at the benchmark's real size


def bench(profile: str, out: Path, *extra: str) -> float:
    """Run one ``vlmeft bench`` command to completion; its wall time in seconds."""
    cmd = [sys.executable, "-m", "vlmeft", "bench", "--profile", profile, "--out", str(out), "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def rows(out: Path) -> list[dict]:
    from vlmeft.bench.store import read_results

    (path,) = sorted(out.glob("*.json"))
    return read_results(path)["rows"]


def lpt_makespan(seconds: list[float], workers: int) -> float:
    """Longest-processing-time-first list scheduling: within 4/3 of the optimal makespan."""
    loads = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def measure(profile: str, cpus: int) -> Path:
    """Run both executors into a fresh folder; their wall times go to its summary.json."""
    import ray

    (ROOT / "build").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ray-executor-bench-", dir=ROOT / "build"))
    load_before = os.getloadavg()
    local = bench(profile, scratch / "local", "--jobs", "1")
    print(f"local executor, --jobs 1: {local:.1f} s", flush=True)
    start = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        command = bench(profile, scratch / "ray", "--executor", "ray", "--address",
                        ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
    summary = {"profile": profile, "cpus": cpus, "machine_cpus": os.cpu_count(), "local_s": round(local, 2),
               "ray_start_s": round(ray_start, 2), "ray_command_s": round(command, 2),
               "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()]}
    (scratch / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return scratch


def report(scratch: Path) -> bool:
    from vlmeft.bench.store import measured

    t = json.loads((scratch / "summary.json").read_text())
    local, on_ray, cpus = t["local_s"], t["ray_start_s"] + t["ray_command_s"], t["cpus"]
    print(f"machine: {t['machine_cpus']} CPUs; load average before {t['load_before']}, after {t['load_after']}")
    print(f"local executor, --jobs 1: {local:.1f} s")
    print(f"ray executor, {cpus} CPUs: {on_ray:.1f} s (instance start-up {t['ray_start_s']:.1f} s + "
          f"command {t['ray_command_s']:.1f} s)")
    print(f"ratio local / ray: {local / on_ray:.2f}x")
    a, b = rows(scratch / "local"), rows(scratch / "ray")
    same = [measured(r) for r in a] == [measured(r) for r in b]
    print(f"rows identical (timing and ran_on aside): {'yes' if same else 'NO'}, {len(a)} local, {len(b)} ray")

    wall = [float(r["cell_seconds"]) for r in a]
    cpu = [float(r["cell_cpu_seconds"]) for r in a]
    ray_wall = sum(float(r["cell_seconds"]) for r in b)
    fixed = local - sum(wall)
    print(f"\ncells: {len(wall)}; local run: {sum(wall):.1f} s wall and {sum(cpu):.1f} s CPU in cells "
          f"(a {sum(cpu) / sum(wall):.0%} share of a core), longest {max(wall):.1f} s wall / {max(cpu):.1f} s CPU; "
          f"Ray run: {ray_wall:.1f} s wall in cells over {cpus} workers; F = {fixed:.1f} s outside the cells")
    print("| workers (GPUs at --gpus-per-cell 1) | F + LPT(wall s) | vs local | F + LPT(CPU s) | vs local, "
          "a core each |")
    print("|---|---|---|---|---|")
    local_cpu = fixed + sum(cpu)
    for n in WORKERS:
        w, c = fixed + lpt_makespan(wall, n), fixed + lpt_makespan(cpu, n)
        print(f"| {n} | {w:.1f} | {local / w:.2f}x | {c:.1f} | {local_cpu / c:.2f}x |")
    print(f"(measured on Ray with {cpus} CPUs: {on_ray:.1f} s; results in {scratch})")
    print(json.dumps({**t, "ratio": round(local / on_ray, 3), "rows_identical": same, "cells": len(wall),
                      "cell_wall_s": round(sum(wall), 2), "cell_cpu_s": round(sum(cpu), 2), "fixed_s": round(fixed, 2)}))
    return same


def project(folder: Path) -> None:
    """The cell-time model on another run's rows (default: the committed full profile)."""
    from vlmeft.bench.store import read_results, results_files

    for path in results_files(folder):
        cells = [float(r["cell_seconds"]) for r in read_results(path)["rows"] if "cell_seconds" in r]
        if not cells:
            continue
        print(f"\n{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(cells)} cells, "
              f"{sum(cells):.0f} s in cells, longest {max(cells):.1f} s; cells' part of the wall time on N workers:")
        print("| workers | LPT makespan (s) | speed-up of the cells |")
        print("|---|---|---|")
        for n in (1, 2, 4, 8, 16, 32, 64, 128):
            span = lpt_makespan(cells, n)
            print(f"| {n} | {span:.0f} | {sum(cells) / span:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance (default 2)")
    parser.add_argument("--report", type=Path, help="print the report of an earlier run's folder instead of running")
    parser.add_argument("--model", type=Path, default=None,
                        help="only apply the cell-time model to this results folder's rows (default after a run: "
                             "results/bench, the committed full profile)")
    args = parser.parse_args()
    same = True
    if args.report or not args.model:
        same = report(args.report or measure(args.profile, args.cpus))
    project(args.model or COMMITTED)
    if not same:
        raise SystemExit("the two executors wrote different rows")


if __name__ == "__main__":
    main()
