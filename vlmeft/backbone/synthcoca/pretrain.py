"""Pretraining synthcoca-tiny (an open_clip CoCa) on the world's captions and questions.

Each step draws a batch of world samples exactly as synthclip-tiny's pretraining does
(indices and caption choice from a generator seeded with ``(seed, step)``), then turns a
``qa_fraction`` of its rows into a question about the sample's own facts
(:mod:`vlmeft.world.qa`, pretraining phrasings): ``"what color is the star? red"``. The
loss is CoCa's (Yu et al. 2022; open_clip's ``CoCaLoss`` weights):

- **contrastive** (weight 1): symmetric InfoNCE between the image latent and the text
  tower's class-token latent, over the caption rows (identical captions are all positives);
- **captioning** (weight 2): teacher-forced cross-entropy of the multimodal decoder's
  next-token logits. Caption rows are scored on every token after the start token;
  question rows only on the answer and the end token, so answering is generative: the
  decoder writes the answer after the question.

Resumable and bit-identical on resume, as synthclip's: every batch (rows, captions,
questions) is a pure function of ``(seed, step)``, and the checkpoint holds the model,
optimiser and torch RNG state. The model trains on a *compact* vocabulary (the token ids
the world's captions, questions and answers can contain); export expands the token
embedding rows and the decoder's output-projection columns back to open_clip's full
vocabulary (:mod:`.weights`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlmeft.backbone.synthclip import pretrain as synthclip_pretrain
from vlmeft.backbone.synthclip.pretrain import _atomic_json, _atomic_torch_save, clip_loss, lr_at, make_optimizer, \
    normalise
from vlmeft.backbone.synthcoca.paths import model_config
from vlmeft.backbone.synthcoca.recipe import Recipe
from vlmeft.world.pool import LazyPool
from vlmeft.world.qa import qa_words, questions
from vlmeft.world.samples import N_CAPTIONS, Sample
from vlmeft.world.vocab import caption_words

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "synthcoca-tiny.safetensors"
IGNORE = -100  # label of a position the captioning loss skips


def tokenize(texts: list[str]) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(texts, context_length=model_config()["text_cfg"]["context_length"])


def vocabulary() -> torch.Tensor:
    """Every token id a caption, question or answer of the world can contain, sorted
    (with the start, end and padding tokens)."""
    return torch.unique(tokenize([*sorted(caption_words() | qa_words()), ".", ",", "?"]))


class FactPool(LazyPool):
    """The lazy pretraining pool, also keeping each sample's facts (for its questions)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        super().__init__(n, seed)
        self._facts: list[Sample | None] = [None] * n

    def _keep(self, i: int, sample: Sample) -> None:
        self._facts[i] = Sample(np.empty(0, np.uint8), [], sample.objects, None, sample.target)

    def facts_at(self, i: int) -> Sample:
        self._ensure(i)
        return self._facts[i]  # type: ignore[return-value]


class Data(synthclip_pretrain.Data):
    """synthclip's compact-vocabulary data (tokens: compact ids, tokenized once per text), on
    the fact-keeping pool."""

    pool: FactPool


def prepare_data(recipe: Recipe) -> Data:
    used = vocabulary()
    return Data(FactPool(recipe.pool_size, recipe.seed), used,
                synthclip_pretrain.lookup_table(used, int(model_config()["text_cfg"]["vocab_size"])))


def build_model(n_vocab: int | None = None):
    """An open_clip CoCa of the synthcoca-tiny architecture (optionally with a compact vocabulary)."""
    from open_clip.coca_model import CoCa

    cfg = copy.deepcopy(model_config())
    cfg.pop("custom_text", None)
    if n_vocab is not None:
        cfg["text_cfg"]["vocab_size"] = cfg["multimodal_cfg"]["vocab_size"] = n_vocab
    model = CoCa(**cfg)
    # open_clip allocates the decoder's output projection with torch.empty and never initialises
    # it; zeros make the start deterministic (every token equally likely at step 0).
    torch.nn.init.zeros_(model.text_decoder.text_projection)
    return model


@dataclass
class Batch:
    images: torch.Tensor  # normalised [B, 3, S, S]
    tokens: torch.Tensor  # compact ids [B, L]
    labels: torch.Tensor  # next-token targets [B, L - 1] (IGNORE where not scored)
    caption_rows: torch.Tensor  # bool [B]: the row holds a caption (contrastive loss)
    caption_ids: torch.Tensor  # [B] equal exactly when two rows hold the same text


def batch_at(step: int, data: Data, recipe: Recipe) -> Batch:
    g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
    n = len(data.pool)
    idx = torch.randint(n, (recipe.batch_size,), generator=g)
    which = torch.randint(N_CAPTIONS, (recipe.batch_size,), generator=g)
    ask = torch.rand(recipe.batch_size, generator=g) < recipe.qa_fraction
    images = torch.from_numpy(data.pool.images_at(idx.tolist()))
    texts, prompts = [], []
    for row, (i, w, q) in enumerate(zip(idx.tolist(), which.tolist(), ask.tolist())):
        qa = []
        if q:
            rng = np.random.default_rng([recipe.seed, step, row])
            qa = questions(data.pool.facts_at(i), rng)
        if qa:
            pick = qa[int(np.random.default_rng([recipe.seed, step, row, 1]).integers(len(qa)))]
            texts.append(f"{pick.question} {pick.answer}")
            prompts.append(pick.question)
        else:
            texts.append(data.pool.captions_at(i)[w])
            prompts.append("")
    tokens = data.tokens(texts)
    tokens = tokens[:, : int((tokens != 0).sum(dim=1).max())]  # up to the longest text: causal masks make it exact
    labels = tokens[:, 1:].clone()
    labels[labels == 0] = IGNORE  # padding (compact id 0 is the padding token)
    for row, prompt in enumerate(prompts):
        if prompt:  # score only the answer and the end token
            start = int((data.tokens([prompt])[0] != 0).sum()) - 1  # the prompt's tokens without its end token
            labels[row, : start - 1] = IGNORE
    caption_rows = torch.tensor([not p for p in prompts])
    _, caption_ids = np.unique(np.array(texts), return_inverse=True)
    return Batch(normalise(images), tokens, labels, caption_rows,
                 torch.from_numpy(caption_ids.reshape(-1).astype(np.int64)))


def losses(model, batch: Batch, recipe: Recipe) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(batch.images, batch.tokens)
    logits = out["logits"]  # [B, L - 1, V] for tokens[:, :-1]
    caption = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=IGNORE)
    rows = batch.caption_rows
    contrastive = clip_loss(out["image_features"][rows], out["text_features"][rows], out["logit_scale"],
                            batch.caption_ids[rows]) if int(rows.sum()) > 1 else caption.new_zeros(())
    total = recipe.caption_weight * caption + recipe.contrastive_weight * contrastive
    return total, {"caption": float(caption.detach()), "contrastive": float(contrastive.detach()),
                   "scale": float(out["logit_scale"].detach())}


def pretrain(recipe: Recipe, out: Path, *, resume: bool = True, stop_after: int | None = None,
             progress: bool = True, log=print, device: str = "cpu") -> dict:
    """Train (or continue training) on ``device`` and, when the last step is reached, export the weights.
    ``stop_after`` ends after that many total steps without exporting (an interruption)."""
    from tqdm import tqdm

    from vlmeft.backbone.synthcoca.weights import export

    torch.set_num_threads(recipe.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    torch.manual_seed(recipe.seed)
    data = prepare_data(recipe)
    model = build_model(len(data.used_ids)).to(device)
    opt = make_optimizer(model, recipe)
    start, wall = 0, 0.0
    if resume and ckpt_path.is_file():
        start, wall = synthclip_pretrain.load_checkpoint(ckpt_path, recipe, data.used_ids, model, opt)
        log(f"resuming from step {start} ({ckpt_path})")
    _atomic_json(asdict(recipe), out / "recipe.json")

    def save_checkpoint(step: int) -> None:
        _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                            "torch_rng": torch.get_rng_state(), "recipe": asdict(recipe),
                            "used_ids": data.used_ids, "wall_s": wall}, ckpt_path)

    end = recipe.steps if stop_after is None else min(recipe.steps, stop_after)
    model.train()
    history: list[dict[str, float]] = []
    bar = tqdm(total=recipe.steps, initial=start, disable=not progress, desc="pretrain", unit="step", mininterval=5.0)
    t_last = time.time()
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe)
        batch = batch_at(step, data, recipe)
        batch = Batch(*(t.to(device) for t in (batch.images, batch.tokens, batch.labels, batch.caption_rows,
                                                 batch.caption_ids)))
        loss, parts = losses(model, batch, recipe)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        history.append(parts)
        now = time.time()
        wall += now - t_last
        t_last = now
        bar.update(1)
        if (step + 1) % 50 == 0:
            recent = history[-50:]
            log(f"step {step + 1}/{recipe.steps} caption {np.mean([h['caption'] for h in recent]):.4f} "
                f"contrastive {np.mean([h['contrastive'] for h in recent]):.4f} lr {lr_at(step, recipe):.2e} "
                f"scale {parts['scale']:.1f} wall {wall:.0f}s")
        if (step + 1) % recipe.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
    bar.close()
    if end < recipe.steps:
        return {"step": end, "exported": False}
    recent = history[-50:]
    final = {k: float(np.mean([h[k] for h in recent])) for k in ("caption", "contrastive")} if recent else {}
    return export(model, data.used_ids, recipe, out, final_loss=final, wall_s=wall)
