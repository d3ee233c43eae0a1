"""# Linear probe on frozen CLIP image features

Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision" (ICML 2021), Sec. 3.2 and appendix A.3. The linear-probe baseline
freezes the image encoder and fits an L2-regularised multinomial logistic
regression (scikit-learn, L-BFGS) on its features. The inverse regularisation
strength ``C`` is chosen on a validation split by a parametric sweep followed by a
binary search. CoOp's `lpclip` scripts repeat this on few-shot splits and it is the
usual "linear probe CLIP" row of few-shot tables.

How it runs here: the engine treats it as training-free. ``fit_cache`` receives the
frozen (L2-normalised) train features and fits the classifier with scikit-learn's
L-BFGS logistic regression; ``select_on_val`` sweeps ``C`` on a log grid over the val
features, refines around the best value, and refits on train with the chosen ``C``.
The weights land in an ``nn.Linear`` so checkpoints, evaluation and parameter counts
go through the same paths as every other method.

What this version simplifies:
- features are L2-normalised (the shared frozen-feature convention), not raw;
- the search is a 7-point log grid (1e-3 .. 1e3) plus one refinement round of
  half-decade neighbours, instead of CLIP's longer binary search;
- without a val split, ``C = config.C`` is used.
A linear probe has no text side, so it cannot classify classes it was not fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """The engine's loop is not used (``epochs = 0``); ``C`` is the default inverse
    regularisation strength when there is no val split to search it on.

    Paper recipe: CoOp's ``lpclip/linear_probe.py`` (KaiyangZhou/CoOp @ ff61507): L-BFGS
    logistic regression (``max_iter`` 1000) with ``C`` searched on the ``min(K, 4)``-shot val
    split; features from CLIP's eval transform (``lpclip/feat_extractor.py``). Its grid
    (1e-6..1e6, then 8 bisection rounds) is coarser here (module notes). Nothing differs
    between the two recipes."""

    epochs: int = 0
    C: float = 1.0
    max_iter: int = 1000
    search: bool = True  # sweep C on val (CLIP's protocol)

    source: ClassVar[Source] = Source("KaiyangZhou/CoOp", "lpclip/linear_probe.py", "ff61507", "fp16")
    embedded: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        super().validate()
        if not self.C > 0:
            raise VlmeftError(f"C must be positive, got {self.C}", where="--set C")


@registry.register
class LinearProbe(Method):
    """``logits = W f + b`` on frozen normalised image features ``f``."""

    name = "linear-probe"
    category = "baseline"
    Config = Config
    # Its head is learned (by L-BFGS inside fit_cache), so it is not training-free; the
    # engine's gradient loop is skipped because the config has ``epochs = 0``.
    training_free = False
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config=None) -> None:  # noqa: ANN001
        super().__init__(backbone, classnames, templates, config)
        self.head = nn.Linear(backbone.embed_dim, len(self.classnames), device=backbone.device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._train: tuple[Tensor, Tensor] | None = None  # kept for the C search
        self.chosen_C: float = self.config.C

    def build_class_state(self) -> None:
        head = getattr(self, "head", None)
        if head is not None and head.out_features != len(self.classnames):
            raise VlmeftError(
                f"linear-probe was fitted on {head.out_features} classes and cannot classify "
                f"{len(self.classnames)} other classes: it has no text side; use a prompt or adapter method"
            )

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        return self.head(image_features.to(self.head.weight.dtype))

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: Tensor, labels: Tensor, C: float) -> None:
        from sklearn.linear_model import LogisticRegression

        x = features.detach().float().cpu().numpy()
        y = labels.detach().cpu().numpy()
        present = np.unique(y)
        clf = LogisticRegression(C=C, max_iter=self.config.max_iter)
        clf.fit(x, y)
        weight = np.zeros((len(self.classnames), x.shape[1]), dtype=np.float32)
        bias = np.full(len(self.classnames), -1e4, dtype=np.float32)  # classes never seen: never predicted
        if len(present) == 2:  # sklearn stores one row for two classes
            weight[present[1]], bias[present[1]] = clf.coef_[0], clf.intercept_[0]
            bias[present[0]] = 0.0
        else:
            weight[clf.classes_] = clf.coef_
            bias[clf.classes_] = clf.intercept_
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weight))
            self.head.bias.copy_(torch.from_numpy(bias))
        self.chosen_C = C

    def fit_cache(self, features: Tensor, labels: Tensor) -> None:
        if len(torch.unique(labels)) < 2:
            raise VlmeftError("linear-probe needs training images of at least two classes")
        self._train = (features, labels)
        self._fit(features, labels, self.config.C)

    def _val_accuracy(self, features: Tensor, labels: Tensor) -> float:
        with torch.no_grad():
            return float((self.logits_from_features(features).argmax(1) == labels).float().mean())

    def select_on_val(self, features: Tensor, labels: Tensor) -> dict[str, float]:
        if self._train is None or not self.config.search:
            return {"C": self.chosen_C}
        x, y = self._train
        scores: dict[float, float] = {}

        def score(C: float) -> float:
            if C not in scores:
                self._fit(x, y, C)
                scores[C] = self._val_accuracy(features, labels)
            return scores[C]

        grid = [10.0**e for e in range(-3, 4)]
        best = max(grid, key=lambda c: (score(c), -abs(math.log10(c))))
        for c in (best / math.sqrt(10.0), best * math.sqrt(10.0)):
            score(c)
        best = max(sorted(scores), key=lambda c: (scores[c], -abs(math.log10(c))))
        self._fit(x, y, best)
        return {"C": best, "val_accuracy": scores[best]}
