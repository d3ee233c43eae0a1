"""Training-step and inference cost per method at real scale (ViT-B/16 shapes), against
the naive reference loops of the anchor codebases, in the same process.

Speed does not depend on weight values, so an untrained open_clip ``ViT-B-16`` (random
init, nothing downloaded) gives real-scale timings on the CPU. Every figure is printed
beside its naive counterpart and as a ratio; the machines are noisy, quote the ratios.

What is compared (per method, same batch, same classes):

* **Training epoch, 16 shots x 100 classes.** *Naive*: what CoOp on Dassl, CLIP-Adapter
  and Tip-Adapter-F's official scripts do, i.e. every step re-encodes the batch's images
  with the frozen image tower (CLIP-Adapter's script also re-encodes its constant class
  prompts every forward). *Ours*: the engine's exact feature cache, so a step runs only
  the method's own gradient path. Epoch time = measured step time x steps per epoch;
  the cache's one-time cost (encoding the N images once) is reported separately and,
  amortised over the method's default epochs, in ``amortised_speedup``.
  ``linear-probe`` is fitted in closed form on cached features (L-BFGS with a C search
  on val); its naive counterpart is one epoch that re-encodes every image.
* **CoCoOp step at batch 8.** *Naive*: the reference per-image loop, one text-encoder
  pass over all classes per image. *Ours*: one batched pass over ``B*C`` prompts.
  Same logits (max abs difference printed); time and peak-memory growth of a
  forward+backward step.
* **Inference images/s with 100 classes.** A trained CoOp, KgCoOp or CLIP-Adapter
  against zero-shot CLIP: with text features cached in eval mode they should cost the
  same. *Naive*: CoOp re-encoding its prompts on every forward.

Usage::

    python benchmarks/train_cost.py            # ~20-30 min on 2 cores
    python benchmarks/train_cost.py --quick    # < 10 min: fewer timed steps
    python benchmarks/train_cost.py --quick --json   # last line: one JSON object

Each cell runs in a fresh subprocess so peak-memory readings (``ru_maxrss``) are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

EPOCH_METHODS = ("coop", "kgcoop", "clip-adapter", "tip-adapter-f", "linear-probe")
INFERENCE_METHODS = ("zsclip", "coop", "kgcoop", "clip-adapter")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


# ----------------------------------------------------------------------------- cells
def _setup(threads: int, classes: int):  # noqa: ANN202
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from vlmeft.backbone import load_backbone

    backbone = load_backbone("ViT-B-16", pretrained=None)
    classnames = [f"class {i}" for i in range(classes)]
    templates = ["a photo of a {}."]
    return torch, backbone, classnames, templates


def cell_epoch(method_id: str, args: argparse.Namespace) -> dict:
    """One method's training step, cached vs naive, and the per-image encode cost."""
    torch, backbone, classnames, templates = _setup(args.threads, args.classes)
    import torch.nn.functional as F

    from vlmeft import registry
    from vlmeft.engine.train import _optimizer

    n_images = args.classes * args.shots
    batch = args.batch
    method = registry.build(method_id, backbone, classnames, templates, seed=0)
    images = torch.randn(batch, 3, backbone.image_size, backbone.image_size)
    labels = torch.randint(0, args.classes, (batch,))
    feats = F.normalize(torch.randn(n_images, backbone.embed_dim), dim=-1)
    all_labels = torch.arange(n_images) % args.classes

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return backbone.encode_image(images, normalize=True)

    encode_s = _time(encode, args.repeats)  # one batch through the frozen image tower
    per_image_s = encode_s / batch
    cache_build_s = per_image_s * n_images
    steps_per_epoch = max(1, n_images // batch)
    out: dict = {"method": method_id, "images": n_images, "batch": batch, "classes": args.classes,
                 "encode_batch_s": encode_s, "cache_build_s": cache_build_s, "steps_per_epoch": steps_per_epoch}

    if method_id == "linear-probe":
        # Closed-form fit on cached features vs one epoch that re-encodes every image.
        val = F.normalize(torch.randn(args.classes * 4, backbone.embed_dim), dim=-1)
        val_labels = torch.arange(args.classes * 4) % args.classes

        def fit() -> None:
            method.fit_cache(feats, all_labels)
            method.select_on_val(val, val_labels)

        fit_s = _time(fit, 1, warmup=0)
        out.update(ours_epoch_s=fit_s, naive_epoch_s=cache_build_s, ours_step_s=None, naive_step_s=None,
                   default_epochs=1, note="ours: whole L-BFGS fit with C search on cached features; "
                                          "naive: re-encoding the images for one epoch")
    else:
        if method_id == "tip-adapter-f":
            method.fit_cache(feats, all_labels)  # its keys are the cache: N*K x E parameters
        params = method.trainable_parameters()
        optimizer = _optimizer(params, method.config)
        method.train()
        step_feats = feats[:batch]
        naive_text = method_id == "clip-adapter"  # the official script re-encodes its prompts

        def step(from_images: bool) -> None:
            f = encode() if from_images else step_feats
            if from_images and naive_text:
                with torch.no_grad():
                    backbone._zero_shot_cache.clear()
                    backbone.zero_shot_weights(classnames, templates)
            loss = method.loss(method.logits_from_image_features(f), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        ours = _time(lambda: step(False), args.repeats)
        naive = _time(lambda: step(True), args.repeats, warmup=0)  # encode() above warmed the image tower
        epochs = int(method.config.epochs)
        out.update(ours_step_s=ours, naive_step_s=naive, ours_epoch_s=ours * steps_per_epoch,
                   naive_epoch_s=naive * steps_per_epoch, default_epochs=epochs)
    e = max(1, out["default_epochs"])
    out["speedup"] = out["naive_epoch_s"] / out["ours_epoch_s"]
    out["amortised_speedup"] = (out["naive_epoch_s"] * e) / (out["ours_epoch_s"] * e + cache_build_s)
    out["params"] = method.num_trainable()
    return out


def cell_cocoop(mode: str, args: argparse.Namespace) -> dict:
    """CoCoOp forward+backward at batch ``args.cocoop_batch``: batched or per-image loop."""
    torch, backbone, classnames, templates = _setup(args.threads, args.cocoop_classes)
    import torch.nn.functional as F

    from vlmeft import registry
    from vlmeft.methods.prompt_textual_learnable.cocoop import logits_looped

    method = registry.build("cocoop", backbone, classnames, templates, seed=0)
    b = args.cocoop_batch
    feats = F.normalize(torch.randn(b, backbone.embed_dim), dim=-1)
    labels = torch.randint(0, len(classnames), (b,))
    method.train()
    with torch.no_grad():
        diff = (method.logits_from_image_features(feats) - logits_looped(method, feats)).abs().max().item()
    forward = (lambda: logits_looped(method, feats)) if mode == "naive" else (lambda: method.logits_from_image_features(feats))

    def step() -> None:
        method.zero_grad(set_to_none=True)
        method.loss(forward(), labels).backward()

    base_rss = _rss_mb()
    seconds = _time(step, args.repeats)
    return {"mode": mode, "batch": b, "classes": len(classnames), "step_s": seconds,
            "peak_rss_growth_mb": _rss_mb() - base_rss, "max_abs_logit_diff": diff, "params": method.num_trainable()}


def cell_inference(_: str, args: argparse.Namespace) -> dict:
    """Eval-mode images/s of each inference method on one shared backbone, timed in
    interleaved rounds so load changes hit all of them alike; CoOp also with its prompts
    re-encoded on every call (what happens without the eval-time text cache)."""
    torch, backbone, classnames, templates = _setup(args.threads, args.classes)
    from vlmeft import registry

    methods = {m: registry.build(m, backbone, classnames, templates, seed=0).eval() for m in INFERENCE_METHODS}
    coop = methods["coop"]

    def uncached() -> None:
        img = coop.image_features(images)
        _ = img @ coop.text_features(img).t()  # prompts encoded again, as a naive forward does

    runs = {**{m: (lambda m=m: methods[m](images)) for m in methods}, "coop-uncached": uncached}
    images = torch.randn(args.infer_batch, 3, backbone.image_size, backbone.image_size)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up (and fills the text caches)
            fn()
        for _ in range(args.repeats):
            for key, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    return {key: args.infer_batch / sorted(t)[len(t) // 2] for key, t in times.items()}


# ------------------------------------------------------------------------ driver
def _run_cell(kind: str, name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", f"{kind}:{name}", "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--classes", str(args.classes), "--shots", str(args.shots),
           "--batch", str(args.batch), "--cocoop-batch", str(args.cocoop_batch),
           "--cocoop-classes", str(args.cocoop_classes), "--infer-batch", str(args.infer_batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0], "kind": kind, "name": name}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "-"
    return f"{x:.3f}{unit}" if x < 10 else f"{x:.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer timed repeats (< 10 min on 2 cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (median)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cocoop-batch", type=int, default=8)
    p.add_argument("--cocoop-classes", type=int, default=None, help="classes for the CoCoOp step (default 20 quick, 100 full)")
    p.add_argument("--infer-batch", type=int, default=None, help="default 16 quick, 32 full")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.infer_batch is None:
        args.infer_batch = 16 if args.quick else 32
    if args.cocoop_classes is None:
        args.cocoop_classes = 20 if args.quick else 100

    if args.cell:  # worker mode: one measurement, one JSON line
        kind, name = args.cell.split(":", 1)
        fn = {"epoch": cell_epoch, "cocoop": cell_cocoop, "inference": cell_inference}[kind]
        print(json.dumps(fn(name, args)))
        return 0

    started = time.perf_counter()
    print(f"ViT-B-16 shapes (random init), {args.threads} threads, {args.classes} classes x {args.shots} shots, "
          f"batch {args.batch}, median of {args.repeats} timed run(s)\n")
    summary: dict[str, dict] = {}

    print("Training epoch: ours (exact feature cache) vs naive (images re-encoded every step)")
    print(f"{'method':<14}{'params':>10}{'ours step':>11}{'naive step':>12}{'ours epoch':>12}{'naive epoch':>13}"
          f"{'speedup':>9}{'amortised':>11}")
    for m in EPOCH_METHODS:
        r = _run_cell("epoch", m, args)
        if "error" in r:
            print(f"{m:<14} failed: {r['error']}")
            continue
        print(f"{m:<14}{r['params']:>10,}{_fmt(r['ours_step_s']):>11}{_fmt(r['naive_step_s']):>12}"
              f"{_fmt(r['ours_epoch_s']):>12}{_fmt(r['naive_epoch_s']):>13}{r['speedup']:>8.1f}x"
              f"{r['amortised_speedup']:>10.1f}x")
        summary[m] = {"ours_s": r["ours_epoch_s"], "naive_s": r["naive_epoch_s"], "speedup": r["speedup"],
                      "amortised_speedup": r["amortised_speedup"], "cache_build_s": r["cache_build_s"],
                      "default_epochs": r["default_epochs"]}
    print("  (cache build, once: encoding all images; amortised = over the method's default epochs)\n")

    print(f"CoCoOp forward+backward, batch {args.cocoop_batch}, {args.cocoop_classes} classes")
    co = {mode: _run_cell("cocoop", mode, args) for mode in ("batched", "naive")}
    if all("error" not in r for r in co.values()):
        b, n = co["batched"], co["naive"]
        print(f"  batched {_fmt(b['step_s'])}  +{b['peak_rss_growth_mb']:.0f} MB peak | per-image loop {_fmt(n['step_s'])}"
              f"  +{n['peak_rss_growth_mb']:.0f} MB peak | speedup {n['step_s'] / b['step_s']:.2f}x | "
              f"max |logit diff| {b['max_abs_logit_diff']:.1e}\n")
        summary["cocoop"] = {"ours_s": b["step_s"], "naive_s": n["step_s"], "speedup": n["step_s"] / b["step_s"],
                             "ours_peak_mb": b["peak_rss_growth_mb"], "naive_peak_mb": n["peak_rss_growth_mb"],
                             "max_abs_logit_diff": b["max_abs_logit_diff"]}
    else:
        print("  failed:", [r.get("error") for r in co.values()], "\n")

    print(f"Inference, eval mode, batch {args.infer_batch}, {args.classes} classes (images/s; ratio to zero-shot)")
    inf = _run_cell("inference", "all", args)
    if "error" in inf:
        print(f"  failed: {inf['error']}")
    else:
        zs = inf["zsclip"]
        for m in INFERENCE_METHODS:
            print(f"  {m:<14}{inf[m]:>8.2f}/s   x{inf[m] / zs:.2f}")
            # naive for CoOp: prompts re-encoded per call; the others have no naive variant here.
            naive = inf["coop-uncached"] if m == "coop" else inf[m]
            summary[f"infer:{m}"] = {"ours_s": args.infer_batch / inf[m], "naive_s": args.infer_batch / naive,
                                     "speedup": inf[m] / naive, "vs_zero_shot": inf[m] / zs}
        print(f"  {'coop, no text cache':<14}{inf['coop-uncached']:>8.2f}/s   x{inf['coop-uncached'] / zs:.2f}")
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
