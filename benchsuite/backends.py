"""Where the runs of a sweep execute: ``local`` (this machine, a pool of spawned worker processes) or ``ray`` (the
tasks of a Ray cluster, https://docs.ray.io). ``benchsuite.sweep.run_many`` does everything else the same way for
both: it skips finished runs, opens the MLflow parents, and hands the rest to a backend as jobs.

A job is one call of ``run_job(config, tracking, parent_run_id)``: ``benchsuite.runner.run`` with ``resume=True``,
so that a run with a checkpoint continues from it and a broken one starts over. Both backends retry a run whose
worker process died (killed, out of memory, a lost node) up to ``retries`` times, and the retry resumes from the
run's last checkpoint: nothing is lost and no finished step runs again. A run that raises is not retried: it is
reported as failed, as it would fail again.

Ray: each run is a Ray task declaring ``num_cpus=1`` (every run uses one torch thread) and ``num_gpus=1`` when it
needs a GPU (a Stable Diffusion backbone or a CUDA device), so Ray places runs where the resources are. Run folders
(``<output_root>/runs``) must be on a filesystem every node sees, with the same path, for skipping and resuming to
work across nodes; ``output_root`` and local MLflow stores are made absolute before the tasks are sent. For MLflow on
several machines use a tracking server (``--mlflow-uri http://host:5000``). ray is an optional extra:
``pip install 'benchsuite[ray]'``; it is imported only by the ray backend.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import ClassVar

from .config import RunConfig
from .errors import ConfigError
from .runner import run, run_state
from .tracking import MlflowTracker

Tracking = tuple[str, str] | None
Job = tuple[RunConfig, Tracking, str | None]
"""One run for a backend: its config, the MLflow ``(tracking_uri, artifact_root)`` or None, its parent run id."""
Report = tuple[str, dict, str | None, str | None]
"""What became of a job: ``(status, final metrics, error, started)``; ``started`` is the run's state
(``benchsuite.runner.run_state``) when the attempt that ended it began: ``"checkpointed"`` after a resumed retry."""
BACKENDS = ("local", "ray")
FAULT_ENV = "BENCHSUITE_FAULT_EXIT_AFTER_CHECKPOINT"
"""Fault injection for tests: a run whose id contains this variable's value ends its process with ``os._exit`` at
its first evaluation past the pretrained one (just after that step's checkpoint), once: a marker file in its run
folder keeps the retry alive."""
FAULT_MARKER = "fault-injected"


def run_job(config: RunConfig, tracking: Tracking, parent_run_id: str | None) -> Report:
    """One run in a worker: resumed from its checkpoint if it has one, restarted if it is broken."""
    started = run_state(config.run_dir)
    on_eval = _fault_injection(config)
    tracker = None if tracking is None else MlflowTracker(tracking[0], Path(tracking[1]), parent_run_id)
    try:
        result = run(config, tracker=tracker, resume=True, on_eval=on_eval)
    except Exception as exc:  # noqa: BLE001 - one failed run must not end the sweep; it is reported
        last = traceback.format_exception_only(exc)[-1].strip()
        return "FAILED", {}, last, started
    return "FINISHED", result.final, None, started


def _fault_injection(config: RunConfig) -> Callable[[int, dict], None] | None:
    target = os.environ.get(FAULT_ENV)
    marker = config.run_dir / FAULT_MARKER
    if not target or target not in config.run_id or marker.exists():
        return None

    def exit_after_checkpoint(queries: int, metrics: dict) -> None:
        if queries > 0:  # the runner calls on_eval after the step's checkpoint
            marker.write_text(f"{queries}\n")
            os._exit(17)

    return exit_after_checkpoint


class Backend:
    """Runs a sweep's jobs and reports each one as it ends.

    ``open`` is called before the sweep writes anything (it connects, and raises ``ConfigError`` in one line when it
    cannot); ``run`` calls ``done(job, report)`` in this process as jobs end; ``close`` releases what ``open`` took.
    """

    name: ClassVar[str]
    spawns: bool = True
    """Whether runs execute in other processes (which see only registry entries installed as plugins)."""

    def open(self) -> None:
        """Connect, or check that the backend can run; writes nothing."""

    def run(self, jobs: list[Job], done: Callable[[Job, Report], None]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``open`` took."""

    def describe(self) -> str:
        """A few words for the sweep's first line."""
        return self.name


def _died(job: Job, exc: BaseException, attempts: int) -> Report:
    """The report of a job whose worker died on each of its ``attempts``."""
    message = traceback.format_exception_only(exc)[-1].strip().splitlines()[0]
    return "FAILED", {}, f"worker process died ({attempts} attempts): {message}", None


class LocalBackend(Backend):
    """This machine: ``workers`` spawned worker processes (1: the runs execute in this process, one after another).

    When a worker process dies, Python's pool breaks and ends its other workers too; every run that had not ended
    is then retried in a new pool (from its checkpoint), each at most ``retries`` times.
    """

    name = "local"

    def __init__(self, workers: int = 1, retries: int = 2):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        self.workers, self.retries = workers, retries
        self.spawns = workers > 1

    def describe(self) -> str:
        return f"{self.workers} worker(s)"

    def run(self, jobs: list[Job], done: Callable[[Job, Report], None]) -> None:
        if self.workers == 1:
            for job in jobs:
                done(job, run_job(*job))
            return
        attempts = {id(job): 0 for job in jobs}
        pending = list(jobs)
        while pending:
            again = []
            # spawn, not fork: a forked child would inherit torch's thread pools and mlflow's open connections
            with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(run_job, *job): job for job in pending}
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        report = future.result()
                    except BrokenProcessPool as exc:  # a worker died, and the pool with it
                        attempts[id(job)] += 1
                        if attempts[id(job)] <= self.retries:
                            again.append(job)
                            continue
                        report = _died(job, exc, attempts[id(job)])
                    done(job, report)
            pending = again


class RayBackend(Backend):
    """A Ray cluster: each run a Ray task with declared resources, retried when its worker dies.

    Args:
        address: the cluster (``host:port`` of its head, ``ray://host:10001`` for Ray Client, or ``auto`` for the
            cluster this machine belongs to); None: ``$RAY_ADDRESS`` if set, else a private local cluster on this
            machine, shut down at the end.
        retries: extra attempts of a run whose worker process died (Ray's ``max_retries``).
        gpus: GPUs per run that needs one (a Stable Diffusion backbone or a CUDA device).
    """

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 2, gpus: float = 1.0):
        self.address, self.retries, self.gpus = address, retries, gpus
        self._ray = None

    def describe(self) -> str:
        return f"Ray cluster at {self.address}" if self.address else "a local Ray cluster"

    def open(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray backend needs ray: pip install 'benchsuite[ray]'") from None
        try:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, ...: one line that says what to do
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"could not connect to the Ray cluster at {self.address or 'a new local cluster'} "
                              f"({first}); start one with 'ray start --head' and pass its address") from None
        self._ray = ray

    def close(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def resources(self, config: RunConfig) -> dict[str, float]:
        """Ray resources of one run: one CPU (one torch thread), and ``gpus`` GPUs when it needs a GPU."""
        needs_gpu = config.device.startswith("cuda") or config.task_spec().backbone == "sd"
        return {"num_cpus": 1, "num_gpus": self.gpus if needs_gpu else 0}

    def run(self, jobs: list[Job], done: Callable[[Job, Report], None]) -> None:
        if self._ray is None:
            raise RuntimeError("RayBackend.run before open()")
        ray = self._ray
        task = ray.remote(run_job)
        refs = {}
        for config, tracking, parent in jobs:
            options = dict(self.resources(config), max_retries=self.retries, retry_exceptions=False,
                           name=f"benchsuite {config.run_id}")
            refs[task.options(**options).remote(portable(config), portable_tracking(tracking), parent)] = (
                config, tracking, parent)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                job = refs.pop(ref)
                try:
                    report = ray.get(ref)
                except ray.exceptions.RayError as exc:  # its worker died on every attempt, or the node was lost
                    report = _died(job, exc, self.retries + 1)
                done(job, report)


def portable(config: RunConfig) -> RunConfig:
    """``config`` with an absolute ``output_root`` (not part of the run id): a worker's working directory is not
    the caller's."""
    return dataclasses.replace(config, output_root=str(Path(config.output_root).resolve()))


def portable_tracking(tracking: Tracking) -> Tracking:
    """``tracking`` with a relative sqlite store and the artifact root made absolute (servers unchanged)."""
    if tracking is None:
        return None
    uri, artifacts = tracking
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri, str(Path(artifacts).resolve())


def make_backend(name: str = "local", workers: int = 1, address: str | None = None) -> Backend:
    """The backend called ``name`` (``local`` with ``workers`` processes, or ``ray`` at ``address``); raises
    ``ConfigError`` for another name, or an address given to the local backend."""
    if name == "local":
        if address is not None:
            raise ConfigError("--address is the Ray cluster's; use it with --backend ray")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(address)
    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
