"""MkDocs hooks (``hooks:`` in the overlay config that :mod:`vlmeft.sitegen.build` writes).

The home page is hand-written, but its taxonomy diagram and "which method?" table are data:
the generator writes them to :data:`vlmeft.sitegen.overview.PARTIAL` and this hook puts them
in place of the marker while MkDocs reads ``index.md``, before Markdown is rendered (so the
usual link checks of ``--strict`` apply to them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmeft.sitegen.overview import HOME, MARKER, PARTIAL


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001
    if page.file.src_uri != HOME or MARKER not in markdown:
        return markdown
    partial = Path(config["docs_dir"]) / PARTIAL
    if not partial.is_file():
        return markdown  # nothing generated (a bare docs folder): the marker is an invisible comment
    return markdown.replace(MARKER, partial.read_text(encoding="utf-8"), 1)
