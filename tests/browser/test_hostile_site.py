"""The accepted hostile records (tests/data/hostile, kind "markup") built into a site and
opened in chromium: no dialog opens, no script from a record runs (every payload would set
``window.__pwned`` or call ``alert``), and the payload text is shown, escaped, as text.

The fixture site of test_site_browser.py carries one such record; here the corpus' records
(markup in every text field, attribute breakouts, Markdown link and attr-list tricks) are
added to it and every page that shows record text is visited, search included.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM
from tests.browser.test_site_browser import TIMEOUT_MS, Watched
from vlmeft import robustness
from vlmeft.sitegen.build import build_site, serving

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")

DATA = Path(__file__).resolve().parents[1] / "data"
HOSTILE = DATA / "hostile"
RECORDS = sorted(n for n, e in robustness.load_manifest(HOSTILE).items() if e["expect"] == "accepted")
PAGES = ["generated/methods/html-script-title/", "generated/methods/html-everywhere/", "generated/methods/",
         "generated/taxonomy/prompt.textual.learnable/", "generated/bibliography/", "generated/tags/",
         "generated/benchmark/", "generated/conformance/"]


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile-site")
    taxonomy = tmp / "taxonomy"
    shutil.copytree(DATA / "site" / "taxonomy", taxonomy)
    # The hostile records carry payloads in every free-text field, results' metric and dataset
    # included: a KB without controlled result ids (no vocab.yaml) shows those as text.
    (taxonomy / "vocab.yaml").unlink()
    for name in RECORDS:
        shutil.copy(HOSTILE / name, taxonomy / "methods" / name)
    return build_site(taxonomy=taxonomy, results_dir=DATA / "site" / "results", docs_dir=tmp / "docs",
                      out=tmp / "site")


@pytest.fixture(scope="module")
def url(hostile_site: Path) -> Iterator[str]:
    with serving(hostile_site) as base:
        yield base


@pytest.fixture
def watched(browser: object, url: str) -> Iterator[Watched]:
    context = browser.new_context()
    w = Watched(context, url)
    w.dialogs = []
    w.page.on("dialog", lambda d: (w.dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
    yield w
    context.close()
    assert not w.outside, f"requests left 127.0.0.1: {w.outside}"
    assert not w.errors, f"JavaScript errors: {w.errors}"


def _pwned(page: object) -> list[str]:
    """``window.__pwned`` in the page and in every frame (an iframe payload sets parent.__pwned)."""
    return [f.evaluate("String(window.__pwned)") for f in page.frames
            if f.evaluate("typeof window.__pwned") != "undefined"]


@pytest.mark.parametrize("path", PAGES)
def test_no_record_script_runs(watched: Watched, url: str, path: str) -> None:
    page = watched.page
    page.goto(f"{url}/{path}")
    page.wait_for_load_state("load")
    page.mouse.move(5, 5)
    page.wait_for_timeout(200)
    assert not watched.dialogs, watched.dialogs
    assert not _pwned(page)
    assert page.locator("article iframe, article marquee, article details[ontoggle], article img[src='x'], "
                        "article svg[onload], article style").count() == 0


def test_script_title_is_shown_as_text(watched: Watched, url: str) -> None:
    page = watched.page
    page.goto(f"{url}/generated/methods/html-script-title/")
    heading = page.locator("article h1").inner_text()
    assert "<script>window.__pwned = 'title'; alert('title')</script>" in heading


def test_every_field_of_the_markup_record_is_literal(watched: Watched, url: str) -> None:
    page = watched.page
    page.goto(f"{url}/generated/methods/html-everywhere/")
    text = page.locator("article").inner_text()
    for literal in ("\"><img src=x onerror=", "<svg onload=", "<iframe srcdoc=", "[a link](javascript:",
                    "{: onclick=", "--8<--", "<style>body{display:none}</style>", "<details open ontoggle="):
        assert literal in text, literal
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))], hrefs


def test_search_results_stay_inert(watched: Watched, url: str) -> None:
    page = watched.page
    page.goto(f"{url}/generated/methods/?q=pwned")
    page.wait_for_selector(".md-search-result__item", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    assert not watched.dialogs and not _pwned(page)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith(("javascript:", "data:text")):
                self.bad.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and "__pwned" in data:
            self.bad.append(data[:80])


def test_built_html_holds_the_payload_only_as_escaped_text(hostile_site: Path) -> None:
    """The static check behind the browser's: across every built page, no element, handler
    or script carries a payload, and the title payload is present as escaped text."""
    bad = {}
    for page in hostile_site.rglob("*.html"):
        parser = _Scripts()
        parser.feed(page.read_text(encoding="utf-8"))
        if parser.bad:
            bad[str(page.relative_to(hostile_site))] = parser.bad
    assert not bad, bad
    html = (hostile_site / "generated/methods/html-script-title/index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;window.__pwned = 'title'; alert('title')&lt;/script&gt;" in html
    assert "<script>window.__pwned" not in html
