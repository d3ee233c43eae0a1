"""Benchmark plots as PNG bytes (matplotlib, headless Agg backend, no fonts fetched)."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(plt, fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_shots(aggs: list[dict[str, Any]], task: str) -> bytes | None:
    """One line per method: mean accuracy (error bar = std over seeds) against shots."""
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for a in aggs:
        if a["task"] == task and a.get("accuracy") is not None and a.get("shots") is not None:
            series[a["method"]].append((a["shots"], a["accuracy"], a.get("accuracy_std") or 0.0))
    if not series:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, pts in sorted(series.items()):
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("symlog", base=2, linthresh=1)
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy vs shots: {task}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _png(plt, fig)


def base_vs_novel(aggs: list[dict[str, Any]]) -> bytes | None:
    """One point per (method, task, shots) with both base and novel accuracy."""
    pts = [a for a in aggs if a.get("base") is not None and a.get("novel") is not None]
    if not pts:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 6))
    for a in pts:
        ax.scatter(a["base"], a["novel"], s=30)
        ax.annotate(f"{a['method']} ({a['task']}, {a['shots']:g})" if a.get("shots") is not None
                    else f"{a['method']} ({a['task']})",
                    (a["base"], a["novel"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo = min(min(a["base"], a["novel"]) for a in pts)
    hi = max(max(a["base"], a["novel"]) for a in pts)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("base accuracy")
    ax.set_ylabel("novel accuracy")
    ax.set_title("Base vs novel classes")
    ax.grid(alpha=0.3)
    return _png(plt, fig)
