"""Every method against zero-shot CLIP on real digits, 4 shots, seeds 1-3: the issue's bar.

Runs ``vlmeft run ID --task digits --shots 4 --seed S --json`` for every registered
classification method (and CALIP-FS, CALIP's few-shot variant), exactly as a user would,
writes the rows to ``results/digits-4shot.json`` (atomically) and prints a Markdown table
(:func:`vlmeft.bench.report.digits_table`, which also fills README.md's table).

    python benchmarks/digits_4shot.py                 # about 5 min on 2 cores
    python benchmarks/digits_4shot.py --table-only    # print the table of the saved rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vlmeft.bench.report import digits_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "digits-4shot.json"
SEEDS = (1, 2, 3)
# Extra variants run through --set (label, method, settings).
VARIANTS = [("calip-fs", "calip", ["few_shot=true", "epochs=100"])]


def jobs() -> list[tuple[str, str, list[str], int]]:
    from vlmeft import registry

    methods = [m for m in registry.names() if "classification" in registry.get(m).tasks]
    variants = [(m, m, []) for m in methods] + VARIANTS
    return [(label, m, sets, seed) for label, m, sets in variants for seed in SEEDS]


def run_one(job: tuple[str, str, list[str], int]) -> dict:
    label, method, sets, seed = job
    cmd = [sys.executable, "-m", "vlmeft", "run", method, "--task", "digits", "--shots", "4", "--seed", str(seed),
           "--json", "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # two single-thread workers on a 2-core machine
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stderr[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(variant=label, set=sets)
    print(f"{label} seed {seed}: {100 * row['accuracy']:.2f} (zero-shot {100 * row['zero_shot_accuracy']:.2f})",
          file=sys.stderr, flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table-only", action="store_true", help="print the table of results/digits-4shot.json")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if not args.table_only:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(run_one, jobs()))
        tmp = OUT.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        os.replace(tmp, OUT)
    print(digits_table(json.loads(OUT.read_text()), SEEDS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
