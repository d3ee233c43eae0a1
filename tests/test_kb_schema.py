"""The pydantic schema: each field rule, and the JSON Schema export."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from kb_helpers import GOOD, HOSTILE
from vlmeft.kb.safe_yaml import safe_load_yaml
from vlmeft.kb.schema import (
    MAX_YEAR,
    CategoriesFile,
    MethodRecord,
    Signature,
    json_schema,
    json_schema_text,
    signature_values,
)
from vlmeft.kb.load import shipped_dir

BASE = safe_load_yaml(GOOD / "alpha-prompt.yaml")


def variant(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def refused(data, fragment):
    with pytest.raises(ValidationError) as info:
        MethodRecord.model_validate(data)
    assert fragment in str(info.value), str(info.value)


def test_fixtures_are_valid():
    for path in [*GOOD.glob("*.yaml"), HOSTILE]:
        MethodRecord.model_validate(safe_load_yaml(path))


@pytest.mark.parametrize("value", ["coop", "tip-adapter-f", "a1", "x" * 64])
def test_good_ids(value):
    MethodRecord.model_validate(variant(id=value))


@pytest.mark.parametrize("value", ["CoOp", "tip_adapter", "-coop", "coop-", "a--b", "../etc", "a/b", "x" * 65, ""])
def test_bad_ids(value):
    with pytest.raises(ValidationError):
        MethodRecord.model_validate(variant(id=value))


@pytest.mark.parametrize("value", ["2109.01134", "2109.01134v2", "0704.0001", "1912.1234", "2510.13219v12"])
def test_good_arxiv(value):
    MethodRecord.model_validate(variant(arxiv=value))


@pytest.mark.parametrize("value", ["2113.01134", "2100.01134", "21.01134", "2109.011345", "2109.01134v0", "arXiv:2109.01134", "2109.01134 "])
def test_bad_arxiv(value):
    refused(variant(arxiv=value), "arXiv id")


def test_unquoted_arxiv_gets_a_hint():
    refused(variant(arxiv=2109.01134), "quoted string")


@pytest.mark.parametrize("value", ["10.1016/j.cag.2024.01.012", "10.1007/s11263-022-01653-1", "10.1109/CVPR52729.2023.01047"])
def test_good_doi(value):
    MethodRecord.model_validate(variant(doi=value))


@pytest.mark.parametrize("value", ["11.1000/x", "10.12/x", "10.1016/", "10.1016/a b", "10.1016/{x}"])
def test_bad_doi(value):
    refused(variant(doi=value), "DOI")


def test_doi_with_resolver_prefix_is_explained():
    refused(variant(doi="https://doi.org/10.1016/j.cag.2024.01.012"), "DOI")


@pytest.mark.parametrize("value", ["https://github.com/KaiyangZhou/CoOp", "https://example.org:8443/a?b=c&d=%20#x"])
def test_good_urls(value):
    MethodRecord.model_validate(variant(code=value))


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("javascript:alert(1)", "not javascript:"),
        ("JavaScript:alert(1)", "not javascript:"),
        ("data:text/html;base64,PHNjcmlwdD4=", "not data:"),
        ("file:///etc/passwd", "not file:"),
        ("http://example.org", "not http:"),
        ("https://example.org/{x}", "not an https URL"),
        ("https://exa mple.org", "not an https URL"),
        ("//example.org/x", "not an https URL"),
        ("github.com/x", "not an https URL"),
    ],
)
def test_bad_urls(value, fragment):
    refused(variant(code=value), fragment)


def test_result_source_is_a_link_or_text():
    ok = variant()
    ok["results"][0]["source"] = "Table 2 of the paper"
    MethodRecord.model_validate(ok)
    for bad in ("javascript:alert(1)", "http://example.org/x", "data:text/plain,x"):
        data = variant()
        data["results"][0]["source"] = bad
        refused(data, "https")


@pytest.mark.parametrize("year, ok", [(1989, False), (1990, True), (MAX_YEAR, True), (MAX_YEAR + 1, False), ("2022", False), (2022.0, False), (True, False)])
def test_year(year, ok):
    if ok:
        MethodRecord.model_validate(variant(year=year))
    else:
        with pytest.raises(ValidationError):
            MethodRecord.model_validate(variant(year=year))


@pytest.mark.parametrize("field, value", [("venue_type", "magazine"), ("paradigm", "Prompt"), ("modalities", ["audio"]), ("modalities", []), ("tasks", [])])
def test_enums_and_lists(field, value):
    with pytest.raises(ValidationError):
        MethodRecord.model_validate(variant(**{field: value}))


def test_fidelity_enum():
    data = variant()
    data["implementation"] = {"id": "coop", "fidelity": "exact"}
    refused(data, "fidelity")


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200f", "\x07", "\x1b", "\x85", "\u2028", "\n"])
def test_title_refuses_control_and_bidi(char):
    refused(variant(title=f"Nice {char}title"), "U+")


def test_summary_may_span_lines_but_not_hold_bidi():
    MethodRecord.model_validate(variant(summary="line one\nline two\twith a tab"))
    refused(variant(summary="evil \u202e text"), "bidirectional")


def test_bidi_inside_nested_and_list_fields():
    refused(variant(authors=["Ada \u2067Example"]), "bidirectional")
    data = variant()
    data["results"][0]["dataset"] = "set\u202d"
    refused(data, "bidirectional")


def test_unknown_keys_refused_at_every_level():
    refused(variant(colour="red"), "Extra inputs")
    data = variant()
    data["results"][0]["extra"] = 1
    refused(data, "Extra inputs")
    data = variant()
    data["implementation"]["module"] = "os"
    refused(data, "Extra inputs")


@pytest.mark.parametrize("authors, fragment", [(["Zhou et al."], "et al"), (["Zhou, K., Yang, J."], "several names"), (["Ada and Bo"], "several names"), ([], "at least 1")])
def test_authors(authors, fragment):
    refused(variant(authors=authors), fragment)


def test_implementation_rules():
    data = variant()
    data["implementation"] = {"id": "no-such-method", "fidelity": "faithful"}
    refused(data, "not a registered method")
    data["implementation"] = {"id": "maple", "fidelity": "category-reference"}
    refused(data, "must be 'coop'")
    refused(variant(implementation=None), "must link to code")
    base = variant(category=None, paradigm="linear-probe")
    base["implementation"] = {"id": "linear-probe", "fidelity": "category-reference"}
    refused(base, "needs the record to have a category")


def test_secondary_categories():
    refused(variant(secondary_categories=["prompt.textual.learnable"]), "repeats the primary")
    refused(variant(secondary_categories=["prompt.visual.token", "prompt.visual.token"]), "listed twice")
    refused(variant(secondary_categories=["Prompt.Visual"]), "dotted category id")


def test_unverified_names_real_fields():
    MethodRecord.model_validate(variant(unverified=["authors", "venue", "results[0]", "parameters.count"]))
    refused(variant(unverified=["autors"]), "does not name a field")
    refused(variant(unverified=["results[1]"]), "past the end")


def test_records_are_immutable():
    record = MethodRecord.model_validate(BASE)
    with pytest.raises(ValidationError):
        record.title = "changed"


def test_signature_keys_documented_exactly():
    data = safe_load_yaml(shipped_dir() / "categories.yaml")
    CategoriesFile.model_validate(data)
    assert set(data["signature_keys"]) == set(Signature.model_fields)
    broken = copy.deepcopy(data)
    del broken["signature_keys"]["trains"]
    with pytest.raises(ValidationError, match="missing \\['trains'\\]"):
        CategoriesFile.model_validate(broken)
    broken = copy.deepcopy(data)
    broken["signature_keys"]["trains"]["values"] = [True, False]
    with pytest.raises(ValidationError, match="signature_keys.trains.values"):
        CategoriesFile.model_validate(broken)
    broken = copy.deepcopy(data)
    broken["families"][0]["types"][0]["subtypes"][0]["signature"]["trains"] = "sometimes"
    with pytest.raises(ValidationError):
        CategoriesFile.model_validate(broken)
    assert signature_values("vision_prompt_grad_wrt_text_prompt") == ["nonzero", "zero", "na"]


def test_category_tree_shape_rules():
    data = safe_load_yaml(shipped_dir() / "categories.yaml")
    broken = copy.deepcopy(data)
    broken["families"][0]["types"][0]["subtypes"][0]["id"] = "prompt.visual.handcrafted"
    with pytest.raises(ValidationError, match="must extend its type id"):
        CategoriesFile.model_validate(broken)
    broken = copy.deepcopy(data)
    broken["families"][0]["provenance"]["supported_by"] = ["nobody2020"]
    with pytest.raises(ValidationError, match="unknown reference 'nobody2020'"):
        CategoriesFile.model_validate(broken)
    broken = copy.deepcopy(data)
    del broken["families"][1]["types"][0]["signature"]
    with pytest.raises(ValidationError, match="needs signature"):
        CategoriesFile.model_validate(broken)


def test_json_schema_export():
    schema = json_schema("method")
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"id", "title", "authors", "venue", "venue_type", "year", "paradigm", "summary"}
    props = schema["properties"]
    assert props["id"]["pattern"].startswith("^[a-z0-9]")
    assert "pattern" in json.dumps(props["arxiv"])
    assert "https" in json.dumps(props["code"])
    for kind in ("categories", "survey", "tasks", "paradigms", "topics"):
        assert json.loads(json_schema_text(kind))["type"] == "object"
