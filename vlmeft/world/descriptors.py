"""Class descriptors for the embedded world, standing in for a language model's answers.

Descriptor methods read what a large language model wrote about each class: DCLIP and
WaffleCLIP a list of short visual *descriptors* per class ("pointed ears"), CuPL a list
of whole *sentences* per class ("A platypus is a small mammal with a bill."). Nothing
here calls a model or a network: this module writes both from the world's own
attribute vocabulary (:mod:`vlmeft.world.vocab`): digit names and the shapes of their
strokes, the corners and sides of each shape, how each colour relates to the others.
It is deterministic, and its output for the embedded tasks ships as JSON in the
published layout, ``{"class name": ["text", ...]}`` (the layout of
``descriptors/descriptors_*.json`` in sachit-menon/classify_by_description_release and
ExplainableML/WaffleCLIP, and of ``all_prompts/*.json`` in sarahpratt/CuPL)::

    vlmeft/world/descriptors/<task>.descriptors.json   (DCLIP, WaffleCLIP)
    vlmeft/world/descriptors/<task>.sentences.json     (CuPL)

for the tasks ``digits``, ``shapes``, ``colors`` and ``color-shape``. Regenerate them
with ``python -m vlmeft.world.descriptors`` (a test checks they are current).

A class name is described word by word: a digit gets its digit texts, each colour word
its colour texts, each shape word its shape texts ("red circle": both). A name with no
world word at all (a probe's "black moon") gets none; the methods then follow the
official code's rule for an empty list (see :mod:`vlmeft.data.descriptors`).

Most texts use only words the pretrained world captions contain (digit names, shapes,
colours, positions), so synthclip-tiny knows them; the stroke, side and corner words
("loop", "sides") are new to it, as they would be to any model for a rare attribute.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlmeft.world.vocab import COLORS, DIGIT_WORDS, SHAPES

HERE = Path(__file__).resolve().parent / "descriptors"
KINDS = ("descriptors", "sentences")  # DCLIP/WaffleCLIP layout, CuPL layout

# The strokes of each digit, in the world's shape and position words where they fit.
DIGIT_STROKES: dict[str, tuple[str, ...]] = {
    "0": ("a ring", "one oval loop"),
    "1": ("a single vertical stroke",),
    "2": ("a curve at the top and a flat base",),
    "3": ("two curves open on the left",),
    "4": ("a triangle at the top", "a cross at the bottom"),
    "5": ("a flat top and a curve at the bottom",),
    "6": ("a ring at the bottom", "a curve at the top"),
    "7": ("a flat top and a diagonal stroke",),
    "8": ("a ring at the top and a ring at the bottom",),
    "9": ("a ring at the top", "a vertical stroke at the bottom"),
}

# Corners and sides of each shape.
SHAPE_FACTS: dict[str, tuple[str, ...]] = {
    "circle": ("a round outline", "no corners"),
    "square": ("four equal sides", "four corners"),
    "triangle": ("three sides", "three corners"),
    "star": ("five points", "ten corners"),
    "cross": ("four arms", "twelve corners"),
    "diamond": ("four corners", "a square turned on its corner"),
    "hexagon": ("six sides", "six corners"),
    "ring": ("a round outline", "a hole in the center"),
}

# How each colour looks, and how it relates to the others (colour words are the world's own).
COLOR_FACTS: dict[str, tuple[str, ...]] = {
    "red": ("a red color", "a warm color"),
    "green": ("a green color", "a color between yellow and blue"),
    "blue": ("a blue color", "a cold color"),
    "yellow": ("a yellow color", "a bright warm color"),
    "orange": ("an orange color", "a color between red and yellow"),
    "purple": ("a purple color", "a color between red and blue"),
    "pink": ("a pink color", "a light red color"),
    "cyan": ("a cyan color", "a light blue color"),
    "brown": ("a brown color", "a dark orange color"),
    "white": ("a white color", "no color at all"),
}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _parts(classname: str) -> tuple[str | None, list[str], list[str]]:
    """``(digit, colours, shapes)`` named by ``classname``'s words."""
    words = classname.replace("_", " ").split()
    digit = next((w for w in words if w in DIGIT_STROKES), None)
    if digit is None:  # "seven" names the digit 7 too
        digit = next((str(DIGIT_WORDS.index(w)) for w in words if w in DIGIT_WORDS), None)
    return digit, [w for w in words if w in COLORS], [w for w in words if w in SHAPES]


def _facts(classname: str) -> list[tuple[str, str]]:
    """``(verb, descriptor)`` pairs: "is" for what the class is (its digit), "has" for
    what it has (strokes, corners, a colour)."""
    digit, colors, shapes = _parts(classname)
    out: list[tuple[str, str]] = []
    if digit is not None:
        word = DIGIT_WORDS[int(digit)]
        out += [("is", f"a handwritten {word}"), ("is", f"the number {word}")]
        out += [("has", s) for s in DIGIT_STROKES[digit]]
    for color in colors:
        out += [("has", f) for f in COLOR_FACTS[color]]
    for shape in shapes:
        out += [("has", f) for f in SHAPE_FACTS[shape]]
    return out


def descriptors(classname: str) -> list[str]:
    """Short visual descriptors of ``classname`` (DCLIP's layout: the method prepends the
    class name, "7, which has a flat top and a diagonal stroke")."""
    return [text for _, text in _facts(classname)]


def _label(classname: str) -> str:
    """How a sentence names the class: "the digit 7", "a red circle", "a red shape"."""
    digit, colors, shapes = _parts(classname)
    if digit is not None:
        return f"the digit {digit}"
    if shapes:
        return f"{_article(classname)} {classname.replace('_', ' ')}"
    if colors:
        return f"{_article(colors[0])} {' '.join(colors)} shape"
    return classname.replace("_", " ")


def sentences(classname: str) -> list[str]:
    """Whole sentences about ``classname`` (CuPL's layout: used as they are), one per
    descriptor: "the digit 7 is a handwritten seven.", "a square has four corners."."""
    label = _label(classname)
    return [f"{label} {verb} {text}." for verb, text in _facts(classname)]


def task_classnames() -> dict[str, list[str]]:
    """The class names of each embedded classification task."""
    from vlmeft.data.tasks import COLOR_NAMES, COLOR_SHAPE_CLASSES, DIGIT_CLASSES

    return {"digits": DIGIT_CLASSES, "shapes": list(SHAPES), "colors": COLOR_NAMES, "color-shape": COLOR_SHAPE_CLASSES}


def generate(kind: str, classnames: list[str]) -> dict[str, list[str]]:
    """``{class name: texts}`` of ``kind`` ("descriptors" or "sentences")."""
    describe = descriptors if kind == "descriptors" else sentences
    return {c: describe(c) for c in classnames}


def shipped_path(task: str, kind: str) -> Path:
    return HERE / f"{task}.{kind}.json"


def render(kind: str, classnames: list[str]) -> str:
    """The JSON text of one shipped file (as the official repositories write theirs)."""
    return json.dumps(generate(kind, classnames), indent=4) + "\n"


def write(out_dir: Path = HERE) -> list[Path]:
    """Write every shipped file under ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task, names in task_classnames().items():
        for kind in KINDS:
            path = out_dir / f"{task}.{kind}.json"
            path.write_text(render(kind, names), encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":  # python -m vlmeft.world.descriptors
    for p in write():
        print(p)
