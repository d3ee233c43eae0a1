"""Unit tests of the site generator: plain Python, no MkDocs run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vlmeft.bench import report
from vlmeft.errors import VlmeftError
from vlmeft.kb import cite
from vlmeft.kb.load import load_kb
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import NOT_MEASURED, PATHS, method_path, node_path
from vlmeft.sitegen.generate import GEN, make_context, render, write
from vlmeft.sitegen.results import load_bench, load_conformance
from vlmeft.sitegen.plots import accuracy_vs_shots, shot_series
from vlmeft.sitegen.sections import aggregate, bench_table
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


def test_run_command_and_recipe_wording_follow_the_method(kb, site) -> None:
    """A grounding method is run on the scenes (digits would refuse it); a training-free
    method "runs", it does not "train", under its recipes; a captioning method's embedded
    recipe is synthcoca-tiny's."""
    from vlmeft.sitegen.sections import run_command

    assert run_command("red-circle") == "vlmeft run red-circle --task scenes"
    assert run_command("coop") == "vlmeft run coop --task digits --shots 4 --seed 1"
    if "red-circle" in kb.methods:
        assert "vlmeft run red-circle --task scenes" in site.files[method_path("red-circle")]
    assert "`coop` trains under two recipes" in site.files[method_path("coop")]
    if "zsclip" in kb.methods:
        page = site.files[method_path("zsclip")]
        assert "`zsclip` runs under two recipes" in page and "`zsclip` trains" not in page
    # The embedded recipe is named after the backbone the method runs on by default.
    assert "the default on `synthclip-tiny`" in site.files[method_path("coop")]
    from vlmeft.sitegen.sections import recipes_section

    magma = recipes_section("magma")
    assert "the default on `synthcoca-tiny`" in magma and "synthclip-tiny" not in magma


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
    # the label shape of `vlmeft tree` (vlmeft.kb.counts): secondary placements counted apart
    assert f'{mermaid_id("prompt.visual.token")}["Token-level visual prompt (0 + 1 secondary)"]' in page
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
    assert '<span class="vx-status vx-pass"' in site.files[method_path("coop")]


def test_missing_results_and_modules_read_not_yet(bare_site) -> None:
    assert NOT_MEASURED in bare_site.files[PATHS["conformance"]]
    assert NOT_MEASURED in bare_site.files[PATHS["benchmark"]]
    # No measured plots without results (the coverage plots come from the KB itself).
    assert not any(p.endswith(".png") and "/coverage-" not in p for p in bare_site.files)
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


def test_methods_nav_is_grouped_by_taxonomy_leaf(site) -> None:
    (methods,) = [item["Methods"] for item in site.nav if "Methods" in item]
    groups = {k: v for entry in methods[1:] for k, v in entry.items()}
    assert methods[0] == PATHS["methods"]
    assert groups["Learnable text prompt"] == [method_path("coop"), method_path("xss-probe")]
    assert groups["Unimodal adapter"] == [method_path("adaptformer")]
    assert groups["Baselines"] == [method_path("linear-probe")]  # no category: after the taxonomy


# --- conformance ---------------------------------------------------------------------

def test_conformance_cells_are_kept_per_backbone(kb, site) -> None:
    ctx = make_context(kb, results_dir=RESULTS)
    conf = ctx.conformance
    assert conf.backbones == ["synthclip-tiny (fixture)", "vlmeft-tiny-rn"]
    index = conf.index()
    assert index[("coop", "signature.trains", "synthclip-tiny (fixture)")]["status"] == "pass"
    assert index[("coop", "signature.trains", "vlmeft-tiny-rn")]["status"] == "fail"  # not overwritten
    assert conf.counts("vlmeft-tiny-rn") == {"pass": 3, "fail": 1, "na": 1}
    page = site.files[PATHS["conformance"]]
    assert '=== "synthclip\\-tiny \\(fixture\\)"' in page and '=== "vlmeft\\-tiny\\-rn"' in page
    tabs = page.split('=== "')[1:]
    first, second = tabs[0].split("\n## ")[0], tabs[1].split("\n## ")[0]
    coop_first = next(line for line in first.splitlines() if "coop.md#conformance" in line)
    coop_second = next(line for line in second.splitlines() if "coop.md#conformance" in line)
    assert "vx-pass" in coop_first.split("|")[2] and "vx-fail" in coop_second.split("|")[2]  # trains column
    assert "ResNet image tower" not in first and "ResNet image tower" in second
    # Summary counts per backbone, and the failures name their backbone.
    assert "| `vlmeft-tiny-rn` | 3 | 1 | 1 | random init |" in page
    assert "`vlmeft-tiny-rn`: rn\\-only failure" in page


def test_conformance_reasons_cannot_split_a_table(site) -> None:
    page = site.files[PATHS["conformance"]]
    assert 'title="batch 4 vs 1: max &#124;diff&#124; 3.8e-06 :smile:"' in page
    assert md.table_problems(page) == []
    method = site.files[method_path("coop")]  # the method page: one tab per backbone, reasons as text
    assert "max \\|diff\\|" in method and method.count('=== "') == 3 + 2  # BibTeX/CSL/Text + 2 backbones


def test_a_malformed_generated_table_stops_the_build() -> None:
    from vlmeft.sitegen.generate import check_tables

    bad = md.table(["method", "status"], [["coop", '<span title="max |diff|">pass</span>']])
    with pytest.raises(VlmeftError, match=r"generated/x\.md.*line 3: 4 cells under a 2-column header"):
        check_tables({"generated/x.md": bad})
    check_tables({"generated/x.md": md.table(["a", "b"], [["`x|y`", "c \\| d"]])})  # code and escapes are fine


def test_attr_and_text_keep_pipes_inside_their_cell() -> None:
    assert md.attr('a|b "c"') == "a&#124;b &quot;c&quot;"
    row = md.table(["a", "b"], [[md.text("x | y"), f'<span title="{md.attr("p|q")}">z</span>']])
    assert md.table_problems(row) == []
    assert md.table_cells(row.splitlines()[2]) == [" x \\| y ", ' <span title="p&#124;q">z</span> ']


# --- benchmark page and home overview -------------------------------------------------

def test_benchmark_page_opens_with_plots_then_pivots_then_full_rows(site) -> None:
    page = site.files[PATHS["benchmark"]]
    order = [page.index(h) for h in ("## Plots", "## Summary", "## Full results", "## Seed variance")]
    assert order == sorted(order)
    # method x shots: means only, best at the largest shot count first; links to the method's measurements
    assert "| method | 1 shot | 4 shots | 16 shots |" in page
    assert "| [CoOp](methods/coop.md#measured) | 43.0 | 57.0 | 70.0 |" in page
    coop, probe = "[CoOp](methods/coop.md#measured) | 43.0", "[Linear probe](methods/linear-probe.md#measured) | 40.0"
    assert page.index(coop) < page.index(probe)
    # method x protocol: one headline number per (protocol, task)
    assert "| method | digits 16\\-shot | shapes\\-b2n HM |" in page
    # full rows fold away, each block with the anchor the pivots link to
    assert '??? note "Few-shot: all 6 rows"' in page and "{: #full-few-shot }" in page
    assert "(#full-few-shot)" in page and "(#full-base-to-novel)" in page


def test_home_overview_columns(kb, site) -> None:
    from vlmeft.sitegen.overview import MARKER, PARTIAL, reported_hm

    shipped = load_kb()  # controlled result ids (vocab.yaml); the fixture KB has free-text results
    assert reported_hm(shipped, shipped.methods["coop"]).value == 71.66
    assert reported_hm(shipped, shipped.methods["linear-probe"]) is None
    assert reported_hm(kb, kb.methods["coop"]).value == 71.66
    home = site.files[PARTIAL]
    assert MARKER not in home and "```mermaid" in home and 'class="vx-filter"' in home
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in home.splitlines() if line.startswith("| [")}
    coop = rows["[CoOp](generated/methods/coop.md)"]
    # category, towers, params at ViT-B/16, training-free, code, accuracy here (digits, 16 shots), reported HM
    source = "https://github.com/muzairkhattak/multimodal-prompt-learning"
    assert coop[1:] == ["text", "8,192", "no", "own, simplified", "70.0", f'<a href="{source}" rel="noopener">71\\.66</a>']
    assert coop[0] == "[Learnable text prompt](generated/taxonomy/prompt.textual.learnable.md)"
    probe = rows["[Linear probe](generated/methods/linear-probe.md)"]
    # no count in the record: training-free judged by the benchmark's measured parameters
    assert probe == ["baseline", "image", "–", "no", "own, simplified", "67.0", "–"]
    adapt = rows["[AdaptFormer](generated/methods/adaptformer.md)"]
    assert adapt[4].startswith("via ") and adapt[5] == "–"  # a category reference has no number of its own
    assert md.table_problems(home) == []


# --- results files -------------------------------------------------------------------

def _row(method: str, protocol: str = "few-shot", shots: int = 4, seed: int = 1, task: str = "t", **metrics):
    return {"method": method, "task": task, "protocol": protocol, "shots": shots, "seed": seed, **metrics}


def test_aggregate_uses_the_population_std() -> None:
    rows = [_row("m", seed=s, accuracy=a) for s, a in ((1, 0.5), (2, 0.6), (3, 0.7))]
    (agg,) = aggregate(rows)
    mean, std, n = agg["stats"]["accuracy"]
    assert agg["seeds"] == n == 3 and mean == pytest.approx(0.6)
    assert std == pytest.approx(0.1 * (2 / 3) ** 0.5)  # sqrt(((-.1)² + 0 + .1²) / 3), not the sample 0.1


def test_hm_is_the_hm_of_the_means_as_in_the_report(kb, tmp_path) -> None:
    # Per-seed HMs are 2*.8*.4/1.2 = .5333 and .6 (mean .5667); the HM of the means .7 and .5 is .5833.
    rows = [_row("coop", "base-to-novel", 16, 1, base=0.8, novel=0.4, hm=0.5333),
            _row("coop", "base-to-novel", 16, 2, base=0.6, novel=0.6, hm=0.6)]
    (agg,) = aggregate(rows)
    mean, std, n = agg["stats"]["hm"]
    assert mean == pytest.approx(2 * 0.7 * 0.5 / 1.2) and n == 2
    assert std == pytest.approx((0.6 - 2 * 0.8 * 0.4 / 1.2) / 2)  # population std of the per-seed HMs
    assert agg["stats"]["base"] == pytest.approx((0.7, 0.1, 2))
    ctx = make_context(kb, results_dir=tmp_path)
    table = bench_table(ctx, PATHS["benchmark"], rows, with_method=False)
    assert "| t | 16 | 2 | 70.0 ± 10.0 | 50.0 ± 10.0 | 58.3 ± 3.3 |" in table
    # The same cells as the benchmark report (README, `vlmeft bench --report`).
    in_report = report.base_to_novel_table(report.Groups(rows), "t")
    assert "| coop | 16 | 70.0 ± 10.0 | 50.0 ± 10.0 | 58.3 ± 3.3 |" in in_report


def test_every_metric_a_row_carries_gets_a_column(kb, tmp_path) -> None:
    rows = [_row("zsclip", "retrieval", 0, task="scenes", r1=0.52, r5=0.91, i2t_r1=0.6, i2t_r5=0.95,
                 t2i_r1=0.44, t2i_r5=0.87),
            _row("red-circle", "grounding", 0, task="scenes", accuracy=0.28, chance=0.42),
            _row("coop", "cross-domain", 16, task="colors", accuracy=0.78, shifted_mean=0.64,
                 domains={"checkered": 0.77, "dim": 0.51})]
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "rows.json").write_text(json.dumps(rows))
    ctx = make_context(kb, results_dir=tmp_path)
    page = bench_table(ctx, PATHS["benchmark"], ctx.bench.rows, with_method=True)
    for head in ("### Retrieval",
                 "| R@1 | R@5 | image→text R@1 | image→text R@5 | text→image R@1 | text→image R@5 |",
                 "### Grounding", "| grounding accuracy | chance |",
                 "### Cross-domain", "| source accuracy | checkered | dim | shifted mean |"):
        assert head in page, head
    assert "| 52.0 | 91.0 | 60.0 | 95.0 | 44.0 | 87.0 |" in page
    assert "| 28.0 | 42.0 |" in page and "| 78.0 | 77.0 | 51.0 | 64.0 |" in page


def test_backbone_weights_are_never_averaged_together(kb, tmp_path) -> None:
    rows = [{**_row("coop", seed=1, accuracy=0.5), "backbone": "b", "backbone_weights": "w1"},
            {**_row("coop", seed=2, accuracy=0.9), "backbone": "b", "backbone_weights": "w2"}]
    aggs = aggregate(rows)
    assert [(a["weights"], a["stats"]["accuracy"][0], a["seeds"]) for a in aggs] == [("w1", 0.5, 1), ("w2", 0.9, 1)]
    table = bench_table(make_context(kb, results_dir=tmp_path), PATHS["benchmark"], rows, with_method=False)
    assert "### Backbone `b`, weights `w1`" in table and "### Backbone `b`, weights `w2`" in table
    assert "#### Few-shot" in table and "| 50.0 |" in table and "| 90.0 |" in table and "70.0" not in table


def test_zero_shot_methods_are_flat_reference_lines() -> None:
    trained = ((1, 1, 0.5), (1, 2, 0.6), (16, 1, 0.8))  # (shots, seed, accuracy)
    rows = [_row("zsclip", shots=0, accuracy=0.55), *(_row("coop", shots=k, seed=s, accuracy=a) for k, s, a in trained)]
    lines = {line.method: line for line in shot_series(aggregate(rows), "t")}
    zs, coop = lines["zsclip"], lines["coop"]
    assert zs.flat and zs.xs == (1, 16) and zs.ys == pytest.approx((0.55, 0.55))  # across the trained range
    assert not coop.flat and coop.xs == (1, 16) and coop.ys == pytest.approx((0.55, 0.8))
    assert coop.errs == pytest.approx((0.05, 0.0))
    assert accuracy_vs_shots(aggregate(rows), "t").startswith(b"\x89PNG")


def test_shot_plot_has_one_panel_per_method_family() -> None:
    """Forty methods on one axis cannot be told apart: the plot draws a panel per family,
    each read against zero-shot CLIP."""
    from vlmeft.sitegen.plots import _family

    assert _family("coop") == "prompt.textual.learnable" and _family("zsclip") == "prompt.textual.handcrafted"
    assert _family("maple") == "prompt.multimodal" and _family("clip-adapter") == "adapter.unimodal"
    assert _family("linear-probe") == "baseline" and _family("no-such-method") == "baseline"
    rows = [_row("zsclip", shots=0, accuracy=0.55), _row("coop", shots=1, accuracy=0.6),
            _row("clip-adapter", shots=1, accuracy=0.7)]
    one = accuracy_vs_shots(aggregate(rows[:2]), "t")
    two = accuracy_vs_shots(aggregate(rows), "t")
    assert one.startswith(b"\x89PNG") and two.startswith(b"\x89PNG") and one != two


def test_bench_rows_are_validated(tmp_path) -> None:
    (tmp_path / "bench").mkdir()
    path = tmp_path / "bench" / "a.json"
    path.write_text('[{"method": "m", "task": "t", "protocol": "retrieval", "shots": 0, "r1": NaN, "r5": "0.9",'
                    ' "domains": {"dim": Infinity, "dark": 0.5}}]')
    (row,) = load_bench(tmp_path).rows
    assert row["r1"] is None and row["r5"] is None and row["domains"] == {"dark": 0.5}
    path.write_text('[{"method": "m", "task": "t", "protocol": "few-shot", "shots": 1.5}]')
    with pytest.raises(VlmeftError, match=r"a\.json \[0\].*shots"):
        load_bench(tmp_path)


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


def test_measured_tables_call_the_whole_training_split_full() -> None:
    """A full-data cell is stored as shots = kinds._generative.FULL; the method page's table says
    "full", never the sentinel number."""
    from pathlib import Path

    from vlmeft.bench.report import load_rows
    from vlmeft.kinds._generative import FULL
    from vlmeft.sitegen.sections import aggregate, protocol_table

    rows = [r for r in load_rows(Path(__file__).resolve().parents[1] / "results" / "bench", "vl")
            if r["method"] == "magma" and r["protocol"] == "vqa"]
    assert {r["shots"] for r in rows} >= {16, FULL}
    table = protocol_table(None, "", aggregate(rows), "vqa", with_method=False)
    assert "| full |" in table and "| 16 |" in table and str(FULL) not in table
