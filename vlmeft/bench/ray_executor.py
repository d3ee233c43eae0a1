"""The Ray executor: one Ray task per benchmark cell; rows travel back to the driver.

Ray schedules, places and retries; this module only submits the cells and turns what
comes back into :class:`~vlmeft.bench.executors.Outcome` objects for the driver, which
alone writes the results file. So the results folder needs to exist only where the
driver runs: no shared filesystem is needed for results (the driver's folder is the
only copy, and its lock says who writes it).

- **Placement**: each task asks for ``num_cpus=cpus_per_cell`` and
  ``num_gpus=gpus_per_cell``; a fraction of a GPU lets Ray pack several small cells on
  one GPU.
- **Workers**: a Ray worker process builds its cell runner (backbone, task data, feature
  cache) on its first cell and reuses it for every later cell of the run
  (:func:`~vlmeft.bench.executors.run_in_worker`, the local pool's code too).
- **Faults**: a worker that dies mid-cell (killed, out of memory, its node gone) makes
  Ray run the task again, up to ``max_retries`` times (Ray's own task retries); a cell
  that raises returns its one-line error instead (``retry_exceptions=False``: the same
  code on the same data raises again), so it is recorded as failed and the rest go on.
- **Driver exit**: the tasks belong to the driver's Ray job, so when the driver dies, Ray
  stops them; rerunning the command resumes from the results file.

Bad input fails before any model loads: an address that does not answer (a TCP connect
with a timeout, since ``ray.init`` on a dead address retries for minutes), GPUs asked
of a cluster that has none, or a cell larger than any node.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import ray

from vlmeft.bench.executors import (MAX_RETRIES, Executor, Outcome, WorkerSpec, attempts, one_line,
                                    run_in_worker)
from vlmeft.bench.plan import Cell
from vlmeft.errors import VlmeftError

CONNECT_TIMEOUT = 5.0  # seconds to wait for the head's GCS port to answer
_TICK = 1.0  # seconds between progress refreshes while no cell finishes


def _attempt_number() -> int:
    """This task's attempt, 1 for the first try (0: unknown). Ray keeps the number on its
    core worker with no public accessor, so this reads it defensively."""
    try:
        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number()) + 1
    except Exception:  # noqa: BLE001 (an accessor that moved: the row still counts)
        return 0


def cell_task(spec: WorkerSpec, cell_data: dict[str, Any]) -> dict[str, Any]:
    """The body of every cell's Ray task: measure the cell, say where it ran."""
    kind, value, where = run_in_worker(spec, cell_data, "ray")
    where.update(node_ip=ray.util.get_node_ip_address(), node_id=ray.get_runtime_context().get_node_id(),
                 attempt=_attempt_number())
    return {"kind": kind, "value": value, "ran_on": where}


def _parse_address(text: str | None) -> str | None:
    if text is None or text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VlmeftError(f"expected auto or HOST:PORT (the head node's address, port 6379 unless changed), "
                          f"got '{text}'", where="--address")
    return text


def _resolve_auto() -> str | None:
    """The address ``auto`` stands for (RAY_ADDRESS, or the last ``ray start`` here)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # moved in another Ray version: let ray.init resolve it
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as err:
        raise VlmeftError(f"no running Ray cluster found ({one_line(err)}); start one with `ray start --head`, "
                          "or give HOST:PORT", where="--address auto") from None


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        why = f"no answer within {CONNECT_TIMEOUT:g} s" if isinstance(err, TimeoutError) else (
            err.strerror or type(err).__name__)
        raise VlmeftError(f"cannot reach a Ray cluster at {address} ({why}); start "
                          "its head with `ray start --head` or check the host and port", where="--address") from None


def _failure_line(err: BaseException, retries: int) -> str:
    """One line for a task that came back as an exception instead of an outcome."""
    if isinstance(err, ray.exceptions.RayTaskError):  # raised inside the task, outside a cell's own error
        cause = getattr(err, "cause", None)
        return one_line(cause if isinstance(cause, BaseException) else err)
    return f"{type(err).__name__} after {attempts(retries + 1)}: {one_line(err).split(': ', 1)[-1]}"


class RayExecutor(Executor):
    """One Ray task per cell. ``address``: None starts a local Ray instance (all this
    machine's CPUs, no dashboard), ``"auto"`` or ``HOST:PORT`` joins a running cluster.
    A process already connected to Ray (a test, a notebook) is reused as it is."""

    name = "ray"
    plan_device = "cpu"  # the driver only plans; it may run on a head node without a GPU

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0,
                 threads: int | None = None, device: str = "cpu", max_retries: int = MAX_RETRIES) -> None:
        if not cpus_per_cell > 0 or not math.isfinite(cpus_per_cell):
            raise VlmeftError(f"must be a positive number of CPUs, got {cpus_per_cell:g}", where="--cpus-per-cell")
        if not gpus_per_cell >= 0 or not math.isfinite(gpus_per_cell):
            raise VlmeftError(f"must be 0 or more GPUs, got {gpus_per_cell:g}", where="--gpus-per-cell")
        if gpus_per_cell > 1 and gpus_per_cell != int(gpus_per_cell):
            raise VlmeftError(f"above 1 it must be a whole number of GPUs (Ray packs fractions into one GPU only), "
                              f"got {gpus_per_cell:g}", where="--gpus-per-cell")
        if gpus_per_cell > 0 and device == "cpu":
            raise VlmeftError(f"reserves {gpus_per_cell:g} GPU per cell but cells run on --device cpu; "
                              "add --device cuda", where="--gpus-per-cell")
        self.address = _parse_address(address)
        self.cpus_per_cell = float(cpus_per_cell)
        self.gpus_per_cell = float(gpus_per_cell)
        self.threads = threads
        self.device = device
        self.max_retries = max_retries
        self._owned = False  # whether close() shuts down the Ray connection this executor opened
        self._refs: dict[Any, Cell] = {}
        self._where = ""

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        target = _resolve_auto() if self.address == "auto" else self.address
        if target is not None:
            _check_reachable(target)
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if target is not None and current != target:
                raise VlmeftError(f"this process is already connected to the Ray cluster at {current}",
                                  where=f"--address {self.address}")
        else:
            # ray.init installs its own SIGTERM handler (exit at once); keep the CLI's, which
            # stops the run cleanly and lets close() cancel the cells in flight.
            keep = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
            options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
            if self.address is None:
                options.update(address="local", include_dashboard=False)
            else:
                options.update(address=self.address)
            try:
                ray.init(**options)
            except ConnectionError as err:
                hint = ("; if the cluster uses token authentication (`ray start`'s default in recent Ray), export "
                        "RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                        if self.address not in (None, "auto") else "")
                raise VlmeftError(f"cannot join the Ray cluster: {one_line(err)}{hint}", where="--address") from None
            finally:
                if keep is not None:
                    signal.signal(signal.SIGTERM, keep)
            self._owned = True
        self._check_resources()

    def _check_resources(self) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
        gpus = [float(n.get("Resources", {}).get("GPU", 0)) for n in nodes]
        where = self.address or "a local instance"
        self._where = (f"Ray at {where}: {len(nodes)} node{'s' * (len(nodes) != 1)}, {sum(cpus):g} CPUs, "
                       f"{sum(gpus):g} GPUs")
        if self.gpus_per_cell > 0 and not any(gpus):
            raise VlmeftError(f"asks for {self.gpus_per_cell:g} GPU per cell, but the cluster ({self._where}) "
                              "has no GPUs", where="--gpus-per-cell")
        if self.gpus_per_cell > max(gpus, default=0):
            raise VlmeftError(f"no node has {self.gpus_per_cell:g} GPUs (the most on one node: "
                              f"{max(gpus, default=0):g})", where="--gpus-per-cell")
        if self.cpus_per_cell > max(cpus, default=0):
            raise VlmeftError(f"no node has {self.cpus_per_cell:g} CPUs (the most on one node: "
                              f"{max(cpus, default=0):g})", where="--cpus-per-cell")

    def describe(self) -> str:
        gpus = f", {self.gpus_per_cell:g} GPU" if self.gpus_per_cell else ""
        return (f"{self._where} ({self.cpus_per_cell:g} CPU{gpus} per cell, "
                f"up to {self.max_retries} retries when a worker dies)")

    def worker_threads(self) -> int | None:
        # As many torch threads as the cell reserved CPUs (also with a GPU: packed cells must
        # not each start one thread per core of the node).
        return self.threads if self.threads is not None else max(1, int(self.cpus_per_cell))

    # -------------------------------------------------------------------- run
    def run(self, spec: WorkerSpec, cells: list[Cell], backbone: Any) -> Iterator[Outcome | None]:
        task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=self.max_retries,
                          retry_exceptions=False)(cell_task)
        spec_ref = ray.put(spec)
        for cell in cells:  # all at once: Ray queues what the cluster cannot hold yet
            self._refs[task.options(name=cell.label).remote(spec_ref, cell.to_dict())] = cell
        while self._refs:
            done, _ = ray.wait(list(self._refs), num_returns=1, timeout=_TICK)
            if not done:
                yield None
                continue
            cell = self._refs.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as err:
                yield Outcome(cell, "error", _failure_line(err, self.max_retries), {"executor": "ray"})
            else:
                yield Outcome(cell, result["kind"], result["value"], result["ran_on"])

    def running(self) -> int:
        """Cells running now, read from the cluster's busy CPUs (and GPUs): Ray has no cheap
        per-task state without its dashboard. Another job on the cluster would count too."""
        if not self._refs:
            return 0
        try:
            total, free = ray.cluster_resources(), ray.available_resources()
        except Exception:  # noqa: BLE001 (progress only)
            return 0
        needs = [("CPU", self.cpus_per_cell)] + ([("GPU", self.gpus_per_cell)] if self.gpus_per_cell else [])
        busy = min((total.get(r, 0.0) - free.get(r, 0.0)) / need for r, need in needs)
        return max(0, min(len(self._refs), int(busy + 1e-6)))

    def close(self) -> None:
        refs, self._refs = list(self._refs), {}
        if self._owned:
            # Shutting down ends this driver's Ray job: Ray stops its tasks still in flight.
            self._owned = False
            if ray.is_initialized():
                ray.shutdown()
            return
        for ref in refs:  # a connection we did not open stays up; stop our own tasks on it
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 (already finished or gone)
                pass
