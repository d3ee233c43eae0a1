"""One page per method record, plus the methods index."""

from __future__ import annotations

import json
from typing import Any

from vlmeft import facts
from vlmeft.sitegen import kb_pages
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import PATHS, Context, method_path
from vlmeft.sitegen.model import display_name, first_attr
from vlmeft.sitegen.sections import FIDELITY, bench_section, conformance_section, implementation_section, recipes_section


def method_tags(rec: Any) -> list[str]:
    """The tag set of a record: category, paradigm, modality, task, venue, year."""
    tags = []
    for cat in [rec.category, *(first_attr(rec, "secondary_categories", default=[]) or [])]:
        if cat:
            tags.append(f"category/{md.tag(cat)}")
    if rec.paradigm:
        tags.append(f"paradigm/{md.tag(rec.paradigm)}")
    tags += [f"modality/{md.tag(m)}" for m in rec.modalities or []]
    tags += [f"task/{md.tag(t)}" for t in rec.tasks or []]
    tags.append(f"venue/{md.tag(first_attr(rec, 'venue_short', 'venue', default='unknown'))}")
    tags.append(f"year/{rec.year}")
    return list(dict.fromkeys(tags))


def heading(rec: Any) -> str:
    name = display_name(rec)
    if rec.title.casefold().startswith(name.casefold()):  # "AdaptFormer: Adapting ..." already names it
        return md.text(rec.title)
    return f"{md.text(name)}: {md.text(rec.title)}"


def venue_text(rec: Any) -> str:
    short = first_attr(rec, "venue_short")
    vtype = first_attr(rec, "venue_type")
    out = md.text(rec.venue)
    if short and short != rec.venue:
        out += f" ({md.text(short)})"
    if vtype:
        out += f", {md.text(vtype)}"
    return out


def record_table(ctx: Context, src: str, rec: Any) -> str:
    rows: list[tuple[str, str]] = [
        ("Id", md.code(rec.id)),
        ("Title", md.text(rec.title)),
        ("Authors", md.text(", ".join(rec.authors))),
        ("Venue", venue_text(rec)),
        ("Year", md.text(rec.year)),
    ]
    arxiv = first_attr(rec, "arxiv")
    if arxiv:
        rows.append(("arXiv", md.ext_link(f"https://arxiv.org/abs/{arxiv}", arxiv)))
    doi = first_attr(rec, "doi")
    if doi:
        rows.append(("DOI", md.ext_link(f"https://doi.org/{doi}", doi)))
    code = first_attr(rec, "code")
    rows.append(("Official code", md.ext_link(code) if code else "none listed"))
    rows.append(("Paradigm", ctx.page_link(src, "paradigms", rec.paradigm, anchor=md.tag(rec.paradigm))))
    rows.append(("Category", ctx.node_link(src, rec.category)))
    secondary = first_attr(rec, "secondary_categories", default=[]) or []
    if secondary:
        rows.append(("Also in", ", ".join(ctx.node_link(src, c) for c in secondary)))
    rows.append(("Modalities", ", ".join(md.text(m) for m in rec.modalities or []) or "none"))
    rows.append(("Tasks", ", ".join(ctx.page_link(src, "tasks", t, anchor=md.tag(t)) for t in rec.tasks or [])))
    params = first_attr(rec, "parameters")
    if params is not None:
        count = first_attr(params, "count")
        bits = [f"{count:,}" if isinstance(count, int) else "count not given"]
        if first_attr(params, "backbone"):
            bits.append(f"on {md.text(first_attr(params, 'backbone'))}")
        if first_attr(params, "note"):
            bits.append(f"({md.text(first_attr(params, 'note'))})")
        rows.append(("Trainable parameters", " ".join(bits)))
    aliases = first_attr(rec, "aliases", default=[]) or []
    if aliases:
        rows.append(("Aliases", ", ".join(md.text(a) for a in aliases)))
    unverified = first_attr(rec, "unverified", default=[]) or []
    rows.append(("Not yet checked against a primary source",
                 ", ".join(md.code(getattr(u, "field", u)) for u in unverified) if unverified else "nothing"))
    return md.table(["field", "value"], [list(r) for r in rows]) + "\n"


def results_table(rec: Any) -> str:
    results = first_attr(rec, "results", default=[]) or []
    if not results:
        return "The record lists no reported results.\n\n"
    body = []
    for r in results:
        body.append([
            md.text(first_attr(r, "metric", default="")),
            md.text(first_attr(r, "value", default="")),
            md.text(first_attr(r, "dataset", default="")),
            md.text(first_attr(r, "protocol", default="")),
            md.text(first_attr(r, "backbone", default="")),
            md.ext_link(first_attr(r, "source", default=""), "source"),
        ])
    return ("As reported by the authors (or the source named in each row), not measured here.\n\n"
            + md.table(["metric", "value", "dataset", "protocol", "backbone", "source"], body) + "\n")


def cite_tabs(ctx: Context, recs: list[Any]) -> str:
    """Content tabs with BibTeX, CSL-JSON and plain text; code blocks get copy buttons."""
    bib = ctx.cite.bibtex(recs)
    csl = json.dumps(ctx.cite.csl_json(recs), indent=2, ensure_ascii=False)
    txt = "\n\n".join(ctx.cite.text(r) for r in recs)
    out = []
    for label, body, lang in (("BibTeX", bib, "bibtex"), ("CSL-JSON", csl, "json"), ("Text", txt, "text")):
        out.append(f'=== "{label}"\n\n')
        out.append(md.fence(body, lang, indent=4))
        out.append("\n")
    return "".join(out)


def method_page(ctx: Context, rec: Any) -> str:
    src = method_path(rec.id)
    aliases = first_attr(rec, "aliases", default=[]) or []
    impl = first_attr(rec, "implementation")
    impl_id = first_attr(impl, "id") if impl is not None else None
    fidelity = first_attr(impl, "fidelity") if impl is not None else None
    known_as = ", ".join([md.code(rec.id), *(md.text(a) for a in aliases)])
    parts = [
        # The short name for nav and <title>; MkDocs prints meta titles unescaped, so escape here.
        # Boosted in search: a reader typing a method's name wants its page before pages that mention it.
        md.front_matter(method_tags(rec), title=md.attr(display_name(rec)), search={"boost": 2}),
        f"# {heading(rec)}\n\n",
        f"**{known_as}** · {md.text(first_attr(rec, 'venue_short', 'venue'))} {md.text(rec.year)} · "
        f"{ctx.node_link(src, rec.category)}\n\n",
        md.text(rec.summary) + "\n\n",
        "## Record {#record}\n\n",
        record_table(ctx, src, rec),
        "## Reported results {#reported-results}\n\n",
        results_table(rec),
        kb_pages.method_extras(ctx, rec),
        "## Cite {#cite}\n\n",
        cite_tabs(ctx, [rec]),
        "## Implementation {#implementation}\n\n",
    ]
    if fidelity:
        parts.append(f"Fidelity: **{md.text(fidelity)}**: {FIDELITY.get(str(fidelity), '')}.\n\n")
    parts += [
        implementation_section(ctx, impl_id, collapsed=True),
        recipes_section(impl_id),
        "## Conformance {#conformance}\n\n",
        conformance_section(ctx, impl_id),
        "## Measured here {#measured}\n\n",
        bench_section(ctx, src, impl_id),
    ]
    return "".join(parts)


def methods_index(ctx: Context) -> str:
    src = PATHS["methods"]
    body = []
    for rec in ctx.methods:
        impl = first_attr(rec, "implementation")
        body.append([
            ctx.method_link(src, rec),
            md.text(rec.title),
            md.text(rec.year),
            md.text(first_attr(rec, "venue_short", "venue")),
            ctx.node_link(src, rec.category),
            md.text(first_attr(impl, "fidelity", default="–") if impl is not None else "–"),
        ])
    counts = facts.counts(ctx.kb)  # the README states the same counts from the same functions
    return ("# Methods\n\n"
            f"All {facts.records_phrase(counts)} of the knowledge base ({facts.code_phrase(counts)}). "
            "Click a column header to sort.\n\n"
            + md.table(["method", "title", "year", "venue", "category", "implementation"], body))
