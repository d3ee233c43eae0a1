"""Tables from benchmark rows: mean ± std over seeds, as Markdown (README, site, terminal).

Aggregation is over seeds only: rows that share ``(backbone, method, task, protocol,
shots)`` form one group. Means and (population) standard deviations come from
:func:`vlmeft.data.protocol.mean_std`; the HM of a group is the harmonic mean of its
mean base and mean novel accuracies (:func:`vlmeft.data.protocol.base_novel_hm`, the
literature's convention), its ± the std of the per-seed HMs. Values print as
percentages.

Zero-shot cells (``shots == 0``: methods that use no training images) appear in every
shot column of a table, marked ``*``, since their value does not depend on shots.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vlmeft import kinds
from vlmeft.bench.store import read_results, results_files
from vlmeft.errors import VlmeftError

Stat = tuple[float, float, int]  # mean, std, number of seeds
# The metric whose seed variance summarises each trained protocol (stability table, site),
# as each task kind declares it.
STABILITY_METRIC = kinds.stability_metrics()


def load_rows(folder: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Rows of every results file in ``folder`` (of ``profile`` only, if given)."""
    rows: list[dict[str, Any]] = []
    files = results_files(folder)
    for path in files:
        doc = read_results(path)
        if profile is None or doc.get("profile") == profile:
            rows += doc["rows"]
    if not rows:
        which = f" of profile '{profile}'" if profile else ""
        raise VlmeftError(f"no benchmark results{which} here; run `vlmeft bench` first", where=str(folder))
    return rows


class Groups:
    """Rows grouped over seeds, with lookups by (method, task, protocol, shots)."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            self.groups[(row["method"], row["task"], row["protocol"], int(row["shots"]))].append(row)

    def rows(self, method: str, task: str, protocol: str, shots: int) -> list[dict[str, Any]]:
        """The group, falling back to the method's zero-shot group (shots 0)."""
        return self.groups.get((method, task, protocol, shots)) or self.groups.get((method, task, protocol, 0), [])

    def stat(self, method: str, task: str, protocol: str, shots: int, metric: str) -> Stat | None:
        from vlmeft.data import protocol as proto

        members = self.rows(method, task, protocol, shots)
        if metric == "hm":
            pairs = [(r["base"], r["novel"]) for r in members if r.get("base") is not None and r.get("novel") is not None]
            if not pairs:
                return None
            mean = proto.base_novel_hm([b for b, _ in pairs], [n for _, n in pairs])["hm"]
            _, std = proto.mean_std([proto.harmonic_mean(b, n) for b, n in pairs])
            return mean, std, len(pairs)
        values = [_metric(r, metric) for r in members]
        values = [v for v in values if v is not None]
        if not values:
            return None
        mean, std = proto.mean_std(values)
        return mean, std, len(values)

    def zero_shot_only(self, method: str, task: str, protocol: str) -> bool:
        keys = [k for k in self.groups if k[:3] == (method, task, protocol)]
        return bool(keys) and all(k[3] == 0 for k in keys)

    def methods(self, task: str, protocol: str) -> list[str]:
        return sorted({k[0] for k in self.groups if k[1] == task and k[2] == protocol})

    def tasks(self, protocol: str) -> list[str]:
        return sorted({k[1] for k in self.groups if k[2] == protocol})

    def shots(self, task: str, protocol: str) -> list[int]:
        return sorted({k[3] for k in self.groups if k[1] == task and k[2] == protocol and k[3] > 0})

    def domains(self, task: str, protocol: str) -> list[str]:
        """The shifted domains any row of (task, protocol) reports, sorted."""
        return sorted({d for (_, t, q, _), rows in self.groups.items() if t == task and q == protocol
                       for r in rows for d in (r.get("domains") or {})})

    def targets(self, task: str, protocol: str) -> list[str]:
        """The target tasks any row of (task, protocol) reports, in the order first seen."""
        seen: dict[str, None] = {}
        for (_, t, q, _), rows in sorted(self.groups.items()):
            if t == task and q == protocol:
                for r in rows:
                    seen.update(dict.fromkeys(r.get("targets") or {}))
        return list(seen)

    def each(self, metrics: Sequence[str]) -> Iterator[tuple[tuple[str, str, str, int], int, dict[str, Stat | None]]]:
        """Every group, sorted by (method, task, protocol, shots): its key, its number of rows,
        and the :meth:`stat` of each metric (None where no row of the group carries it)."""
        for key in sorted(self.groups):
            yield key, len(self.groups[key]), {m: self.stat(*key, m) for m in metrics}


def _metric(row: dict[str, Any], metric: str) -> float | None:
    if metric.startswith("domain:"):
        value = (row.get("domains") or {}).get(metric.split(":", 1)[1])
    elif metric.startswith("target:"):
        value = (row.get("targets") or {}).get(metric.split(":", 1)[1])
    else:
        value = row.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def shots_text(shots: int) -> str:
    """A shot count as tables print it: ``full`` for every training example (VQA, captioning)."""
    from vlmeft.kinds._generative import FULL

    return "full" if shots >= FULL else str(shots)


def pct(stat: Stat | None, *, star: bool = False) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if n > 1 else "")
    return text + ("*" if star else "")


def _table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def _by_score(methods: list[str], score: Any) -> list[str]:
    return sorted(methods, key=lambda m: (-(score(m) if score(m) is not None else -1.0), m))


def _first(stat: Stat | None) -> float | None:
    return stat[0] if stat else None


# --------------------------------------------------------------------- tables
def few_shot_table(g: Groups, task: str, protocol: str = "few-shot") -> str:
    shots = g.shots(task, protocol)
    top = shots[-1] if shots else 0
    methods = _by_score(g.methods(task, protocol), lambda m: _first(g.stat(m, task, protocol, top, "accuracy")))
    body = []
    for m in methods:
        star = g.zero_shot_only(m, task, protocol)
        cols = [pct(g.stat(m, task, protocol, k, "accuracy"), star=star) for k in shots or [0]]
        body.append([m, *cols])
    heads = [f"{k}-shot" for k in shots] or ["zero-shot"]
    return _table(["method", *heads], body)


def base_to_novel_table(g: Groups, task: str) -> str:
    p = "base-to-novel"
    body = []
    for k in g.shots(task, p) or [0]:
        zs_novel = _first(g.stat("zsclip", task, p, k, "novel"))
        methods = _by_score(g.methods(task, p), lambda m, k=k: _first(g.stat(m, task, p, k, "hm")))
        for m in methods:
            novel = g.stat(m, task, p, k, "novel")
            delta = "–" if novel is None or zs_novel is None else f"{100 * (novel[0] - zs_novel):+.1f}"
            star = g.zero_shot_only(m, task, p)
            body.append([m, str(k), pct(g.stat(m, task, p, k, "base"), star=star), pct(novel, star=star),
                         pct(g.stat(m, task, p, k, "hm"), star=star), delta])
    return _table(["method", "shots", "base", "novel", "HM", "novel vs zero-shot"], body)


def _source_and_shifts(g: Groups, task: str, p: str, columns: list[str], prefix: str, mean: str,
                       mean_header: str) -> str:
    """Per shot count and method: source accuracy, one column per shifted test set
    (metric ``prefix:column``) and their mean, best mean first."""
    body = []
    for k in g.shots(task, p) or [0]:
        methods = _by_score(g.methods(task, p), lambda m, k=k: _first(g.stat(m, task, p, k, mean)))
        for m in methods:
            star = g.zero_shot_only(m, task, p)
            body.append([m, str(k), pct(g.stat(m, task, p, k, "accuracy"), star=star),
                         *(pct(g.stat(m, task, p, k, f"{prefix}:{c}"), star=star) for c in columns),
                         pct(g.stat(m, task, p, k, mean), star=star)])
    return _table(["method", "shots", "source", *columns, mean_header], body)


def cross_domain_table(g: Groups, task: str) -> str:
    p = "cross-domain"
    return _source_and_shifts(g, task, p, g.domains(task, p), "domain", "shifted_mean", "shifted mean")


def transfer_table(g: Groups, task: str, protocol: str) -> str:
    """Source accuracy, each target task's accuracy and their mean (cross-dataset,
    domain generalisation)."""
    return _source_and_shifts(g, task, protocol, g.targets(task, protocol), "target", "target_mean", "target mean")


def cost_table(g: Groups) -> str:
    """Trainable parameters and training seconds, from the few-shot rows."""
    p = "few-shot"
    body = []
    for task in g.tasks(p):
        shots = g.shots(task, p)
        for m in sorted(g.methods(task, p)):
            rows = g.rows(m, task, p, shots[-1] if shots else 0)
            params = rows[0].get("trainable_params") if rows else None
            secs = [g.stat(m, task, p, k, "train_seconds") for k in shots]
            body.append([m, task, f"{int(params):,}" if params is not None else "–",
                         *(f"{s[0]:.2f}" if s else "–" for s in secs)])
        heads = [f"train s, {k}-shot" for k in shots]
        return _table(["method", "task", "trainable params", *heads], body)  # the first few-shot task
    return ""


def stability_rows(g: Groups) -> list[tuple[str, int, float, float]]:
    """Seed variance per method: ``(method, settings, mean std, max std)``, over the std over
    seeds of each trained setting (few-shot accuracy, base-to-novel HM, cross-domain shifted
    mean) measured with more than one seed; steadiest method first."""
    metric = STABILITY_METRIC
    stds: dict[str, list[float]] = defaultdict(list)
    for (method, task, protocol, shots), members in g.groups.items():
        if protocol in metric and shots > 0:
            stat = g.stat(method, task, protocol, shots, metric[protocol])
            if stat is not None and stat[2] > 1:
                stds[method].append(stat[1])
    order = sorted(stds, key=lambda m: (sum(stds[m]) / len(stds[m]), m))
    return [(m, len(stds[m]), sum(stds[m]) / len(stds[m]), max(stds[m])) for m in order]


def stability_table(g: Groups) -> str:
    """Seed variance per method: the std over seeds of each trained setting (few-shot,
    base-to-novel HM, cross-domain shifted mean), summarised as its mean and maximum."""
    rows = stability_rows(g)
    if not rows:
        return ""
    body = [[m, str(n), f"{100 * mean:.2f}", f"{100 * top:.2f}"] for m, n, mean, top in rows]
    return _table(["method", "settings", "mean std (points)", "max std (points)"], body)


def headline_columns(g: Groups) -> list[kinds.Column]:
    """The headline number of each protocol and task measured, as each task kind declares it
    (few-shot accuracy, base/novel/HM and cross-domain source/shifted at the largest shot
    count, retrieval R@1, grounding accuracy). The site's method x protocol summary shows the
    same columns."""
    return [c for kind in kinds.all_kinds() for c in kind.headline_columns(g)]


def headline_table(rows: Sequence[dict[str, Any]]) -> str:
    """One row per method: its headline number under each protocol and task measured
    (rows of one backbone and weights; see :func:`backbones`)."""
    if len(backbones(rows)) > 1:
        raise VlmeftError("these rows mix backbones or weights; split them with backbones() first")
    g = Groups(rows)
    columns = headline_columns(g)
    methods = sorted({k[0] for k in g.groups})
    cost_task = (g.tasks("few-shot") or [None])[0]
    body = []
    for m in methods:
        cells = [pct(g.stat(m, c.task, c.protocol, c.shots, c.metric), star=g.zero_shot_only(m, c.task, c.protocol))
                 for c in columns]
        params = "–"
        if cost_task is not None:
            top = (g.shots(cost_task, "few-shot") or [0])[-1]
            members = g.rows(m, cost_task, "few-shot", top)
            if members:
                params = f"{int(members[0].get('trainable_params') or 0):,}"
        else:  # no classification task (the generative profile): the method's own count, which no task changes
            counts = [r["trainable_params"] for r in rows if r["method"] == m and r.get("trainable_params") is not None]
            if counts:
                params = f"{int(counts[0]):,}"
        body.append([m, *cells, params])
    return _table(["method", *(c.header for c in columns), "trainable params"], body)


def backbones(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows split by (backbone, weights): results of different weights are never averaged,
    nor those of different recipes: a row of a recipe other than the embedded one (rows
    from before the recipes existed were measured with it) has the recipe named after its
    weights."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        weights = str(row.get("backbone_weights", ""))
        if row.get("recipe") not in (None, "embedded"):
            weights += f" ({row['recipe']} recipe)"
        out[(str(row["backbone"]), weights)].append(row)
    return dict(sorted(out.items()))


def report_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Per backbone (and weights): the headline table, one table per protocol and task, costs."""
    parts = backbones(rows)
    if len(parts) == 1:
        return _report_one(next(iter(parts.values())))
    return "".join(f"# Backbone {name} (weights {weights})\n\n" + _report_one(part)
                   for (name, weights), part in parts.items())


def headline_section(rows: Sequence[dict[str, Any]]) -> str:
    """How to read the headline table, then the table (README and ``--report``)."""
    seeds = sorted({int(r["seed"]) for r in rows})
    return (f"Mean ± std over seeds ({', '.join(map(str, seeds))}), percentages; `*` = zero-shot "
            "(no training images, one deterministic run). Few-shot and cross-domain at the largest "
            "shot count measured.\n\n" + headline_table(rows))


def run_size(rows: Sequence[dict[str, Any]]) -> str:
    """How big a run was: cells, and the summed training time with its largest share."""
    seconds: dict[str, float] = defaultdict(float)
    for r in rows:
        seconds[r["method"]] += float(r.get("train_seconds") or 0.0)
    total = sum(seconds.values())
    top = max(seconds, key=lambda m: (seconds[m], m)) if seconds else None
    share = f", {seconds[top] / total:.0%} of it {top}'s" if top and total else ""
    return f"{len(rows)} cells; their training took {total / 60:.0f} min in all{share}"


def digits_table(rows: Sequence[dict[str, Any]], seeds: Sequence[int] = (1, 2, 3)) -> str:
    """``results/digits-4shot.json`` as a table: every method (and variant) against zero-shot
    CLIP per seed, then a one-line summary of who beats it (README, benchmarks/digits_4shot.py)."""
    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r.get("variant", r["method"]), {})[r["seed"]] = r["accuracy"]
    zs = statistics.fmean(r["zero_shot_accuracy"] for r in rows)
    lines = [f"Zero-shot CLIP: {100 * zs:.1f}%. Test accuracy (%), digits, 4 shots per class.", "",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std | seed 1 above zero-shot |",
             "|---|" + "---|" * (len(seeds) + 2)]
    gains: dict[str, float] = {}
    first = seeds[0]
    for label, accs in by.items():
        a = [accs[s] for s in seeds if s in accs]
        beats = "–" if label == "zsclip" else ("yes" if accs.get(first, 0) > zs else "**no**")
        cells = " | ".join(f"{100 * accs[s]:.1f}" if s in accs else "–" for s in seeds)
        lines.append(f"| {label} | {cells} | {100 * statistics.fmean(a):.1f} ± {100 * statistics.pstdev(a):.1f} "
                     f"| {beats} |")
        if label != "zsclip":
            gains[label] = statistics.fmean(a) - zs
    above = sum(by[m].get(first, 0) > zs for m in gains)
    lines += ["", f"Above zero-shot at seed {first}: {above} of {len(gains)}; on the mean over seeds: "
                  f"{sum(g > 0 for g in gains.values())} of {len(gains)}."]
    if gains:
        low = min(gains, key=lambda m: (gains[m], m))
        lines[-1] += f" Smallest mean gain: {low} ({100 * gains[low]:+.1f} points)."
    return "\n".join(lines)


def _report_one(rows: Sequence[dict[str, Any]]) -> str:
    g = Groups(rows)
    out = ["## Headline\n\n", headline_section(rows), "\n"]
    for kind in kinds.all_kinds():
        out += kind.report_sections(g)
    stability = stability_table(g)
    if stability:
        out += ["## Stability over seeds\n\n",
                "Standard deviation over seeds of every trained setting (few-shot accuracy, base-to-novel HM, "
                "cross-domain shifted mean), in percentage points; zero-shot methods have none.\n\n",
                stability, "\n"]
    cost = cost_table(g)
    if cost:
        out += ["## Cost\n\n", "Trainable parameters, and wall-clock seconds of `fit` (training plus "
                "selection on val) per cell: indicative only, they depend on the machine and its load.\n\n",
                cost, "\n"]
    return "".join(out)
