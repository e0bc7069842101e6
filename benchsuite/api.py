"""The Python API: ``make`` an experiment, ``run`` it, ``load_run`` a finished one (as ``gymnasium.make``).

    import benchsuite

    exp = benchsuite.make("digits-jpeg-compress-v1", method="ddpo", seed=0, budget=512, lr=3e-4,
                          task_overrides={"sampler.num_steps": 10})
    result = exp.run()                          # or benchsuite.run(exp); writes results/runs/<run id>/
    print(result.final["eval/jpeg_mean"])
    done = benchsuite.load_run(result.run_dir)  # config, summary and the trained policy, weights loaded
    images = done.sample()                      # the final evaluation's samples again

Everything here goes through the same functions as the command line (``config.resolve``, ``runner.run``), so an
experiment made here has the run id ``benchsuite run`` gives the same settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig, config_yaml, resolve, resolve_file, task_digest
from .errors import ConfigError, MissingWeightsError
from .export import load_weights
from .registry import BACKBONES, METHODS
from .runner import run as run_config
from .tracking import MlflowTracker, check_tracking_uri, default_tracking_uri


@dataclass(frozen=True)
class Experiment:
    """One resolved, runnable (task, method, seed, budget, settings) combination: what ``make`` returns.

    Attributes:
        config: the frozen ``RunConfig`` (every setting resolved and checked; its hash is the run id).
    """

    config: RunConfig

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def run_dir(self) -> Path:
        """Where ``run`` writes: ``<output_root>/runs/<run id>``."""
        return self.config.run_dir

    @property
    def settings(self) -> dict[str, Any]:
        """The method's resolved settings (dataclass defaults, presets, tuned values, overrides)."""
        return dict(self.config.method_config)

    def to_yaml(self) -> str:
        """The config as ``benchsuite run --print-config`` prints it (``benchsuite run --config FILE`` runs it)."""
        return config_yaml(self.config)

    @classmethod
    def from_file(cls, path: str | os.PathLike, output_root: str | None = None) -> Experiment:
        """The experiment of a config file written by ``to_yaml`` or ``--print-config`` (checked again)."""
        return cls(resolve_file(Path(path), output_root=output_root))

    def run(self, *, mlflow: bool | str = False, progress: bool = False, resume: bool = False, restart: bool = False,
            write: bool = True):
        """Train until the budget is spent, evaluating on schedule; see ``benchsuite.run``."""
        return run(self, mlflow=mlflow, progress=progress, resume=resume, restart=restart, write=write)


def make(task_id: str, method: str = "pretrained", *, seed: int = 0, budget: int | None = None,
         task_overrides: dict[str, Any] | None = None, eval_fractions: Sequence[float] | None = None,
         num_threads: int = 1, device: str = "cpu", output_root: str = "results", **settings: Any) -> Experiment:
    """The experiment of ``method`` on task ``task_id``, every setting resolved and checked; nothing is written.

    Args:
        task_id: a task id (``benchsuite list``), e.g. ``"digits-jpeg-compress-v1"``.
        method: a method name (``benchsuite show METHOD`` lists its settings); default ``"pretrained"``.
        seed: training seed.
        budget: oracle queries (default: the task card's ``default_budget``).
        task_overrides: task card changes for this run, ``{"sampler.num_steps": 10}`` (as ``--set task.X=``).
        eval_fractions: fractions of the budget at which to evaluate (default 0, 0.1, ..., 1).
        num_threads: torch threads; device: torch device of the policy; output_root: results folder.
        **settings: method settings (as ``--set method.X=``), e.g. ``lr=3e-4, kl_coef=0.01``.

    Raises:
        ConfigError: an unknown task, method or setting, or a value out of range (one line saying what is allowed).

    Example::

        exp = benchsuite.make("toy-brightness-v0", method="ddpo", budget=64, batch_size=16)
        exp.run_id   # 'toy-brightness-v0__ddpo__seed0__...'
    """
    extra = {} if eval_fractions is None else {"eval_fractions": tuple(eval_fractions)}
    return Experiment(resolve(task_id, method, seed=seed, budget=budget, overrides=settings,
                              task_overrides=task_overrides, overrides_source="make()", num_threads=num_threads,
                              device=device, output_root=str(output_root), **extra))


def run(experiment: Experiment | RunConfig | str, method: str | None = None, *, mlflow: bool | str = False,
        progress: bool = False, resume: bool = False, restart: bool = False, write: bool = True, **make_args: Any):
    """Run an experiment (or ``make(experiment, method, **make_args)`` when given a task id) to its budget.

    Args:
        experiment: an ``Experiment``, a ``RunConfig``, or a task id.
        method, **make_args: with a task id, ``make``'s arguments.
        mlflow: False logs only to the run folder; True also to MLflow at ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<output_root>/mlflow/mlflow.db`` (as ``benchsuite run``); a string is the tracking URI.
        progress: a progress bar over oracle queries on stderr.
        resume, restart: continue the run folder's checkpoint, or delete it and start over (an existing run
            folder is never overwritten otherwise).
        write: write the run folder (checkpoints, logs, summary, exported weights); False keeps everything in memory.

    Returns:
        The runner's ``RunResult``: ``final`` (last evaluation), ``curve``, ``train``, ``query_log``, ``run_dir``.

    Example::

        result = benchsuite.run("toy-brightness-v0", "ddpo", budget=64, batch_size=16)
        trained = benchsuite.load_run(result.run_dir)
    """
    if isinstance(experiment, str):
        experiment = make(experiment, method or "pretrained", **make_args)
    elif method is not None or make_args:
        raise ConfigError("run(experiment) takes no method or settings: pass them to make(), or run(task_id, ...)")
    if not isinstance(experiment, Experiment | RunConfig):
        raise ConfigError(f"run() takes an Experiment (benchsuite.make), a RunConfig or a task id, got "
                          f"{type(experiment).__name__}")
    config = experiment.config if isinstance(experiment, Experiment) else experiment
    tracker = _mlflow_tracker(config, mlflow) if mlflow else None
    return run_config(config, tracker=tracker, progress=progress, write=write, resume=resume, restart=restart)


def _mlflow_tracker(config: RunConfig, mlflow: bool | str):
    """An ``MlflowTracker`` for ``config``'s run: the given URI, else ``$MLFLOW_TRACKING_URI``, else the sqlite store
    under the output folder (the CLI's default); artifacts under ``<output_root>/mlflow/artifacts``."""
    output = Path(config.output_root)
    uri = mlflow if isinstance(mlflow, str) else (os.environ.get("MLFLOW_TRACKING_URI")
                                                  or default_tracking_uri(output / "mlflow"))
    check_tracking_uri(uri)
    return MlflowTracker(uri, artifact_root=(output / "mlflow" / "artifacts").resolve())


@dataclass
class FinishedRun:
    """A finished run read back from its folder (``load_run``).

    Attributes:
        run_dir: the run folder.
        config: its ``RunConfig``.
        summary: ``summary.json`` (status, final metrics, queries used, wall time).
        policy: the trained ``DiffusionPolicy`` in eval mode, its weights loaded from the exported file; for
            methods that do not train (pretrained, best-of-n, bo) the pretrained policy.
        weights: the exported weights file that was loaded, or None (a method that does not train).
        sampler: for a method that trains a model of its own instead of the policy (REINVENT's agent:
            ``Method.exported_sampler``), ``(n, generator) -> samples`` of that model, which ``sample`` draws
            from; None: ``sample`` draws from ``policy``.
    """

    run_dir: Path
    config: RunConfig
    summary: dict[str, Any]
    policy: Any
    weights: Path | None
    sampler: Any = None

    @property
    def final(self) -> dict[str, float | None]:
        """The final evaluation's metrics."""
        return self.summary["final"]

    def task_spec(self):
        """The run's ``TaskSpec`` (its card with the run's task overrides)."""
        return self.config.task_spec()

    def make_task(self):
        """The run's built ``Task`` (judges included: ``task.judges``)."""
        return self.config.make_task()

    @torch.no_grad()
    def sample(self, conditions: Sequence[int] | torch.Tensor | None = None, n: int | None = None,
               seed: int | None = None) -> torch.Tensor:
        """Decoded samples of the trained policy: images ``B x C x H x W`` in [0, 1] (sequence backbones:
        ``B x V x L`` token probabilities).

        Args:
            conditions: condition ids, one per sample (digit classes, prompt ids); None: the task's eval set
                (each eval condition ``eval.samples_per_condition`` times), or ``n`` unconditional samples.
            n: the number of samples of an unconditional task (default: its eval set's size).
            seed: the noise seed; default the task's eval seed, so that ``sample()`` returns the samples the
                run's final evaluation judged.
        """
        spec = self.task_spec()
        if conditions is None and spec.eval_conditions is not None and n is None:
            conditions = [c for c in spec.eval_conditions for _ in range(spec.eval_samples_per_condition)]
        conds = None if conditions is None else torch.as_tensor(conditions, dtype=torch.int64)
        batch = len(conds) if conds is not None else (n or spec.eval_samples_per_condition)
        generator = torch.Generator().manual_seed(spec.eval_seed if seed is None else seed)
        if self.sampler is not None:  # the method's own model (it takes no conditions)
            if conds is not None:
                raise ConfigError(f"{self.config.method} samples unconditionally; pass n, not conditions")
            return self.sampler(batch, generator)
        traj, _ = self.policy.rollout(conds, generator, batch=batch)
        return self.policy.decode(traj.x0)


def load_run(run_dir: str | os.PathLike, device: str = "cpu") -> FinishedRun:
    """A finished run's config, summary and trained policy (rebuilt from the config, the exported weights loaded:
    ``model.safetensors``, or the diffusers LoRA file of a Stable Diffusion run); for a method that trains a model of
    its own instead (REINVENT's ``agent.safetensors``), that model, which ``FinishedRun.sample`` draws from.

    Raises:
        ConfigError: not a run folder, an unreadable summary, a run that did not finish, or a task card that changed
            since the run (its digest differs: the policy could not be rebuilt as it was).
        MissingWeightsError: a run of a training method without exported weights (finished before runs exported
            them: resuming it writes them).
        WeightsFormatError: the exported file does not fit the policy.

    Example::

        done = benchsuite.load_run("results/runs/digits-jpeg-compress-v1__ddpo__seed0__0123456789")
        images = done.sample([3, 3, 7])        # three samples: two 3s and a 7
    """
    folder = Path(run_dir)
    summary = _read_summary(folder)
    config = _config_of(folder, summary)
    if summary.get("status") != "FINISHED":
        raise ConfigError(f"run {config.run_id} is {summary.get('status')}, not finished; finish it with "
                          f"benchsuite.run(benchsuite.load_config('{folder}'), resume=True)")
    spec = config.task_spec()
    if config.task_digest and task_digest(spec) != config.task_digest:
        raise ConfigError(f"task {config.task} changed since run {config.run_id} (card digest {task_digest(spec)}, the "
                          f"run's {config.task_digest}): its policy cannot be rebuilt as it was")
    policy = BACKBONES.make(spec.backbone, **dict(spec.sampler)).to(device)
    weights = None
    method = METHODS.load(config.method)
    sampler = method.exported_sampler(folder, device)
    if method.trains_policy:
        try:
            weights = load_weights(policy, folder)
        except MissingWeightsError:
            raise MissingWeightsError(
                f"run {config.run_id} has no exported weights (it finished before runs exported them); write them "
                f"by resuming it: benchsuite.run(benchsuite.load_config('{folder}'), resume=True)") from None
    return FinishedRun(folder, config, summary, policy.eval(), weights, sampler)


def load_config(run_dir: str | os.PathLike) -> RunConfig:
    """The ``RunConfig`` of a run folder (finished or not), from its ``summary.json``."""
    folder = Path(run_dir)
    return _config_of(folder, _read_summary(folder))


def _config_of(folder: Path, summary: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.from_dict(summary["config"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{folder / 'summary.json'} holds no valid run config ({type(exc).__name__})") from None


def _read_summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{folder} holds no summary.json: not a run folder (pass results/runs/<run id>, as "
                          "RunResult.run_dir), or a run killed before it ended (resume it with --resume)")
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is unreadable ({type(exc).__name__}); the run folder is damaged") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path} is not a run summary (a JSON object)")
    return summary


__all__ = ["Experiment", "FinishedRun", "make", "run", "load_run", "load_config"]
