"""Smoke test of benchmarks/train_cost.py: every cell kind runs at ViT-B/16 shapes on tiny
sizes and reports consistent figures. Timings themselves are the benchmark's business."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_cost.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def args() -> argparse.Namespace:
    return argparse.Namespace(threads=1, repeats=1, classes=3, shots=2, batch=2, cocoop_batch=2,
                              cocoop_classes=2, infer_batch=2, memory_batch=2)


@pytest.mark.parametrize("method", ["coop", "clip-adapter", "tip-adapter-f", "linear-probe"])
def test_epoch_cell(bench, args, method):
    out = bench.cell_epoch(method, args)
    assert out["images"] == 6 and out["params"] > 0
    assert out["naive_epoch_s"] > 0 and out["ours_epoch_s"] > 0
    assert out["speedup"] == pytest.approx(out["naive_epoch_s"] / out["ours_epoch_s"])
    assert out["anchor_speedup"] == pytest.approx(out["anchor_epoch_s"] / out["ours_epoch_s"])
    if method in bench.ANCHOR_PROMPT_METHODS:
        # The anchor's loop: prompts at the full context (ViT-B/16: 77 tokens), ours cut after EOT.
        assert out["anchor_tokens"] == 77 and out["ours_tokens"] < 30
        assert out["anchor_step_s"] > 0
    else:  # no prompts: the naive loop is the anchor's
        assert out["anchor_epoch_s"] == out["naive_epoch_s"]


@pytest.mark.parametrize("mode", ["chunked", "single"])
def test_cocoop_memory_cell(bench, args, mode):
    out = bench.cell_cocoop_memory(f"3:{mode}", args)
    assert out["classes"] == 3 and out["mode"] == mode and out["logits_shape"] == [2, 3]
    assert out["peak_mb"] >= out["base_mb"] > 0 and out["growth_mb"] >= 0
    assert out["sequences"] == 6


def test_cocoop_batched_equals_the_per_image_loop(bench, args):
    out = bench.cell_cocoop("batched", args)
    assert out["max_abs_logit_diff"] < 1e-5
    assert out["params"] == 35_360  # ViT-B/16 shapes: the paper's CoCoOp count


def test_inference_cell_times_every_method(bench, args):
    out = bench.cell_inference("all", args)
    assert set(out) == {*bench.INFERENCE_METHODS, "coop-uncached"}
    assert all(v > 0 for v in out.values())
