"""The literature leaderboard: reported results of the records, one page per
(protocol, dataset, backbone[, shots]) board, each number linking to its source.

Reported numbers are never mixed with numbers measured here. Where ``results/bench/`` holds
measured rows for the same method, dataset (``coop:NAME`` task), protocol and backbone,
they appear in a separate column beside the reported ones, as mean ± std over seeds
(:mod:`vlmeft.bench.report`), and never enter the ranking.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from vlmeft.kb.results import Reported, backbone_id, boards, dataset_id
from vlmeft.sitegen import markup as md
from vlmeft.sitegen.context import GEN, PATHS, Context, rel

INDEX = PATHS["leaderboard"]
RANK_METRIC = {"base-to-novel": "hm"}  # the metric a board is sorted by (default: its only/first metric)
METRIC_ORDER = ("base", "novel", "hm", "accuracy", "accuracy-gain", "miou", "recall-at-1", "average-score")
# The protocols whose measured counterpart the bench runs under the same name.
MEASURED_PROTOCOLS = {"few-shot": "few-shot", "base-to-novel": "base-to-novel"}
SHORT = {"hm": "HM", "base": "base", "novel": "novel", "accuracy": "accuracy"}  # column labels


def board_path(key: tuple[str, str, str, int | None]) -> str:
    protocol, dataset, backbone, shots = key
    tail = f"-{shots}-shot" if shots is not None else ""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{protocol}-{dataset}-{backbone}{tail}".lower())
    return f"{GEN}/leaderboard/{slug}.md"


def _name(kb: Any, kind: str, value: str) -> str:
    table = getattr(kb.vocab, kind) if kb.vocab is not None else {}
    entry = table.get(value)
    return entry.name if entry is not None else value


def board_title(kb: Any, key: tuple[str, str, str, int | None]) -> str:
    protocol, dataset, backbone, shots = key
    shot = f", {shots} shots" if shots is not None else ""
    return f"{_name(kb, 'protocols', protocol)}{shot}: {_name(kb, 'datasets', dataset)}, {_name(kb, 'backbones', backbone)}"


# ---------------------------------------------------------------------------------------
# Measured numbers (results/bench via vlmeft.bench.report), kept apart from reported ones
# ---------------------------------------------------------------------------------------


class Measured:
    """Bench rows indexed by (method, dataset id, protocol, backbone id)."""

    def __init__(self, kb: Any, rows: list[dict[str, Any]]) -> None:
        from vlmeft.bench import report

        self.kb = kb
        by_bb: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            bb = backbone_id(kb, str(row.get("backbone") or ""))
            if bb is not None and dataset_id(kb, str(row.get("task") or "")) is not None:
                by_bb[bb].append(row)
        self.groups = {bb: report.Groups(rs) for bb, rs in by_bb.items()}

    def stat(self, method: str, dataset: str, protocol: str, backbone: str, shots: int | None,
             metric: str) -> tuple[float, float, int] | None:
        """Mean ± std over seeds in percent, and the seed count; for an average dataset the mean
        over its member datasets when every member was measured (HM: of the averaged base and
        novel accuracies, as the literature computes it)."""
        from vlmeft.data import protocol as proto

        g = self.groups.get(backbone)
        bench_protocol = MEASURED_PROTOCOLS.get(protocol)
        if g is None or bench_protocol is None or shots is None:
            return None
        members = self.kb.vocab.datasets[dataset].members or [dataset]
        if metric == "hm" and len(members) > 1:
            base = self.stat(method, dataset, protocol, backbone, shots, "base")
            novel = self.stat(method, dataset, protocol, backbone, shots, "novel")
            if base is None or novel is None:
                return None
            return proto.harmonic_mean(base[0], novel[0]), 0.0, min(base[2], novel[2])
        stats = [g.stat(method, f"coop:{d}", bench_protocol, shots, metric) for d in members]
        if any(s is None for s in stats):
            return None
        means = [s[0] for s in stats]  # type: ignore[index]
        mean = 100 * sum(means) / len(means)
        std = 100 * stats[0][1] if len(stats) == 1 else 0.0  # type: ignore[index]
        return mean, std, min(s[2] for s in stats)  # type: ignore[index]


def _fmt_measured(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std else "") + f" ({n} seed{'s' if n != 1 else ''})"


# ---------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------


def _rows(results: list[Reported]) -> dict[tuple[str, str | None, str, int | None], dict[str, Reported]]:
    """One row per (method, setting, source, shots): its metrics."""
    out: dict[tuple[str, str | None, str, int | None], dict[str, Reported]] = defaultdict(dict)
    for r in results:
        out[(r.method, r.setting, r.source, r.shots)][r.metric] = r
    return out


def board_page(ctx: Context, key: tuple[str, str, str, int | None], results: list[Reported],
               measured: Measured | None) -> str:
    src = board_path(key)
    kb = ctx.kb
    protocol, dataset, backbone, shots = key
    metrics = [m for m in METRIC_ORDER if any(r.metric == m for r in results)]
    rank = RANK_METRIC[protocol] if RANK_METRIC.get(protocol) in metrics else metrics[0]
    rows = _rows(results)
    order = sorted(rows, key=lambda k: (-(rows[k][rank].value if rank in rows[k] else -1e9), k[0]))
    show_measured = measured is not None and protocol in MEASURED_PROTOCOLS and any(
        measured.stat(k[0], dataset, protocol, backbone, k[3], rank) is not None for k in rows)
    metrics = [rank] + [m for m in metrics if m != rank]  # the ranking metric first: tables scroll sideways
    with_setting = any(k[1] for k in rows)
    with_shots = shots is None and len({k[3] for k in rows}) > 1
    head = ["#", "method"] + [SHORT.get(m, md.text(_name(kb, "metrics", m))) for m in metrics]
    head += ["shots"] if with_shots else []
    head += ["setting"] if with_setting else []
    head += [f"{SHORT.get(rank, rank)} measured here"] if show_measured else []
    body = []
    for i, k in enumerate(order, 1):
        method, setting, _source, row_shots = k
        cells = [str(i), ctx.method_id_link(src, method)]
        for m in metrics:
            r = rows[k].get(m)
            if r is None:
                cells.append("")
                continue
            mark = "*" if r.discrepancy else ""
            cells.append(md.ext_link(r.source, f"{r.value:.2f}{mark}"))
        if with_shots:
            cells.append(str(row_shots) if row_shots is not None else "")
        if with_setting:
            cells.append(md.text(setting) if setting else "")
        if show_measured:
            assert measured is not None
            cells.append(_fmt_measured(measured.stat(method, dataset, protocol, backbone, row_shots, rank)))
        body.append(cells)
    parts = [md.front_matter(title=md.attr(board_title(kb, key))),
             f"# {md.text(board_title(kb, key))}\n\n",
             "Reported by the papers or their official repositories, not measured here; each number links to "
             "its source (the method page names the table); all values in percent. Ranked by the reported "
             f"{md.text(_name(kb, 'metrics', rank))}.",
             (" Numbers measured here (`results/bench/`) are in their own column and never ranked." if show_measured
              else " Nothing on this board has been measured here yet (`results/bench/` holds no matching rows)."),
             "\n\n", md.table(head, body), "\n"]
    notes = [r for r in results if r.discrepancy]
    if notes:
        parts.append("\\* Kept as printed although it disagrees with the source's other numbers:\n\n")
        for r in notes:
            parts.append(f"- {ctx.method_id_link(src, r.method)}: {md.text(r.discrepancy)}\n")
        parts.append("\n")
    caveats = sorted({r.note for r in results if r.note})
    if caveats:
        parts.append('??? note "Notes on the rows"\n\n')
        for r in results:
            if r.note:
                parts.append(f"    - {ctx.method_id_link(src, r.method)} ({md.text(r.metric)}): {md.text(r.note)}\n")
        parts.append("\n")
    return "".join(parts)


def index_page(ctx: Context, keys: list[tuple[str, str, str, int | None]], by_key: dict[Any, list[Reported]]) -> str:
    kb = ctx.kb
    rows = []
    for key in keys:
        methods = {r.method for r in by_key[key]}
        rows.append([f"[{md.text(board_title(kb, key))}]({rel(INDEX, board_path(key))})", str(len(methods)),
                     str(len(by_key[key]))])
    return ("# Literature leaderboard\n\n"
            "What the papers report, normalised to controlled ids for metric, dataset, protocol and backbone "
            "(`taxonomy/vocab.yaml`) so that numbers from different papers line up. Every number links to the "
            "table or log it was read from. Numbers measured in this repository are shown beside the reported "
            "ones where both exist, never mixed into the ranking. Query them with "
            "`vlmeft.kb.results.reported(kb, method, dataset, protocol, metric, backbone, shots)`.\n\n"
            + md.table(["board", "methods", "numbers"], rows))


def nav_and_files(ctx: Context, bench_rows: list[dict[str, Any]] | None = None) -> tuple[list[Any], dict[str, str]]:
    """Every board page and the index, and the navigation entry."""
    kb = ctx.kb
    if getattr(kb, "vocab", None) is None:
        return [], {}
    by_key = boards(kb)
    keys = sorted(by_key, key=lambda k: (-len({r.method for r in by_key[k]}), k[0], k[1], k[2], k[3] or 0))
    rows = bench_rows if bench_rows is not None else (ctx.bench.rows if ctx.bench is not None else [])
    measured = Measured(kb, rows)
    files = {INDEX: index_page(ctx, keys, by_key)}
    for key in keys:
        files[board_path(key)] = board_page(ctx, key, by_key[key], measured)
    nav = [{"Leaderboard": [INDEX, *(board_path(k) for k in keys)]}]
    return nav, files


__all__ = ["INDEX", "Measured", "board_page", "board_path", "nav_and_files"]
