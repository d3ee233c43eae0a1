"""The generative half of the backbone layer: open_clip's CoCa as a captioner with method hooks.

CoCa (Yu et al. 2022) is a CLIP whose text side continues into a *multimodal decoder*:

    image ──ViT──► attentional pooler ──► image latent (contrastive)  +  image tokens  ─┐
    text  ──unimodal text decoder (causal)──► text states ──► multimodal decoder ──────┴─► next-token logits
                                                             (per layer: causal self-attention
                                                              block, then a cross-attention
                                                              block over the image tokens)

:class:`Captioner` is a :class:`~vlmeft.backbone.wrapper.Backbone` (so the contrastive half
keeps every classification hook) that re-runs these towers step by step, the way the
wrapper does for CLIP, and hands every generative method the same seams:

- **tower hooks** (:class:`Hooks`): per block of each tower (``"vision"``, ``"text"``,
  ``"decoder"`` = the decoder's self-attention blocks, ``"cross"`` = its cross-attention
  blocks) a method may change the attention projections (``qkv``: LoRA, value adapters),
  add gated or plain extra keys and values (``extra_kv``: LLaMA-Adapter's adaptation
  prompts, prefix tuning), rewrite a sublayer's output before its residual add
  (``attn_out`` / ``mlp_out``: sequential, parallel and gated adapters) and read or
  replace a block's output (``block_out``: LST's ladder taps);
- the **cross-attention inputs**: :meth:`image_memory` returns the image latent and the
  image tokens the decoder attends to (a method may transform them before decoding);
- a **visual prefix**: :meth:`text_states` prepends embeddings to the text sequence (MAGMA);
- **decoding**: :meth:`logits` (teacher forcing) and :meth:`generate` (greedy, batched,
  per-row prompt lengths), both through the same hooks.

With no hooks every step is open_clip's own module call, and :meth:`logits` equals
``CoCa.forward(image, text)["logits"]`` on every non-padding position (tested); with hooks
each attention is recomputed from the block's own weights (equal to the module call to
1e-6 when the hooks change nothing, tested).

Vocabulary: generation and the training loss run over :attr:`output_ids`, all of the
tokenizer's ids, or for synthcoca-tiny's shipped weights only the ids they trained (its
other rows and columns are zeros, see :mod:`vlmeft.backbone.synthcoca.weights`). Computing
only those columns of the output projection also makes the tiny model's steps cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlmeft.backbone.wrapper import Backbone
from vlmeft.errors import VlmeftError

TOWERS = ("vision", "text", "decoder", "cross")


@dataclass
class ExtraKV:
    """Keys and values added to one attention, in the model width before the head split.

    ``gate`` None: they join the sequence's own keys under one softmax (prefix tuning).
    ``gate`` [heads]: they get a softmax of their own, scaled by ``tanh(gate)`` and added
    to the ordinary attention (LLaMA-Adapter's zero-initialised gated attention)."""

    keys: Tensor  # [B | 1, P, D]
    values: Tensor  # [B | 1, P, D]
    gate: Tensor | None = None


class Hooks:
    """No-op hooks; a method overrides what it adapts. ``i`` is the block's index in its
    tower; ``x`` is the block's input (the residual stream)."""

    def adapts(self, tower: str, i: int) -> bool:
        """Whether block ``i`` of ``tower`` needs the hooked path (False: open_clip's own call)."""
        return True

    def qkv(self, tower: str, i: int, q_in: Tensor, kv_in: Tensor, q: Tensor, k: Tensor, v: Tensor
            ) -> tuple[Tensor, Tensor, Tensor]:
        return q, k, v

    def extra_kv(self, tower: str, i: int, q_in: Tensor) -> ExtraKV | None:
        return None

    def attn_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        return out

    def mlp_out(self, tower: str, i: int, x: Tensor, out: Tensor) -> Tensor:
        return out

    def block_out(self, tower: str, i: int, x: Tensor) -> Tensor:
        return x

    def norm(self, tower: str, i: int, which: str, ln: nn.Module, x: Tensor) -> Tensor:
        """A LayerNorm of block ``i`` (``which``: ln_1, ln_1_kv, ln_2; the decoder's final norm
        is ``("decoder", layers, "ln_final")``): methods that tune norms apply their own."""
        return ln(x)


NO_HOOKS = Hooks()


def _heads(x: Tensor, h: int) -> Tensor:
    return x.reshape(x.shape[0], x.shape[1], h, -1).transpose(1, 2)  # [N, H, L, dh]


def _attention(block: nn.Module, q_in: Tensor, kv_in: Tensor, mask: Tensor | None, hooks: Hooks, tower: str,
               i: int) -> Tensor:
    """``block.attn`` (an ``nn.MultiheadAttention``) recomputed from its weights, with hooks."""
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
        raise VlmeftError(f"{tower} block {i} has an attention layer the captioner hooks cannot run "
                          f"({type(attn).__name__}); use a standard open_clip CoCa config")
    d, h = attn.embed_dim, attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    bq, bk, bv = (None, None, None) if b is None else (b[:d], b[d : 2 * d], b[2 * d :])
    q = F.linear(q_in, w[:d], bq)
    k = F.linear(kv_in, w[d : 2 * d], bk)
    v = F.linear(kv_in, w[2 * d :], bv)
    q, k, v = hooks.qkv(tower, i, q_in, kv_in, q, k, v)
    extra = hooks.extra_kv(tower, i, q_in)
    qh, kh, vh = _heads(q, h), _heads(k, h), _heads(v, h)
    scale = 1.0 / math.sqrt(qh.shape[-1])
    scores = (qh @ kh.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    if extra is None:
        out = scores.softmax(dim=-1) @ vh
    else:
        n = q.shape[0]
        ek = _heads(extra.keys.expand(n, -1, -1), h)
        ev = _heads(extra.values.expand(n, -1, -1), h)
        extra_scores = (qh @ ek.transpose(-2, -1)) * scale
        if extra.gate is None:  # one softmax over [extra; own] keys
            probs = torch.cat([extra_scores, scores], dim=-1).softmax(dim=-1)
            out = probs @ torch.cat([ev, vh], dim=2)
        else:  # a softmax of their own, gated per head
            gate = torch.tanh(extra.gate).view(1, h, 1, 1)
            out = gate * (extra_scores.softmax(dim=-1) @ ev) + scores.softmax(dim=-1) @ vh
    out = out.transpose(1, 2).reshape(q.shape[0], q.shape[1], d)
    return attn.out_proj(out)


def run_block(block: nn.Module, x: Tensor, *, tower: str, i: int, hooks: Hooks = NO_HOOKS,
              mask: Tensor | None = None, memory: Tensor | None = None) -> Tensor:
    """One open_clip ``ResidualAttentionBlock`` (batch-first ``x``), through ``hooks``.
    ``memory`` is the cross-attention's key/value input (decoder cross blocks)."""
    if hooks is NO_HOOKS or not hooks.adapts(tower, i):
        if memory is not None:
            out = block(x, k_x=memory, v_x=memory)
        else:
            out = block(x, attn_mask=mask)
        return hooks.block_out(tower, i, out) if hooks is not NO_HOOKS else out
    q_in = hooks.norm(tower, i, "ln_1", block.ln_1, x)
    kv_in = hooks.norm(tower, i, "ln_1_kv", block.ln_1_kv, memory) if memory is not None else q_in
    a = block.ls_1(_attention(block, q_in, kv_in, mask, hooks, tower, i))
    x = x + hooks.attn_out(tower, i, x, a)
    m = block.ls_2(block.mlp(hooks.norm(tower, i, "ln_2", block.ln_2, x)))
    x = x + hooks.mlp_out(tower, i, x, m)
    return hooks.block_out(tower, i, x)


@dataclass
class ImageMemory:
    """What the decoder reads of an image batch: the contrastive latent and the tokens
    its cross-attention attends to."""

    latent: Tensor  # [B, E] (projected, not normalised)
    tokens: Tensor  # [B, N, D]

    def index(self, idx: Tensor | Sequence[int]) -> ImageMemory:
        return ImageMemory(self.latent[idx], self.tokens[idx])


def is_captioner_model(model: nn.Module) -> bool:
    """An open_clip CoCa (a text decoder on top of a CLIP)."""
    return hasattr(model, "text_decoder") and hasattr(model, "visual") and hasattr(model, "text")


class Captioner(Backbone):
    """A frozen open_clip CoCa with generation hooks (see the module docstring)."""

    is_captioner = True

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, pretrained: str | None, weights_id: str,
                 output_ids: Tensor | None = None) -> None:
        if not is_captioner_model(model):
            raise VlmeftError(f"'{name}' is not a captioning model (an open_clip CoCa with a text decoder)",
                              where="--backbone")
        super().__init__(model, tokenizer, name=name, pretrained=pretrained, weights_id=weights_id)
        dec = model.text_decoder
        self.decoder_layers: int = len(dec.resblocks)
        self.decoder_width: int = dec.ln_final.weight.shape[0]
        self.vocab_size: int = dec.text_projection.shape[1]
        self.decoder_context: int = int(dec.attn_mask.shape[0])
        # The text tower's positions (its context length plus CoCa's appended class token).
        self.text_positions: int = int(self.text_tower.positional_embedding.shape[0])
        self.sot_id: int = int(getattr(tokenizer, "sot_token_id", 49406))
        self.eot_id: int = int(getattr(tokenizer, "eot_token_id", 49407))
        ids = torch.arange(self.vocab_size) if output_ids is None else torch.as_tensor(output_ids).sort().values
        self.register_buffer("output_ids", ids.to(torch.int64), persistent=False)
        index = torch.full((self.vocab_size,), -1, dtype=torch.int64)
        index[self.output_ids] = torch.arange(len(self.output_ids))
        self.register_buffer("output_index", index, persistent=False)  # token id -> logit column (-1: none)
        self._restricted = output_ids is not None

    # ---------------------------------------------------------------- sizes
    @property
    def max_positions(self) -> int:
        """The longest sequence (prefix + prompt + generated tokens) both decoders can hold."""
        return min(self.decoder_context, self.text_positions - 1 if self.text_tower.cls_emb is not None
                   else self.text_positions)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "decoder_layers": self.decoder_layers, "decoder_width": self.decoder_width,
                "max_positions": self.max_positions, "output_vocabulary": len(self.output_ids)}

    # ----------------------------------------------------------- tokenizing
    def encode_words(self, text: str) -> list[int]:
        """BPE ids of ``text`` (no start/end tokens)."""
        return list(self.tokenizer.encode(text)) if text else []

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` whose tokens the model cannot generate (outside :attr:`output_ids`)."""
        if not self._restricted:
            return []
        bad = []
        for word in text.split():
            ids = torch.tensor(self.encode_words(word), dtype=torch.int64)
            if len(ids) and bool((self.output_index[ids.clamp(max=self.vocab_size - 1)] < 0).any()
                                 or (ids >= self.vocab_size).any()):
                bad.append(word)
        return bad

    def decode_ids(self, ids: Sequence[int]) -> str:
        words = [int(t) for t in ids if int(t) not in (self.sot_id, self.eot_id, 0)]
        text = self.tokenizer.decode(words) if words else ""
        # open_clip's decoder puts a space before punctuation ("a star ."); written text has none
        # (the scores drop punctuation either way).
        return re.sub(r" ([.,?!;:])", r"\1", " ".join(text.split()))

    # ----------------------------------------------------------------- image
    def image_memory(self, images: Tensor, hooks: Hooks = NO_HOOKS) -> ImageMemory:
        """The image latent and the decoder's cross-attention tokens, through the vision hooks."""
        visual = self.model.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        for i, block in enumerate(visual.transformer.resblocks):
            x = run_block(block, x, tower="vision", i=i, hooks=hooks)
        self.last_vision_seq_len = x.shape[1]
        pooled, tokens = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return ImageMemory(pooled, tokens)

    # ------------------------------------------------------------------ text
    def text_states(self, tokens: Tensor, hooks: Hooks = NO_HOOKS, prefix: Tensor | None = None) -> Tensor:
        """The unimodal text decoder's states ``[N, P + L, Dt]`` for ``tokens [N, L]`` after an
        optional ``prefix [N, P, Dt]`` of embeddings (causal; what CoCa feeds its decoder)."""
        text = self.text_tower
        x = text.token_embedding(tokens).to(self.dtype)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        n = x.shape[1]
        if n > self.max_positions:
            raise VlmeftError(f"a sequence of {n} tokens exceeds {self.name}'s context of {self.max_positions}")
        x = x + text.positional_embedding[:n].to(x.dtype)
        mask = text.attn_mask[:n, :n] if text.attn_mask is not None else None
        for i, block in enumerate(text.transformer.resblocks):
            x = run_block(block, x, tower="text", i=i, hooks=hooks, mask=mask)
        return x

    def decode(self, states: Tensor, memory: ImageMemory | Tensor, hooks: Hooks = NO_HOOKS,
               *, return_hidden: bool = False) -> Tensor:
        """Multimodal decoder: logits ``[N, L, len(output_ids)]`` (or the final hidden states)."""
        dec = self.model.text_decoder
        mem = memory.tokens if isinstance(memory, ImageMemory) else memory
        n = states.shape[1]
        mask = dec.attn_mask[:n, :n]
        x = states
        for i, (block, cross) in enumerate(zip(dec.resblocks, dec.cross_attn)):
            x = run_block(block, x, tower="decoder", i=i, hooks=hooks, mask=mask)
            x = run_block(cross, x, tower="cross", i=i, hooks=hooks, memory=mem)
        x = hooks.norm("decoder", len(dec.resblocks), "ln_final", dec.ln_final, x)
        return x if return_hidden else self.project(x)

    def project(self, hidden: Tensor) -> Tensor:
        """The decoder's output projection, onto :attr:`output_ids` only."""
        proj = self.model.text_decoder.text_projection
        if self._restricted:
            proj = proj[:, self.output_ids]
        return hidden @ proj

    def logits(self, tokens: Tensor, memory: ImageMemory, hooks: Hooks = NO_HOOKS,
               prefix: Tensor | None = None) -> Tensor:
        """Teacher-forced next-token logits ``[N, L, V']`` for the token positions (a
        prefix's positions are dropped)."""
        states = self.text_states(tokens, hooks, prefix)
        out = self.decode(states, memory, hooks)
        return out[:, out.shape[1] - tokens.shape[1] :]

    def columns(self, token_ids: Tensor) -> Tensor:
        """Token ids -> logit columns (-1 for ids outside :attr:`output_ids`)."""
        return self.output_index[token_ids.clamp(0, self.vocab_size - 1)]

    def check_length(self, prompt_tokens: int, new_tokens: int, prefix: int = 0, where: str = "--set max_new_tokens"
                     ) -> None:
        """A one-line error when a generation would outgrow the model's context."""
        total = prefix + prompt_tokens + new_tokens
        if total > self.max_positions:
            parts = f"{prefix} prefix + " if prefix else ""
            raise VlmeftError(f"generation length {new_tokens} tokens after a {parts}{prompt_tokens}-token prompt "
                              f"({total} in all) exceeds {self.name}'s context of {self.max_positions} tokens",
                              where=where)

    @torch.no_grad()
    def generate(self, step: Any, prompts: Sequence[Sequence[int]], max_new: int) -> list[list[int]]:
        """Greedy decoding, batched: each row starts from its own prompt (start token
        included), and ``step(tokens [N, L], rows [N], last [N]) -> logits [N, V']`` is the
        method's teacher-forced forward pass, projected at position ``last`` of each row
        (``rows``: which of the batch's rows are still generating). Rows are right-padded: causal attention makes the
        padding invisible to the positions before it, so one pass serves every row.
        Returns the generated token ids of each row (without the end token)."""
        n = len(prompts)
        lengths = torch.tensor([len(p) for p in prompts], dtype=torch.int64)
        width = int(lengths.max()) + max_new
        buf = torch.zeros(n, width, dtype=torch.int64)
        for r, p in enumerate(prompts):
            buf[r, : len(p)] = torch.as_tensor(list(p), dtype=torch.int64)
        buf = buf.to(self.device)
        lengths = lengths.to(self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        out: list[list[int]] = [[] for _ in range(n)]
        for _ in range(max_new):
            live = (~done).nonzero().flatten()
            if not len(live):
                break
            upto = int(lengths[live].max())
            logits = step(buf[live, :upto], live, lengths[live] - 1)  # [n_live, V']
            nxt = self.output_ids[logits.argmax(dim=-1)]
            for r, tok in zip(live.tolist(), nxt.tolist()):
                if tok == self.eot_id:
                    done[r] = True
                else:
                    out[r].append(tok)
                    buf[r, lengths[r]] = tok
                    lengths[r] += 1
        return out
