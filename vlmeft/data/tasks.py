"""The named embedded tasks: real UCI digits, synthetic classification with domain shifts,
and multi-object scenes for retrieval and referring-expression grounding.

Every class name and template uses only words of the world's closed vocabulary
(:mod:`vlmeft.world.vocab`), so synthclip-tiny saw each of their tokens in pretraining.
Tasks are deterministic functions of ``(name, seed)``; split keys carry the task, split,
seed and generator version, so cached features never outlive a change to the data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from vlmeft.data.types import ClassificationTask, GroundingSample, SceneTask, Split
from vlmeft.errors import VlmeftError
from vlmeft.world import draw
from vlmeft.world.samples import confusable_pairs, render_object, render_scene
from vlmeft.world.vocab import COLORS, GENERATOR_VERSION, IMAGE_SIZE, PREFIXES, SHAPES

if TYPE_CHECKING:  # pragma: no cover
    from vlmeft.data.vl import VLTask

TASKS_VERSION = f"{GENERATOR_VERSION}.tasks-v3"

DIGIT_CLASSES = [str(d) for d in range(10)]
DIGIT_TEMPLATES = ["the digit {}.", "a photo of the digit {}.", "a handwritten digit {}.", "the number {}."]
SHAPE_TEMPLATES = [f"{p} {{}}." for p in PREFIXES]
COLOR_TEMPLATES = ["a {} shape.", "a photo of a {} shape.", "a {} object.", "a picture of a {} object."]
COLOR_SHAPE_COLORS = ("red", "green", "blue", "yellow", "purple", "pink")
COLOR_SHAPE_SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SCENE_TEMPLATES = ["a photo of a {}.", "a {}.", "a picture of a {}."]

# Per class: train, val and test images of the synthetic tasks (shifted sets match test).
SYNTH_SIZES = {"shapes": (32, 8, 50), "colors": (32, 8, 50), "color-shape": (24, 8, 20)}


def _key(task: str, split: str, seed: int) -> str:
    return f"{task}/{split}/seed{seed}/{TASKS_VERSION}"


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return np.stack(images).astype(np.uint8) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


# ---------------------------------------------------------------- UCI digits
def uci_to_images(raw: np.ndarray, *, invert: bool = False) -> np.ndarray:
    """UCI digit arrays ``[N, 8, 8]`` (ink 0..16) -> uint8 RGB ``[N, S, S, 3]``: dark ink on a
    white page (as the world renders paper digits), upsampled bilinearly to the world's size."""
    out = np.empty((len(raw), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, grid in enumerate(raw):
        ink = draw.upsample_grid(grid.astype(np.float32) / 16.0 * 255.0)
        gray = ink if invert else 255.0 - ink
        out[i] = np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]
    return out


def _digits(seed: int) -> ClassificationTask:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    raw, y = data.images, data.target.astype(np.int64)
    idx = np.arange(len(y))
    # A fixed stratified split: 40% train, 10% val, 50% test.
    rest, test = train_test_split(idx, test_size=0.5, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=0.2, stratify=y[rest], random_state=seed)
    clean = uci_to_images(raw)
    inverted = uci_to_images(raw[test], invert=True)
    rng = np.random.default_rng([seed, 77])
    noisy = np.clip(clean[test].astype(np.float32) + rng.normal(0, 45, size=clean[test].shape[:3])[..., None],
                    0, 255).astype(np.uint8)

    def split(name: str, ids: np.ndarray, images: np.ndarray | None = None) -> Split:
        return Split(clean[ids] if images is None else images, y[ids], _key("digits", name, seed))

    return ClassificationTask(
        name="digits",
        classnames=DIGIT_CLASSES,
        templates=DIGIT_TEMPLATES,
        train=split("train", train),
        val=split("val", val),
        test=split("test", test),
        shifted={"inverted": split("test-inverted", test, inverted), "noisy": split("test-noisy", test, noisy)},
        description="Real handwritten digits (scikit-learn's bundled UCI digits, 8x8 upsampled), "
                    "zero-shot from rendered digits; shifts: inverted polarity, heavy pixel noise.",
    )


# ---------------------------------------------------------------- synthetic classification
def _render_split(task: str, split: str, seed: int, n_per_class: int, n_classes: int,
                  draw_one: Callable[[np.random.Generator, int], np.ndarray]) -> Split:
    rng = np.random.default_rng([seed, abs(hash_str(task)) % (2**31), abs(hash_str(split)) % (2**31)])
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    rng.shuffle(labels)
    return Split(_stack([draw_one(rng, int(c)) for c in labels]), labels, _key(task, split, seed))


def hash_str(s: str) -> int:
    """A stable (process-independent) 31-bit hash of a string, for seeding."""
    h = 2166136261
    for ch in s.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


def _synthetic(name: str, seed: int, classnames: list[str], templates: list[str],
               attrs: Callable[[int], dict], shifts: dict[str, dict], description: str) -> ClassificationTask:
    n_train, n_val, n_test = SYNTH_SIZES[name]
    c = len(classnames)

    def maker(extra: dict) -> Callable[[np.random.Generator, int], np.ndarray]:
        return lambda rng, label: render_object(rng, **{**attrs(label), **extra}).image

    base = maker({})
    return ClassificationTask(
        name=name,
        classnames=classnames,
        templates=templates,
        train=_render_split(name, "train", seed, n_train, c, base),
        val=_render_split(name, "val", seed, n_val, c, base),
        test=_render_split(name, "test", seed, n_test, c, base),
        shifted={k: _render_split(name, f"test-{k}", seed, n_test, c, maker(v)) for k, v in shifts.items()},
        description=description,
    )


def _shapes(seed: int) -> ClassificationTask:
    return _synthetic(
        "shapes", seed, list(SHAPES), SHAPE_TEMPLATES, lambda y: {"shape": SHAPES[y]},
        {"checkered": {"background": "checkered"}, "small-noisy": {"size": "small", "noise": 30.0}},
        "Name the shape (8 classes) of one object of any colour, size and background; shifts: an "
        "unseen checkered background, small objects under heavy noise.",
    )


COLOR_NAMES = list(COLORS)


def _colors(seed: int) -> ClassificationTask:
    # Clean renders are named almost perfectly zero-shot, so every split varies the hue
    # strongly (per-channel jitter of 40) and adds pixel noise: neighbouring colours overlap.
    def attrs(y: int) -> dict:
        return {"color": COLOR_NAMES[y], "color_jitter": 40.0, "noise": 8.0}

    return _synthetic(
        "colors", seed, COLOR_NAMES, COLOR_TEMPLATES, attrs,
        {"dim": {"brightness": 0.55, "noise": 12.0}, "checkered": {"background": "checkered", "size": "small"}},
        "Name the colour (10 classes) of one object under strong hue variation; shifts: dim lighting, "
        "small objects on an unseen checkered background.",
    )


COLOR_SHAPE_CLASSES = [f"{c} {s}" for c in COLOR_SHAPE_COLORS for s in COLOR_SHAPE_SHAPES]


def _color_shape(seed: int) -> ClassificationTask:
    def attrs(y: int) -> dict:
        color, shape = COLOR_SHAPE_CLASSES[y].split(" ")
        return {"color": color, "shape": shape}

    return _synthetic(
        "color-shape", seed, COLOR_SHAPE_CLASSES, SHAPE_TEMPLATES, attrs,
        {"checkered": {"background": "checkered"}, "small": {"size": "small", "noise": 12.0}},
        "Colour-and-shape combinations (36 classes; suited to base-to-novel splits); shifts: an unseen "
        "checkered background, small noisy objects.",
    )


# ---------------------------------------------------------------- scenes
def _scenes(seed: int, n: int = 300) -> SceneTask:
    rng = np.random.default_rng([seed, hash_str("scenes")])
    images, captions = [], []
    for _ in range(n):
        s = render_scene(rng)
        images.append(s.image)
        captions.append(s.captions[0])
    grounding = []
    for _ in range(n):
        # Distractors share the target's colour or its shape, so naming one attribute is not enough.
        pairs = confusable_pairs(rng)
        color, shape = pairs[0]
        s = render_scene(rng, pairs=pairs)
        t = next(i for i, o in enumerate(s.objects) if (o["color"], o["shape"]) == (color, shape))
        grounding.append(GroundingSample(s.image, s.boxes, f"the {color} {shape}", t))
    return SceneTask(
        name="scenes", images=_stack(images), captions=captions, grounding=grounding,
        description="Two or three objects per image: image-text retrieval over 300 scene captions "
                    "(R@1, R@5) and 300 referring expressions naming one box among distractors that share its "
                    "colour or its shape.",
    )


_CLASSIFICATION_BUILDERS: dict[str, Callable[[int], ClassificationTask]] = {
    "digits": _digits,
    "shapes": _shapes,
    "colors": _colors,
    "color-shape": _color_shape,
}
_SCENE_BUILDERS: dict[str, Callable[[int], SceneTask]] = {"scenes": _scenes}
_BUILDERS: dict[str, Callable[[int], ClassificationTask | SceneTask]] = {**_CLASSIFICATION_BUILDERS, **_SCENE_BUILDERS}


def task_names() -> list[str]:
    from vlmeft.data import vl

    return [*_BUILDERS, *vl.task_names()]


# How messages name a task of each data form (see task_kind).
DATA_NOUNS = {"classification": "classification task", "scenes": "scene task", "vqa": "VQA task",
              "captions": "captioning task"}


def task_kind(name: str) -> str:
    """The task's data form, known without building it: 'classification', 'scenes'
    (retrieval and grounding), 'vqa' or 'captions' (:mod:`vlmeft.data.vl`)."""
    from vlmeft.data import vl

    return vl.data_form(name) or ("scenes" if name in _SCENE_BUILDERS else "classification")


def is_task_name(name: str) -> bool:
    """A known task name: an embedded task, ``imagefolder:PATH``, ``coop:DATASET``,
    ``vqa-json:PATH`` or ``captions-json:PATH``."""
    from vlmeft.data import vl

    if name in _BUILDERS or (name.startswith("imagefolder:") and name.split(":", 1)[1].strip()):
        return True
    if name in vl.task_names() or any(name.startswith(p) and name[len(p):].strip() for p in vl.PREFIXES):
        return True
    if name.startswith("coop:"):
        from vlmeft.data import coop

        return name.split(":", 1)[1] in coop.dataset_ids()
    return False


def get_task(name: str, seed: int = 0) -> ClassificationTask | SceneTask | VLTask:
    """A named task. Cached: treat the returned arrays as read-only. ``coop:DATASET``
    reads the dataset under the data root (``VLMEFT_DATA``; :mod:`vlmeft.data.coop`)."""
    if name.startswith("coop:"):
        from vlmeft.data import coop

        return coop.load_task(name)
    from vlmeft.data import vl

    if vl.data_form(name):  # VQA and captioning (world-vqa, vqa-json:PATH, ...)
        return vl.get_vl_task(name, seed)
    return _get_task(name, seed)


@lru_cache(maxsize=16)
def _get_task(name: str, seed: int = 0) -> ClassificationTask | SceneTask:
    if name.startswith("imagefolder:"):  # user images on disk (vlmeft.data.imagefolder)
        from vlmeft.data.imagefolder import load_imagefolder_task

        return load_imagefolder_task(name.split(":", 1)[1], seed)
    if name not in _BUILDERS:
        raise VlmeftError(f"unknown task '{name}'; available: {', '.join(task_names())}", where="--task")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise VlmeftError(f"seed must be a non-negative integer, got {seed!r}", where="--seed")
    return _BUILDERS[name](seed)


get_task.__wrapped__ = _get_task.__wrapped__  # the uncached builder, as on an lru_cache'd function


# ---------------------------------------------------------------- metrics
def retrieval_metrics(sim: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k in both directions for a square similarity matrix ``sim[i, j]`` (image i,
    caption j) whose matching pairs lie on the diagonal. Values are percentages."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise VlmeftError(f"expected a square similarity matrix, got shape {list(sim.shape)}", where="sim")
    n = sim.shape[0]
    diag = sim[np.arange(n), np.arange(n)]
    # Rank = number of candidates strictly better than the true one (ties count in its favour).
    rank_i2t = (sim > diag[:, None]).sum(1)
    rank_t2i = (sim > diag[None, :]).sum(0)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float(100.0 * (rank_i2t < k).mean())
        out[f"t2i_R@{k}"] = float(100.0 * (rank_t2i < k).mean())
    return out


def crop_boxes(image: np.ndarray, boxes: np.ndarray, margin: float = 2.0, size: int = IMAGE_SIZE) -> np.ndarray:
    """Crops around each box (with a margin), resized to ``size``: uint8 ``[K, size, size, 3]``,
    for crop-and-compare grounding."""
    from PIL import Image

    h, w = image.shape[:2]
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64):
        l, t = max(0, int(np.floor(x0 - margin))), max(0, int(np.floor(y0 - margin)))
        r, b = min(w, int(np.ceil(x1 + margin))), min(h, int(np.ceil(y1 + margin)))
        crop = Image.fromarray(image[t:b, l:r]).resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(crop, dtype=np.uint8))
    return np.stack(out)


def grounding_accuracy(predictions: list[int] | np.ndarray, samples: list[GroundingSample]) -> float:
    """Percentage of samples whose predicted box index is the target."""
    if len(predictions) != len(samples):
        raise VlmeftError(f"{len(predictions)} predictions for {len(samples)} samples", where="predictions")
    if not samples:
        return 0.0
    return float(100.0 * np.mean([int(p) == s.target for p, s in zip(predictions, samples)]))
