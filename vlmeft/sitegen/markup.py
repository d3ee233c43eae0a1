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
    """A value for an HTML attribute inside raw HTML."""
    return html.escape(str(value), quote=True)


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


def admonition(kind: str, title: str, body: str) -> str:
    """An admonition block; ``title`` is plain text from us, ``body`` is Markdown."""
    inner = "\n".join(("    " + line) if line else "" for line in body.rstrip("\n").split("\n"))
    return f'!!! {kind} "{title}"\n{inner}\n\n'
