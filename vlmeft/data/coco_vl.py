"""A user's own captioning and VQA data, in the COCO formats.

``captions-json:PATH``: a COCO captions annotation file (``captions_train2014.json``'s layout)::

    {"images": [{"id": 1, "file_name": "a.jpg", "split": "train"}, ...],
     "annotations": [{"image_id": 1, "caption": "a dog on a sofa"}, ...]}

``vqa-json:PATH``: a folder with VQA v2's two files, ``questions.json``
(``{"questions": [{"question_id", "image_id", "question"}]}``) and ``annotations.json``
(``{"annotations": [{"question_id", "image_id", "answers": [{"answer": ...}], "answer_type"}]}``),
plus ``images.json`` mapping image ids to files (``{"images": [{"id", "file_name"}]}``, the
captions layout) — or PATH is one JSON file holding the three keys ``questions``,
``annotations`` and ``images``.

Image files are found relative to the JSON file's folder. The optional ``split`` of an image
(``train`` / ``val`` / ``test``) places its examples; images without one are split 70/10/20
by a hash of their id (stable across runs). The few-shot group is VQA's ``answer_type``
("yes/no", "number", "other"; ``question_type`` when there is none) or, for captions,
the image's optional ``group`` field (default ``all``). Every malformed entry is a one-line
error naming the file and the entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmeft.data.vl import VLExample, VLSplit, VLTask
from vlmeft.errors import VlmeftError

MAX_JSON_BYTES = 2 << 30
SPLITS = ("train", "val", "test")


def _read(path: Path) -> Any:
    if not path.is_file():
        raise VlmeftError("file does not exist", where=str(path))
    if path.stat().st_size > MAX_JSON_BYTES:
        raise VlmeftError("file is larger than 2 GiB", where=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise VlmeftError(f"not valid JSON ({err})", where=str(path)) from None


def _field(entry: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(entry, dict):
        raise VlmeftError(f"expected an object, got {type(entry).__name__}", where=where)
    if key not in entry:
        raise VlmeftError(f"'{key}' is missing", where=where)
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise VlmeftError(f"'{key}' must be a {want}, got {value!r:.40}", where=where)
    if isinstance(value, str) and not value.strip():
        raise VlmeftError(f"'{key}' is empty", where=where)
    return value


def _list(doc: Any, key: str, file: Path) -> list:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise VlmeftError(f"expected a top-level '{key}' list", where=str(file))
    return doc[key]


def _hash_split(image_id: Any) -> str:
    from vlmeft.data.tasks import hash_str

    u = hash_str(str(image_id)) % 10
    return "train" if u < 7 else "val" if u < 8 else "test"


def _images(entries: list, file: Path) -> dict[Any, tuple[Path, str, str]]:
    """image id -> (file path, split, group)."""
    out: dict[Any, tuple[Path, str, str]] = {}
    for n, entry in enumerate(entries):
        where = f"{file}: images[{n}]"
        image_id = _field(entry, "id", (int, str), where)
        name = _field(entry, "file_name", str, where)
        split = entry.get("split") or _hash_split(image_id)
        if split == "restval":  # Karpathy's split files
            split = "train"
        if split not in SPLITS:
            raise VlmeftError(f"'split' must be one of {', '.join(SPLITS)}, got {split!r:.30}", where=where)
        if image_id in out:
            raise VlmeftError(f"image id {image_id!r} appears twice", where=where)
        path = Path(name) if Path(name).is_absolute() else file.parent / name
        out[image_id] = (path, split, str(entry.get("group") or "all"))
    if not out:
        raise VlmeftError("no images listed", where=str(file))
    return out


def _task(name: str, kind: str, per_split: dict[str, list[tuple[Path, VLExample]]], source: Path) -> VLTask:
    splits = {}
    for split in SPLITS:
        items = per_split[split]
        if not items:
            raise VlmeftError(f"no {split} examples (give images a 'split' field, or add more images)",
                              where=str(source))
        splits[split] = VLSplit([p for p, _ in items], [e for _, e in items], f"{name}/{split}/{_stamp(source)}")
    return VLTask(name, kind, splits["train"], splits["val"], splits["test"],
                  description=f"{'VQA' if kind == 'vqa' else 'captioning'} data read from {source}")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{int(st.st_mtime)}"


def load_captions(path: Path, seed: int = 0) -> VLTask:  # noqa: ARG001 (the split is the file's)
    doc = _read(path)
    images = _images(_list(doc, "images", path), path)
    refs: dict[Any, list[str]] = {}
    for n, ann in enumerate(_list(doc, "annotations", path)):
        where = f"{path}: annotations[{n}]"
        image_id = _field(ann, "image_id", (int, str), where)
        if image_id not in images:
            raise VlmeftError(f"image_id {image_id!r} is not among the listed images", where=where)
        refs.setdefault(image_id, []).append(" ".join(_field(ann, "caption", str, where).split()))
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for image_id, (file, split, group) in images.items():
        if image_id in refs:  # an image without captions cannot be scored
            per_split[split].append((file, VLExample("", tuple(refs[image_id]), group, f"image {image_id}")))
    return _task(f"captions-json:{path}", "captions", per_split, path)


def load_vqa(path: Path, seed: int = 0) -> VLTask:  # noqa: ARG001
    if path.is_dir():
        files = {k: path / f"{k}.json" for k in ("questions", "annotations", "images")}
        docs = {k: _read(f) for k, f in files.items()}
    else:
        doc = _read(path)
        files = {k: path for k in ("questions", "annotations", "images")}
        docs = {k: doc for k in files}
    images = _images(_list(docs["images"], "images", files["images"]), files["images"])
    questions: dict[Any, tuple[Any, str]] = {}
    for n, q in enumerate(_list(docs["questions"], "questions", files["questions"])):
        where = f"{files['questions']}: questions[{n}]"
        qid = _field(q, "question_id", (int, str), where)
        image_id = _field(q, "image_id", (int, str), where)
        if image_id not in images:
            raise VlmeftError(f"image_id {image_id!r} is not among the listed images", where=where)
        if qid in questions:
            raise VlmeftError(f"question_id {qid!r} appears twice", where=where)
        questions[qid] = (image_id, " ".join(_field(q, "question", str, where).split()))
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for n, ann in enumerate(_list(docs["annotations"], "annotations", files["annotations"])):
        where = f"{files['annotations']}: annotations[{n}]"
        qid = _field(ann, "question_id", (int, str), where)
        if qid not in questions:
            raise VlmeftError(f"question_id {qid!r} has no question", where=where)
        answers = _field(ann, "answers", list, where)
        texts = tuple(" ".join(_field(a, "answer", str, f"{where}: answers[{k}]").split())
                      for k, a in enumerate(answers))
        if not texts:
            raise VlmeftError("'answers' is empty", where=where)
        group = ann.get("answer_type") or ann.get("question_type") or "all"
        image_id, question = questions[qid]
        file, split, _ = images[image_id]
        per_split[split].append((file, VLExample(question, texts, str(group), f"question {qid}")))
    return _task(f"vqa-json:{path}", "vqa", per_split, path)


def load(kind: str, path: Path, seed: int = 0) -> VLTask:
    """``kind`` is ``"vqa-json"`` or ``"captions-json"``."""
    return load_vqa(path, seed) if kind == "vqa-json" else load_captions(path, seed)
