"""The quality bar of a backbone on the embedded tasks.

Zero-shot accuracy (template ensembles) on every classification task and its shifted
domains, image-text retrieval and crop-and-compare grounding on scenes, and a K-shot
linear probe (logistic regression on frozen features, C picked on val) as the
"adaptation reaches" reference. Zero-shot should sit well above chance and well below
the probe, so that efficient fine-tuning methods have room to differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vlmeft.data.tasks import crop_boxes, get_task, grounding_accuracy, retrieval_metrics, task_names
from vlmeft.data.types import ClassificationTask, SceneTask, Split
from vlmeft.errors import VlmeftError

PROBE_SHOTS = 16
PROBE_SEEDS = (0, 1, 2)
PROBE_C = (0.1, 1.0, 10.0, 100.0)


def load(weights: Path | None = None, device: str = "cpu"):
    """The shipped synthclip-tiny, or the one exported into a pretraining output folder."""
    from vlmeft.backbone.factory import load_backbone

    if weights is None:
        return load_backbone("synthclip-tiny", "default", device=device)
    from vlmeft.backbone.synthclip.weights import checkpoint_path

    return load_backbone("synthclip-tiny", str(checkpoint_path(Path(weights))), device=device)


def _features(backbone, split: Split) -> torch.Tensor:
    from vlmeft.engine.cache import encode_split

    return encode_split(backbone, split).cpu()  # numpy and sklearn downstream


def _images_features(backbone, images: np.ndarray) -> torch.Tensor:
    return _features(backbone, Split(images, np.zeros(len(images), dtype=np.int64), "adhoc"))


def _accuracy(feats: torch.Tensor, weights: torch.Tensor, labels: np.ndarray) -> float:
    pred = (feats @ weights.t()).argmax(1).numpy()
    return float(100.0 * (pred == labels).mean())


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` indices per class, drawn with a local RNG."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        out.append(rng.choice(pool, size=min(shots, len(pool)), replace=False))
    return np.concatenate(out)


def linear_probe(train_f: np.ndarray, train_y: np.ndarray, val_f: np.ndarray, val_y: np.ndarray,
                 test_f: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    best, best_acc = None, -1.0
    for c in PROBE_C:
        clf = LogisticRegression(C=c, max_iter=2000).fit(train_f, train_y)
        acc = clf.score(val_f, val_y)
        if acc > best_acc:
            best, best_acc = clf, acc
    return float(100.0 * best.score(test_f, test_y))


def evaluate_classification(backbone, task: ClassificationTask, shots: int = PROBE_SHOTS) -> dict:
    weights = backbone.zero_shot_weights(task.classnames, task.templates).float().cpu()
    feats = {"train": _features(backbone, task.train), "val": _features(backbone, task.val),
             "test": _features(backbone, task.test)}
    res = {"classes": len(task.classnames), "chance": 100.0 / len(task.classnames),
           "zero_shot": _accuracy(feats["test"], weights, task.test.labels)}
    for name, split in task.shifted.items():
        res[f"zero_shot[{name}]"] = _accuracy(_features(backbone, split), weights, split.labels)
    probes = []
    for seed in PROBE_SEEDS:
        idx = few_shot_indices(task.train.labels, shots, seed)
        probes.append(linear_probe(feats["train"][idx].numpy(), task.train.labels[idx], feats["val"].numpy(),
                                   task.val.labels, feats["test"].numpy(), task.test.labels))
    res[f"linear_probe_{shots}shot"] = float(np.mean(probes))
    res[f"linear_probe_{shots}shot_std"] = float(np.std(probes))
    return res


@torch.no_grad()
def evaluate_scenes(backbone, task: SceneTask) -> dict:
    img = _images_features(backbone, task.images)
    txt = backbone.encode_text(backbone.tokenize(task.captions), normalize=True).float().cpu()
    res = retrieval_metrics((img @ txt.t()).numpy())
    preds = []
    for s in task.grounding:
        crops = _images_features(backbone, crop_boxes(s.image, s.boxes))
        t = backbone.encode_text(backbone.tokenize([s.expression]), normalize=True).float().cpu()
        preds.append(int((crops @ t.t()).squeeze(1).argmax()))
    res["grounding_acc"] = grounding_accuracy(preds, task.grounding)
    res["grounding_chance"] = float(100.0 * np.mean([1.0 / len(s.boxes) for s in task.grounding]))
    res["retrieval_chance_R@1"] = 100.0 / len(task.captions)
    return res


def evaluate_backbone(weights: Path | None = None, names: list[str] | None = None, device: str = "cpu") -> dict:
    names = names or task_names()
    unknown = [n for n in names if n not in task_names()]
    if unknown:
        raise VlmeftError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(task_names())}",
                          where="--tasks")
    backbone = load(weights, device)
    out = {"backbone": backbone.name, "weights": backbone.weights_id}
    for name in names:
        task = get_task(name)
        out[name] = (evaluate_scenes(backbone, task) if isinstance(task, SceneTask)
                     else evaluate_classification(backbone, task))
    return out


def format_report(results: dict) -> str:
    lines = [f"backbone {results['backbone']} ({results['weights']})"]
    for name, res in results.items():
        if not isinstance(res, dict):
            continue
        parts = [f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()]
        lines.append(f"{name:12s} " + ", ".join(parts))
    return "\n".join(lines)
