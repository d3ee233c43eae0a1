"""benchmarks/ray_executor.py's arithmetic: the LPT makespan and the report, which must
catch rows that differ between executors. The timed runs are the benchmark's business."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlmeft.bench.store import SCHEMA, ResultStore

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ray_executor.py"


@pytest.fixture(scope="module")
def bench() -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(SCRIPT), run_name="ray_executor_benchmark"))  # not as __main__


def test_lpt_makespan(bench):
    assert bench.lpt_makespan([5, 4, 3, 3, 3], 2) == 10  # 5+3 | 4+3+3: longest first, onto the least loaded
    assert bench.lpt_makespan([5, 4, 3, 3, 3], 1) == 18
    assert bench.lpt_makespan([7, 1, 1], 8) == 7  # never below the longest cell


def _run(folder: Path, executor: str, accuracy: float) -> None:
    store = ResultStore(folder / "quick-s1-x.json", {"schema": SCHEMA, "profile": "quick", "config_hash": "x"})
    for seed, seconds in ((1, 4.0), (2, 2.0)):
        store.add_row({"schema": SCHEMA, "method": "coop", "task": "digits", "protocol": "few-shot", "shots": 1,
                       "seed": seed, "backbone": "b", "backbone_weights": "w", "accuracy": accuracy,
                       "cell_seconds": seconds, "cell_cpu_seconds": seconds / 2, "train_seconds": 1.0,
                       "ran_on": {"executor": executor, "pid": seed}})


@pytest.mark.parametrize("ray_accuracy, same", [(0.5, True), (0.6, False)])
def test_report_compares_rows_and_applies_the_model(bench, tmp_path, capsys, ray_accuracy, same):
    _run(tmp_path / "local", "local", 0.5)
    _run(tmp_path / "ray", "ray", ray_accuracy)
    (tmp_path / "summary.json").write_text(json.dumps({
        "profile": "quick", "cpus": 2, "machine_cpus": 2, "local_s": 16.0, "ray_start_s": 2.0, "ray_command_s": 8.0,
        "load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.1, 0.1]}))
    assert bench.report(tmp_path) is same
    out = capsys.readouterr().out
    assert "ratio local / ray: 1.60x" in out
    assert f"rows identical (timing and ran_on aside): {'yes' if same else 'NO'}" in out
    # F = 16 - 6 s in cells = 10 s; on 2 workers the cells take max(4, 2) = 4 s: 14 s, 16/14 = 1.14x.
    assert "| 2 | 14.0 | 1.14x | 12.0 | 1.08x |" in out
