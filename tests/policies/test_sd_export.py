"""A finished Stable Diffusion run exports its LoRA in diffusers' format: ``pipe.load_lora_weights(run_dir)`` (diffusers'
own loader) reproduces the trained UNet, and ``benchsuite.load_run`` reads it back (tiny random SD, offline)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("peft")
pytest.importorskip("transformers")

import benchsuite  # noqa: E402
from benchsuite.export import LORA_FILE, MODEL_FILE  # noqa: E402
from benchsuite.policies.sd_tiny import TINY_RESOLUTION, save_tiny_sd  # noqa: E402

SAMPLER = {"prompts": "three", "num_steps": 3, "eta": 1.0, "guidance_scale": 2.0, "resolution": TINY_RESOLUTION,
           "lora_rank": 2, "mixed_precision": "fp16", "consistency_lora": None}
CARD = """\
id: tiny-sd-export-v0
description: tiny random SD (tests only)
backbone: sd
sampler: {sampler}
oracle: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
judges:
  jpeg: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
primary_judge: jpeg
conditions: {{train: [0, 1], eval: [2]}}
eval: {{samples_per_condition: 2, seed: 3}}
default_budget: 8
"""


@pytest.fixture
def tiny_sd_task(tmp_path_factory, monkeypatch):
    """The tiny SD folder and a task card using it (in a tasks folder of its own)."""
    from benchsuite import tasks

    root = tmp_path_factory.mktemp("sd-export")
    model = save_tiny_sd(root / "tiny-sd", seed=0)
    folder = root / "tasks"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "three.txt").write_text("cat\ndog\nfox\n")
    sampler = {**SAMPLER, "model": str(model)}
    (folder / "tiny-sd-export-v0.yaml").write_text(CARD.format(sampler="{" + ", ".join(
        f"{k}: {'null' if v is None else v}" for k, v in sampler.items()) + "}"))
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(folder))
    tasks._cards.cache_clear()
    yield model
    tasks._cards.cache_clear()


@pytest.mark.slow  # about 20 s on 2 cores: a tiny SD run, its LoRA export and a diffusers reload
def test_finished_sd_run_lora_loads_with_diffusers_and_reproduces_the_trained_unet(tiny_sd_task, tmp_path):
    from diffusers import StableDiffusionPipeline

    result = benchsuite.run("tiny-sd-export-v0", "ddpo", budget=8, batch_size=4, train_batch_size=4, lr=5e-2,
                            eval_fractions=(0.0, 1.0), output_root=str(tmp_path))
    run_dir = result.run_dir
    assert (run_dir / LORA_FILE).is_file() and not (run_dir / MODEL_FILE).exists()

    done = benchsuite.load_run(run_dir)  # the exported file through benchsuite
    assert done.weights == run_dir / LORA_FILE
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, TINY_RESOLUTION // 2, TINY_RESOLUTION // 2, generator=g)
    t = torch.tensor([999, 500, 1])
    unet = done.policy.sd_denoiser.unet
    hidden = done.policy.sd_denoiser.prompt_embeds[[0, 1, 3]]
    with torch.no_grad():
        from_export = unet(x, t, encoder_hidden_states=hidden).sample
        # the trained LoRA as the runner checkpointed it: the reference
        done.policy.load_trainable_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["method"]["policy"])
        trained = unet(x, t, encoder_hidden_states=hidden).sample

        pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_task, safety_checker=None)
        base = pipe.unet(x, t, encoder_hidden_states=hidden).sample
        pipe.load_lora_weights(run_dir)  # diffusers' own loader, given the run folder
        loaded = pipe.unet(x, t, encoder_hidden_states=hidden).sample
    assert (trained - base).abs().max() > 1e-4  # the LoRA moved: the comparisons below can fail
    torch.testing.assert_close(loaded, trained, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(from_export, trained, rtol=1e-5, atol=1e-6)
    # the loaded policy samples what the run's final evaluation judged
    images = done.sample()
    assert images.shape == (2, 3, TINY_RESOLUTION, TINY_RESOLUTION)
    score = done.make_task().judges["jpeg"](images, None).mean().item()
    assert score == pytest.approx(result.final["eval/jpeg_mean"], rel=1e-5)
