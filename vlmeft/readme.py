"""README.md's counts and results tables, generated from the data they describe.

README.md marks what is generated with HTML comments, inline or as a block::

    <!-- generated:count:records -->57<!-- /generated:count:records --> method records
    <!-- generated:digits-4shot -->
    ...table...
    <!-- /generated:digits-4shot -->

Everything between a pair is replaced by :data:`GENERATORS`'s function of that name;
everything else is hand-written and kept. The counts come from :mod:`vlmeft.facts` (the
site uses the same functions), the tables from :mod:`vlmeft.bench.report` over the
committed ``results/``. ``tests/test_readme.py`` fails when README.md differs from what
this renders, so a hand edit of a number, or a new record without regenerating, is caught.

    python -m vlmeft.readme --write      # regenerate README.md in place
    python -m vlmeft.readme --check      # exit 1 (and say which blocks) if it is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from vlmeft.errors import VlmeftError

ROOT = Path(__file__).resolve().parents[1]  # a source checkout: README.md and results/ live here
MARK = re.compile(r"<!-- generated:(?P<name>[a-z0-9:-]+) -->(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S)
OPEN = re.compile(r"<!-- generated:([a-z0-9:-]+) -->")


@dataclass
class Sources:
    """What the README describes: the knowledge base and the committed results."""

    kb: Any
    results: Path

    @cached_property
    def counts(self) -> Any:
        from vlmeft import facts

        return facts.counts(self.kb)

    @cached_property
    def bench_rows(self) -> list[dict[str, Any]]:
        from vlmeft.bench.report import load_rows

        return load_rows(self.results / "bench", "full")

    @cached_property
    def digits_rows(self) -> list[dict[str, Any]]:
        path = self.results / "digits-4shot.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise VlmeftError(f"cannot read the digits 4-shot results: {err}", where=str(path)) from None


def _grounding(src: Sources) -> str:
    """One sentence per grounding method in the benchmark: its accuracy against chance."""
    from vlmeft.bench.report import Groups

    def pct(stat: Any) -> str:
        return f"{100 * stat[0]:.1f}" if stat else "–"

    g = Groups(src.bench_rows)
    out = []
    for task in g.tasks("grounding"):
        for method in g.methods(task, "grounding"):
            if method == "zsclip":  # the crop-and-compare baseline, in the table
                continue
            acc, chance = g.stat(method, task, "grounding", 0, "accuracy"), g.stat(method, task, "grounding", 0, "chance")
            out.append(f"`vlmeft run {method} --task {task}` picks the right box for {pct(acc)}% of the referring "
                       f"expressions, against {pct(chance)}% for a random box.")
    return " ".join(out)


def _digits(src: Sources) -> str:
    from vlmeft.bench.report import digits_table

    return digits_table(src.digits_rows)


def _headline(src: Sources) -> str:
    from vlmeft.bench.report import headline_section

    return headline_section(src.bench_rows).rstrip("\n")


def _bench_size(src: Sources) -> str:
    from vlmeft.bench.report import run_size

    return run_size(src.bench_rows)


def _captioner_quality(src: Sources) -> str:
    """synthcoca-tiny's quality bar, as `vlmeft backbone evaluate --model synthcoca-tiny --record` stored it."""
    path = ROOT / "vlmeft" / "backbone" / "synthcoca" / "weights.json"
    try:
        bar = json.loads(path.read_text(encoding="utf-8"))["eval"]
    except (OSError, ValueError, KeyError) as err:
        raise VlmeftError(f"cannot read synthcoca-tiny's recorded quality bar: {err}", where=str(path)) from None
    lines = ["| task | metric | trivial baseline | zero-shot | VL-Adapter, full data (3 seeds) |", "|---|---|---|---|---|"]
    for task, what in (("world-vqa", "accuracy (%)"), ("world-captions", "CIDEr")):
        r = bar[task]
        lines.append(f"| {task} | {what} | {100 * r['trivial']:.1f} | {100 * r['zero_shot']:.1f} | "
                     f"{100 * r['vl-adapter_full_data']:.1f} ± {100 * r['vl-adapter_full_data_std']:.1f} |")
    return "\n".join(lines)


@dataclass
class _VLColumn:
    task: str
    protocol: str
    metric: str


def _vl_table(src: Sources) -> str:
    """The generative bench (profile vl): per method, zero-shot, 16 examples per group and
    full data, VQA accuracy and captioning CIDEr, mean ± std over seeds."""
    from vlmeft.bench.report import Groups, load_rows, shots_text
    from vlmeft.kinds._generative import FULL, ZERO_SHOT

    rows = load_rows(src.results / "bench", "vl")
    if not rows:
        return "No generative benchmark rows are committed."
    g = Groups(rows)
    cols = (_VLColumn("world-vqa", "vqa", "accuracy"), _VLColumn("world-captions", "captioning", "cider"))

    def cell(method: str, col: _VLColumn, shots: int) -> str:
        stat = g.stat(method, col.task, col.protocol, shots, col.metric)
        return "–" if not stat else f"{100 * stat[0]:.1f} ± {100 * stat[1]:.1f}"

    def zero_shot(col: _VLColumn) -> str:
        stat = g.stat(ZERO_SHOT, col.task, col.protocol, 0, col.metric)
        return "–" if not stat else f"{100 * stat[0]:.1f}"

    def first_above(method: str, col: _VLColumn) -> str:
        """The fewest examples per group whose mean beats the frozen captioner's."""
        zs = g.stat(ZERO_SHOT, col.task, col.protocol, 0, col.metric)
        shots = sorted({r["shots"] for r in rows if r["method"] == method and r["task"] == col.task})
        for k in shots:
            stat = g.stat(method, col.task, col.protocol, k, col.metric)
            if zs and stat and stat[0] > zs[0]:
                return shots_text(k)
        return "never"

    lines = [f"Frozen synthcoca-tiny (zero-shot): VQA accuracy {zero_shot(cols[0])}%, CIDEr {zero_shot(cols[1])}. "
             "Mean ± std over seeds 1-3; the last column is the fewest examples per group at which the mean "
             "beats zero-shot (VQA / captions).", "",
             "| method | VQA, 16 per type | VQA, full data | CIDEr, 16 per group | CIDEr, full data | above zero-shot from |",
             "|---|---|---|---|---|---|"]
    methods = sorted({r["method"] for r in rows} - {ZERO_SHOT})
    for m in methods:
        lines.append(f"| {m} | {cell(m, cols[0], 16)} | {cell(m, cols[0], FULL)} | {cell(m, cols[1], 16)} | "
                     f"{cell(m, cols[1], FULL)} | {first_above(m, cols[0])} / {first_above(m, cols[1])} |")
    return "\n".join(lines)


def _taxonomy(src: Sources) -> str:
    from vlmeft import facts

    return facts.taxonomy_phrase(src.counts)


def _records(src: Sources) -> str:
    from vlmeft import facts

    return facts.records_phrase(src.counts)


def _code(src: Sources) -> str:
    from vlmeft import facts

    return facts.code_phrase(src.counts)


GENERATORS: dict[str, Callable[[Sources], str]] = {
    "count:records": _records,
    "count:taxonomy": _taxonomy,
    "count:implementations": _code,
    "digits-4shot": _digits,
    "grounding": _grounding,
    "bench-size": _bench_size,
    "bench-headline": _headline,
    "captioner-quality": _captioner_quality,
    "vl-bench": _vl_table,
}


def render(text: str, sources: Sources) -> str:
    """``text`` with every generated block filled in. Unknown or unclosed blocks raise."""
    opened = OPEN.findall(text)
    closed = [m.group("name") for m in MARK.finditer(text)]
    if sorted(opened) != sorted(closed):
        bad = sorted(set(opened) - set(closed)) or sorted(opened)
        raise VlmeftError(f"generated block(s) not closed by <!-- /generated:NAME -->: {', '.join(bad)}")

    def fill(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in GENERATORS:
            raise VlmeftError(f"unknown generated block '{name}'; known: {', '.join(GENERATORS)}")
        content = GENERATORS[name](sources)
        if "\n" in m.group("body"):  # a block: the content on lines of its own
            content = f"\n{content}\n"
        return f"<!-- generated:{name} -->{content}<!-- /generated:{name} -->"

    return MARK.sub(fill, text)


def stale_blocks(text: str, rendered: str) -> list[str]:
    """Names of the blocks whose content differs between two renderings."""
    old = {m.group("name"): m.group("body") for m in MARK.finditer(text)}
    new = {m.group("name"): m.group("body") for m in MARK.finditer(rendered)}
    return sorted(n for n in new if old.get(n) != new[n])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmeft.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--kb", type=Path, default=None, help="taxonomy folder (default: the shipped one)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite README.md in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    from vlmeft.kb.load import load_kb

    try:
        text = args.readme.read_text(encoding="utf-8")
        rendered = render(text, Sources(load_kb(args.kb), args.results))
    except (OSError, VlmeftError) as err:
        print(f"error: {args.readme}: {err}", file=sys.stderr)
        return 2
    stale = stale_blocks(text, rendered)
    if args.write:
        if rendered != text:
            args.readme.write_text(rendered, encoding="utf-8")
        print(f"{args.readme}: {len(stale)} block(s) regenerated" + (f" ({', '.join(stale)})" if stale else ""))
        return 0
    if rendered != text:
        print(f"{args.readme} is out of date in: {', '.join(stale)}; run python -m vlmeft.readme --write",
              file=sys.stderr)
        return 1
    if not args.check:
        print(f"{args.readme} is up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
