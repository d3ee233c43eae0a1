"""Per-class texts written by a language model, in the layout the papers published.

DCLIP (``descriptors/descriptors_*.json`` of sachit-menon/classify_by_description_release),
WaffleCLIP (the same files, ExplainableML/WaffleCLIP) and CuPL (``all_prompts/*.json`` of
sarahpratt/CuPL) all ship one JSON object per dataset: class name -> list of strings
(descriptors such as "pointed ears", or whole sentences)::

    {"Abyssinian": ["black, grey, or brown fur", "pointed ears"], "Bengal": [...]}

:func:`read` checks a file has exactly that shape and says which entry does not
(a one-line :class:`~vlmeft.errors.VlmeftError` naming the file and the entry);
:func:`for_classes` picks the lists of a label set, and :func:`world` does the same
from the embedded world's shipped files (:mod:`vlmeft.world.descriptors`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from vlmeft.errors import VlmeftError

MAX_BYTES = 64 * 1024 * 1024  # ImageNet's CuPL file is about 10 MB


def _clean(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def read(path: str | Path) -> dict[str, list[str]]:
    """The ``{class name: [text, ...]}`` table of a JSON file, checked entry by entry."""
    p = Path(path).expanduser()
    where = str(path)
    if not p.is_file():
        raise VlmeftError("no such file (expected a JSON object: class name -> list of strings)", where=where)
    if p.stat().st_size > MAX_BYTES:
        raise VlmeftError(f"file is larger than {MAX_BYTES // 2**20} MB", where=where)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise VlmeftError("not UTF-8 text", where=where) from None
    except json.JSONDecodeError as err:
        raise VlmeftError(f"not valid JSON: {err.msg}", where=f"{where}:{err.lineno}") from None
    if not isinstance(data, dict):
        raise VlmeftError(f"expected a JSON object (class name -> list of strings), got {type(data).__name__}",
                          where=where)
    for key, texts in data.items():
        if not isinstance(texts, list):
            raise VlmeftError(f"expected a list of strings, got {type(texts).__name__}", where=f"{where} entry '{key}'")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise VlmeftError(f"item {i} is {type(text).__name__}, not a string", where=f"{where} entry '{key}'")
    return data


def for_classes(table: dict[str, list[str]], classnames: Sequence[str], where: str) -> list[list[str]]:
    """The lists of ``classnames``, in order. A class is found under its own name or its
    name with underscores as spaces, in any case; a missing class is an error naming it."""
    cleaned: dict[str, str] = {}
    for key in table:
        cleaned.setdefault(_clean(key), key)
    out = []
    for name in classnames:
        key = name if name in table else cleaned.get(_clean(name))
        if key is None:
            raise VlmeftError(f"no entry for class '{name}' ({len(table)} classes listed, e.g. "
                              f"{', '.join(list(table)[:3])})", where=where)
        out.append(list(table[key]))
    return out


def world(kind: str, classnames: Sequence[str]) -> list[list[str]]:
    """Texts of ``kind`` ("descriptors" or "sentences") for ``classnames`` from the world's
    shipped files; a class no file lists is described by the same generator that wrote
    them (:func:`vlmeft.world.descriptors.generate`), which gives an empty list for a name
    without world words. A label set none of whose classes the world can describe (user
    images) is an error: such a task needs its own file."""
    from vlmeft.world import descriptors as gen

    table: dict[str, list[str]] = {}
    for task in gen.task_classnames():
        table.update(read(gen.shipped_path(task, kind)))
    out = [table[c] if c in table else gen.generate(kind, [c])[c] for c in classnames]
    if classnames and not any(out):
        shown = ", ".join(list(classnames)[:3])
        raise VlmeftError(f"the embedded world's {kind} describe none of these classes ({shown}, ...); "
                          f"pass a JSON file of your own: --set {'prompts' if kind == 'sentences' else 'descriptors'}=PATH",
                          where="--set")
    return out
