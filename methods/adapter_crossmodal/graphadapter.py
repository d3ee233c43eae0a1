r"""
# GraphAdapter: a text adapter over a dual knowledge graph

*Li, Lian, Lu, Bai, Chen and Wang, "GraphAdapter: Tuning Vision-Language Models With Dual
Knowledge Graph", NeurIPS 2023 (arXiv 2309.13625).*

GraphAdapter refines each class's text feature with the structure of the downstream
task in *both* modalities. Two sub-graphs hold the task's classes as nodes: in the
*textual* sub-graph a node is a class's base text feature $t_c$, in the *visual* one
its visual prototype $v_c$ (the mean training feature of class $c$). For every class
$c$, its text feature joins each sub-graph as an extra node 0, edges are the clipped
cosine similarities plus self-loops, symmetrically normalised,
$\hat A = D^{-1/2}(\max(A, 0) + I)D^{-1/2}$, and one graph convolution per sub-graph
gives node 0's refined feature:

$$g^{s}_c = \tanh\big(\hat A^{s}_c\, X^{s}_c\, W^{s} + b^{s}_c\big)_0,\quad s \in \{tt, it\},\qquad
t'_c = \beta\, t_c + (1-\beta)\big(\gamma\, g^{tt}_c + (1-\gamma)\, g^{it}_c\big),$$

with $X^{tt}_c = [t_c; t_1..t_C]$, $X^{it}_c = [t_c; v_1..v_C]$, learnable $W^{s} \in
\mathbb{R}^{E\times E}$ and class-wise biases $b^{s} \in \mathbb{R}^{C\times E}$, and
$\gamma = 0.7$ (``alpha_it`` in the release). The release splits the classes into 4
groups (class $c$ in group $c \bmod 4$), builds the two sub-graphs over each group's
classes, and averages the 4 refined features. Logits are CLIP's, against $t'$
normalised; only the graph convolutions train.

The refined text feature is computed from image features (the visual prototypes,
through the cross-modal edges between $t_c$ and every $v_j$): GraphAdapter takes part
in modal fusion (category `adapter.crossmodal`).

## What this version changes
* The release is partial (its ``_get_base_text_features`` is missing); the base text
  features here are TaskRes's (the raw text-encoder output averaged over templates),
  whose trainer the release is built from.
* The visual prototypes are class means of the *normalised* un-augmented training
  features handed to ``fit_cache`` (the engine's frozen-feature convention), rescaled
  to the mean norm of the base text features so that both sub-graphs' nodes enter the
  convolution at a comparable scale. The release averages the *raw* features over 10
  augmented passes; CLIP's raw image and text features have norms of the same order
  (on synthclip-tiny: about 10 and 14.5).
* The 4 groups are assigned round-robin, so any number of classes works; the release's
  ``view(C // 4, 4, E)`` needs a multiple of 4 (it cannot run its own DTD, 47 classes).
  With a multiple of 4 the groups are the release's.
* ``W`` is ``E x E`` for the backbone's width (the release hard-codes 512) and, as there,
  initialised uniformly in $\pm 1/\sqrt{E}$ with zero biases.
* The release's ``BETA`` comes from a config file that was not published; its trainer is
  TaskRes's, so the paper recipe takes TaskRes's optimiser settings (unverified).
* The biases are class-specific, so a trained adapter refuses a different number of
  classes (the paper evaluates the same label set).

## Fidelity
Compared with the release's ``GraphLearner`` (``baseclip_graph_v1.py`` of
lixinustc/GraphAdapter @ bffffb8) on a random-init ViT-B/16 (width 512, as the release
hard-codes), 8 classes, the same base text features, visual prototypes and graph
weights: refined text features, logits and every gradient are identical (max |diff| 0;
with gamma moved by 0.01 in ours the same comparison shows 2.3e-4, so it can tell). The
recorded fidelity is "simplified" for the inputs listed above (prototypes, base text,
groups) and the unpublished recipe.

## The embedded recipe
beta 0.2 and lr 1e-2, chosen on val (digits, 4 shots, mean over seeds 1-3; zero-shot
0.633): at beta 0.8, lr 2e-3 / 5e-2 / 0.2 gave 0.675 / 0.675 / 0.667 (the graph term,
a tanh output weighted 0.2, barely moves the base text of norm ~14.5); beta 0.5 at lr
2e-3 / 1e-2 / 5e-2 gave 0.725 / 0.758 / 0.717; beta 0.2 at 1e-2 / 5e-2 0.775 / 0.725.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft import registry
from vlmeft.adapters_common import SupportSetMixin, raw_text_prototypes, require_class_count
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig
from vlmeft.recipes import Source


@dataclass
class Config(MethodConfig):
    """``baseclip_graph_v1.py`` of lixinustc/GraphAdapter (@ bffffb8): gamma 0.7 and 4
    class groups are hard-coded; ``BETA`` and the optimiser come from config files that
    were not published. The trainer is TaskRes's, so the paper recipe takes TaskRes's
    ``configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml`` (Dassl's Adam, lr 2e-3, batch
    256, 100 epochs, warm-up then cosine, random resized crop + flip, the last epoch) and
    beta 0.8; both are unverified. The trainer casts the model to fp32.

    Embedded recipe: beta 0.2, lr 1e-2 (val evidence in the module notes)."""

    beta: float = 0.8  # weight of the base text feature (cfg.TRAINER.GRAPHADAPTER.BETA, not released)
    text_weight: float = 0.7  # gamma: textual vs visual sub-graph (alpha_it, hard-coded in the release)
    groups: int = 4  # class groups, each with its own pair of sub-graphs (hard-coded 4)
    epochs: int = 100
    batch_size: int = 256
    lr: float = 2e-3
    optimizer: Literal["sgd", "adamw", "adam"] = "adam"

    text_template: str = "first"  # the official base classifier: the dataset's single CoOp template
    source: ClassVar[Source] = Source("lixinustc/GraphAdapter", "baseclip_graph_v1.py", "bffffb8", "fp32",
                                      "optimiser and beta unpublished: TaskRes's adam_lr2e-3_B256_ep100.yaml "
                                      "(geekyutao/TaskRes @ 5195359) and beta 0.8, unverified")
    embedded: ClassVar[dict[str, Any]] = {"beta": 0.2, "lr": 1e-2}

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.beta <= 1.0 or not 0.0 <= self.text_weight <= 1.0:
            raise VlmeftError("beta and text_weight must lie in [0, 1]", where="--set")
        if self.groups < 1:
            raise VlmeftError(f"groups must be >= 1, got {self.groups}", where="--set")


class GraphConvolution(nn.Module):
    """One GCN layer read out at node 0: ``tanh((A_hat X W + b)[:, 0])`` per class."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(dim, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(num_classes, dim))

    def forward(self, nodes: Tensor) -> Tensor:
        """``nodes [C, 1 + n, E]`` (node 0: the class's own text feature) -> ``[C, E]``."""
        unit = F.normalize(nodes, dim=-1)
        adj = unit @ unit.transpose(1, 2)  # cosine edges [C, 1 + n, 1 + n]
        adj = adj.clamp(min=0.0) + torch.eye(adj.shape[-1], device=adj.device, dtype=adj.dtype)
        d = adj.sum(-1).pow(-0.5)
        adj = d.unsqueeze(-1) * adj * d.unsqueeze(-2)
        out = adj @ (nodes @ self.weight) + self.bias.unsqueeze(1)
        return torch.tanh(out[:, 0])


@registry.register
class GraphAdapter(SupportSetMixin, Method):
    """Text features refined by graph convolutions over textual and visual class nodes."""

    name = "graphadapter"
    category = "adapter.crossmodal"
    Config = Config
    frozen_image_path = True

    def __init__(self, backbone, classnames, templates, config: Config | None = None) -> None:
        super().__init__(backbone, classnames, templates, config)
        self.init_support()
        num, dim = len(self.classnames), backbone.embed_dim
        self.gcn_text = GraphConvolution(dim, num)
        self.gcn_image = GraphConvolution(dim, num)
        self.to(device=backbone.device, dtype=backbone.dtype)
        self.build_class_state()

    def build_class_state(self) -> None:
        gcn = getattr(self, "gcn_text", None)
        require_class_count(self, None if gcn is None else gcn.bias.shape[0], "class-wise graph biases")
        base = raw_text_prototypes(self.backbone, self.classnames, self.text_templates())
        self.register_buffer("base_text", base, persistent=False)
        # Visual prototypes: class means of the support features (zero for a class without
        # any), at the base text features' mean norm (see the module notes).
        onehot = self.support_onehot()  # [N, C]
        counts = onehot.sum(0).clamp(min=1).unsqueeze(1)
        scale = base.norm(dim=-1).mean() if len(base) else 1.0
        self.register_buffer("prototypes", scale * (onehot.t() @ self.cache_keys.detach()) / counts, persistent=False)

    def group_members(self) -> list[Tensor]:
        """Class indices of each group: class c belongs to group c mod groups."""
        num = len(self.classnames)
        return [torch.arange(g, num, self.config.groups, device=self.base_text.device)
                for g in range(min(self.config.groups, num))]

    def refined(self) -> Tensor:
        """The graph part ``gamma g^tt + (1 - gamma) g^it``, averaged over groups ``[C, E]``."""
        text, protos, gamma = self.base_text, self.prototypes, self.config.text_weight
        outs = []
        for members in self.group_members():
            own = text.unsqueeze(1)  # [C, 1, E]
            text_nodes = torch.cat([own, text[members].unsqueeze(0).expand(len(text), -1, -1)], dim=1)
            image_nodes = torch.cat([own, protos[members].unsqueeze(0).expand(len(text), -1, -1)], dim=1)
            outs.append(gamma * self.gcn_text(text_nodes) + (1.0 - gamma) * self.gcn_image(image_nodes))
        return torch.stack(outs).mean(0)

    def text_features(self, image_features: Tensor | None = None) -> Tensor:
        beta = self.config.beta
        return F.normalize(beta * self.base_text + (1.0 - beta) * self.refined(), dim=-1)
