"""The built site in a real browser (Debian chromium via Playwright), fully offline.

Every page load is watched: a request to anything but the local test server is
recorded and aborted, and any JavaScript error or console error fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")

TIMEOUT_MS = 20_000


class Watched:
    """A page plus what it did that it must not: leave 127.0.0.1, throw, log errors."""

    def __init__(self, context: object, site_url: str, *, block: bool = True) -> None:
        """``block=False`` only records requests that leave 127.0.0.1 (routing every request
        through Python costs about a quarter of a page load; tests that visit every page use it)."""
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.site_url = site_url
        if block:
            context.route("**/*", self._guard)
        context.on("request", self._seen)  # also catches requests that bypass routing (workers)
        self.page = context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)

    def _local(self, url: str) -> bool:
        return url.startswith(self.site_url + "/") or url == self.site_url or url.startswith(("data:", "blob:", "about:"))

    def _guard(self, route: object) -> None:
        url = route.request.url
        if self._local(url):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _seen(self, request: object) -> None:
        if not self._local(request.url) and request.url not in self.outside:
            self.outside.append(request.url)

    def _console(self, msg: object) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")


@pytest.fixture
def watched(browser: object, site_url: str) -> Iterator[Watched]:
    context = browser.new_context()
    w = Watched(context, site_url)
    yield w
    context.close()
    assert not w.outside, f"requests left 127.0.0.1: {w.outside}"
    assert not w.errors, f"JavaScript errors: {w.errors}"


def test_search_finds_coop(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.goto(f"{site_url}/")
    box = page.locator("input.md-search__input")
    box.click()  # the header search box (desktop width)
    box.press_sequentially("CoOp", delay=50)  # typed like a reader, key by key
    page.wait_for_selector(".md-search-result__item", timeout=TIMEOUT_MS)
    hrefs = page.locator(".md-search-result__item a").evaluate_all("els => els.map(e => e.href)")
    assert urlsplit(hrefs[0]).path == "/generated/methods/coop/", hrefs  # the best match is its page


def test_search_finds_alias_and_id(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.goto(f"{site_url}/?q=adaptmlp")  # AdaptFormer's second alias; ?q= opens search pre-filled
    page.wait_for_selector(".md-search-result__item", timeout=TIMEOUT_MS)
    hrefs = page.locator(".md-search-result__item a").evaluate_all("els => els.map(e => e.href)")
    assert urlsplit(hrefs[0]).path == "/generated/methods/adaptformer/", hrefs


def test_method_page_shows_bibtex_with_copy_button(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.goto(f"{site_url}/generated/methods/coop/")
    block = page.locator(".tabbed-block").first
    text = block.inner_text()
    assert "@article{coop," in text and "Learning to Prompt for" in text, text[:300]
    assert block.locator("button[data-md-type=copy]").count() == 1  # Material's copy button
    page.get_by_text("CSL-JSON", exact=True).first.click()
    assert '"type": "article-journal"' in page.locator(".tabbed-block").nth(1).inner_text()


# Material renders each diagram into a *closed* shadow root, which selectors cannot
# enter; for the test, shadow roots are opened so the rendered SVG can be inspected.
OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
"""


def test_taxonomy_diagram_renders_as_svg(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.add_init_script(OPEN_SHADOW_ROOTS)
    page.goto(f"{site_url}/generated/taxonomy/")
    svg = page.wait_for_selector(".mermaid svg", timeout=TIMEOUT_MS)
    labels = svg.text_content() or ""
    assert "Learnable text prompt" in labels and "Unimodal adapter" in labels, labels[:300]


def test_tables_sort(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.goto(f"{site_url}/generated/methods/")
    table = page.locator("article table").first
    first_cells = "t => [...t.querySelectorAll('tbody tr')].map(r => r.cells[2].innerText)"
    table.locator("th", has_text="year").click()
    years = table.evaluate(first_cells)
    assert years == sorted(years), years
    table.locator("th", has_text="year").click()
    assert table.evaluate(first_cells) == sorted(years, reverse=True)


def test_injected_markup_stays_inert(watched: Watched, site_url: str) -> None:
    page = watched.page
    page.goto(f"{site_url}/generated/methods/xss-probe/")
    assert "<script>window.__pwned" in page.locator("article h1").inner_text()
    page.goto(f"{site_url}/generated/methods/xss-probe/?q=probe")
    page.wait_for_selector(".md-search-result__item", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("article marquee, article iframe, article svg[onload], img[src='x']").count() == 0
