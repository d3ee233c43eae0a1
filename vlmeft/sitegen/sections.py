"""Page sections shared by method and category pages: implementation, conformance, measurements."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import NOT_MEASURED, RUN_COMMAND, Context
from vlmeft.sitegen.model import implementation
from vlmeft.sitegen.results import METRICS

STATUS_LABEL = {"pass": "✅ pass", "fail": "❌ fail", "na": "➖ n/a"}

FIDELITY = {
    "faithful": "follows the paper's method and defaults",
    "simplified": "keeps the paper's mechanism but simplifies parts of it (see the module docstring)",
    "category-reference": "no code of its own here: it runs its category's reference implementation",
}


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def implementation_section(ctx: Context, impl_id: str | None, *, collapsed: bool) -> str:
    """Where the code lives, how to run it, and its source embedded from the module file."""
    if not impl_id:
        return "No implementation is linked to this entry.\n\n"
    impl = implementation(impl_id, ctx.methods_root)
    if impl is None:
        return f"The registry has no method {md.code(impl_id)}.\n\n"
    out = [
        f"Registry id {md.code(impl.id)}, class {md.code(impl.class_name)} in {md.code(impl.repo_path)}.\n\n",
        "Run it on the embedded backbone and data:\n\n",
        md.fence(RUN_COMMAND.format(id=impl.id), "bash"),
        "\n",
    ]
    if not impl.exists:
        out.append(md.admonition("warning", "Not implemented yet",
                                 f"The module {md.code(impl.repo_path)} does not exist yet."))
        return "".join(out)
    if impl.docstring:
        paragraphs = [p for p in impl.docstring.split("\n\n") if p.strip()]
        out.append("\n>\n".join(f"> {md.text(p)}" for p in paragraphs) + "\n\n")
    if collapsed:  # method pages: the source folds away below the summary
        out.append(f'??? example "Source: {impl.repo_path}"\n\n')
        out.append(md.fence(impl.source or "", "python", indent=4))
    else:
        out.append(md.fence(impl.source or "", "python", title=impl.repo_path))
    out.append("\n")
    return "".join(out)


def conformance_section(ctx: Context, method_id: str | None) -> str:
    """The method's row of the conformance matrix."""
    conf = ctx.conformance
    cells = conf.for_method(method_id) if method_id else []
    if not conf.measured or not cells:
        return NOT_MEASURED + "\n\n"
    rows = [[md.code(c["check"]), STATUS_LABEL[c["status"]], md.text(c["reason"])] for c in cells]
    head = f"On backbone {md.code(conf.backbone)}.\n\n" if conf.backbone else ""
    return head + md.table(["check", "status", "reason"], rows) + "\n"


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds for each (method, task, protocol, shots)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row.get("task", ""), row.get("protocol", ""), row.get("shots"))].append(row)
    out = []
    for (method, task, protocol, shots), members in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        agg: dict[str, Any] = {"method": method, "task": task, "protocol": protocol, "shots": shots,
                               "seeds": len(members)}
        for key in (*METRICS, "train_seconds", "trainable_params"):
            values = [r[key] for r in members if r.get(key) is not None]
            agg[key] = statistics.fmean(values) if values else None
            agg[key + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(agg)
    return out


def _sort_key(key: tuple) -> tuple:
    method, task, protocol, shots = key
    return (str(method), str(task), str(protocol), -1 if shots is None else shots)


def metric_cell(agg: dict[str, Any], key: str) -> str:
    mean, std = agg.get(key), agg.get(key + "_std")
    if mean is None:
        return "–"
    return fmt(mean, 3) + (f" ± {fmt(std, 3)}" if std is not None else "")


def present_metrics(aggs: list[dict[str, Any]]) -> list[str]:
    return [m for m in METRICS if any(a.get(m) is not None for a in aggs)]


def bench_table(ctx: Context, src: str, rows: list[dict[str, Any]], *, with_method: bool) -> str:
    """A sortable table of aggregated benchmark rows (mean ± std over seeds)."""
    aggs = aggregate(rows)
    metrics = present_metrics(aggs)
    headers = (["method"] if with_method else []) + ["task", "protocol", "shots", "seeds", *metrics,
                                                      "train s", "trainable params"]
    body = []
    for a in aggs:
        cells = [ctx.method_id_link(src, a["method"])] if with_method else []
        cells += [md.text(a["task"]), md.text(a["protocol"]), fmt(a["shots"], 0), str(a["seeds"])]
        cells += [metric_cell(a, m) for m in metrics]
        cells += [fmt(a["train_seconds"], 1), fmt(a["trainable_params"], 0)]
        body.append(cells)
    return md.table(headers, body) + "\n"


def bench_section(ctx: Context, src: str, method_id: str | None) -> str:
    rows = ctx.bench.for_method(method_id) if method_id else []
    if not rows:
        return NOT_MEASURED + "\n\n"
    return ("Mean ± standard deviation over seeds, from `results/bench/`.\n\n"
            + bench_table(ctx, src, rows, with_method=False))
