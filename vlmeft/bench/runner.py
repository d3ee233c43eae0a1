"""The benchmark driver: plan the cells, skip the finished ones, hand the rest to an
executor, save each outcome.

The driver is the only writer of the results file (:class:`~vlmeft.bench.store.ResultStore`),
whichever executor runs the cells (:mod:`vlmeft.bench.executors`: local processes or Ray).
Each finished cell is written before the next outcome is read, so a run stopped by
Ctrl-C, SIGTERM or SIGKILL keeps every cell it finished, and rerunning the same command
picks up where it stopped. A cell that raises is recorded as a failure (one line) and
the run goes on; failures are retried by the next run. One driver per results folder
(:class:`~vlmeft.bench.store.DriverLock`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmeft.bench.executors import Executor, LocalExecutor, Outcome, WorkerSpec
from vlmeft.bench.plan import Cell, Selection, build_cells, selected_plans
from vlmeft.bench.profiles import Profile
from vlmeft.bench.progress import Progress
from vlmeft.bench.store import SCHEMA, DriverLock, ResultStore, cell_key


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
    executor: Executor | None = None,
    log: Any = None,
    on_bad_image: str = "error",
) -> BenchSummary:
    """Run every unfinished cell of ``profile`` narrowed by ``selection`` into ``out``
    (on ``backbone`` if given, else on the one named by ``backbone_name``/``pretrained``),
    with ``executor`` (default: local, in ``jobs`` worker processes; 1: in this process)."""
    log = log or sys.stderr
    start = time.perf_counter()
    selected_plans(profile, selection)  # bad names fail before any model loads
    executor = executor or LocalExecutor(jobs=jobs, fail_fast=fail_fast)
    summary: BenchSummary | None = None
    with DriverLock(out, executor.name):
        try:
            executor.start()  # a bad address or resource request fails here, before any model loads
            summary = _drive(profile, selection, out, executor, backbone_name=backbone_name, pretrained=pretrained,
                             device=device, backbone=backbone, progress=progress, rerun=rerun, log=log,
                             on_bad_image=on_bad_image)
        finally:
            executor.close()  # also on Ctrl-C/SIGTERM: cells in flight were not finished
    summary.seconds = time.perf_counter() - start
    return summary


def _drive(profile: Profile, selection: Selection, out: Path, executor: Executor, *, backbone_name: str | None,
           pretrained: str | None, device: str, backbone: Any, progress: bool, rerun: bool, log: Any,
           on_bad_image: str = "error") -> BenchSummary:
    from vlmeft.backbone import DEFAULT_BACKBONE, load_backbone
    from vlmeft.bench.cells import code_fingerprint
    from vlmeft.data.coop import ENV as DATA_ENV

    if backbone is None:
        backbone = load_backbone(backbone_name or profile.backbone or DEFAULT_BACKBONE, pretrained,
                                 device=executor.plan_device or device)
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
          f"{len(pending)} to run on {executor.describe()}, recipe {profile.recipe} -> {store.path}", file=log)
    spec = WorkerSpec(profile=profile, backbone=backbone.name, pretrained=backbone.pretrained,
                      weights_id=backbone.weights_id, device=device, code=code, threads=executor.worker_threads(),
                      on_bad_image=on_bad_image, data_root=os.environ.get(DATA_ENV))
    bar = Progress(f"bench {profile.name}", len(cells), summary.skipped, enabled=progress)

    def record(outcome: Outcome) -> None:
        cell = outcome.cell
        if outcome.kind == "row":
            store.add_row({**outcome.value, "ran_on": outcome.ran_on})
            summary.ran += 1
            bar.finished(cell.label)
        else:
            store.add_failure(cell.to_dict(), outcome.value, outcome.ran_on)
            summary.failed.append((cell, outcome.value))
            bar.finished(cell.label, outcome.value)

    try:
        if pending:
            for outcome in executor.run(spec, pending, backbone):
                if outcome is not None:
                    record(outcome)
                bar.set_running(executor.running())
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return summary
