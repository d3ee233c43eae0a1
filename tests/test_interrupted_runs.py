"""Interrupted runs: a real `vlmeft backbone pretrain` / `vlmeft bench` process killed with a
signal partway loses nothing it had finished, and rerunning the same command resumes.

tests/test_pretrain.py checks resume via the hidden --stop-after flag (a clean early exit)
and tests/test_bench.py kills bench with SIGTERM and SIGKILL. Here pretraining is killed
for real (SIGKILL: no chance to clean up; SIGINT: Ctrl-C), and bench gets Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import synthclip_available
from vlmeft.backbone.synthclip.pretrain import CHECKPOINT, WEIGHTS, Recipe, pretrain
from vlmeft.bench.store import read_results

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
STEPS = 30
RECIPE = dict(steps=STEPS, batch_size=16, pool_size=300, warmup=2, checkpoint_every=2, threads=1)


def pretrain_cmd(out: Path, every: int = 2) -> list[str]:
    """The CLI form of RECIPE (the uninterrupted reference run uses the same settings)."""
    return [sys.executable, "-m", "vlmeft", "backbone", "pretrain", "--steps", str(STEPS), "--batch-size", "16",
            "--pool-size", "300", "--warmup", "2", "--checkpoint-every", str(every), "--threads", "1",
            "--no-progress", "--out", str(out)]


def _ckpt_step(out: Path) -> int:
    path = out / CHECKPOINT
    if not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])  # atomic writes: never torn


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default disposition. A shell starts background jobs
    with SIGINT ignored, and Python keeps an inherited SIG_IGN, so a suite run with `&` would
    otherwise send SIGINT into the void."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _kill_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"ended before the signal: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "the run made no progress in time"
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The weights of an uninterrupted run of the same recipe."""
    out = tmp_path_factory.mktemp("pretrain-ref")
    result = pretrain(Recipe(**RECIPE), out, progress=False, log=lambda m: None)
    assert result["exported"]
    return load_file(str(out / WEIGHTS))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_pretraining_resumes_to_the_same_weights(reference, tmp_path, sig):
    out = tmp_path / "run"
    cmd = pretrain_cmd(out)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    _kill_when(proc, lambda: _ckpt_step(out) >= 4, sig)
    stdout, stderr = proc.communicate()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: one line, exit 130, no traceback
        assert proc.returncode == 130, stderr[-2000:]
        assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted", stderr
    kept = _ckpt_step(out)
    assert 4 <= kept < STEPS, "the kill came too late to interrupt anything"
    assert not (out / WEIGHTS).exists()  # nothing half-exported

    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from step {kept}" in done.stdout
    assert _ckpt_step(out) == STEPS
    resumed = load_file(str(out / WEIGHTS))
    assert resumed.keys() == reference.keys()
    for key in reference:  # bit-identical: every batch is a function of (seed, step)
        assert torch.equal(resumed[key], reference[key]), key
    assert not list(out.glob("*.tmp"))


def test_pretraining_killed_during_many_checkpoint_writes_never_leaves_a_torn_file(tmp_path):
    """SIGKILL at an arbitrary moment (checkpoint every step, so a write is often in flight):
    whatever is on disk afterwards loads, and the rerun resumes from it."""
    out = tmp_path / "run"
    cmd = pretrain_cmd(out, every=1)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    _kill_when(proc, lambda: (out / CHECKPOINT).is_file(), signal.SIGKILL)
    proc.communicate()
    step = _ckpt_step(out)  # raises if torn
    assert step >= 1
    done = subprocess.run(cmd + ["--steps", str(step + 2)], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from step {step}" in done.stdout and (out / WEIGHTS).is_file()


# --------------------------------------------------------------------------------- bench
def _bench_cmd(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vlmeft", "bench", "--profile", "test", "--out", str(out), "--no-progress",
           "--threads", "1"]
    if not synthclip_available():
        cmd += ["--backbone", "vlmeft-tiny-vit", "--pretrained", "none"]
    return cmd


def _rows(out: Path) -> list[dict]:
    files = list(out.glob("*.json"))
    return read_results(files[0])["rows"] if files else []


def test_bench_ctrl_c_keeps_finished_cells_and_resumes(tmp_path):
    out = tmp_path / "bench"
    cmd = _bench_cmd(out)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    _kill_when(proc, lambda: len(_rows(out)) >= 2, signal.SIGINT)
    _, stderr = proc.communicate()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    kept = _rows(out)
    assert len(kept) >= 2
    done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(kept)} already finished" in done.stderr
    final = _rows(out)
    assert all(r in final for r in kept)  # finished cells are kept as they were, not rerun
    assert len(final) > len(kept) and not list(out.glob("*.tmp"))
