"""Question-answer pairs read off the world's own scene facts (closed-vocabulary answers).

Every rendered sample knows what it shows (:class:`vlmeft.world.samples.Sample.objects`):
the shape, colour, size and position of each object, the digit of a digit image, how many
objects a scene holds. :func:`questions` turns those facts into questions of five types,

====================  ==============================  ==================================
type                  asked about                     answers
====================  ==============================  ==================================
``color``             one object (named by shape in   the colour word (10)
                      a scene, where it is unique)
``shape``             one object (named by colour in  the shape word (8)
                      a scene, where it is unique)
``count``             the whole image                 one, two, three
``position``          one object with exactly one     left, right, top, bottom, center
                      position phrase
``digit``             a digit image                   0 ... 9 (numerals)
====================  ==============================  ==================================

Phrasings come in two sets: :data:`PHRASINGS` ``"pretrain"`` (what synthcoca-tiny is
pretrained on) and ``"held-out"`` (new wordings of the same questions, used only by the
downstream ``world-vqa`` task, so zero-shot answering meets questions worded as it has
never seen them, as a VQA dataset's people-written questions are). Every word is in
:func:`qa_words`, so the pretrained model has seen each token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlmeft.world.samples import Sample, _position_phrases
from vlmeft.world.vocab import COLORS, SHAPES

QUESTION_TYPES = ("color", "shape", "count", "position", "digit")
COUNT_WORDS = ("one", "two", "three")
POSITION_WORDS = {"on the left": "left", "on the right": "right", "at the top": "top", "at the bottom": "bottom",
                  "in the center": "center"}

# "{x}" is the object's name: "shape" / "object" for a lone object, its shape or colour in a scene.
PHRASINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "pretrain": {
        "color": ("what color is the {x}?", "what is the color of the {x}?"),
        "shape": ("what shape is the {x}?", "what is the shape of the {x}?"),
        "count": ("how many objects are there?", "how many shapes are in the image?"),
        "position": ("where is the {x}?", "where is the {x} in the image?"),
        "digit": ("what digit is this?", "what number is this?"),
    },
    "held-out": {
        "color": ("which color is the {x}?", "the {x} is what color?"),
        "shape": ("which shape is the {x}?", "the {x} is what shape?"),
        "count": ("how many objects are in the picture?", "what is the number of shapes?"),
        "position": ("which part of the image is the {x} in?", "the {x} is where?"),
        "digit": ("which digit is shown?", "what is the number in the image?"),
    },
}
# Words the questions add to the world's caption vocabulary (vlmeft.world.vocab.caption_words).
QUESTION_WORDS = ("what", "which", "is", "are", "the", "color", "shape", "shapes", "how", "many", "objects", "there",
                  "where", "this", "in", "image", "picture", "of", "number", "digit", "part", "shown", "object")


def qa_words() -> frozenset[str]:
    """Every word a question or an answer may contain (punctuation aside)."""
    answers = set(COLORS) | set(SHAPES) | set(COUNT_WORDS) | set(POSITION_WORDS.values()) | {str(d) for d in range(10)}
    return frozenset(QUESTION_WORDS) | frozenset(answers)


def answer_vocabulary() -> dict[str, tuple[str, ...]]:
    """The closed answer set of each question type."""
    return {"color": tuple(COLORS), "shape": tuple(SHAPES), "count": COUNT_WORDS,
            "position": tuple(dict.fromkeys(POSITION_WORDS.values())), "digit": tuple(str(d) for d in range(10))}


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    type: str


def _kind(sample: Sample) -> str:
    objs = sample.objects
    if objs and "digit" in objs[0]:
        return "digit"
    if sample.target is not None:
        return "marked"  # a caption about one circled object: no questions (the circle has no word)
    return "scene" if len(objs) > 1 or (objs and "cx" in objs[0]) else "object"


def _positions(obj: dict) -> list[str]:
    if "positions" in obj:
        return list(obj["positions"])
    return _position_phrases(obj["cx"], obj["cy"])


def facts_questions(sample: Sample) -> dict[str, list[tuple[str, str]]]:
    """Per question type, ``(slot, answer)`` pairs the sample's facts support (``slot``
    fills a phrasing's ``{x}``). Scenes ask about an object only when the slot names it
    uniquely (its shape, or its colour, is not shared)."""
    kind = _kind(sample)
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in QUESTION_TYPES}
    if kind == "marked":
        return out
    objs = sample.objects
    if kind == "digit":
        obj = objs[0]
        out["digit"].append(("", str(obj["digit"])))
        if obj.get("color"):
            out["color"].append(("digit", obj["color"]))
        return out
    out["count"].append(("", COUNT_WORDS[len(objs) - 1]))
    if kind == "object":
        obj = objs[0]
        out["color"].append((obj["shape"], obj["color"]))
        out["shape"].append(("object", obj["shape"]))
        pos = _positions(obj)
        if len(pos) == 1:
            out["position"].append((obj["shape"], POSITION_WORDS[pos[0]]))
        return out
    shapes = [o["shape"] for o in objs]
    colors = [o["color"] for o in objs]
    for o in objs:
        if shapes.count(o["shape"]) == 1:
            out["color"].append((o["shape"], o["color"]))
        if colors.count(o["color"]) == 1:
            out["shape"].append((f"{o['color']} object", o["shape"]))
        pos = _positions(o)
        if len(pos) == 1 and shapes.count(o["shape"]) == 1:
            out["position"].append((o["shape"], POSITION_WORDS[pos[0]]))
    return out


def questions(sample: Sample, rng: np.random.Generator, phrasing: str = "pretrain",
              types: Sequence[str] = QUESTION_TYPES) -> list[QA]:
    """One question per supported type (a random slot and wording each)."""
    found = facts_questions(sample)
    out = []
    for t in types:
        options = found[t]
        if not options:
            continue
        slot, answer = options[int(rng.integers(len(options)))]
        forms = PHRASINGS[phrasing][t]
        out.append(QA(forms[int(rng.integers(len(forms)))].format(x=slot), answer, t))
    return out

