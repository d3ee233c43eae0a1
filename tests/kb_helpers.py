"""Helpers for the knowledge-base tests: fixture KBs built in a temporary directory.

A fixture KB takes the shipped categories/tasks/paradigms/survey/topics files and only
the fixture records under tests/data/kb, so these tests do not depend on the shipped
method records.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vlmeft.kb.load import shipped_dir

DATA = Path(__file__).parent / "data" / "kb"
GOOD = DATA / "good" / "methods"
BAD = DATA / "bad"
HOSTILE = DATA / "hostile" / "hostile-chars.yaml"
BASE_FILES = ("categories.yaml", "tasks.yaml", "paradigms.yaml", "survey.yaml", "topics.yaml")


def make_kb(root: Path, *records: Path, with_good: bool = True) -> Path:
    """A KB directory under ``root``: shipped base files + fixture records (+ ``records``)."""
    kb = root / "kb"
    (kb / "methods").mkdir(parents=True)
    for name in BASE_FILES:
        shutil.copy(shipped_dir() / name, kb / name)
    sources = sorted(GOOD.glob("*.yaml")) if with_good else []
    for path in [*sources, *records]:
        shutil.copy(path, kb / "methods" / path.name)
    return kb


def write_record(folder: Path, record_id: str, text: str) -> Path:
    path = folder / f"{record_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def record_text(record_id: str = "extra-record", **overrides: str) -> str:
    """A valid record as YAML text; ``overrides`` replace whole lines (key -> 'key: value')."""
    lines = {
        "id": f"id: {record_id}",
        "title": 'title: "Extra: A Test Record"',
        "authors": "authors: [Ada Example]",
        "venue": "venue: Conference on Tests",
        "venue_type": "venue_type: conference",
        "year": "year: 2023",
        "paradigm": "paradigm: prompt",
        "category": "category: prompt.textual.learnable",
        "modalities": "modalities: [text]",
        "tasks": "tasks: [image-classification]",
        "summary": "summary: A record made by a test.",
        "implementation": "implementation: {id: coop, fidelity: category-reference}",
    }
    for key, line in overrides.items():
        lines[key] = line
    return "\n".join(v for v in lines.values() if v) + "\n"
