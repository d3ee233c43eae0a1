"""Executors run benchmark cells; the driver (:mod:`vlmeft.bench.runner`) plans them and
writes every row.

Two executors behind one interface (:class:`Executor`):

- :class:`LocalExecutor`: cells in this process (``jobs=1``) or in ``jobs`` spawned
  worker processes;
- :class:`~vlmeft.bench.ray_executor.RayExecutor`: one Ray task per cell, on a local
  Ray instance or a cluster.

An executor receives plain data only: the cells (frozen dataclasses of strings and ints)
and a :class:`WorkerSpec` saying how to rebuild the driver's cell runner (profile,
backbone name and weights, device, threads, code fingerprints). A worker process builds
that runner once and reuses it for every cell it is given (its task data and frozen
feature cache are shared between cells). An executor yields one :class:`Outcome` per
cell as cells finish, and never writes results: the driver is the store's only writer,
so resume, de-duplication and failure records are the store's, whichever executor ran.

Faults, the same for both executors:

- a worker process that dies mid-cell (killed, out of memory, its node lost): the cell is
  run again, at most :data:`MAX_RETRIES` more times (Ray: the task's ``max_retries``;
  local: the cells in flight go to a fresh pool), then recorded as failed;
- a cell that raises is not retried (the same code on the same data raises again): its
  one-line error is its outcome, and the other cells go on.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vlmeft.bench.plan import Cell
from vlmeft.bench.profiles import Profile
from vlmeft.errors import VlmeftError

# How many more times a cell whose worker died is run before it is recorded as failed.
MAX_RETRIES = 2
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the driver's :class:`~vlmeft.bench.cells.CellRunner`."""

    profile: Profile
    backbone: str
    pretrained: str | None
    weights_id: str
    device: str
    code: dict[str, str] = field(default_factory=dict)  # method -> fingerprint taken by the driver
    threads: int | None = None  # torch CPU threads per worker (None: leave torch's default)
    on_bad_image: str = "error"  # --on-bad-image
    data_root: str | None = None  # the driver's CoOp data root ($VLMEFT_DATA): Ray workers do not inherit its env

    def build_runner(self, backbone: Any = None) -> Any:
        """The cell runner, on ``backbone`` or on one loaded here (checked to be the driver's)."""
        from vlmeft.bench.cells import CellRunner

        if self.data_root is not None:
            from vlmeft.data.coop import ENV

            os.environ[ENV] = self.data_root
        if backbone is None:
            import torch

            from vlmeft.backbone import load_backbone

            if self.threads:
                torch.set_num_threads(self.threads)
            backbone = load_backbone(self.backbone, self.pretrained, device=self.device)
            if backbone.weights_id != self.weights_id:
                raise VlmeftError(f"this worker loaded weights {backbone.weights_id}, the driver's are "
                                  f"{self.weights_id}; give every node the same weights file", where="--pretrained")
        return CellRunner(backbone, self.profile.overrides_for, profile=self.profile.name,
                          config_hash=self.profile.config_hash(), code=self.code, recipe=self.profile.recipe,
                          on_bad_image=self.on_bad_image)


@dataclass
class Outcome:
    """A finished cell: its row (``kind == "row"``) or its one-line error, and where it ran."""

    cell: Cell
    kind: str  # "row" | "error"
    value: Any  # the row, or the error line
    ran_on: dict[str, Any]


class Executor:
    """Runs cells and yields their outcomes; never writes results.

    The driver calls :meth:`start` (connect, check resources: bad input fails here, before
    any model loads), then iterates :meth:`run`, reading :meth:`running` for progress,
    and always :meth:`close` (on Ctrl-C/SIGTERM too: cells in flight are stopped, they
    were not finished).
    """

    name = "?"
    plan_device: str | None = None  # where the driver loads its planning backbone (None: --device)

    def start(self) -> None:
        """Connect and check; raise :class:`VlmeftError` on bad input."""

    def describe(self) -> str:
        """Where cells run, for the run's header line."""
        return self.name

    def worker_threads(self) -> int | None:
        """Torch CPU threads per worker."""
        import torch

        return torch.get_num_threads()

    def run(self, spec: WorkerSpec, cells: list[Cell], backbone: Any) -> Iterator[Outcome | None]:
        """Outcomes as cells finish; ``None`` now and then while waiting (to refresh progress)."""
        raise NotImplementedError

    def running(self) -> int:
        """How many cells are running now."""
        return 0

    def close(self) -> None:
        """Stop what is still running and release workers."""


# ----------------------------------------------------------------- shared by all workers
def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, VlmeftError) else f"{type(err).__name__}: {text}"


def attempt(runner: Any, cell: Cell, fail_fast: bool = False) -> tuple[str, Any]:
    """("row", row) or ("error", one-line message): one broken cell must not cost the others."""
    try:
        return "row", runner.run(cell)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001
        if fail_fast:
            raise
        return "error", one_line(err)


def attempts(n: int) -> str:
    return f"{n} attempt{'s' * (n != 1)}"


def ran_on(executor: str, attempt_number: int = 1, **extra: Any) -> dict[str, Any]:
    """Where a cell ran: executor, node (host name), process id, attempt (1 = first try)."""
    return {"executor": executor, "node": socket.gethostname(), **extra, "pid": os.getpid(),
            "attempt": attempt_number}


_RUNNER: tuple[WorkerSpec, Any] | None = None  # this worker process's runner, built once per spec


def run_in_worker(spec: WorkerSpec, cell_data: dict[str, Any], executor: str = "local") -> tuple[str, Any, dict]:
    """Measure one cell in a worker process (a pool process or a Ray worker):
    ``(kind, row or error line, ran_on)``.

    The runner is built on the first cell and reused; a worker that cannot build it (no
    weights on this node) or that runs other code than the driver fingerprinted reports
    that as the cell's error instead of a row the driver could not vouch for.
    """
    from vlmeft.bench.cells import code_fingerprint

    global _RUNNER
    cell = Cell(**cell_data)
    try:
        if _RUNNER is None or _RUNNER[0] != spec:
            _RUNNER = (spec, spec.build_runner())
        expected, mine = spec.code.get(cell.method), code_fingerprint(cell.method)
        if expected and not mine:
            raise VlmeftError(f"cannot import method '{cell.method}' here: is vlmeft installed in the Python that "
                              f"runs this node's workers ({sys.executable})?", where=socket.gethostname())
        if expected and mine != expected:
            raise VlmeftError(f"this worker's code for '{cell.method}' ({mine}) is not the driver's ({expected}): "
                              "install the same vlmeft on every node", where=socket.gethostname())
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001
        return "error", one_line(err), ran_on(executor)
    return (*attempt(_RUNNER[1], cell), ran_on(executor))


# ---------------------------------------------------------------------- local processes
class LocalExecutor(Executor):
    """Cells in this process (``jobs == 1``, or ``fail_fast``: a failing cell raises with its
    traceback), or in ``jobs`` spawned worker processes, each loading its own backbone.

    Spawned, not forked: forking a process whose torch thread pool is running can
    deadlock. A worker that dies breaks the pool (``BrokenProcessPool``); the cells then
    in flight are counted one attempt and given to a fresh pool.
    """

    name = "local"

    def __init__(self, jobs: int = 1, fail_fast: bool = False, max_retries: int = MAX_RETRIES) -> None:
        if jobs < 1:
            raise VlmeftError(f"jobs must be positive, got {jobs}", where="--jobs")
        self.jobs = jobs
        self.fail_fast = fail_fast
        self.max_retries = max_retries
        self._pool: Any = None
        self._futures: dict[Any, Cell] = {}
        self._in_process = False

    def describe(self) -> str:
        return "this process" if self.jobs == 1 or self.fail_fast else f"{self.jobs} local worker processes"

    def running(self) -> int:
        if self._in_process:
            return 1
        return min(self.jobs, sum(1 for f in self._futures if f.running()))

    def run(self, spec: WorkerSpec, cells: list[Cell], backbone: Any) -> Iterator[Outcome | None]:
        if self.jobs == 1 or self.fail_fast or len(cells) == 1:
            yield from self._run_here(spec, cells, backbone)
        else:
            yield from self._run_pool(spec, cells)

    def _run_here(self, spec: WorkerSpec, cells: list[Cell], backbone: Any) -> Iterator[Outcome | None]:
        runner = spec.build_runner(backbone)  # the driver's own backbone: nothing to reload
        for cell in cells:
            self._in_process = True
            yield None  # let progress show the cell as running before it blocks
            kind, value = attempt(runner, cell, self.fail_fast)
            self._in_process = False
            yield Outcome(cell, kind, value, ran_on("local"))

    def _run_pool(self, spec: WorkerSpec, cells: list[Cell]) -> Iterator[Outcome | None]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        tries = {c.key: 0 for c in cells}
        todo = list(cells)
        while todo:
            self._pool = ProcessPoolExecutor(min(self.jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_ignore_sigint)
            self._futures = {self._pool.submit(run_in_worker, spec, c.to_dict()): c for c in todo}
            todo = []
            while self._futures:
                done, _ = wait(list(self._futures), timeout=1.0, return_when=FIRST_COMPLETED)
                if not done:
                    yield None
                for future in done:
                    cell = self._futures.pop(future)
                    tries[cell.key] += 1
                    try:
                        kind, value, where = future.result()
                    except BrokenProcessPool:
                        if tries[cell.key] <= self.max_retries:
                            todo.append(cell)
                            continue
                        kind, value, where = "error", f"worker process died ({attempts(tries[cell.key])})", {}
                    yield Outcome(cell, kind, value, {"executor": "local", **where, "attempt": tries[cell.key]})
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True)  # idle workers exit on their own (a broken pool's are gone)

    def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        self._futures = {}
        if pool is None:
            return
        # Cells still in flight (Ctrl-C, SIGTERM, an error) were not finished: stop their workers now.
        processes = list(getattr(pool, "_processes", None) or {})
        procs = [pool._processes[p] for p in processes] if processes else []
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)

    def close(self) -> None:
        self._in_process = False
        self._shutdown()


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the driver handles it


def make_executor(name: str, *, jobs: int | None = None, fail_fast: bool = False, address: str | None = None,
                  cpus_per_cell: float | None = None, gpus_per_cell: float | None = None,
                  threads: int | None = None, device: str = "cpu") -> Executor:
    """The executor the command line names, with its flags checked (one-line errors)."""
    if name not in EXECUTORS:
        raise VlmeftError(f"unknown executor '{name}'; executors: {', '.join(EXECUTORS)}", where="--executor")
    if name == "local":
        for flag, value in (("--address", address), ("--cpus-per-cell", cpus_per_cell),
                            ("--gpus-per-cell", gpus_per_cell)):
            if value is not None:
                raise VlmeftError("applies to --executor ray only", where=flag)
        return LocalExecutor(jobs=1 if jobs is None else jobs, fail_fast=fail_fast)
    if jobs is not None:
        raise VlmeftError("sets local worker processes; with --executor ray the cluster runs as many cells as "
                          "its CPUs and GPUs hold (see --cpus-per-cell, --gpus-per-cell)", where="--jobs")
    if fail_fast:
        raise VlmeftError("runs the cells in this process, to show the first failure's traceback; "
                          "drop --executor ray", where="--fail-fast")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise VlmeftError("needs Ray, an optional extra: pip install -e '.[ray]' (or pip install 'vlmeft[ray]')",
                          where="--executor ray") from None
    from vlmeft.bench.ray_executor import RayExecutor

    return RayExecutor(address=address, cpus_per_cell=1.0 if cpus_per_cell is None else cpus_per_cell,
                       gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell, threads=threads, device=device)

