"""Knowledge-base commands: list, show, cite, tree, validate, schema.

Output is rich (tables, trees) when stdout is a terminal and plain, stable text when it
is not (pipes, files, tests). ``--taxonomy DIR`` points any command at another KB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.kb import cite
from vlmeft.kb.load import KnowledgeBase, check_kb, iter_record_files, load_kb
from vlmeft.kb.query import cite_scope, filter_records
from vlmeft.kb.schema import SCHEMAS, MethodRecord, json_schema_text


def _console() -> Any | None:
    """A rich console when stdout is a terminal, else None (plain text)."""
    if not sys.stdout.isatty():
        return None
    from rich.console import Console

    return Console()


def _kb(args: argparse.Namespace) -> KnowledgeBase:
    return load_kb(args.taxonomy)


def _add_taxonomy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--taxonomy", metavar="DIR", type=Path, default=None,
                   help="a taxonomy directory to use instead of the shipped knowledge base")


def _venue(r: MethodRecord) -> str:
    return r.venue_short or r.venue


# ---------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    kb = _kb(args)
    records = filter_records(
        kb, category=args.category, venue_type=args.type, task=args.task, year=args.year,
        modality=args.modality, paradigm=args.paradigm,
    )
    if args.format == "json":
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2, ensure_ascii=False))
        return 0
    header = ("id", "name", "category", "year", "venue", "arxiv")
    rows = [(r.id, r.name, r.category or "-", str(r.year), _venue(r), r.arxiv or "-") for r in records]
    console = _console()
    if console is not None:
        from rich.table import Table

        table = Table(title=f"{len(rows)} method(s)")
        for col in header:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        _print_columns([header, *rows])
    return 0


def _print_columns(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# ---------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------


def _show_lines(kb: KnowledgeBase, r: MethodRecord) -> list[tuple[str, str]]:
    lines = [
        ("id", r.id),
        ("title", r.title),
        ("authors", ", ".join(r.authors)),
        ("venue", f"{r.venue}" + (f" ({r.venue_short})" if r.venue_short else "") + f", {r.venue_type}, {r.year}"),
    ]
    if r.arxiv:
        lines.append(("arxiv", f"{r.arxiv}  https://arxiv.org/abs/{r.arxiv}"))
    if r.doi:
        lines.append(("doi", f"{r.doi}  https://doi.org/{r.doi}"))
    if r.url:
        lines.append(("url", r.url))
    if r.code:
        lines.append(("code", r.code))
    lines.append(("paradigm", r.paradigm))
    if r.category:
        path = " > ".join(n.name for n in kb.categories.path(r.category))
        lines.append(("category", f"{r.category}  ({path})"))
    if r.secondary_categories:
        lines.append(("also in", ", ".join(r.secondary_categories)))
    lines += [("modalities", ", ".join(r.modalities)), ("tasks", ", ".join(r.tasks))]
    if r.aliases:
        lines.append(("aliases", ", ".join(r.aliases)))
    if r.implementation:
        lines.append(("implementation", f"{r.implementation.id} ({r.implementation.fidelity})"))
    if r.parameters:
        p = r.parameters
        count = f"{p.count:,}" if p.count is not None else "n/a"
        lines.append(("parameters", count + (f" on {p.backbone}" if p.backbone else "") + (f"; {p.note}" if p.note else "")))
    lines.append(("summary", r.summary))
    for i, res in enumerate(r.results):
        extra = ", ".join(x for x in (res.protocol, res.backbone) if x)
        lines.append((f"result {i}", f"{res.metric} = {res.value:g} on {res.dataset}" + (f" ({extra})" if extra else "") + f"  [{res.source}]"))
    if r.variant_of:
        lines.append(("variant of", r.variant_of))
    if r.sources is not None:
        for src in [*r.sources.bibliographic, *r.sources.code]:
            lines.append(("checked", f"{', '.join(src.facts)} against {src.kind} {src.url}"))
    for u in r.unverified:
        lines.append(("unverified", f"{u.field}: {u.reason}" if hasattr(u, "reason") else str(u)))
    for n in r.classification_notes:
        who = ", ".join(n.held_by) or "a sibling variant"
        lines.append(("alternative", f"{n.alternative} (held by {who}): {n.reason}"))
    lines.append(("cite", cite.text(r)))
    return lines


def _cmd_show(args: argparse.Namespace) -> int:
    kb = _kb(args)
    record = kb.get(args.id)
    if args.format == "json":
        print(json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    lines = _show_lines(kb, record)
    console = _console()
    if console is not None:
        from rich.table import Table

        table = Table(show_header=False, title=f"{record.name} ({record.id})", box=None)
        table.add_column(style="bold")
        table.add_column()
        for key, value in lines:
            table.add_row(key, value)
        console.print(table)
    else:
        width = max(len(k) for k, _ in lines)
        for key, value in lines:
            print(f"{key.ljust(width)}  {value}")
    return 0


# ---------------------------------------------------------------------------------------
# cite
# ---------------------------------------------------------------------------------------


def _cmd_cite(args: argparse.Namespace) -> int:
    kb = _kb(args)
    items = cite_scope(kb, args.ids, category=args.category, everything=args.all, with_entry=args.with_entry)
    sys.stdout.write(cite.render(items, args.format))
    return 0


# ---------------------------------------------------------------------------------------
# tree
# ---------------------------------------------------------------------------------------


def tree_lines(kb: KnowledgeBase) -> list[tuple[int, str, str, str]]:
    """(depth, id, name, member count label) for every node, in tree order; the label is
    the site's (:func:`vlmeft.kb.counts.member_count`), e.g. ``4 + 1 secondary``."""
    from vlmeft.kb.counts import member_count

    out = []
    for fam in kb.categories.families:
        out.append((0, fam.id, fam.name, member_count(kb, fam.id).label))
        for t in fam.types:
            out.append((1, t.id, t.name, member_count(kb, t.id).label))
            for s in t.subtypes:
                out.append((2, s.id, s.name, member_count(kb, s.id).label))
    return out


def _cmd_tree(args: argparse.Namespace) -> int:
    kb = _kb(args)
    rows = tree_lines(kb)
    baselines = kb.uncategorised()
    note = ("names are a reconstruction of the survey's taxonomy (see categories.yaml provenance); "
            "counts: primary members + secondary-only ones")
    console = _console()
    if console is not None:
        from rich.tree import Tree

        root = Tree(f"[bold]taxonomy[/bold] ({len(kb.methods)} methods) - {note}")
        stack: list[Any] = [root]
        for depth, node_id, name, count in rows:
            del stack[depth + 1:]
            stack.append(stack[depth].add(f"[bold]{node_id}[/bold]  {name}  ({count})"))
        if baselines:
            root.add(f"uncategorised (baselines): {', '.join(r.id for r in baselines)}")
        console.print(root)
    else:
        print(f"taxonomy ({len(kb.methods)} methods); {note}")
        for depth, node_id, name, count in rows:
            print(f"{'  ' * depth}{node_id}  {name}  ({count})")
        if baselines:
            print(f"uncategorised (baselines): {', '.join(r.id for r in baselines)}  ({len(baselines)})")
    return 0


# ---------------------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    root = args.taxonomy
    extra: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir() and (path / "categories.yaml").exists():
            if root is not None or len(args.paths) > 1:
                raise VlmeftError("give one knowledge-base directory, or record files (with --taxonomy)", where=str(path))
            root = path  # a whole knowledge base
        elif not path.exists():
            raise VlmeftError("no such file or directory", where=str(path))
        else:
            extra.extend(iter_record_files([path]))
    if args.paths and root is None and not extra:
        raise VlmeftError("no record files (*.yaml) found", where=" ".join(args.paths))
    kb, errors = check_kb(root, extra)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    if errors:
        return 2
    assert kb is not None
    checked = f"{len(extra)} file(s) against " if extra else ""
    print(
        f"ok: {checked}{len(kb.methods)} records, {len(kb.categories.ids)} categories "
        f"({len(kb.leaves)} leaves), {len(kb.tasks)} tasks, {len(kb.paradigms)} paradigms"
    )
    return 0


# ---------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------


def _cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json_schema_text(args.kind))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list knowledge-base records, with filters")
    p.add_argument("--category", help="a category id; matches it and everything below (e.g. prompt.visual); 'uncategorised' for baselines")
    p.add_argument("--type", choices=["journal", "conference", "workshop", "preprint"], help="venue type")
    p.add_argument("--task", help="a task id from tasks.yaml (e.g. few-shot)")
    p.add_argument("--year", help="a year or range: 2022, 2021-2023, 2022-")
    p.add_argument("--modality", choices=["text", "image", "both"], help="records touching this tower (both: text and image)")
    p.add_argument("--paradigm", help="a paradigm id (prompt, adapter, linear-probe, pretrain-finetune)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", help="show one record")
    p.add_argument("id", help="record id or alias")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("cite", help="citations: of records, taxonomy nodes, a category's members, or everything")
    p.add_argument("ids", nargs="*", metavar="ID",
                   help="record ids or aliases, or taxonomy node ids (e.g. prompt.multimodal.coupled: the node's "
                        "entry and the survey it comes from); the survey's id cites the survey")
    p.add_argument("--category", help="cite every record in this category (and below)")
    p.add_argument("--all", action="store_true", help="cite the survey and every record")
    p.add_argument("--with-entry", action="store_true",
                   help="after each record, also cite its entry in this knowledge base (release and URL)")
    p.add_argument("--format", choices=sorted(cite.FORMATS), default="bibtex")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_cite)

    p = sub.add_parser("tree", help="the taxonomy with member counts")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_tree)

    p = sub.add_parser("validate", help="check the knowledge base, a KB directory, or new record files against it")
    p.add_argument("paths", nargs="*", metavar="PATH", help="record files / folders of them, or one KB directory")
    _add_taxonomy(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of a knowledge-base file")
    p.add_argument("--kind", choices=list(SCHEMAS), default="method")
    p.set_defaults(func=_cmd_schema)
