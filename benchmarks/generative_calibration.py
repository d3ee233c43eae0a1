"""The val sweep behind the generative methods' embedded recipes (synthcoca-tiny).

For each generative method and each candidate setting, train on 16 questions per question
type of ``world-vqa`` (seeds 1 and 2; the shared embedded base: val selection on the few-shot
val split, no augmentation, batch 32, at least 40 steps) and score the answers on the task's
whole **val** split (200 questions; never the test split). Prints one line per (method,
setting): the mean val accuracy over the seeds, and the chosen setting per method. Each
method module's notes quote this run.

    python benchmarks/generative_calibration.py              # about 20 min on a busy 2-core machine
    python benchmarks/generative_calibration.py --methods lora,magma
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SEEDS = (1, 2)
SHOTS = 16
# Candidate settings per method: the embedded base plus one knob (learning rate, mostly).
GRID: dict[str, list[dict[str, str]]] = {
    "lora": [{"lr": "2e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "prefix-tuning": [{"lr": "5e-5"}, {"lr": "1e-3"}, {"lr": "5e-3"}],
    "vl-adapter": [{"lr": "3e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "lst": [{"lr": "1e-3"}, {"lr": "3e-3"}, {"lr": "1e-2"}],
    "vl-pet": [{"lr": "3e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "llama-adapter": [{"lr": "1.125e-3"}, {"lr": "3e-3"}, {"lr": "1e-2"}],
    "llama-adapter-v2": [{"lr": "1.25e-4"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
    "magma": [{"lr": "8e-4"}, {"lr": "3e-3"}, {"prefix_from": "tokens"}],
    "uniadapter": [{"lr": "2e-5"}, {"lr": "1e-3"}, {"lr": "3e-3"}],
}
BASE = {"epochs": "20", "batch_size": "32", "min_steps": "40"}


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
    task = get_vl_task("world-vqa")
    kind = kinds.get("vqa")
    results: dict[str, dict[str, float]] = {}
    for name in args.methods.split(","):
        results[name] = {}
        for setting in GRID[name]:
            scores = []
            start = time.perf_counter()
            for seed in SEEDS:
                method = registry.build(name, backbone, [], [], {**BASE, **setting}, seed=seed, recipe="embedded")
                train, val = few_shot_splits(task, SHOTS, seed)
                fit_generative(method, train, val, seed=seed, score=lambda m, s: kind.score(m, s)["accuracy"])
                scores.append(kind.score(method, task.val)["accuracy"])
            label = ",".join(f"{k}={v}" for k, v in setting.items())
            results[name][label] = sum(scores) / len(scores)
            print(f"{name:17s} {label:20s} val accuracy {100 * results[name][label]:.1f} "
                  f"(seeds {', '.join(f'{100 * s:.1f}' for s in scores)}; {time.perf_counter() - start:.0f} s)",
                  flush=True)
        best = max(results[name], key=results[name].get)
        print(f"{name:17s} chosen: {best}", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
