"""The base of every generative method: a frozen captioner, the method's hooks, one loss.

A generative method (``tasks = ("vqa", "captioning")``) adapts an open_clip CoCa
(:class:`~vlmeft.backbone.captioner.Captioner`) to write answers and captions. It is a
:class:`~vlmeft.method.Method` (same registry, recipes, checkpoints and "freeze by
construction": the backbone sits outside its module tree) and a
:class:`~vlmeft.backbone.captioner.Hooks` object: it overrides the hooks its mechanism
needs and the captioner runs them. Three stages can be replaced:

- :meth:`image_memory`: the image latent and the tokens the decoder attends to (through
  the ``vision`` hooks; ``frozen_image_path = True`` when the vision tower is untouched,
  so the engine computes the frozen memory once per image);
- :meth:`prefix`: embeddings put before the text (a visual prefix, MAGMA);
- :meth:`token_hidden`: the decoder's final hidden states under teacher forcing (default: the captioner's text
  tower and decoder through the hooks; LST replaces the output with its side network).

Everything else is shared: sequences (``[start] prompt target [end]``, the loss on the
target and the end token only), the language-modelling loss, greedy generation (each
row from its own prompt) and the context-length check.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from vlmeft.backbone.captioner import Hooks, ImageMemory
from vlmeft.errors import VlmeftError
from vlmeft.method import Method, MethodConfig

IGNORE = -100
# Backbones a generative method runs on (what messages suggest).
CAPTIONERS = ("synthcoca-tiny", "coca_ViT-B-32", "coca_ViT-L-14")


@dataclass
class GenerativeConfig(MethodConfig):
    """Training defaults of the generative methods (each method's Config sets its paper's).
    No augmentation: a crop or flip would contradict a caption that names positions."""

    optimizer: typing.Literal["sgd", "adamw"] = "adamw"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    augment: bool = False
    max_new_tokens: int = 20  # the longest caption generated
    max_answer_tokens: int = 8  # the longest answer generated

    def validate(self) -> None:
        super().validate()
        if self.augment:
            raise VlmeftError("generative methods train without augmentation (crops and flips would contradict "
                              "captions and answers about positions); set augment=false", where="--set")
        for name in ("max_new_tokens", "max_answer_tokens"):
            if getattr(self, name) < 1:
                raise VlmeftError(f"{name} must be at least 1, got {getattr(self, name)}", where="--set")


class GenerativeMethod(Hooks, Method):
    """Base class of the captioning / VQA methods (see the module docstring)."""

    Config: ClassVar[type[MethodConfig]] = GenerativeConfig
    tasks: ClassVar[tuple[str, ...]] = ("vqa", "captioning")
    requires_vision_tokens = True  # CoCa's image tower is a ViT
    frozen_image_path = True  # the vision tower is untouched (overridden by methods that adapt it)
    # The towers whose blocks the method's hooks change (the captioner runs the others as they are).
    adapted_towers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: Any, classnames: Sequence[str] = (), templates: Sequence[str] = (),
                 config: MethodConfig | None = None) -> None:
        if not getattr(backbone, "is_captioner", False):
            raise VlmeftError(f"method '{self.name}' generates text and needs a captioning backbone (an open_clip "
                              f"CoCa): {', '.join(CAPTIONERS)}; '{backbone.name}' has no text decoder",
                              where="--backbone")
        super().__init__(backbone, [], [], config)

    # ----------------------------------------------------------------- hooks
    def adapts(self, tower: str, i: int) -> bool:
        return tower in self.adapted_towers

    @property
    def hooks(self) -> Hooks:
        return self

    # ---------------------------------------------------------------- stages
    def image_memory(self, images: Tensor) -> ImageMemory:
        return self.backbone.image_memory(images, self.hooks)

    def adapt_memory(self, memory: ImageMemory) -> ImageMemory:
        """Map a (possibly cached, frozen) image memory to the method's (identity here)."""
        return memory

    def encode_images(self, images: Tensor) -> ImageMemory:
        """Normalised images -> the memory the method decodes from (both stages above)."""
        return self.adapt_memory(self.image_memory(images))

    def prefix(self, memory: ImageMemory) -> Tensor | None:
        """Embeddings ``[N, P, Dt]`` put before the text (None: no prefix)."""
        return None

    def prefix_length(self) -> int:
        return 0

    def token_hidden(self, tokens: Tensor, memory: ImageMemory) -> Tensor:
        """The decoder's final hidden states ``[N, L, D]`` at the token positions (teacher
        forcing), before the output projection."""
        bb = self.backbone
        states = bb.text_states(tokens, self.hooks, self.prefix(memory))
        hidden = bb.decode(states, memory, self.hooks, return_hidden=True)
        return hidden[:, hidden.shape[1] - tokens.shape[1] :]

    def token_logits(self, tokens: Tensor, memory: ImageMemory) -> Tensor:
        """Next-token logits ``[N, L, V']`` for ``tokens [N, L]`` (teacher forcing)."""
        return self.backbone.project(self.token_hidden(tokens, memory))

    # ------------------------------------------------------------- sequences
    def prompt_ids(self, prompt: str) -> list[int]:
        return [self.backbone.sot_id, *self.backbone.encode_words(prompt)]

    def sequences(self, prompts: Sequence[str], targets: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``[start] prompt target [end]`` token ids ``[N, L]`` (right-padded) and the
        next-token labels ``[N, L - 1]`` as logit columns: the target's tokens and the end
        token; everything else :data:`IGNORE`."""
        bb = self.backbone
        rows, spans = [], []
        for prompt, target in zip(prompts, targets):
            head = self.prompt_ids(prompt)
            rows.append(head + bb.encode_words(target) + [bb.eot_id])
            spans.append(len(head))
        width = max(len(r) for r in rows)
        bb.check_length(width - 1, 0, self.prefix_length(), where="the training text")
        tokens = torch.zeros(len(rows), width, dtype=torch.int64)
        labels = torch.full((len(rows), width - 1), IGNORE, dtype=torch.int64)
        for r, (ids, start) in enumerate(zip(rows, spans)):
            ids_t = torch.as_tensor(ids, dtype=torch.int64)
            tokens[r, : len(ids)] = ids_t
            cols = bb.columns(ids_t[start:])
            if bool((cols < 0).any()):
                raise VlmeftError(f"target {targets[r]!r} has tokens {bb.name} cannot generate", where="the task's targets")
            labels[r, start - 1 : len(ids) - 1] = cols
        return tokens.to(self.device), labels.to(self.device)

    def lm_loss(self, memory: ImageMemory, prompts: Sequence[str], targets: Sequence[str]) -> Tensor:
        """Mean cross-entropy of the targets (and end tokens) under teacher forcing."""
        tokens, labels = self.sequences(prompts, targets)
        logits = self.token_logits(tokens[:, :-1], memory)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)

    # ------------------------------------------------------------ generation
    def check_generation(self, prompts: Sequence[str], max_new: int, where: str) -> None:
        longest = max((len(self.prompt_ids(p)) for p in prompts), default=1)
        self.backbone.check_length(longest, max_new, self.prefix_length(), where=where)

    @torch.no_grad()
    def generate(self, memory: ImageMemory, prompts: Sequence[str], max_new: int) -> list[str]:
        """Greedy continuations of ``prompts`` (one per image of ``memory``), as text."""
        ids = [self.prompt_ids(p) for p in prompts]
        self.backbone.check_length(max(len(i) for i in ids), max_new, self.prefix_length())

        def step(tokens: Tensor, live: Tensor, last: Tensor) -> Tensor:
            hidden = self.token_hidden(tokens, memory.index(live))
            return self.backbone.project(hidden[torch.arange(len(last), device=hidden.device), last])

        out = self.backbone.generate(step, ids, max_new)
        return [self.backbone.decode_ids(o) for o in out]

    # ----------------------------------------------- classification interface
    def forward(self, images: Tensor) -> Tensor:  # noqa: D401
        raise VlmeftError(f"method '{self.name}' generates text; it has no class logits "
                          "(vlmeft run it on a VQA or captioning task)")
