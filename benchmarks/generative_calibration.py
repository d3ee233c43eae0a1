"""The val sweep behind the generative methods' embedded recipes (synthcoca-tiny).

For each generative method and each candidate setting, train on 16 examples per group of
``world-vqa`` (question types) and of ``world-captions`` (image kinds), seeds 1 and 2, under
the embedded recipe plus the candidate (the shared embedded base: val selection on the
few-shot val split, no augmentation, batch 32, at least 40 steps), and score the outputs on
each task's whole **val** split (200 questions, 60 images; never the test split). The
setting kept is the one with the best mean gain over the frozen captioner across the two
tasks, each gain relative to the frozen captioner's own val score (VQA accuracy, CIDEr):
one recipe per method serves both tasks. Each method module's notes quote this run.

    python benchmarks/generative_calibration.py              # about 8 min on a 2-core machine
    python benchmarks/generative_calibration.py --methods lora,magma
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SEEDS = (1, 2)
SHOTS = 16
TASKS = {"world-vqa": "accuracy", "world-captions": "cider"}
# Candidate settings per method: the embedded recipe plus one knob (the learning rate, mostly).
GRID: dict[str, list[dict[str, str]]] = {
    "lora": [{"lr": "2e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "prefix-tuning": [{"lr": "5e-5"}, {"lr": "1e-3"}, {"lr": "5e-3"}],
    "vl-adapter": [{"lr": "3e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "lst": [{"lr": "1e-3"}, {"lr": "3e-3"}, {"lr": "1e-2"}],
    "vl-pet": [{"lr": "3e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "llama-adapter": [{"lr": "1.125e-3"}, {"lr": "3e-3"}, {"lr": "1e-2"}],
    "llama-adapter-v2": [{"lr": "1.25e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    # (MAGMA's token prefix, 16 tokens, leaves no room in synthcoca-tiny's 32-token context.)
    "magma": [{"lr": "8e-4"}, {"lr": "3e-3"}, {"lr": "1e-2"}],
    "uniadapter": [{"lr": "2e-5"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "clipcap": [{"lr": "2e-5"}, {"lr": "3e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
}


def main() -> None:
    from vlmeft import kinds, registry
    from vlmeft.backbone import load_backbone
    from vlmeft.data.vl import few_shot_splits, get_vl_task
    from vlmeft.engine.generative import fit_generative

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(GRID))
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone = load_backbone("synthcoca-tiny")
    tasks = {name: get_vl_task(name) for name in TASKS}
    kind_of = {"world-vqa": kinds.get("vqa"), "world-captions": kinds.get("captioning")}
    frozen = registry.build("coca", backbone, [], [], {}, seed=0, recipe="embedded")
    base = {name: kind_of[name].score(frozen, tasks[name].val)[metric] for name, metric in TASKS.items()}
    print("frozen captioner on val: " + ", ".join(f"{n} {TASKS[n]} {100 * v:.1f}" for n, v in base.items()))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.methods.split(","):
        results[name] = {}
        for setting in GRID[name]:
            start = time.perf_counter()
            label = ",".join(f"{k}={v}" for k, v in setting.items())
            got: dict[str, float] = {}
            for task_name, metric in TASKS.items():
                kind, task = kind_of[task_name], tasks[task_name]
                scores = []
                for seed in SEEDS:
                    method = registry.build(name, backbone, [], [], setting, seed=seed, recipe="embedded")
                    train, val = few_shot_splits(task, SHOTS, seed)
                    fit_generative(method, train, val, seed=seed,
                                   score=lambda m, s, k=kind, mt=metric: k.score(m, s)[mt])
                    scores.append(kind.score(method, task.val)[metric])
                got[task_name] = sum(scores) / len(scores)
            got["gain"] = sum(got[t] / base[t] - 1 for t in TASKS) / len(TASKS)
            results[name][label] = got
            print(f"{name:17s} {label:12s} val VQA accuracy {100 * got['world-vqa']:.1f}, "
                  f"CIDEr {100 * got['world-captions']:.1f}; mean relative gain {100 * got['gain']:+.1f}% "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        best = max(results[name], key=lambda k: results[name][k]["gain"])
        print(f"{name:17s} chosen: {best}", flush=True)
    print(json.dumps({"frozen": base, "results": results}, indent=1))


if __name__ == "__main__":
    main()
