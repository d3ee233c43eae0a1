"""The benchmark loop: plan the cells, skip the finished ones, run the rest, save each.

Each finished cell is written to the results file before the next one starts
(:class:`~vlmeft.bench.store.ResultStore`), so a run stopped by Ctrl-C, SIGTERM or
SIGKILL keeps every cell it finished, and rerunning the same command picks up where it
stopped. A cell that raises is recorded as a failure (one line) and the run goes on;
failures are retried by the next run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft.bench.plan import Cell, Selection, build_cells, selected_plans
from vlmeft.bench.profiles import Profile
from vlmeft.bench.store import SCHEMA, ResultStore, cell_key
from vlmeft.errors import VlmeftError


def results_path(out: Path, profile: Profile) -> Path:
    """``<out>/<profile>-s<schema>-<config hash>.json``: the version is in the name."""
    return Path(out) / f"{profile.name}-s{SCHEMA}-{profile.config_hash()}.json"


def store_for(out: Path, profile: Profile) -> ResultStore:
    from vlmeft import __version__

    header = {"schema": SCHEMA, "profile": profile.name, "config_hash": profile.config_hash(),
              "vlmeft_version": __version__, "description": profile.description,
              "config": profile.config(),
              "plans": [{"protocol": p.protocol, "tasks": list(p.tasks), "shots": list(p.shots)}
                        for p in profile.plans],
              "seeds": list(profile.seeds)}
    return ResultStore(results_path(out, profile), header)


@dataclass
class BenchSummary:
    path: Path
    total: int
    skipped: int
    ran: int = 0
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if not isinstance(err, VlmeftError) else text


def run_bench(
    profile: Profile,
    selection: Selection,
    out: Path,
    *,
    backbone_name: str | None = None,
    pretrained: str | None = "default",
    device: str = "cpu",
    backbone: Any = None,
    progress: bool = True,
    fail_fast: bool = False,
    rerun: bool = False,
    jobs: int = 1,
    log: Any = None,
) -> BenchSummary:
    """Run every unfinished cell of ``profile`` narrowed by ``selection`` into ``out``
    (on ``backbone`` if given, else on the one named by ``backbone_name``/``pretrained``),
    in ``jobs`` worker processes (1: in this process)."""
    from vlmeft.backbone import DEFAULT_BACKBONE, load_backbone
    from vlmeft.bench.cells import CellRunner, code_fingerprint

    log = log or sys.stderr
    start = time.perf_counter()
    selected_plans(profile, selection)  # bad names fail before any model loads
    if backbone is None:
        backbone = load_backbone(backbone_name or DEFAULT_BACKBONE, pretrained, device=device)
    if profile.recipe is None:  # the backbone's default recipe, fixed before the file is named
        from dataclasses import replace

        from vlmeft.recipes import default_recipe

        profile = replace(profile, recipe=default_recipe(backbone))
    cells = build_cells(profile, selection, backbone)
    # Fingerprint the code now, when the methods' modules have just been imported (by the
    # probe in build_cells), so that a file edited during the run is not credited to it.
    import vlmeft.engine  # noqa: F401 (the shared training code, imported before hashing it)

    code = {m: code_fingerprint(m) for m in sorted({c.method for c in cells})}
    store = store_for(out, profile)
    store.clean_stale_temps()
    others = sorted({(r["backbone"], r.get("backbone_weights", "")) for r in store.read()["rows"]}
                    - {(backbone.name, backbone.weights_id)})
    if others:
        print(f"note: {store.path} also holds rows measured on other backbone weights "
              f"({', '.join(f'{n} {w}' for n, w in others)}); they are reported separately, "
              "delete the file to start afresh", file=log)
    # A finished cell counts only if measured with the current code of its method (and
    # the shared training code); --rerun measures everything again.
    rows = [] if rerun else store.read()["rows"]
    done = {cell_key(r) for r in rows if r.get("code") == code.get(r["method"], code_fingerprint(r["method"]))}
    measured = {cell_key(r) for r in rows}
    stale = sum(1 for c in cells if c.key in measured and c.key not in done)
    if stale:
        print(f"note: {stale} finished cells were measured with other code; measuring them again", file=log)
    pending = [c for c in cells if c.key not in done]
    summary = BenchSummary(path=store.path, total=len(cells), skipped=len(cells) - len(pending))
    print(f"bench {profile.name}: {len(cells)} cells, {summary.skipped} already finished, "
          f"{len(pending)} to run, recipe {profile.recipe} -> {store.path}", file=log)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells), initial=summary.skipped, unit="cell", desc=f"bench {profile.name}",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def record(cell: Cell, outcome: tuple[str, Any]) -> None:
        kind, value = outcome
        if kind == "row":
            store.add_row(value)
            summary.ran += 1
        else:
            store.add_failure(cell.to_dict(), value)
            summary.failed.append((cell, value))
            bar.write(f"failed: {cell.label}: {value}", file=sys.stderr)
        bar.set_postfix_str(cell.label, refresh=False)
        bar.update(1)

    try:
        if jobs > 1 and len(pending) > 1 and not fail_fast:
            _run_parallel(pending, record, jobs, profile, backbone, device, code)
        else:
            runner = CellRunner(backbone, profile.overrides_for, profile=profile.name,
                                config_hash=profile.config_hash(), code=code, recipe=profile.recipe)
            for cell in pending:
                bar.set_postfix_str(cell.label, refresh=True)
                record(cell, _attempt(runner, cell, fail_fast))
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _attempt(runner: Any, cell: Cell, fail_fast: bool = False) -> tuple[str, Any]:
    """("row", row) or ("error", one-line message): one broken cell must not cost the others."""
    try:
        return "row", runner.run(cell)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001
        if fail_fast:
            raise
        return "error", _one_line(err)


# ------------------------------------------------------------------ worker processes
# Each worker loads its own backbone and task data once (spawned, not forked: forking a
# process whose torch thread pool is running can deadlock) and returns rows; only the
# parent writes the results file, so the store's guarantees are unchanged.
_WORKER: Any = None


def _init_worker(profile: Profile, name: str, pretrained: str | None, weights_id: str, device: str,
                 threads: int, code: dict[str, str]) -> None:
    import signal

    import torch

    from vlmeft.backbone import load_backbone
    from vlmeft.bench.cells import CellRunner

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent handles it
    torch.set_num_threads(threads)
    backbone = load_backbone(name, pretrained, device=device)
    if backbone.weights_id != weights_id:
        raise RuntimeError(f"worker loaded weights {backbone.weights_id}, the run uses {weights_id}")
    global _WORKER
    _WORKER = CellRunner(backbone, profile.overrides_for, profile=profile.name, config_hash=profile.config_hash(),
                         code=code, recipe=profile.recipe)


def _work(cell: Cell) -> tuple[Cell, tuple[str, Any]]:
    return cell, _attempt(_WORKER, cell)


def _run_parallel(pending: list[Cell], record: Any, jobs: int, profile: Profile, backbone: Any, device: str,
                  code: dict[str, str]) -> None:
    import multiprocessing

    import torch

    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(min(jobs, len(pending)), initializer=_init_worker,
                    initargs=(profile, backbone.name, backbone.pretrained, backbone.weights_id, device,
                              torch.get_num_threads(), code))
    try:
        for cell, outcome in pool.imap_unordered(_work, pending, chunksize=1):
            record(cell, outcome)
        pool.close()
    finally:
        pool.terminate()  # on Ctrl-C/SIGTERM: stop the cells in flight (they were not finished)
        pool.join()
