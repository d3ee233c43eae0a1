"""Markdown building blocks that keep record text inert.

Everything that comes from a record (titles, summaries, authors, URLs) passes through
:func:`text` or :func:`ext_link` before it reaches a page. Python-Markdown passes raw
HTML straight through and extensions give meaning to characters such as ``{`` (attr_list)
or ``--8<--`` (snippets), so record text is HTML-escaped *and* every Markdown-special
character is backslash-escaped: it renders as the literal characters, never as markup.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

# Python-Markdown's ESCAPED_CHARS plus '|' (tables): exactly the characters a backslash
# escape is defined for, so each renders as itself. Only extensions that use no other
# syntax characters are enabled in mkdocs.yml (no emoji, mark, tilde, caret, snippets).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|])")
_WS = re.compile(r"\s+")
_SAFE_TAG = re.compile(r"[^A-Za-z0-9 ._+-]+")


def text(value: object) -> str:
    """Record text as inline Markdown that renders literally (one line)."""
    flat = _WS.sub(" ", str(value)).strip()
    return _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def attr(value: object) -> str:
    """A value for an HTML attribute inside raw HTML. ``|`` becomes ``&#124;`` too: raw HTML
    often sits in a Markdown table cell, where a bare pipe would end the cell mid-attribute."""
    return html.escape(str(value), quote=True).replace("|", "&#124;")


def safe_url(url: object) -> str | None:
    """The URL if it is an absolute http(s) URL without whitespace or quotes, else None."""
    s = str(url or "").strip()
    if not s or any(c in s for c in " \t\r\n\"'<>`"):
        return None
    parts = urlsplit(s)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return None
    return s


def ext_link(url: object, label: object | None = None) -> str:
    """An outbound link as raw HTML (escaped), or the escaped text if the URL is unsafe."""
    good = safe_url(url)
    shown = text(label if label is not None else url)
    if good is None:
        return shown
    return f'<a href="{attr(good)}" rel="noopener">{shown}</a>'


def code(value: object) -> str:
    """Inline code: the highlighter escapes the content; only the fence needs care."""
    s = _WS.sub(" ", str(value)).strip()
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{tick}{pad}{s}{pad}{tick}"


def fence(body: str, lang: str = "", indent: int = 0, title: str | None = None) -> str:
    """A fenced code block whose fence is longer than any backtick run in ``body``."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    tick = "`" * max(3, longest + 1)
    head = tick + lang
    if title:
        head += f' title="{_WS.sub(" ", title).replace(chr(34), "")}"'
    lines = [head, *body.rstrip("\n").split("\n"), tick]
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in lines) + "\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table. Cells must already be Markdown (use :func:`text` for data)."""
    rows = list(rows)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        out.append("| " + " | ".join(c if c != "" else " " for c in row) + " |")
    return "\n".join(out) + "\n"


_SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def table_cells(row: str) -> list[str]:
    """A table row's cells as Python-Markdown's tables extension splits them: on every ``|``
    that is neither backslash-escaped nor inside a code span."""
    row = row.strip()
    cells, cell, i = [], [], 0
    while i < len(row):
        ch = row[i]
        if ch == "\\" and i + 1 < len(row):
            cell.append(row[i:i + 2])
            i += 2
            continue
        if ch == "`":
            run = len(row[i:]) - len(row[i:].lstrip("`"))
            close = re.compile(r"(?<!`)" + "`" * run + r"(?!`)").search(row, i + run)
            end = close.end() if close else i + run  # an unclosed run is plain text
            cell.append(row[i:end])
            i = end
            continue
        if ch == "|":
            cells.append("".join(cell))
            cell = []
        else:
            cell.append(ch)
        i += 1
    cells.append("".join(cell))
    if row.startswith("|"):
        cells = cells[1:]
    if row.endswith("|") and not row.endswith("\\|") and cells:
        cells = cells[:-1]
    return cells


def table_problems(markdown: str) -> list[str]:
    """Rows of Markdown tables with more or fewer cells than their header (``line N: ...``).
    Python-Markdown pads or drops cells silently, so in the HTML such a row only shows as
    shifted columns or raw markup text: the check has to read the Markdown."""
    problems, fence = [], None
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = _FENCE.match(lines[i])
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
        elif fence is None and stripped.startswith("|") and i + 1 < len(lines) \
                and _SEPARATOR.match(lines[i + 1].strip()):
            width = len(table_cells(stripped))
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                got = len(table_cells(lines[i]))
                if got != width:
                    problems.append(f"line {i + 1}: {got} cells under a {width}-column header: {lines[i].strip()[:80]}")
                i += 1
            continue
        i += 1
    return problems


def tag(value: object) -> str:
    """A tag value restricted to a safe character set (tags land in HTML and URLs)."""
    return _SAFE_TAG.sub("-", str(value)).strip(" -") or "unknown"


def front_matter(tags: Sequence[str] = (), **fields: object) -> str:
    """YAML front matter; values are JSON-encoded (JSON is YAML) so they stay plain data."""
    lines = ["---"]
    for key, value in fields.items():
        lines.append(f"{key}: {json.dumps(value)}")
    if tags:
        lines.append("tags:")
        lines.extend(f"  - {json.dumps(t)}" for t in tags)
    lines.append("---")
    return "\n".join(lines) + "\n\n"


def indent(block: str, spaces: int = 4) -> str:
    """``block`` indented (blank lines stay empty): the body of a content tab or details block."""
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else "" for line in block.split("\n"))


def tab(label: str, body: str) -> str:
    """One content tab (pymdownx.tabbed); ``label`` is plain text from us or results data."""
    shown = text(label).replace('"', "'")
    return f'=== "{shown}"\n\n{indent(body.rstrip())}\n\n'


def details(kind: str, title: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block (pymdownx.details); ``title`` is plain text from us."""
    return f'{"???+" if open_ else "???"} {kind} "{title}"\n\n{indent(body.rstrip())}\n\n'


def admonition(kind: str, title: str, body: str) -> str:
    """An admonition block; ``title`` is plain text from us, ``body`` is Markdown."""
    inner = "\n".join(("    " + line) if line else "" for line in body.rstrip("\n").split("\n"))
    return f'!!! {kind} "{title}"\n{inner}\n\n'
