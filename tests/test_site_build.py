"""`mkdocs build --strict` of the fixture KB and of the shipped KB, checked in the built HTML:
every internal link resolves, nothing loads from outside, record payloads stay inert text."""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from vlmeft.cli import main
from vlmeft.sitegen.build import build_site

FIXTURE = Path(__file__).parent / "data" / "site"
ASSET_TAGS = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"), ("source", "src")}


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fixture-site")
    return build_site(taxonomy=FIXTURE / "taxonomy", results_dir=FIXTURE / "results",
                      docs_dir=tmp / "docs", out=tmp / "site")


@pytest.fixture(scope="module")
def shipped_site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shipped-site")
    return build_site(docs_dir=tmp / "docs", out=tmp / "site")


class Page(HTMLParser):
    """Links, asset URLs, ids and anything executable in one HTML file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.assets: list[str] = []
        self.ids: set[str] = set()
        self.active: list[str] = []  # event handlers, javascript: URLs, payload scripts
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            value = value or ""
            if name == "id":
                self.ids.add(value)
            if name.startswith("on") or value.strip().lower().startswith("javascript:"):
                self.active.append(f"<{tag} {name}={value!r}>")
            if (tag, name) in ASSET_TAGS:
                self.assets.append(value)
            if tag == "a" and name == "href":
                self.links.append(value)
        if tag in ("iframe", "marquee", "object", "embed"):
            self.active.append(f"<{tag}>")
        self._script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and "__pwned" in data:
            self.active.append(f"<script>{data[:60]}")


def parse_site(root: Path) -> dict[Path, Page]:
    pages = {}
    for path in sorted(root.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path] = page
    return pages


def resolve(root: Path, page: Path, url: str) -> tuple[Path, str] | None:
    """The file and fragment an internal URL points to; None for external or special URLs."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "data:")):
        return None
    path = unquote(parts.path)
    if not path:
        return page, parts.fragment
    base = "/" if path.startswith("/") else "/" + page.parent.relative_to(root).as_posix() + "/"
    target = root / posixpath.normpath(posixpath.join(base, path)).lstrip("/")
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def check_links(root: Path) -> int:
    pages = parse_site(root)
    broken, checked = [], 0
    for page_path, page in pages.items():
        for url in page.links + page.assets:
            hit = resolve(root, page_path, url)
            if hit is None:
                continue
            checked += 1
            target, fragment = hit
            if not target.is_file():
                broken.append(f"{page_path.relative_to(root)} -> {url} (no file)")
            elif fragment and target in pages and fragment not in pages[target].ids:
                broken.append(f"{page_path.relative_to(root)} -> {url} (no anchor)")
    assert not broken, "\n".join(broken[:20])
    return checked


def test_fixture_site_links_all_resolve(fixture_site: Path) -> None:
    assert check_links(fixture_site) > 500  # the crawl really saw the site


def test_fixture_site_loads_nothing_from_outside(fixture_site: Path) -> None:
    outside = [(p.name, u) for p, page in parse_site(fixture_site).items() for u in page.assets
               if urlsplit(u).scheme or u.startswith("//")]
    assert not outside, outside[:10]
    html = (fixture_site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html and "assets/vendor/mermaid.min.js" in html


def test_record_payloads_are_escaped_text_in_built_html(fixture_site: Path) -> None:
    pages = parse_site(fixture_site)
    active = {str(p.relative_to(fixture_site)): page.active for p, page in pages.items() if page.active}
    assert not active, active
    html = (fixture_site / "generated/methods/xss-probe/index.html").read_text()
    assert "&lt;script&gt;window.__pwned = 'title'&lt;/script&gt;" in html  # shown, as text
    assert "&lt;img src=\"x\" onerror=" in html
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<" not in title and "XSSProbe" in title
    tags = (fixture_site / "tags.json").read_text() if (fixture_site / "tags.json").exists() else ""
    assert "<i>" not in tags


def test_fixture_site_has_the_pages(fixture_site: Path) -> None:
    for page in ("index.html", "contributing/index.html", "generated/taxonomy/index.html",
                 "generated/taxonomy/prompt.textual.learnable/index.html", "generated/methods/coop/index.html",
                 "generated/bibliography/index.html", "generated/conformance/index.html",
                 "generated/benchmark/index.html", "generated/tags/index.html", "generated/schema/index.html",
                 "generated/vlmeft.bib", "generated/img/base-vs-novel.png"):
        assert (fixture_site / page).is_file(), page
    tags = (fixture_site / "generated/tags/index.html").read_text()
    assert "category/prompt.textual.learnable" in tags and "year/2022" in tags


def test_home_page_holds_the_generated_overview(fixture_site: Path) -> None:
    html = (fixture_site / "index.html").read_text()
    assert "<!-- vlmeft:overview -->" not in html  # the hook replaced the marker
    assert 'id="which-method"' in html and 'class="vx-filter"' in html and 'class="mermaid"' in html
    assert 'href="generated/methods/coop/"' in html  # links were resolved like any page's
    assert not list(fixture_site.rglob("*.partial"))  # the partial itself is never published


def test_conformance_reasons_stay_literal(fixture_site: Path) -> None:
    html = (fixture_site / "generated/conformance/index.html").read_text()
    # A pipe stays inside its tooltip as an entity (the browser shows "|"; tests/browser checks
    # it there), and ":smile:" is not turned into an emoji (no emoji extension).
    assert 'title="batch 4 vs 1: max &#124;diff&#124; 3.8e-06 :smile:"' in html
    assert "&lt;span" not in html and "✅" not in html


def test_shipped_kb_builds_strict_with_links_resolving(shipped_site: Path) -> None:
    from vlmeft.kb.load import load_kb

    kb = load_kb()
    for method_id in kb.methods:
        assert (shipped_site / f"generated/methods/{method_id}/index.html").is_file()
    assert check_links(shipped_site) > 1000


def test_cli_reports_a_bad_taxonomy_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(["site", "build", "--taxonomy", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
