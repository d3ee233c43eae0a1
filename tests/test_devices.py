"""Devices, precision and image-decoding workers (issue 13, part 3).

CUDA cannot be exercised here: device resolution is tested with torch's CUDA queries
patched, precision with bf16 on the CPU (and fp16 with the CPU refusal lifted, to run
the GradScaler branch), and benchmarks/gpu_smoke.py's per-method step on the CPU with a
tiny backbone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmeft import registry
from vlmeft.cli import main
from vlmeft.data.imagefolder import load_imagefolder_task
from vlmeft.data.loading import Preprocess
from vlmeft.engine import FeatureCache, fit, predict
from vlmeft.engine import train as engine_train
from vlmeft.engine.cache import encode_split
from vlmeft.engine.device import autocast, check_precision, choose_precision, grad_scaler, resolve_device
from vlmeft.engine.loader import image_batches
from vlmeft.errors import VlmeftError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_smoke  # noqa: E402


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


# ------------------------------------------------------------------- devices
def test_cpu_and_auto_resolve(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


@pytest.mark.parametrize("spec,message", [
    ("tpu", "unknown device 'tpu': expected auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "unknown device 'cuda:x'"),
    ("cuda", "'cuda' was asked for, but torch"),
    ("cuda:1", "'cuda:1' was asked for"),
    ("mps", "'mps' was asked for, but torch finds no Apple GPU"),
])
def test_unavailable_or_unknown_devices_are_errors(monkeypatch, spec, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(VlmeftError, match="^--device: ") as info:
        resolve_device(spec)
    assert message in str(info.value)


def test_cuda_index_beyond_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(VlmeftError, match="there is no cuda:2: this machine has 2 CUDA device"):
        resolve_device("cuda:2")


# ----------------------------------------------------------------- precision
def test_precision_rules():
    cpu = torch.device("cpu")
    assert check_precision("bf16", cpu) == "bf16" and check_precision("fp32", cpu) == "fp32"
    with pytest.raises(VlmeftError, match="fp16 needs a GPU"):
        check_precision("fp16", cpu)
    with pytest.raises(VlmeftError, match="unknown precision 'fp8'"):
        check_precision("fp8", cpu)
    # An explicit --precision must run here; a config's fp16 falls back to fp32 with a note.
    with pytest.raises(VlmeftError, match="fp16 needs a GPU"):
        choose_precision("fp16", "fp32", cpu)
    chosen, note = choose_precision(None, "fp16", cpu)
    assert chosen == "fp32" and "fp16" in note and "fp32" in note
    assert choose_precision(None, "bf16", cpu) == ("bf16", None)
    assert grad_scaler(cpu, "bf16") is None and grad_scaler(cpu, "fp32") is None
    assert isinstance(grad_scaler(cpu, "fp16"), torch.amp.GradScaler)
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def _coop(backbone, task, **config):
    return registry.build("coop", backbone, task.classnames, task.templates,
                          {"epochs": 2, "min_steps": 0, "n_ctx": 2, "augment": True, **config}, seed=0)


def test_bf16_training_and_evaluation_run_on_the_cpu(tiny_vit, tiny_task):
    method = _coop(tiny_vit, tiny_task, precision="bf16")
    report = fit(method, tiny_task.train, tiny_task.val, seed=1, progress=False, cache=FeatureCache(disk=False))
    assert report.steps > 0 and all(np.isfinite(h["loss"]) for h in report.history)
    logits = predict(method, tiny_task.test, cache=FeatureCache(disk=False))
    assert logits.dtype == torch.float32 and logits.shape == (len(tiny_task.test), len(tiny_task.classnames))
    # Text features cached under bf16 are not reused outside autocast (they were: a dtype error).
    method.eval()
    images = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        with autocast(torch.device("cpu"), "bf16"):
            method(images)
        assert method(images).dtype == torch.float32


def test_fp16_on_the_cpu_is_refused_by_the_engine(tiny_vit, tiny_task):
    method = _coop(tiny_vit, tiny_task, precision="fp16")
    with pytest.raises(VlmeftError, match="fp16 needs a GPU"):
        fit(method, tiny_task.train, seed=1, progress=False)
    with pytest.raises(VlmeftError, match="fp16 needs a GPU"):
        predict(method, tiny_task.test)


def test_fp16_trains_with_a_grad_scaler(tiny_vit, tiny_task, monkeypatch):
    """The fp16 branch of the loop (scale, step, update), run on the CPU with the CPU
    refusal lifted: every optimiser step goes through the scaler."""
    monkeypatch.setattr(engine_train, "check_precision", lambda precision, device, where="": precision)
    calls = []
    real_step = torch.amp.GradScaler.step

    def spy(self, optimizer, *args, **kwargs):
        calls.append(self.get_scale())
        return real_step(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", spy)
    method = _coop(tiny_vit, tiny_task, precision="fp16")
    before = method.prompt_learner.ctx.detach().clone() if hasattr(method, "prompt_learner") else None
    report = fit(method, tiny_task.train, seed=1, progress=False, cache=FeatureCache(disk=False))
    assert len(calls) == report.steps > 0 and calls[0] == 2.0**16
    if before is not None:
        assert not torch.equal(before, method.prompt_learner.ctx)  # the scaled steps were taken


# --------------------------------------------------------------------- workers
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in ("red", "green"):
        (root / name).mkdir()
        for i in range(5):
            size = (20 + 4 * i, 28)  # varied sizes: resized per image
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_workers_give_the_same_batches_in_the_same_order(tiny_vit, folder):
    task = load_imagefolder_task(folder)
    split = task.train
    prep = Preprocess.for_backbone(tiny_vit)
    order = [[2, 0], [1], [3, 4, 0]][: max(1, len(split) // 2)]
    order = [[i for i in b if i < len(split)] for b in order]
    plain = list(image_batches(split, order, prep, device=tiny_vit.device, workers=0))
    parallel = list(image_batches(split, order, prep, device=tiny_vit.device, workers=2))
    assert len(plain) == len(parallel) == len(order)
    for a, b in zip(plain, parallel):
        assert torch.equal(a, b)
    assert torch.equal(encode_split(tiny_vit, task.test, workers=2), encode_split(tiny_vit, task.test, workers=0))


def test_a_damaged_image_in_a_worker_is_one_line_naming_it(tiny_vit, folder, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    bad = sorted((root / "green").iterdir())[-1]
    bad.write_bytes(b"not a png")
    task = load_imagefolder_task(root)
    split = task.test if bad in task.test.images else task.train if bad in task.train.images else task.val
    with pytest.raises(VlmeftError) as info:
        encode_split(tiny_vit, split, workers=2)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_negative_workers_is_an_error(capsys):
    code, out, err = _cli(capsys, "run", "coop", "--task", "digits", "--workers", "-1")
    _one_line_error(code, err, "--workers: workers must be a non-negative integer")


# ------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("argv", [
    ["run", "coop", "--task", "digits"],
    ["eval", "coop", "--checkpoint", "x", "--task", "digits"],
    ["predict", "coop", "--checkpoint", "x", "a.png"],
    ["params", "coop"],
    ["conformance", "--method", "vp"],
    ["bench", "--methods", "zsclip"],
    ["backbone", "evaluate", "--tasks", "digits"],
    ["backbone", "pretrain", "--steps", "1"],
    ["export", "coop", "--checkpoint", "x", "--out", "y"],
])
def test_every_backbone_command_takes_device(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if argv[0] in ("eval", "predict", "export"):  # a real checkpoint, so that the device is what fails
        from vlmeft.engine import checkpoint

        method = registry.build("coop", _tiny(), ["a", "b"], ["{}"], {"n_ctx": "2"})
        checkpoint.save(method, tmp_path / "x")
        Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, out, err = _cli(capsys, *argv, "--device", "tpu")
    _one_line_error(code, err, "--device: unknown device 'tpu'")
    code, out, err = _cli(capsys, *argv, "--device", "cuda:0")
    _one_line_error(code, err, "'cuda:0' was asked for")


def _tiny():
    from vlmeft.backbone import load_backbone

    return load_backbone("vlmeft-tiny-vit", None)


def test_fp16_on_the_cpu_is_bad_input(capsys):
    code, out, err = _cli(capsys, "run", "coop", "--task", "digits", "--device", "cpu", "--precision", "fp16")
    _one_line_error(code, err, "--precision: fp16 needs a GPU (CUDA or MPS); on the CPU use bf16 or fp32")
    code, out, err = _cli(capsys, "run", "coop", "--task", "digits", "--precision", "bf16", "--set", "precision=fp32")
    _one_line_error(code, err, "--precision bf16 contradicts --set precision=fp32")


def test_run_records_device_and_precision(capsys):
    code, out, err = _cli(capsys, "run", "coop", "--task", "shapes", "--shots", "1", "--backbone", "vlmeft-tiny-vit",
                          "--pretrained", "none", "--no-progress", "--set", "epochs=1", "--set", "min_steps=0",
                          "--set", "n_ctx=2", "--device", "cpu", "--precision", "bf16", "--json")
    assert code == 0, err
    import json

    result = json.loads(out.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["precision"] == "bf16" and result["warnings"] == []


# ------------------------------------------------------------------ gpu_smoke
def test_gpu_smoke_without_cuda_says_so_and_exits_0():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py")], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no CUDA device here") and "nothing to measure" in proc.stdout


def test_gpu_smoke_steps_every_method_in_fp32_and_bf16(tiny_vit, tiny_coca):
    """The step and the agreement check that run on a GPU, here on the CPU at tiny size (the
    generative methods on a tiny CoCa)."""
    for name in registry.names():
        bb = tiny_coca if gpu_smoke.generates(name) else tiny_vit
        rows = [gpu_smoke.measure(name, bb, p, steps=1, size=4, classes=3) for p in gpu_smoke.PRECISIONS]
        assert all(r.steps_per_s > 0 and r.peak_mib is None for r in rows), name
        diff = gpu_smoke.agreement(name, bb, size=4, classes=3)
        assert diff <= gpu_smoke.TOLERANCE, (name, diff)


def test_gpu_smoke_catches_outputs_that_move_under_bf16(tiny_vit, monkeypatch):
    """A mutant backbone whose features shift only under autocast fails the agreement check."""
    from vlmeft.backbone.wrapper import Backbone

    real = Backbone.encode_image

    def drifting(self, images, **kwargs):
        out = real(self, images, **kwargs)
        if torch.is_autocast_enabled("cpu"):
            out = torch.nn.functional.normalize(out + 0.3 * torch.ones_like(out), dim=-1)
        return out

    monkeypatch.setattr(Backbone, "encode_image", drifting)
    assert gpu_smoke.agreement("zsclip", tiny_vit, size=4, classes=3) > gpu_smoke.TOLERANCE


def test_gpu_smoke_catches_next_token_probabilities_that_move_under_bf16(tiny_coca, monkeypatch):
    """The generative agreement (next-token probabilities) fails for a captioner whose
    decoder states shift only under autocast; the same captioner unshifted agrees."""
    from vlmeft.backbone.captioner import Captioner

    assert gpu_smoke.agreement("vl-adapter", tiny_coca, size=4, classes=3) <= gpu_smoke.TOLERANCE
    real = Captioner.decode

    def drifting(self, states, memory, hooks=None, **kwargs):
        out = real(self, states, memory, hooks, **kwargs) if hooks is not None else real(self, states, memory, **kwargs)
        return out * 4.0 if torch.is_autocast_enabled("cpu") else out

    monkeypatch.setattr(Captioner, "decode", drifting)
    assert gpu_smoke.agreement("vl-adapter", tiny_coca, size=4, classes=3) > gpu_smoke.TOLERANCE


def test_gpu_smoke_self_check_on_the_cpu(capsys):
    code = gpu_smoke.main(["--device", "cpu", "--backbone", "vlmeft-tiny-vit", "--steps", "1", "--batch", "2",
                           "--classes", "2", "--methods", "zsclip,coop"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith(("zsclip", "coop"))]
    assert len(rows) == 2 and all(line.endswith("yes") and " n/a " in line for line in rows), out
