"""Config coercion (``benchsuite.tasks._coerce``): optional and union field types, the types resolved values keep,
finite and bounded numbers."""

import dataclasses
import typing
from typing import Literal, Optional

import pytest

from benchsuite.config import build_method_config, parse_overrides, resolve
from benchsuite.errors import ConfigError
from benchsuite.methods.base import MethodConfig
from benchsuite.registry import METHODS


@dataclasses.dataclass(frozen=True)
class OptionalConfig(MethodConfig):
    temperature: float | None = None
    """A float that may be left unset."""
    horizon: Optional[int] = None  # noqa: UP045 - the typing spelling must work too
    """An integer that may be left unset."""
    schedule: Literal["linear", "cosine"] | None = None
    """A choice that may be left unset."""
    scale: int | float = 1
    """A number: an int stays an int, anything else numeric becomes a float."""


def _build(**values):
    return build_method_config(OptionalConfig, [("test.yaml", values)])


def test_optional_and_union_fields_resolve():
    """Regression: a ``float | None`` (or ``int | None``, ``Literal[...] | None``) field raised TypeError."""
    cfg = _build(temperature=0.5, horizon=3, schedule="cosine", scale=2)
    assert (cfg.temperature, cfg.horizon, cfg.schedule, cfg.scale) == (0.5, 3, "cosine", 2)
    assert type(cfg.scale) is int and type(_build(scale=2.5).scale) is float
    unset = _build(temperature=None, horizon=None, schedule=None)
    assert (unset.temperature, unset.horizon, unset.schedule) == (None, None, None)
    assert type(_build(temperature=2).temperature) is float  # a number for a float becomes a float
    assert _build(temperature="1e-4").temperature == 1e-4  # YAML 1.1 reads 1e-4 as a string


@pytest.mark.parametrize("values, message", [
    ({"temperature": "warm"}, "test.yaml: temperature must be a number or null, got 'warm'"),
    ({"horizon": 2.5}, "test.yaml: horizon must be an integer or null, got 2.5"),
    ({"horizon": True}, "test.yaml: horizon must be an integer or null, got True"),
    ({"schedule": "step"}, "test.yaml: schedule must be one of ['linear', 'cosine'] or null, got 'step'"),
    ({"scale": None}, "test.yaml: scale must be an integer or a number, got None"),
    ({"temperature": float("inf")}, "test.yaml: temperature must be a finite number, got inf"),
    ({"horizon": 10**12}, "test.yaml: horizon must be at most 10**9 in magnitude"),
])
def test_wrong_values_name_the_field_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError) as info:
        _build(**values)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_resolved_values_keep_the_field_types(method):
    """An int field resolves to an int and a float field to a float, whatever the preset wrote (run ids hash them
    as JSON, where 1 and 1.0 differ)."""
    config_cls = METHODS.load(method).Config
    hints = typing.get_type_hints(config_cls)
    for task in ("toy-brightness-v0", "digits-jpeg-compress-v1", "ehrlich-s32-l32-v1"):
        for name, value in resolve(task, method).method_config:
            if hints[name] in (int, float, bool, str):
                assert type(value) is hints[name], (method, task, name, value)


@pytest.mark.parametrize("text", ["1e400", "-1e400", ".nan", ".inf", "-.inf", "1.0e999"])
def test_non_finite_overrides_are_refused(text):
    """Regression: ``--set method.lr=1e400`` is inf after YAML parsing and was accepted (the run then failed writing
    its JSON files)."""
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        resolve("toy-brightness-v0", "ddpo", overrides=parse_overrides([f"method.lr={text}"]))


@pytest.mark.parametrize("key, text, message", [
    ("sampler.num_steps", "1e400", "sampler.num_steps must be an integer, got '1e400'"),
    ("sampler.eta", ".nan", "sampler.eta must be a finite number, got nan"),
    ("sampler.eta", "-.inf", "sampler.eta must be a finite number, got -inf"),
    ("sampler.num_steps", "10000000000", "sampler.num_steps must be at most 10**9"),
])
def test_task_override_values_are_checked_against_the_backbone(key, text, message):
    """Regression: task overrides reached the backbone unchecked (a TypeError or ValueError traceback at run time)."""
    _, task_overrides = parse_overrides([f"task.{key}={text}"], task=True)
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        resolve("toy-brightness-v0", "pretrained", task_overrides=task_overrides)


def test_task_overrides_keep_their_values_and_run_ids():
    given = resolve("toy-brightness-v0", "pretrained", task_overrides={"sampler.eta": 1})
    assert given.task_overrides == (("sampler.eta", 1),)  # as before: an int stays, so the run id stays
    written = resolve("toy-brightness-v0", "pretrained", task_overrides={"sampler.eta": "5e-1"})
    assert written.task_overrides == (("sampler.eta", 0.5),)  # a YAML 1.1 number string becomes the number


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 10**9 + 1}, "budget must be an integer from 0 to 10\\*\\*9 queries"),
    ({"budget": 2**70}, "budget must be an integer from 0 to 10\\*\\*9 queries"),
    ({"seed": 2**32}, "seed must be an integer from 0 to 2\\*\\*32 - 1"),
])
def test_absurd_budgets_and_seeds_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve("toy-brightness-v0", "pretrained", **kwargs)
