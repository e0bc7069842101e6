"""The shipped digits backbone: file provenance, sample quality, loading errors and the data loader."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from benchsuite.errors import MissingWeightsError
from benchsuite.policies.digits import (
    DIGITS_SCHEDULER_CONFIG,
    DIGITS_UNET_CONFIG,
    NULL_CLASS,
    NUM_CLASSES,
    TRAIN_CONFIG,
    WEIGHTS_PATH,
    build_digits_unet,
    config_to_json,
    load_digits_images,
    load_digits_unet,
)
from benchsuite.rewards.digit_classifier import predict_digits

torch.set_num_threads(1)

SAMPLES_PER_CLASS = 32
SAMPLING_STEPS = 20
MIN_CLASS_ACCURACY = 0.8


def _metadata_config(metadata: dict[str, str], key: str) -> dict:
    return json.loads(metadata[key])


def test_shipped_weights_match_the_configs_of_the_module():
    assert WEIGHTS_PATH.is_file(), f"missing {WEIGHTS_PATH}; run python scripts/train_digits_backbone.py"
    assert WEIGHTS_PATH.stat().st_size < 5 * 2**20
    with safe_open(str(WEIGHTS_PATH), framework="pt") as f:
        metadata = f.metadata()
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert _metadata_config(metadata, "unet_config") == json.loads(config_to_json(DIGITS_UNET_CONFIG))
    assert _metadata_config(metadata, "scheduler_config") == json.loads(config_to_json(DIGITS_SCHEDULER_CONFIG))
    assert _metadata_config(metadata, "train_config") == json.loads(config_to_json(TRAIN_CONFIG))
    assert 0 < json.loads(metadata["final_loss"]) < 1
    expected = {k: tuple(v.shape) for k, v in build_digits_unet().state_dict().items()}
    assert shapes == expected


@pytest.fixture(scope="module")
def unet():
    return load_digits_unet()


def _ddim_sample(model, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """DDIM samples (``SAMPLING_STEPS`` steps, eta=1) for ``labels``, as ``B x 1 x 8 x 8`` images in [0, 1]."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**DIGITS_SCHEDULER_CONFIG, set_alpha_to_one=False)
    scheduler.set_timesteps(SAMPLING_STEPS)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 1, 8, 8, generator=gen)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x, eta=1.0, generator=gen).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def test_samples_are_recognised_as_their_class(unet):
    labels = torch.arange(NUM_CLASSES).repeat_interleave(SAMPLES_PER_CLASS)
    predicted = predict_digits(_ddim_sample(unet, labels, seed=1234))
    accuracy = {k: (predicted[labels == k] == k).float().mean().item() for k in range(NUM_CLASSES)}
    print("per-class accuracy:", {k: round(a, 3) for k, a in accuracy.items()})
    failing = {k: a for k, a in accuracy.items() if a < MIN_CLASS_ACCURACY}
    assert not failing, f"classes below {MIN_CLASS_ACCURACY:.0%} accuracy: {failing}"


def test_unconditional_samples_cover_most_digits(unet):
    images = _ddim_sample(unet, torch.full((100,), NULL_CLASS), seed=99)
    counts = torch.bincount(predict_digits(images), minlength=NUM_CLASSES)
    print("unconditional digit counts:", counts.tolist())
    assert (counts > 0).sum() >= 8, f"unconditional samples collapse onto few digits: {counts.tolist()}"


def test_loaded_model_is_in_eval_mode_and_matches_the_file(unet):
    assert not unet.training
    stored = load_file(str(WEIGHTS_PATH))
    for k, v in unet.state_dict().items():
        assert torch.equal(v, stored[k]), k


def test_missing_weights_name_the_path_and_the_script(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(MissingWeightsError) as info:
        load_digits_unet(path)
    message = str(info.value)
    assert str(path) in message and "scripts/train_digits_backbone.py" in message
    assert "\n" not in message


def test_weights_with_another_model_config_are_refused_as_stale(tmp_path):
    path = tmp_path / "stale.safetensors"
    other = dict(DIGITS_UNET_CONFIG, block_out_channels=(16, 32))
    save_file({"w": torch.zeros(1)}, str(path), metadata={"unet_config": config_to_json(other)})
    with pytest.raises(MissingWeightsError, match="stale"):
        load_digits_unet(path)


def test_load_digits_images_shapes_and_ranges():
    images, labels = load_digits_images()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert labels.min().item() == 0 and labels.max().item() == NUM_CLASSES - 1
    assert torch.bincount(labels).min().item() > 150
