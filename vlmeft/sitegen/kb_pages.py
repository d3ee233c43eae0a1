"""Knowledge-base pages: coverage (with plots), changelog, citations of the knowledge base and
its taxonomy nodes, and the sources and classification notes shown on each method page.

The literature leaderboard lives in :mod:`vlmeft.sitegen.leaderboard_pages`.
"""

from __future__ import annotations

from typing import Any

from vlmeft.sitegen import markup as md
from vlmeft.sitegen import plots
from vlmeft.sitegen.context import GEN, Context, method_path, rel

PAGES = {
    "coverage": f"{GEN}/kb/coverage.md",
    "changelog": f"{GEN}/kb/changelog.md",
    "cite": f"{GEN}/kb/cite.md",
}
IMG = f"{GEN}/img"

SOURCE_KIND = {
    "arxiv": "arXiv page", "proceedings": "venue's page", "publisher": "publisher's page",
    "index": "bibliographic index", "official-bibtex": "official BibTeX", "official-readme": "official README",
    "official-repository": "official repository", "project-page": "authors' project page",
}


# ---------------------------------------------------------------------------------------
# Method page sections (called from method_pages.method_page)
# ---------------------------------------------------------------------------------------


def method_extras(ctx: Context, rec: Any) -> str:
    """How the record knows what it says (sources, unverified facts with reasons) and where
    other taxonomies file the method (classification notes)."""
    src = method_path(rec.id)
    parts = ["## How this record was checked {#sources}\n\n"]
    sources = getattr(rec, "sources", None)
    if sources is None:
        parts.append("The record names no sources.\n\n")
    else:
        rows = []
        for group, label in (("bibliographic", "bibliographic"), ("code", "code")):
            for s in getattr(sources, group):
                commit = f" at {md.code(s.commit[:12])}" if s.commit else ""
                note = md.text(s.note) if s.note else ""
                rows.append([label, md.ext_link(s.url, SOURCE_KIND.get(s.kind, s.kind)) + commit,
                             ", ".join(md.code(f) for f in s.facts), note])
        for i, r in enumerate(getattr(rec, "results", []) or []):
            where = md.text(r.locator) if r.locator else ""
            rows.append([f"result {i}", md.ext_link(r.source, "source"), md.code(f"{r.metric} {r.value:g}"), where])
        parts.append(md.table(["fact", "checked against", "facts", "note"], rows) + "\n")
    unverified = [u for u in getattr(rec, "unverified", []) or []]
    if unverified:
        parts.append("Not checked against a primary source:\n\n")
        for u in unverified:
            field, reason = (u.field, u.reason) if hasattr(u, "field") else (u, "no reason given")
            parts.append(f"- {md.code(field)}: {md.text(reason)}\n")
        parts.append("\n")
    notes = getattr(rec, "classification_notes", []) or []
    if notes:
        parts.append("## Classification notes {#classification-notes}\n\n")
        refs = ctx.kb.categories.references if hasattr(ctx.kb.categories, "references") else {}
        for n in notes:
            who = []
            for h in n.held_by:
                if h in refs:
                    who.append(md.text(refs[h].citation.rstrip(".")))
                elif h in ctx.kb.methods:
                    who.append(ctx.method_id_link(src, h) + " (its authors)")
                else:
                    who.append(md.code(h))
            alt = "no category (a baseline)" if n.alternative == "baseline" else ctx.node_link(src, n.alternative)
            holder = f" Held by {'; '.join(who)}." if who else " (A sibling variant is filed there.)"
            parts.append(f"- **Alternative: {alt}.**{holder} {md.text(n.reason)}\n")
        parts.append("\n")
    variant = getattr(rec, "variant_of", None)
    if variant:
        parts.append(f"A variant of {ctx.method_id_link(src, variant)}.\n\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# Coverage
# ---------------------------------------------------------------------------------------


def _leaf_label(ctx: Context, leaf: str) -> str:
    node = ctx.nodes.get(leaf)
    return node.name if node is not None else "Baseline (no category)"


def coverage_plots(ctx: Context, c: Any) -> dict[str, bytes]:
    """Records per year stacked by leaf; records per venue; own code vs category reference per leaf."""
    plt = plots._figure()
    images: dict[str, bytes] = {}
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bottom = [0] * len(c.years)
    for i, leaf in enumerate(c.leaves):
        vals = [c.per_leaf_year.get((leaf, y), 0) for y in c.years]
        ax.bar([str(y) for y in c.years], vals, bottom=bottom, label=_leaf_label(ctx, leaf), color=colors[i % 10])
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("records")
    ax.set_title("Records per year, by taxonomy leaf")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(axis="y", alpha=0.3)
    images[f"{IMG}/coverage-leaf-year.png"] = plots._png(plt, fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    venues = [v for v, _ in c.per_venue]
    ax.barh(venues[::-1], [n for _, n in c.per_venue][::-1], color=colors[0])
    ax.set_xlabel("records")
    ax.set_title("Records per venue")
    ax.grid(axis="x", alpha=0.3)
    images[f"{IMG}/coverage-venue.png"] = plots._png(plt, fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = [_leaf_label(ctx, leaf) for leaf in c.leaves]
    own = [c.own.get(leaf, 0) for leaf in c.leaves]
    ref = [c.reference.get(leaf, 0) for leaf in c.leaves]
    ax.barh(labels[::-1], own[::-1], color=colors[2], label="own implementation")
    ax.barh(labels[::-1], ref[::-1], left=own[::-1], color=colors[7], label="category reference")
    ax.set_xlabel("records")
    ax.set_title("Records with their own implementation")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    images[f"{IMG}/coverage-implementation.png"] = plots._png(plt, fig)
    return images


def coverage_page(ctx: Context) -> tuple[str, dict[str, bytes]]:
    from vlmeft.kb.stats import coverage

    src = PAGES["coverage"]
    c = coverage(ctx.kb)
    images = coverage_plots(ctx, c)
    parts = ["# Coverage\n\n",
             f"The knowledge base holds {c.records} records; {c.with_results} of them carry reported results. "
             "The same figures print with `vlmeft stats`.\n\n"]
    titles = {"coverage-leaf-year": "Records per year, by taxonomy leaf", "coverage-venue": "Records per venue",
              "coverage-implementation": "Records with their own implementation or the category reference"}
    for path in images:
        stem = path.rsplit("/", 1)[1].removesuffix(".png")
        parts.append(f"![{titles[stem]}]({rel(src, path)})\n\n")
    parts.append("## Records per leaf and year {#per-leaf-year}\n\n")
    head = ["leaf", *map(str, c.years), "total", "own code", "category reference"]
    body = []
    for leaf in c.leaves:
        name = ctx.node_link(src, leaf) if leaf in ctx.nodes else "baseline (no category)"
        body.append([name, *(str(c.per_leaf_year.get((leaf, y), 0) or "") for y in c.years), str(c.leaf_total(leaf)),
                     str(c.own.get(leaf, 0)), str(c.reference.get(leaf, 0))])
    body.append(["**total**", *(str(c.year_total(y)) for y in c.years), str(c.records), str(sum(c.own.values())),
                 str(sum(c.reference.values()))])
    parts.append(md.table(head, body) + "\n")
    parts.append("## Records per venue {#per-venue}\n\n")
    parts.append(md.table(["venue", "records"], [[md.text(v), str(n)] for v, n in c.per_venue]) + "\n")
    parts.append("## Facts not yet checked {#unverified}\n\n")
    if c.unverified:
        parts.append("Records list a fact in `unverified` when no primary source for it could be read; each "
                     "method page gives the reason.\n\n")
        parts.append(md.table(["field", "records"], [[md.code(f), str(n)] for f, n in
                                                      sorted(c.unverified.items(), key=lambda kv: (-kv[1], kv[0]))]) + "\n")
    else:
        parts.append("None.\n\n")
    return "".join(parts), images


# ---------------------------------------------------------------------------------------
# Changelog
# ---------------------------------------------------------------------------------------


def changelog_page(ctx: Context) -> str:
    src = PAGES["changelog"]
    parts = ["# Changelog\n\n",
             "Every change to a record's category or facts, per release of the knowledge base "
             "(`taxonomy/changelog.yaml`; `vlmeft validate` refuses an unlogged change).\n\n"]
    log = getattr(ctx.kb, "changelog", None)
    if log is None:
        return "".join(parts) + "This knowledge base has no changelog.\n"
    for release in log.releases:
        parts.append(f"## {md.text(release.version)} ({release.date.isoformat()}) {{#v{release.version.replace('.', '-')}}}\n\n")
        parts.append(md.text(release.summary) + "\n\n")
        added = [c.record for c in release.changes if c.fields == ["record"]]
        changed = [c for c in release.changes if c.fields != ["record"]]
        if changed:
            rows = []
            for c in changed:
                link = ctx.method_id_link(src, c.record)
                source = md.ext_link(c.source, "source") if c.source else ""
                rows.append([link, ", ".join(md.code(f) for f in c.fields), md.text(c.what), source])
            parts.append(md.table(["record", "fields", "change", "source"], rows) + "\n")
        if added:
            parts.append(f"Added ({len(added)}): " + ", ".join(ctx.method_id_link(src, r) for r in added) + ".\n\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# Citing the knowledge base and its taxonomy nodes
# ---------------------------------------------------------------------------------------


def _tabs(ctx: Context, items: list[Any]) -> str:
    from vlmeft.sitegen.method_pages import cite_tabs  # that module imports this one

    return cite_tabs(ctx, items)


def cite_page(ctx: Context) -> str:
    src = PAGES["cite"]
    kb = ctx.kb
    parts = ["# Cite the knowledge base\n\n"]
    meta = getattr(kb, "meta", None)
    if meta is None or not hasattr(ctx.cite, "node_entry"):
        return "".join(parts) + "This knowledge base has no release metadata (kb.yaml).\n"
    url = f", {md.ext_link(str(meta.url))}" if meta.url else " (the site has no permanent URL yet: citations give each entry's path in the site)"
    parts.append(f"Release **{md.text(meta.version)}** of {meta.released.isoformat()}{url}. "
                 "Cite the survey it follows, and this release where you use its data, its taxonomy or its code. "
                 "Any taxonomy node can be cited with `vlmeft cite NODE-ID`, and a method's entry beside its paper "
                 "with `vlmeft cite ID --with-entry`.\n\n")
    parts.append("## The knowledge base {#kb}\n\n")
    parts.append(_tabs(ctx, [ctx.cite.kb_entry(kb), kb.survey]))
    parts.append("## Taxonomy nodes {#nodes}\n\n")
    for node in ctx.nodes.values():
        parts.append(f"### {md.text(node.name)} {{#{node.id.replace('.', '-')}}}\n\n")
        parts.append(f"{ctx.node_link(src, node.id)}\n\n")
        parts.append(_tabs(ctx, [ctx.cite.node_entry(kb, node.id)]))
    return "".join(parts)


def nav_and_files(ctx: Context) -> tuple[list[Any], dict[str, str | bytes]]:
    """The knowledge-base pages, and their navigation entry."""
    files: dict[str, str | bytes] = {}
    page, images = coverage_page(ctx)
    files[PAGES["coverage"]] = page
    files.update(images)
    files[PAGES["changelog"]] = changelog_page(ctx)
    files[PAGES["cite"]] = cite_page(ctx)
    nav = [{"Knowledge base": [PAGES["coverage"], PAGES["changelog"], PAGES["cite"]]}]
    return nav, files


__all__ = ["PAGES", "method_extras", "nav_and_files"]
