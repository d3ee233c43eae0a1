"""Seeded samples of the world: single objects, digits and multi-object scenes (some with one
object circled by a red marker), with captions.

Each ``render_*`` function draws one image from a ``numpy.random.Generator`` and returns a
:class:`Sample` holding the uint8 image, several alternative captions (pretraining picks one
per step) and, for scenes, the object boxes. Keyword arguments pin attributes, which is how
:mod:`vlmeft.data.tasks` builds labelled and domain-shifted sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vlmeft.world import draw
from vlmeft.world.vocab import (
    BACKGROUNDS, COLORS, DIGIT_WORDS, GENERIC_NOUNS, IMAGE_SIZE, PREFIXES, SHAPES, SIZES,
)

N = IMAGE_SIZE
N_CAPTIONS = 3


@dataclass
class Sample:
    image: np.ndarray  # uint8 [H, W, 3]
    captions: list[str]
    objects: list[dict] = field(default_factory=list)  # attributes of each drawn object
    boxes: np.ndarray | None = None  # float [K, 4] x0, y0, x1, y1 (scenes only)
    target: int | None = None  # index of the marked object (marked scenes only)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _object_color(rng: np.random.Generator, name: str, jitter: float, brightness: float) -> np.ndarray:
    c = np.asarray(COLORS[name], dtype=np.float32) + rng.normal(0, jitter, size=3)
    return np.clip(c * brightness, 0, 255)


def _position_phrases(cx: float, cy: float) -> list[str]:
    x, y = cx / N, cy / N
    out = []
    if x < 0.36:
        out.append("on the left")
    if x > 0.64:
        out.append("on the right")
    if y < 0.36:
        out.append("at the top")
    if y > 0.64:
        out.append("at the bottom")
    if 0.4 < x < 0.6 and 0.4 < y < 0.6:
        out.append("in the center")
    return out


def _ending(rng: np.random.Generator) -> str:
    return "." if rng.random() < 0.5 else ""


def object_caption(rng: np.random.Generator, obj: dict) -> str:
    """One random caption naming a subset of a single object's attributes (always its shape)."""
    words = []
    if rng.random() < 0.4:
        words.append(obj["size"])
    # Colour alone often tells captions apart; leaving it out of almost half of them makes
    # the contrastive loss depend on the shape (world-v1 kept it in 80% and learnt shapes poorly).
    has_color = rng.random() < 0.55
    if has_color:
        words.append(obj["color"])
    noun = obj["shape"]
    if has_color and rng.random() < 0.12:
        noun = _pick(rng, GENERIC_NOUNS)  # "a red shape": what the colour task's prompts say
    words.append(noun)
    text = f"{_pick(rng, PREFIXES)} {' '.join(words)}"
    positions = obj.get("positions") or []
    if positions and rng.random() < 0.4:
        text += " " + _pick(rng, positions)
    if obj.get("background") in BACKGROUNDS and rng.random() < 0.35:
        text += f" on a {obj['background']} background"
    return text + _ending(rng)


def render_object(
    rng: np.random.Generator,
    *,
    shape: str | None = None,
    color: str | None = None,
    size: str | None = None,
    background: str | None = None,
    noise: float | None = None,
    brightness: float = 1.0,
    color_jitter: float = 18.0,
) -> Sample:
    """One object on a textured background."""
    shape = shape or _pick(rng, SHAPES)
    color = color or _pick(rng, list(COLORS))
    size = size or _pick(rng, list(SIZES))
    background = background or _pick(rng, BACKGROUNDS)
    r = rng.uniform(*SIZES[size])
    cx, cy = rng.uniform(r + 0.5, N - r - 0.5, size=2)
    angle = 0.0 if shape in ("circle", "ring") else rng.normal(0, 0.3)
    img = draw.background(background, rng) * brightness
    mask = draw.shape_mask(shape, cx, cy, r, angle)
    img = draw.composite(img, mask, _object_color(rng, color, color_jitter, brightness))
    if noise is None:
        noise = float(_pick(rng, (0.0, 0.0, 4.0, 8.0)))
    obj = dict(shape=shape, color=color, size=size, background=background,
               positions=_position_phrases(cx, cy), box=(cx - r, cy - r, cx + r, cy + r))
    caps = [object_caption(rng, obj) for _ in range(N_CAPTIONS)]
    return Sample(draw.finish(img, rng, noise), caps, [obj])


def digit_caption(rng: np.random.Generator, digit: int, color: str | None) -> str:
    d = str(digit) if rng.random() < 0.7 else DIGIT_WORDS[digit]
    forms = ["the digit {d}", "a photo of the digit {d}", "a handwritten digit {d}", "the number {d}",
             "a {d}", "a picture of the number {d}"]
    if color is not None:
        forms += ["a {c} digit {d}", "the {c} number {d}"]
    return _pick(rng, forms).format(d=d, c=color) + _ending(rng)


def render_digit(rng: np.random.Generator, digit: int | None = None, *, paper: bool | None = None,
                 uci: bool | None = None) -> Sample:
    """A digit. ``paper`` style is dark ink on a light page, optionally passed through the UCI
    digits' 8x8 acquisition (``uci``); otherwise a coloured digit on any background."""
    digit = int(rng.integers(10)) if digit is None else digit
    if paper is None:
        paper = bool(rng.random() < 0.6)
    color = None
    if paper:
        if uci is None:
            uci = bool(rng.random() < 0.6)
        # The UCI digits are size-normalised to fill their frame, with thick, dark strokes.
        h = rng.uniform(25, 33) if uci else rng.uniform(16, 30)
        thick = rng.uniform(0.13, 0.28) * h if uci else None
        cx, cy = N / 2 + rng.normal(0, 1.0, size=2)
        mask = draw.digit_mask(digit, rng, height=h, cx=cx, cy=cy, thickness=thick)
        page = rng.uniform(225, 255) if uci else rng.uniform(190, 255)
        ink = rng.uniform(0, 40) if uci else rng.uniform(0, 80)
        gray = page * (1 - mask) + ink * mask
        if uci:
            gray = draw.uci_like(gray)
        elif rng.random() < 0.3:
            gray = gray + rng.normal(0, 10, size=gray.shape)
        img = np.repeat(gray[..., None], 3, axis=2)
        if rng.random() < 0.2:
            img = 255.0 - img  # light ink on dark, as the raw UCI arrays are stored
    else:
        h = rng.uniform(12, 28)
        cx = rng.uniform(h * 0.4, N - h * 0.4)
        cy = rng.uniform(h * 0.5, N - h * 0.5)
        mask = draw.digit_mask(digit, rng, height=h, cx=cx, cy=cy)
        color = _pick(rng, list(COLORS))
        bg = draw.background(_pick(rng, BACKGROUNDS), rng)
        img = draw.composite(bg, mask, _object_color(rng, color, 18.0, 1.0))
    caps = [digit_caption(rng, digit, color) for _ in range(N_CAPTIONS)]
    return Sample(draw.finish(img, rng), caps, [dict(digit=digit, color=color)])


def _place(rng: np.random.Generator, radii: list[float]) -> list[tuple[float, float]] | None:
    """Centres for non-overlapping boxes of the given radii, or None if rejection fails."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(60):
            c = tuple(rng.uniform(r + 0.5, N - r - 0.5, size=2))
            if all(max(abs(c[0] - o[0]), abs(c[1] - o[1])) > r + ro + 1 for o, ro in zip(centres, radii)):
                centres.append(c)
                break
        else:
            return None
    return centres


def _relation(a: dict, b: dict) -> str:
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def scene_caption(rng: np.random.Generator, objs: list[dict]) -> str:
    names = [f"a {o['color']} {o['shape']}" for o in objs]
    if len(objs) == 2:
        if rng.random() < 0.7:
            i, j = (0, 1) if rng.random() < 0.5 else (1, 0)
            text = f"{names[i]} {_relation(objs[i], objs[j])} {names[j]}"
        else:
            text = f"{names[0]} and {names[1]}"
    else:
        order = rng.permutation(len(objs))
        text = ", ".join(names[k] for k in order[:-1]) + f" and {names[order[-1]]}"
    return text + _ending(rng)


def confusable_pairs(rng: np.random.Generator) -> list[tuple[str, str]]:
    """A target (colour, shape) first, then one or two distractors that share its colour
    or its shape, so that naming a single attribute does not single the target out."""
    colors, shapes = list(COLORS), list(SHAPES)
    color, shape = colors[rng.integers(len(colors))], shapes[rng.integers(len(shapes))]
    other_shape = shapes[(shapes.index(shape) + 1 + rng.integers(len(shapes) - 1)) % len(shapes)]
    other_color = colors[(colors.index(color) + 1 + rng.integers(len(colors) - 1)) % len(colors)]
    pairs = [(color, shape), (color, other_shape), (other_color, shape)][: int(rng.integers(2, 4))]
    if len(pairs) == 2 and rng.random() < 0.5:
        pairs[1] = (other_color, shape)
    return pairs


def marked_caption(rng: np.random.Generator, obj: dict) -> str:
    """A caption about the one object a marker points at (the rest of the scene is context)."""
    name = f"{obj['color']} {obj['shape']}"
    form = float(rng.random())
    if form < 0.4:
        text = f"the {name}"
    elif form < 0.6:
        text = f"a {name}"
    else:
        text = f"{_pick(rng, PREFIXES)} {name}"
    return text + _ending(rng)


def _draw_marker(img: np.ndarray, rng: np.random.Generator, obj: dict) -> np.ndarray:
    """A hand-drawn red ellipse around one object: slightly off-centre, of varying size,
    width and shade, the way people circle things in pictures."""
    cx, cy = obj["cx"] + rng.normal(0, 0.6), obj["cy"] + rng.normal(0, 0.6)
    rx, ry = obj["r"] * rng.uniform(1.25, 1.75, size=2)
    mask = draw.ellipse_outline(cx, cy, rx, ry, width=rng.uniform(0.8, 1.6))
    red = np.array([rng.uniform(215, 255), rng.uniform(0, 45), rng.uniform(0, 45)], dtype=np.float32)
    return draw.composite(img, mask, red)


def render_scene(rng: np.random.Generator, n_objects: int | None = None, *,
                 background: str | None = None, noise: float | None = None,
                 pairs: list[tuple[str, str]] | None = None, mark: bool = False) -> Sample:
    """Two or three objects with distinct (colour, shape) pairs (random unless ``pairs``
    pins them); objects come back in random order, boxes in pixels.

    ``mark`` circles one random object with a red marker, and the captions then describe
    that object only (``Sample.target`` says which); without it no extra random draws are
    made, so unmarked scenes stay identical to earlier versions of the world."""
    if pairs is not None:
        if len(set(pairs)) != len(pairs) or not 1 <= len(pairs) <= 4:
            raise ValueError("pairs must be 1 to 4 distinct (colour, shape) pairs")
        n_objects = len(pairs)
    n_objects = n_objects or int(rng.integers(2, 4))
    while True:
        radii = list(rng.uniform(3.5, 7.0, size=n_objects))
        centres = _place(rng, radii)
        if centres is not None:
            break
    if pairs is None:
        chosen: set[tuple[str, str]] = set()
        while len(chosen) < n_objects:
            chosen.add((_pick(rng, list(COLORS)), _pick(rng, SHAPES)))
        pairs = sorted(chosen)
    background = background or _pick(rng, BACKGROUNDS)
    img = draw.background(background, rng)
    objs = []
    for (color, shape), r, (cx, cy) in zip(pairs, radii, centres):
        angle = 0.0 if shape in ("circle", "ring") else rng.normal(0, 0.3)
        img = draw.composite(img, draw.shape_mask(shape, cx, cy, r, angle), _object_color(rng, color, 18.0, 1.0))
        objs.append(dict(color=color, shape=shape, cx=cx, cy=cy, r=r))
    order = rng.permutation(n_objects)
    objs = [objs[k] for k in order]
    boxes = np.array([[o["cx"] - o["r"], o["cy"] - o["r"], o["cx"] + o["r"], o["cy"] + o["r"]] for o in objs],
                     dtype=np.float32)
    target = None
    if mark:
        target = int(rng.integers(n_objects))
        img = _draw_marker(img, rng, objs[target])
    if noise is None:
        noise = float(_pick(rng, (0.0, 0.0, 4.0, 8.0)))
    if target is None:
        caps = [scene_caption(rng, objs) for _ in range(N_CAPTIONS)]
    else:
        caps = [marked_caption(rng, objs[target]) for _ in range(N_CAPTIONS)]
    return Sample(draw.finish(img, rng, noise), caps, objs, boxes, target)


def render_marked_scene(rng: np.random.Generator) -> Sample:
    """A scene with one object circled in red and captioned. Half of them have distractors
    that share the marked object's colour or shape, where only the marker tells which
    object the caption is about."""
    pairs = confusable_pairs(rng) if rng.random() < 0.5 else None
    if pairs is not None:
        pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    return render_scene(rng, pairs=pairs, mark=True)
