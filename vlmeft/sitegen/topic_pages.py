"""Topic pages from the KB's topics file (stability and ethics, future directions, ...)."""

from __future__ import annotations

from typing import Any

from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import GEN, Context, rel
from vlmeft.sitegen.model import first_attr


def topic_path(topic_id: str) -> str:
    return f"{GEN}/topics/{topic_id}.md"


def paragraphs(body: str) -> str:
    """Prose split on blank lines; every paragraph rendered literally."""
    return "".join(md.text(p) + "\n\n" for p in str(body).split("\n\n") if p.strip())


def topic_page(ctx: Context, topic_id: str, topic: Any) -> str:
    src = topic_path(topic_id)
    title = first_attr(topic, "title", "name", default=topic_id)
    parts = [f"# {md.text(title)}\n\n", paragraphs(first_attr(topic, "body", "description", default=""))]
    if "stabil" in topic_id:
        parts.append("Measured here: the seed variance of every benchmark setting is on the "
                     f"[benchmark page]({rel(src, f'{GEN}/benchmark.md')}#seed-variance).\n\n")
    prov = first_attr(topic, "provenance")
    if prov:
        parts.append(md.admonition("info", "Provenance", md.text(prov)))
    return "".join(parts)
