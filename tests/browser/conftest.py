"""Fixtures for the browser tests: sites built once per session, served on 127.0.0.1, and
one chromium shared by every browser test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlmeft.sitegen.build import build_site, serving

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "site"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless chromium for the whole session (each test opens its own context)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture KB (with results) after `mkdocs build --strict`."""
    tmp = tmp_path_factory.mktemp("browser-site")
    return build_site(taxonomy=FIXTURE / "taxonomy", results_dir=FIXTURE / "results",
                      docs_dir=tmp / "docs", out=tmp / "site")


@pytest.fixture(scope="session")
def site_url(built_site: Path) -> Iterator[str]:
    with serving(built_site) as url:
        yield url


@pytest.fixture(scope="session")
def shipped_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped KB and results built once: ``(docs_dir, site_dir)``; the docs folder keeps
    the Markdown every page was built from."""
    tmp = tmp_path_factory.mktemp("shipped-site")
    site = build_site(docs_dir=tmp / "docs", out=tmp / "site")
    return tmp / "docs", site


@pytest.fixture(scope="session")
def shipped_url(shipped_build: tuple[Path, Path]) -> Iterator[str]:
    with serving(shipped_build[1]) as url:
        yield url
