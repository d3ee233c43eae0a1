"""Contrastive pretraining of synthclip-tiny on the procedural world.

Reproducible and resumable: every batch is a pure function of ``(seed, step)`` (indices and
caption choice come from a generator seeded with both), so a run interrupted at any point
and resumed from its last checkpoint ends with the same weights as an uninterrupted one.

Images are rendered lazily (:class:`vlmeft.world.pool.LazyPool`): a batch renders the
samples it draws that no earlier batch drew, so a 5-step smoke run renders about a
thousand images instead of the whole pool first. The batches are bit-identical to those of
the eager pool the shipped weights were trained on (tests/test_pretrain.py compares them).

The text tower trains with a *compact* token table holding only the token ids the world's
captions can contain (:func:`vocabulary`: 76 of 49,408, read from the world's closed word
list rather than from every rendered caption, so that nothing needs rendering up front; it
equals the set the shipped weights store). The other rows would never receive a gradient
anyway, and skipping them saves the dense 6.3M-row update every step. Export expands the
table back to open_clip's full vocabulary (see :mod:`.compact`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlmeft.backbone.synthclip import compact
from vlmeft.backbone.synthclip.paths import CONFIG_NAME, MEAN, STD, model_config
from vlmeft.backbone.synthclip.recipe import Recipe
from vlmeft.errors import VlmeftError
from vlmeft.world.pool import LazyPool, Pool, open_pool
from vlmeft.world.samples import N_CAPTIONS
from vlmeft.world.vocab import caption_words

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "synthclip-tiny.safetensors"


def tokenize(texts: list[str]) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(texts, context_length=model_config()["text_cfg"]["context_length"])


def vocabulary() -> torch.Tensor:
    """Every token id a world caption can contain, sorted: its words, ``.`` and ``,``, and the
    start, end and padding tokens."""
    return torch.unique(tokenize([*sorted(caption_words()), ".", ","]))


@dataclass
class Data:
    """The pool batches are drawn from, and the compact vocabulary of its captions."""

    pool: Pool | LazyPool
    used_ids: torch.Tensor  # full-vocabulary id of each compact id (sorted)
    lookup: torch.Tensor  # full-vocabulary id -> compact id (-1: not in the world's vocabulary)
    _tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # caption -> compact ids

    def tokens(self, captions: list[str]) -> torch.Tensor:
        """Compact token ids [B, L] of ``captions`` (tokenized once per distinct caption)."""
        new = [c for c in dict.fromkeys(captions) if c not in self._tokens]
        if new:
            compact_ids = self.lookup[tokenize(new)]
            if bool((compact_ids < 0).any()):
                bad = new[int((compact_ids < 0).any(dim=1).nonzero()[0])]
                raise VlmeftError(f"caption {bad!r} has a token outside the world's vocabulary "
                                  "(vlmeft.world.vocab.caption_words)")
            self._tokens.update(zip(new, compact_ids))
        return torch.stack([self._tokens[c] for c in captions])


def lookup_table(used_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Full-vocabulary id -> compact id (-1 for ids outside ``used_ids``)."""
    lookup = torch.full((vocab_size,), -1, dtype=torch.int64)
    lookup[used_ids] = torch.arange(len(used_ids))
    return lookup


def prepare_data(recipe: Recipe, progress: bool = True) -> Data:  # noqa: ARG001 (nothing to render up front)
    used = vocabulary()
    return Data(open_pool(recipe.pool_size, recipe.seed), used,
                lookup_table(used, int(model_config()["text_cfg"]["vocab_size"])))


def build_model(n_vocab: int | None = None):
    """An open_clip CLIP of the synthclip-tiny architecture (optionally with a compact vocabulary)."""
    from open_clip.model import CLIP

    cfg = copy.deepcopy(model_config())
    if n_vocab is not None:
        cfg["text_cfg"]["vocab_size"] = n_vocab
    return CLIP(**cfg)


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] normalised with the config's mean/std."""
    x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * min(1.0, t)))


def batch_at(step: int, data: Data, recipe: Recipe):
    """Normalised images, compact tokens and caption ids (equal exactly when two captions are
    the same string) of the batch at ``step``."""
    g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    n, k = len(data.pool), N_CAPTIONS
    idx = torch.randint(n, (recipe.batch_size,), generator=g)
    which = torch.randint(k, (recipe.batch_size,), generator=g)
    images = torch.from_numpy(data.pool.images_at(idx.tolist()))
    captions = [data.pool.captions_at(i)[w] for i, w in zip(idx.tolist(), which.tolist())]
    _, caption_ids = np.unique(np.array(captions), return_inverse=True)
    return normalise(images), data.tokens(captions), torch.from_numpy(caption_ids.reshape(-1).astype(np.int64))


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE. Identical captions in a batch are all positives (uniform soft target)."""
    logits = scale * img @ txt.t()
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def make_optimizer(model, recipe: Recipe) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=recipe.lr, betas=recipe.betas, eps=1e-6)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def full_state(model, used_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The compact-vocabulary model's state as an open_clip state dict over the full vocabulary."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    rows = state[compact.TOK]
    table = torch.zeros(int(model_config()["text_cfg"]["vocab_size"]), rows.shape[1])
    table[used_ids] = rows
    state[compact.TOK] = table
    return state


def pretrain(recipe: Recipe, out: Path, *, resume: bool = True, stop_after: int | None = None,
             progress: bool = True, log=print, device: str = "cpu") -> dict:
    """Train (or continue training) and, when the last step is reached, export the weights.

    ``stop_after`` ends the process after that many total steps without exporting, the
    way an interruption would (used by the resume test)."""
    from tqdm import tqdm

    torch.set_num_threads(recipe.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    torch.manual_seed(recipe.seed)
    data = prepare_data(recipe, progress=progress)
    model = build_model(len(data.used_ids)).to(device)
    opt = make_optimizer(model, recipe)
    start, wall = 0, 0.0
    if resume and ckpt_path.is_file():
        start, wall = load_checkpoint(ckpt_path, recipe, data.used_ids, model, opt)
        log(f"resuming from step {start} ({ckpt_path})")
    _atomic_json(asdict(recipe), out / "recipe.json")

    def save_checkpoint(step: int) -> None:
        _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                            "torch_rng": torch.get_rng_state(), "recipe": asdict(recipe),
                            "used_ids": data.used_ids, "wall_s": wall}, ckpt_path)

    end = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    model.train()
    losses: list[float] = []
    bar = tqdm(total=recipe.steps, initial=start, disable=not progress, desc="pretrain", unit="step",
               mininterval=5.0)
    t_last = time.time()
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe)
        x, tok, cid = (t.to(device) for t in batch_at(step, data, recipe))
        img, txt, scale = model(x, tok)
        loss = clip_loss(img, txt, scale, cid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        now = time.time()
        wall += now - t_last
        t_last = now
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % 50 == 0:
            log(f"step {step + 1}/{recipe.steps} loss {np.mean(losses[-50:]):.4f} "
                f"lr {lr_at(step, recipe):.2e} scale {float(scale.detach()):.1f} wall {wall:.0f}s")
        if (step + 1) % recipe.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
    bar.close()
    if end < recipe.steps:
        return {"step": end, "exported": False}
    return export(model, data.used_ids, recipe, out, final_loss=float(np.mean(losses[-50:])) if losses else None,
                  wall_s=wall)


def load_checkpoint(ckpt_path: Path, recipe, used_ids: torch.Tensor, model, opt) -> tuple[int, float]:  # noqa: ANN001
    """Restore model, optimiser and torch RNG from a pretraining checkpoint; returns
    ``(step, wall seconds so far)``. A checkpoint of another recipe or vocabulary, or a damaged
    one, is a one-line error naming the file."""
    try:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        bad = recipe.compatible(ck["recipe"])
        if bad:
            raise VlmeftError(f"checkpoint recipe differs in {', '.join(bad)}; use --no-resume or another --out",
                              where=str(ckpt_path))
        if not torch.equal(ck["used_ids"], used_ids):
            raise VlmeftError("checkpoint vocabulary differs from this world's", where=str(ckpt_path))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        return int(ck["step"]), float(ck.get("wall_s", 0.0))
    except VlmeftError:
        raise
    except Exception as err:  # noqa: BLE001 - truncated, tampered or foreign: torch/pickle raise many types
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise VlmeftError(f"damaged checkpoint ({type(err).__name__}: {reason}); "
                          "delete it or use --no-resume", where=str(ckpt_path)) from None


def export(model, used_ids: torch.Tensor, recipe: Recipe, out: Path, **train_info) -> dict:
    """Write the compact fp16 weights and weights.json (sha256 + recipe) into ``out``."""
    state = full_state(model, used_ids)
    packed = compact.pack(state, used_ids)
    sha = compact.save_compact(out / WEIGHTS, packed)
    n_params = sum(v.numel() for v in state.values())
    meta = {
        "model": CONFIG_NAME,
        "file": WEIGHTS,
        "sha256": sha,
        "format": compact.FORMAT,
        "bytes": (out / WEIGHTS).stat().st_size,
        "params": n_params,
        "stored_token_rows": int(len(used_ids)),
        "untrained_token_rows": "zeros",
        "preprocess_cfg": {"size": model_config()["vision_cfg"]["image_size"], "mean": list(MEAN), "std": list(STD)},
        "recipe": asdict(recipe),
        "train": train_info,
    }
    _atomic_json(meta, out / "weights.json")
    return {"step": recipe.steps, "exported": True, **meta}
