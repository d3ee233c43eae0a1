"""Citations: BibTeX that strict pybtex parses (hostile text included), CSL-JSON, plain text,
and the CITATION.cff file."""

from __future__ import annotations

import json
from pathlib import Path

import pybtex.database
import pybtex.errors
import pytest
from pybtex.plugin import find_plugin

from kb_helpers import GOOD, HOSTILE, make_kb
from vlmeft.kb import cite
from vlmeft.kb.load import load_kb, load_record
from vlmeft.kb.safe_yaml import safe_load_yaml

REPO = Path(__file__).resolve().parents[1]

# CSL-JSON item variables this module may emit (from the CSL 1.0.2 data schema).
CSL_KEYS = {"id", "type", "title", "author", "issued", "container-title", "container-title-short", "event-title",
            "volume", "page", "publisher", "DOI", "URL", "number", "note"}


def strict_parse(text: str) -> pybtex.database.BibliographyData:
    pybtex.errors.set_strict_mode(True)
    bib = pybtex.database.parse_string(text, "bibtex")
    # The plain style raises FieldIsMissing when an entry lacks a field its type needs.
    list(find_plugin("pybtex.style.formatting", "plain")().format_bibliography(bib))
    return bib


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    return load_kb(make_kb(tmp_path_factory.mktemp("citekb"), HOSTILE))


def test_entry_types_and_fields(kb):
    bib = strict_parse(cite.bibtex([kb.survey, *kb.methods.values()]))
    alpha, beta, gamma = bib.entries["alpha-prompt"], bib.entries["beta-adapter"], bib.entries["gamma-probe"]
    assert alpha.type == "inproceedings" and alpha.fields["booktitle"] == "International Conference on Fixtures"
    assert alpha.fields["eprint"] == "2301.00001" and alpha.fields["archivePrefix"] == "arXiv"
    assert beta.type == "article" and beta.fields["journal"] == "Journal of Fixture Studies"
    assert beta.fields["doi"] == "10.1234/jfs.2024.001"
    assert gamma.type == "misc"
    assert (gamma.fields["eprint"], gamma.fields["archivePrefix"], gamma.fields["primaryClass"]) == ("2103.00020v2", "arXiv", "cs.CV")
    assert "primaryClass" not in alpha.fields  # only written when the record states it
    survey = bib.entries["xing2024survey"]
    assert survey.type == "article"
    assert (survey.fields["volume"], survey.fields["pages"], survey.fields["doi"]) == ("119", "103885", "10.1016/j.cag.2024.01.012")
    assert survey.fields["journal"] == r"Computers \& Graphics"


def test_names_split_into_family_and_given(kb):
    bib = strict_parse(cite.bibtex([kb.methods["beta-adapter"], kb.methods["hostile-chars"]]))
    beta = [(" ".join(p.last_names), " ".join(p.first_names)) for p in bib.entries["beta-adapter"].persons["author"]]
    assert beta == [("{Van Der Berg}", "Anna"), ("{de Vries}", "Carl"), ("{Ben Ayed}", "Ismail")]
    families = [p.last_names for p in bib.entries["hostile-chars"].persons["author"]]
    assert families == [["O'Brien-Smith"], ["{López García}"], ["{Ben Ayed}"], ["{Mac Aodha}"], ["{von Trapp}"]]


def test_split_name():
    assert cite.split_name("Chen Change Loy") == ("Loy", "Chen Change")
    assert cite.split_name("Ismail Ben Ayed") == ("Ben Ayed", "Ismail")
    assert cite.split_name("Ben Poole") == ("Poole", "Ben")
    assert cite.split_name("Ludwig van Beethoven") == ("van Beethoven", "Ludwig")
    assert cite.split_name("Mac Aodha, Oisin") == ("Mac Aodha", "Oisin")
    assert cite.split_name("Plato") == ("Plato", "")


def test_hostile_characters_stay_literal(kb):
    rec = kb.methods["hostile-chars"]
    bib = strict_parse(cite.bibtex([rec]))
    title = bib.entries["hostile-chars"].fields["title"]
    for escaped in (r"\textbraceleft{}unbalanced", r"\textbackslash{}backslash", r"100\%", r"\$cost", r"\&", r"\#tags\_under",
                    r"\textasciicircum{}caret", r"\textasciitilde{}tilde", "{@}at", "Ünïcödé"):
        assert escaped in title, escaped
    assert "{CLIP's}" in title  # acronyms are protected from lower-casing
    assert bib.entries["hostile-chars"].fields["booktitle"] == r"Workshop on \textbraceleft{}Odd\textbraceright{} \& Weird\_Venues"
    # Strict pybtex rejects an unescaped version of the same entry: the escaping matters.
    raw = "@misc{x,\n  title = {" + rec.title + "}\n}\n"
    with pytest.raises(Exception):
        strict_parse(raw)


def test_latex_escape_is_complete():
    assert cite.latex_escape("a\\b{c}d&e%f$g#h_i~j^k@l") == (
        r"a\textbackslash{}b\textbraceleft{}c\textbraceright{}d\&e\%f\$g\#h\_i\textasciitilde{}j\textasciicircum{}k{@}l"
    )
    assert cite.latex_escape("two\n  lines") == "two lines"


def test_csl_json(kb):
    items = cite.csl_json([kb.survey, *kb.methods.values()])
    json.dumps(items)  # serialisable
    by_id = {i["id"]: i for i in items}
    for item in items:
        assert set(item) <= CSL_KEYS, set(item) - CSL_KEYS
        assert {"id", "type", "title", "author", "issued", "container-title"} <= set(item)
        assert all(set(a) <= {"family", "given"} and a["family"] for a in item["author"])
        assert isinstance(item["issued"]["date-parts"][0][0], int)
    assert by_id["beta-adapter"]["type"] == "article-journal" and by_id["beta-adapter"]["DOI"] == "10.1234/jfs.2024.001"
    assert by_id["alpha-prompt"]["type"] == "paper-conference"
    assert by_id["alpha-prompt"]["URL"] == "https://arxiv.org/abs/2301.00001"
    gamma = by_id["gamma-probe"]
    assert (gamma["type"], gamma["container-title"], gamma["number"]) == ("article", "arXiv", "arXiv:2103.00020v2")
    survey = by_id["xing2024survey"]
    assert survey["author"][0] == {"family": "Xing", "given": "Jialu"} and len(survey["author"]) == 7
    assert (survey["DOI"], survey["volume"], survey["page"]) == ("10.1016/j.cag.2024.01.012", "119", "103885")
    assert by_id["hostile-chars"]["title"] == kb.methods["hostile-chars"].title  # JSON needs no escaping


def test_plain_text(kb):
    assert cite.text(kb.survey) == (
        "Xing, J., Liu, J., Wang, J., Sun, L., Chen, X., Gu, X., & Wang, Y. (2024). A survey of efficient fine-tuning "
        "methods for Vision-Language Models - Prompt and Adapter. Computers & Graphics, 119, 103885. "
        "https://doi.org/10.1016/j.cag.2024.01.012"
    )
    assert cite.text(kb.methods["alpha-prompt"]) == (
        "Example, A., & Tester, B. (2023). Alpha: A Fixture Prompt Method for CLIP. "
        "In International Conference on Fixtures (ICF). https://arxiv.org/abs/2301.00001"
    )
    assert cite.text(kb.methods["gamma-probe"]).endswith("arXiv preprint arXiv:2103.00020v2. https://arxiv.org/abs/2103.00020v2")
    assert cite.text(kb.methods["beta-adapter"]).startswith("Van Der Berg, A., de Vries, C., & Ben Ayed, I. (2024).")
    assert "O'Brien-Smith, Z., López García, J. M., Ben Ayed, I., Mac Aodha, O., & von Trapp, J.-P." in cite.text(kb.methods["hostile-chars"])


def test_many_authors_are_truncated_apa_style():
    rec = load_record(GOOD / "alpha-prompt.yaml").model_copy(update={"authors": [f"Ann Author{i}" for i in range(25)]})
    line = cite.text(rec)
    assert "Author18, A., ... Author24, A." in line and "Author19" not in line


def test_render_and_unknown_format(kb):
    assert cite.render([kb.survey], "text").endswith("\n")
    with pytest.raises(Exception, match="unknown citation format"):
        cite.render([kb.survey], "ris")


def test_citation_cff():
    cff = safe_load_yaml(REPO / "CITATION.cff")
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    assert all(("name" in a) or ("family-names" in a) for a in cff["authors"])
    pref = cff["preferred-citation"]
    assert {"type", "title", "authors"} <= set(pref) and pref["type"] == "article"
    survey = safe_load_yaml(REPO / "taxonomy" / "survey.yaml")
    assert pref["title"] == survey["title"]
    assert [f"{a['given-names']} {a['family-names']}" for a in pref["authors"]] == survey["authors"]
    assert (pref["doi"], pref["volume"], pref["year"], pref["journal"]) == (survey["doi"], survey["volume"], survey["year"], survey["journal"])
    assert str(pref["start"]) == survey["article_number"]
