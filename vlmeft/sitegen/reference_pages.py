"""Bibliography (with downloadable .bib / CSL-JSON), paradigms, tasks, record schema, tags index."""

from __future__ import annotations

import json
from typing import Any

from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import PATHS, Context, rel
from vlmeft.sitegen.method_pages import cite_tabs
from vlmeft.sitegen.model import first_attr, named_items


def bibliography_files(ctx: Context) -> dict[str, str]:
    """The whole bibliography as BibTeX and CSL-JSON (the survey first, then every method)."""
    recs = ([ctx.kb.survey] if ctx.kb.survey is not None else []) + ctx.methods
    return {
        PATHS["bib"]: ctx.cite.bibtex(recs),
        PATHS["csl"]: json.dumps(ctx.cite.csl_json(recs), indent=2, ensure_ascii=False) + "\n",
    }


def bibliography_page(ctx: Context) -> str:
    src = PATHS["bibliography"]
    parts = ["# Bibliography\n\n",
             f"Download everything: [{md.text('vlmeft.bib')}]({rel(src, PATHS['bib'])}) (BibTeX) · "
             f"[{md.text('vlmeft.csl.json')}]({rel(src, PATHS['csl'])}) (CSL-JSON, for Zotero or Pandoc).\n\n"]
    if ctx.kb.survey is not None:
        parts += ["## Cite the survey {#cite-the-survey}\n\n",
                  "This knowledge base is organised after the survey below. "
                  "Cite it, and the papers of the methods you use.\n\n",
                  cite_tabs(ctx, [ctx.kb.survey])]
    parts.append("## Entries {#entries}\n\n")
    for rec in ctx.methods:
        parts.append(f"- {ctx.method_link(src, rec)}: {md.text(ctx.cite.text(rec))}\n")
    return "".join(parts)


def _describe(item: Any) -> tuple[str, str]:
    name = first_attr(item, "name", "title", "label", default="")
    desc = first_attr(item, "description", "definition", "summary", default="")
    return str(name), str(desc)


def _grouped_page(ctx: Context, key: str, title: str, intro: str, items: list[tuple[str, Any]],
                  uses: Any) -> str:
    src = PATHS[key]
    parts = [f"# {title}\n\n", intro + "\n\n"]
    for item_id, item in items:
        name, desc = _describe(item)
        parts.append(f"## {md.text(name or item_id)} {{#{md.tag(item_id)}}}\n\n")
        parts.append(f"Id {md.code(item_id)}.")
        parts.append((" " + md.text(desc) if desc else "") + "\n\n")
        recs = [r for r in ctx.methods if uses(r, item_id)]
        if recs:
            parts.append("Methods: " + ", ".join(ctx.method_link(src, r) for r in recs) + ".\n\n")
        else:
            parts.append("No method in the knowledge base yet.\n\n")
    return "".join(parts)


def paradigms_page(ctx: Context) -> str:
    return _grouped_page(
        ctx, "paradigms", "Paradigms",
        "How a pre-trained vision-language model is adapted to a downstream task.",
        named_items(ctx.kb.paradigms), lambda r, pid: r.paradigm == pid)


def tasks_page(ctx: Context) -> str:
    return _grouped_page(
        ctx, "tasks", "Tasks",
        "The vision and vision-language tasks the entries are evaluated on.",
        named_items(ctx.kb.tasks), lambda r, tid: tid in (r.tasks or []))


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type_of(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    return str(kind)


def _fields_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    body = []
    for name, prop in schema.get("properties", {}).items():
        body.append([md.code(name), md.text(_type_of(prop)), "yes" if name in required else "no",
                     md.text(prop.get("description", ""))])
    return md.table(["field", "type", "required", "description"], body) + "\n"


def schema_page(ctx: Context) -> str:
    parts = ["# Record schema\n\n",
             "Generated from the pydantic model that validates `taxonomy/methods/<id>.yaml` "
             "(`vlmeft schema` prints the same JSON Schema).\n\n"]
    schema = ctx.schema
    if not schema:
        return "".join(parts) + "The schema is not available yet.\n"
    parts.append(_fields_table(schema))
    for name, sub in (schema.get("$defs") or {}).items():
        if sub.get("properties"):
            parts.append(f"### {md.text(name)} {{#def-{md.tag(name).lower()}}}\n\n")
            parts.append(_fields_table(sub))
    parts.append('??? note "Full JSON Schema"\n\n')
    parts.append(md.fence(json.dumps(schema, indent=2, ensure_ascii=False), "json", indent=4))
    return "".join(parts)


def tags_page() -> str:
    return ("# Tags\n\n"
            "Entries by category, paradigm, modality, task, venue and year.\n\n"
            "<!-- material/tags -->\n")
