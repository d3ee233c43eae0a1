"""Unit tests of the site generator: plain Python, no MkDocs run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vlmeft.errors import VlmeftError
from vlmeft.kb import cite
from vlmeft.kb.load import load_kb
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import NOT_MEASURED, PATHS, method_path, node_path
from vlmeft.sitegen.generate import GEN, make_context, render, write
from vlmeft.sitegen.results import load_bench, load_conformance
from vlmeft.sitegen.sections import aggregate
from vlmeft.sitegen.taxonomy_pages import mermaid_id

FIXTURE = Path(__file__).parent / "data" / "site"
RESULTS = FIXTURE / "results"


@pytest.fixture(scope="module")
def kb():
    return load_kb(FIXTURE / "taxonomy")


@pytest.fixture(scope="module")
def site(kb):
    return render(make_context(kb, results_dir=RESULTS), {"index.md", "contributing.md"})


@pytest.fixture(scope="module")
def bare_site(kb, tmp_path_factory):
    """No results and no method modules: everything reads 'not ... yet'."""
    empty = tmp_path_factory.mktemp("empty")
    return render(make_context(kb, results_dir=empty / "results", methods_root=empty / "methods"))


# --- escaping ------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "[x](javascript:alert(1))",
    "{: onclick=alert(1) }", '--8<-- "/etc/passwd"', "*a* _b_ `c` # d | e", "a & b",
])
def test_text_leaves_no_markup(raw: str) -> None:
    import markdown

    html = markdown.markdown(md.text(raw), extensions=["attr_list", "tables", "pymdownx.superfences"])
    assert "<script" not in html and "<img" not in html and "<a " not in html
    assert "<em>" not in html and "<code>" not in html and "onclick=" not in html.replace("onclick=alert", "")
    # What the reader sees is exactly the raw text.
    from html import unescape

    assert unescape(re.sub(r"</?p>", "", html)).strip() == raw


def test_ext_link_only_for_http_urls() -> None:
    assert md.ext_link("javascript:alert(1)", "x") == "x"
    assert md.ext_link('https://a.org/"onmouseover=x', "x") == "x"
    link = md.ext_link("https://a.org/?a=1&b=2", "code <b>")
    assert link == '<a href="https://a.org/?a=1&amp;b=2" rel="noopener">code &lt;b&gt;</a>'


def test_fence_outlasts_backticks_in_body() -> None:
    block = md.fence("x = '```'\n````", "python")
    assert block.startswith("`````python\n") and block.rstrip().endswith("`````")


def test_tags_are_restricted_to_safe_characters() -> None:
    assert md.tag("<i>XSS</i>") == "i-XSS-i"


# --- pages ---------------------------------------------------------------------------

def test_every_record_and_node_gets_a_page(kb, site) -> None:
    for method_id in kb.methods:
        assert method_path(method_id) in site.files
    for node_id in kb.categories.ids:
        assert node_path(node_id) in site.files
    assert all(path.startswith(GEN + "/") for path in site.files)


def test_method_page_holds_metadata_citations_and_aliases(kb, site) -> None:
    page = site.files[method_path("coop")]
    assert page.splitlines()[0] == "---" and 'title: "CoOp"' in page
    assert "# CoOp: Learning to Prompt for Vision\\-Language Models" in page
    assert "Context Optimization" in page  # aliases are on the page, so search finds them
    assert cite.bibtex([kb.methods["coop"]]).splitlines()[0] in page
    assert '=== "BibTeX"' in page and '=== "CSL-JSON"' in page and '=== "Text"' in page
    assert "https://github.com/KaiyangZhou/CoOp" in page
    assert "71\\.66" in page  # a reported result, with its source
    assert "vlmeft run coop --task digits --shots 4 --seed 1" in page
    for tag in ("category/prompt.textual.learnable", "venue/IJCV", "year/2022", "modality/text", "task/few-shot"):
        assert f'"{tag}"' in page
        assert tag in site.tags


def _outside_fences(page: str) -> str:
    """The page without fenced code (the highlighter escapes code; tested on built HTML)."""
    out, fence = [], None
    for line in page.splitlines():
        m = re.match(r"\s*(`{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def test_record_payload_never_reaches_markdown_raw(site) -> None:
    full = site.files[method_path("xss-probe")]
    page = _outside_fences(full)
    assert "Summary" in page and "```" in full
    for raw in ("<script", "<img", "<svg", "<iframe", "<marquee", "<b ", "](javascript:", "--8<--"):
        assert raw not in page, raw
    assert re.search(r"(?<!\\)\{:", page) is None  # an attr_list opener must stay escaped
    # Front matter: the title is HTML-escaped because MkDocs prints it unescaped.
    assert 'title: "&lt;marquee&gt;' not in page and 'title: "XSSProbe"' in page


def test_taxonomy_overview_has_mermaid_tree_with_counts(kb, site) -> None:
    page = site.files[PATHS["taxonomy"]]
    assert "```mermaid" in page and "Reconstruction" in page
    # coop (primary) and xss-probe (primary) under learnable; xss-probe also under token (secondary)
    assert f'{mermaid_id("prompt.textual.learnable")}["Learnable text prompt (2)"]' in page
    assert f'{mermaid_id("prompt.visual.token")}["Token-level visual prompt (1)"]' in page
    assert f'{mermaid_id("prompt")}["Prompt (2)"]' in page
    assert f'{mermaid_id("adapter.unimodal")}["Unimodal adapter (1)"]' in page


def test_leaf_page_has_definition_provenance_members_and_reference(site) -> None:
    page = site.files[node_path("prompt.textual.learnable")]
    for part in ("## Definition", "Reconstruction", "## Members", "## Reference implementation",
                 "## Conformance", "## Measured here", "## Behavioural signature",
                 "vlmeft run coop --task digits --shots 4 --seed 1"):
        assert part in page, part
    assert "[CoOp](../methods/coop.md)" in page


def test_type_page_lists_subdivisions_without_reference_code(site) -> None:
    page = site.files[node_path("prompt.textual")]
    assert "## Subdivisions" in page and "prompt.textual.learnable.md" in page
    assert "## Reference implementation" not in page


def test_results_are_shown_when_present(site) -> None:
    conf = site.files[PATHS["conformance"]]
    assert "synthclip-tiny (fixture)" in conf and "fixture failure &lt;b&gt;escaped&lt;/b&gt;" in conf
    bench = site.files[PATHS["benchmark"]]
    assert "accuracy-vs-shots-digits.png" in bench and "base-vs-novel.png" in bench
    png = site.files[f"{GEN}/img/accuracy-vs-shots-digits.png"]
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert "## Seed variance" in bench
    assert "✅ pass" in site.files[method_path("coop")]


def test_missing_results_and_modules_read_not_yet(bare_site) -> None:
    assert NOT_MEASURED in bare_site.files[PATHS["conformance"]]
    assert NOT_MEASURED in bare_site.files[PATHS["benchmark"]]
    assert not any(p.endswith(".png") for p in bare_site.files)
    page = bare_site.files[node_path("prompt.textual.learnable")]
    assert "Not implemented yet" in page and "methods/prompt_textual_learnable/coop.py" in page
    assert page.count(NOT_MEASURED) == 2  # conformance and measurements


def test_existing_module_source_is_embedded(kb, tmp_path) -> None:
    module = tmp_path / "prompt_textual_learnable" / "coop.py"
    module.parent.mkdir(parents=True)
    module.write_text('class CoOp:\n    """Learnable context vectors <b>docstring</b>."""\n    name = "coop"\n')
    site = render(make_context(kb, results_dir=None, methods_root=tmp_path))
    page = site.files[node_path("prompt.textual.learnable")]
    assert 'name = "coop"' in page and "Learnable context vectors &lt;b&gt;docstring&lt;/b&gt;\\." in page
    assert "```python" in page
    method = site.files[method_path("coop")]
    assert '??? example "Source: methods/prompt_textual_learnable/coop.py"' in method


def test_bibliography_and_downloads(kb, site) -> None:
    bib = site.files[PATHS["bib"]]
    assert bib.count("@") == len(kb.methods) + 1  # every entry plus the survey
    assert json.loads(site.files[PATHS["csl"]])[0]["DOI"] == kb.survey.doi
    page = site.files[PATHS["bibliography"]]
    assert "vlmeft.bib" in page and "## Cite the survey" in page
    for method_id in kb.methods:
        assert f"methods/{method_id}.md" in page


def test_schema_page_lists_record_fields(site) -> None:
    page = site.files[PATHS["schema"]]
    for field in ("`id`", "`title`", "`authors`", "`implementation`", "`aliases`"):
        assert field in page


def test_nav_reaches_every_generated_page(site) -> None:
    listed: set[str] = set()

    def walk(item) -> None:  # noqa: ANN001
        if isinstance(item, str):
            listed.add(item)
        elif isinstance(item, dict):
            for v in item.values():
                walk(v)
        else:
            for v in item:
                walk(v)

    walk(site.nav)
    pages = {p for p in site.files if p.endswith(".md")}
    assert pages <= listed and {"index.md", "contributing.md"} <= listed


# --- results files -------------------------------------------------------------------

def test_aggregate_mean_and_std_over_seeds() -> None:
    rows = [{"method": "m", "task": "t", "protocol": "p", "shots": 4, "accuracy": a} for a in (0.5, 0.6, 0.7)]
    (agg,) = aggregate(rows)
    assert agg["seeds"] == 3 and agg["accuracy"] == pytest.approx(0.6) and agg["accuracy_std"] == pytest.approx(0.1)


def test_malformed_results_are_errors_naming_the_file(tmp_path) -> None:
    (tmp_path / "conformance.json").write_text('{"cells": [{"method": "coop", "check": "x", "status": "maybe"}]}')
    with pytest.raises(VlmeftError, match=r"conformance\.json cells\[0\].*status"):
        load_conformance(tmp_path)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.json").write_text("{not json")
    with pytest.raises(VlmeftError, match=r"a\.json"):
        load_bench(tmp_path)
    assert not load_conformance(tmp_path / "nowhere").measured and not load_bench(None).measured


def test_write_replaces_generated_folder(tmp_path, site) -> None:
    stale = tmp_path / GEN / "methods" / "gone.md"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    (tmp_path / "index.md").write_text("# hand-written")
    write(site, tmp_path)
    assert not stale.exists() and (tmp_path / method_path("coop")).is_file()
    assert (tmp_path / "index.md").read_text() == "# hand-written"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".generated")] == []
