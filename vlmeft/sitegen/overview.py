"""The home page's generated part: the taxonomy diagram and the "which method?" overview.

The hand-written ``index.md`` holds the marker :data:`MARKER`; :mod:`vlmeft.sitegen.hooks`
replaces it with :data:`PARTIAL` (written under ``generated/``, a dot-file so MkDocs never
renders it as a page of its own) while MkDocs builds the home page.

Every overview column says where its value comes from:

* trainable parameters: the record's ``parameters`` when its backbone is ViT-B/16, else ``–``
  (not computed here: counting would build a ViT-B/16 in torch for each method at site build;
  ``vlmeft params <id> --backbone ViT-B-16`` does it on demand for methods with code);
* training-free: the record's parameter count (0 = training-free), else the trainable
  parameters the benchmark measured for the method's own code, else ``–``;
* accuracy: the embedded benchmark, for methods with their own code only (a category-reference
  entry runs its category's code, whose number is on that method's row);
* reported HM: the record's reported results, read through :func:`reported_hm` alone.
"""

from __future__ import annotations

from typing import Any

from vlmeft.kb import results
from vlmeft.kb.results import Reported
from vlmeft.sitegen import bench_summary
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import GEN, Context, method_path, node_path, rel
from vlmeft.sitegen.model import display_name, first_attr
from vlmeft.sitegen.sections import split_backbones
from vlmeft.sitegen.taxonomy_pages import COUNT_NOTE, mermaid_tree

HOME = "index.md"
MARKER = "<!-- vlmeft:overview -->"
PARTIAL = f"{GEN}/.home-overview.partial"  # a dot-file: MkDocs never publishes it
TARGET_BACKBONE = "ViT-B/16"
_TOWER_ORDER = {"text": 0, "image": 1}


def reported_hm(kb: Any, rec: Any) -> Reported | None:
    """The base-to-novel HM (16 shots, ViT-B/16, averaged over the 11 datasets) the record
    reports, read through :func:`vlmeft.kb.results.reported`: the one place the overview reads
    reported results. A knowledge base without controlled result ids (no ``vocab.yaml``) has
    nothing that can be matched reliably, so it shows none."""
    if getattr(kb, "vocab", None) is None:
        return None
    hits = results.reported(kb, rec.id, "avg-11", "base-to-novel", "hm", "vit-b-16", shots=16)
    plain = [r for r in hits if not r.setting]  # the method's own setting before its variants
    return (plain or hits)[0] if hits else None


def _params(rec: Any) -> int | None:
    params = first_attr(rec, "parameters")
    count = first_attr(params, "count") if params is not None else None
    if params is None or first_attr(params, "backbone") != TARGET_BACKBONE or not isinstance(count, int):
        return None
    return count


def _own(rec: Any) -> str | None:
    """The registry id of the record's own implementation, or None (category reference, none)."""
    impl = first_attr(rec, "implementation")
    if impl is None or first_attr(impl, "fidelity") == "category-reference":
        return None
    return str(first_attr(impl, "id"))


def _training_free(ctx: Context, rec: Any) -> str:
    params = first_attr(rec, "parameters")
    count = first_attr(params, "count") if params is not None else None
    if isinstance(count, int):
        return "yes" if count == 0 else "no"
    own = _own(rec)
    measured = [r.get("trainable_params") for r in ctx.bench.for_method(own)] if own else []
    measured = [m for m in measured if m is not None]
    if measured:
        return "yes" if max(measured) == 0 else "no"
    return "–"


def _implementation(ctx: Context, src: str, rec: Any) -> str:
    impl = first_attr(rec, "implementation")
    if impl is None:
        return "none"
    fidelity = str(first_attr(impl, "fidelity", default=""))
    if fidelity == "category-reference":
        return f"via {ctx.method_id_link(src, str(first_attr(impl, 'id')))}"
    return f"own, {md.text(fidelity)}"


def _headline(ctx: Context) -> bench_summary.Headline | None:
    """The benchmark's headline setting, when its rows come from one backbone (never averaged over several)."""
    parts = split_backbones(ctx.bench.rows)
    return bench_summary.headline(next(iter(parts.values()))) if len(parts) == 1 else None


def overview_table(ctx: Context, src: str = HOME) -> str:
    """One row per record, sortable (tablesort) and filterable (``assets/js/table-filter.js``)."""
    head = _headline(ctx)
    body = []
    for rec in ctx.methods:
        leaf = ctx.nodes.get(rec.category) if rec.category else None
        category = f"[{md.text(leaf.name)}]({rel(src, node_path(leaf.id))})" if leaf else "baseline"
        params = _params(rec)
        own = _own(rec)
        acc = "–"
        if head is not None and own in head.values:
            value, zero_shot = head.values[own]
            acc = f"{100 * value:.1f}" + ("\\*" if zero_shot else "")
        hm = reported_hm(ctx.kb, rec)
        body.append([
            f"[{md.text(display_name(rec))}]({rel(src, method_path(rec.id))})",
            category,
            " + ".join(md.text(m) for m in sorted(rec.modalities or [], key=lambda m: _TOWER_ORDER.get(m, 2))) or "–",
            f"{params:,}" if params is not None else "–",
            _training_free(ctx, rec),
            _implementation(ctx, src, rec),
            acc,
            md.ext_link(hm.source, f"{hm.value:.2f}") if hm else "–",
        ])
    headers = ["method", "category", "towers", f"params, {TARGET_BACKBONE}", "training-free",
               "code", "accuracy here", "reported HM"]
    return md.table(headers, body)


FILTER = ('<input type="search" class="vx-filter" placeholder="Filter: a name, category, tower, yes/no ..." '
          'aria-label="Filter the methods table" data-filter-table="next">')


def home_partial(ctx: Context) -> str:
    """The Markdown that replaces :data:`MARKER` in the home page."""
    head = _headline(ctx)
    return "".join([
        "## The taxonomy {#the-taxonomy}\n\n",
        f"Entries per node: {COUNT_NOTE} The [taxonomy pages]({rel(HOME, f'{GEN}/taxonomy/index.md')}) "
        "define each node.\n\n",
        mermaid_tree(ctx), "\n",
        "## Which method? {#which-method}\n\n",
        f"Every entry at a glance. **Towers**: the modalities the method acts on. **Params**: trainable "
        f"parameters as the record states them for {TARGET_BACKBONE} (`–`: the record gives no "
        f"{TARGET_BACKBONE} count; `vlmeft params <id> --backbone ViT-B-16` counts one with code). "
        "**Training-free**: no trainable parameters. **Code**: its own implementation here (and its "
        "fidelity), or via its category's reference implementation. "
        + (f"**Accuracy here**: the embedded benchmark's few-shot accuracy ({md.text(head.label)}), mean over "
           f"seeds, for methods with their own code; {bench_summary.ZERO_SHOT_NOTE} " if head else "")
        + f"**Reported HM**: the base-to-novel harmonic mean over 11 datasets with {TARGET_BACKBONE}, as "
          "published (linked to its source), not measured here.\n\n",
        "Type to filter the rows; click a column header to sort.\n\n",
        FILTER, "\n\n",
        overview_table(ctx),
    ])
