"""The knowledge-base rules (vlmeft.kb.rules, run by `vlmeft validate`): the shipped KB
satisfies them, and each rule refuses a record that breaks it, naming file:line and field.

Every rule test starts from a record that passes (``test_the_base_record_passes``) and breaks
exactly one thing, so each bad fixture proves its rule can fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlmeft.cli import main
from vlmeft.kb.load import check_kb, load_kb, shipped_dir

RELEASE_FILES = ("categories.yaml", "tasks.yaml", "paradigms.yaml", "survey.yaml", "topics.yaml", "vocab.yaml", "kb.yaml")

SOURCES = """sources:
  bibliographic:
    - url: https://github.com/example-org/alpha
      kind: official-bibtex
      facts: [title, authors, venue, year]
    - url: https://arxiv.org/abs/2301.00001
      kind: arxiv
      facts: [arxiv]
  code:
    - url: https://github.com/example-org/alpha
      kind: official-repository
      facts: [code]
"""

BASE = {
    "id": "id: alpha",
    "title": 'title: "Alpha: A Fixture Prompt Method"',
    "authors": "authors: [Ada Example]",
    "venue": "venue: IEEE/CVF International Conference on Computer Vision",
    "venue_short": "venue_short: ICCV",
    "venue_type": "venue_type: conference",
    "year": "year: 2023",
    "arxiv": "arxiv: '2301.00001'",
    "code": "code: https://github.com/example-org/alpha",
    "paradigm": "paradigm: prompt",
    "category": "category: prompt.textual.learnable",
    "modalities": "modalities: [text]",
    "tasks": "tasks: [image-classification]",
    "summary": "summary: A record made by a test.",
    "results": """results:
  - {metric: base, value: 80.0, dataset: avg-11, protocol: base-to-novel, shots: 16, backbone: vit-b-16,
     source: https://github.com/example-org/alpha, locator: README}
  - {metric: novel, value: 70.0, dataset: avg-11, protocol: base-to-novel, shots: 16, backbone: vit-b-16,
     source: https://github.com/example-org/alpha, locator: README}
  - {metric: hm, value: 74.67, dataset: avg-11, protocol: base-to-novel, shots: 16, backbone: vit-b-16,
     source: https://github.com/example-org/alpha, locator: README}""",
    "implementation": "implementation: {id: coop, fidelity: category-reference}",
    "aliases": "aliases: [Alpha]",
    "sources": SOURCES.rstrip(),
}


def record(record_id: str = "alpha", **overrides: str) -> str:
    lines = dict(BASE, id=f"id: {record_id}")
    lines.update(overrides)
    return "\n".join(v for v in lines.values() if v) + "\n"


def released_kb(root: Path, *records: tuple[str, str]) -> Path:
    """A knowledge base that publishes releases (so the rules apply) holding only ``records``."""
    kb = root / "kb"
    (kb / "methods").mkdir(parents=True)
    for name in RELEASE_FILES:
        shutil.copy(shipped_dir() / name, kb / name)
    for rid, text in records:
        (kb / "methods" / f"{rid}.yaml").write_text(text, encoding="utf-8")
    return kb


def errors_of(tmp_path: Path, *records: tuple[str, str]) -> list[str]:
    _, errors = check_kb(released_kb(tmp_path, *records))
    return [str(e) for e in errors]


def one_error(tmp_path: Path, text: str, rid: str = "alpha", *others: tuple[str, str]) -> str:
    errs = errors_of(tmp_path, (rid, text), *others)
    assert len(errs) == 1, errs
    return errs[0]


def test_the_shipped_kb_satisfies_every_rule():
    kb, errors = check_kb()
    assert errors == [] and kb is not None
    assert len(kb.methods) >= 120
    for leaf in kb.leaves:
        assert len(kb.members(leaf.id)) >= 5, leaf.id


def test_every_shipped_unverified_fact_gives_a_reason():
    kb = load_kb()
    for rec in kb.methods.values():
        for entry in rec.unverified:
            assert getattr(entry, "reason", "").strip(), (rec.id, entry)


def test_the_base_record_passes(tmp_path):
    assert errors_of(tmp_path, ("alpha", record())) == []


def test_rules_do_not_apply_without_kb_yaml(tmp_path):
    kb = released_kb(tmp_path, ("alpha", record(sources="")))
    (kb / "kb.yaml").unlink()
    assert check_kb(kb)[1] == []  # a scratch KB keeps schema checks only
    (kb / "kb.yaml").write_text((shipped_dir() / "kb.yaml").read_text())
    assert check_kb(kb)[1]


# -- sources ------------------------------------------------------------------------------


def test_a_record_without_sources_is_refused(tmp_path):
    err = one_error(tmp_path, record(sources=""))
    assert "alpha.yaml:1" in err and "no 'sources'" in err


def test_an_unchecked_fact_is_refused(tmp_path):
    text = record(sources=SOURCES.rstrip().replace("facts: [title, authors, venue, year]", "facts: [title, authors, venue]"))
    assert "no source checks 'year'" in one_error(tmp_path, text)


def test_an_unchecked_fact_may_be_listed_with_a_reason(tmp_path):
    text = record(sources=SOURCES.rstrip().replace("facts: [title, authors, venue, year]", "facts: [title, authors, venue]"),
                  unverified="unverified:\n  - {field: year, reason: the proceedings page could not be read}")
    assert errors_of(tmp_path, ("alpha", text)) == []


def test_an_arxiv_source_must_be_the_records_own_arxiv_page(tmp_path):
    err = one_error(tmp_path, record(sources=SOURCES.rstrip().replace("abs/2301.00001", "abs/2301.00002")))
    assert "field 'sources.bibliographic[1].url'" in err and "not the record's arXiv id" in err


def test_an_official_source_must_be_the_records_own_repository(tmp_path):
    text = record(sources=SOURCES.rstrip().replace("- url: https://github.com/example-org/alpha\n      kind: official-bibtex",
                                                   "- url: https://github.com/someone-else/alpha\n      kind: official-bibtex"))
    err = one_error(tmp_path, text)
    assert "sources.bibliographic[0].url" in err and "own code repository" in err


def test_a_proceedings_source_must_be_a_venue_site(tmp_path):
    text = record(sources=SOURCES.rstrip().replace("https://github.com/example-org/alpha\n      kind: official-bibtex",
                                                   "https://example.org/paper\n      kind: proceedings"))
    assert "not a venue's own site" in one_error(tmp_path, text)


def test_a_published_venue_needs_more_than_arxiv(tmp_path):
    text = record(sources=SOURCES.rstrip().replace("facts: [title, authors, venue, year]", "facts: [title, authors]")
                  .replace("facts: [arxiv]", "facts: [arxiv, venue, year]"))
    assert "needs a proceedings, publisher, index or official source" in one_error(tmp_path, text)


def test_code_needs_a_code_source(tmp_path):
    text = record(sources=SOURCES.rstrip().split("  code:")[0].rstrip())
    assert "no source checks 'code' (the official repository" in one_error(tmp_path, text)


def test_unverified_needs_a_reason(tmp_path):
    err = one_error(tmp_path, record(unverified="unverified: [authors]"))
    assert "field 'unverified[0]'" in err and "gives no reason" in err


# -- results --------------------------------------------------------------------------------


def test_a_result_from_a_third_party_list_is_refused(tmp_path):
    text = record(results=BASE["results"].replace("source: https://github.com/example-org/alpha, locator: README}\n  - {metric: novel",
                                                  "source: https://github.com/some/awesome-list, locator: README}\n  - {metric: novel"))
    err = one_error(tmp_path, text)
    assert "results[0].source" in err and "neither a paper page nor the official repository" in err


def test_an_inconsistent_hm_is_refused_unless_explained(tmp_path):
    text = record(results=BASE["results"].replace("value: 74.67", "value: 76.0"))
    err = one_error(tmp_path, text)
    assert "field 'results[2].value'" in err and "does not match base 80 and novel 70" in err
    explained = record(results=BASE["results"].replace("value: 74.67, dataset", "value: 76.0, discrepancy: printed so, dataset"))
    assert errors_of(tmp_path / "2", ("alpha", explained)) == []


def test_an_unknown_vocabulary_id_names_file_line_and_field(tmp_path):
    text = record(results=BASE["results"].replace("dataset: avg-11, protocol: base-to-novel, shots: 16, backbone: vit-b-16,\n     source: https://github.com/example-org/alpha, locator: README}\n  - {metric: novel",
                                                  "dataset: imagenet1k, protocol: base-to-novel, shots: 16, backbone: vit-b-16,\n     source: https://github.com/example-org/alpha, locator: README}\n  - {metric: novel"))
    err = one_error(tmp_path, text)
    assert "alpha.yaml:" in err and "field 'results[0].dataset'" in err and "unknown dataset 'imagenet1k'" in err


def test_a_few_shot_result_needs_shots(tmp_path):
    text = record(results="results:\n  - {metric: accuracy, value: 70.0, dataset: imagenet, protocol: few-shot, backbone: rn50,\n"
                          "     source: https://github.com/example-org/alpha, locator: README}")
    assert "needs 'shots'" in one_error(tmp_path, text)


def test_an_arxiv_result_needs_a_locator(tmp_path):
    text = record(results="results:\n  - {metric: accuracy, value: 70.0, dataset: imagenet, protocol: zero-shot, backbone: rn50,\n"
                          "     source: https://arxiv.org/abs/2301.00001}")
    assert "say where in the paper" in one_error(tmp_path, text)


# -- venue and year -------------------------------------------------------------------------


def test_iccv_is_held_in_odd_years(tmp_path):
    text = record(year="year: 2024", arxiv="arxiv: '2401.00001'",
                  sources=SOURCES.rstrip().replace("2301.00001", "2401.00001"))
    assert "ICCV is held only in odd years" in one_error(tmp_path, text)


def test_a_venue_naming_another_year_is_refused(tmp_path):
    assert "names the year 2022" in one_error(tmp_path, record(venue_short="venue_short: ICCV 2022"))


def test_a_published_year_before_the_arxiv_id_is_refused(tmp_path):
    text = record(arxiv="arxiv: '2501.00001'", sources=SOURCES.rstrip().replace("2301.00001", "2501.00001"))
    assert "the arXiv id dates from 2025" in one_error(tmp_path, text)


def test_a_preprint_year_is_its_arxiv_year(tmp_path):
    text = record(venue="venue: arXiv preprint", venue_short="venue_short: arXiv", venue_type="venue_type: preprint",
                  year="year: 2024")
    assert "a preprint's year is its arXiv year" in one_error(tmp_path, text)


# -- across records --------------------------------------------------------------------------


def test_two_records_sharing_code_must_be_variants(tmp_path):
    beta = record("beta", title='title: "Beta: Another Paper"', aliases="aliases: [Beta]", arxiv="", results="",
                  sources=SOURCES.rstrip().split("    - url: https://arxiv.org")[0].rstrip() + "\n  code:\n    - url: https://github.com/example-org/alpha\n      kind: official-repository\n      facts: [code]")
    errs = errors_of(tmp_path, ("alpha", record()), ("beta", beta))
    assert len(errs) == 1 and "beta.yaml" in errs[0] and "is also the code of 'alpha'" in errs[0]
    assert errors_of(tmp_path / "2", ("alpha", record()), ("beta", beta + "variant_of: alpha\n")) == []


def test_aliases_are_unique_ignoring_punctuation(tmp_path):
    beta = record("beta", title='title: "Beta: Another Paper"', aliases="aliases: [al-pha]", arxiv="", results="", code="",
                  sources="sources:\n  bibliographic:\n    - {url: 'https://openaccess.thecvf.com/x', kind: proceedings, facts: [title, authors, venue, year]}")
    errs = errors_of(tmp_path, ("alpha", record()), ("beta", beta))
    assert len(errs) == 1 and "'al-pha' is, ignoring case and punctuation, a name of 'alpha'" in errs[0]


def test_a_variant_filed_elsewhere_needs_a_note(tmp_path):
    beta = record("beta", category="category: prompt.visual.pixel", implementation="implementation: {id: vp, fidelity: category-reference}",
                  aliases="aliases: [Beta]", results="", variant_of="variant_of: alpha",
                  sources=SOURCES.rstrip().replace("https://github.com/example-org/alpha", "https://github.com/example-org/alpha"))
    errs = errors_of(tmp_path, ("alpha", record()), ("beta", beta))
    assert len(errs) == 1 and "field 'category'" in errs[0] and "add a classification note" in errs[0]
    noted = beta + ("classification_notes:\n  - alternative: prompt.textual.learnable\n    held_by: []\n"
                    "    reason: Its sibling is filed there because it prompts the text side.\n")
    assert errors_of(tmp_path / "2", ("alpha", record()), ("beta", noted)) == []


def test_a_note_without_a_holder_must_explain_a_sibling(tmp_path):
    text = record(classification_notes="classification_notes:\n  - alternative: prompt.visual.pixel\n    held_by: []\n    reason: Some reason.")
    assert "say who files the method there" in one_error(tmp_path, text)


def test_a_note_names_a_known_category_and_holder(tmp_path):
    text = record(classification_notes="classification_notes:\n  - alternative: prompt.visual.pixl\n    held_by: [gu2023, nobody]\n    reason: r.")
    errs = errors_of(tmp_path, ("alpha", text))
    assert any("unknown category 'prompt.visual.pixl'" in e for e in errs)
    assert any("'nobody' is neither a reference" in e for e in errs)


# -- changelog and the digest lock ------------------------------------------------------------


def test_a_change_must_be_logged(tmp_path):
    from vlmeft.kb.changelog import write_lock

    kb_dir = released_kb(tmp_path, ("alpha", record()))
    meta = (shipped_dir() / "kb.yaml").read_text()
    version = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("version:")][0]
    released = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("released:")][0]
    log = f"releases:\n  - version: {version}\n    date: {released}\n    summary: A test release.\n    changes: []\n"
    (kb_dir / "changelog.yaml").write_text(log)
    write_lock(kb_dir, version, load_kb(kb_dir).methods)
    assert check_kb(kb_dir)[1] == []
    path = kb_dir / "methods" / "alpha.yaml"
    path.write_text(path.read_text().replace("year: 2023", "year: 2025").replace("venue_short: ICCV", "venue_short: ICCVX"))
    errs = [str(e) for e in check_kb(kb_dir)[1]]
    assert len(errs) == 1 and "changelog.yaml" in errs[0] and "record 'alpha' changed its category or facts" in errs[0]
    (kb_dir / "changelog.yaml").write_text(log.replace("changes: []", "changes:\n      - {record: alpha, fields: [year], what: Corrected.}"))
    assert check_kb(kb_dir)[1] == []
    assert main(["changelog", "lock", "--taxonomy", str(kb_dir)]) == 0
    assert json.loads((kb_dir / "record-digests.json").read_text())["version"] == version


def test_the_shipped_changelog_matches_the_release():
    kb = load_kb()
    assert kb.changelog.releases[0].version == kb.meta.version
    assert kb.changelog.releases[0].date == kb.meta.released


def test_validate_cli_reports_rule_errors_as_one_line_each(tmp_path, capsys):
    kb_dir = released_kb(tmp_path, ("alpha", record(unverified="unverified: [authors]")))
    assert main(["validate", str(kb_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "alpha.yaml:" in err[0]


@pytest.mark.parametrize("record_id", ["coop", "mvlpt", "evp", "cpt", "provp-ref"])
def test_issue_items_are_fixed(record_id):
    kb = load_kb()
    rec = kb.methods[record_id]
    assert rec.sources is not None
    if record_id == "mvlpt":
        upt = kb.methods["upt"]
        assert rec.category == upt.category == "prompt.multimodal.coupled"
        assert any(n.alternative == "prompt.multimodal.decoupled" and "gu2023" in n.held_by for n in rec.classification_notes)
    if record_id == "evp":
        assert (rec.venue_short, rec.venue_type, rec.year, rec.arxiv) == ("TMLR", "journal", 2024, "2212.10556")
    if record_id == "cpt":
        assert (rec.venue, rec.year) == ("AI Open", 2024) and "Color-based Prompt Tuning" in rec.aliases
    if record_id == "provp-ref":
        assert rec.code == "https://github.com/MCG-NJU/ProVP" and rec.venue_short == "IJCV"
