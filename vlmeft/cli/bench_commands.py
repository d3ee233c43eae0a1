"""`vlmeft bench`: run the benchmark grid (resumable) or print its tables.

    vlmeft bench --profile quick                 # CI smoke test, <= 3 min on 2 cores
    vlmeft bench --profile full --jobs 2         # the committed results, <= 30 min
    vlmeft bench --profile full --executor ray --address auto --gpus-per-cell 0.25   # on a Ray cluster
    vlmeft bench --methods coop,cocoop --tasks digits --shots 1,16 --seeds 1
    vlmeft bench --profile quick --recipe paper   # the official recipes (another results file)
    vlmeft bench --report                        # the tables of what results/bench holds
    vlmeft bench --suite coop --data-root DIR --backbone ViT-B-16 --pretrained openai   # the papers' suite
    vlmeft bench --suite coop --report           # the papers' tables, beside the reported numbers

Rerunning a command skips the cells it already finished (see :mod:`vlmeft.bench.store`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from vlmeft.errors import VlmeftError


def _names(text: str | list[str] | None, where: str) -> list[str] | None:
    if text is None:
        return None
    words = text if isinstance(text, list) else [text]  # "a,b", "a b" and "a, b" all work
    items = [t.strip() for word in words for t in word.split(",") if t.strip()]
    if not items:
        raise VlmeftError("expected a comma-separated list", where=where)
    return items


def _ints(text: str | list[str] | None, where: str) -> list[int] | None:
    items = _names(text, where)
    if items is None:
        return None
    try:
        return sorted({int(t) for t in items})
    except ValueError:
        raise VlmeftError(f"expected comma-separated integers, got '{text}'", where=where) from None


def default_out(profile: str) -> Path:
    """The full profile's and the suites' results are committed; other profiles go to a
    git-ignored folder."""
    from vlmeft.bench.suites import SUITES

    if profile in SUITES:
        return Path("results") / profile
    return Path("results/bench") if profile == "full" else Path("build/bench") / profile


def _raise_interrupt(signum, frame):  # noqa: ANN001, ANN202
    raise KeyboardInterrupt


def _suite_report(name: str, out: Path) -> str:
    from vlmeft.bench.coop_report import suite_markdown
    from vlmeft.bench.report import load_rows
    from vlmeft.bench.reported import from_kb

    return suite_markdown(load_rows(out, name), from_kb())


def _cmd_bench(args: argparse.Namespace) -> int:
    from vlmeft.cli.run_commands import data_root

    with data_root(args.data_root):
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vlmeft.bench.plan import Selection
    from vlmeft.bench.profiles import get_profile
    from vlmeft.recipes import check_recipe

    if args.suite and args.profile:
        raise VlmeftError("pass --suite or --profile, not both", where="--suite")
    if args.suite and args.report:
        out = Path(args.out) if args.out else default_out(args.suite)
        print(_suite_report(args.suite, out), end="")
        return 0
    if args.suite:
        from vlmeft.bench.suites import get_suite
        from vlmeft.data.coop import data_root as root_of

        profile = get_suite(args.suite, root_of(), log=sys.stderr)
    else:  # running defaults to the quick profile; the report to the committed full one
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
    from vlmeft.bench.executors import make_executor
    from vlmeft.cli.runtime_args import device

    # The executor's flags first (none needs this machine); then the device, which only the
    # local executor's cells use here: a Ray driver may have no GPU while its workers do.
    executor = make_executor(args.executor, jobs=args.jobs, fail_fast=args.fail_fast, address=args.address,
                             cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell,
                             threads=args.threads, device=args.device)
    if executor.name == "local":
        args.device = str(device(args))  # checked before any work; workers get the resolved name
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
                            device=args.device, progress=not args.no_progress, rerun=args.rerun, executor=executor,
                            on_bad_image=args.on_bad_image)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.suite and summary.ran:
        tables = summary.path.with_suffix(".md")  # derived from the results file, rewritten with it
        tables.write_text(_suite_report(profile.name, out), encoding="utf-8")
        print(f"tables: {tables}", file=sys.stderr)
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
    from vlmeft.cli.runtime_args import add_device_args

    p = sub.add_parser(
        "bench",
        help="run the benchmark grid (methods x tasks x protocols x shots x seeds), resumable",
        description="Run every (method, task, protocol, shots, seed) cell of a profile on the embedded backbone. "
                    "Each finished cell is saved at once; a rerun skips finished cells.",
    )
    p.add_argument("--profile", default=None,
                   help=f"{' | '.join(PROFILES)}: which cells, and budget epoch overrides "
                        "(default quick; full with --report)")
    p.add_argument("--suite", default=None, help="coop: the papers' suite on the CoOp datasets under --data-root "
                                                 "(instead of a profile)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="where the CoOp datasets are (default: $VLMEFT_DATA)")
    p.add_argument("--methods", nargs="+", help="registry ids, comma- or space-separated (default: the profile's)")
    p.add_argument("--tasks", nargs="+", help="task names (default: the profile's)")
    p.add_argument("--protocols", nargs="+", help=f"among the profile's: {', '.join(PROTOCOLS)}")
    p.add_argument("--shots", nargs="+", help="shot counts, e.g. 1 2 4 8 16 (default: the profile's)")
    p.add_argument("--seeds", nargs="+", help="seeds, e.g. 1 2 3 (default: the profile's)")
    p.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                   help="an unreadable image fails its cell naming the file (error, default) or is left out and "
                        "listed in the row (skip)")
    p.add_argument("--out", help="results folder (default: results/bench for full, results/SUITE for a suite, "
                                 "build/bench/PROFILE otherwise)")
    p.add_argument("--backbone", default=None, help="open_clip model name (default synthclip-tiny)")
    p.add_argument("--pretrained", default="default", help="weights: default, an open_clip tag or a file path")
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="training recipe: the official repositories' (paper) or the embedded backbone's "
                        "calibrations (embedded); default: embedded on synthclip-tiny, paper elsewhere")
    p.add_argument("--select", choices=("last", "val"), default=None,
                   help="keep the last epoch or the best on val (default: the recipe's)")
    add_device_args(p, default="cpu")  # the committed results were measured on the CPU
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on cpu: the embedded backbone's small ops ran 14x slower "
                        "with 2 threads on a busy 2-core machine)")
    p.add_argument("--jobs", type=int, default=None,
                   help="local executor: worker processes running cells in parallel (default 1; 2 on a 2-core "
                        "machine; each loads its own backbone; --fail-fast runs in one process)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where cells run: local processes (default) or one Ray task per cell "
                        "(needs pip install -e '.[ray]'); the driver writes the results either way")
    p.add_argument("--address", default=None,
                   help="ray: auto or HOST:PORT of a running cluster's head (default: start a local Ray instance)")
    p.add_argument("--cpus-per-cell", type=float, default=None, help="ray: CPUs each cell reserves (default 1)")
    p.add_argument("--gpus-per-cell", type=float, default=None,
                   help="ray: GPUs each cell reserves, fractional to pack cells onto one GPU (e.g. 0.25; "
                        "default 0; needs --device cuda)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell (with its traceback)")
    p.add_argument("--rerun", action="store_true",
                   help="measure the selected cells again even if finished (after a method's code changed)")
    p.add_argument("--report", action="store_true",
                   help="print the tables (mean ± std over seeds) of the results in --out instead of running")
    p.set_defaults(func=_cmd_bench)
