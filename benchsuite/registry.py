"""Name -> object registries with lazy ``"module:attr"`` entry points (as Gymnasium's registration), and plugins.

Listing an entry here is all it takes to enroll it in the contract test suites, which iterate the registries.
Heavy modules are imported only when an entry is made.

Plugins: an installed distribution adds methods, rewards, backbones and task-card folders through Python entry
points (``importlib.metadata``) in the groups of ``PLUGIN_GROUPS``::

    [project.entry-points."benchsuite.methods"]
    rwr = "benchsuite_example.rwr:RewardWeightedRegression"

The registries read the entry points once per process, on their first use (not at import), so every command and
every spawned worker process (``sweep --workers``, ``tune --workers``) sees the same plugins. A plugin entry is
imported when it is first made, like a built-in one, and its type is checked then. A broken plugin (it does not
import, has the wrong type, or takes a built-in's name) is a one-line ``PluginError`` naming the entry point and
its distribution, raised only when that name is used; the built-ins and the other plugins stay usable, and
``plugin_problems`` (shown by ``benchsuite list``) lists it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownNameError

PLUGIN_GROUPS = {
    "benchsuite.methods": "method",
    "benchsuite.rewards": "reward",
    "benchsuite.backbones": "backbone",
    "benchsuite.tasks": "task-card folder",
}
"""Entry-point group -> what its entries provide."""


class PluginError(ConfigError):
    """An installed plugin's entry point cannot be used. The message names it, its distribution and the fix."""


@dataclass(frozen=True)
class Plugin:
    """One entry point of an installed distribution in a ``PLUGIN_GROUPS`` group."""

    group: str
    name: str
    value: str
    distribution: str
    """``"<name> <version>"`` of the distribution that declares it."""

    @classmethod
    def of(cls, ep: importlib.metadata.EntryPoint) -> Plugin:
        dist = getattr(ep, "dist", None)
        label = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
        return cls(ep.group, ep.name, ep.value, label)

    def problem(self, what: str) -> str:
        """The one-line message of a problem ``what`` with this entry point."""
        dist = self.distribution.split(" ")[0]
        return (f"plugin {self.name} = {self.value!r} (entry point group {self.group}, distribution "
                f"{self.distribution}): {what}; fix the plugin or uninstall it (pip uninstall {dist})")

    def load(self) -> Any:
        """The object the entry point names, imported now; ``PluginError`` if that fails (with anything)."""
        module, _, attr = self.value.partition(":")
        try:
            obj = importlib.import_module(module.strip())
            for part in attr.strip().split(".") if attr.strip() else ():
                obj = getattr(obj, part)
        except Exception as exc:  # a plugin's import may raise anything; it must not take the others down
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            raise PluginError(self.problem(f"does not import ({detail})")) from None
        return obj


def _entry_points(group: str) -> list[Plugin]:
    """The installed entry points of ``group``, sorted by name then distribution (a stable order everywhere)."""
    return sorted((Plugin.of(ep) for ep in importlib.metadata.entry_points(group=group)),
                  key=lambda p: (p.name, p.distribution))


class Registry:
    """A mapping from names to lazily imported callables (classes or factory functions), built-ins and plugins.

    ``validate(name, obj)`` returns what is wrong with a plugin's object (a short phrase) or None; built-in
    entries are checked by the contract suites instead. Like an entry it may be a ``"module:attr"`` string, imported
    when the first plugin is loaded: the checks know the base classes (``benchsuite.plugin_checks``), which sit
    above this module, so naming them keeps the registry at the bottom of the import graph.
    """

    def __init__(self, kind: str, group: str | None = None,
                 validate: Callable[[str, Any], str | None] | str | None = None):
        self.kind, self.group, self._validate = kind, group, validate
        self._entries: dict[str, str | Any] = {}
        self._builtin: set[str] = set()
        self._plugins: dict[str, Plugin] = {}  # name -> the entry point it came from
        self._broken: dict[str, str] = {}  # "<distribution>:<name>" -> one-line problem

    # ---- registration --------------------------------------------------------------------------------------
    def register(self, name: str, entry_point: str | Any) -> None:
        """Register ``entry_point`` (a ``"module:attr"`` string or the object itself) under ``name``, in this
        process only (spawned workers do not see it; a plugin's entry point reaches them)."""
        load_plugins()
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry_point

    def _register_builtin(self, name: str, entry_point: str) -> None:
        self._entries[name] = entry_point
        self._builtin.add(name)

    def _add_plugins(self, plugins: list[Plugin]) -> None:
        by_name: dict[str, list[Plugin]] = {}
        for plugin in plugins:
            by_name.setdefault(plugin.name, []).append(plugin)
        for name, found in by_name.items():
            if name in self._entries:  # a built-in: it stays
                for plugin in found:
                    self._broken[f"{plugin.distribution}:{name}"] = plugin.problem(
                        f"{name!r} is the name of a built-in {self.kind}; give the entry point another name")
            elif len(found) > 1:
                others = ", ".join(p.distribution for p in found)
                for plugin in found:
                    self._broken[f"{plugin.distribution}:{name}"] = plugin.problem(
                        f"{len(found)} distributions ({others}) define {self.kind} {name!r}; uninstall one")
            else:
                self._entries[name] = found[0].value
                self._plugins[name] = found[0]

    # ---- queries ---------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every usable name: the built-ins, the plugins' and those registered in this process."""
        load_plugins()
        return sorted(self._entries)

    def builtin_names(self) -> list[str]:
        """The names benchsuite itself ships (what the project's contract tests enroll)."""
        return sorted(self._builtin)

    def in_process_only(self, name: str) -> bool:
        """Whether ``name`` was registered with ``register`` in this process (neither a built-in nor a plugin), so
        that a spawned worker process does not know it."""
        load_plugins()
        return name in self._entries and name not in self._builtin and name not in self._plugins

    def plugin(self, name: str) -> Plugin | None:
        """The entry point ``name`` came from, or None for a built-in or in-process entry."""
        load_plugins()
        return self._plugins.get(name)

    def broken(self) -> list[str]:
        """One line per plugin entry point of this registry that cannot be used (found so far: a plugin that does
        not import is found when it is first loaded; ``check_plugins`` loads them all)."""
        load_plugins()
        return [self._broken[key] for key in sorted(self._broken)]

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries

    def check(self, name: str) -> None:
        """Raise ``UnknownNameError`` (listing the valid names) if ``name`` is not registered, or the plugin's
        ``PluginError`` if plugins define it but none can be used."""
        load_plugins()
        if name not in self._entries:
            problems = [line for key, line in sorted(self._broken.items()) if key.endswith(f":{name}")]
            if problems:
                raise PluginError(problems[0])
            raise UnknownNameError(self.kind, name, self.names())

    def load(self, name: str) -> Any:
        """The registered object, importing its module on first use. A plugin whose object does not import or has
        the wrong type raises ``PluginError`` and is dropped from the names (the others are untouched)."""
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            plugin = self._plugins.get(name)
            if plugin is None:
                module, _, attr = entry.partition(":")
                entry = getattr(importlib.import_module(module), attr)
            else:
                try:
                    entry = plugin.load()
                    if isinstance(self._validate, str):
                        module, _, attr = self._validate.partition(":")
                        self._validate = getattr(importlib.import_module(module), attr)
                    wrong = self._validate(name, entry) if self._validate else None
                    if wrong:
                        raise PluginError(plugin.problem(wrong))
                except PluginError as exc:
                    del self._entries[name], self._plugins[name]
                    self._broken[f"{plugin.distribution}:{name}"] = str(exc)
                    raise
            self._entries[name] = entry
        return entry

    def make(self, name: str, /, **kwargs: Any) -> Any:
        return self.load(name)(**kwargs)


REWARDS = Registry("reward", "benchsuite.rewards", "benchsuite.plugin_checks:valid_reward")
REWARDS._register_builtin("jpeg-compressibility", "benchsuite.rewards.jpeg:JpegCompressibility")
REWARDS._register_builtin("jpeg-incompressibility", "benchsuite.rewards.jpeg:JpegIncompressibility")
REWARDS._register_builtin("digit-class-probability", "benchsuite.rewards.digit_classifier:DigitClassProbability")
REWARDS._register_builtin("digit-target-proxy", "benchsuite.rewards.digit_classifier:DigitTargetProxy")
REWARDS._register_builtin("digit-target-gold", "benchsuite.rewards.digit_classifier:DigitTargetGold")
REWARDS._register_builtin("mean-brightness", "benchsuite.rewards.brightness:MeanBrightness")
# CLIP-based rewards: open_clip is imported when one is made, not here; weights via benchsuite.weights
REWARDS._register_builtin("laion-aesthetic", "benchsuite.rewards.aesthetic:LaionAesthetic")
REWARDS._register_builtin("hpsv2", "benchsuite.rewards.hps:HPSv2")
REWARDS._register_builtin("hpsv2.1", "benchsuite.rewards.hps:HPSv21")
# Sequence (molecule-like) black-box oracles: B x V x L token probabilities in, argmax inside
REWARDS._register_builtin("ehrlich", "benchsuite.rewards.ehrlich:Ehrlich")
REWARDS._register_builtin("ehrlich-feasibility", "benchsuite.rewards.ehrlich:EhrlichFeasibility")
REWARDS._register_builtin("selfies-qed", "benchsuite.rewards.molecules:SelfiesQED")
REWARDS._register_builtin("selfies-sa", "benchsuite.rewards.molecules:SelfiesSA")
# The RDKit-only PMO oracles (benchsuite.domains.pmo), TDC names with dashes; -prev: TDC's pre-2022 isomer scoring
REWARDS._register_builtin("pmo-celecoxib-rediscovery", "benchsuite.rewards.pmo:PmoCelecoxibRediscovery")
REWARDS._register_builtin("pmo-troglitazone-rediscovery", "benchsuite.rewards.pmo:PmoTroglitazoneRediscovery")
REWARDS._register_builtin("pmo-thiothixene-rediscovery", "benchsuite.rewards.pmo:PmoThiothixeneRediscovery")
REWARDS._register_builtin("pmo-albuterol-similarity", "benchsuite.rewards.pmo:PmoAlbuterolSimilarity")
REWARDS._register_builtin("pmo-mestranol-similarity", "benchsuite.rewards.pmo:PmoMestranolSimilarity")
REWARDS._register_builtin("pmo-isomers-c7h8n2o2", "benchsuite.rewards.pmo:PmoIsomersC7h8n2o2")
REWARDS._register_builtin("pmo-isomers-c9h10n2o2pf2cl", "benchsuite.rewards.pmo:PmoIsomersC9h10n2o2pf2cl")
REWARDS._register_builtin("pmo-median1", "benchsuite.rewards.pmo:PmoMedian1")
REWARDS._register_builtin("pmo-median2", "benchsuite.rewards.pmo:PmoMedian2")
REWARDS._register_builtin("pmo-osimertinib-mpo", "benchsuite.rewards.pmo:PmoOsimertinibMpo")
REWARDS._register_builtin("pmo-fexofenadine-mpo", "benchsuite.rewards.pmo:PmoFexofenadineMpo")
REWARDS._register_builtin("pmo-ranolazine-mpo", "benchsuite.rewards.pmo:PmoRanolazineMpo")
REWARDS._register_builtin("pmo-perindopril-mpo", "benchsuite.rewards.pmo:PmoPerindoprilMpo")
REWARDS._register_builtin("pmo-amlodipine-mpo", "benchsuite.rewards.pmo:PmoAmlodipineMpo")
REWARDS._register_builtin("pmo-sitagliptin-mpo", "benchsuite.rewards.pmo:PmoSitagliptinMpo")
REWARDS._register_builtin("pmo-zaleplon-mpo", "benchsuite.rewards.pmo:PmoZaleplonMpo")
REWARDS._register_builtin("pmo-deco-hop", "benchsuite.rewards.pmo:PmoDecoHop")
REWARDS._register_builtin("pmo-scaffold-hop", "benchsuite.rewards.pmo:PmoScaffoldHop")
REWARDS._register_builtin("pmo-valsartan-smarts", "benchsuite.rewards.pmo:PmoValsartanSmarts")
REWARDS._register_builtin("pmo-qed", "benchsuite.rewards.pmo:PmoQed")
REWARDS._register_builtin("pmo-isomers-c7h8n2o2-prev", "benchsuite.rewards.pmo:PmoIsomersC7h8n2o2Prev")
REWARDS._register_builtin("pmo-isomers-c9h10n2o2pf2cl-prev", "benchsuite.rewards.pmo:PmoIsomersC9h10n2o2pf2clPrev")
REWARDS._register_builtin("pmo-sitagliptin-mpo-prev", "benchsuite.rewards.pmo:PmoSitagliptinMpoPrev")
REWARDS._register_builtin("pmo-zaleplon-mpo-prev", "benchsuite.rewards.pmo:PmoZaleplonMpoPrev")

METHODS = Registry("method", "benchsuite.methods", "benchsuite.plugin_checks:valid_method")
METHODS._register_builtin("pretrained", "benchsuite.methods.pretrained:Pretrained")
METHODS._register_builtin("ddpo", "benchsuite.methods.ddpo:DDPO")
METHODS._register_builtin("draft", "benchsuite.methods.draft:DRaFT")
METHODS._register_builtin("best-of-n", "benchsuite.methods.best_of_n:BestOfN")
METHODS._register_builtin("bo", "benchsuite.methods.bo:BayesianOptimization")
METHODS._register_builtin("screening", "benchsuite.methods.screening:Screening")
METHODS._register_builtin("sequence-ga", "benchsuite.methods.sequence_ga:SequenceGA")
METHODS._register_builtin("graph-ga", "benchsuite.methods.graph_ga:GraphGA")
METHODS._register_builtin("reinvent", "benchsuite.methods.reinvent:Reinvent")
METHODS._register_builtin("sqdf", "benchsuite.methods.sqdf:SQDF")
METHODS._register_builtin("vard", "benchsuite.methods.vard:VARD")
METHODS._register_builtin("ctrl", "benchsuite.methods.ctrl:ContinuousTimeRL")

BACKBONES = Registry("backbone", "benchsuite.backbones", "benchsuite.plugin_checks:valid_backbone")
BACKBONES._register_builtin("digits", "benchsuite.policies.embedded:digits_policy")
BACKBONES._register_builtin("tiny", "benchsuite.testing:tiny_policy")
# Stable Diffusion + LoRA (GPU users; weights resolved by benchsuite.weights when a run starts, never at import)
BACKBONES._register_builtin("sd", "benchsuite.policies.sd:sd_policy")
# Sequence backbones over one-hot relaxations (V x L); shipped weights in benchsuite/policies/weights
BACKBONES._register_builtin("ehrlich", "benchsuite.policies.sequence:ehrlich_policy")
BACKBONES._register_builtin("selfies", "benchsuite.policies.sequence:selfies_policy")
# SELFIES backbone pretrained on real molecules (ChEMBL drugs and samples; scripts/train_chembl_prior.py)
BACKBONES._register_builtin("selfies-chembl", "benchsuite.policies.sequence:chembl_policy")

REGISTRIES = (METHODS, REWARDS, BACKBONES)

# ---- plugin discovery: once per process, on first use ------------------------------------------------------------
_lock = threading.RLock()
_loaded = False
_task_plugins: list[Plugin] = []
_task_folders: list[Path] | None = None
_task_problems: list[str] = []


def load_plugins() -> None:
    """Read the installed entry points of every ``PLUGIN_GROUPS`` group into the registries, once per process.
    Only metadata is read here; a plugin's code is imported when it is first made."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True  # before reading: a plugin may use the registries while it is imported
        for registry in REGISTRIES:
            registry._add_plugins(_entry_points(registry.group))
        _task_plugins.extend(_entry_points("benchsuite.tasks"))


def _folder_of(obj: Any) -> Path | None:
    """The folder a ``benchsuite.tasks`` entry point names: a package (its folder), a path, or a function of no
    arguments returning one."""
    import types

    if isinstance(obj, types.ModuleType):
        files = getattr(obj, "__path__", None)
        return Path(list(files)[0]) if files else Path(obj.__file__).parent
    if callable(obj) and not isinstance(obj, type):
        obj = obj()
    return Path(obj) if isinstance(obj, str | os.PathLike) else None


def plugin_task_folders() -> list[Path]:
    """The task-card folders of the ``benchsuite.tasks`` plugins that resolve to an existing folder, in entry-point
    order (imported once); the others are in ``plugin_problems``."""
    global _task_folders
    load_plugins()
    with _lock:
        if _task_folders is None:
            folders: list[Path] = []
            for plugin in _task_plugins:
                try:
                    folder = _folder_of(plugin.load())
                    if folder is None or not folder.is_dir():
                        raise PluginError(plugin.problem(
                            "a task-card folder entry point must name a package, a path or a function returning "
                            f"an existing folder, got {folder if folder is not None else 'something else'}"))
                except PluginError as exc:
                    _task_problems.append(str(exc))
                    continue
                folders.append(folder)
            _task_folders = folders
    return list(_task_folders)


def check_plugins() -> list[str]:
    """Import every installed plugin entry point now and return one line per one that cannot be used (empty when
    all load). What ``benchsuite list`` shows; the built-ins and the usable plugins are unaffected."""
    load_plugins()
    for registry in REGISTRIES:
        for name in list(registry._plugins):
            try:
                registry.load(name)
            except PluginError:
                pass
    plugin_task_folders()
    return plugin_problems()


def plugin_problems() -> list[str]:
    """The plugin problems found so far, one line each (``check_plugins`` finds them all)."""
    load_plugins()
    return [line for registry in REGISTRIES for line in registry.broken()] + list(_task_problems)


def check_spawnable(config) -> None:
    """``ConfigError`` if run ``config`` (a ``RunConfig``) needs a method, reward or backbone that was registered in
    this process only: spawned worker processes (``sweep``, ``tune`` with several workers) would not know it."""
    spec = config.task_spec()
    needed = [(METHODS, config.method), (BACKBONES, spec.backbone), (REWARDS, spec.oracle.name),
              *((REWARDS, judge.name) for _, judge in spec.judges)]
    for registry, name in needed:
        if registry.in_process_only(name):
            raise ConfigError(f"{registry.kind} {name!r} is registered in this process only, so worker processes "
                              "cannot see it; use one worker, or install it as a plugin (entry point group "
                              f"{registry.group}; README: Extending benchsuite)")


def plugins() -> list[Plugin]:
    """Every installed entry point of the ``PLUGIN_GROUPS`` groups, usable or not."""
    return [p for group in PLUGIN_GROUPS for p in _entry_points(group)]
