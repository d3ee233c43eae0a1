"""The quality bar of synthcoca-tiny: zero-shot against a trivial baseline and against adaptation.

For each generative task (``world-vqa``, ``world-captions``):

- **zero-shot**: the frozen captioner's greedy answers / captions (method ``coca``) on the
  test split and its shifted test sets;
- **trivial baseline**: VQA: the most common training answer of each question type;
  captioning: the most common training reference, given for every image;
- **adaptation reaches**: a reference adapter (VL-Adapter, embedded recipe) trained on the
  full training split (seeds 1-3, or ``seeds``), the same scores.

Zero-shot should sit clearly above the trivial baseline and clearly below adaptation, so
that the generative methods have room to differ.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vlmeft.errors import VlmeftError

TASKS = ("world-vqa", "world-captions")
REFERENCE_METHOD = "vl-adapter"
SEEDS = (1, 2, 3)


def load(weights: Path | None = None, device: str = "cpu"):  # noqa: ANN201
    """The shipped synthcoca-tiny, or the one exported into a pretraining output folder."""
    from vlmeft.backbone.factory import load_backbone

    if weights is None:
        return load_backbone("synthcoca-tiny", "default", device=device)
    from vlmeft.backbone.captioner import Captioner
    from vlmeft.backbone.synthcoca.weights import checkpoint_path, vocabulary_ids

    bb = load_backbone("synthcoca-tiny", str(checkpoint_path(Path(weights))), device=device)
    return Captioner(bb.model, bb.tokenizer, name=bb.name, pretrained=bb.pretrained, weights_id=bb.weights_id,
                     output_ids=vocabulary_ids(Path(weights))).to(device)


def trivial(task: Any, kind: Any) -> dict[str, float]:
    if task.kind == "vqa":
        from vlmeft.data.vl import most_common_answer

        return {"accuracy": most_common_answer(task.train, task.test)["per_type"]}
    refs = Counter(t for e in task.train.examples for t in e.targets)
    top = refs.most_common(1)[0][0]
    return kind.score_outputs([top] * len(task.test), task.test.examples)


def evaluate_task(backbone: Any, name: str, seeds: tuple[int, ...] = SEEDS, *, adapt: bool = True) -> dict[str, Any]:
    from vlmeft import kinds
    from vlmeft.bench.cells import CellRunner
    from vlmeft.bench.plan import Cell
    from vlmeft.data.tasks import get_task, task_kind
    from vlmeft.kinds._generative import FULL, ZERO_SHOT

    task = get_task(name)
    kind = next(k for k in kinds.all_kinds() if k.data == task_kind(name))
    runner = CellRunner(backbone, lambda m: {}, task_loader=lambda n: task)
    zs, _, _ = runner.measure(Cell(ZERO_SHOT, name, kind.protocols[0].name, 0, 0, backbone.name, backbone.weights_id))
    main = kind.main
    out: dict[str, Any] = {"metric": main, "trivial": trivial(task, kind)[main], "zero_shot": zs[main],
                           "zero_shot_shifted": zs.get("domains"), "zero_shot_examples": zs.get("examples")}
    if "bleu4" in zs:
        out["zero_shot_bleu4"] = zs["bleu4"]
    if "per_type" in zs:
        out["zero_shot_per_type"] = zs["per_type"]
    if adapt:
        scores = []
        for seed in seeds:
            got, _, _ = runner.measure(Cell(REFERENCE_METHOD, name, kind.protocols[0].name, FULL, seed, backbone.name,
                                            backbone.weights_id))
            scores.append(got[main])
        out[f"{REFERENCE_METHOD}_full_data"] = float(np.mean(scores))
        out[f"{REFERENCE_METHOD}_full_data_std"] = float(np.std(scores))
    return out


def evaluate_backbone(weights: Path | None = None, names: list[str] | None = None, device: str = "cpu") -> dict:
    names = names or list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise VlmeftError(f"unknown task(s) {', '.join(unknown)}; synthcoca-tiny's tasks: {', '.join(TASKS)}",
                          where="--tasks")
    backbone = load(weights, device)
    out: dict[str, Any] = {"backbone": backbone.name, "weights": backbone.weights_id}
    for name in names:
        out[name] = evaluate_task(backbone, name)
    return out


def format_report(results: dict) -> str:
    lines = [f"backbone {results['backbone']} ({results['weights']})",
             f"{'task':15s} {'metric':9s} {'trivial':>8s} {'zero-shot':>10s} {'adapted (full data)':>22s}"]
    for name, res in results.items():
        if not isinstance(res, dict):
            continue
        adapted = res.get(f"{REFERENCE_METHOD}_full_data")
        std = res.get(f"{REFERENCE_METHOD}_full_data_std", 0.0)
        cell = "–" if adapted is None else f"{100 * adapted:.1f} ± {100 * std:.1f}"
        lines.append(f"{name:15s} {res['metric']:9s} {100 * res['trivial']:8.1f} {100 * res['zero_shot']:10.1f} "
                     f"{cell:>22s}")
    return "\n".join(lines)
