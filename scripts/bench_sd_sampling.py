"""Stable Diffusion cost on a GPU: sampling throughput of our policy against a plain loop, and one training step
of DDPO, SQDF and DRaFT-1 (time and peak memory). Prints a markdown table.

The models have SD 1.5's architecture (the UNet and VAE configs of the SD 1.5 repository, written out below since
there is no model hub here) with random weights: speed and memory do not depend on the weights. Prompt
embeddings are random ``77 x 768`` tensors (the text encoder runs once at load time and is not timed).

Rows:
  rollout, ours       ``SDPolicy.rollout`` (per-step mean, std, log-prob kept for every chain) + VAE decode;
  rollout, plain      the same sampler as a straightforward loop in the style of kvablack/ddpo-pytorch's
                      ``pipeline_with_logprob`` (latents in the model dtype, CFG by a doubled batch, a DDIM step
                      that also returns the log-prob), written here; same UNet (with its LoRA), same batch;
  ddpo / sqdf / draft one ``step`` of our methods on a JPEG-compressibility oracle (sampling included; SQDF and
                      DRaFT fit their surrogate reward), after one warm-up step.

    python scripts/bench_sd_sampling.py                    # GPU: 512 px, 50 steps, fp16, batch 8
    python scripts/bench_sd_sampling.py --tiny --device cpu  # seconds-long smoke test with a tiny model
"""

from __future__ import annotations

import argparse
import math
import time

import torch

SD15_UNET_CONFIG = {  # unet/config.json of SD 1.5
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}
SD15_VAE_CONFIG = {  # vae/config.json of SD 1.5
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.18215,
}
NUM_PROMPTS = 8


def build_policy(args):
    """An ``SDPolicy`` over random-weight SD 1.5 (or tiny) modules, on ``args.device``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from benchsuite.policies.sd import SDPolicy
    from benchsuite.policies.sd_tiny import SD15_SCHEDULER_CONFIG, TINY_TEXT_LENGTH, TINY_UNET_CONFIG, TINY_VAE_CONFIG

    torch.manual_seed(0)
    unet_cfg, vae_cfg = (TINY_UNET_CONFIG, TINY_VAE_CONFIG) if args.tiny else (SD15_UNET_CONFIG, SD15_VAE_CONFIG)
    unet, vae = UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg)
    length = TINY_TEXT_LENGTH if args.tiny else 77
    embeds = 0.5 * torch.randn(NUM_PROMPTS + 1, length, unet_cfg["cross_attention_dim"])
    prompts = [f"p{i}" for i in range(NUM_PROMPTS)]
    policy = SDPolicy(unet.eval(), vae.eval(), embeds, SD15_SCHEDULER_CONFIG, prompts=prompts,
                      resolution=args.resolution, num_steps=args.steps, eta=1.0, guidance_scale=5.0, lora_rank=4,
                      mixed_precision=args.precision)
    return policy.to(args.device)


def ddim_step_with_log_prob(scheduler, eps, t, x, eta, generator):
    """One DDIM step (Song et al. 2021, eq. 12) from timestep ``t`` that also returns log p(x_prev | x), in the
    manner of ddpo-pytorch's ``ddim_step_with_logprob``; written here for the baseline loop."""
    num_train = scheduler.config.num_train_timesteps
    prev_t = t - num_train // scheduler.num_inference_steps
    acp = scheduler.alphas_cumprod.to(x.device)
    a = acp[t]
    a_prev = acp[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod.to(x.device)
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    std = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
    x_prev = mean + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    log_prob = (-((x_prev.float() - mean.float()) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi))
    return x_prev, log_prob.flatten(1).mean(1)


@torch.no_grad()
def plain_rollout(policy, conds, generator, dtype):
    """The baseline loop: a diffusers pipeline-like sampler with log-probs, no policy abstraction."""
    from diffusers import DDIMScheduler

    den, vae = policy.sd_denoiser, policy.decoder.vae
    device = policy.stds.device
    scheduler = DDIMScheduler.from_config({**policy._sampler["scheduler_config"], "set_alpha_to_one": False})
    scheduler.set_timesteps(policy.num_steps)
    embeds = den.prompt_embeds.to(dtype)
    hidden = torch.cat([embeds[torch.full_like(conds, den.null_condition)], embeds[conds]])
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32 and device.type == "cuda")
    latents = torch.randn((len(conds), *policy.sample_shape), generator=generator, device=device, dtype=dtype)
    all_latents, log_probs = [latents], []
    with autocast:
        for t in scheduler.timesteps:
            eps_u, eps_c = den.unet(torch.cat([latents, latents]), t, encoder_hidden_states=hidden).sample.chunk(2)
            eps = eps_u + policy.guidance_scale * (eps_c - eps_u)
            latents, log_prob = ddim_step_with_log_prob(scheduler, eps, int(t), latents, policy.eta, generator)
            all_latents.append(latents)
            log_probs.append(log_prob)
        images = vae.decode(latents / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1), torch.stack(all_latents, 1), torch.stack(log_probs, 1)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device, repeats: int = 1) -> tuple[float, float | None]:
    """Seconds per call (after one warm-up call) and peak CUDA memory in MiB over the timed calls."""
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, peak


def method_step(name: str, policy, args):
    """A zero-argument callable taking one ``step`` of method ``name`` on a fresh JPEG oracle each time."""
    from benchsuite.budget import BudgetedOracle
    from benchsuite.methods.ddpo import DDPO, DDPOConfig
    from benchsuite.methods.draft import DRaFT, DRaFTConfig
    from benchsuite.methods.sqdf import SQDF, SQDFConfig
    from benchsuite.rewards.jpeg import JpegCompressibility
    from benchsuite.tasks import TaskInfo

    b = args.batch
    method = {
        "ddpo": lambda: DDPO(DDPOConfig(batch_size=b, train_batch_size=b, train_chunk=args.train_chunk)),
        "sqdf": lambda: SQDF(SQDFConfig(batch_size=b, train_batch_size=b, reward_shift="rank")),
        "draft": lambda: DRaFT(DRaFTConfig(batch_size=b, k=1)),
    }[name]()
    info = TaskInfo("bench", torch.arange(NUM_PROMPTS), oracle_differentiable=False)
    method.setup(policy, info, torch.Generator().manual_seed(0))
    reward = JpegCompressibility(quality=95)
    return lambda: method.step(BudgetedOracle(reward, b))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random model at 16 px (CPU smoke test)")
    parser.add_argument("--batch", type=int, default=8, help="chains per rollout and per method step")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default 50; 4 with --tiny)")
    parser.add_argument("--resolution", type=int, default=None, help="pixels (default 512; 16 with --tiny)")
    parser.add_argument("--precision", default="fp16", choices=["no", "fp16", "bf16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed rollouts per sampler")
    parser.add_argument("--train-chunk", type=int, default=16, help="DDPO (sample, step) pairs per forward")
    parser.add_argument("--methods", default="ddpo,sqdf,draft")
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.tiny else 50)
    args.resolution = args.resolution or (16 if args.tiny else 512)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu (with --tiny for a quick run)")

    policy = build_policy(args)
    dtype = policy.sd_denoiser.autocast_dtype or torch.float32
    conds = torch.arange(args.batch) % NUM_PROMPTS
    ours = lambda: policy.decode(policy.rollout(conds, torch.Generator().manual_seed(1))[0].x0)  # noqa: E731
    cuda_gen = torch.Generator(device=device).manual_seed(1)
    plain = lambda: plain_rollout(policy, conds.to(device), cuda_gen, dtype)  # noqa: E731

    rows = []
    for label, fn in (("rollout, ours (SDPolicy.rollout + decode)", ours),
                      ("rollout, plain loop (ddpo-pytorch style)", plain)):
        seconds, peak = measure(fn, device, args.repeats)
        rows.append((label, seconds, args.batch / seconds, peak))
    for name in [m for m in args.methods.split(",") if m]:
        seconds, peak = measure(method_step(name, policy, args), device, 1)
        rows.append((f"{name} step (sampling + update)", seconds, args.batch / seconds, peak))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    model = "tiny random SD" if args.tiny else "SD 1.5 architecture, random weights"
    print(f"{model}; {name}; {args.resolution} px, {args.steps} steps, guidance 5, batch {args.batch}, "
          f"base weights {dtype if device.type == 'cuda' else torch.float32}, LoRA rank 4 in fp32")
    print()
    print("| what | batch | seconds | images/s | peak CUDA MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, seconds, rate, peak in rows:
        print(f"| {label} | {args.batch} | {seconds:.3f} | {rate:.2f} | {'-' if peak is None else f'{peak:.0f}'} |")


if __name__ == "__main__":
    main()
