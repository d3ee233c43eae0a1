"""The committed results were made by the current code: ``results/conformance.json`` and
``results/robustness.json`` store the fingerprint of the code and data that made them,
and it must equal the fingerprint of this tree (regenerate them when it does not)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from vlmeft import registry, robustness
from vlmeft.conformance import report
from vlmeft.conformance.matrix import DEFAULT_BACKBONES
from vlmeft.kb.load import load_kb

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _conformance() -> dict:
    return json.loads((RESULTS / "conformance.json").read_text(encoding="utf-8"))


def test_committed_conformance_matrix_was_made_by_this_code():
    doc = _conformance()
    assert doc["selection"] == {"backbones": list(DEFAULT_BACKBONES), "methods": None}, "the full default matrix"
    assert doc["fingerprint"] == report.fingerprint(load_kb(), DEFAULT_BACKBONES), (
        "results/conformance.json was made by other code or data: run `vlmeft conformance --write results/`")
    assert doc["summary"]["fail"] == 0


def test_committed_robustness_run_was_made_by_this_code():
    doc = json.loads((RESULTS / "robustness.json").read_text(encoding="utf-8"))
    assert doc["fingerprint"] == robustness.fingerprint(doc["fuzz"], doc["seed"]), (
        "results/robustness.json was made by other code or data: run `python -m vlmeft.robustness`")
    assert (doc["fuzz"], doc["seed"]) == (500, 0) and doc["failures"] == 0


def test_conformance_fingerprint_sees_code_records_and_selection(tmp_path, monkeypatch):
    kb = load_kb()
    base = report.fingerprint(kb, DEFAULT_BACKBONES)
    assert report.fingerprint(kb, DEFAULT_BACKBONES[:1]) != base
    assert report.fingerprint(kb, DEFAULT_BACKBONES, ["coop"]) != base
    params = kb.methods["coop"].parameters.model_copy(update={"count": 1})
    view = SimpleNamespace(methods={**kb.methods, "coop": kb.methods["coop"].model_copy(update={"parameters": params})},
                           categories=kb.categories)
    assert report.fingerprint(view, DEFAULT_BACKBONES) != base
    # One changed byte in a method module.
    copy = tmp_path / "methods"
    shutil.copytree(registry.methods_root(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(registry, "methods_root", lambda: copy)
    assert report.fingerprint(kb, DEFAULT_BACKBONES) == base  # the same files elsewhere: the same hash
    module = copy / "prompt_textual_learnable" / "coop.py"
    module.write_text(module.read_text() + "\n")
    assert report.fingerprint(kb, DEFAULT_BACKBONES) != base


def test_robustness_fingerprint_sees_the_corpus_and_settings(tmp_path):
    base = robustness.fingerprint(500, 0)
    assert robustness.fingerprint(499, 0) != base and robustness.fingerprint(500, 1) != base
    corpus = tmp_path / "hostile"
    shutil.copytree(robustness.CORPUS, corpus)
    assert robustness.fingerprint(500, 0, corpus) == base
    first = sorted(corpus.glob("*.yaml"))[0]
    first.write_bytes(first.read_bytes() + b"#")
    assert robustness.fingerprint(500, 0, corpus) != base
