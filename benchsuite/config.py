"""Run configuration: one frozen ``RunConfig`` per run, hashed into the run id.

A method's settings resolve in this order, later wins:
1. the method's ``Config`` dataclass field defaults (the paper's values, documented per field);
2. ``baselines/<method>/defaults.yaml``, section ``common`` then the task's backbone section (``digits``...):
   the suite's translation of the paper's values to each backbone;
3. ``baselines/<method>/tuned/<task>.yaml`` if it exists (written by ``benchsuite tune``), or instead a named
   preset ``tuned/<preset>.yaml`` (``resolve(preset=...)``: a leaderboard's list of tasks tuned by PMO's protocol);
4. overrides from the command line (``--set method.lr=1e-4``).
Every key is checked against the dataclass fields and every value against the field's type and range; a bad
one raises ``ConfigError`` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, MissingWeightsError, clip, clip_repr
from .registry import BACKBONES, METHODS
from .weights import weights_digest
from .tasks import (_NO, MAX_INTEGER, MAX_SEED, Task, _coerce, _convert, apply_task_overrides, check_task_settings,
                    data_dir, load_spec, preset_file, read_yaml)

DEFAULT_EVAL_FRACTIONS = tuple(i / 10 for i in range(11))


def parse_overrides(items: list[str] | None, task: bool = False) -> dict[str, Any] | tuple[dict, dict]:
    """``["method.lr=1e-4", ...]`` -> ``{"lr": 1e-4}``. Values are parsed as YAML scalars.

    With ``task=True`` ``task.<section>.<key>=<value>`` items are accepted too (``benchsuite.tasks
    .apply_task_overrides``) and the result is ``(method overrides, task overrides)``.
    """
    out: dict[str, Any] = {}
    task_out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        is_task = task and key.startswith("task.") and len(key) > len("task.")
        if not sep or not (is_task or (key.startswith("method.") and len(key) > len("method."))):
            shape = "method.<field>=<value> or task.sampler.<arg>=<value>" if task else "method.<field>=<value>"
            raise ConfigError(f"override {clip_repr(item)} must look like {shape}, e.g. method.lr=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits (Python's limit)
            raise ConfigError(f"override {clip_repr(item)}: cannot parse value {clip_repr(raw)}") from None
        if is_task:
            task_out[key[len("task.") :]] = value
        else:
            out[key[len("method.") :]] = value
    return (out, task_out) if task else out


def preset_layers(method: str, backbone: str, task_id: str, tuned: bool = True,
                  preset: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The (source, values) layers from ``baselines/`` that apply to this method on this task, in order; ``tuned``:
    with the task's exported tuned preset (or the named ``preset``'s instead), when there is one."""
    folder = data_dir("baselines") / method
    layers: list[tuple[str, dict[str, Any]]] = []
    defaults = preset_file(method, "defaults.yaml")
    if defaults.exists():
        raw = read_yaml(defaults, "preset") or {}
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise ConfigError(f"{defaults}: expected sections (common, <backbone>) of key: value mappings")
        for section in ("common", backbone):
            if section in raw:
                layers.append((f"{defaults}[{section}]", raw[section]))
    tuned_file = folder / "tuned" / f"{preset or task_id}.yaml"
    if tuned and tuned_file.exists():
        raw = read_yaml(tuned_file, "preset") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{tuned_file}: expected a mapping of field: value")
        layers.append((str(tuned_file), raw))
    return layers


def build_method_config(config_cls: type, layers: list[tuple[str, dict[str, Any]]]):
    """Apply the layers to the dataclass defaults with type and range checks."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for where, layer in layers:
        for key, value in layer.items():
            if key not in fields:
                raise ConfigError(f"{where}: unknown field {clip_repr(key)}; valid fields: "
                                  f"{', '.join(sorted(fields))}")
            values[key] = _coerce(key, value, hints[key], where)
    try:
        return config_cls(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid {config_cls.__name__}: {exc}") from None


@dataclass(frozen=True)
class RunConfig:
    """One run, fully resolved. Everything in it except ``output_root`` and ``tracking`` enters the run id.

    Attributes:
        task: task id.
        method: method name.
        seed: training seed (the eval noise is fixed by the task card, not by this seed).
        budget: oracle queries.
        method_config: the resolved method settings as sorted (field, value) pairs.
        eval_fractions: fractions of the budget at which the runner evaluates.
        num_threads: torch intra-op threads (measured on 2 shared cores: 1 is faster than 2).
        device: torch device for the policy.
        task_digest: SHA-256 prefix of the task's parsed card and of the package's shipped backbone weights
            (``task_digest``), so that a changed card (online rounds, judges, sampler) or a retrained embedded
            backbone gives a new run id instead of reusing finished runs made under the old one. Empty in configs
            written before it existed; their run ids are unchanged.
        task_overrides: changes to the task card for this run as sorted ``("sampler.num_steps", 50)`` pairs
            (``benchsuite.tasks.apply_task_overrides``); part of the run id when present.
        method_digest: the digest of the weights files the method itself ships and loads (``method_digest``:
            REINVENT's prior), so that retraining them gives the method's runs new ids. Empty for every method
            without such files: then it is left out of the run id and of ``to_dict``, and their ids are unchanged.
    """

    task: str
    method: str
    seed: int
    budget: int
    method_config: tuple[tuple[str, Any], ...]
    eval_fractions: tuple[float, ...] = DEFAULT_EVAL_FRACTIONS
    num_threads: int = 1
    device: str = "cpu"
    task_digest: str = ""
    task_overrides: tuple[tuple[str, Any], ...] = ()
    method_digest: str = ""
    output_root: str = field(default="results", compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method_config"] = dict(self.method_config)
        if not d["method_digest"]:  # a method without weights of its own: its runs' files and ids stay as they were
            d.pop("method_digest")
        return d

    @property
    def config_hash(self) -> str:
        d = self.to_dict()
        d.pop("output_root")
        if not d["task_digest"]:  # a config from before the digest: keep its old run id
            d.pop("task_digest")
        if not d["task_overrides"]:  # and one without task overrides keeps the id it had before they existed
            d.pop("task_overrides")
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.task}__{self.method}__seed{self.seed}__{self.config_hash}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / "runs" / self.run_id

    def task_spec(self):
        """The run's ``TaskSpec``: the card with ``task_overrides`` applied."""
        return apply_task_overrides(load_spec(self.task), dict(self.task_overrides))

    def make_task(self):
        """The built ``Task`` of this run (card plus overrides)."""
        return Task(self.task_spec())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of ``to_dict`` (after a JSON round trip: lists back to tuples)."""
        d = dict(d)
        d["method_config"] = tuple(sorted(d["method_config"].items()))
        d["eval_fractions"] = tuple(d["eval_fractions"])
        d["task_overrides"] = tuple(tuple(pair) for pair in d.get("task_overrides", ()))
        return cls(**d)


def resolve(task: str, method: str, seed: int = 0, budget: int | None = None,
            overrides: dict[str, Any] | None = None, task_overrides: dict[str, Any] | None = None,
            overrides_source: str = "--set", tuned_presets: bool = True, preset: str | None = None,
            **kwargs: Any) -> RunConfig:
    """Validate names and values and build the ``RunConfig``; writes nothing. Raises ``ConfigError``.

    ``tuned_presets=False`` leaves out ``baselines/<method>/tuned/<task>.yaml`` (the settings a result measured at
    the hand-set presets was run with, e.g. scripts/fidelity.py's claims); ``preset`` takes the tuned preset
    ``baselines/<method>/tuned/<preset>.yaml`` instead of the task's (a leaderboard list's, ``benchsuite.leaderboard``).

    ``overrides`` are method settings (errors name them after ``overrides_source``); ``task_overrides`` change the
    task card for this run (``{"sampler.num_steps": 50}``, see ``benchsuite.tasks.apply_task_overrides``).
    """
    card = load_spec(task)
    task_overrides = check_task_settings(card.backbone, task_overrides or {})
    spec = apply_task_overrides(card, task_overrides)
    method_cls = METHODS.load(method)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to 2**32 - 1, got {clip_repr(seed)}")
    budget = spec.default_budget if budget is None else budget
    layers = preset_layers(method, spec.backbone, task, tuned=tuned_presets, preset=preset)
    if overrides:
        layers.append((overrides_source, overrides))
    mcfg = build_method_config(method_cls.Config, layers)
    if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= MAX_INTEGER:
        raise ConfigError(f"budget must be an integer from 0 to 10**9 queries, got {clip_repr(budget)}")
    if 0 < budget < mcfg.batch_size:
        raise ConfigError(
            f"budget {budget} is below one batch of {method} (batch_size={mcfg.batch_size}); "
            f"use --budget {mcfg.batch_size} or more, or --set method.batch_size=<smaller>"
        )
    fractions = tuple(kwargs.pop("eval_fractions", DEFAULT_EVAL_FRACTIONS))
    if not fractions or any(not 0 <= f <= 1 for f in fractions):
        raise ConfigError("eval fractions must lie in [0, 1]")
    threads = kwargs.get("num_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"num_threads must be a positive integer, got {clip_repr(threads)}")
    return RunConfig(task=task, method=method, seed=seed, budget=budget,
                     method_config=tuple(sorted(dataclasses.asdict(mcfg).items())),
                     eval_fractions=tuple(sorted(set(fractions) | {0.0, 1.0})),
                     task_digest=task_digest(spec), task_overrides=tuple(sorted(task_overrides.items())),
                     method_digest=method_digest(method_cls), **kwargs)


def field_docs(config_cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body) of a ``Config`` dataclass, its bases'
    fields included; read with ``ast`` from the classes' source. Fields without one are absent."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__[:-1]):  # bases first, so that a subclass's own docstring wins
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        except (OSError, TypeError, IndexError, AttributeError, SyntaxError):  # no source (e.g. a built-in class)
            continue
        for field_node, doc_node in zip(body, body[1:]):
            if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                    and isinstance(doc_node, ast.Expr) and isinstance(doc_node.value, ast.Constant)
                    and isinstance(doc_node.value.value, str)):
                docs[field_node.target.id] = inspect.cleandoc(doc_node.value.value)
    return docs


RUN_CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def config_yaml(config: RunConfig) -> str:
    """The resolved ``config`` as YAML (``benchsuite run --print-config``); ``resolve_file`` reads it back into the
    same run (the same run id)."""
    d = config.to_dict()
    d["eval_fractions"] = list(config.eval_fractions)
    d["task_overrides"] = dict(config.task_overrides)
    return f"# run {config.run_id}: benchsuite run --config <this file>\n" + yaml.safe_dump(d, sort_keys=False)


def resolve_file(path: Path, output_root: str | None = None) -> RunConfig:
    """The ``RunConfig`` of a run config file (``config_yaml``'s format), resolved again as ``resolve`` does: every
    value checked, the task digest recomputed from the card as it is now. A file written by ``config_yaml`` gives the
    same run id as the flags that produced it. Omitted keys take ``resolve``'s defaults (``method_config`` fields:
    the presets); ``output_root`` (the ``--output`` flag) replaces the file's.

    Raises:
        ConfigError: unreadable or malformed file, unknown keys, a bad value, or a ``task_digest`` other than the
            card's now (the card or the shipped weights changed: the file describes another run).
    """
    raw = read_yaml(path, "run config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a run config is a mapping with keys {', '.join(RUN_CONFIG_KEYS)}")
    unknown = sorted(set(map(str, raw)) - set(RUN_CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {clip(unknown)}; allowed: {', '.join(RUN_CONFIG_KEYS)}")
    for key in ("task", "method"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{path}: {key} must be a name (see 'benchsuite list'), got {clip_repr(raw.get(key))}")
    for key in ("method_config", "task_overrides"):
        if not isinstance(raw.get(key) or {}, dict):
            raise ConfigError(f"{path}: {key} must be a mapping of name: value, got {clip_repr(raw[key])}")
    fractions = raw.get("eval_fractions", list(DEFAULT_EVAL_FRACTIONS))
    if not isinstance(fractions, list) or not all(_convert(f, float) is not _NO for f in fractions):
        raise ConfigError(f"{path}: eval_fractions must be a list of numbers in [0, 1], got {clip_repr(fractions)}")
    if not isinstance(raw.get("device", "cpu"), str):
        raise ConfigError(f"{path}: device must be a string such as cpu or cuda:0, got {clip_repr(raw['device'])}")
    try:
        config = resolve(raw["task"], raw["method"], seed=raw.get("seed", 0), budget=raw.get("budget"),
                         overrides=raw.get("method_config") or {}, overrides_source="method_config",
                         task_overrides=raw.get("task_overrides") or {},
                         eval_fractions=tuple(fractions), num_threads=raw.get("num_threads", 1),
                         device=raw.get("device", "cpu"),
                         output_root=str(output_root or raw.get("output_root") or "results"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for key, source in (("task_digest", f"the card of {config.task} (or the shipped weights) now gives"),
                        ("method_digest", f"the weights method {config.method} ships now give")):
        written, now = raw.get(key) or getattr(config, key), getattr(config, key)
        if written != now:
            raise ConfigError(f"{path}: written for {key.replace('_', ' ')} {written}, but {source} {now or 'none'}; "
                              "print the config again with --print-config")
    return config


def backbone_digest(spec) -> str:
    """The digest of the embedded weights files ``spec``'s backbone loads with the card's sampler settings
    (``benchsuite.weights.weights_digest``, 64 hex digits; each file checked against ``SHA256SUMS``), or "" for a
    backbone without embedded weights (Stable Diffusion, plugins). Recorded with every run as ``backbone_digest``.

    Raises:
        WeightsDigestError: a file differs from its manifest line. MissingWeightsError: a file is missing.
    """
    files = getattr(BACKBONES.load(spec.backbone), "embedded_weights", None)
    if files is None:
        return ""
    return _embedded_digest(files(**dict(spec.sampler)), f"backbone {spec.backbone!r}")


def method_digest(method_cls) -> str:
    """The digest of the embedded weights files the method loads itself (``Method.embedded_weights``: REINVENT's
    prior; as ``backbone_digest`` for a backbone's), or "" for a method without any (every other one), which leaves
    its run ids as they were. Recorded in the run's config as ``method_digest``.

    Raises:
        WeightsDigestError: a file differs from its manifest line. MissingWeightsError: a file is missing.
    """
    return _embedded_digest(method_cls.embedded_weights(), f"method {method_cls.name!r}")


def _embedded_digest(files, owner: str) -> str:
    """``weights_digest`` of the (path, rebuild command) pairs ``files`` of ``owner``, after checking each exists."""
    pairs = list(files)
    for path, rebuild in pairs:
        if not Path(path).is_file():
            raise MissingWeightsError(f"embedded weights of {owner} not found at {path}; create them with: {rebuild}")
    return weights_digest(pairs)


def task_digest(spec) -> str:
    """What a run's results depend on beyond its config: the parsed task card (``TaskSpec`` without its source
    path and its report-side fields, which are left out of its repr) and, for the embedded backbones, the digest of
    the weights files the card's backbone loads (``backbone_digest``: retraining one backbone changes the run ids of
    its own cards only). 12 hex digits."""
    card = dataclasses.replace(spec, source="")
    # the accounting is out of TaskSpec's repr (the cards without it keep their digests) but part of what a run does
    accounting = "" if card.accounting is None else repr(card.accounting)
    protocol = "" if card.protocol is None else repr(card.protocol)  # the same for the two evaluation sets
    blob = repr(card).encode() + accounting.encode() + protocol.encode() + backbone_digest(spec).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
