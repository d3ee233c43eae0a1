"""The conformance matrix page and the benchmark page (tables, plots, seed variance)."""

from __future__ import annotations

import re

from vlmeft.bench import report
from vlmeft.sitegen import markup as md
from vlmeft.sitegen import plots
from vlmeft.sitegen.context import GEN, NOT_MEASURED, PATHS, Context, rel
from vlmeft.sitegen.sections import (AGGREGATION_NOTE, STATUS_LABEL, aggregate, backbone_label,
                                      bench_table, by_backbone, fmt, split_backbones)

IMG = f"{GEN}/img"


def conformance_page(ctx: Context) -> str:
    src = PATHS["conformance"]
    conf = ctx.conformance
    parts = ["# Conformance matrix\n\n",
             "Each taxonomy category has a behavioural signature (what changes, what stays frozen, "
             "what depends on what). The conformance checks probe every registered method against "
             "the signatures; `vlmeft conformance` regenerates `results/conformance.json`.\n\n"]
    if not conf.measured:
        return "".join(parts) + NOT_MEASURED + "\n"
    if conf.backbone:
        parts.append(f"Backbone: {md.code(conf.backbone)}.\n\n")
    counts = {s: sum(c["status"] == s for c in conf.cells) for s in STATUS_LABEL}
    parts.append(" · ".join(f"{STATUS_LABEL[s]}: {n}" for s, n in counts.items()) + "\n\n")
    checks = conf.checks
    index = {(c["method"], c["check"]): c for c in conf.cells}
    body = []
    for method in conf.methods:
        row = [ctx.method_id_link(src, method)]
        for check in checks:
            cell = index.get((method, check))
            if cell is None:
                row.append(" ")
            else:
                row.append(f'<span title="{md.attr(cell["reason"])}">{STATUS_LABEL[cell["status"]]}</span>')
        body.append(row)
    parts.append(md.table(["method", *(md.code(c) for c in checks)], body) + "\n")
    failures = [c for c in conf.cells if c["status"] == "fail"]
    parts.append("## Failures {#failures}\n\n")
    if failures:
        for c in failures:
            parts.append(f"- {ctx.method_id_link(src, c['method'])} · {md.code(c['check'])}: {md.text(c['reason'])}\n")
        parts.append("\n")
    else:
        parts.append("None.\n\n")
    return "".join(parts)


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "task"


def benchmark_page(ctx: Context) -> tuple[str, dict[str, bytes]]:
    """The page and the PNG plots it shows (paths under docs_dir -> bytes)."""
    src = PATHS["benchmark"]
    parts = ["# Benchmark results\n\n",
             "Measured with `vlmeft bench` on the embedded backbone and data; rows are written to "
             f"`results/bench/*.json`. {AGGREGATION_NOTE}\n\n"]
    rows = ctx.bench.rows
    if not rows:  # keep the anchors other pages link to
        return "".join(parts) + NOT_MEASURED + "\n\n## Seed variance {#seed-variance}\n\n" + NOT_MEASURED + "\n", {}
    images: dict[str, bytes] = {}
    parts.append("## Results {#results}\n\n")
    parts.append(bench_table(ctx, src, rows, with_method=True))
    by_bb = by_backbone(aggregate(rows))
    several = len(by_bb) > 1
    plot_parts = []
    for (backbone, weights), aggs in by_bb.items():
        # Plots never mix backbones either: one set per (backbone, weights), named after it.
        tag = f"-{_slug(backbone)}-{_slug(weights)}" if several else ""
        where = f" (backbone {md.text(backbone)}, weights {md.text(weights)})" if several else ""
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
    if plot_parts:
        parts.append("## Plots {#plots}\n\n")
        parts.append("Methods measured only without training images (zero-shot, training-free) are "
                     "dashed horizontal lines: their accuracy does not depend on shots.\n\n")
        parts += plot_parts
    parts.append("## Seed variance {#seed-variance}\n\n")
    parts.append("Stability across seeds, as in the benchmark report: the standard deviation over seeds of "
                 "every trained setting (few-shot accuracy, base-to-novel HM, cross-domain shifted mean), "
                 "in percentage points, summarised per method.\n\n")
    for (backbone, weights), part in split_backbones(rows).items():
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
