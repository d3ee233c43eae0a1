"""Benchmark plots as PNG bytes (matplotlib, headless Agg backend, no fonts fetched)."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from vlmeft.kinds._generative import FULL, ZERO_SHOT  # shots meaning "every training example"; the frozen captioner


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


@dataclass(frozen=True)
class Line:
    """One method's line on the accuracy-against-shots plot.

    A method measured only at shots 0 (zero-shot or training-free) does not depend on shots,
    so it is a flat reference (``flat``) spanning the trained methods' shot range rather than
    a lone point at x = 0.
    """

    method: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    errs: tuple[float, ...]
    flat: bool


def shot_series(aggs: list[dict[str, Any]], task: str, protocol: str = "few-shot",
                metric: str = "accuracy") -> list[Line]:
    """The lines of :func:`accuracy_vs_shots` (``aggs`` of one backbone, from
    :func:`vlmeft.sitegen.sections.aggregate`): the mean ``metric`` and its std over seeds.
    A full-data point (shots at least :data:`vlmeft.kinds._generative.FULL`) sits one
    doubling right of the largest shot count (:func:`full_x`)."""
    points: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for a in aggs:
        stat = a["stats"].get(metric)
        if a["task"] == task and a["protocol"] == protocol and stat is not None:
            points[a["method"]].append((a["shots"], stat[0], stat[1]))
    finite = [p[0] for pts in points.values() for p in pts if 0 < p[0] < FULL]
    for method, pts in points.items():
        points[method] = [(full_x(finite) if k >= FULL else k, y, e) for k, y, e in pts]
    trained = [p[0] for pts in points.values() for p in pts if p[0] > 0]
    lo, hi = (min(trained), max(trained)) if trained else (0, 1)
    lines = []
    for method, pts in sorted(points.items()):
        pts.sort()
        if all(p[0] == 0 for p in pts):
            (_, y, err), = pts
            lines.append(Line(method, (lo, hi), (y, y), (err, err), flat=True))
        else:
            lines.append(Line(method, tuple(p[0] for p in pts), tuple(p[1] for p in pts),
                              tuple(p[2] for p in pts), flat=False))
    return lines


def full_x(shots: list[int]) -> int:
    """Where "full data" is drawn: one doubling right of the largest shot count."""
    return 2 * max(shots) if shots else 1


def _family(method: str) -> str:
    """The panel a method is drawn in: its category's first two levels ("prompt.visual",
    "adapter.unimodal", ...; text prompts by subtype, hand-crafted and learnable), "baseline"
    for uncategorised methods and unknown ids."""
    from vlmeft import registry
    from vlmeft.errors import VlmeftError

    try:
        category = getattr(registry.get(method), "category", None) or "baseline"
    except (ImportError, AttributeError, VlmeftError):
        category = "baseline"
    return category if category.startswith("prompt.textual") else ".".join(category.split(".")[:2])


PANEL_TITLES = {"prompt.textual.handcrafted": "hand-crafted text prompts",
                "prompt.textual.learnable": "learnable text prompts", "prompt.visual": "visual prompts",
                "prompt.multimodal": "multimodal prompts", "adapter.unimodal": "unimodal adapters",
                "adapter.crossmodal": "cross-modal adapters", "baseline": "baselines"}
REFERENCE = "zsclip"  # drawn in every panel, so each panel reads against zero-shot CLIP
# The zero-shot reference of the generative tasks (the frozen captioner) plays zsclip's part there.
REFERENCES = (REFERENCE, ZERO_SHOT)


def accuracy_vs_shots(aggs: list[dict[str, Any]], task: str, protocol: str = "few-shot", metric: str = "accuracy",
                      label: str = "accuracy") -> bytes | None:
    """Small multiples, one panel per method family (a dozen lines at most, each colour
    told apart): trained methods as curves (error bar = std over seeds) against shots;
    zero-shot methods as dashed horizontal references across the same range (see
    :class:`Line`); the zero-shot model (CLIP, or the frozen captioner) as a grey reference
    in every panel. ``metric`` / ``label``: what is plotted (VQA accuracy, CIDEr, ...)."""
    lines = shot_series(aggs, task, protocol, metric)
    if not lines:
        return None
    panels: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        panels[_family(line.method)].append(line)
    order = [f for f in PANEL_TITLES if f in panels] + sorted(f for f in panels if f not in PANEL_TITLES)
    reference = next((line for line in lines if line.method in REFERENCES and line.flat), None)
    plt = _figure()
    cols = min(3, len(order))
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.3 * rows), sharey=True, squeeze=False)
    full = any(a["shots"] >= FULL for a in aggs if a["task"] == task and a["protocol"] == protocol)
    finite = sorted({a["shots"] for a in aggs if a["task"] == task and a["protocol"] == protocol
                     and 0 < a["shots"] < FULL})
    for ax, family in zip(axes.flat, order):
        # Ten distinct colours while they suffice; past ten, tab20's dark shades then its light ones.
        colors = plt.get_cmap("tab10").colors if len(panels[family]) <= 10 else (
            plt.get_cmap("tab20").colors[0::2] + plt.get_cmap("tab20").colors[1::2])
        if reference is not None and family != _family(reference.method):
            ax.plot(reference.xs, reference.ys, ls=":", lw=1.5, color="grey", label=f"{reference.method} (zero-shot)")
        for i, line in enumerate(panels[family]):
            color = colors[i % len(colors)]
            if line.flat:
                ax.plot(line.xs, line.ys, ls="--", lw=1.5, color=color, label=f"{line.method} (zero-shot)")
                if line.errs[0] > 0:
                    ax.fill_between(line.xs, [y - e for y, e in zip(line.ys, line.errs)],
                                    [y + e for y, e in zip(line.ys, line.errs)], color=color, alpha=0.15)
            else:
                ax.errorbar(line.xs, line.ys, yerr=line.errs, marker="os^vD"[i % 5], capsize=3, color=color,
                            label=line.method)
        ax.set_xscale("symlog", base=2, linthresh=1)
        if full:  # label the full-data position
            ax.set_xticks([*finite, full_x(finite)], [*map(str, finite), "full"])
        ax.set_title(PANEL_TITLES.get(family, family), fontsize=10)
        ax.set_xlabel("shots per class" if protocol == "few-shot" else "examples per group (shots)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.85)
    for ax in axes[:, 0]:
        ax.set_ylabel(label)
    for ax in list(axes.flat)[len(order):]:
        ax.set_visible(False)
    fig.suptitle(f"{label[0].upper() + label[1:]} vs shots: {task}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # leave the suptitle its own band
    return _png(plt, fig)


def base_vs_novel(aggs: list[dict[str, Any]]) -> bytes | None:
    """One point per (method, task, shots) with both base and novel accuracy (mean over seeds;
    ``aggs`` of one backbone)."""
    pts = [(a, a["stats"]["base"][0], a["stats"]["novel"][0]) for a in aggs
           if "base" in a["stats"] and "novel" in a["stats"]]
    if not pts:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 6))
    for a, base, novel in pts:
        ax.scatter(base, novel, s=30)
        ax.annotate(f"{a['method']} ({a['task']}, {a['shots']})", (base, novel), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    lo = min(min(base, novel) for _, base, novel in pts)
    hi = max(max(base, novel) for _, base, novel in pts)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("base accuracy")
    ax.set_ylabel("novel accuracy")
    ax.set_title("Base vs novel classes")
    ax.grid(alpha=0.3)
    return _png(plt, fig)
