"""The knowledge base that ships with the package: it validates, the taxonomy has the
survey's shape, every leaf has members, and every record cites cleanly."""

from __future__ import annotations

import pybtex.database
import pybtex.errors
import pytest
from pybtex.plugin import find_plugin

from vlmeft import registry
from vlmeft.cli import main
from vlmeft.kb import cite
from vlmeft.kb.counts import member_count
from vlmeft.kb.load import load_kb


@pytest.fixture(scope="module")
def kb():
    return load_kb()


def test_shipped_kb_validates(capsys):
    assert main(["validate"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("ok: ")


def test_taxonomy_shape_matches_the_survey_abstract(kb):
    tree = kb.categories
    prompt, adapter = tree.node("prompt"), tree.node("adapter")
    assert [f.id for f in tree.families] == ["prompt", "adapter"]
    assert len(prompt.types) == 3 and sum(len(t.subtypes) for t in prompt.types) == 7
    assert len(adapter.types) == 2 and all(not t.subtypes for t in adapter.types)
    assert len(tree.leaves) == 9
    assert set(tree.leaf_ids) == set(registry.CATEGORY_REFERENCE)


def test_provenance_says_reconstruction(kb):
    refs = kb.categories.references
    assert (refs["gu2023"].arxiv, refs["xiao2025"].arxiv, refs["zhang2024"].arxiv) == ("2307.12980", "2510.13219", "2304.00685")
    assert refs["xing2024"].doi == kb.survey.doi
    for node_id in kb.categories.ids:
        prov = kb.categories.node(node_id).provenance
        assert prov.survey and prov.reconstruction and prov.supported_by
    for leaf in kb.leaves:
        assert "not name" in leaf.provenance.survey or "no role" in leaf.provenance.survey or "a role" in leaf.provenance.survey


def test_every_leaf_has_three_members(kb):
    for leaf in kb.leaves:
        assert len(kb.members(leaf.id)) >= 3, leaf.id


def test_tree_command_counts(kb, capsys):
    assert main(["tree"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = {line.split()[0]: line.rsplit("(", 1)[1].rstrip(")") for line in lines[1:]
              if not line.startswith("uncategorised")}
    shown = {k: int(v.split()[0]) for k, v in labels.items()}  # the primary count leads the label
    assert len([k for k in shown if k.count(".") == 1 and k.startswith("prompt.")]) == 3
    assert len([k for k in shown if k.count(".") == 2]) == 7
    assert len([k for k in shown if k.startswith("adapter.")]) == 2
    for node_id, count in shown.items():
        assert count == len(kb.members(node_id))
        assert labels[node_id] == member_count(kb, node_id).label  # the site labels its counts the same way
    assert shown["prompt"] == sum(shown[t.id] for t in kb.categories.node("prompt").types)
    if any(r.secondary_categories for r in kb.methods.values()):  # e.g. CoPrompt: also a unimodal adapter
        assert any(v.endswith(" secondary") for v in labels.values()), labels


def test_every_registered_method_has_its_record(kb):
    for name in registry.names():
        record = kb.methods.get(name)
        assert record is not None, name
        assert record.implementation is not None and record.implementation.id == name
        assert record.implementation.fidelity in ("faithful", "simplified")


def test_cite_coop_parses_strictly(capsys):
    assert main(["cite", "coop", "--format", "bibtex"]) == 0
    pybtex.errors.set_strict_mode(True)
    bib = pybtex.database.parse_string(capsys.readouterr().out, "bibtex")
    entry = bib.entries["coop"]
    assert entry.type == "article" and entry.fields["eprint"] == "2109.01134"
    assert [p.last_names for p in entry.persons["author"]][0] == ["Zhou"]


def test_every_shipped_record_cites_cleanly(kb):
    items = [kb.survey, *kb.methods.values()]
    pybtex.errors.set_strict_mode(True)
    bib = pybtex.database.parse_string(cite.bibtex(items), "bibtex")
    assert list(bib.entries) == [i.id for i in items]
    formatted = list(find_plugin("pybtex.style.formatting", "plain")().format_bibliography(bib))
    assert len(formatted) == len(items)
    for item in cite.csl_json(items):
        assert item["author"] and item["issued"]["date-parts"][0][0] >= 1990
    for record in items:
        assert f"({record.year})." in cite.text(record)
