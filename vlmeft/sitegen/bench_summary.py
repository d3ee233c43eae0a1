"""Compact views of the benchmark: pivot tables (method x shots, method x protocol) and each
method's headline accuracy, for the benchmark page and the home page's overview.

Numbers come from :class:`vlmeft.bench.report.Groups` and the columns from
:func:`vlmeft.bench.report.headline_columns`, so the pivots agree with ``vlmeft bench --report``.
Cells show the mean over seeds only (the full tables below them carry the ± std); a ``*`` marks a
method measured without training images, whose value does not depend on shots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmeft.bench import report
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import Context, method_path, rel
from vlmeft.sitegen.model import display_name

ZERO_SHOT_NOTE = ("`*`: measured without training images (zero-shot or training-free); "
                  "the value does not depend on shots.")


def mean_cell(stat: report.Stat | None, *, star: bool = False) -> str:
    """The mean over seeds in percent, one decimal (``–`` when not measured)."""
    if stat is None:
        return "–"
    return f"{100 * stat[0]:.1f}" + ("\\*" if star else "")


def method_cell(ctx: Context, src: str, method_id: str, anchor: str = "measured") -> str:
    rec = ctx.kb.methods.get(method_id)
    if rec is None:
        return md.code(method_id)
    return f"[{md.text(display_name(rec))}]({rel(src, method_path(method_id))}#{anchor})"


def shots_pivot(ctx: Context, src: str, g: report.Groups, task: str, protocol: str = "few-shot") -> str:
    """Methods x shots of one task: mean accuracy, best at the largest shot count first."""
    shots = g.shots(task, protocol)
    top = shots[-1] if shots else 0

    def score(m: str) -> float:
        stat = g.stat(m, task, protocol, top, "accuracy")
        return stat[0] if stat else -1.0

    body = []
    for m in sorted(g.methods(task, protocol), key=lambda m: (-score(m), m)):
        star = g.zero_shot_only(m, task, protocol)
        body.append([method_cell(ctx, src, m),
                     *(mean_cell(g.stat(m, task, protocol, k, "accuracy"), star=star) for k in shots or [0])])
    heads = [f"{k} shot{'s' if k != 1 else ''}" for k in shots] or ["zero-shot"]
    return md.table(["method", *heads], body)


def protocol_pivot(ctx: Context, src: str, g: report.Groups) -> str:
    """Methods x (protocol, task): one number each, from ``headline_columns``: the metric the
    report judges a protocol by (few-shot accuracy, base-to-novel HM, cross-domain shifted mean),
    else the protocol's first column (retrieval R@1, grounding accuracy)."""
    columns = []
    for column in report.headline_columns(g):
        same = [i for i, c in enumerate(columns) if (c.task, c.protocol) == (column.task, column.protocol)]
        if not same:
            columns.append(column)
        elif column.metric == report.STABILITY_METRIC.get(column.protocol):
            columns[same[0]] = column
    body = []
    for m in sorted({k[0] for k in g.groups}):
        cells = [mean_cell(g.stat(m, c.task, c.protocol, c.shots, c.metric), star=g.zero_shot_only(m, c.task, c.protocol))
                 for c in columns]
        body.append([method_cell(ctx, src, m), *cells])
    return md.table(["method", *(md.text(c.header) for c in columns)], body)


@dataclass(frozen=True)
class Headline:
    """The setting the home page quotes for every method: few-shot accuracy on one task."""

    task: str
    shots: int
    values: dict[str, tuple[float, bool]]  # method -> (mean accuracy, measured without training images)

    @property
    def label(self) -> str:
        return f"{self.task}, {self.shots} shots"


HEADLINE_TASK = "digits"  # the task the README quotes; any other few-shot task if it was not measured


def headline(rows: list[dict[str, Any]]) -> Headline | None:
    """Few-shot accuracy at the largest shot count on :data:`HEADLINE_TASK` (else the first
    few-shot task), per method, from rows of one backbone and weights."""
    g = report.Groups(rows)
    tasks = g.tasks("few-shot")
    if not tasks:
        return None
    task = HEADLINE_TASK if HEADLINE_TASK in tasks else tasks[0]
    top = (g.shots(task, "few-shot") or [0])[-1]
    values = {}
    for m in g.methods(task, "few-shot"):
        stat = g.stat(m, task, "few-shot", top, "accuracy")
        if stat is not None:
            values[m] = (stat[0], g.zero_shot_only(m, task, "few-shot"))
    return Headline(task, top, values)
