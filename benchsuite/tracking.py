"""Experiment tracking: one ``Tracker`` protocol, three backends (null, JSONL files, MLflow) and a fan-out.

The runner talks only to the protocol (as accelerate's ``tracking.py`` and SB3's ``KVWriter``): it starts one run,
logs metrics against ``step`` = oracle queries used so far, logs sample grids and files, and ends the run with a
status. ``JsonlTracker`` writes plain files that the report reads without MLflow; ``MlflowTracker`` writes to an
MLflow store (sqlite by default, see ``default_tracking_uri``) through an explicit ``MlflowClient``, so nothing
depends on mlflow's global active run and several processes or threads can log to one store.

mlflow is imported only inside ``MlflowTracker``'s methods: ``import benchsuite.tracking`` stays light.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from benchsuite._version import __version__
from benchsuite.errors import BenchsuiteError
from benchsuite.files import append_bytes, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from PIL import Image

RUN_KEY_TAG = "benchsuite.run_key"
"""Tag holding the run key (the hash of the frozen run config); ``MlflowTracker.find_run`` searches by it."""

GIT_SHA_TAG = "benchsuite.git_sha"
"""Tag holding the git commit of the benchsuite source tree, with ``-dirty`` when it had uncommitted changes."""

GIT_COMMIT_TAG = "mlflow.source.git.commit"
"""MLflow's standard tag for the git commit of the code (shown in its UI); set only inside a git checkout."""

STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
"""Statuses ``Tracker.end_run`` accepts (the terminal statuses of an MLflow run)."""

_MAX_PARAM_CHARS = 6000  # mlflow's limit on one param value
_MAX_PARAMS_PER_BATCH = 100  # mlflow's limit on params in one log_batch
_MAX_METRICS_PER_BATCH = 1000  # mlflow's limit on metrics in one log_batch
_VERSIONED_PACKAGES = ("torch", "diffusers", "numpy", "mlflow")


@runtime_checkable
class Tracker(Protocol):
    """Where a run's parameters, metrics, images and files go. One tracker holds at most one open run.

    A tracker may also offer ``log_metric_rows(rows)``, many ``(metrics, step)`` rows in one call (the runner
    buffers its logs between checkpoints and hands them over so); ``MultiTracker`` falls back to ``log_metrics``
    per row for a tracker without it.
    """

    def start_run(
        self, *, experiment: str, run_name: str, run_key: str, params: Mapping[str, Any], tags: Mapping[str, str],
        resume_step: int | None = None,
    ) -> None:
        """Open a run.

        ``resume_step``: reopen the run identified by ``run_key`` (a run resumed from a checkpoint taken at that
        many oracle queries) instead of creating one. Entries logged at steps >= ``resume_step`` before the
        crash are dropped or skipped, because the runner logs them again from the checkpoint.

        Args:
            experiment: experiment (group of runs) name, e.g. the task id ``"digits-jpeg-compress-v0"``.
            run_name: human-readable name shown in listings.
            run_key: stable id of the run's configuration (hash of the frozen config), for finding it again.
            params: the run configuration; nested mappings are allowed.
            tags: extra string labels, e.g. ``run_tags()``.
        """
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record scalar metrics at ``step`` = oracle queries used so far."""
        ...

    def log_image(self, image: np.ndarray | Image.Image, name: str) -> None:
        """Store an image as a PNG artifact at the relative path ``name``, e.g. ``"samples/queries_000512.png"``.

        ``image`` is a PIL image, or an ``H x W``, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` array, either
        uint8 or float with values in [0, 1].
        """
        ...

    def log_artifact(self, path: Path) -> None:
        """Copy the file at ``path`` into the run's artifacts."""
        ...

    def end_run(self, status: str = "FINISHED") -> None:
        """Close the run with ``status``: ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``."""
        ...


class NullTracker:
    """A tracker that records nothing (for tests, sweeps that only want the return value, and non-zero ranks)."""

    def start_run(
        self, *, experiment: str, run_name: str, run_key: str, params: Mapping[str, Any], tags: Mapping[str, str],
        resume_step: int | None = None,
    ) -> None:
        """Do nothing."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Do nothing."""

    def log_metric_rows(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """Do nothing."""

    def log_image(self, image: np.ndarray | Image.Image, name: str) -> None:
        """Do nothing."""

    def log_artifact(self, path: Path) -> None:
        """Do nothing."""

    def end_run(self, status: str = "FINISHED") -> None:
        """Do nothing."""


class JsonlTracker:
    """A tracker writing plain files into one run directory, readable without MLflow.

    Layout of ``run_dir``:
        ``run.json``: experiment, run_name, run_key, params, tags, status, start_time, end_time (ISO 8601, UTC).
        ``metrics.jsonl``: one line ``{"step": step, **metrics}`` per ``log_metrics`` call; non-finite values
        are written as ``null``. Read it back with ``read_metrics``.
        ``<name>``: each image logged under its name, as PNG.
        ``artifacts/``: copies of logged files.
    """

    def __init__(self, run_dir: Path):
        """Write into ``run_dir`` (created by ``start_run``)."""
        self.run_dir = Path(run_dir)
        self._run: dict[str, Any] | None = None

    def start_run(
        self, *, experiment: str, run_name: str, run_key: str, params: Mapping[str, Any], tags: Mapping[str, str],
        resume_step: int | None = None,
    ) -> None:
        """Create ``run_dir`` and write ``run.json`` with status ``"RUNNING"``.

        With ``resume_step``, the existing ``run.json`` keeps its start time and ``metrics.jsonl`` keeps only the
        lines with ``step < resume_step``.
        """
        if self._run is not None:
            raise RuntimeError(f"JsonlTracker: a run is already open in {self.run_dir}; call end_run first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = self.run_dir / "run.json"
        if resume_step is not None and previous.exists():
            self._run = json.loads(previous.read_text(encoding="utf-8"))
            self._run.update(status="RUNNING", end_time=None)
            self._write_run_json()
            self._truncate_metrics(resume_step)
            return
        self._run = {
            "experiment": experiment,
            "run_name": run_name,
            "run_key": run_key,
            "params": dict(params),
            "tags": dict(tags),
            "status": "RUNNING",
            "start_time": _utc_now(),
            "end_time": None,
        }
        self._write_run_json()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Append one line ``{"step": step, **metrics}`` to ``metrics.jsonl`` (non-finite values as null)."""
        self.log_metric_rows([(metrics, step)])

    def log_metric_rows(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """``log_metrics(metrics, step)`` for each ``(metrics, step)`` of ``rows``, in one write."""
        self._require_run()
        lines = []
        for metrics, step in rows:
            if "step" in metrics:
                raise ValueError("JsonlTracker: 'step' is reserved for the step column; rename that metric")
            row: dict[str, Any] = {"step": int(step)}
            for key, value in metrics.items():
                value = float(value)
                row[key] = value if math.isfinite(value) else None
            lines.append(json.dumps(row, allow_nan=False) + "\n")
        append_bytes(self.run_dir / "metrics.jsonl", "".join(lines).encode("utf-8"))  # all the rows or none

    def log_image(self, image: np.ndarray | Image.Image, name: str) -> None:
        """Save ``image`` as PNG at ``run_dir / name``."""
        self._require_run()
        import io

        pil = _to_pil(image)
        target = self.run_dir / _check_image_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        pil.save(png, format="PNG")
        atomic_write_bytes(target, png.getbuffer())

    def log_artifact(self, path: Path) -> None:
        """Copy the file at ``path`` into ``run_dir / "artifacts"``."""
        self._require_run()
        dest = self.run_dir / "artifacts"
        dest.mkdir(exist_ok=True)
        atomic_write_bytes(dest / Path(path).name, Path(path).read_bytes())

    def end_run(self, status: str = "FINISHED") -> None:
        """Rewrite ``run.json`` with ``status`` and the end time."""
        run = self._require_run()
        run["status"] = _check_status(status)
        run["end_time"] = _utc_now()
        self._write_run_json()
        self._run = None

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if lines:  # a power cut may have cut the last line short (appends are all-or-nothing otherwise): drop it
            try:
                json.loads(lines[-1])
            except json.JSONDecodeError:
                lines.pop()
        keep = [line for line in lines if json.loads(line)["step"] < step]
        atomic_write_text(path, "".join(line + "\n" for line in keep))

    def _require_run(self) -> dict[str, Any]:
        if self._run is None:
            raise RuntimeError("JsonlTracker: no open run; call start_run first")
        return self._run

    def _write_run_json(self) -> None:
        text = json.dumps(self._run, indent=2, default=str, allow_nan=False) + "\n"
        atomic_write_text(self.run_dir / "run.json", text)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Read ``run_dir / "metrics.jsonl"`` written by ``JsonlTracker``.

    Returns:
        One row per ``log_metrics`` call, in logging order: an int ``step`` column and one float column per
        metric name; ``null`` values and metrics absent from a line are NaN.
    """
    import pandas as pd

    with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    frame = pd.DataFrame(rows, columns=None if rows else ["step"], dtype=float)
    return frame.astype({"step": "int64"})


class MlflowTracker:
    """A tracker writing to an MLflow tracking store through an explicit ``MlflowClient``.

    The experiment is fetched by name or created with ``artifact_location = artifact_root / experiment`` (as a
    file URI); when another process creates it first, the existing one is used. Each ``start_run`` creates one
    run tagged with ``RUN_KEY_TAG`` (and ``mlflow.parentRunId`` when ``parent_run_id`` is given, which nests it
    under a run made by another process, e.g. a study). After ``start_run``, ``run_id`` holds the MLflow run id.
    """

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None, parent_run_id: str | None = None):
        """Log to ``tracking_uri``, e.g. ``default_tracking_uri(root)`` or ``"http://host:5000"``.

        Args:
            tracking_uri: an MLflow tracking URI. For ``sqlite:///`` URIs the database's folder is created when
                the tracker first connects.
            artifact_root: folder under which each new experiment gets its artifact folder. None: the folder
                ``artifacts`` beside a sqlite database; for other stores, the server's default.
            parent_run_id: MLflow run id of the parent run, or None for a top-level run.
        """
        if artifact_root is None:
            db_path = _sqlite_path(tracking_uri)
            artifact_root = db_path.parent / "artifacts" if db_path is not None else None
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root) if artifact_root is not None else None
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        self._resume_step: int | None = None
        self._logged_before_resume: set[tuple[str, int]] | None = None
        self._client_instance: MlflowClient | None = None

    def start_run(
        self, *, experiment: str, run_name: str, run_key: str, params: Mapping[str, Any], tags: Mapping[str, str],
        resume_step: int | None = None,
    ) -> None:
        """Get or create ``experiment`` and create a run in it with ``params`` and ``tags``.

        ``run_key`` must not contain ``'`` or a backslash (MLflow's search could not find the run again).

        Nested params are flattened to dotted keys (``{"method": {"lr": 1e-4}}`` -> ``method.lr``) and stored as
        strings. Raises ValueError, before anything is created, for a value longer than mlflow's 6000 chars.
        """
        if self.run_id is not None:
            raise RuntimeError(f"MlflowTracker: run {self.run_id} is still open; call end_run first")
        _check_run_key(run_key)
        flat = _flatten(params)
        too_long = [key for key, value in flat.items() if len(value) > _MAX_PARAM_CHARS]
        if too_long:
            raise ValueError(f"MlflowTracker: params {too_long} are longer than {_MAX_PARAM_CHARS} characters")
        client = self._client()
        from mlflow.entities import Param

        if resume_step is not None:
            found = self.find_run(experiment, run_key)
            if found is not None:
                client.update_run(found, status="RUNNING")
                self.run_id, self._resume_step, self._logged_before_resume = found, resume_step, None
                return
        experiment_id = self._experiment_id(experiment)
        all_tags = {**tags, RUN_KEY_TAG: run_key}
        if self.parent_run_id is not None:
            all_tags["mlflow.parentRunId"] = self.parent_run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        self.run_id = run.info.run_id
        for chunk in _chunks([Param(k, v) for k, v in flat.items()], _MAX_PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` in one batch (NaN and infinities are stored as such by MLflow)."""
        self.log_metric_rows([(metrics, step)])

    def log_metric_rows(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """``log_metrics(metrics, step)`` for each ``(metrics, step)`` of ``rows``, in as few ``log_batch`` calls
        as mlflow's limit of 1000 metrics per call allows (one store transaction each instead of one per row)."""
        run_id = self._require_run()
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, int(step)) for metrics, step in rows for key, value in metrics.items()]
        if self._resume_step is not None:
            # a (metric, step) at or after the checkpoint may have been logged before the crash: log it only once
            logged = self._logged_since_resume(run_id)
            batch = [m for m in batch if (m.key, m.step) not in logged]
        for chunk in _chunks(batch, _MAX_METRICS_PER_BATCH):
            self._client().log_batch(run_id, metrics=chunk)

    def _logged_since_resume(self, run_id: str) -> set[tuple[str, int]]:
        """The (metric, step) pairs at steps >= the resume step that the run held when it was reopened (read once:
        only this tracker logs to the run while it is open)."""
        if self._logged_before_resume is None:
            client = self._client()
            self._logged_before_resume = {
                (key, m.step) for key in client.get_run(run_id).data.metrics
                for m in client.get_metric_history(run_id, key) if m.step >= self._resume_step}
        return self._logged_before_resume

    def log_image(self, image: np.ndarray | Image.Image, name: str) -> None:
        """Store ``image`` as a PNG artifact at ``name``."""
        run_id = self._require_run()
        self._client().log_image(run_id, _to_pil(image), artifact_file=_check_image_name(name))

    def log_artifact(self, path: Path) -> None:
        """Upload the file at ``path`` to the run's artifact root."""
        run_id = self._require_run()
        self._client().log_artifact(run_id, str(path))

    def end_run(self, status: str = "FINISHED") -> None:
        """Mark the run terminated with ``status``."""
        run_id = self._require_run()
        self._client().set_terminated(run_id, _check_status(status))
        self.run_id, self._resume_step = None, None

    def find_run(self, experiment: str, run_key: str) -> str | None:
        """Return the id of the newest run of ``experiment`` tagged with ``run_key``, or None (e.g. to resume)."""
        found = self._client().get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = self._client().search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{_check_run_key(run_key)}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None

    def _client(self) -> MlflowClient:
        # Every path into mlflow goes through here first, so telemetry is off before mlflow is imported.
        if self._client_instance is None:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            import logging

            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # store migrations log at INFO on first use: not for our users
                logging.getLogger(name).setLevel(logging.WARNING)
            # its database errors (e.g. "database or disk is full") are raised as MlflowException too, which the
            # runner says in one line; the logger would print each one as a multi-line ERROR on top
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

            db_path = _sqlite_path(self.tracking_uri)
            if db_path is not None:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            self._client_instance = MlflowClient(self.tracking_uri)
        return self._client_instance

    def _experiment_id(self, name: str) -> str:
        client = self._client()
        from mlflow.exceptions import MlflowException

        existing = client.get_experiment_by_name(name)
        if existing is None:
            location = (self.artifact_root / name).resolve().as_uri() if self.artifact_root is not None else None
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException as err:
                # Another process created it between our lookup and our insert (mlflow #4123, #10334).
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                existing = client.get_experiment_by_name(name)
                if existing is None:
                    raise
        if existing.lifecycle_stage != "active":
            raise BenchsuiteError(
                f"MLflow experiment {name!r} is deleted in {self.tracking_uri}; restore it "
                f"(`mlflow experiments restore --experiment-id {existing.experiment_id}`) or use another name"
            )
        return existing.experiment_id

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker: no open run; call start_run first")
        return self.run_id


class MultiTracker:
    """A tracker that forwards every call to each of ``trackers`` in order (e.g. JSONL files and MLflow)."""

    def __init__(self, trackers: Sequence[Tracker]):
        """Fan out to ``trackers``."""
        self.trackers = list(trackers)

    def start_run(
        self, *, experiment: str, run_name: str, run_key: str, params: Mapping[str, Any], tags: Mapping[str, str],
        resume_step: int | None = None,
    ) -> None:
        """Start the run in every tracker."""
        for tracker in self.trackers:
            tracker.start_run(experiment=experiment, run_name=run_name, run_key=run_key, params=params, tags=tags,
                              resume_step=resume_step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` in every tracker."""
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)

    def log_metric_rows(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """Log each ``(metrics, step)`` of ``rows`` in every tracker: in one call where the tracker has
        ``log_metric_rows`` (the built-in ones), else one ``log_metrics`` call per row."""
        for tracker in self.trackers:
            batched = getattr(tracker, "log_metric_rows", None)
            if batched is not None:
                batched(rows)
            else:
                for metrics, step in rows:
                    tracker.log_metrics(metrics, step)

    def log_image(self, image: np.ndarray | Image.Image, name: str) -> None:
        """Log ``image`` in every tracker."""
        for tracker in self.trackers:
            tracker.log_image(image, name)

    def log_artifact(self, path: Path) -> None:
        """Log the file at ``path`` in every tracker."""
        for tracker in self.trackers:
            tracker.log_artifact(path)

    def end_run(self, status: str = "FINISHED") -> None:
        """End the run in every tracker, even when one of them raises; the first error is re-raised after."""
        errors = []
        for tracker in self.trackers:
            try:
                tracker.end_run(status)
            except Exception as err:  # noqa: BLE001 - re-raised below once every tracker had its turn
                errors.append(err)
        if errors:
            raise errors[0]


def default_tracking_uri(root: Path) -> str:
    """The default MLflow store: ``sqlite:///<root>/mlflow.db`` (absolute). Creates nothing.

    ``MlflowTracker`` creates ``root`` when it first connects.
    """
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


_MLFLOW_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")
"""URI schemes mlflow 3 has a tracking store for besides the file store (mlflow/tracking/_tracking_service/utils.py,
``_register_tracking_stores``); plugins add theirs through the ``mlflow.tracking_store`` entry points."""
_DATABASES = ("postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str) -> Path | None:
    """Check that MLflow can use the tracking URI ``uri`` before anything is written; creates nothing.

    Returns:
        The local sqlite database file of an ``sqlite:///`` URI (its folder is created on first use), else None.

    Raises:
        BenchsuiteError: a scheme MLflow has no store for, a file store (mlflow 3 refuses it unless
            ``MLFLOW_ALLOW_FILE_STORE=true``), an sqlite URI without a database file, or a database URL whose driver
            is not installed. Servers are not contacted.
    """
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    scheme = "" if len(scheme) == 1 else scheme  # a Windows drive letter is a path
    base = scheme.split("+", 1)[0]
    plugins = {entry.name for entry in importlib.metadata.entry_points(group="mlflow.tracking_store")}
    if base in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() == "true":
            return None
        raise BenchsuiteError(f"MLflow tracking URI {uri!r} is a file store, which mlflow 3 refuses; pass "
                              "sqlite:///<folder>/mlflow.db (or set MLFLOW_ALLOW_FILE_STORE=true)")
    if base not in _MLFLOW_SCHEMES and scheme not in plugins:
        raise BenchsuiteError(f"MLflow tracking URI {uri!r}: no MLflow tracking store for scheme {scheme!r}; use "
                              "sqlite:///<folder>/mlflow.db, http(s)://<server> or postgresql://<user>@<host>/<db>")
    if base == "sqlite":
        path = _sqlite_path(uri)
        if path is None or str(path) in ("", ":memory:"):
            raise BenchsuiteError(f"MLflow tracking URI {uri!r} names no database file; pass "
                                  "sqlite:///<folder>/mlflow.db (three slashes, then the path)")
        return path
    if base in _DATABASES:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(uri)
            url.get_dialect().import_dbapi()
        except Exception as exc:  # noqa: BLE001 - a malformed URL or a missing driver: sqlalchemy has no common base
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BenchsuiteError(f"MLflow tracking URI with scheme {scheme!r} cannot be used here ({first}); for "
                                  "PostgreSQL: pip install 'psycopg[binary]' and use postgresql+psycopg://") from None
    return None


def run_tags(repo: Path | None = None) -> dict[str, str]:
    """Tags describing the code and environment a run used.

    Args:
        repo: a folder inside the git working tree to describe; None: the benchsuite source folder.

    Returns:
        ``GIT_SHA_TAG``: ``git rev-parse HEAD``, plus ``-dirty`` when ``git status --porcelain`` lists changes outside results/,
        or ``"unknown"`` outside a repository, in one without commits, or without git; ``GIT_COMMIT_TAG``
        (MLflow's ``mlflow.source.git.commit``): the commit alone, only when there is one;
        ``benchsuite.version``; ``version.python``; and ``version.<pkg>`` for torch, diffusers, numpy and mlflow
        (``"absent"`` when not installed).
    """
    repo = Path(__file__).parent if repo is None else Path(repo)
    sha = _git_sha(repo)
    tags = {
        GIT_SHA_TAG: sha,
        "benchsuite.version": __version__,
        "version.python": platform.python_version(),
    }
    if sha != "unknown":
        tags[GIT_COMMIT_TAG] = sha.removesuffix("-dirty")
    for package in _VERSIONED_PACKAGES:
        try:
            tags[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "absent"
    return tags


def _git_sha(repo: Path) -> str:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], check=False, cwd=repo, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "--verify", "HEAD")
    if not sha:
        return "unknown"
    # results/ holds what runs and reports write (run folders, a tier's report in progress): not source, so it does
    # not make the tree dirty; a change anywhere else does
    return sha + "-dirty" if git("status", "--porcelain", "--", ".", ":(exclude)results") else sha


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_run_key(run_key: str) -> str:
    # MLflow's search filter cannot match a quoted string that contains a quote or a backslash.
    if "'" in run_key or "\\" in run_key:
        raise ValueError(f"run_key must not contain ' or \\, got {run_key!r}")
    return run_key


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, got {status!r}")
    return status


def _check_image_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.suffix.lower() != ".png":
        raise ValueError(f"image name must be a relative path ending in .png without '..', got {name!r}")
    return name


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"image must be H x W, H x W x 1, H x W x 3 or H x W x 4, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError("a float image must have finite values in [0, 1]")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {array.dtype}")
    return Image.fromarray(array)
