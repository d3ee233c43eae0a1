"""Generative vision-language tasks: visual question answering and captioning.

A :class:`VLTask` holds splits of :class:`VLExample` (an image, a prompt and the accepted
target texts) grouped by question type (VQA) or image kind (captions); the group is the
few-shot unit ("k examples per question type"). The embedded tasks come from the world:

- ``world-vqa``: questions of five types (colour, shape, count, position, digit) about
  rendered objects and scenes and about real handwritten digits (scikit-learn's UCI digits,
  as the ``digits`` classification task), worded with the pretraining phrasings *and*
  held-out ones (:mod:`vlmeft.world.qa`); shifted test sets: an unseen checkered
  background (inverted digits), heavy pixel noise.
- ``world-captions``: objects, scenes and rendered digits with five reference captions
  each, written in one complete "dataset" style (size, colour, shape and position of an
  object; both objects of a scene) where pretraining captions name random subsets of the
  attributes; shifted test sets as above.

``vqa-json:PATH`` and ``captions-json:PATH`` read a user's data in the COCO formats
(:mod:`vlmeft.data.coco_vl`). Scoring: :func:`vqa_accuracy` (exact match on normalised
answers, VQA's min(#matching references / 3, 1) when there are several) and
:func:`caption_scores` (CIDEr-D and BLEU-4 from ``pycocoevalcap``, tokenised here, see there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from vlmeft.data.types import Split
from vlmeft.errors import VlmeftError

KINDS = ("vqa", "captions")


@dataclass(frozen=True)
class VLExample:
    prompt: str  # the question; "" for a caption
    targets: tuple[str, ...]  # accepted answers / reference captions (at least one)
    group: str  # question type or image kind: the few-shot unit
    id: str = ""  # where it came from (a file's question or image id), for messages


@dataclass
class VLSplit:
    """Examples and their images (``images[i]`` belongs to ``examples[i]``)."""

    images: np.ndarray | list[Path]  # uint8 [N, H, W, 3] or image paths
    examples: list[VLExample]
    key: str  # stable identity of the data (cache keys)

    def __len__(self) -> int:
        return len(self.examples)

    def image_split(self) -> Split:
        """The images as a classification :class:`~vlmeft.data.types.Split` (for the loaders)."""
        return Split(self.images, np.zeros(len(self), dtype=np.int64), self.key)

    def subset(self, idx: Sequence[int], key: str) -> VLSplit:
        idx = np.asarray(idx, dtype=np.int64)
        images = self.images[idx] if isinstance(self.images, np.ndarray) else [self.images[i] for i in idx]
        return VLSplit(images, [self.examples[i] for i in idx], key)

    def groups(self) -> list[str]:
        return sorted({e.group for e in self.examples})


@dataclass
class VLTask:
    name: str
    kind: str  # "vqa" | "captions"
    train: VLSplit
    val: VLSplit
    test: VLSplit
    shifted: dict[str, VLSplit] = field(default_factory=dict)
    description: str = ""

    @property
    def groups(self) -> list[str]:
        return self.train.groups()


# ------------------------------------------------------------------ few-shot
def few_shot(split: VLSplit, shots: int, seed: int, tag: str) -> VLSplit:
    """``shots`` examples per group (all of a group that has fewer), drawn with a local RNG."""
    if shots <= 0:
        raise VlmeftError(f"shots must be positive, got {shots}", where="--shots")
    rng = np.random.default_rng([seed, shots, 7])
    groups = np.array([e.group for e in split.examples])
    picked = []
    for g in sorted(set(groups.tolist())):
        pool = np.flatnonzero(groups == g)
        picked.append(np.sort(rng.choice(pool, size=min(shots, len(pool)), replace=False)))
    idx = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return split.subset(idx, f"{split.key}/{tag}{shots}-seed{seed}")


def few_shot_splits(task: VLTask, shots: int, seed: int) -> tuple[VLSplit, VLSplit]:
    """Train: ``shots`` per group; val: ``min(shots, 4)`` per group (selection only)."""
    return few_shot(task.train, shots, seed, "shots"), few_shot(task.val, min(shots, 4), seed, "val")


def is_full(task: VLTask, shots: int) -> bool:
    """Whether ``shots`` per group takes every training example (full-data training)."""
    counts = [sum(e.group == g for e in task.train.examples) for g in task.groups]
    return shots >= max(counts)


# ------------------------------------------------------------------- scoring
_NUMBERS = {w: str(i) for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                             "nine", "ten"))}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:.']")


def normalise_answer(text: str) -> str:
    """VQA v2's answer normalisation (its ``processPunctuation`` and ``processDigitArticle``,
    without the contraction table): lower case, punctuation removed (a full stop inside a
    number kept), number words as digits, articles dropped, whitespace collapsed."""
    text = text.lower().replace("\n", " ").replace("\t", " ").strip()
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    text = re.sub(r"(?!<=\d)\.(?!\d)", " ", text)
    text = _PUNCT.sub(" ", text)
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(predictions: Sequence[str], examples: Sequence[VLExample]) -> float:
    """Mean over questions of ``min(#references equal to the prediction / min(3, #references), 1)``
    on normalised answers: exact match with a single reference; VQA v2's accuracy with ten."""
    if len(predictions) != len(examples) or not examples:
        raise VlmeftError(f"{len(predictions)} predictions for {len(examples)} questions")
    total = 0.0
    for pred, ex in zip(predictions, examples):
        refs = [normalise_answer(t) for t in ex.targets]
        hits = sum(r == normalise_answer(pred) for r in refs)
        total += min(1.0, hits / min(3, len(refs)))
    return total / len(examples)


def caption_tokens(text: str) -> str:
    """Our stand-in for the COCO evaluation's PTB tokenizer (which needs Java): lower case,
    punctuation dropped, words split on whitespace."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def caption_scores(predictions: Sequence[str], examples: Sequence[VLExample]) -> dict[str, float]:
    """CIDEr-D and BLEU-4 of ``predictions`` against each example's references, computed by
    ``pycocoevalcap`` (its pure-Python Cider and Bleu scorers) on :func:`caption_tokens`."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(examples) or not examples:
        raise VlmeftError(f"{len(predictions)} captions for {len(examples)} images")
    gts = {i: [caption_tokens(t) for t in ex.targets] for i, ex in enumerate(examples)}
    res = {i: [caption_tokens(p) or "<empty>"] for i, p in enumerate(predictions)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {"cider": float(cider), "bleu4": float(bleu[3])}


def most_common_answer(train: VLSplit, test: VLSplit) -> dict[str, float]:
    """The trivial baseline: per question type, the most common training answer (and the
    most common overall), scored on ``test``."""
    from collections import Counter

    overall = Counter(normalise_answer(e.targets[0]) for e in train.examples).most_common(1)[0][0]
    per_type = {g: Counter(normalise_answer(e.targets[0]) for e in train.examples if e.group == g).most_common(1)[0][0]
                for g in train.groups()}
    typed = [per_type.get(e.group, overall) for e in test.examples]
    return {"overall": vqa_accuracy([overall] * len(test), test.examples),
            "per_type": vqa_accuracy(typed, test.examples)}


# ----------------------------------------------------------- the world's tasks
VL_TASKS_VERSION = "vl-v1"
VQA_SIZES = (160, 40, 80)  # per question type: train, val, test (each shifted test set as test)
CAPTION_SIZES = (120, 20, 50)  # per image kind


def _key(task: str, split: str, seed: int) -> str:
    from vlmeft.data.tasks import TASKS_VERSION

    return f"{task}/{split}/seed{seed}/{TASKS_VERSION}/{VL_TASKS_VERSION}"


def _uci_digits(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The digits task's splits (real UCI digits), reused for the digit questions."""
    from vlmeft.data.tasks import get_task

    task = get_task("digits", seed)
    out = {s: (getattr(task, s).images, getattr(task, s).labels) for s in ("train", "val", "test")}
    out["test-checkered"] = (task.shifted["inverted"].images, task.shifted["inverted"].labels)
    out["test-noisy"] = (task.shifted["noisy"].images, task.shifted["noisy"].labels)
    return out


def _render(rng: np.random.Generator, kind: str, shift: str):  # noqa: ANN202 (a world Sample)
    from vlmeft.world.samples import render_digit, render_object, render_scene

    extra = {"checkered": {"background": "checkered"}, "noisy": {"noise": 30.0}}.get(shift, {})
    if kind == "object":
        return render_object(rng, **extra)
    if kind == "scene":
        return render_scene(rng, **extra)
    sample = render_digit(rng, paper=False)
    if shift == "noisy":
        noisy = sample.image.astype(np.float32) + rng.normal(0, 30.0, size=sample.image.shape)
        sample.image = np.clip(noisy, 0, 255).astype(np.uint8)
    return sample


def _world_vqa_split(split: str, seed: int, n: int, uci: dict) -> VLSplit:
    from vlmeft.data.tasks import hash_str
    from vlmeft.world.qa import QUESTION_TYPES, questions

    shift = split.split("-", 1)[1] if split.startswith("test-") else ""
    rng = np.random.default_rng([seed, hash_str("world-vqa"), hash_str(split)])
    images, examples = [], []
    for qtype in QUESTION_TYPES:
        made = 0
        if qtype == "digit":
            imgs, labels = uci[split]
            order = rng.permutation(len(labels))[:n]
            for j in order:
                qa = questions(_digit_facts(int(labels[j])), rng, phrasing=_phrasing(rng), types=("digit",))[0]
                images.append(imgs[j])
                examples.append(VLExample(qa.question, (qa.answer,), qtype, f"{split}:{qtype}:{made}"))
                made += 1
            continue
        while made < n:
            # Count questions mostly about scenes (two or three objects), the others half and half.
            kind = "scene" if rng.random() < (0.8 if qtype == "count" else 0.5) else "object"
            sample = _render(rng, kind, shift)
            qa = questions(sample, rng, phrasing=_phrasing(rng), types=(qtype,))
            if not qa:
                continue
            images.append(sample.image)
            examples.append(VLExample(qa[0].question, (qa[0].answer,), qtype, f"{split}:{qtype}:{made}"))
            made += 1
    return VLSplit(np.stack(images).astype(np.uint8), examples, _key("world-vqa", split, seed))


def _phrasing(rng: np.random.Generator) -> str:
    return "held-out" if rng.random() < 0.5 else "pretrain"


def _digit_facts(digit: int):  # noqa: ANN202
    from vlmeft.world.samples import Sample

    return Sample(np.empty(0, np.uint8), [], [dict(digit=digit, color=None)])


def _world_vqa(seed: int) -> VLTask:
    uci = _uci_digits(seed)
    n_train, n_val, n_test = VQA_SIZES
    split = lambda name, n: _world_vqa_split(name, seed, n, uci)  # noqa: E731
    return VLTask(
        name="world-vqa", kind="vqa",
        train=split("train", n_train), val=split("val", n_val), test=split("test", n_test),
        shifted={"checkered": split("test-checkered", n_test), "noisy": split("test-noisy", n_test)},
        description="Questions about colour, shape, count and position of rendered objects and scenes, and about "
                    "real handwritten digits (UCI), half in wordings pretraining never used; shifts: an unseen "
                    "checkered background (inverted digits), heavy pixel noise.",
    )


def reference_captions(sample) -> tuple[str, ...]:  # noqa: ANN001 (a world Sample)
    """Five references in one complete style: every attribute of the object, both objects
    of a scene, the digit's name."""
    from vlmeft.world.vocab import BACKGROUNDS, DIGIT_WORDS

    objs = sample.objects
    if objs and "digit" in objs[0]:
        d = objs[0]["digit"]
        color = f"{objs[0]['color']} " if objs[0].get("color") else ""
        return (f"the {color}digit {d}", f"a {color}digit {d}", f"a picture of the {color}digit {d}",
                f"the {color}number {d}", f"an image of the {color}digit {DIGIT_WORDS[d]}")
    if len(objs) == 1:
        o = objs[0]
        pos = f" {o['positions'][0]}" if o.get("positions") else ""
        core = f"{o['size']} {o['color']} {o['shape']}{pos}"
        # A held-out background (the checkered shift) is never named: the world's captions never
        # name it, so the shift is in the pixels alone, as the classification tasks' shifts are.
        where = f" on a {o['background']} background" if o.get("background") in BACKGROUNDS else ""
        return (f"a {core}", f"a photo of a {core}", f"a picture of a {core}", f"an image of a {core}",
                f"a {core}{where}")
    names = [f"a {o['color']} {o['shape']}" for o in objs]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    return (listed, f"a picture of {listed}", f"an image of {listed}", f"a photo of {listed}",
            " and ".join(reversed(names)) if len(names) == 2 else f"{names[-1]}, {', '.join(names[:-1])}")


def _world_captions_split(split: str, seed: int, n: int) -> VLSplit:
    from vlmeft.data.tasks import hash_str

    shift = split.split("-", 1)[1] if split.startswith("test-") else ""
    rng = np.random.default_rng([seed, hash_str("world-captions"), hash_str(split)])
    images, examples = [], []
    for kind in ("object", "scene", "digit"):
        for j in range(n):
            sample = _render(rng, kind, shift)
            images.append(sample.image)
            examples.append(VLExample("", reference_captions(sample), kind, f"{split}:{kind}:{j}"))
    return VLSplit(np.stack(images).astype(np.uint8), examples, _key("world-captions", split, seed))


def _world_captions(seed: int) -> VLTask:
    n_train, n_val, n_test = CAPTION_SIZES
    split = lambda name, n: _world_captions_split(name, seed, n)  # noqa: E731
    return VLTask(
        name="world-captions", kind="captions",
        train=split("train", n_train), val=split("val", n_val), test=split("test", n_test),
        shifted={"checkered": split("test-checkered", n_test), "noisy": split("test-noisy", n_test)},
        description="Objects, two- and three-object scenes and coloured digits with five reference captions each "
                    "in one complete style (pretraining captions name random subsets of the attributes); shifts: "
                    "an unseen checkered background, heavy pixel noise.",
    )


_BUILDERS = {"world-vqa": _world_vqa, "world-captions": _world_captions}
PREFIXES = {"vqa-json:": "vqa", "captions-json:": "captions"}


def task_names() -> list[str]:
    return list(_BUILDERS)


def data_form(name: str) -> str | None:
    """``"vqa"`` / ``"captions"`` for a generative task name, else None."""
    if name == "world-vqa" or name.startswith("vqa-json:"):
        return "vqa"
    if name == "world-captions" or name.startswith("captions-json:"):
        return "captions"
    return None


@lru_cache(maxsize=8)
def get_vl_task(name: str, seed: int = 0) -> VLTask:
    """A generative task by name (cached: treat it as read-only)."""
    for prefix in PREFIXES:
        if name.startswith(prefix):
            from vlmeft.data import coco_vl

            path = name[len(prefix):].strip()
            if not path:
                raise VlmeftError(f"expected {prefix}PATH", where="--task")
            return coco_vl.load(prefix.rstrip(":"), Path(path).expanduser(), seed)
    if name not in _BUILDERS:
        raise VlmeftError(f"unknown task '{name}'; generative tasks: {', '.join(_BUILDERS)}, vqa-json:PATH, "
                          "captions-json:PATH", where="--task")
    return _BUILDERS[name](seed)
