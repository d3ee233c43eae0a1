"""`vlmeft bench`: run the benchmark grid (resumable) or print its tables.

    vlmeft bench --profile quick                 # CI smoke test, <= 3 min on 2 cores
    vlmeft bench --profile full --jobs 2         # the committed results, <= 30 min
    vlmeft bench --methods coop,cocoop --tasks digits --shots 1,16 --seeds 1
    vlmeft bench --profile quick --recipe paper   # the official recipes (another results file)
    vlmeft bench --report                        # the tables of what results/bench holds

Rerunning a command skips the cells it already finished (see :mod:`vlmeft.bench.store`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from vlmeft.errors import VlmeftError


def _names(text: str | None, where: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise VlmeftError("expected a comma-separated list", where=where)
    return items


def _ints(text: str | None, where: str) -> list[int] | None:
    items = _names(text, where)
    if items is None:
        return None
    try:
        return sorted({int(t) for t in items})
    except ValueError:
        raise VlmeftError(f"expected comma-separated integers, got '{text}'", where=where) from None


def default_out(profile: str) -> Path:
    """The full profile's results are committed; other profiles go to a git-ignored folder."""
    return Path("results/bench") if profile == "full" else Path("build/bench") / profile


def _raise_interrupt(signum, frame):  # noqa: ANN001, ANN202
    raise KeyboardInterrupt


def _cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vlmeft.bench.plan import Selection
    from vlmeft.bench.profiles import get_profile
    from vlmeft.recipes import check_recipe

    # Running defaults to the quick profile; the report to the committed full one.
    profile = get_profile(args.profile or ("full" if args.report else "quick"))
    if args.recipe is not None:
        profile = replace(profile, recipe=check_recipe(args.recipe))
    if args.select is not None:  # a setting of every method: part of the results file's version
        every = {**profile.overrides.get("*", {}), "select": args.select}
        profile = replace(profile, overrides={**profile.overrides, "*": every})
    out = Path(args.out) if args.out else default_out(profile.name)
    if args.report:
        from vlmeft.bench.report import load_rows, report_markdown

        print(report_markdown(load_rows(out, profile.name)), end="")
        return 0
    selection = Selection(
        methods=_names(args.methods, "--methods"),
        tasks=_names(args.tasks, "--tasks"),
        protocols=_names(args.protocols, "--protocols"),
        shots=_ints(args.shots, "--shots"),
        seeds=_ints(args.seeds, "--seeds"),
    )
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else None)
    if threads is not None:
        if threads < 1:
            raise VlmeftError(f"threads must be positive, got {threads}", where="--threads")
        import torch

        torch.set_num_threads(threads)
    from vlmeft.bench.runner import run_bench

    # SIGTERM ends the run like Ctrl-C: finished cells are already on disk.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = run_bench(profile, selection, out, backbone_name=args.backbone, pretrained=args.pretrained,
                            device=args.device, progress=not args.no_progress, fail_fast=args.fail_fast,
                            rerun=args.rerun, jobs=args.jobs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    state = "interrupted" if summary.interrupted else "done"
    print(f"bench {profile.name} {state}: ran {summary.ran}, skipped {summary.skipped} finished, "
          f"failed {len(summary.failed)} of {summary.total} cells in {summary.seconds:.1f} s -> {summary.path}",
          file=sys.stderr)
    if summary.interrupted:
        print("rerun the same command to resume", file=sys.stderr)
        return 130
    if summary.failed:
        for cell, message in summary.failed:
            print(f"failed: {cell.label}: {message}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:  # noqa: ANN001 (argparse's private subparsers type)
    from vlmeft.bench.profiles import PROFILES, PROTOCOLS
    from vlmeft.recipes import RECIPES

    p = sub.add_parser(
        "bench",
        help="run the benchmark grid (methods x tasks x protocols x shots x seeds), resumable",
        description="Run every (method, task, protocol, shots, seed) cell of a profile on the embedded backbone. "
                    "Each finished cell is saved at once; a rerun skips finished cells.",
    )
    p.add_argument("--profile", default=None,
                   help=f"{' | '.join(PROFILES)}: which cells, and budget epoch overrides "
                        "(default quick; full with --report)")
    p.add_argument("--methods", help="comma-separated registry ids (default: the profile's)")
    p.add_argument("--tasks", help="comma-separated task names (default: the profile's)")
    p.add_argument("--protocols", help=f"comma-separated, among the profile's: {', '.join(PROTOCOLS)}")
    p.add_argument("--shots", help="comma-separated shot counts, e.g. 1,2,4,8,16 (default: the profile's)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 1,2,3 (default: the profile's)")
    p.add_argument("--out", help="results folder (default: results/bench for full, build/bench/PROFILE otherwise)")
    p.add_argument("--backbone", default=None, help="open_clip model name (default synthclip-tiny)")
    p.add_argument("--pretrained", default="default", help="weights: default, an open_clip tag or a file path")
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="training recipe: the official repositories' (paper) or the embedded backbone's "
                        "calibrations (embedded); default: embedded on synthclip-tiny, paper elsewhere")
    p.add_argument("--select", choices=("last", "val"), default=None,
                   help="keep the last epoch or the best on val (default: the recipe's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on cpu: the embedded backbone's small ops ran 14x slower "
                        "with 2 threads on a busy 2-core machine)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes running cells in parallel (2 on a 2-core machine; each loads its own "
                        "backbone; --fail-fast runs in one process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell (with its traceback)")
    p.add_argument("--rerun", action="store_true",
                   help="measure the selected cells again even if finished (after a method's code changed)")
    p.add_argument("--report", action="store_true",
                   help="print the tables (mean ± std over seeds) of the results in --out instead of running")
    p.set_defaults(func=_cmd_bench)
