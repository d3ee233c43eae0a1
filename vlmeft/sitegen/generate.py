"""Render every generated page from the KB and results, and write them into the docs_dir.

Plain Python, no MkDocs: :func:`render` returns the files, the navigation and the tag
vocabulary; :func:`write` replaces ``<docs_dir>/generated`` in one step, so a failed
generation never leaves a half-written folder behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError
from vlmeft.sitegen import kb_pages, leaderboard_pages
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import GEN, PATHS, Context, method_path, node_path
from vlmeft.sitegen.method_pages import method_page, method_tags, methods_index
from vlmeft.sitegen.model import named_items, topics
from vlmeft.sitegen.overview import PARTIAL, home_partial
from vlmeft.sitegen.reference_pages import (
    bibliography_files,
    bibliography_page,
    paradigms_page,
    schema_page,
    tags_page,
    tasks_page,
)
from vlmeft.sitegen.result_pages import benchmark_page, conformance_page, robustness_page
from vlmeft.sitegen.results import load_bench, load_conformance, load_robustness
from vlmeft.sitegen.suite_pages import DATASETS_PAGE, SUITE_PAGE, load_suite_rows, suite_page
from vlmeft.sitegen.taxonomy_pages import node_page, overview_page
from vlmeft.sitegen.topic_pages import topic_page, topic_path

# Hand-written pages (docs_dir-relative) and their place in the navigation.
HOME = "index.md"
CONTRIBUTING = "contributing.md"
ROBUSTNESS = "robustness.md"
BACKBONE = "backbone.md"  # the embedded default and its quality bar
CAPTIONER = "captioner.md"  # the embedded captioner (VQA, captioning) and its quality bar
PERFORMANCE = "performance.md"  # real-scale training and inference cost
CLUSTER = "cluster.md"  # running the benchmark on a Ray cluster


@dataclass
class GeneratedSite:
    files: dict[str, str | bytes] = field(default_factory=dict)  # docs_dir-relative path -> content
    nav: list[Any] = field(default_factory=list)  # MkDocs `nav` value
    tags: list[str] = field(default_factory=list)  # every tag a page may carry


def make_context(kb: Any, *, cite: Any = None, results_dir: Path | None = None,
                 methods_root: Path | None = None, schema: dict[str, Any] | None = None) -> Context:
    if cite is None:
        from vlmeft.kb import cite as cite_module

        cite = cite_module
    if schema is None:
        from vlmeft.kb.schema import json_schema

        schema = json_schema("method")
    return Context(kb=kb, cite=cite, conformance=load_conformance(results_dir), bench=load_bench(results_dir),
                   methods_root=methods_root, schema=schema, robustness=load_robustness(results_dir),
                   suite_rows=load_suite_rows(results_dir))


def _node_nav(ctx: Context, node_id: str) -> Any:
    node = ctx.nodes[node_id]
    if node.is_leaf:
        return node_path(node_id)
    # A section whose first entry is its own page (theme feature navigation.indexes).
    return {md.attr(node.name): [node_path(node_id), *(_node_nav(ctx, kid) for kid in node.children)]}


def _methods_nav(ctx: Context) -> list[Any]:
    """Method pages grouped under their primary taxonomy leaf, in tree order; entries
    outside the taxonomy last, as baselines."""
    groups: dict[str | None, list[str]] = {}
    for rec in ctx.methods:
        groups.setdefault(rec.category if rec.category in ctx.nodes else None, []).append(method_path(rec.id))
    out: list[Any] = [{md.attr(ctx.nodes[n].name): groups[n]} for n in ctx.nodes if n in groups]
    if None in groups:
        out.append({"Baselines": groups[None]})
    return out


def render(ctx: Context, hand_written: set[str] | frozenset[str] = frozenset()) -> GeneratedSite:
    """All generated files plus the nav. ``hand_written``: docs_dir pages that exist."""
    site = GeneratedSite()
    f = site.files
    f[PATHS["taxonomy"]] = overview_page(ctx)
    for node in ctx.nodes.values():
        f[node_path(node.id)] = node_page(ctx, node)
    f[PATHS["methods"]] = methods_index(ctx)
    tags: set[str] = {f"category/{md.tag(n)}" for n in ctx.nodes if ctx.nodes[n].is_leaf}
    for rec in ctx.methods:
        f[method_path(rec.id)] = method_page(ctx, rec)
        tags.update(method_tags(rec))
    tags.update(f"paradigm/{md.tag(p)}" for p, _ in named_items(ctx.kb.paradigms))
    tags.update(f"task/{md.tag(t)}" for t, _ in named_items(ctx.kb.tasks))
    tags.update(f"modality/{m}" for m in ("text", "image"))
    f[PATHS["bibliography"]] = bibliography_page(ctx)
    f.update(bibliography_files(ctx))
    f[PATHS["paradigms"]] = paradigms_page(ctx)
    f[PATHS["tasks"]] = tasks_page(ctx)
    f[PATHS["conformance"]] = conformance_page(ctx)
    page, images = benchmark_page(ctx)
    f[PATHS["benchmark"]] = page
    f.update(images)
    if ctx.suite_rows:
        f[SUITE_PAGE] = suite_page(ctx.kb, ctx.suite_rows)
    f[PATHS["schema"]] = schema_page(ctx)
    f[PATHS["tags"]] = tags_page()
    f[PATHS["robustness"]] = robustness_page(ctx)
    f[PARTIAL] = home_partial(ctx)  # spliced into the hand-written home page by sitegen.hooks
    topic_nav = []
    for topic_id, topic in topics(ctx.kb).items():
        f[topic_path(topic_id)] = topic_page(ctx, topic_id, topic)
        topic_nav.append(topic_path(topic_id))
    kb_nav, kb_files = kb_pages.nav_and_files(ctx)  # coverage, changelog, citations
    lb_nav, lb_files = leaderboard_pages.nav_and_files(ctx)  # the literature leaderboard
    f.update(kb_files)
    f.update(lb_files)
    site.tags = sorted(tags)
    check_tables(site.files)

    nav: list[Any] = []
    if HOME in hand_written:
        nav.append({"Home": HOME})
    nav.append({"Taxonomy": [PATHS["taxonomy"], *(_node_nav(ctx, n.id) for n in ctx.nodes.values()
                                                   if n.parent is None)]})
    nav.append({"Methods": [PATHS["methods"], *_methods_nav(ctx)]})
    nav.append({"Paradigms": PATHS["paradigms"]})
    nav.append({"Tasks": PATHS["tasks"]})
    nav.append({"Bibliography": PATHS["bibliography"]})
    embedded = [page for page in (BACKBONE, CAPTIONER) if page in hand_written]
    if embedded:
        nav.append({"Embedded backbones": embedded} if len(embedded) > 1 else {"Embedded default": embedded[0]})
    suite = [p for p in (DATASETS_PAGE if DATASETS_PAGE in hand_written else None,
                         SUITE_PAGE if SUITE_PAGE in f else None) if p]
    extra = [page for page in (PERFORMANCE, CLUSTER) if page in hand_written]
    nav.append({"Results": [PATHS["conformance"], PATHS["benchmark"], *suite, *extra]})
    nav.extend(lb_nav)
    nav.extend(kb_nav)
    nav.extend(topic_nav)
    contributing = [CONTRIBUTING] if CONTRIBUTING in hand_written else []
    nav.append({"Contributing": [*contributing, PATHS["schema"]]})
    nav.append({"Robustness": [*([ROBUSTNESS] if ROBUSTNESS in hand_written else []), PATHS["robustness"]]})
    nav.append({"Tags": PATHS["tags"]})
    site.nav = nav
    return site


def check_tables(files: dict[str, str | bytes]) -> None:
    """Refuse a page whose Markdown table has a row of the wrong width: Python-Markdown would
    pad or drop cells silently and the page would show shifted columns (or raw markup text)."""
    for path, content in files.items():
        if isinstance(content, str) and path.endswith((".md", ".partial")):
            problems = md.table_problems(content)
            if problems:
                raise VlmeftError(f"generated table is malformed: {problems[0]}", where=path)


def write(site: GeneratedSite, docs_dir: Path) -> Path:
    """Replace ``docs_dir/generated`` with the site's files; returns that folder."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    target = docs_dir / GEN
    staging = Path(tempfile.mkdtemp(prefix=".generated-", dir=docs_dir))
    try:
        for rel_path, content in site.files.items():
            if not rel_path.startswith(GEN + "/"):
                raise ValueError(f"generated file outside {GEN}/: {rel_path}")
            path = staging / rel_path[len(GEN) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        old = None
        if target.exists():
            old = docs_dir / f".generated-old-{os.getpid()}"
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def hand_written_pages(docs_dir: Path) -> set[str]:
    """Markdown pages under docs_dir that are not generated."""
    return {p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*.md")
            if not p.relative_to(docs_dir).as_posix().startswith((GEN + "/", "."))}


def generate(kb: Any, docs_dir: Path, *, results_dir: Path | None = None, cite: Any = None,
             methods_root: Path | None = None) -> GeneratedSite:
    """Render from ``kb`` and the results in ``results_dir`` and write into ``docs_dir``."""
    ctx = make_context(kb, cite=cite, results_dir=results_dir, methods_root=methods_root)
    site = render(ctx, hand_written_pages(docs_dir))
    write(site, docs_dir)
    return site

