"""The taxonomy overview (with its mermaid tree) and one page per family, type and subtype."""

from __future__ import annotations

import re

from vlmeft.kb.counts import member_count
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import PATHS, Context, node_path
from vlmeft.sitegen.model import Node, category_reference, first_attr, members, references, signature_keys
from vlmeft.sitegen.sections import bench_section, conformance_section, implementation_section

RECONSTRUCTION = (
    "The survey (Xing et al., 2024) fixes how many types and subtypes there are and the "
    "criteria that split them, but its own names for them are not openly available. The "
    "names and definitions here are our reconstruction; each node records where it comes from."
)

COUNT_NOTE = ('"4 + 1 secondary" means four entries have the node (or a node below it) as their primary '
              "category and one more lists it only as a secondary category. `vlmeft tree` counts the same way.")

_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 .,/+()-]+")


def mermaid_label(value: str) -> str:
    """Label text mermaid cannot read as syntax or markup."""
    return _MERMAID_UNSAFE.sub(" ", value).strip() or "?"


def mermaid_id(node_id: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9]", "_", node_id)


def mermaid_tree(ctx: Context) -> str:
    lines = ["graph LR", '  root["EFT of vision-language models"]']
    for node in ctx.nodes.values():
        lines.append(f'  {mermaid_id(node.id)}["{mermaid_label(node.name)} ({member_count(ctx.kb, node.id).label})"]')
        parent = mermaid_id(node.parent) if node.parent else "root"
        lines.append(f"  {parent} --> {mermaid_id(node.id)}")
    return md.fence("\n".join(lines), "mermaid")


def reconstruction_note(ctx: Context, node: Node) -> str:
    """The node's provenance: what the survey fixes, what we reconstructed, and on what basis."""
    prov = node.provenance
    lines = ["This node's name and boundary are our reconstruction, not the survey's own wording."]
    if isinstance(prov, str) and prov:
        lines.append(md.text(prov))
    elif prov is not None:
        refs = references(ctx.kb)
        if first_attr(prov, "survey"):
            lines.append(f"**What the survey fixes:** {md.text(prov.survey)}")
        if first_attr(prov, "reconstruction"):
            lines.append(f"**Our reconstruction:** {md.text(prov.reconstruction)}")
        for ref_id in first_attr(prov, "supported_by", default=[]) or []:
            ref = refs.get(str(ref_id))
            lines.append(f"- Supported by: {_reference(ref) if ref is not None else md.code(ref_id)}")
        for rel_label in first_attr(prov, "related_labels", default=[]) or []:
            ref = refs.get(str(rel_label.ref))
            where = _reference(ref) if ref is not None else md.code(rel_label.ref)
            lines.append(f"- Called {md.text(rel_label.label)} in {where}")
        if first_attr(prov, "alternatives"):
            lines.append(f"**Alternatives:** {md.text(prov.alternatives)}")
    return md.admonition("info", "Reconstruction", "\n\n".join(lines))


def _reference(ref: object) -> str:
    out = md.text(first_attr(ref, "citation", default=first_attr(ref, "id")))
    arxiv, doi, url = first_attr(ref, "arxiv"), first_attr(ref, "doi"), first_attr(ref, "url")
    if arxiv:
        out += " " + md.ext_link(f"https://arxiv.org/abs/{arxiv}", f"arXiv:{arxiv}")
    elif doi:
        out += " " + md.ext_link(f"https://doi.org/{doi}", f"doi:{doi}")
    elif url:
        out += " " + md.ext_link(url, "link")
    return out


def signature_table(ctx: Context, node: Node) -> str:
    """The leaf's behavioural signature, key by key, with what each key means."""
    sig = node.signature
    if sig is None:
        return ""
    values = sig.model_dump() if hasattr(sig, "model_dump") else dict(sig)
    meanings = signature_keys(ctx.kb)
    body = []
    for key, value in values.items():
        meaning = first_attr(meanings.get(key), "meaning", default="") if key in meanings else ""
        shown = "yes" if value is True else "no" if value is False else str(value)
        body.append([md.code(key), md.text(shown), md.text(meaning)])
    return md.table(["property", "expected", "meaning"], body) + "\n"


def members_table(ctx: Context, src: str, node: Node) -> str:
    recs = members(ctx.kb, ctx.nodes, node.id)
    if not recs:
        return "No method in the knowledge base is placed here yet.\n\n"
    body = []
    for rec in recs:
        body.append([
            ctx.method_link(src, rec),
            md.text(rec.title),
            md.text(rec.year),
            md.text(first_attr(rec, "venue_short", "venue")),
            ", ".join(md.text(m) for m in rec.modalities or []),
            ctx.node_link(src, rec.category) if not node.is_leaf else md.text(
                "primary" if rec.category == node.id else "secondary"),
        ])
    last = "subtype" if not node.is_leaf else "placement"
    return md.table(["method", "title", "year", "venue", "modalities", last], body) + "\n"


def node_page(ctx: Context, node: Node) -> str:
    src = node_path(node.id)
    parts = [md.front_matter([f"category/{md.tag(node.id)}"] if node.is_leaf else []),
             f"# {md.text(node.name)}\n\n",
             f"{md.code(node.id)} · {md.text(node.level)}"]
    if node.parent:
        parts.append(f" in {ctx.node_link(src, node.parent)}")
    parts.append("\n\n")
    parts.append("## Definition {#definition}\n\n")
    parts.append((md.text(node.definition) if node.definition else "No definition recorded.") + "\n\n")
    if node.signature_text or node.signature is not None:
        parts.append("## Behavioural signature {#signature}\n\n")
        parts.append("What the conformance matrix checks for every method of this category. ")
        parts.append(md.text(node.signature_text) + "\n\n")
        parts.append(signature_table(ctx, node))
    parts.append(reconstruction_note(ctx, node))
    if node.children:
        parts.append("## Subdivisions {#subdivisions}\n\n")
        for kid in node.children:
            count = member_count(ctx.kb, kid)
            parts.append(f"- {ctx.node_link(src, kid)}: {count.label} method{'s' if count.total != 1 else ''}\n")
        parts.append("\n")
    parts.append("## Members {#members}\n\n")
    parts.append(members_table(ctx, src, node))
    if node.is_leaf:
        ref = category_reference(node.id)
        parts.append("## Reference implementation {#reference-implementation}\n\n")
        if ref:
            parts.append(f"The category's definition, as code: {ctx.method_id_link(src, ref)}.\n\n")
        parts.append(implementation_section(ctx, ref, collapsed=False))
        parts.append("## Conformance {#conformance}\n\n")
        parts.append(conformance_section(ctx, ref))
        parts.append("## Measured here {#measured}\n\n")
        parts.append(bench_section(ctx, src, ref))
    return "".join(parts)


def overview_page(ctx: Context) -> str:
    src = PATHS["taxonomy"]
    parts = ["# Taxonomy\n\n",
             "Efficient fine-tuning methods for CLIP-like models split into prompts and adapters. "
             "Prompts are divided by the modality they act on; adapters by whether they take part "
             "in fusing the two modalities. The numbers count the knowledge-base entries under each node: "
             f"{COUNT_NOTE}\n\n",
             md.admonition("info", "Reconstruction", RECONSTRUCTION),
             mermaid_tree(ctx), "\n"]
    parts.append("## Nodes {#nodes}\n\n")
    for node in ctx.nodes.values():
        depth, up = 0, node.parent
        while up:
            depth, up = depth + 1, ctx.nodes[up].parent
        parts.append("    " * depth + f"- {ctx.node_link(src, node.id)}: {member_count(ctx.kb, node.id).label}\n")
    parts.append("\n")
    baselines = [r for r in ctx.methods if not r.category]
    if baselines:
        parts.append("## Baselines {#baselines}\n\n")
        parts.append("Entries outside the taxonomy, kept as points of comparison: "
                     + ", ".join(ctx.method_link(src, r) for r in baselines) + ".\n")
    return "".join(parts)
