"""Generate the pages, then run ``mkdocs build --strict`` in-process; serve the result.

The repository's ``mkdocs.yml`` holds the theme and extensions. The build writes a
small overlay config (``INHERIT: mkdocs.yml``) next to the output that adds what
depends on the data: the navigation, the allowed tag vocabulary, and absolute
docs/site/theme folders, so the same code builds the shipped KB or a test fixture
into any folder.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.sitegen.generate import GEN, GeneratedSite, generate

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "mkdocs.yml"
THEME_OVERRIDES = Path(__file__).resolve().parent / "overrides"
HOOKS = Path(__file__).resolve().parent / "hooks.py"  # the home page's generated part
SEARCH_SEPARATOR = r"[\s\-\._/:,]+"  # ids such as tip-adapter-f or prompt.visual.token split into words


def _overlay(site: GeneratedSite, docs_dir: Path, site_dir: Path, base: Path) -> dict[str, Any]:
    return {
        "INHERIT": str(base),
        "docs_dir": str(docs_dir),
        "site_dir": str(site_dir),
        "theme": {"name": "material", "custom_dir": str(THEME_OVERRIDES)},
        "nav": site.nav,
        "hooks": [str(HOOKS)],
        "plugins": [
            {"search": {"separator": SEARCH_SEPARATOR}},
            {"tags": {"tags_allowed": site.tags}},
        ],
    }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def mkdocs_build(site: GeneratedSite, docs_dir: Path, site_dir: Path, *, base_config: Path = CONFIG) -> Path:
    """``mkdocs build --strict`` of ``docs_dir`` into ``site_dir``; returns ``site_dir``."""
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # Material's banner about MkDocs 2.0
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort, ConfigurationError

    if not base_config.is_file():
        raise VlmeftError("mkdocs.yml not found: `vlmeft site` runs from a source checkout", where=str(base_config))
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    collect = _Collect()
    logger = logging.getLogger("mkdocs")
    logger.addHandler(collect)
    with tempfile.TemporaryDirectory(prefix="vlmeft-mkdocs-") as tmp:
        overlay = Path(tmp) / "mkdocs.yml"
        overlay.write_text(json.dumps(_overlay(site, docs_dir.resolve(), site_dir.resolve(), base_config.resolve()),
                                      indent=1), encoding="utf-8")
        try:
            config = load_config(config_file=str(overlay), strict=True)
            build(config)
        except (Abort, ConfigurationError) as err:
            detail = "; ".join(collect.messages[:5]) or str(err)
            raise VlmeftError(f"mkdocs build --strict failed: {detail}", where=str(docs_dir)) from None
        finally:
            logger.removeHandler(collect)
    return site_dir


def build_site(*, taxonomy: Path | None = None, out: Path | None = None, results_dir: Path | None = None,
               docs_dir: Path | None = None) -> Path:
    """Load the KB, generate its pages into ``docs_dir/generated`` and build into ``out``.

    ``docs_dir`` defaults to the checkout's ``site/``; any other folder is first filled
    with a copy of the hand-written pages (tests build fixtures that way).
    """
    from vlmeft.kb.load import load_kb

    kb = load_kb(taxonomy)
    source = REPO_ROOT / "site"
    if docs_dir is None:
        docs_dir = source
    elif docs_dir.resolve() != source.resolve():
        copy_hand_written(source, docs_dir)
    out = out or REPO_ROOT / "build" / "site"
    results_dir = results_dir if results_dir is not None else REPO_ROOT / "results"
    site = generate(kb, docs_dir, results_dir=results_dir)
    return mkdocs_build(site, docs_dir, out)


def copy_hand_written(src: Path, dst: Path) -> None:
    """Copy the hand-written docs (everything but generated pages) into a fresh docs_dir."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(GEN, ".generated-*"), dirs_exist_ok=True)


@contextmanager
def serving(site_dir: Path, port: int = 0) -> Iterator[str]:
    """Serve ``site_dir`` on 127.0.0.1 in a thread; yields the base URL, shuts down after."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


def serve_forever(site_dir: Path, port: int) -> None:
    """Serve the built site until interrupted (``vlmeft site serve``)."""
    if not (site_dir / "index.html").is_file():
        raise VlmeftError("no built site here; run `vlmeft site build` first", where=str(site_dir))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site_dir))
    try:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise VlmeftError(f"cannot listen on 127.0.0.1:{port}: {err.strerror}") from None
    print(f"serving {site_dir} at http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    with httpd:
        httpd.serve_forever()
