"""Every preset in baselines/ names real fields with valid values, for every registered method."""

import dataclasses

import pytest
import yaml

from benchsuite.config import build_method_config, preset_layers
from benchsuite.registry import BACKBONES, METHODS
from benchsuite.tasks import data_dir, task_specs

SPACE_KEYS = {"float": {"low", "high", "log"}, "int": {"low", "high", "log"}, "categorical": {"choices"}}


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_defaults_sections_resolve_for_every_task(method):
    path = data_dir("baselines") / method / "defaults.yaml"
    assert path.exists(), f"{method} has no baselines/{method}/defaults.yaml"
    sections = yaml.safe_load(path.read_text()) or {}
    assert set(sections) <= {"common", *BACKBONES.builtin_names()}, sections.keys()
    for spec in task_specs().values():
        build_method_config(METHODS.load(method).Config, preset_layers(method, spec.backbone, spec.id))


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_search_space_names_real_fields(method):
    path = data_dir("baselines") / method / "search_space.yaml"
    if method == "pretrained":
        assert not path.exists()
        return
    space = yaml.safe_load(path.read_text())
    fields = {f.name for f in dataclasses.fields(METHODS.load(method).Config)}
    entries = [(k, v) for k, v in space.items() if k not in BACKBONES]
    for backbone in set(space) & set(BACKBONES.builtin_names()):  # per-backbone sections hold entries of the same form
        entries += list(space[backbone].items())
    for name, dim in entries:
        assert name in fields, f"{path}: {name} is not a field of {method}'s config"
        assert dim["type"] in SPACE_KEYS and set(dim) - {"type"} <= SPACE_KEYS[dim["type"]], (name, dim)
        if dim["type"] != "categorical":
            assert dim["low"] < dim["high"]


def test_tuned_presets_layer_over_defaults_unless_left_out():
    """A committed tuned preset changes what resolve gives; tuned_presets=False gives the hand-set presets back (what
    scripts/fidelity.py's committed claims were measured with), and the run id differs accordingly."""
    import yaml

    from benchsuite.config import resolve
    from benchsuite.tasks import data_dir

    tuned_file = data_dir("baselines") / "ddpo" / "tuned" / "digits-jpeg-compress-v1.yaml"
    tuned = yaml.safe_load(tuned_file.read_text())
    with_tuned = resolve("digits-jpeg-compress-v1", "ddpo")
    without = resolve("digits-jpeg-compress-v1", "ddpo", tuned_presets=False)
    settings = dict(with_tuned.method_config)
    assert settings["lr"] == tuned["lr"] and settings["clip_range"] == tuned["clip_range"]
    assert dict(without.method_config)["lr"] != tuned["lr"] and without.run_id != with_tuned.run_id
