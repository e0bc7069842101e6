"""The type checks of plugin objects, one per registry (``registry.Registry(validate=...)``): what is wrong with a
plugin's method, reward or backbone (a short phrase), or None. The registry names these by ``"module:attr"`` and
imports this module when it loads the first plugin: the checks need the base classes, which sit above the registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .methods.base import Method, MethodConfig
from .rewards.base import Reward


def _named_subclass(base: type, kind: str, name: str, obj: Any) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return f"a {kind} must be a subclass of {base.__module__}.{base.__qualname__}, got {obj!r}"
    if getattr(obj, "name", None) != name:
        return f"its class attribute name is {getattr(obj, 'name', None)!r}, not the entry point's name {name!r}"
    if getattr(obj, "__abstractmethods__", None):
        return f"{obj.__qualname__} does not implement {', '.join(sorted(obj.__abstractmethods__))}"
    return None


def valid_method(name: str, obj: Any) -> str | None:
    wrong = _named_subclass(Method, "method", name, obj)
    if wrong is None and not (dataclasses.is_dataclass(obj.Config) and issubclass(obj.Config, MethodConfig)):
        wrong = "its Config must be a frozen dataclass subclassing benchsuite.methods.base.MethodConfig"
    return wrong


def valid_reward(name: str, obj: Any) -> str | None:
    if isinstance(obj, type) or not callable(obj):
        return _named_subclass(Reward, "reward", name, obj)
    return None  # a factory function: checked by check_reward when it is called


def valid_backbone(name: str, obj: Any) -> str | None:
    return None if callable(obj) else f"a backbone must be a factory returning a DiffusionPolicy, got {obj!r}"
