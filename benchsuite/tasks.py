"""Task cards (YAML in ``tasks/``) -> ``TaskSpec`` (frozen data) -> ``Task`` (built objects).

A task pins everything a comparison must hold fixed: the backbone and sampler, the training oracle (with its
reward version, so the scale cannot drift under a name), the evaluation judges, the train and eval conditions,
the eval seed and the default budget. Ids are versioned (``digits-jpeg-compress-v0``): change a card's meaning,
bump its version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from . import distributed
from .accounting import PmoOracle
from .budget import BudgetedOracle
from .data import _builtin_dir, _extra_dirs, data_dir
from .errors import ConfigError, UnknownNameError, clip, clip_repr
from .registry import BACKBONES, METHODS, REWARDS, plugin_task_folders
from .spaces import ImageSpace, SampleSpace
from .accounting import parse_accounting
from .accounting import supports_keys

_ID = re.compile(r"^[a-z0-9][a-z0-9-]*-v\d+$")

MAX_INTEGER = 10**9
"""The largest magnitude of an integer in a card, preset or override, and of a budget or count on the command line:
10**9 oracle queries would take years on any backbone here, so a larger number is a typo (or would overflow)."""
MAX_SEED = 2**32 - 1
"""The largest seed (what numpy's legacy seeding and most tools take)."""
MAX_YAML_BYTES = 1 << 20
"""The largest YAML file benchsuite reads (task cards, presets, run configs and sweep files are a few KiB)."""
MAX_TEXT_CHARS = 2000
"""The longest string (a key or a value) a task card or sweep file may hold; the longest in the shipped cards has
under 200 characters."""
MAX_ITEMS = 10_000
"""The most entries of one list or mapping in a task card or sweep file (as many seeds as one ``--seeds`` range)."""


def backbone_space(backbone: str) -> type[SampleSpace]:
    """The ``SampleSpace`` class of a registered backbone's policies without building one: its factory's declared
    ``sample_space``, else ``ImageSpace`` (what ``DiffusionPolicy`` gives a policy without a space)."""
    return getattr(BACKBONES.load(backbone), "sample_space", ImageSpace)


def check_numbers(value: Any, where: str) -> Any:
    """``value`` unchanged if every number in it (nested lists and mappings included) is finite and every integer
    at most ``MAX_INTEGER`` in magnitude; else ``ConfigError`` naming ``where``. YAML reads ``1e400`` or ``.nan`` as
    floats that no setting means."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_numbers(item, f"{where}.{clip(str(key), 60)}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_numbers(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise ConfigError(f"{where} must be at most 10**9 in magnitude (benchsuite's bound on counts, budgets and "
                          f"integer settings), got {value}")
    return value


def check_sizes(value: Any, where: str) -> Any:
    """``value`` unchanged if no string in it (keys included) is longer than ``MAX_TEXT_CHARS`` and no list or mapping
    holds more than ``MAX_ITEMS`` entries; else a one-line ``ConfigError`` naming ``where`` that repeats only the start
    of the offending text. Task cards and sweep files are checked so at load, before anything repeats their fields
    (a 10 MB oracle name would otherwise come back whole in an error or a listing)."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise ConfigError(f"{where} is a text of {len(value)} characters ({clip_repr(value, 60)}); at most "
                              f"{MAX_TEXT_CHARS} are allowed: shorten it")
    elif isinstance(value, dict | list | tuple):
        if len(value) > MAX_ITEMS:
            raise ConfigError(f"{where} holds {len(value)} entries; at most {MAX_ITEMS} are allowed")
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            if isinstance(value, dict) and isinstance(key, str):
                check_sizes(key, f"{where}: a key")
            check_sizes(item, f"{where}.{clip(str(key), 60)}" if isinstance(value, dict) else f"{where}[{key}]")
    return value


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in the file at ``path`` (a ``what``: "task card", "preset", "sweep file"...), or a one-line
    ``ConfigError`` naming the file: unreadable, larger than ``MAX_YAML_BYTES``, not UTF-8 text, malformed or too
    deeply nested YAML."""
    import yaml

    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)  # never more: a huge file is refused without reading it all
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: a {what} larger than {MAX_YAML_BYTES // 1024} KiB "
                              f"({path.stat().st_size} bytes); benchsuite's are a few KiB, so this is not one")
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path} ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          f"save the {what} as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: malformed YAML ({first})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit on converting one)
        raise ConfigError(f"{path}: a value YAML cannot convert ({clip(str(exc), 120)})") from None


def preset_file(method: str, filename: str) -> Path:
    """A method's preset file (``defaults.yaml``, ``search_space.yaml``): ``baselines/<method>/<filename>``
    (``data_dir``), else, for a plugin method, the one its package ships in ``baselines/<method>/`` beside the
    method's module; the former path when neither exists. Tuned presets (``tuned/``) always live in ``data_dir``:
    ``benchsuite tune`` exports there, never into an installed package."""
    local = data_dir("baselines") / method / filename

    if local.exists() or METHODS.plugin(method) is None:
        return local
    import inspect

    shipped = Path(inspect.getfile(METHODS.load(method))).parent / "baselines" / method / filename
    return shipped if shipped.exists() else local


def task_dirs() -> list[Path]:
    """The folders task cards are read from, in order: the built-in cards, the folders of installed
    ``benchsuite.tasks`` plugins (``registry.plugin_task_folders``), then each folder named in
    ``BENCHSUITE_TASKS_DIR`` (several separated by ``os.pathsep``, as in ``PATH``)."""
    folders = [_builtin_dir("tasks")]
    for folder in [*plugin_task_folders(), *_extra_dirs("tasks")]:
        if folder.resolve() not in [f.resolve() for f in folders]:
            folders.append(folder)
    return folders


@dataclass(frozen=True)
class RewardSpec:
    """A reward by registry name, constructor arguments and the version the card was written for."""

    name: str
    version: str = "0"
    kwargs: tuple[tuple[str, Any], ...] = ()

    def build(self):
        reward = REWARDS.make(self.name, **dict(self.kwargs))
        if reward.version != self.version:
            raise ConfigError(
                f"reward {self.name!r} is version {reward.version} but the task card pins {self.version}; "
                "use a task id written for this version"
            )
        return reward


@dataclass(frozen=True)
class OnlineSpec:
    """Online rounds with a limited number of oracle queries (the protocol of SEIKO, arXiv 2402.16359, and
    SQDF's online setting): the budget is spent in ``rounds`` equal batches. A batch is sampled from the current
    policy and scored by the oracle; a bootstrap ensemble surrogate is refitted on every query so far; the
    method then trains against the optimistic surrogate ``mean + bonus * std`` (free: only oracle queries
    count) with its own KL to the pretrained model, for ``inner_steps(round queries, method batch)`` steps.
    Methods that do not train a policy (best-of-N, BO) spend the same rounds their own way.

    Attributes:
        rounds: oracle rounds; the budget is split evenly (the last round takes the remainder).
        inner_sample_ratio: policy samples the method trains on against the surrogate per oracle query of the
            round: after a round of q queries it takes ``ceil(ratio * q / batch_size)`` steps of its own
            ``batch_size``. Training compute then scales with the budget as on tasks without rounds (one policy
            sample per query at ratio 1). At the cards' 2048 queries (4 rounds of 512) and batch 64 that is 8
            steps per round, the fixed count these cards used before; at a 512-query budget, 2.
        ensemble_size: bootstrap members of the surrogate (>= 2 for a std).
        bonus: UCB coefficient on the ensemble's standard deviation (0 = the mean only).
        fit_steps: Adam steps per member per refit (each refit starts from the previous fit), at most.
        fit_epochs: passes over the data per refit, at most: a refit on n queries takes
            ``min(fit_steps, ceil(fit_epochs * n / fit_batch))`` steps, so small early rounds (and small budgets)
            are not fitted for hundreds of epochs. Refits start from the previous fit, so a few passes suffice;
            the defaults give 80 steps at n = 512 and 200 from n = 1280 on.
        fit_batch: minibatch size of the refit.
        lr: Adam learning rate of the refit.
        width: hidden width of each member.
    """

    rounds: int = 4
    inner_sample_ratio: float = 1.0
    ensemble_size: int = 4
    bonus: float = 1.0
    fit_steps: int = 200
    fit_epochs: int = 20
    fit_batch: int = 128
    lr: float = 1e-3
    width: int = 32

    def __post_init__(self) -> None:
        for name in ("rounds", "fit_steps", "fit_epochs", "fit_batch", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"online.{name} must be a positive integer, got {v!r}")
        if isinstance(self.ensemble_size, bool) or not isinstance(self.ensemble_size, int) or self.ensemble_size < 2:
            raise ConfigError(f"online.ensemble_size must be an integer >= 2, got {self.ensemble_size!r}")
        if not (isinstance(self.bonus, int | float) and self.bonus >= 0):
            raise ConfigError(f"online.bonus must be >= 0, got {self.bonus!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"online.lr must be > 0, got {self.lr!r}")
        ratio = self.inner_sample_ratio
        if isinstance(ratio, bool) or not (isinstance(ratio, int | float) and 0 < ratio <= 64):
            raise ConfigError(f"online.inner_sample_ratio must be in (0, 64], got {ratio!r}")

    def inner_steps(self, queries: int, batch_size: int) -> int:
        """Method steps against the surrogate after a round of ``queries`` (see ``inner_sample_ratio``)."""
        return max(1, math.ceil(self.inner_sample_ratio * queries / batch_size - 1e-9))

    def refit_steps(self, n: int) -> int:
        """Adam steps per member of a refit on ``n`` queries (see ``fit_epochs``)."""
        return max(1, min(self.fit_steps, math.ceil(self.fit_epochs * n / self.fit_batch)))

    def round_left(self, budget: int, used: int) -> int:
        """Queries left in the round that ``used`` queries have reached (0 once the budget is spent): the batch of
        the next oracle call for every method on the task, fine-tuner or reference baseline."""
        end = 0
        for size in self.round_sizes(budget):
            end += size
            if end > used:
                return end - used
        return 0

    def round_sizes(self, budget: int) -> list[int]:
        """Queries per round: ``budget // rounds`` each, the last one taking the remainder."""
        base = budget // self.rounds
        if base == 0:
            return [budget] if budget else []
        return [base] * (self.rounds - 1) + [budget - base * (self.rounds - 1)]


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task. Built from a card by ``load_spec``; see tasks/*.yaml for examples.

    Attributes:
        id: versioned id, e.g. ``digits-jpeg-compress-v0``.
        description: one line for ``benchsuite list``.
        backbone: registry name of the backbone (``digits``).
        sampler: backbone factory arguments (``num_steps``, ``eta``, ``guidance_scale``).
        oracle: the training reward; the only one a method can query, through the budget.
        judges: evaluation rewards by label; never charged to the budget.
        primary_judge: the judge label whose mean is the headline number (the proxy: the training reward).
        online: online rounds (``OnlineSpec``) for black-box tasks with few queries, or None.
        gold_judge: optional label of a held-out judge on the primary's scale (e.g. a classifier trained on
            other data); the evaluation then logs ``eval/gold_proxy_gap`` = gold mean - proxy mean.
        train_conditions / eval_conditions: condition ids (class ids for digits); None = unconditional.
        eval_samples_per_condition: samples per eval condition at every evaluation point.
        eval_seed: seed of the fixed evaluation noise, the same for every method and training seed.
        default_budget: oracle queries when the run does not give a budget.
        allow_eval_on_train_conditions: evaluating on training conditions biases comparisons; a card must opt in
            (digits have only 10 classes, so digits tasks do).
        changes: what this version changed from the previous one (shown by ``benchsuite list``; not part of the
            task's meaning, so not part of its digest).
        drift_budget: the path KL to the pretrained model (``eval/kl``, the suite's one KL) within which methods
            are compared at matched drift: the report's matched-drift reward of a run is its best evaluation with
            ``eval/kl <= drift_budget``. None: the task is reported at full budget only.
        judge_tolerance: ``(judge, tolerance)`` pairs: how far each held-out judge's mean may fall below the run's
            first evaluation (the pretrained model) at a point that counts as within the drift budget; a point
            that breaks the KL budget or any tolerance is not at matched drift (``within_drift``). Report-side
            like ``drift_budget``; a card states it only together with a drift budget.
        reference_score: a fixed value of the task's headline metric that normalized scores map to 1 (0 is the
            pretrained model), independent of which methods are compared: a known optimum or a simple
            construction's score, stated in the card. None: the report falls back to the best method's mean.
        accounting: ``benchsuite.accounting.AccountingSpec`` of the card's ``accounting:`` block (``pmo``: PMO's
            oracle cache, repeats and invalid molecules free, ``pmo/*`` metrics), or None: every sample charged.
    """

    id: str
    description: str
    backbone: str
    sampler: tuple[tuple[str, Any], ...]
    oracle: RewardSpec
    judges: tuple[tuple[str, RewardSpec], ...]
    primary_judge: str
    train_conditions: tuple[int, ...] | None
    eval_conditions: tuple[int, ...] | None
    eval_samples_per_condition: int
    eval_seed: int
    default_budget: int
    allow_eval_on_train_conditions: bool = False
    gold_judge: str | None = None
    online: OnlineSpec | None = None
    # the budget's accounting (``benchsuite.accounting``): None is the default (every sample charged). It changes
    # what a run does, but is left out of the repr so that the cards without it keep their digests; config.task_digest
    # adds it when set
    accounting: Any = field(default=None, repr=False)
    # report-side fields: they change how runs are compared and listed, not what a run does, so they stay out of
    # the repr that the run id's task digest hashes (config.task_digest)
    drift_budget: float | None = field(default=None, repr=False)
    reference_score: float | None = field(default=None, repr=False)
    judge_tolerance: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    # part of what a run does, but left out of the repr so that the digests of cards without it do not move;
    # config.task_digest adds it when present
    protocol: EvalProtocol | None = field(default=None, repr=False)
    changes: str = field(default="", compare=False, repr=False)
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class EvalProtocol:
    """The two evaluation sets of a card whose ``eval`` mapping has a ``selection`` entry (the ``-v2`` digits and
    sequence cards): every choice made on a run (the checkpoint at the drift budget, the tuning objective, early
    stopping) reads the selection set (``select/`` metrics); the reported numbers read the test set (``eval/``).

    The noise of each set is drawn from (``eval_seed``, set, the run's training seed) (``noise_seed``): the two sets
    are disjoint, and every method of a seed (pretrained and best-of-N included) sees the same test noise, so each
    comparison is paired over seeds instead of a comparison with one fixed sample of the pretrained model.

    Attributes:
        selection_samples_per_condition: samples per selection condition at every evaluation point.
        selection_conditions: condition ids of the selection set; None: the eval conditions (or unconditional).
    """

    selection_samples_per_condition: int
    selection_conditions: tuple[int, ...] | None = None


SPLITS = ("test", "selection")
"""The evaluation sets: ``test`` (metrics ``eval/``, the reported numbers) and ``selection`` (``select/``)."""
PREFIXES = {"test": "eval/", "selection": "select/"}
"""The metric prefix of each evaluation set."""


def selection_metric(metric: str, available) -> str:
    """The metric a choice reads: ``metric``'s selection-set twin (``eval/x`` -> ``select/x``) where ``available``
    (logged metric names) holds it, else ``metric`` itself (a card with one set: the choice and the reported value
    then share their samples)."""
    if not metric.startswith(PREFIXES["test"]):
        return metric
    twin = PREFIXES["selection"] + metric.removeprefix(PREFIXES["test"])
    return twin if twin in available else metric


def noise_seed(eval_seed: int, split: str, run_seed: int) -> int:
    """The seed of one evaluation set's noise for one run: a hash of (card seed, set, run seed), so that the sets of
    a run are disjoint and the runs of one seed share their noise across methods."""
    digest = hashlib.sha256(f"{eval_seed}:{split}:{run_seed}".encode()).hexdigest()
    return int(digest[:15], 16)


def _reward_spec(raw: Any, where: str) -> RewardSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where}: expected a mapping with a 'name', got {clip_repr(raw)}")
    unknown = set(raw) - {"name", "version", "kwargs"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {clip(sorted(map(str, unknown)))}; allowed: name, version, "
                          "kwargs")
    REWARDS.check(raw["name"])
    kwargs = raw.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}.kwargs must be a mapping")
    return RewardSpec(str(raw["name"]), str(raw.get("version", "0")), tuple(sorted(kwargs.items())))


def _protocol(selection: Any, conditions: Any, source: str) -> EvalProtocol | None:
    if selection is None:
        if conditions is not None:
            raise ConfigError(f"{source}: conditions.selection needs eval.selection: {{samples_per_condition: N}}")
        return None
    if not isinstance(selection, dict) or set(selection) != {"samples_per_condition"}:
        raise ConfigError(f"{source}: eval.selection must be a mapping with samples_per_condition alone")
    n = selection["samples_per_condition"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{source}: eval.selection.samples_per_condition must be a positive integer")
    return EvalProtocol(n, _conditions(conditions, f"{source}: conditions.selection"))


def _conditions(raw: Any, where: str) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(c, int) and c >= 0 for c in raw):
        raise ConfigError(f"{where} must be a non-empty list of non-negative integers or null")
    return tuple(raw)


def _drift_budget(raw: Any, source: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        raise ConfigError(f"{source}: drift_budget must be a positive number (a path KL), got {clip_repr(raw)}")
    return float(raw)


def _judge_tolerance(raw: Any, source: str, judges: set[str], budget: float | None) -> tuple[tuple[str, float], ...]:
    if raw is None:
        return ()
    if budget is None:
        raise ConfigError(f"{source}: judge_tolerance needs a drift_budget (it narrows what counts as matched drift)")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: judge_tolerance must be a mapping judge -> largest allowed fall, got {clip_repr(raw)}")
    out = []
    for judge, tol in raw.items():
        if judge not in judges:
            raise ConfigError(f"{source}: judge_tolerance names {clip_repr(judge)}, which is not one of the card's "
                              f"judges ({', '.join(sorted(judges))})")
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol) or tol < 0:
            raise ConfigError(f"{source}: judge_tolerance of {judge} must be a number >= 0, got {clip_repr(tol)}")
        out.append((str(judge), float(tol)))
    return tuple(sorted(out))


def within_drift(kl, judges_now: dict, judges_first: dict, budget: float, tolerance=()):
    """Whether an evaluation point counts as at matched drift: path KL ``kl`` at most ``budget`` and no judge of
    ``tolerance`` (``(judge, largest fall)`` pairs) fallen below its value at the run's first evaluation (the
    pretrained model) by more than its tolerance. ``judges_now`` / ``judges_first`` map judge names to their means
    at the point and at the first evaluation. Works on floats and elementwise on pandas Series (the report); the
    one definition that the report's matched-drift choice and the tuning objective share."""
    ok = kl <= budget
    for judge, tol in tolerance:
        ok = ok & (judges_now[judge] >= judges_first[judge] - tol)
    return ok


def _accounting(raw: Any, source: str):

    return parse_accounting(raw, source)


def _finite(raw: Any, name: str, source: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ConfigError(f"{source}: {name} must be a finite number, got {clip_repr(raw)}")
    return float(raw)


_CARD_KEYS = {
    "id", "description", "backbone", "sampler", "oracle", "judges", "primary_judge", "conditions", "eval",
    "default_budget", "allow_eval_on_train_conditions", "gold_judge", "online", "changes", "drift_budget", "judge_tolerance",
    "reference_score", "accounting",
}


def parse_card(raw: Any, source: str) -> TaskSpec:
    """Validate a loaded YAML card and build its ``TaskSpec``; every error is one line naming the file."""
    try:
        return _parse_card(raw, source)
    except ConfigError as exc:
        if str(exc).startswith(source):
            raise
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:  # odd value types in user data: same one-line answer
        raise ConfigError(f"{source}: invalid value ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _parse_card(raw: Any, source: str) -> TaskSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a task card must be a YAML mapping")
    unknown = set(raw) - _CARD_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {clip(sorted(map(str, unknown)))}; allowed: "
                          f"{sorted(_CARD_KEYS)}")
    missing = {"id", "backbone", "oracle", "judges", "primary_judge", "eval", "default_budget"} - set(raw)
    if missing:
        raise ConfigError(f"{source}: missing key(s) {sorted(missing)}")
    task_id = str(raw["id"])
    if not _ID.match(task_id):
        raise ConfigError(f"{source}: task id {clip_repr(task_id)} must look like 'name-v0' (lowercase, "
                          "versioned)")
    BACKBONES.check(raw["backbone"])
    judges = raw["judges"]
    if not isinstance(judges, dict) or not judges:
        raise ConfigError(f"{source}: judges must be a non-empty mapping of label -> reward")
    if raw["primary_judge"] not in judges:
        raise ConfigError(f"{source}: primary_judge {clip_repr(raw['primary_judge'])} is not one of "
                          f"{clip(sorted(map(str, judges)))}")
    gold = raw.get("gold_judge")
    if gold is not None and (gold not in judges or gold == raw["primary_judge"]):
        raise ConfigError(f"{source}: gold_judge {clip_repr(gold)} must be a judge other than the primary one")
    conds = raw.get("conditions") or {}
    ev = raw["eval"]
    if not isinstance(ev, dict) or set(ev) - {"samples_per_condition", "seed", "selection"}:
        raise ConfigError(f"{source}: eval must be a mapping with samples_per_condition, seed and optionally "
                          "selection: {samples_per_condition}")
    protocol = _protocol(ev.get("selection"), conds.get("selection"), source)
    spc, budget = ev.get("samples_per_condition", 16), raw["default_budget"]
    if not isinstance(spc, int) or spc < 1:
        raise ConfigError(f"{source}: eval.samples_per_condition must be a positive integer")
    if not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"{source}: default_budget must be a positive integer")
    sampler = raw.get("sampler") or {}
    if not isinstance(sampler, dict):
        raise ConfigError(f"{source}: sampler must be a mapping")
    online = raw.get("online")
    if online is not None:
        if not isinstance(online, dict):
            raise ConfigError(f"{source}: online must be a mapping of OnlineSpec fields")
        allowed = {f.name for f in dataclasses.fields(OnlineSpec)}
        if set(online) - allowed:
            hint = ("; inner_steps was replaced by inner_sample_ratio (1.0 gives the old 8 steps per 512-query round "
                    "at batch 64)" if "inner_steps" in online else "")
            raise ConfigError(
                f"{source}: unknown online key(s) {clip(sorted(map(str, set(online) - allowed)))}; allowed: "
                f"{sorted(allowed)}{hint}")
        online = OnlineSpec(**online)
    spec = TaskSpec(
        id=task_id,
        description=str(raw.get("description", "")),
        backbone=str(raw["backbone"]),
        sampler=tuple(sorted(sampler.items())),
        oracle=_reward_spec(raw["oracle"], f"{source}: oracle"),
        judges=tuple((str(k), _reward_spec(v, f"{source}: judges.{clip(str(k), 60)}")) for k, v in judges.items()),
        primary_judge=str(raw["primary_judge"]),
        train_conditions=_conditions(conds.get("train"), f"{source}: conditions.train"),
        eval_conditions=_conditions(conds.get("eval"), f"{source}: conditions.eval"),
        eval_samples_per_condition=spc,
        eval_seed=int(ev.get("seed", 0)),
        default_budget=budget,
        allow_eval_on_train_conditions=bool(raw.get("allow_eval_on_train_conditions", False)),
        gold_judge=None if gold is None else str(gold),
        online=online,
        accounting=_accounting(raw.get("accounting"), source),
        drift_budget=_drift_budget(raw.get("drift_budget"), source),
        judge_tolerance=_judge_tolerance(raw.get("judge_tolerance"), source, {str(j) for j in judges},
                                         _drift_budget(raw.get("drift_budget"), source)),
        protocol=protocol,
        reference_score=_finite(raw.get("reference_score"), "reference_score", source),
        changes=str(raw.get("changes", "")),
        source=source,
    )
    if protocol is not None and protocol.selection_conditions is not None and spec.eval_conditions is None:
        raise ConfigError(f"{source}: conditions.selection needs conditions.eval (an unconditional card has neither)")
    overlap = set(spec.train_conditions or ()) & (set(spec.eval_conditions or ()) | set(
        (protocol.selection_conditions if protocol is not None else None) or ()))
    if overlap and not spec.allow_eval_on_train_conditions:
        raise ConfigError(
            f"{source}: eval conditions {sorted(overlap)} are also training conditions; this biases comparisons. "
            "Use held-out conditions or set allow_eval_on_train_conditions: true"
        )
    return spec


def _checked_sampler(spec: TaskSpec) -> TaskSpec:
    """``spec`` with its sampler settings checked against the backbone factory's argument types (as task overrides
    are: ``check_task_settings``), so that a wrong type is an error of the card, not a traceback in a run."""
    settings = check_task_settings(spec.backbone, {f"sampler.{k}": v for k, v in spec.sampler}, f"{spec.source}: card")
    sampler = tuple((key.removeprefix("sampler."), value) for key, value in settings.items())
    return spec if sampler == spec.sampler else dataclasses.replace(spec, sampler=sampler)


@functools.cache
def _cards(folder: Path) -> tuple[dict[str, TaskSpec], dict[str, str]]:
    """The cards of one folder: ``(specs by id, problems by id)``. A card that does not load (unreadable, malformed,
    an unregistered reward or backbone, an id other than its file name) is a problem of its own id (its file name),
    as a one-line message naming the file; the other cards are unaffected."""
    specs: dict[str, TaskSpec] = {}
    broken: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = check_numbers(check_sizes(read_yaml(path, "task card"), f"{path}: card"), f"{path}: card")
            spec = _checked_sampler(parse_card(raw, str(path)))
            if spec.id != path.stem:
                raise ConfigError(f"{path}: card id {clip_repr(spec.id)} must match the file name {path.stem!r}")
        except ConfigError as exc:
            broken[path.stem] = str(exc)
            continue
        specs[spec.id] = spec
    return specs, broken


def _catalog() -> tuple[dict[str, TaskSpec], dict[str, str]]:
    """Every folder's cards merged in ``task_dirs`` order: ``(specs by id, problems by id)``. An id that two files
    define differently is a problem naming both (the same card twice, e.g. a copy of a built-in card, is not); an
    id with a problem in any folder is left out of the specs, so no other card stands in for it."""
    specs: dict[str, TaskSpec] = {}
    broken: dict[str, str] = {}
    for folder in task_dirs():
        found, problems = _cards(folder)
        for tid, message in problems.items():
            broken.setdefault(tid, message)
        for tid, spec in found.items():
            if tid not in specs:
                specs[tid] = spec
            elif spec != specs[tid]:
                broken.setdefault(tid, f"task id {tid!r} is defined twice, differently: {specs[tid].source} and "
                                       f"{spec.source}; give one of the cards another id (and file name)")
    return {tid: spec for tid, spec in specs.items() if tid not in broken}, broken


def task_specs() -> dict[str, TaskSpec]:
    """All task cards that load, by id, from the built-in folder and the folders of ``BENCHSUITE_TASKS_DIR``
    (``task_dirs``). Cards that do not load are left out; ``broken_cards`` says why."""
    return _catalog()[0]


def broken_cards() -> dict[str, str]:
    """The ids (file names) of the cards that do not load or clash, each with its one-line problem naming the file."""
    return _catalog()[1]


TASK_OVERRIDE_SECTIONS = ("sampler", "online")
"""The parts of a task card a run may override (``--set task.sampler.num_steps=50``): a study of the card's settings
(sampler steps, online-round settings) without writing a card. Overrides change the task's digest, hence the run id."""


def apply_task_overrides(spec: TaskSpec, overrides: dict[str, Any] | None) -> TaskSpec:
    """``spec`` with ``{"sampler.<arg>": value, "online.<field>": value}`` applied and validated.

    ``sampler.<arg>`` must be an argument of the backbone's factory; ``online.<field>`` a field of ``OnlineSpec``
    on a task that has online rounds. Raises ``ConfigError`` naming the key and what is allowed.
    """
    if not overrides:
        return spec
    import inspect

    sampler, online = dict(spec.sampler), None if spec.online is None else dataclasses.asdict(spec.online)
    for key, value in overrides.items():
        section, _, name = str(key).partition(".")
        if section == "sampler" and name:
            allowed = [p for p in inspect.signature(BACKBONES.load(spec.backbone)).parameters]
            if name not in allowed:
                raise ConfigError(f"task override {key!r}: backbone {spec.backbone!r} takes sampler arguments "
                                  f"{', '.join(allowed)}")
            sampler[name] = value
        elif section == "online" and name:
            if online is None:
                raise ConfigError(f"task override {key!r}: task {spec.id} has no online rounds")
            if name not in online:
                raise ConfigError(f"task override {key!r}: allowed online fields: {', '.join(sorted(online))}")
            online[name] = value
        else:
            raise ConfigError(f"task override {key!r} must look like task.sampler.<arg>=<value> or "
                              "task.online.<field>=<value>")
    return dataclasses.replace(spec, sampler=tuple(sorted(sampler.items())),
                               online=None if online is None else OnlineSpec(**online))


def superseded_by(task_id: str, ids) -> str | None:
    """The newest version of ``task_id``'s task among ``ids`` when it is newer than ``task_id`` (else None).

    ``digits-jpeg-compress-v0`` is superseded by ``digits-jpeg-compress-v1`` once that card exists. A superseded card
    stays loadable, so published run ids keep resolving; ``benchsuite list`` marks it.
    """
    stem, _, version = task_id.rpartition("-v")
    newer = [(int(v), i) for i in ids for s_, _, v in [i.rpartition("-v")] if s_ == stem and int(v) > int(version)]
    return max(newer)[1] if newer else None


def load_spec(task_id: str) -> TaskSpec:
    """The ``TaskSpec`` of ``task_id``. Raises ``ConfigError``: the card's own problem if it does not load, else an
    unknown id with the valid ones."""
    specs, broken = _catalog()
    if task_id in specs:
        return specs[task_id]
    if task_id in broken:
        raise ConfigError(broken[task_id])
    raise UnknownNameError("task", task_id, list(specs))


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know about its task (never the reward itself).

    Attributes:
        id: task id.
        train_conditions: ``C`` int64 tensor of condition ids to sample training queries from, or None.
        oracle_differentiable: whether oracle rewards carry gradients to the samples.
        online: the task's online rounds, or None. Methods that train a policy get them through the runner's
            ``OnlineRounds`` wrapper; methods that do not (best-of-N, BO) spend their queries in the same rounds.
        eval_samples_per_condition: samples the runner judges per eval condition (what a kept set should hold).
    """

    id: str
    train_conditions: Tensor | None
    oracle_differentiable: bool
    online: OnlineSpec | None = None
    eval_samples_per_condition: int = 16


class Task:
    """A built task: judges constructed, factories for the oracle and the policy."""

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self._oracle_reward = spec.oracle.build()
        if spec.accounting is not None and spec.accounting.mode == "pmo":

            if not supports_keys(self._oracle_reward):
                raise ConfigError(f"{spec.source or spec.id}: accounting pmo needs a molecule or sequence oracle "
                                  f"(its samples need cache keys); {spec.oracle.name!r} has none")
        self.judges = {label: rs.build() for label, rs in spec.judges}

    @property
    def oracle_reward(self):
        """The training reward object (for the runner's bookkeeping; methods only get the budgeted oracle)."""
        return self._oracle_reward

    @property
    def info(self) -> TaskInfo:
        tc = self.spec.train_conditions
        return TaskInfo(
            id=self.spec.id,
            train_conditions=None if tc is None else torch.tensor(tc, dtype=torch.int64),
            oracle_differentiable=self._oracle_reward.differentiable,
            online=self.spec.online,
            eval_samples_per_condition=self.spec.eval_samples_per_condition,
        )

    def train_oracle(self, budget: int, retries: int = 0, backoff_s: float = 1.0, timeout_s: float | None = None):
        """A fresh ``BudgetedOracle`` over the training reward (fault handling as in ``BudgetedOracle``)."""
        if self.spec.accounting is not None and self.spec.accounting.mode == "pmo":
            if distributed.num_processes() > 1:
                raise ConfigError(f"task {self.spec.id}: accounting pmo runs in one process (its oracle cache is "
                                  "per process); launch it without accelerate's --num_processes")
            return PmoOracle(self._oracle_reward, budget, self.spec.accounting, retries=retries, backoff_s=backoff_s,
                             timeout_s=timeout_s)
        return BudgetedOracle(self._oracle_reward, budget, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)

    def make_policy(self):
        """The pretrained policy of this task's backbone."""
        return BACKBONES.make(self.spec.backbone, **dict(self.spec.sampler))

    def eval_conditions(self, split: str = "test") -> Tensor | None:
        """``N`` int64: each condition of the set repeated its samples per condition (None: unconditional)."""
        ec = self.spec.eval_conditions
        if ec is None:
            return None
        if split == "selection":
            ec = self.spec.protocol.selection_conditions or ec
        return torch.tensor(ec, dtype=torch.int64).repeat_interleave(self.eval_samples(split))

    def eval_samples(self, split: str = "test") -> int:
        """Samples per condition of an evaluation set (``SPLITS``)."""
        if split == "test":
            return self.spec.eval_samples_per_condition
        if split != "selection" or self.spec.protocol is None:
            raise ValueError(f"task {self.spec.id} has no {split!r} evaluation set")
        return self.spec.protocol.selection_samples_per_condition

    def eval_noise_seed(self, split: str = "test", run_seed: int | None = None) -> int:
        """The seed of an evaluation set's noise: the card's fixed ``eval.seed`` on a card without a selection set
        (one sample for every run), else ``noise_seed(eval.seed, split, run_seed)``."""
        if self.spec.protocol is None:
            return self.spec.eval_seed
        if run_seed is None:
            raise ValueError(f"task {self.spec.id} draws its evaluation noise from the run's seed: pass run_seed")
        return noise_seed(self.spec.eval_seed, split, run_seed)


def make_task(task_id: str) -> Task:
    """Build the task registered under ``task_id``."""
    return Task(load_spec(task_id))


_NO = object()  # _convert's answer for a value that is not of the type asked


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, None or a ``Literal``), or ``_NO`` if it is not one."""
    if typing.get_origin(hint) is Literal:
        return value if value in typing.get_args(hint) else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return _NO
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _NO
    if hint is str:
        return value if isinstance(value, str) else _NO
    if hint is type(None):
        return value if value is None else _NO
    raise TypeError(f"unsupported config field type {hint!r}")


def _options(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``float | None``, ``Optional[int]``, ``Literal[...] | None``), else ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _describe(hint: Any) -> str:
    def one(option: Any) -> str:
        if typing.get_origin(option) is Literal:
            return f"one of {list(typing.get_args(option))}"
        return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                type(None): "null"}[option]

    return " or ".join(one(option) for option in _options(hint))


def _coerce(name: str, value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a config field's type ``hint``: bool, int, float, str, a ``Literal`` or a union of
    them (``float | None``; the first member that takes the value wins, in the order written). An int stays an int
    and a number for a float field becomes a float, so resolved configs (and run ids) keep their types. Floats must
    be finite and integers at most ``MAX_INTEGER`` in magnitude. Raises ``ConfigError`` naming the field and what
    is allowed.

    Not pydantic's ``TypeAdapter``: its lax mode takes ``true`` and ``1.0`` for an integer, its strict mode refuses
    YAML 1.1's ``"1e-4"`` strings for a float, and either way its messages would replace these.
    """
    for option in _options(hint):
        converted = _convert(value, option)
        if converted is not _NO:
            check_numbers(converted, f"{where}: {name}")
            return converted
    raise ConfigError(f"{where}: {name} must be {_describe(hint)}, got {clip_repr(value)}")


def check_task_settings(backbone: str, settings: dict[str, Any], where: str = "task override") -> dict[str, Any]:
    """Task settings (``{"sampler.num_steps": 50, "online.bonus": 1.0}``: task overrides, or a card's sampler
    section) checked against the types of what they set: the backbone factory's annotated arguments and
    ``OnlineSpec``'s fields (``_coerce``); every number finite and bounded. A number written as a string (YAML 1.1's
    ``1e-4``) becomes a float; other values stay as given, so the run ids of existing configs stay. Unknown names
    are left to ``apply_task_overrides``, which lists the allowed ones. Raises ``ConfigError`` naming ``where``."""
    checked = {}
    for key, value in settings.items():
        section, _, name = str(key).partition(".")
        hints = {}
        if section == "sampler" and name:
            try:
                hints = typing.get_type_hints(BACKBONES.load(backbone))
            except (NameError, TypeError):  # an annotation that does not evaluate: check the numbers only
                hints = {}
        elif section == "online":
            hints = typing.get_type_hints(OnlineSpec)
        try:
            converted = _coerce(str(key), value, hints[name], where) if name in hints else _NO
        except TypeError:  # an argument of another type (a shape, a list): its numbers are still checked
            converted = _NO
        check_numbers(value if converted is _NO else converted, f"{where} {key}")
        checked[key] = converted if isinstance(value, str) and converted is not _NO else value
    return checked
