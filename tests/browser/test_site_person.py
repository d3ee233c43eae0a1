"""The shipped site as a person sees it, in chromium: every page, built once per session.

For every page (hand-written and generated):

* no raw HTML tag text shows (a ``<span title="...`` that leaked out of a broken table cell);
* no character needs an emoji or symbol font (the site ships none: status icons are CSS masks);
* every Markdown table row has as many cells as its header. This is read from the Markdown each
  page was built from, because Python-Markdown pads or drops cells silently: in the HTML the
  counts always match, and a bad row only shows as shifted columns and raw markup text.

Then the pages a reader starts from are screenshot at desktop and phone width into
:data:`SCREENSHOTS` (``build/screenshots/``, or ``$VLMEFT_SCREENSHOTS``) for a person to look
at, and must not scroll sideways on a phone. The home page's overview is sorted and filtered
with real clicks and keystrokes. Each checker is first shown to catch a bad page.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM
from tests.browser.test_site_browser import TIMEOUT_MS, Watched
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import PATHS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("VLMEFT_SCREENSHOTS") or REPO / "build" / "screenshots")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def url_of(md_path: str) -> str:
    """The URL path of a docs_dir Markdown page (use_directory_urls)."""
    stem = md_path[:-3]
    if stem == "index" or stem.endswith("/index"):
        return stem[:-5]
    return stem + "/"


# Pages to screenshot: (name, docs_dir Markdown path). Data-driven: a page that this checkout
# does not generate (the leaderboard, until it exists) is skipped, not failed.
SHOTS = [("home", "index.md"), ("taxonomy", PATHS["taxonomy"]), ("method", "generated/methods/coop.md"),
         ("conformance", PATHS["conformance"]), ("benchmark", PATHS["benchmark"]),
         ("leaderboard", PATHS.get("leaderboard", "generated/leaderboard.md"))]

# What a person would see: text nodes outside code, and generated (::before/::after) content.
LOOK = r"""(root) => {
  const CODE = new Set(["CODE", "PRE", "KBD", "SAMP", "SCRIPT", "STYLE"]);
  const TAG = /<\/?[A-Za-z][A-Za-z0-9-]*(?=[\s>\/]|$)/;
  // Emoji, dingbats, miscellaneous symbols and technical signs, geometric shapes, enclosed
  // alphanumerics, the emoji variation selector: glyphs ordinary text fonts do not carry.
  const SYMBOL = /[\u2300-\u23FF\u2460-\u24FF\u25A0-\u25FF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]|[\u{1F000}-\u{1FAFF}]/u;
  const SYMBOLS = new RegExp(SYMBOL.source, "gu");
  const glyphs = (root.textContent.match(SYMBOLS) || []).slice(0, 10);  // code included: fonts draw code too
  const raw = [], styled = [];
  // One walk over elements and text outside code (code subtrees are skipped whole: the
  // highlighter writes thousands of spans, and code may show "<b>" on purpose).
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT,
    {acceptNode: n => n.nodeType === 1 && CODE.has(n.tagName) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeType === 3) {
      if (TAG.test(node.textContent)) raw.push(node.textContent.trim().slice(0, 80));
    } else {
      styled.push(node);
    }
  }
  // Generated content (::before/::after): icons must not be font glyphs either. Checked once per
  // kind of element (tag and class, and its parent's): CSS gives content by selector, and a
  // method page has thousands of alike cells and links.
  const kinds = new Set();
  for (const el of styled) {
    const parent = el.parentElement;
    const kind = el.tagName + "." + el.className + "<" + (parent ? parent.tagName + "." + parent.className : "");
    if (kinds.has(kind)) continue;
    kinds.add(kind);
    for (const pseudo of ["::before", "::after"]) {
      const content = getComputedStyle(el, pseudo).content;
      if (content !== "none" && content !== "normal" && SYMBOL.test(content)) glyphs.push(pseudo + " " + content);
    }
  }
  // Every status icon is the site's own CSS mask (an inline SVG), drawn at a visible size.
  const icons = [...root.querySelectorAll(".vx-status")];
  const badIcons = icons.filter(e => {
    const s = getComputedStyle(e, "::before");
    const mask = s.maskImage || s.webkitMaskImage || "";
    return !mask.startsWith('url("data:image/svg+xml') || parseFloat(s.width) < 8 || parseFloat(s.height) < 8;
  }).map(e => e.outerHTML.slice(0, 80));
  return {raw, glyphs, badIcons, icons: icons.length};
}"""


def look(page: object, where: str = "main") -> dict:
    return page.evaluate(LOOK, page.query_selector(where) or page.query_selector("body"))


def markdown_pages(docs: Path) -> list[str]:
    """Every page MkDocs builds: hand-written and generated (not dot-files, not the vendored notes)."""
    return sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
                  if not any(part.startswith(".") for part in p.relative_to(docs).parts)
                  and not p.relative_to(docs).as_posix().startswith("assets/"))


@pytest.fixture(scope="module")
def person(browser: object, shipped_build: tuple[Path, Path], shipped_url: str) -> Iterator[Watched]:
    """One desktop page, reused for every page visit (a new context per page costs seconds)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = Watched(context, shipped_url, block=False)
    # Material's search worker indexes the whole site on every page load (a quarter of the CPU
    # of this test); searching is tested in test_site_browser.py, so here it gets an empty index.
    index = json.loads((shipped_build[1] / "search" / "search_index.json").read_text(encoding="utf-8"))
    context.route("**/search/search_index.json", lambda route: route.fulfill(json={**index, "docs": []}))
    yield w
    context.close()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Page errors and outside requests count against the test that caused them."""
    if "person" not in request.fixturenames:
        yield
        return
    w = request.getfixturevalue("person")
    w.errors.clear()
    w.outside.clear()
    yield
    assert not w.outside, f"requests left 127.0.0.1: {w.outside}"
    assert not w.errors, f"JavaScript errors: {w.errors}"


# --- the checkers catch what they are for ----------------------------------------------------

def test_checkers_catch_raw_tags_symbol_glyphs_and_font_icons(person: Watched) -> None:
    page = person.page
    page.set_content('<main><p>pass: <span>✅</span></p><table><tr><td>&lt;span title="batch 4 vs 1: max</td></tr>'
                     '</table><pre>&lt;b&gt; in code is fine</pre><span class="vx-status vx-pass">pass</span></main>')
    seen = look(page)
    assert seen["raw"] == ['<span title="batch 4 vs 1: max'], seen
    assert seen["glyphs"] == ["✅"], seen
    assert len(seen["badIcons"]) == 1  # no site CSS here: the icon would not be drawn


def test_table_check_catches_a_pipe_in_a_reason() -> None:
    old_cell = '<span title="batch 4 vs 1: max |diff| 3.8e-06">✅ pass</span>'  # what the page used to hold
    table = md.table(["method", "batch_size_invariant", "deterministic"], [["coop", old_cell, "pass"]])
    (problem,) = md.table_problems(table)
    assert problem.startswith("line 3: 5 cells under a 3-column header"), problem
    fixed = '<span title="' + md.attr("batch 4 vs 1: max |diff| 3.8e-06") + '">pass</span>'
    assert md.table_problems(md.table(["method", "check", "x"], [["coop", fixed, "pass"]])) == []


# --- every page ------------------------------------------------------------------------------

def test_every_page_reads_cleanly(person: Watched, shipped_build: tuple[Path, Path], shipped_url: str) -> None:
    """One pass over all pages (a test per page would pay pytest's overhead ninety times)."""
    docs, site = shipped_build
    pages = markdown_pages(docs)
    assert len(pages) > 80, pages  # hand-written and generated: methods, taxonomy, results, ...
    bad: dict[str, object] = {}
    icons = 0
    for md_path in pages:
        problems = md.table_problems((docs / md_path).read_text(encoding="utf-8"))
        if md_path == "index.md":  # the home page's tables come from the generated partial
            problems += md.table_problems((docs / "generated" / ".home-overview.partial").read_text(encoding="utf-8"))
        person.page.goto(f"{shipped_url}/{url_of(md_path)}")
        # The navigation (every page's title) is the same on each page: read it whole once, on
        # the home page, and only the article elsewhere.
        seen = look(person.page, "main" if md_path == "index.md" else "article")
        icons += seen["icons"]
        found = {k: v for k, v in {"tables": problems, "raw tags": seen["raw"], "symbol glyphs": seen["glyphs"],
                                   "icons not drawn by the site": seen["badIcons"]}.items() if v}
        if found:
            bad[md_path] = found
    assert not bad, bad
    assert icons > 900  # the conformance matrix alone draws one per cell: the icon check saw them


# --- screenshots, phone width ----------------------------------------------------------------

@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_screenshots(browser: object, shipped_build: tuple[Path, Path], shipped_url: str, width: str) -> None:
    docs, _ = shipped_build
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h})
    watched = Watched(context, shipped_url)
    page = watched.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    taken, overflow = [], {}
    try:
        for name, md_path in SHOTS:
            if not (docs / md_path).is_file():
                continue  # not generated in this checkout (see SHOTS)
            page.goto(f"{shipped_url}/{url_of(md_path)}")
            page.wait_for_load_state("load")
            # Material swaps each <pre class="mermaid"> for a <div> holding the drawn diagram.
            page.wait_for_function("() => !document.querySelector('pre.mermaid')", timeout=TIMEOUT_MS)
            page.wait_for_timeout(300)  # fonts and layout settle
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > w + 1:
                overflow[name] = scroll
            out = SCREENSHOTS / f"{name}-{width}.png"
            page.screenshot(path=str(out), full_page=True)
            assert out.stat().st_size > 10_000, out
            taken.append(name)
    finally:
        context.close()
    print(f"\nscreenshots ({width}): {', '.join(taken)} in {SCREENSHOTS}")
    assert {"home", "taxonomy", "method", "conformance", "benchmark"} <= set(taken), taken
    assert not overflow, f"pages wider than the {width} viewport (px): {overflow}"
    assert not watched.outside and not watched.errors, (watched.outside, watched.errors)


# --- the pages' own promises -----------------------------------------------------------------

def _column(page: object, header: str) -> list[str]:
    return page.evaluate("""([h]) => {
      const t = [...document.querySelectorAll("article table")].find(t => [...t.tHead.rows[0].cells]
        .some(c => c.textContent.trim() === h));
      const i = [...t.tHead.rows[0].cells].findIndex(c => c.textContent.trim() === h);
      return [...t.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[i].textContent.trim());
    }""", [header])


def _number(text: str) -> float:
    return float("-inf") if text == "–" else float(text.replace(",", "").rstrip("*"))


def test_home_overview_sorts_and_filters_like_a_person_would(person: Watched, shipped_url: str) -> None:
    page = person.page
    page.goto(f"{shipped_url}/")
    page.wait_for_load_state("load")
    table = page.locator("article table").filter(has=page.locator("th", has_text="reported HM"))
    total = table.locator("tbody tr").count()
    assert total >= 50 and page.locator(".vx-filter-count").inner_text() == f"{total} entries"
    # Sort by parameter count: numbers, not strings ("131,072" after "8,192"); "–" below every number.
    header = table.locator("th", has_text="params")
    header.click()
    params = _column(page, "params, ViT-B/16")
    assert [_number(p) for p in params] == sorted(_number(p) for p in params), params
    assert params[0] == "–" and params[-1] == "3,817,216"  # CoPrompt's: MaPLe's deep prompts plus two adapters
    header.click()
    assert [_number(p) for p in _column(page, "params, ViT-B/16")] == sorted((_number(p) for p in params), reverse=True)
    table.locator("th", has_text="reported HM").click()
    table.locator("th", has_text="reported HM").click()  # descending: the best reported HM first
    hm = [h for h in _column(page, "reported HM") if h != "–"]
    assert hm == sorted(hm, key=float, reverse=True) and len(hm) >= 10, hm
    # Filter: typed key by key; every word must occur in a row.
    box = page.locator("input.vx-filter")
    box.click()
    box.press_sequentially("coupled prompt", delay=30)
    shown = table.locator("tbody tr:not([hidden])")
    names = shown.locator("td:first-child").all_inner_texts()
    assert "MaPLe" in names and "CoOp" not in names and len(names) < total, names
    assert all("coupled" in t.lower() for t in shown.all_inner_texts())
    assert page.locator(".vx-filter-count").inner_text() == f"{len(names)} of {total} shown"
    # Sorting keeps the filter; clearing it brings every row back.
    table.locator("th", has_text="method").first.click()
    assert shown.locator("td:first-child").all_inner_texts() == sorted(names, key=str.lower)
    box.fill("")
    assert table.locator("tbody tr:not([hidden])").count() == total
    # Each row links to its method page.
    href = table.locator("tbody tr td:first-child a").first.get_attribute("href")
    assert re.fullmatch(r"generated/methods/[a-z0-9-]+/", href or ""), href


def test_conformance_tabs_show_each_backbones_own_cells(person: Watched, shipped_url: str) -> None:
    page = person.page
    page.goto(f"{shipped_url}/{url_of(PATHS['conformance'])}")
    page.wait_for_load_state("load")
    labels = page.locator(".tabbed-labels label").all_inner_texts()
    assert labels[:3] == ["synthclip-tiny", "vlmeft-tiny-vit", "vlmeft-tiny-rn"], labels

    def visible_reasons() -> list[str]:
        return page.evaluate("""() => [...document.querySelectorAll('.tabbed-block')]
            .filter(b => b.offsetParent !== null)
            .flatMap(b => [...b.querySelectorAll('.vx-status[title]')].map(s => s.title))""")

    first = visible_reasons()
    assert first and not [r for r in first if "ResNet image tower" in r]  # the rn tab's reasons stay there
    page.locator(".tabbed-labels label", has_text="vlmeft-tiny-rn").click()
    assert [r for r in visible_reasons() if "ResNet image tower" in r]
    # A reason with "|" is whole in its tooltip, not split across cells.
    assert any("max |diff|" in r for r in first), first[:5]


def test_benchmark_opens_with_plots_and_links_pivots_to_full_rows(person: Watched, shipped_url: str) -> None:
    page = person.page
    page.goto(f"{shipped_url}/{url_of(PATHS['benchmark'])}")
    page.wait_for_load_state("load")
    order = page.evaluate("() => [...document.querySelectorAll('article h2')].map(h => h.id)")
    assert order[:3] == ["plots", "summary", "results"], order
    assert page.locator("#plots ~ p img").count() >= 2
    details = page.locator("article details")
    assert details.count() >= 3 and all(not d for d in details.evaluate_all("els => els.map(e => e.open)"))
    page.locator("a", has_text="every row").first.click()
    page.wait_for_timeout(300)
    target = page.evaluate("location.hash")
    # With rows of two backbones (the CLIP and the captioner) each backbone's sections carry its name.
    assert target.startswith("#full-few-shot"), target
    assert page.evaluate("id => document.getElementById(id).closest('details').open", target[1:])
