"""The conformance matrix page and the benchmark page (tables, plots, seed variance)."""

from __future__ import annotations

import re

from vlmeft.bench import report
from vlmeft.sitegen import markup as md
from vlmeft.sitegen import bench_summary, plots
from vlmeft.sitegen.context import GEN, NOT_MEASURED, PATHS, Context, method_path, rel
from vlmeft.sitegen.model import display_name
from vlmeft.sitegen.sections import (AGGREGATION_NOTE, PROTOCOL_TITLES, STATUS_WORD, aggregate, backbone_label,
                                      SIGNATURE_PREFIX, by_backbone, check_label, fmt, protocol_table, protocols,
                                      split_backbones, status_badge, status_counts)

IMG = f"{GEN}/img"


def _matrix(ctx: Context, src: str, backbone: str, checks: list[str]) -> str:
    """One backbone's methods x ``checks``: a compact icon per cell, its reason as tooltip."""
    conf = ctx.conformance
    index = conf.index()
    methods = [m for m in conf.methods if any((m, c, backbone) in index for c in checks)]
    body = []
    for method in methods:
        rec = ctx.kb.methods.get(method)
        name = md.text(display_name(rec)) if rec is not None else md.code(method)
        row = [f"[{name}]({rel(src, method_path(method))}#conformance)" if rec is not None else name]
        for check in checks:
            cell = index.get((method, check, backbone))
            row.append(" " if cell is None else status_badge(cell["status"], cell["reason"], compact=True))
        body.append(row)
    return md.table(["method", *(check_label(c) for c in checks)], body)


def conformance_page(ctx: Context) -> str:
    src = PATHS["conformance"]
    conf = ctx.conformance
    parts = ["# Conformance matrix\n\n",
             "Each taxonomy category has a behavioural signature (what changes, what stays frozen, "
             "what depends on what). The conformance checks probe every method with its own "
             "implementation against its category's signature, on each backbone; "
             "`vlmeft conformance` regenerates `results/conformance.json`.\n\n"]
    if not conf.measured:
        return "".join(parts) + NOT_MEASURED + "\n"
    parts.append(f"{status_badge('pass')}: the method shows the property its category requires; "
                 f"{status_badge('fail')}: it does not; {status_badge('na')}: the check does not apply "
                 "(the signature leaves it open, or the backbone lacks what it needs). Hover over a cell "
                 "for the reason; each method's page lists every reason.\n\n")
    parts.append("## Summary {#summary}\n\n")
    rows = []
    for backbone in conf.backbones:
        counts = conf.counts(backbone)
        rows.append([md.code(backbone or "unnamed"), *(str(counts[s]) for s in STATUS_WORD),
                     md.text(conf.backbone_notes.get(backbone, ""))])
    parts.append(md.table(["backbone", *(status_badge(s) for s in STATUS_WORD), "weights"], rows) + "\n")
    checks = conf.checks
    groups = [("Signature checks", "what the category's behavioural signature requires",
               [c for c in checks if c.startswith(SIGNATURE_PREFIX)]),
              ("Generic checks", "what every implementation must do",
               [c for c in checks if not c.startswith(SIGNATURE_PREFIX)])]
    parts.append("## Matrix {#matrix}\n\n")
    several = len(conf.backbones) > 1
    for backbone in conf.backbones:
        body = [f"Backbone {md.code(backbone or 'unnamed')}"
                + (f" ({md.text(conf.backbone_notes[backbone])})" if conf.backbone_notes.get(backbone) else "")
                + ": " + status_counts(conf.counts(backbone)) + "\n\n"]
        for title, what, group in groups:
            if group:
                body.append(f"**{title}**: {what}.\n\n{_matrix(ctx, src, backbone, group)}\n")
        parts.append(md.tab(backbone or "unnamed", "".join(body)) if several else "".join(body))
    failures = [c for c in conf.cells if c["status"] == "fail"]
    parts.append("## Failures {#failures}\n\n")
    if not failures:
        return "".join(parts) + "None.\n"
    for c in failures:
        parts.append(f"- {ctx.method_id_link(src, c['method'])} · {md.code(c['check'])} · "
                     f"{md.code(c['backbone'] or 'unnamed')}: {md.text(c['reason'])}\n")
    return "".join(parts) + "\n"


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "task"


def _full_anchor(protocol: str, tag: str) -> str:
    return f"full-{_slug(protocol or 'none')}{tag}"


def benchmark_page(ctx: Context) -> tuple[str, dict[str, bytes]]:
    """The page and the PNG plots it shows (paths under docs_dir -> bytes): plots first, then
    compact pivot tables, then every aggregated row in collapsible blocks, then seed variance."""
    src = PATHS["benchmark"]
    parts = ["# Benchmark results\n\n",
             "Measured with `vlmeft bench` on the embedded backbone and data; rows are written to "
             f"`results/bench/*.json`. {AGGREGATION_NOTE}\n\n"]
    rows = ctx.bench.rows
    if not rows:  # keep the anchors other pages link to
        return "".join(parts) + NOT_MEASURED + "\n\n## Seed variance {#seed-variance}\n\n" + NOT_MEASURED + "\n", {}
    images: dict[str, bytes] = {}
    by_bb = by_backbone(aggregate(rows))
    split = split_backbones(rows)
    several = len(by_bb) > 1
    plot_parts, summary_parts, full_parts = [], [], []
    for (backbone, weights), aggs in by_bb.items():
        # Plots never mix backbones either: one set per (backbone, weights), named after it.
        tag = f"-{_slug(backbone)}-{_slug(weights)}" if several else ""
        where = f" (backbone {md.text(backbone)}, weights {md.text(weights)})" if several else ""
        if several:
            for bucket in (plot_parts, summary_parts, full_parts):
                bucket.append(f"### {backbone_label(backbone, weights)}\n\n")
        for task in sorted({a["task"] for a in aggs if a["protocol"] == "few-shot"}):
            png = plots.accuracy_vs_shots(aggs, task)
            if png:
                path = f"{IMG}/accuracy-vs-shots-{_slug(task)}{tag}.png"
                images[path] = png
                plot_parts.append(f"![Accuracy against shots on {md.text(task)}{where}]({rel(src, path)})\n\n")
        png = plots.base_vs_novel(aggs)
        if png:
            path = f"{IMG}/base-vs-novel{tag}.png"
            images[path] = png
            plot_parts.append(f"![Base against novel accuracy{where}]({rel(src, path)})\n\n")
        g = report.Groups(split[(backbone, weights)])
        for task in g.tasks("few-shot"):
            summary_parts.append(f"**Few-shot accuracy on {md.text(task)}**, method × shots "
                                 f"([every row](#{_full_anchor('few-shot', tag)})):\n\n")
            summary_parts.append(bench_summary.shots_pivot(ctx, src, g, task) + "\n")
        summary_parts.append(f"**Method × protocol**: each protocol's headline number, at the largest shot count "
                             f"measured (every row: {_full_links(aggs, tag)}):\n\n")
        summary_parts.append(bench_summary.protocol_pivot(ctx, src, g) + "\n")
        for protocol in protocols(aggs):
            title = PROTOCOL_TITLES.get(protocol) or md.text(protocol or "no protocol")
            n = sum(a["protocol"] == protocol for a in aggs)
            anchor = _full_anchor(protocol, tag)  # attr_list on the paragraph: the pivots link here
            body = (f"Every (method, task, shots) setting, mean ± std over seeds.\n{{: #{anchor} }}\n\n"
                    + protocol_table(ctx, src, aggs, protocol, with_method=True))
            full_parts.append(md.details("note", f"{title}: all {n} rows", body))
    if plot_parts:
        parts.append("## Plots {#plots}\n\n")
        parts.append("Methods measured only without training images (zero-shot, training-free) are "
                     "dashed horizontal lines: their accuracy does not depend on shots.\n\n")
        parts += plot_parts
    parts.append("## Summary {#summary}\n\n")
    parts.append(f"Means over seeds, in percent; {bench_summary.ZERO_SHOT_NOTE} Click a method for its own "
                 "measurements, a column header to sort.\n\n")
    parts += summary_parts
    parts.append("## Full results {#results}\n\n")
    parts.append("Click a block to open it.\n\n")
    parts += full_parts
    parts.append("## Seed variance {#seed-variance}\n\n")
    parts.append("Stability across seeds, as in the benchmark report: the standard deviation over seeds of "
                 "every trained setting (few-shot accuracy, base-to-novel HM, cross-domain shifted mean), "
                 "in percentage points, summarised per method.\n\n")
    for (backbone, weights), part in split.items():
        stability = report.stability_rows(report.Groups(part))
        if several:
            parts.append(f"**{backbone_label(backbone, weights)}**\n\n")
        if not stability:
            parts.append("No trained setting has been measured with more than one seed yet.\n\n")
            continue
        body = [[ctx.method_id_link(src, m), str(n), f"{100 * mean:.2f}", f"{100 * top:.2f}"]
                for m, n, mean, top in stability]
        parts.append(md.table(["method", "settings", "mean std (points)", "max std (points)"], body) + "\n")
    return "".join(parts), images


def _full_links(aggs: list[dict], tag: str) -> str:
    return ", ".join(f"[{PROTOCOL_TITLES.get(p) or md.text(p or 'no protocol')}](#{_full_anchor(p, tag)})"
                     for p in protocols(aggs))


def robustness_page(ctx: Context) -> str:
    """The counts of the last hostile-input run (``results/robustness.json``)."""
    parts = ["# Robustness: latest counts\n\n",
             "Every hostile input run through the record loader by `python -m vlmeft.robustness` "
             "(what the inputs are and what counts as a failure: the robustness page).\n\n"]
    data = ctx.robustness
    if data is None:
        return "".join(parts) + NOT_MEASURED + "\n"
    keys = ("inputs_tried", "refused", "accepted", "failures")
    parts.append(md.table(["inputs tried", "refused", "accepted", "failures"], [[str(data[k]) for k in keys]]) + "\n")
    rows = []
    for kind, counts in sorted(data["by_kind"].items()):
        counts = counts if isinstance(counts, dict) else {}
        rows.append([md.code(kind), *(str(counts.get(k, "")) for k in keys)])
    parts.append("## By kind {#by-kind}\n\n")
    parts.append(md.table(["kind", "inputs tried", "refused", "accepted", "failures"], rows) + "\n")
    if isinstance(data.get("slowest_cpu_seconds"), (int, float)):
        parts.append(f"Slowest input: {fmt(data['slowest_cpu_seconds'], 2)} s of CPU time.\n\n")
    parts.append("## Failures {#failures}\n\n")
    failed = data.get("failed") or []
    if not failed:
        return "".join(parts) + "None.\n"
    for item in failed:
        item = item if isinstance(item, dict) else {}
        parts.append(f"- {md.code(item.get('name', '?'))}: {md.text(item.get('detail', ''))}\n")
    return "".join(parts) + "\n"
