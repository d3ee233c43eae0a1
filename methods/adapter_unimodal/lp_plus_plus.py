r"""
# LP++: a linear probe that blends visual prototypes with text

*Huang, Shakeri, Dolz, Boudiaf, Bahig and Ben Ayed, "LP++: A Surprisingly Strong Linear
Probe for Few-Shot CLIP", CVPR 2024 (arXiv 2404.02285).*

LP++ is a linear probe whose class scores add a class-wise multiple of zero-shot CLIP's
text score to a visual linear classifier:

$$s_c(f) = w_c^\top f + b_c + \alpha_c\, f^\top t_c,$$

with $f$ the normalised image feature, $t_c$ the (normalised, template-ensembled) text
embedding of class $c$, and $(W, b)$ initialised at the class *sums* of the training
features (the visual prototypes, up to the shot count). The blending weights $\alpha_c$
start at one shared value, $250$ times the mean over classes of the mean cosine between a
class's training images and its text embedding. There is no hyperparameter search:
both blocks are optimised by full-batch gradient steps whose sizes come from the data,
the inverses of Lipschitz-type constants of the cross-entropy,

$$\eta_W = \frac{4N}{\lambda_{\max}(F^\top F)}, \qquad
\eta_\alpha = \frac{N}{4 \max_c \sum_i (f_i^\top t_c)^2},$$

$(W, b)$ by SGD with momentum 0.9 every epoch and $\alpha$ by a plain gradient step
every 10th epoch, for 300 epochs. The epoch with the best few-shot validation accuracy
is kept (ties: the later one).

Everything happens on frozen image features; the text embeddings are fixed and enter
only through the class-wise blend, so LP++ adapts the classifier of one modality
(category `adapter.unimodal`).

## How it runs here
The engine's loop is not used (``epochs = 0``): like the linear-probe baseline, the
optimisation runs inside :meth:`fit_cache` on the frozen training features, to the
last epoch; with a val split, :meth:`select_on_val` runs it again from the same start
and keeps the best val epoch. Both runs are the released loop, step for step:
including its quirk that $\alpha$'s gradient is never zeroed, so each $\alpha$ step
uses the gradient summed over *all* epochs so far.

## What this version changes
* The training features are un-augmented (the release encodes one randomly augmented
  view of each training image).
* $\lambda_{\max}$ comes from ``torch.linalg.eigvalsh`` (the release: SciPy's ``eigh``).
* The release keeps only the test accuracy of the best val epoch; here the state of
  that epoch is kept, so the trained probe can be saved and reused.
* A class without training images keeps a zero visual prototype.

## Fidelity
Compared with the release (``LinearProbe_P2.forward`` of
FereshteShakeri/FewShot-CLIP-Strong-Baseline @ f81054f, fed the same synthclip-tiny
features of digits, 4 shots, seed 1, and the same initial bias; its one-hot encoding run
in fp32 instead of fp16 so that it runs on a CPU): after 300 epochs the visual weights
agree to 1.1e-5 (entries up to 25) and the biases to 4.3e-6, and the test accuracy at the
best val epoch is the same, 60.85%.

## The embedded recipe
None: LP++ has no hyperparameter to calibrate (its step sizes come from the data), and
it runs its own loop, so the embedded recipe's shared settings do not touch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.adapters_common import require_class_count
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig, Select
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """``methods/linear_probe_p2.py`` of FereshteShakeri/FewShot-CLIP-Strong-Baseline
    (@ f81054f) with ``configs/base.yaml`` (``train_epoch`` 300): ``lp_epochs`` full-batch
    steps inside ``fit_cache`` (the engine's ``epochs`` stay 0), SGD momentum 0.9 and the
    data-driven step sizes, the blending weights stepped every 10 epochs, the best val
    epoch kept. The release runs CLIP in fp16 (``clip.load`` on CUDA)."""

    epochs: int = 0
    lp_epochs: int = 300  # configs/base.yaml train_epoch
    alpha_every: int = 10  # epochs between two steps of the blending weights
    alpha_init_scale: float = 250.0  # alpha_0 = scale x mean text-image cosine of each class
    momentum: float = 0.9
    select: Select = "val"  # the best val epoch (inside select_on_val; the engine's loop is not used)

    source: ClassVar[Source] = Source("FereshteShakeri/FewShot-CLIP-Strong-Baseline", "methods/linear_probe_p2.py",
                                      "f81054f", "fp16", "train_epoch 300 from configs/base.yaml")
    embedded: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        super().validate()
        if self.lp_epochs < 1 or self.alpha_every < 1:
            raise VlmeftError("lp_epochs and alpha_every must be >= 1", where="--set")


@registry.register
class LPPlusPlus(Method):
    """``logits = W f + b + alpha * (f . t)`` with data-driven step sizes."""

    name = "lp-plus-plus"
    category = "adapter.unimodal"
    Config = Config
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        head = nn.Linear(backbone.embed_dim, len(self.classnames), device=backbone.device, dtype=backbone.dtype)
        # nn.Linear's initial bias is kept (the release overwrites only the weight).
        self.weight = nn.Parameter(torch.zeros_like(head.weight))
        self.bias = nn.Parameter(head.bias.detach().clone())
        self.alpha = nn.Parameter(torch.ones(len(self.classnames), device=backbone.device, dtype=backbone.dtype))
        self._start: dict[str, Tensor] | None = None  # (W, b, alpha) at epoch 0, for the val re-run
        self._train: tuple[Tensor, Tensor] | None = None
        self.build_class_state()

    def build_class_state(self) -> None:
        weight = getattr(self, "weight", None)
        require_class_count(self, None if weight is None else weight.shape[0], "a linear probe")

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        """The class weights the image feature meets, ``w_c + alpha_c t_c`` (normalised; the
        bias is not part of them)."""
        return F.normalize(self.weight + self.alpha.unsqueeze(1) * self.zero_shot_weights(), dim=-1)

    def logits_from_features(self, image_features: Tensor) -> Tensor:
        text = image_features @ self.zero_shot_weights().t()
        return image_features @ self.weight.t() + self.bias + self.alpha * text

    # ---------------------------------------------------------------- fitting
    @torch.no_grad()
    def fit_cache(self, features: Tensor, labels: Tensor) -> None:
        """Initialise (W, b, alpha) from the training features, then run the loop."""
        features = features.detach().to(self.weight)
        labels = labels.to(self.weight.device).long()
        onehot = F.one_hot(labels, len(self.classnames)).to(features.dtype)  # [N, C]
        counts = onehot.sum(0)
        if bool((counts == 0).all()):
            raise VlmeftError("lp-plus-plus needs training images")
        cos = features @ self.zero_shot_weights().t()  # [N, C]
        per_class = (onehot * cos).sum(0)[counts > 0] / counts[counts > 0]
        self._start = {
            "weight": onehot.t() @ features,  # class sums, as the release's compute_centroids
            "bias": self.bias.detach().clone() if self._start is None else self._start["bias"],
            "alpha": torch.full_like(self.alpha, float(self.config.alpha_init_scale * per_class.mean())),
        }
        self._train = (features, labels)
        self._run(features, labels, None)

    def select_on_val(self, features: Tensor, labels: Tensor) -> dict[str, float]:
        """Run the loop again from the same start, keeping the best val epoch."""
        if self._train is None or features.shape[0] == 0:
            return {}
        best_epoch, best_acc = self._run(*self._train, (features.to(self.weight), labels.to(self.weight.device)))
        return {"epoch": float(best_epoch), "val_accuracy": best_acc}

    def step_sizes(self, features: Tensor) -> tuple[float, float]:
        """(eta_W, eta_alpha) of the release: 4N / lambda_max(F^T F), N / (4 max_c sum_i (f_i.t_c)^2)."""
        n = features.shape[0]
        gram = (features.t() @ features).double()
        lr_w = 4.0 * n / float(torch.linalg.eigvalsh(gram).max())
        text = features @ self.zero_shot_weights().t()
        lr_alpha = n / (4.0 * float(text.pow(2).sum(0).max()))
        return lr_w, lr_alpha

    def _run(self, features: Tensor, labels: Tensor, val: tuple[Tensor, Tensor] | None) -> tuple[int, float]:
        """The released loop; returns (1-based kept epoch, its val accuracy)."""
        assert self._start is not None
        cfg = self.config
        lr_w, lr_alpha = self.step_sizes(features)
        for name, value in self._start.items():
            getattr(self, name).data.copy_(value)
        alpha_grad = torch.zeros_like(self.alpha)  # never reset, as in the release
        velocity = {name: torch.zeros_like(getattr(self, name)) for name in ("weight", "bias")}
        best = (0, -1.0, None)
        for epoch in range(cfg.lp_epochs):
            with torch.enable_grad():
                params = [self.weight, self.bias, self.alpha]
                loss = F.cross_entropy(self.logits_from_features(features), labels)
                g_w, g_b, g_a = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for name, grad in (("weight", g_w), ("bias", g_b)):  # torch.optim.SGD(momentum) semantics
                    buf = velocity[name]
                    buf.copy_(grad) if epoch == 0 else buf.mul_(cfg.momentum).add_(grad)
                    getattr(self, name).sub_(lr_w * buf)
                alpha_grad += g_a
                if (epoch + 1) % cfg.alpha_every == 0:
                    self.alpha.sub_(lr_alpha * alpha_grad)
            if val is not None:
                with torch.no_grad():
                    acc = float((self.logits_from_features(val[0]).argmax(1) == val[1]).float().mean())
                if acc >= best[1]:
                    best = (epoch + 1, acc, {k: getattr(self, k).detach().clone() for k in self._start})
        if best[2] is not None:
            for name, value in best[2].items():
                getattr(self, name).data.copy_(value)
        return best[0], best[1]
