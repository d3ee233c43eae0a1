"""Page sections shared by method and category pages: implementation, conformance, measurements."""

from __future__ import annotations

from typing import Any

from vlmeft import kinds
from vlmeft.bench import report
from vlmeft.errors import VlmeftError
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import NOT_MEASURED, Context
from vlmeft.sitegen.model import implementation
from vlmeft.sitegen.results import METRICS

STATUS_WORD = {"pass": "pass", "fail": "fail", "na": "n/a"}


def status_badge(status: str, reason: str = "", *, compact: bool = False) -> str:
    """A conformance status as raw HTML: an icon drawn by the site's own CSS (an inline SVG
    mask in ``assets/css/extra.css``, so no emoji font is needed) and the status word,
    visually hidden when ``compact``. The reason is the tooltip."""
    cls = f"vx-status vx-{status}" + (" vx-compact" if compact else "")
    title = f' title="{md.attr(reason)}"' if reason else ""
    return f'<span class="{cls}"{title}><span class="vx-word">{STATUS_WORD[status]}</span></span>'


SIGNATURE_PREFIX = "signature."


def check_label(check: str) -> str:
    """A conformance check as words ("text depends on image"), its id (``signature.text_depends_on_image``)
    as tooltip: ids in code font break mid-word in narrow columns."""
    name = check[len(SIGNATURE_PREFIX):] if check.startswith(SIGNATURE_PREFIX) else check
    return f'<span title="{md.attr(check)}">{md.text(name.replace("_", " "))}</span>'


def status_counts(counts: dict[str, int]) -> str:
    """``pass: 3 · fail: 0 · n/a: 1`` with the status icons."""
    return " · ".join(f"{status_badge(s)}: {n}" for s, n in counts.items())


FIDELITY = {
    "faithful": "one training step matches the official code on shared random weights (logits, loss and "
                "every gradient; the module docstring has the commit and the differences)",
    "simplified": "keeps the paper's mechanism but simplifies parts of it (see the module docstring)",
    "category-reference": "no code of its own here: it runs its category's reference implementation",
}


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run_command(impl_id: str) -> str:
    """The documented first command for a method: its task kind's example (digits 4-shot for
    a classifier, the scenes for grounding, the world's questions for VQA, ...); a method
    that cannot be imported gets the classifier's."""
    from vlmeft import kinds, registry

    try:
        tasks = registry.get(impl_id).tasks
    except (ImportError, AttributeError, VlmeftError):
        tasks = ("classification",)
    by_name = {k.name: k for k in kinds.all_kinds() if k.example}
    name = "classification" if "classification" in tasks else next((t for t in tasks if t in by_name),
                                                                     "classification")
    return by_name[name].example.format(id=impl_id)


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
        md.fence(run_command(impl.id), "bash"),
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


def recipes_section(impl_id: str | None) -> str:
    """The method's two training recipes side by side (:mod:`vlmeft.recipes`), with the
    official file the paper recipe was read from; empty without an importable method."""
    from vlmeft import registry
    from vlmeft.method import MethodConfig
    from vlmeft.recipes import CORE_FIELDS, EMBEDDED_BACKBONE, recipe_table

    try:
        cls = registry.get(impl_id) if impl_id else None
    except (ImportError, AttributeError, VlmeftError):
        cls = None
    if cls is None:
        return ""
    source = cls.Config.source
    if source is None or not source.url:  # no official code: the label says where the values come from
        cited = md.text(source.label if source else "the paper")
    else:
        cited = md.ext_link(source.url, source.label) + (f" ({md.text(source.note)})" if source.note else "")
    precision = f" (official precision {md.code(source.precision)})" if source and source.precision else ""
    embedded = kinds.of_method(cls).backbone or EMBEDDED_BACKBONE  # its kind's (synthcoca-tiny for text writers)
    out = [f"## Recipes {{#recipes}}\n\n{md.code(impl_id)} {'runs' if cls.training_free else 'trains'} under two recipes. `--recipe paper` follows "
           f"{cited}{precision}; `--recipe embedded`, the "
           f"default on {md.code(embedded)}, keeps the calibrations chosen on val for that backbone (the evidence "
           "is in the module docstring).\n\n"]
    rows = recipe_table(cls.Config, () if cls.training_free else CORE_FIELDS)
    if cls.training_free:  # the shared training settings mean nothing here
        rows = [r for r in rows if r[0] not in MethodConfig.field_types()]
    if rows:
        out.append(md.table(["setting", "paper", "embedded"],
                            [[md.code(k), md.code(str(p)), md.code(str(e))] for k, p, e in rows]) + "\n")
    else:
        out.append("The two recipes are the same: nothing is trained.\n\n" if cls.training_free
                   else "The two recipes are the same.\n\n")
    return "".join(out)


def conformance_section(ctx: Context, method_id: str | None) -> str:
    """The method's rows of the conformance matrix: a tab per backbone when there are several."""
    conf = ctx.conformance
    cells = conf.for_method(method_id) if method_id else []
    if not conf.measured or not cells:
        return NOT_MEASURED + "\n\n"
    backbones = [b for b in conf.backbones if any(c["backbone"] == b for c in cells)]
    out = []
    for backbone in backbones:
        mine = [c for c in cells if c["backbone"] == backbone]
        rows = [[check_label(c["check"]), status_badge(c["status"]), md.text(c["reason"])] for c in mine]
        body = status_counts({s: sum(c["status"] == s for c in mine) for s in STATUS_WORD}) + "\n\n"
        body += md.table(["check", "status", "reason"], rows)
        if len(backbones) > 1:
            out.append(md.tab(backbone, body))
        else:
            out.append((f"On backbone {md.code(backbone)}.\n\n" if backbone else "") + body + "\n")
    return "".join(out)


# Section titles and column labels of the benchmark tables, by protocol and metric.
PROTOCOL_TITLES = {"few-shot": "Few-shot", "base-to-novel": "Base-to-novel", "cross-domain": "Cross-domain",
                   "retrieval": "Retrieval", "grounding": "Grounding", "vqa": "VQA", "captioning": "Captioning"}
METRIC_LABELS = {"accuracy": "accuracy", "base": "base", "novel": "novel", "hm": "HM", "shifted_mean": "shifted mean",
                 "r1": "R@1", "r5": "R@5", "i2t_r1": "image→text R@1", "i2t_r5": "image→text R@5",
                 "t2i_r1": "text→image R@1", "t2i_r5": "text→image R@5", "chance": "chance", "cider": "CIDEr",
                 "bleu4": "BLEU-4"}
ACCURACY_LABELS = {"cross-domain": "source accuracy", "grounding": "grounding accuracy", "vqa": "VQA accuracy"}
COST = ("train_seconds", "trainable_params")


def split_backbones(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows split by (backbone, weights) exactly as the report splits them; a row that names
    no backbone (hand-made fixtures) goes under the backbone ''."""
    return report.backbones([r if r.get("backbone") is not None else {**r, "backbone": ""} for r in rows])


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (backbone, weights, method, task, protocol, shots) with the
    :data:`vlmeft.bench.report.Stat` (mean, population std, seeds) of every metric its rows
    carry, under ``"stats"``. The numbers come from :class:`vlmeft.bench.report.Groups`, so the
    site and ``vlmeft bench --report`` never disagree (HM = HM of the mean base and novel)."""
    out = []
    for (backbone, weights), part in split_backbones(rows).items():
        g = report.Groups(part)
        domains = sorted({d for r in part for d in (r.get("domains") or {})})
        metrics = [*METRICS, *(f"domain:{d}" for d in domains), *COST]
        for (method, task, protocol, shots), seeds, stats in g.each(metrics):
            out.append({"backbone": backbone, "weights": weights, "method": method, "task": task,
                        "protocol": protocol, "shots": shots, "seeds": seeds,
                        "stats": {m: s for m, s in stats.items() if s is not None}})
    return out


def by_backbone(aggs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Aggregates grouped by (backbone, weights), in :func:`aggregate`'s order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in aggs:
        out.setdefault((a["backbone"], a["weights"]), []).append(a)
    return out


def backbone_label(backbone: str, weights: str) -> str:
    return f"Backbone {md.code(backbone or 'unnamed')}" + (f", weights {md.code(weights)}" if weights else "")


def protocols(aggs: list[dict[str, Any]]) -> list[str]:
    """The protocols present, the benchmark's own ones first, in its order."""
    present = {a["protocol"] for a in aggs}
    return [p for p in PROTOCOL_TITLES if p in present] + sorted(present - set(PROTOCOL_TITLES))


def metric_columns(aggs: list[dict[str, Any]]) -> list[str]:
    """Metrics carried by any of ``aggs`` (one protocol's), in display order; domains after accuracy."""
    present = {m for a in aggs for m in a["stats"]}
    domains = sorted(m for m in present if m.startswith("domain:"))
    ordered = [m for m in METRICS if m in present]
    cut = 1 if ordered[:1] == ["accuracy"] else 0  # source accuracy, then each shifted domain
    return [*ordered[:cut], *domains, *ordered[cut:]]


def metric_label(metric: str, protocol: str) -> str:
    if metric == "accuracy":
        return ACCURACY_LABELS.get(protocol, "accuracy")
    if metric.startswith("domain:"):
        return md.text(metric.split(":", 1)[1])
    return METRIC_LABELS.get(metric, md.text(metric))


def protocol_table(ctx: Context, src: str, aggs: list[dict[str, Any]], protocol: str, *, with_method: bool) -> str:
    """One protocol's aggregates as a table: every metric they carry, in percent (as the report)."""
    aggs = [a for a in aggs if a["protocol"] == protocol]
    metrics = metric_columns(aggs)
    headers = (["method"] if with_method else []) + ["task", "shots", "seeds",
                                                      *(metric_label(m, protocol) for m in metrics),
                                                      "train s", "trainable params"]
    body = []
    for a in aggs:
        stats = a["stats"]
        cells = [ctx.method_id_link(src, a["method"])] if with_method else []
        cells += [md.text(a["task"]), report.shots_text(a["shots"]), str(a["seeds"])]
        cells += [report.pct(stats.get(m)) for m in metrics]
        secs, params = stats.get("train_seconds"), stats.get("trainable_params")
        cells += [f"{secs[0]:.2f}" if secs else "–", f"{round(params[0]):,}" if params else "–"]
        body.append(cells)
    return md.table(headers, body) + "\n"


def bench_table(ctx: Context, src: str, rows: list[dict[str, Any]], *, with_method: bool, level: int = 3) -> str:
    """Aggregated benchmark rows: per backbone (a heading each when several), one table per
    protocol, headings at Markdown ``level``."""
    parts = by_backbone(aggregate(rows))
    out = []
    for (backbone, weights), aggs in parts.items():
        sub = level
        if len(parts) > 1:
            out.append(f"{'#' * level} {backbone_label(backbone, weights)}\n\n")
            sub += 1
        elif backbone or weights:
            out.append(backbone_label(backbone, weights) + ".\n\n")
        for protocol in protocols(aggs):
            title = PROTOCOL_TITLES.get(protocol) or md.text(protocol or "no protocol")
            out.append(f"{'#' * sub} {title}\n\n")
            out.append(protocol_table(ctx, src, aggs, protocol, with_method=with_method))
    return "".join(out)


AGGREGATION_NOTE = ("Mean ± population standard deviation over seeds, in percent, aggregated exactly as "
                    "`vlmeft bench --report` does; HM is the harmonic mean of the mean base and mean novel "
                    "accuracies, its ± the std of the per-seed HMs. Results of different backbone weights "
                    "are never averaged together.")


def bench_section(ctx: Context, src: str, method_id: str | None) -> str:
    rows = ctx.bench.for_method(method_id) if method_id else []
    if not rows:
        return NOT_MEASURED + "\n\n"
    return f"From `results/bench/`. {AGGREGATION_NOTE}\n\n" + bench_table(ctx, src, rows, with_method=False)
