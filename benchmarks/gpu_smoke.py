"""GPU smoke test: every registered method, a few training steps at ViT-B/16 shapes, in fp32 and bf16.

The generative (VQA, captioning) methods run on a CoCa of the same scale (``--captioner``,
default ``coca_ViT-B-32``, random weights): their step is the teacher-forced language-model
loss of a question-answer batch, their outputs the next-token probabilities.

    python benchmarks/gpu_smoke.py                    # on a CUDA machine (cuda:0)
    python benchmarks/gpu_smoke.py --device cuda:1 --steps 10 --batch 32 --json

Weights are random (an untrained open_clip ``ViT-B-16``; nothing downloads): speed and
memory do not depend on weight values, and agreement between precisions is a property of
the arithmetic. For each method and each precision it prints:

- **steps/s** of one training step: forward under autocast, the method's loss in fp32,
  backward and an SGD step (training-free methods: a forward pass; the red circle: one
  grounding call over the batch), timed over ``--steps`` steps after one warm-up step;
- **peak memory**: ``torch.cuda.max_memory_allocated`` during those steps.

Then, for every method, the eval-mode outputs on the *same* weights and images in bf16
against fp32. They agree when ``max |bf16 - fp32| <= TOLERANCE`` in cosine units: logits
divided by the backbone's logit scale (so the bound does not depend on the scale), the
red circle's box scores as they are (differences of cosines). TOLERANCE = 0.05 is a
reasoned bound, not yet a measured one: bf16 keeps 8 significant bits (relative rounding
about 4e-3 per operation), and a random-weights ViT-B/16's normalised features drift by
about 1e-2 over 12 blocks, so cosines move by about that; 0.05 leaves 5x headroom while
still catching a tower that runs in the wrong dtype or drops a cast (those move cosines
by 0.1 or more). Re-measure it on the first GPU run and quote the worst case here.

Exit status: 0 when every method runs and agrees, 1 otherwise. Without CUDA it says so
and exits 0: nothing here can be measured on a CPU (the per-method step itself is tested
on the CPU with a tiny backbone, tests/test_devices.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

TOLERANCE = 0.05  # max |bf16 - fp32| in cosine units (module notes)
PRECISIONS = ("fp32", "bf16")


@dataclass
class Row:
    method: str
    precision: str
    steps_per_s: float
    peak_mib: float | None  # None off CUDA


# ------------------------------------------------------------------- building
def build(name: str, backbone: Any, classes: int, seed: int = 0) -> Any:
    """Method ``name`` for ``classes`` classes, its cache (if it has one) filled with
    random unit features of ``4 x classes`` shots."""
    import torch
    import torch.nn.functional as F

    from vlmeft import registry
    from vlmeft.method import Method

    classnames = [f"class {i}" for i in range(classes)]
    method = registry.build(name, backbone, classnames, ["a photo of a {}."], {}, seed=seed)
    if type(method).fit_cache is not Method.fit_cache:
        g = torch.Generator().manual_seed(seed)
        feats = F.normalize(torch.randn(4 * classes, backbone.embed_dim, generator=g), dim=-1)
        labels = torch.arange(classes).repeat(4)
        method.fit_cache(feats.to(backbone.device), labels.to(backbone.device))
    return method


def batch(backbone: Any, size: int, classes: int, seed: int = 0) -> tuple[Any, Any]:
    """Normalised-range random images ``[B, 3, S, S]`` and labels, on the backbone's device."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, backbone.image_size, backbone.image_size, generator=g)
    labels = torch.randint(classes, (size,), generator=g)
    return images.to(backbone.device), labels.to(backbone.device)


def _grounds(method: Any) -> bool:
    return "classification" not in method.tasks


def _grounding_inputs(images: Any) -> tuple[Any, list, list[str]]:
    """Un-normalised uint8 images and two boxes per image, for a grounding method."""
    import numpy as np

    n, _, h, w = images.shape
    unit = images.detach().float().cpu().sigmoid().permute(0, 2, 3, 1).numpy()
    u8 = (unit * 255).astype(np.uint8)
    boxes = [np.array([[0, 0, w // 2, h // 2], [w // 2, h // 2, w - 1, h - 1]], dtype=np.float32)] * n
    return u8, boxes, ["the object on the left"] * n


def generates(method_or_name: Any) -> bool:
    """A VQA / captioning method (it runs on a captioner, on text batches)."""
    from vlmeft import kinds, registry

    return kinds.generates(registry.get(method_or_name) if isinstance(method_or_name, str) else method_or_name)


# Question-answer pairs of a generative step (words every CoCa tokenizer has).
PROMPTS = ("what color is the object?", "how many objects are there?")
TARGETS = ("red", "two")


def _text_batch(size: int) -> tuple[list[str], list[str]]:
    return [PROMPTS[i % 2] for i in range(size)], [TARGETS[i % 2] for i in range(size)]


# ------------------------------------------------------------------- measuring
def outputs(method: Any, images: Any, precision: str) -> Any:
    """Eval-mode outputs in cosine units (see the module notes), float32 on the CPU."""
    import torch

    from vlmeft.engine.device import autocast

    method.eval()
    method.start_test_stream()  # each precision's pass is a pass of its own (TDA adapts on it)
    with torch.no_grad(), autocast(images.device, precision):
        if generates(method):  # next-token probabilities: bounded like cosines
            tokens, _ = method.sequences(*_text_batch(len(images)))
            out = method.token_logits(tokens[:, :-1], method.encode_images(images)).float().softmax(-1)
        elif _grounds(method):
            out = torch.cat(method.ground(*_grounding_inputs(images)))
        else:
            out = method(images) / method.backbone.logit_scale()
    return out.float().cpu()


def step(method: Any, images: Any, labels: Any, optimizer: Any, precision: str, scaler: Any = None) -> None:
    """One training step (or a forward pass when nothing trains), as the engine runs it."""
    import torch

    from vlmeft.engine.device import autocast

    if (_grounds(method) and not generates(method)) or optimizer is None:
        with torch.no_grad(), autocast(images.device, precision):
            if generates(method):
                tokens, _ = method.sequences(*_text_batch(len(images)))
                return method.token_logits(tokens[:, :-1], method.encode_images(images))
            return method.ground(*_grounding_inputs(images)) if _grounds(method) else method(images)
    method.train()
    with autocast(images.device, precision):
        if generates(method):
            loss = method.lm_loss(method.encode_images(images), *_text_batch(len(images)))
        else:
            loss = method.loss(method(images).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, backbone: Any, precision: str, *, steps: int, size: int, classes: int) -> Row:
    """steps/s and peak memory of ``steps`` training steps of method ``name``."""
    import torch

    from vlmeft.engine.device import grad_scaler

    device = backbone.device
    method = build(name, backbone, classes)
    images, labels = batch(backbone, size, classes)
    params = method.trainable_parameters()
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params and not method.training_free else None
    scaler = grad_scaler(device, precision)
    step(method, images, labels, optimizer, precision, scaler)  # warm-up: kernels, allocator, caches
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(method, images, labels, optimizer, precision, scaler)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Row(name, precision, steps / seconds, peak)


def agreement(name: str, backbone: Any, *, size: int, classes: int) -> float:
    """max |bf16 - fp32| of method ``name``'s outputs on the same weights and images."""
    method = build(name, backbone, classes)
    images, _ = batch(backbone, size, classes)
    return float((outputs(method, images, "bf16") - outputs(method, images, "fp32")).abs().max())


# ------------------------------------------------------------------------ main
def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda",
                        help="a CUDA device (default cuda); cpu runs the same code as a self-check (no memory figures)")
    parser.add_argument("--backbone", default="ViT-B-16", help="open_clip model, random weights (default ViT-B-16)")
    parser.add_argument("--captioner", default="coca_ViT-B-32",
                        help="open_clip CoCa for the generative methods, random weights (default coca_ViT-B-32)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method and precision (default 5)")
    parser.add_argument("--batch", type=int, default=16, help="images per step (default 16)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--methods", default=None, help="comma-separated ids (default: every registered method)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA device here (torch {torch.__version__}): nothing to measure; run this on a GPU machine")
        return 0
    from vlmeft import registry
    from vlmeft.backbone import load_backbone
    from vlmeft.engine.device import resolve_device

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    names = args.methods.split(",") if args.methods else registry.names()
    backbone = load_backbone(args.backbone, None, device=device)
    captioner = None  # built when a generative method comes up
    print(f"{args.backbone} (random weights) on {where}; batch {args.batch}, "
          f"{args.classes} classes, {args.steps} timed steps; bf16 must agree with fp32 within {TOLERANCE} "
          "(cosine units)")
    print(f"{'method':<15} {'fp32 steps/s':>12} {'fp32 MiB':>9} {'bf16 steps/s':>12} {'bf16 MiB':>9} "
          f"{'bf16/fp32':>9} {'max |diff|':>10}  agrees")
    rows, diffs, failed = [], {}, []
    for name in names:
        try:
            bb = backbone
            if generates(name):
                captioner = captioner or load_backbone(args.captioner, None, device=device)
                bb = captioner
            pair = [measure(name, bb, p, steps=args.steps, size=args.batch, classes=args.classes)
                    for p in PRECISIONS]
            diffs[name] = agreement(name, bb, size=args.batch, classes=args.classes)
        except Exception as err:  # noqa: BLE001 (a smoke test reports every failure and goes on)
            failed.append(name)
            print(f"{name:<15} failed: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}")
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows += pair
        ok = diffs[name] <= TOLERANCE
        if not ok:
            failed.append(name)
        f32, b16 = pair
        print(f"{name:<15} {f32.steps_per_s:>12.2f} {_mib(f32.peak_mib):>9} {b16.steps_per_s:>12.2f} "
              f"{_mib(b16.peak_mib):>9} {b16.steps_per_s / f32.steps_per_s:>8.2f}x {diffs[name]:>10.4f}  "
              f"{'yes' if ok else 'NO'}")
    if args.json:
        print(json.dumps({"device": where, "tolerance": TOLERANCE,
                          "rows": [asdict(r) for r in rows], "max_abs_diff": diffs, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
