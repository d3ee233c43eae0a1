"""The papers' tables from CoOp-suite rows, each number beside the one the method's
record reports (:mod:`vlmeft.bench.reported`) and the difference.

- Base-to-novel (CoCoOp, MaPLe, ...): per dataset and on average, base, novel and HM.
  The average follows the papers: mean base and mean novel over the datasets, HM of the
  two (:func:`vlmeft.data.protocol.base_novel_hm`).
- Few-shot curves (CoOp): accuracy at 1, 2, 4, 8, 16 shots per dataset and on average.
- Cross-dataset: ImageNet (source) and each of the 10 target datasets, and their mean.
- Domain generalisation: ImageNet and each variant (V2, Sketch, A, R), and their mean.

Every value is the mean over seeds (``±`` the std when more than one seed), in percent.
A cell reads ``ours`` or, when the record reports the same number, ``ours · paper P
(Δ D)``. ``*`` marks a method measured without training images (the same value at every
shot count). Averages cover the datasets measured; ``(n/11)`` says when some are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmeft.bench.report import Groups, Stat, backbones
from vlmeft.bench.reported import Lookup, nothing
from vlmeft.data.protocol import base_novel_hm, mean_std

SUITE = "coop"
PREFIX = "coop:"


def is_suite_row(row: dict[str, Any]) -> bool:
    return str(row.get("task", "")).startswith(PREFIX)


def _dataset(task: str) -> str:
    return task.removeprefix(PREFIX)


def _order(tasks: Sequence[str]) -> list[str]:
    from vlmeft.data import coop

    rank = {f"{PREFIX}{d}": i for i, d in enumerate(coop.dataset_ids())}
    return sorted(tasks, key=lambda t: (rank.get(t, len(rank)), t))


def _title(task: str) -> str:
    from vlmeft.data import coop

    try:
        return coop.reader(_dataset(task)).name
    except Exception:  # noqa: BLE001 (an unknown id still gets a title)
        return task


def _cell(ours: Stat | float | None, paper: float | None, *, star: bool = False) -> str:
    """``ours`` in percent (a Stat or a plain fraction), with the paper's value and Δ."""
    if ours is None:
        return "–" if paper is None else f"– · paper {paper:.2f}"
    if isinstance(ours, tuple):
        mean, std, n = ours
        text = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")
    else:
        mean = ours
        text = f"{100 * mean:.2f}"
    text += "*" if star else ""
    if paper is not None:
        text += f" · paper {paper:.2f} (Δ {100 * mean - paper:+.2f})"
    return text


def _table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


class _Suite:
    def __init__(self, rows: Sequence[dict[str, Any]], lookup: Lookup, backbone: str) -> None:
        self.g = Groups(rows)
        self.lookup = lookup
        self.backbone = backbone

    def paper(self, method: str, dataset: str, protocol: str, metric: str, shots: int | None) -> float | None:
        return self.lookup(method, dataset, protocol, metric, self.backbone, shots)

    def methods(self, protocol: str) -> list[str]:
        return sorted({k[0] for k in self.g.groups if k[2] == protocol})

    # --------------------------------------------------------------- base-to-novel
    def base_to_novel(self) -> str:
        p = "base-to-novel"
        tasks = _order(self.g.tasks(p))
        if not tasks:
            return ""
        out = ["## Base-to-novel generalisation\n\n",
               f"Trained on the base half of each dataset's classes{self._shots_note(p)}, tested on base and novel "
               "classes. Average: HM of the mean base and mean novel accuracies.\n\n"]
        heads = ["method", "base", "novel", "HM"]
        per_method: dict[str, list[tuple[float, float]]] = {}
        top: dict[str, int] = {}
        for task in tasks:
            body = []
            for m in self.methods(p):
                shots = self._top(m, task, p)
                if shots is None:
                    continue
                star = self.g.zero_shot_only(m, task, p)
                stats = {k: self.g.stat(m, task, p, shots, k) for k in ("base", "novel", "hm")}
                if stats["base"] and stats["novel"]:
                    per_method.setdefault(m, []).append((stats["base"][0], stats["novel"][0]))
                    top[m] = max(top.get(m, 0), shots)
                body.append([m, *(_cell(stats[k], self.paper(m, _dataset(task), p, k, shots or None), star=star)
                                  for k in ("base", "novel", "hm"))])
            out += [f"### {_title(task)}\n\n", _table(heads, body), "\n"]
        body = []
        for m, pairs in sorted(per_method.items()):
            avg = base_novel_hm([b for b, _ in pairs], [n for _, n in pairs])
            label = m if len(pairs) == len(tasks) else f"{m} ({len(pairs)}/{len(tasks)})"
            body.append([label, *(_cell(avg[k], self.paper(m, "average", p, k, top[m] or None))
                                  for k in ("base", "novel", "hm"))])
        out += [f"### Average over {len(tasks)} datasets\n\n", _table(heads, body), "\n"]
        return "".join(out)

    def _shots_note(self, protocol: str) -> str:
        shots = sorted({k[3] for k in self.g.groups if k[2] == protocol and k[3] > 0})
        return f" ({', '.join(map(str, shots))} shots)" if shots else ""

    def _top(self, method: str, task: str, protocol: str) -> int | None:
        keys = [k[3] for k in self.g.groups if k[:3] == (method, task, protocol)]
        return max(keys) if keys else None

    # ------------------------------------------------------------------- few-shot
    def few_shot(self) -> str:
        p = "few-shot"
        tasks = _order(self.g.tasks(p))
        if not tasks:
            return ""
        shots = sorted({k[3] for k in self.g.groups if k[2] == p and k[3] > 0}) or [0]
        out = ["## Few-shot learning\n\n", "Accuracy against training shots per class (the papers' curves).\n\n"]
        heads = ["method", *(f"{k} shots" for k in shots)]
        means: dict[tuple[str, int], list[float]] = {}
        for task in tasks:
            body = []
            for m in self.methods(p):
                if not any(k[:3] == (m, task, p) for k in self.g.groups):
                    continue
                star = self.g.zero_shot_only(m, task, p)
                row = [m]
                for k in shots:
                    stat = self.g.stat(m, task, p, k, "accuracy")
                    if stat:
                        means.setdefault((m, k), []).append(stat[0])
                    row.append(_cell(stat, self.paper(m, _dataset(task), p, "accuracy", k), star=star))
                body.append(row)
            out += [f"### {_title(task)}\n\n", _table(heads, body), "\n"]
        body = []
        for m in self.methods(p):
            row = [m]
            for k in shots:
                values = means.get((m, k), [])
                mean = mean_std(values)[0] if values else None
                cell = _cell(mean, self.paper(m, "average", p, "accuracy", k))
                row.append(cell + (f" ({len(values)}/{len(tasks)})" if values and len(values) < len(tasks) else ""))
            body.append(row)
        out += [f"### Average over {len(tasks)} datasets\n\n", _table(heads, body), "\n"]
        return "".join(out)

    # ------------------------------------------------------------ transfer tables
    def transfer(self, protocol: str, title: str, note: str) -> str:
        note = note.format(shots=self._shots_note(protocol))
        out = []
        for task in _order(self.g.tasks(protocol)):
            targets = _order(self.g.targets(task, protocol))
            heads = ["method", f"{_title(task)} (source)", *(_title(t) for t in targets), "mean"]
            body = []
            for m in self.methods(protocol):
                k = self._top(m, task, protocol)
                if k is None:
                    continue
                star = self.g.zero_shot_only(m, task, protocol)
                source = self.g.stat(m, task, protocol, k, "accuracy")
                row = [m, _cell(source, self.paper(m, _dataset(task), protocol, "accuracy", k or None), star=star)]
                row += [_cell(self.g.stat(m, task, protocol, k, f"target:{t}"),
                              self.paper(m, _dataset(t), protocol, "accuracy", k or None), star=star) for t in targets]
                row.append(_cell(self.g.stat(m, task, protocol, k, "target_mean"),
                                 self.paper(m, "average", protocol, "accuracy", k or None), star=star))
                body.append(row)
            out += [f"## {title}\n\n", note, "\n\n", _table(heads, body), "\n"]
        return "".join(out)


def suite_markdown(rows: Sequence[dict[str, Any]], lookup: Lookup = nothing) -> str:
    """The four tables per backbone (and weights) for the CoOp-suite rows among ``rows``."""
    rows = [r for r in rows if is_suite_row(r)]
    if not rows:
        return ""
    parts = backbones(rows)
    out = []
    for (name, weights), part in parts.items():
        if len(parts) > 1:
            out.append(f"# Backbone {name} (weights {weights})\n\n")
        seeds = sorted({int(r["seed"]) for r in part})
        out.append(f"Backbone {name}, weights {weights}; mean ± std over seeds {', '.join(map(str, seeds))}, "
                   "percentages; `paper` = the number the method's record reports for the same dataset and protocol, "
                   "Δ = ours − paper.\n\n")
        s = _Suite(part, lookup, name)
        out.append(s.base_to_novel())
        out.append(s.few_shot())
        out.append(s.transfer("cross-dataset", "Cross-dataset transfer",
                              "Trained on ImageNet{shots}, tested on each other dataset with its own class names."))
        out.append(s.transfer("domain-generalisation", "Domain generalisation",
                              "Trained on ImageNet{shots}, tested on its variants (A and R: their 200 classes)."))
    return "".join(out)

