"""The knowledge base as a citable, versioned work: node citations, --with-entry, the
release metadata CITATION.cff repeats, `vlmeft stats`, and the reported-results accessor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pybtex.database
import pybtex.errors
import pytest

from vlmeft.cli import main
from vlmeft.errors import VlmeftError
from vlmeft.kb import cite
from vlmeft.kb.load import load_kb, safe_load_yaml
from vlmeft.kb.results import all_reported, boards, reported
from vlmeft.kb.stats import coverage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kb():
    return load_kb()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_citation_cff_repeats_the_release(kb):
    cff = safe_load_yaml(REPO / "CITATION.cff")
    assert str(cff["version"]) == kb.meta.version
    assert str(cff["date-released"]) == kb.meta.released.isoformat()


@pytest.mark.parametrize("node_id", ["prompt", "prompt.multimodal", "prompt.multimodal.coupled", "adapter.unimodal"])
def test_any_node_is_citable_in_every_format(kb, capsys, node_id):
    rc, bib, _ = run(capsys, "cite", node_id)
    assert rc == 0
    pybtex.errors.set_strict_mode(True)
    entries = pybtex.database.parse_string(bib, "bibtex").entries
    node = kb.categories.node(node_id)
    assert list(entries) == [f"vlmeft:{node_id}", kb.survey.id]  # the node, then the survey it comes from
    fields = entries[f"vlmeft:{node_id}"].fields
    assert node.name in fields["title"] and fields["version"] == kb.meta.version
    assert kb.survey.doi in fields["note"] and f"generated/taxonomy/{node_id}/" in fields["howpublished"]
    rc, csl, _ = run(capsys, "cite", node_id, "--format", "csljson")
    items = json.loads(csl)
    assert rc == 0 and items[0]["type"] == "entry" and items[0]["version"] == kb.meta.version
    assert items[0]["issued"]["date-parts"][0] == [kb.meta.released.year, kb.meta.released.month, kb.meta.released.day]
    assert items[1]["DOI"] == kb.survey.doi
    rc, text, _ = run(capsys, "cite", node_id, "--format", "text")
    assert rc == 0 and node.name in text and kb.meta.version in text and "Xing" in text


def test_a_node_citation_uses_the_stable_url_once_there_is_one(kb):
    published = kb.meta.model_copy(update={"url": "https://vlmeft.example.org"})
    entry = cite.node_entry(type(kb)(**{**kb.__dict__, "meta": published}), "prompt.visual")
    assert entry.url == "https://vlmeft.example.org/generated/taxonomy/prompt.visual/"
    assert f"url = {{{entry.url}}}" in cite.bibtex([entry])


def test_with_entry_cites_the_kb_entry_after_the_paper(kb, capsys):
    rc, bib, _ = run(capsys, "cite", "coop", "maple", "--with-entry")
    assert rc == 0
    keys = list(pybtex.database.parse_string(bib, "bibtex").entries)
    assert keys == ["coop", "vlmeft:coop", "maple", "vlmeft:maple"]
    rc, bib, _ = run(capsys, "cite", "coop")
    assert list(pybtex.database.parse_string(bib, "bibtex").entries) == ["coop"]


def test_all_with_entry_parses_strictly(kb):
    from vlmeft.kb.query import cite_scope

    items = cite_scope(kb, everything=True, with_entry=True)
    pybtex.errors.set_strict_mode(True)
    bib = pybtex.database.parse_string(cite.bibtex(items), "bibtex")
    assert len(bib.entries) == 2 + 2 * len(kb.methods)  # survey, the KB itself, each record and its entry


def test_a_kb_without_release_metadata_cannot_cite_its_nodes(kb):
    bare = type(kb)(**{**kb.__dict__, "meta": None})
    with pytest.raises(VlmeftError, match="no kb.yaml"):
        cite.node_entry(bare, "prompt")


def test_stats_counts_match_the_records(kb, capsys):
    c = coverage(kb)
    assert c.records == len(kb.methods) == sum(c.per_leaf_year.values())
    assert sum(c.own.values()) + sum(c.reference.values()) == c.records
    assert sum(n for _, n in c.per_venue) == c.records
    for leaf in kb.categories.leaf_ids:
        assert c.leaf_total(leaf) == len([r for r in kb.methods.values() if r.category == leaf])
    rc, out, _ = run(capsys, "stats")
    assert rc == 0 and out.startswith(f"{len(kb.methods)} records")
    coop_row = next(line for line in out.splitlines() if line.startswith("prompt.textual.learnable"))
    assert coop_row.split()[-3] == str(c.leaf_total("prompt.textual.learnable"))
    rc, out, _ = run(capsys, "stats", "--format", "json")
    assert rc == 0 and json.loads(out)["records"] == len(kb.methods)


def test_stats_and_cite_stay_torch_free():
    code = ("import sys; from vlmeft.cli import main; main(['stats']); main(['cite', 'prompt']); "
            "main(['changelog']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_reported_accessor(kb):
    (hm,) = reported(kb, "coop", "avg-11", "base-to-novel", "hm", "vit-b-16")
    assert hm.value == 71.66 and hm.source.startswith("https://") and hm.shots == 16
    ivlp = reported(kb, "ivlp", "avg-11", "base-to-novel", "hm", "vit-b-16")
    assert {r.setting for r in ivlp} == {"5 epochs, 2+2 context", "20 epochs, 4+4 context"}
    assert reported(kb, "coop", "imagenet", "few-shot", "accuracy", "rn50", shots=16)[0].value == 63.33
    assert reported(kb, "coop", "imagenet", "few-shot", "accuracy", "rn50", shots=1) == []
    assert reported(kb, "CoOp", "avg-11", "base-to-novel", "hm", "vit-b-16")  # aliases resolve
    with pytest.raises(VlmeftError, match="unknown dataset 'imagenet1k'"):
        reported(kb, "coop", "imagenet1k", "few-shot", "accuracy", "rn50")
    with pytest.raises(VlmeftError, match="unknown method"):
        reported(kb, "no-such-method", "imagenet", "few-shot", "accuracy", "rn50")


def test_boards_keep_every_reported_number_once(kb):
    grouped = boards(kb)
    assert sum(len(v) for v in grouped.values()) == len(list(all_reported(kb)))
    b2n = grouped[("base-to-novel", "avg-11", "vit-b-16", None)]
    assert len({r.method for r in b2n}) >= 15


def test_vocabulary_dataset_ids_are_coops_config_names(kb):
    coop_11 = [d.id for d in kb.vocab.datasets.values() if d.group == "coop-11"]
    assert coop_11 == ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                       "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
    assert kb.vocab.datasets["avg-11"].members == coop_11
    assert kb.vocab.backbone_for_open_clip("ViT-B-16") == "vit-b-16"
