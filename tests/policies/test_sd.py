"""The ``sd`` backbone on a tiny random Stable Diffusion saved as a diffusers folder and loaded back (offline).

Checks the real loading code, the latent/decoder/guidance math, LoRA training rules, the adapter-disabled frozen
reference, checkpoints of LoRA weights only, the missing-weights errors, and every registered method end to end
through the runner on a tiny-SD task card.
"""

from __future__ import annotations

import dataclasses
import io
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchsuite.errors import MissingWeightsError  # noqa: E402
from benchsuite.policies.sd import SDPolicy, sd_policy  # noqa: E402
from benchsuite.policies.sd_tiny import TINY_RESOLUTION, TINY_TEXT_LENGTH, save_tiny_sd  # noqa: E402

PROMPTS = ("cat", "dog", "fox", "ant", "horse", "owl")  # the tiny prompt list "tiny-animals" of the task card


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory):
    """A tasks folder holding the prompt list, and the tiny SD folder."""
    root = tmp_path_factory.mktemp("sd")
    tasks = root / "tasks"
    (tasks / "prompts").mkdir(parents=True)
    (tasks / "prompts" / "tiny-animals.txt").write_text("# test prompts\n" + "\n".join(PROMPTS) + "\n")
    return tasks, save_tiny_sd(root / "tiny-sd", seed=0), save_tiny_lcm_lora(root / "tiny-lcm", seed=1)


def save_tiny_lcm_lora(folder, seed):
    """A random LoRA for the tiny UNet in diffusers' LoRA file format (written by diffusers' own save function), on
    the attention projections and on modules the trained adapter leaves alone (the feed-forward), as LCM-LoRA has.
    Returns the file."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from benchsuite.policies.sd_tiny import TINY_UNET_CONFIG

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
        unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.2"]))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture
def tasks_dir(sd_dirs, monkeypatch):
    from benchsuite import tasks

    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(sd_dirs[0]))
    tasks._cards.cache_clear()
    yield sd_dirs[0]
    tasks._cards.cache_clear()


def make_policy(sd_dirs, monkeypatch, **kwargs) -> SDPolicy:
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(sd_dirs[0]))
    args = dict(model=str(sd_dirs[1]), prompts="tiny-animals", num_steps=3, guidance_scale=3.0,
                resolution=TINY_RESOLUTION, lora_rank=2)
    return sd_policy(**{**args, **kwargs})


def perturb_lora(policy: SDPolicy, seed: int, scale: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_state_dict().values():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def base_unet(sd_dirs):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(sd_dirs[1], subfolder="unet").eval()


def test_latent_space_sampler_and_decoder(sd_dirs, monkeypatch):
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.from_pretrained(sd_dirs[1], safety_checker=None)  # the folder has SD's layout
    policy = make_policy(sd_dirs, monkeypatch, mixed_precision="fp16")  # fp16 applies on CUDA only
    assert policy.sample_shape == (4, TINY_RESOLUTION // 2, TINY_RESOLUTION // 2)  # the tiny VAE halves
    assert policy.null_condition == len(PROMPTS) and policy.prompts == PROMPTS
    assert policy.sd_denoiser.prompt_embeds.shape == (len(PROMPTS) + 1, TINY_TEXT_LENGTH, 16)
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # CPU: fp32 whatever the setting
    # SD's own schedule: leading spacing with steps_offset 1 ends at t = 1, so every step keeps a positive std
    assert policy.timesteps.tolist() == [667, 334, 1] and bool((policy.stds > 0).all())
    traj, _ = policy.rollout(torch.tensor([0, 5, 2]), torch.Generator().manual_seed(0))
    assert traj.latents.shape == (3, 4, 4, 8, 8) and traj.log_probs.shape == (3, 3)
    assert torch.isfinite(traj.log_probs).all()
    assert policy.nfe == 3 * 3 * 2  # chains x steps x 2 (guidance)
    images = policy.decode(traj.x0)
    assert images.shape == (3, 3, TINY_RESOLUTION, TINY_RESOLUTION)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0


def test_decoder_is_the_vae_and_differentiable(sd_dirs, monkeypatch):
    from diffusers import AutoencoderKL

    policy = make_policy(sd_dirs, monkeypatch)
    vae = AutoencoderKL.from_pretrained(sd_dirs[1], subfolder="vae")
    z = (0.3 * torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    images = policy.decode(z)
    with torch.no_grad():
        expected = (vae.decode(z / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(images, expected)
    images.mean().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in policy.decoder.parameters())


def test_guidance_against_hand_computation(sd_dirs, monkeypatch):
    from transformers import CLIPTextModel, CLIPTokenizer

    w = 3.0
    policy = make_policy(sd_dirs, monkeypatch, guidance_scale=w)
    tokenizer = CLIPTokenizer.from_pretrained(sd_dirs[1], subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd_dirs[1], subfolder="text_encoder")
    unet = base_unet(sd_dirs)
    ids = tokenizer(["fox", ""], padding="max_length", max_length=TINY_TEXT_LENGTH, return_tensors="pt").input_ids
    with torch.no_grad():
        fox, empty = encoder(ids)[0].chunk(2)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
        t = policy.timesteps[1].view(1)
        eps_c = unet(x, t, encoder_hidden_states=fox).sample
        eps_u = unet(x, t, encoder_hidden_states=empty).sample
        ours = policy.eps(x, 1, torch.tensor([PROMPTS.index("fox")]))
    torch.testing.assert_close(ours, eps_u + w * (eps_c - eps_u), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # cond=None is the empty prompt
        torch.testing.assert_close(policy.denoiser(x, t, None), eps_u, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="condition ids"):
        policy.denoiser(x, t, torch.tensor([len(PROMPTS) + 1]))
    policy.sd_denoiser.no_grad_chunk = 1  # chunked no-grad forwards give the same numbers
    with torch.no_grad():
        torch.testing.assert_close(policy.eps(x, 1, torch.tensor([PROMPTS.index("fox")])), ours)


def test_lora_only_trainable_and_reference_is_the_base_model(sd_dirs, monkeypatch):
    policy = make_policy(sd_dirs, monkeypatch)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable)
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert targets == {"to_q", "to_k", "to_v", "0"}  # to_out.0
    ref = policy.frozen_copy()
    assert not any(p.requires_grad for p in ref.parameters())
    n_unet = sum(p.numel() for p in policy.sd_denoiser.unet.parameters())
    assert sum(p.numel() for p in ref.parameters()) == 0  # no second UNet: the reference shares the live one

    unet = base_unet(sd_dirs)
    conds = torch.tensor([0, 3])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    embeds = policy.sd_denoiser.prompt_embeds[conds]
    t = policy.timesteps[0].expand(2)
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=embeds).sample
    _, kl = policy.rollout(conds, torch.Generator().manual_seed(4), reference=ref)
    assert torch.equal(kl, torch.zeros_like(kl))  # LoRA starts as the identity

    perturb_lora(policy, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ref.denoiser(x, t, conds), base)  # the reference stays the pretrained UNet
        assert not torch.allclose(policy.denoiser(x, t, conds), base)
    _, kl = policy.rollout(conds, torch.Generator().manual_seed(4), reference=ref)
    assert (kl > 0).all()

    # DRaFT's pattern: policy forward, reference forward, one backward; flags and gradients survive the switch
    mean, _ = policy.step_mean(x, 1, conds)
    ref_mean, _ = ref.step_mean(x, 1, conds)
    ((mean - ref_mean) ** 2).mean().backward()
    assert [n for n, p in policy.named_parameters() if p.requires_grad] == trainable
    grads = [p.grad for n, p in policy.named_parameters() if p.requires_grad]
    assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    assert all(p.grad is None for p in policy.sd_denoiser.unet.parameters() if not p.requires_grad)
    assert ref.nfe == policy.nfe and sum(p.numel() for p in policy.sd_denoiser.unet.parameters()) == n_unet


def test_trainable_state_dict_round_trip(sd_dirs, monkeypatch):
    a, b = make_policy(sd_dirs, monkeypatch), make_policy(sd_dirs, monkeypatch)
    perturb_lora(a, seed=6)
    state = a.trainable_state_dict()
    assert state and all("lora_A" in k or "lora_B" in k for k in state)
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in a.parameters() if p.requires_grad)
    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in state.items()}, buffer)
    buffer.seek(0)
    params_before = [p for p in b.parameters() if p.requires_grad]
    b.load_trainable_state_dict(torch.load(buffer, weights_only=True))
    assert [p for p in b.parameters() if p.requires_grad] == params_before  # in place: optimizers stay valid
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(a.eps(x, 0, torch.tensor([1, 2])), b.eps(x, 0, torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="LoRA state does not match"):
        b.load_trainable_state_dict({k + ".x": v for k, v in state.items()})
    with pytest.raises(ValueError, match="LoRA state does not match"):  # another rank
        make_policy(sd_dirs, monkeypatch, lora_rank=3).load_trainable_state_dict(state)


def test_frozen_copies_of_a_trained_policy_are_snapshots(sd_dirs, monkeypatch):
    """ctrl keeps the sampling policy as ``old = frozen_copy()`` and refreshes it with
    ``old.denoiser.load_state_dict(policy.denoiser.state_dict())``: that must freeze the current LoRA weights."""
    policy = make_policy(sd_dirs, monkeypatch)
    ref, old = policy.frozen_copy(), policy.frozen_copy()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    conds = torch.tensor([0, 4])

    def eps(p):
        with torch.no_grad():
            return p.eps(x, 1, conds)

    base = eps(ref)
    perturb_lora(policy, seed=9)
    old.denoiser.load_state_dict(policy.denoiser.state_dict())
    snapshot = eps(policy)
    torch.testing.assert_close(eps(old), snapshot)
    copy = policy.frozen_copy()  # a frozen copy of a trained policy holds its weights too
    torch.testing.assert_close(eps(copy), snapshot)
    perturb_lora(policy, seed=10)
    assert not torch.allclose(eps(policy), snapshot)
    torch.testing.assert_close(eps(old), snapshot)
    torch.testing.assert_close(eps(copy), snapshot)
    torch.testing.assert_close(eps(ref), base)
    torch.testing.assert_close(eps(copy.frozen_copy()), snapshot)
    assert [n for n, p in policy.named_parameters() if p.requires_grad] == [
        n for n, _ in policy.named_parameters() if ".default." in n]


def test_both_sd15_hub_ids_name_the_one_catalog_folder(tmp_path, sd_dirs, monkeypatch):
    """runwayml/stable-diffusion-v1-5 (what most SD 1.5 code names) and its maintained copy's id are aliases: one
    local folder, the catalog's, whichever a card or --set names."""
    import shutil

    from benchsuite.policies.sd import SD15_IDS, resolve_model
    from benchsuite.weights import STABLE_DIFFUSION_V1_5

    monkeypatch.delenv("BENCHSUITE_SD_MODEL", raising=False)
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    folder = tmp_path / "weights" / STABLE_DIFFUSION_V1_5.filename
    shutil.copytree(sd_dirs[1], folder)
    assert SD15_IDS == ("runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert [resolve_model(model, allow_download=False) for model in SD15_IDS] == [folder, folder]
    policies = [make_policy(sd_dirs, monkeypatch, model=model) for model in SD15_IDS]
    assert all(p.sample_shape == (4, 8, 8) for p in policies)


def test_missing_weights_errors_say_what_to_do(tmp_path, sd_dirs, monkeypatch):
    monkeypatch.delenv("BENCHSUITE_SD_MODEL", raising=False)
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError) as info:
        make_policy(sd_dirs, monkeypatch, model=str(tmp_path / "nope"))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nope") in message
    assert "BENCHSUITE_SD_MODEL" in message and "BENCHSUITE_ALLOW_DOWNLOADS=1" in message
    with pytest.raises(MissingWeightsError) as info:  # the default hub id, downloads off: nothing is fetched
        make_policy(sd_dirs, monkeypatch, model="runwayml/stable-diffusion-v1-5")
    message = str(info.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message and str(tmp_path / "weights") in message
    assert not (tmp_path / "weights").exists()
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(MissingWeightsError, match="not a diffusers Stable Diffusion folder"):
        make_policy(sd_dirs, monkeypatch, model=str(tmp_path / "partial"))
    # $BENCHSUITE_SD_MODEL serves a hub id
    monkeypatch.setenv("BENCHSUITE_SD_MODEL", str(sd_dirs[1]))
    assert make_policy(sd_dirs, monkeypatch, model="runwayml/stable-diffusion-v1-5").sample_shape == (4, 8, 8)


def test_cli_run_on_a_real_sd_card_without_weights_is_one_line(tmp_path, monkeypatch, capsys):
    import shutil

    from benchsuite import tasks
    from benchsuite.cli import main

    real = tasks.data_dir("tasks")
    (tmp_path / "tasks" / "prompts").mkdir(parents=True)  # the four SD cards as shipped, with their prompt list
    for card in real.glob("sd15-*.yaml"):
        shutil.copy(card, tmp_path / "tasks")
    shutil.copy(real / "prompts" / "animals.txt", tmp_path / "tasks" / "prompts")
    monkeypatch.delenv("BENCHSUITE_SD_MODEL", raising=False)
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path / "tasks"))
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    tasks._cards.cache_clear()
    assert main(["list", "tasks"]) == 0  # cards are parsed, no model is built
    listed = capsys.readouterr().out
    assert all(f"sd15-{name}-v0" in listed for name in ("aesthetic", "hps", "jpeg-compress", "jpeg-incompress"))
    spec = tasks.load_spec("sd15-hps-v0")
    assert spec.train_conditions == tuple(range(45)) and spec.eval_conditions == tuple(range(45, 60))
    code = main(["run", "--task", "sd15-jpeg-compress-v0", "--method", "pretrained", "--budget", "0",
                 "--output", str(tmp_path / "out"), "--no-mlflow", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("benchsuite: error: ") and "\n" not in err and "Stable Diffusion" in err
    assert not (tmp_path / "out").exists()
    tasks._cards.cache_clear()


# ---- every registered method through the runner on a tiny-SD task ---------------------------------------------
CARD = """\
id: tiny-sd-jpeg-v0
description: tiny random SD (tests only)
backbone: sd
sampler: {{model: "{model}", prompts: tiny-animals, num_steps: 3, eta: 1.0, guidance_scale: 2.0,
          resolution: {res}, lora_rank: 2, mixed_precision: fp16, consistency_lora: "{lcm}"}}
oracle: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
judges:
  jpeg: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
primary_judge: jpeg
conditions:
  train: [0, 1, 2, 3]
  eval: [4, 5]
eval: {{samples_per_condition: 2, seed: 3}}
default_budget: 8
"""
SMALL = {"batch_size": 4, "train_batch_size": 4, "lr": 1e-2, "surrogate_fit_steps": 5, "value_steps": 5,
         "value_warmup_steps": 5, "value_batch": 8, "value_width": 8, "keep_per_condition": 2, "pool_size": 16,
         "initial_queries": 4, "feature_dim": 4, "reward_shift": "rank"}


def _methods():
    """Every built-in method that runs on images (a method whose contract names a card of its own kind of samples,
    such as the sequence and molecule GAs, refuses an image task in one line: its own tests check that)."""
    from benchsuite.registry import METHODS

    return [m for m in METHODS.builtin_names() if getattr(METHODS.load(m), "contract_task", None) is None]


# the methods that fine-tune nothing (2 s each) keep the SD path in the default tier; the fine-tuners (10-20 s each
# on 2 cores) run in the slow tier
FAST_ON_SD = ("best-of-n", "bo", "pretrained")


@pytest.mark.parametrize("method", [pytest.param(m, marks=() if m in FAST_ON_SD else pytest.mark.slow)
                                    for m in _methods()])
def test_every_method_runs_end_to_end_on_tiny_sd(method, sd_dirs, tasks_dir, tmp_path):
    from benchsuite.config import resolve
    from benchsuite.registry import METHODS
    from benchsuite.runner import run

    (tasks_dir / "tiny-sd-jpeg-v0.yaml").write_text(CARD.format(model=sd_dirs[1], res=TINY_RESOLUTION,
                                                                lcm=sd_dirs[2]))
    cls = METHODS.load(method)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = {k: v for k, v in SMALL.items() if k in fields}
    write = method == "ddpo"  # one run through the checkpoint path
    cfg = resolve("tiny-sd-jpeg-v0", method, seed=0, budget=8, overrides=overrides, eval_fractions=(0.0, 1.0),
                  output_root=str(tmp_path))
    result = run(cfg, write=write)
    assert len(result.query_log) == 8
    assert result.curve[0]["eval/kl"] == 0.0
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.final.items() if k.startswith("eval/"))
    if cls.trains_policy and method != "pretrained":
        assert result.final["eval/kl"] > 0  # the LoRA weights moved
    if write:
        state = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)
        policy_state = state["method"]["policy"]
        assert policy_state and all("lora_" in k for k in policy_state)  # a checkpoint holds LoRA weights only


def test_lcm_lora_is_a_frozen_x0_predictor_loaded_by_diffusers(sd_dirs, monkeypatch):
    """SQDF's x0 predictor on SD: LCM-LoRA loaded through diffusers' own loader as a frozen extra adapter. Sampling
    is unchanged by it; its prediction is one LCMScheduler-style step of the UNet with that LoRA alone, checked
    against a separate UNet that loads the same file with ``load_lora_adapter``."""
    from benchsuite.policies.consistency import boundary_scalings

    policy = make_policy(sd_dirs, monkeypatch, consistency_lora=str(sd_dirs[2]))
    perturb_lora(policy, seed=4)  # a trained adapter, which the predictor must not use
    conds = torch.tensor([0, 1, 2])
    before, _ = policy.rollout(conds, torch.Generator().manual_seed(0))
    assert policy.x0_predictor is None  # nothing is loaded until asked for
    predictor = policy.resolve_x0_predictor()
    after, _ = policy.rollout(conds, torch.Generator().manual_seed(0))
    torch.testing.assert_close(after.latents, before.latents)
    assert not any(p.requires_grad for n, p in policy.named_parameters() if ".lcm." in n)
    assert all(p.requires_grad for n, p in policy.named_parameters() if ".default." in n)

    x = before.latents[:, 1].clone().requires_grad_(True)
    state = torch.full((3,), 1, dtype=torch.int64)
    x0 = policy.consistency_x0(x, state, conds)
    x0.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable in the state

    unet = base_unet(sd_dirs)
    unet.load_lora_adapter(str(sd_dirs[2]), prefix="unet")
    t = policy.timesteps[state]
    hidden = policy.sd_denoiser.prompt_embeds[conds]
    with torch.no_grad():
        eps = unet(x.detach(), t, encoder_hidden_states=hidden).sample
        a = predictor.alphas_cumprod[t].view(-1, 1, 1, 1)
        c_skip, c_out = boundary_scalings(t, 0.5, 10.0)
        want = c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * (x - (1 - a).sqrt() * eps) / a.sqrt()
    torch.testing.assert_close(x0.detach(), want, rtol=1e-4, atol=1e-5)
    # the final state is its own prediction
    last = torch.full((3,), policy.num_steps, dtype=torch.int64)
    torch.testing.assert_close(policy.consistency_x0(before.x0, last, conds), before.x0)


def test_missing_lcm_lora_says_what_to_do(sd_dirs, monkeypatch, tmp_path):
    from benchsuite.errors import ConfigError, MissingWeightsError
    from benchsuite.methods.sqdf import SQDF
    from benchsuite.tasks import TaskInfo

    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv("BENCHSUITE_LCM_LORA", raising=False)
    monkeypatch.delenv("BENCHSUITE_ALLOW_DOWNLOADS", raising=False)
    policy = make_policy(sd_dirs, monkeypatch)  # the default: latent-consistency/lcm-lora-sdv1-5
    with pytest.raises(MissingWeightsError, match="BENCHSUITE_LCM_LORA"):
        policy.resolve_x0_predictor()
    info = TaskInfo("t", torch.tensor([0, 1]), oracle_differentiable=True)
    with pytest.raises(MissingWeightsError):  # SQDF's default asks for it: an error, never a silent fallback
        SQDF(SQDF.Config()).setup(policy, info, torch.Generator().manual_seed(0))
    method = SQDF(SQDF.Config(predictor="tweedie"))  # the way out the error does not need
    method.setup(make_policy(sd_dirs, monkeypatch, consistency_lora=None), info, torch.Generator().manual_seed(0))
    assert method.predictor == "tweedie"
    with pytest.raises(ConfigError, match="no consistency model"):
        SQDF(SQDF.Config(predictor="consistency")).setup(make_policy(sd_dirs, monkeypatch, consistency_lora=None),
                                                         info, torch.Generator().manual_seed(0))


def test_precision_rule_half_base_weights_fp32_lora(sd_dirs, monkeypatch):
    policy = make_policy(sd_dirs, monkeypatch, mixed_precision="bf16")
    params = list(policy.parameters())
    policy.sd_denoiser.set_precision(torch.bfloat16)  # what a move to CUDA does (autocast then runs the forward)
    policy.decoder.set_precision(torch.bfloat16)
    for name, p in policy.named_parameters():
        assert p.dtype == (torch.float32 if "lora_" in name else torch.bfloat16), name
    assert policy.sd_denoiser.autocast_dtype == torch.bfloat16
    policy.to("cpu")  # on the CPU everything is fp32 again, in place
    assert all(p.dtype == torch.float32 for p in policy.parameters()) and list(policy.parameters()) == params
    assert policy.sd_denoiser.autocast_dtype is None and policy.decoder.autocast_dtype is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_policy_samples_and_trains(sd_dirs, monkeypatch):
    policy = make_policy(sd_dirs, monkeypatch, mixed_precision="fp16").to("cuda")
    for name, p in policy.named_parameters():
        assert p.dtype == (torch.float32 if "lora_" in name else torch.float16), name
    ref = policy.frozen_copy()
    conds = torch.tensor([0, 1, 2, 3])
    traj, kl = policy.rollout(conds, torch.Generator().manual_seed(0), reference=ref)
    assert traj.latents.is_cuda and torch.isfinite(traj.log_probs).all() and torch.equal(kl, torch.zeros_like(kl))
    images = policy.decode(traj.x0)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    mean, _ = policy.step_mean(traj.latents[:, 1], 1, conds.cuda())
    policy.decode(mean).mean().backward()
    grads = [p.grad for p in policy.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_bench_sd_sampling_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_sd_sampling.py"
    spec = importlib.util.spec_from_file_location("bench_sd_sampling", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--tiny", "--device", "cpu", "--batch", "2", "--steps", "2", "--repeats", "1"])
    table = capsys.readouterr().out
    for row in ("rollout, ours", "rollout, plain loop", "ddpo step", "sqdf step", "draft step"):
        assert f"| {row}" in table
