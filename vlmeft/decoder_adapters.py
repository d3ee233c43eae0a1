"""Building blocks shared by the generative methods (nothing method-specific).

* :func:`blocks` / :func:`width` / :func:`heads`: the residual blocks of each captioner tower
  (``vision``, ``text``, ``decoder`` = the multimodal decoder's self-attention blocks,
  ``cross`` = its cross-attention blocks) and their sizes, read off the model.
* :class:`Bottleneck`: ``up(act(down(x)))``, the adapter of Houlsby et al. and its kin.
* :class:`LowRank`: a LoRA update ``scale * B A x`` (B zero-initialised).
* :class:`TunedNorms`: trainable copies of a tower's LayerNorms (VL-Adapter and VL-PET
  unfreeze the language model's norms; LLaMA-Adapter V2 its norms and biases); the frozen
  ones stay untouched, the copies are applied through the captioner's ``norm`` hook.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "swish": F.silu,
    "tanh": torch.tanh,
}


def blocks(backbone, tower: str) -> nn.ModuleList:  # noqa: ANN001 (a Captioner)
    m = backbone.model
    if tower == "vision":
        return m.visual.transformer.resblocks
    if tower == "text":
        return backbone.text_tower.transformer.resblocks
    if tower == "decoder":
        return m.text_decoder.resblocks
    if tower == "cross":
        return m.text_decoder.cross_attn
    raise ValueError(tower)


def parse_towers(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``"text,decoder"`` -> ``("text", "decoder")``; a one-line ``--set`` error otherwise."""
    from vlmeft.errors import VlmeftError

    towers = tuple(t.strip() for t in text.split(",") if t.strip())
    if not towers or set(towers) - set(allowed):
        raise VlmeftError(f"towers must name {' and/or '.join(allowed)}, got {text!r}", where="--set")
    return towers


def width(backbone, tower: str) -> int:  # noqa: ANN001
    return int(blocks(backbone, tower)[0].ln_1.weight.shape[0])


def heads(backbone, tower: str) -> int:  # noqa: ANN001
    return int(blocks(backbone, tower)[0].attn.num_heads)


class Bottleneck(nn.Module):
    """``up(act(down(x)))``; ``zero_up`` starts it at zero (the identity for a residual adapter),
    ``init_std`` draws both layers from N(0, std) clamped to 2 std (MAGMA's init)."""

    def __init__(self, dim: int, hidden: int, act: str = "relu", *, out_dim: int | None = None,
                 zero_up: bool = False, init_std: float | None = None) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, out_dim or dim)
        self.act = ACTIVATIONS[act]
        if init_std is not None:
            with torch.no_grad():
                for layer in (self.down, self.up):
                    for p in layer.parameters():
                        p.normal_(0, init_std).clamp_(-2 * init_std, 2 * init_std)
        if zero_up:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x)))


class LowRank(nn.Module):
    """``scale * (x A^T) B^T`` with ``A`` Kaiming-uniform and ``B`` zero (LoRA's init)."""

    def __init__(self, d_in: int, d_out: int, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.zeros(d_out, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = scale
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (self.dropout(x) @ self.A.t()) @ self.B.t()


class TunedNorms(nn.Module):
    """Trainable copies of the LayerNorms of some towers' blocks, keyed ``tower/i/which``."""

    def __init__(self, backbone, towers: Iterable[str], final: bool = False) -> None:  # noqa: ANN001
        super().__init__()
        self.norms = nn.ModuleDict()
        for tower in towers:
            for i, block in enumerate(blocks(backbone, tower)):
                for which in ("ln_1", "ln_1_kv", "ln_2"):
                    ln = getattr(block, which, None)
                    if ln is not None:
                        self.norms[f"{tower}/{i}/{which}"] = _trainable_copy(ln)
        if final:
            dec = backbone.model.text_decoder
            self.norms[f"decoder/{len(dec.resblocks)}/ln_final"] = _trainable_copy(dec.ln_final)

    def run(self, tower: str, i: int, which: str, ln: nn.Module, x: Tensor) -> Tensor:
        own = self.norms[f"{tower}/{i}/{which}"] if f"{tower}/{i}/{which}" in self.norms else ln
        return own(x)


def _trainable_copy(ln: nn.Module) -> nn.Module:
    own = copy.deepcopy(ln)
    for p in own.parameters():
        p.requires_grad_(True)
    return own
