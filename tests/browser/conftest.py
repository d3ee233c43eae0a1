"""Fixtures for the browser tests: the fixture KB built into a site, served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vlmeft.sitegen.build import build_site, serving

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "site"


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
