"""The knowledge-base site pages: coverage (with plots), changelog, citations, the literature
leaderboard (reported numbers with sources, measured numbers kept apart), and the sources and
classification notes on method pages."""

from __future__ import annotations

import re

import pytest

from vlmeft.kb.load import load_kb
from vlmeft.sitegen import kb_pages, leaderboard_pages
from vlmeft.sitegen.generate import make_context, render
from vlmeft.sitegen.method_pages import method_page

B2N = ("base-to-novel", "avg-11", "vit-b-16", None)


@pytest.fixture(scope="module")
def ctx():
    return make_context(load_kb())


def test_coverage_page_has_its_plots(ctx):
    page, images = kb_pages.coverage_page(ctx)
    assert len(images) == 3
    for path, png in images.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert path.rsplit("/", 1)[1] in page  # the page shows every plot it makes
    assert f"holds {len(ctx.kb.methods)} records" in page


def test_changelog_page_lists_the_release(ctx):
    page = kb_pages.changelog_page(ctx)
    version = ctx.kb.meta.version
    assert f"{{#v{version.replace('.', '-')}}}" in page and "../methods/evp.md" in page and "Added (" in page


def test_cite_page_cites_every_node(ctx):
    page = kb_pages.cite_page(ctx)
    for node_id in ctx.nodes:
        assert f"vlmeft:{node_id}," in page


def test_method_page_shows_sources_notes_and_unverified(ctx):
    page = method_page(ctx, ctx.kb.methods["mvlpt"])
    assert "## How this record was checked" in page and "official BibTeX" in page
    assert "## Classification notes" in page and "Decoupled multimodal prompt" in page
    assert "WACV 2024 is not given" in page  # the unverified reason
    assert "| Not yet checked against a primary source | `venue`, `year` |" in page  # field names, not objects


def test_every_leaderboard_number_links_to_its_source(ctx):
    nav, files = leaderboard_pages.nav_and_files(ctx, bench_rows=[])
    board = files[leaderboard_pages.board_path(B2N)]
    values = {f"{r.value:.2f}" for r in ctx.kb.methods["maple"].results}
    for value in values:
        shown = value.replace(".", "\\.")  # link text is escaped Markdown
        assert re.search(rf'<a href="https://[^"]+" rel="noopener">{re.escape(shown)}</a>', board), value
    assert "measured here" not in board.split("\n\n", 3)[-1].split("|")[0] or "Nothing on this board" in board
    index = files[leaderboard_pages.INDEX]
    assert index.count("](") >= len(files) - 1  # the index links every board
    assert nav[0]["Leaderboard"][0] == leaderboard_pages.INDEX


def test_ranking_is_by_hm_and_a_discrepancy_is_marked(ctx):
    _, files = leaderboard_pages.nav_and_files(ctx, bench_rows=[])
    board = files[leaderboard_pages.board_path(B2N)]
    rows = [ln for ln in board.splitlines() if ln.startswith("| ") and ln[2:3].isdigit()]
    hms = [float(re.findall(r">([0-9\\.]+)(?:\\\*)?</a>", ln)[0].replace("\\", "")) for ln in rows]
    assert len(hms) == len(rows) >= 15 and hms == sorted(hms, reverse=True)
    assert "77\\.78\\*" in board and "Kept as printed" in board


def _rows(method: str, base: float, novel: float, seeds=(1, 2)) -> list[dict]:
    datasets = ctx_datasets()
    return [{"method": method, "task": f"coop:{d}", "protocol": "base-to-novel", "shots": 16, "seed": s,
             "backbone": "ViT-B-16", "backbone_weights": "openai", "base": base, "novel": novel}
            for d in datasets for s in seeds]


def ctx_datasets() -> list[str]:
    return load_kb().vocab.datasets["avg-11"].members


def test_measured_numbers_sit_beside_reported_ones_never_in_the_ranking(ctx):
    rows = _rows("coop", 0.80, 0.60)
    _, files = leaderboard_pages.nav_and_files(ctx, bench_rows=rows)
    board = files[leaderboard_pages.board_path(B2N)]
    assert "HM measured here" in board
    coop = next(ln for ln in board.splitlines() if "[CoOp](" in ln)
    assert "68.57 (2 seeds)" in coop  # HM of the averaged base 80 and novel 60, in percent
    assert "71\\.66" in coop  # the reported HM stays the reported one
    maple = next(ln for ln in board.splitlines() if "[MaPLe](" in ln)
    assert maple.rstrip(" |").endswith("–")  # not measured: no number invented
    # Measured rows for only some of the 11 datasets give no average.
    partial = [r for r in rows if r["task"] != "coop:eurosat"]
    measured = leaderboard_pages.Measured(ctx.kb, partial)
    assert measured.stat("coop", "avg-11", "base-to-novel", "vit-b-16", 16, "hm") is None
    assert measured.stat("coop", "dtd", "base-to-novel", "vit-b-16", 16, "base")[0] == pytest.approx(80.0)


def test_synthetic_bench_rows_never_reach_the_leaderboard(ctx):
    rows = [{"method": "coop", "task": "digits", "protocol": "few-shot", "shots": 16, "seed": 1,
             "backbone": "synthclip-tiny", "accuracy": 0.9}]
    measured = leaderboard_pages.Measured(ctx.kb, rows)
    assert measured.groups == {}


def test_full_render_has_the_new_nav_sections(ctx):
    site = render(ctx, frozenset())
    flat = repr(site.nav)
    assert "'Leaderboard'" in flat and "'Knowledge base'" in flat
    for path in (*kb_pages.PAGES.values(), leaderboard_pages.INDEX):
        assert path in site.files
