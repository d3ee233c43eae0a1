"""The CoOp suite's page: the papers' tables from ``results/coop/*.json``, when measured.

Written by ``vlmeft bench --suite coop`` (:mod:`vlmeft.bench.suites`); the tables and the
reported numbers beside ours come from :mod:`vlmeft.bench.coop_report`. No results: no
page (the hand-written ``coop-datasets.md`` says how to produce them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmeft.sitegen.context import GEN, rel

SUITE_PAGE = f"{GEN}/coop-suite.md"
DATASETS_PAGE = "coop-datasets.md"  # hand-written: layouts and the command


def load_suite_rows(results_dir: Path | None) -> list[dict[str, Any]]:
    """Rows of ``results_dir/coop/*.json`` (none when the folder is absent)."""
    from vlmeft.bench.store import read_results, results_files

    if results_dir is None:
        return []
    return [row for path in results_files(Path(results_dir) / "coop") for row in read_results(path)["rows"]]


def suite_page(kb: Any, rows: list[dict[str, Any]]) -> str:
    from vlmeft.bench.coop_report import suite_markdown
    from vlmeft.bench.reported import from_kb

    intro = (f"Measured with `vlmeft bench --suite coop` on the CoOp datasets (layouts and the command: "
             f"[CoOp datasets]({rel(SUITE_PAGE, DATASETS_PAGE)})); rows in `results/coop/*.json`.\n\n")
    return "# CoOp suite results\n\n" + intro + suite_markdown(rows, from_kb(kb))
