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
  *Anchor* (CoOp, KgCoOp): the anchor's own loop, Dassl's CoOp trainer: images
  re-encoded every step *and* every class prompt run at the full 77-token context (ours
  drops the padding after EOT, exact under the causal mask); ``anchor_speedup`` in the
  ``--json`` summary is its epoch time over ours (target: at least 5x). For the other
  methods the naive loop already is the anchor's, so ``anchor_speedup`` equals ``speedup``.
* **CoCoOp step at batch 8.** *Naive*: the reference per-image loop, one text-encoder
  pass over all classes per image. *Ours*: one batched pass over ``B*C`` prompts.
  Same logits (max abs difference printed); time and peak-memory growth of a
  forward+backward step. On a CPU both do the same FLOPs, so the target here is "not
  slower"; the speed-up of batching is a GPU matter (``benchmarks/gpu_smoke.py``).
* **CoCoOp evaluation memory, 1,000 classes against 10.** Eval-mode logits for a batch of
  images at ViT-B/16 shapes; each configuration in its own process. The peak is the
  process's resident-set high-water mark (``VmHWM``) over the evaluation alone: reset
  through ``/proc/self/clear_refs`` just before it (falls back to ``ru_maxrss``). RSS is
  the sound measure for torch on the CPU: its tensors come from the C allocator, which
  ``tracemalloc`` never sees, and an RSS high-water mark needs no profiler hooks that
  would change what is measured. Target: the 1,000-class peak at most 2x the 10-class
  peak; the unbounded single pass (all ``B*C`` prompts at once) is printed beside it.
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
ANCHOR_PROMPT_METHODS = ("coop", "kgcoop")  # the anchor (Dassl) also runs prompts at full context
INFERENCE_METHODS = ("zsclip", "coop", "kgcoop", "clip-adapter")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the resident-set high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


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
        if method_id in ANCHOR_PROMPT_METHODS:
            # Dassl's CoOp: images through the frozen tower every step and every prompt at
            # the full context (no padding dropped), forward and backward.
            anchor = registry.build(method_id, backbone, classnames, templates, seed=0)
            anchor.prompt_learner.trim_padding = False
            anchor.prompt_learner.set_classnames(classnames)
            anchor.train()
            anchor_opt = _optimizer(anchor.trainable_parameters(), anchor.config)

            def anchor_step() -> None:
                loss = anchor.loss(anchor.logits_from_image_features(encode()), labels)
                anchor_opt.zero_grad(set_to_none=True)
                loss.backward()
                anchor_opt.step()

            a = _time(anchor_step, args.repeats)
            out.update(anchor_step_s=a, anchor_epoch_s=a * steps_per_epoch,
                       anchor_tokens=int(anchor.prompt_learner.tokens.shape[1]),
                       ours_tokens=int(method.prompt_learner.tokens.shape[1]))
    e = max(1, out["default_epochs"])
    out["speedup"] = out["naive_epoch_s"] / out["ours_epoch_s"]
    out.setdefault("anchor_epoch_s", out["naive_epoch_s"])  # no prompts: the naive loop is the anchor's
    out["anchor_speedup"] = out["anchor_epoch_s"] / out["ours_epoch_s"]
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


def cell_cocoop_memory(spec: str, args: argparse.Namespace) -> dict:
    """Peak RSS of one CoCoOp evaluation (eval mode, no autograd) of ``args.memory_batch``
    images over ``classes`` classes; ``spec`` is ``"<classes>:chunked"`` or ``"<classes>:single"``
    (every ``B*C`` prompt in one pass, the unbounded baseline)."""
    classes, mode = spec.split(":")
    torch, backbone, classnames, templates = _setup(args.threads, int(classes))
    import gc

    import torch.nn.functional as F

    from vlmeft import registry

    method = registry.build("cocoop", backbone, classnames, templates, seed=0).eval()
    if mode == "single":
        method.prompt_learner.tokens_per_pass = 1 << 62
    feats = F.normalize(torch.randn(args.memory_batch, backbone.embed_dim), dim=-1)
    with torch.no_grad():
        method.logits_from_image_features(feats[:1, :])[:, :1]  # warm-up on one image
        gc.collect()
        reset = _reset_peak()
        base = _status_mb("VmRSS") if reset else _rss_mb()
        start = time.perf_counter()
        logits = method.logits_from_image_features(feats)
        seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM") if reset else _rss_mb()
    # The kernel folds its per-CPU RSS counters into the high-water mark lazily, so VmHWM read
    # soon after the reset can trail the VmRSS read at the reset by a few pages (seen: 20 KB);
    # the peak over an interval that starts at ``base`` is at least ``base``.
    peak = max(peak, base)
    seq_len = int(method.prompt_learner.tokens.shape[1])
    return {"classes": int(classes), "mode": mode, "batch": args.memory_batch, "peak_mb": peak, "base_mb": base,
            "growth_mb": peak - base, "seconds": seconds, "sequences": args.memory_batch * int(classes),
            "tokens_per_pass": min(method.prompt_learner.tokens_per_pass, args.memory_batch * int(classes) * seq_len),
            "peak_source": "VmHWM" if reset else "ru_maxrss", "logits_shape": list(logits.shape)}


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
           "--cocoop-classes", str(args.cocoop_classes), "--infer-batch", str(args.infer_batch),
           "--memory-batch", str(args.memory_batch)]
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
    p.add_argument("--memory-batch", type=int, default=None,
                   help="images in the CoCoOp evaluation-memory figure (default 4 quick, 8 full)")
    p.add_argument("--memory-classes", type=int, default=1000, help="the large label set of that figure")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.infer_batch is None:
        args.infer_batch = 16 if args.quick else 32
    if args.cocoop_classes is None:
        args.cocoop_classes = 20 if args.quick else 100
    if args.memory_batch is None:
        args.memory_batch = 4 if args.quick else 8

    if args.cell:  # worker mode: one measurement, one JSON line
        kind, name = args.cell.split(":", 1)
        fn = {"epoch": cell_epoch, "cocoop": cell_cocoop, "cocoop-memory": cell_cocoop_memory,
              "inference": cell_inference}[kind]
        print(json.dumps(fn(name, args)))
        return 0

    started = time.perf_counter()
    print(f"ViT-B-16 shapes (random init), {args.threads} threads, {args.classes} classes x {args.shots} shots, "
          f"batch {args.batch}, median of {args.repeats} timed run(s)\n")
    summary: dict[str, dict] = {}

    print("Training epoch: ours (exact feature cache, prompts cut after EOT) vs naive (images re-encoded every "
          "step) vs anchor (Dassl's CoOp: naive, and prompts at the full context)")
    print(f"{'method':<14}{'params':>10}{'ours step':>11}{'naive step':>12}{'anchor step':>13}{'ours epoch':>12}"
          f"{'naive epoch':>13}{'anchor epoch':>14}{'speedup':>9}{'anchor':>8}{'amortised':>11}")
    for m in EPOCH_METHODS:
        r = _run_cell("epoch", m, args)
        if "error" in r:
            print(f"{m:<14} failed: {r['error']}")
            continue
        print(f"{m:<14}{r['params']:>10,}{_fmt(r['ours_step_s']):>11}{_fmt(r['naive_step_s']):>12}"
              f"{_fmt(r.get('anchor_step_s')):>13}{_fmt(r['ours_epoch_s']):>12}{_fmt(r['naive_epoch_s']):>13}"
              f"{_fmt(r['anchor_epoch_s']):>14}{r['speedup']:>8.1f}x{r['anchor_speedup']:>7.1f}x"
              f"{r['amortised_speedup']:>10.1f}x")
        summary[m] = {"ours_s": r["ours_epoch_s"], "naive_s": r["naive_epoch_s"], "speedup": r["speedup"],
                      "anchor_s": r["anchor_epoch_s"], "anchor_speedup": r["anchor_speedup"],
                      "amortised_speedup": r["amortised_speedup"], "cache_build_s": r["cache_build_s"],
                      "default_epochs": r["default_epochs"]}
    print("  (cache build, once: encoding all images; amortised = over the method's default epochs; anchor = naive "
          "for methods without prompts)\n")

    print(f"CoCoOp forward+backward, batch {args.cocoop_batch}, {args.cocoop_classes} classes")
    co = {mode: _run_cell("cocoop", mode, args) for mode in ("batched", "naive")}
    if all("error" not in r for r in co.values()):
        b, n = co["batched"], co["naive"]
        print(f"  batched {_fmt(b['step_s'])}  +{b['peak_rss_growth_mb']:.0f} MB peak | per-image loop {_fmt(n['step_s'])}"
              f"  +{n['peak_rss_growth_mb']:.0f} MB peak | speedup {n['step_s'] / b['step_s']:.2f}x | "
              f"max |logit diff| {b['max_abs_logit_diff']:.1e} (CPU target: not slower, same logits)\n")
        summary["cocoop"] = {"ours_s": b["step_s"], "naive_s": n["step_s"], "speedup": n["step_s"] / b["step_s"],
                             "ours_peak_mb": b["peak_rss_growth_mb"], "naive_peak_mb": n["peak_rss_growth_mb"],
                             "max_abs_logit_diff": b["max_abs_logit_diff"]}
    else:
        print("  failed:", [r.get("error") for r in co.values()], "\n")

    big = args.memory_classes
    print(f"CoCoOp evaluation memory, batch {args.memory_batch}, 10 vs {big} classes (peak RSS of the evaluation, "
          "one process each)")
    mem = {spec: _run_cell("cocoop-memory", spec, args) for spec in ("10:chunked", f"{big}:chunked", f"{big}:single")}
    if all("error" not in r for r in mem.values()):
        small, chunked, single = mem["10:chunked"], mem[f"{big}:chunked"], mem[f"{big}:single"]
        ratio, single_ratio = chunked["peak_mb"] / small["peak_mb"], single["peak_mb"] / small["peak_mb"]
        print(f"  10 classes {small['peak_mb']:.0f} MB | {big} classes, bounded passes {chunked['peak_mb']:.0f} MB "
              f"(x{ratio:.2f}, {chunked['seconds']:.0f}s) | {big} classes, one pass {single['peak_mb']:.0f} MB "
              f"(x{single_ratio:.2f}) | target <= 2x; source {small['peak_source']}\n")
        summary["cocoop-eval-memory"] = {
            "classes": big, "batch": args.memory_batch, "peak_10_mb": small["peak_mb"],
            "peak_chunked_mb": chunked["peak_mb"], "peak_single_pass_mb": single["peak_mb"], "ratio": ratio,
            "single_pass_ratio": single_ratio, "growth_10_mb": small["growth_mb"],
            "growth_chunked_mb": chunked["growth_mb"], "growth_single_pass_mb": single["growth_mb"]}
    else:
        print("  failed:", [r.get("error") for r in mem.values()], "\n")

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
