"""Name -> object registries with lazy ``"module:attr"`` entry points (as Gymnasium's registration).

Listing an entry here is all it takes to enroll it in the contract test suites, which iterate the registries.
Heavy modules are imported only when an entry is made.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import UnknownNameError


class Registry:
    """A mapping from names to lazily imported callables (classes or factory functions)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, str | Any] = {}

    def register(self, name: str, entry_point: str | Any) -> None:
        """Register ``entry_point`` (a ``"module:attr"`` string or the object itself) under ``name``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry_point

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def check(self, name: str) -> None:
        """Raise ``UnknownNameError`` (listing the valid names) if ``name`` is not registered."""
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names())

    def load(self, name: str) -> Any:
        """The registered object, importing its module on first use."""
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def make(self, name: str, /, **kwargs: Any) -> Any:
        return self.load(name)(**kwargs)


REWARDS = Registry("reward")
REWARDS.register("jpeg-compressibility", "benchsuite.rewards.jpeg:JpegCompressibility")
REWARDS.register("jpeg-incompressibility", "benchsuite.rewards.jpeg:JpegIncompressibility")
REWARDS.register("digit-class-probability", "benchsuite.rewards.digit_classifier:DigitClassProbability")
REWARDS.register("digit-target-proxy", "benchsuite.rewards.digit_classifier:DigitTargetProxy")
REWARDS.register("digit-target-gold", "benchsuite.rewards.digit_classifier:DigitTargetGold")
REWARDS.register("mean-brightness", "benchsuite.testing:MeanBrightness")
# CLIP-based rewards: open_clip is imported when one is made, not here; weights via benchsuite.weights
REWARDS.register("laion-aesthetic", "benchsuite.rewards.aesthetic:LaionAesthetic")
REWARDS.register("hpsv2", "benchsuite.rewards.hps:HPSv2")
REWARDS.register("hpsv2.1", "benchsuite.rewards.hps:HPSv21")
# Sequence (molecule-like) black-box oracles: B x V x L token probabilities in, argmax inside
REWARDS.register("ehrlich", "benchsuite.rewards.ehrlich:Ehrlich")
REWARDS.register("ehrlich-feasibility", "benchsuite.rewards.ehrlich:EhrlichFeasibility")
REWARDS.register("selfies-qed", "benchsuite.rewards.molecules:SelfiesQED")
REWARDS.register("selfies-sa", "benchsuite.rewards.molecules:SelfiesSA")

METHODS = Registry("method")
METHODS.register("pretrained", "benchsuite.methods.pretrained:Pretrained")
METHODS.register("ddpo", "benchsuite.methods.ddpo:DDPO")
METHODS.register("draft", "benchsuite.methods.draft:DRaFT")
METHODS.register("best-of-n", "benchsuite.methods.best_of_n:BestOfN")
METHODS.register("bo", "benchsuite.methods.bo:BayesianOptimization")
METHODS.register("sqdf", "benchsuite.methods.sqdf:SQDF")
METHODS.register("vard", "benchsuite.methods.vard:VARD")
METHODS.register("ctrl", "benchsuite.methods.ctrl:ContinuousTimeRL")

BACKBONES = Registry("backbone")
BACKBONES.register("digits", "benchsuite.policies.embedded:digits_policy")
BACKBONES.register("tiny", "benchsuite.testing:tiny_policy")
# Stable Diffusion + LoRA (GPU users; weights resolved by benchsuite.weights when a run starts, never at import)
BACKBONES.register("sd", "benchsuite.policies.sd:sd_policy")
# Sequence backbones over one-hot relaxations (V x L); shipped weights in benchsuite/policies/weights
BACKBONES.register("ehrlich", "benchsuite.policies.sequence:ehrlich_policy")
BACKBONES.register("selfies", "benchsuite.policies.sequence:selfies_policy")
