"""GPU check (issue 17): one script, one markdown table, for the first time a GPU machine is lent.

Three sections, each row measured here (a row that fails says so and the others still run):

1. sampling   an SD 1.5-config UNet (``UNet2DConditionModel`` with SD 1.5's config; real SD 1.5 weights when they
              are present locally, else random weights, which the table states): images per second of
              benchsuite's sampler path (``SDPolicy.rollout``, per-step mean/std/log-prob kept, + VAE decode)
              against a straightforward ddpo-pytorch-style loop (a plain Python loop calling the UNet with
              classifier-free guidance and ``diffusers.DDIMScheduler.step`` with eta = 1, and the Gaussian
              log-prob of every step, as kvablack/ddpo-pytorch's ``pipeline_with_logprob`` keeps it), at equal
              batch, fp16, 50 steps. The team's target: benchsuite >= 1.5x the plain loop.
2. memory     peak ``torch.cuda.max_memory_allocated`` of one training step (after a warm-up step) of DDPO, SQDF,
              DRaFT-1, VARD and CTRL at 512 px with LoRA (each method's ``sd`` preset, at the check's batch),
              against a differentiable weight-free reward (mean brightness), so that the number is the method's
              and the decoder's and no reward model's.
3. end to end every registered method through ``benchsuite.runner.run`` on the tiny random SD
              (``benchsuite/policies/sd_tiny.py``) on the GPU, run folders and checkpoints written, with the
              SQDF consistency predictor as a random LCM-LoRA file loaded by diffusers.

The GPU machine has no package registry: ``scripts/gpu_wheels.sh`` downloads the wheels this needs
(``.gpu-wheels/``) and ``scripts/gpu_check.sh`` installs them offline and runs this script.

    bash scripts/gpu_check.sh --write            # on the GPU: table on stdout and in results/gpu/<date>.md
    python scripts/gpu_check.py --smoke          # the same code paths on the CPU at tiny sizes (CI, ~30-60 s)

Exit status: 0 when every row ran (a missed throughput target is a result, not an error), 1 when a row failed,
2 on bad arguments or when the GPU or a needed package is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # bench_sd_sampling: the SD 1.5 configs, the policy and the timer

MEMORY_METHODS = ("ddpo", "sqdf", "draft", "vard", "ctrl")
THROUGHPUT_TARGET = 1.5
# method settings at toy scale, for the e2e runs and the smoke mode's training steps (a method's missing fields are
# left out): the presets' value and surrogate fits take minutes on a CPU
TOY_SETTINGS = {"lr": 1e-2, "surrogate_fit_steps": 5, "value_steps": 5, "value_warmup_steps": 5, "value_batch": 8,
                "value_width": 8, "keep_per_condition": 2, "pool_size": 16, "initial_queries": 4, "feature_dim": 4,
                "reward_shift": "rank", "grad_share_every": 0}
E2E_PROMPTS = ("cat", "dog", "fox", "ant", "horse", "owl")
E2E_CARD = """\
id: gpu-check-tiny-sd-v0
description: tiny random SD for scripts/gpu_check.py
backbone: sd
sampler: {{model: "{model}", prompts: gpu-check-animals, num_steps: {steps}, eta: 1.0, guidance_scale: 2.0,
          resolution: {resolution}, lora_rank: 2, mixed_precision: fp16, consistency_lora: "{lcm}"}}
oracle: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
judges:
  jpeg: {{name: jpeg-compressibility, version: "0", kwargs: {{quality: 95}}}}
primary_judge: jpeg
conditions: {{train: [0, 1, 2, 3], eval: [4, 5]}}
eval: {{samples_per_condition: 2, seed: 3}}
default_budget: 8
"""


@dataclasses.dataclass
class Row:
    section: str
    item: str
    setting: str
    seconds: float | None = None
    images_per_s: float | None = None
    peak_mib: float | None = None
    result: str = "ok"
    failed: bool = False


class Deadline:
    """The check's wall-clock budget: a section asks before each row whether there is time left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(exc)[-1].strip().replace("|", "/")[:200]


def _guarded(row: Row, fn: Callable[[Row], None], deadline: Deadline) -> Row:
    """Run ``fn(row)``; a raised exception marks the row failed with its one-line message. Frees GPU memory after."""
    if deadline.left() <= 0:
        row.result, row.failed = "not run: the check's time limit was reached", True
        return row
    try:
        fn(row)
    except Exception as exc:  # noqa: BLE001 - one failed row must not hide the others
        row.result, row.failed = f"FAILED: {_one_line(exc)}", True
    print(f"gpu_check: {row.section}, {row.item}: {_fmt(row.seconds, '.1f')} s, {row.result}", file=sys.stderr,
          flush=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


# ---- 1. sampling throughput ----------------------------------------------------------------------------------
def sd15_policy(args):
    """``(policy, weights)``: an ``SDPolicy`` with SD 1.5's architecture (the tiny config in smoke mode) on
    ``args.device``; real SD 1.5 weights where they are present locally (never downloaded), else random ones."""
    from bench_sd_sampling import build_policy

    from benchsuite.errors import MissingWeightsError
    from benchsuite.policies.sd import SD15, resolve_model, sd_policy

    if not args.tiny:
        try:
            folder = resolve_model(SD15, allow_download=False)
        except MissingWeightsError:
            pass
        else:
            policy = sd_policy(str(folder), num_steps=args.steps, resolution=args.resolution, lora_rank=4,
                               mixed_precision=args.precision, consistency_lora=None)
            return policy.to(args.device), f"SD 1.5 weights from {folder}"
    weights = "tiny random SD (smoke)" if args.tiny else "SD 1.5 architecture, random weights (none present)"
    return build_policy(args), weights


def plain_scheduler(policy):
    """The baseline's ``DDIMScheduler``: the policy's model config (SD's leading spacing, ``steps_offset`` 1), its
    number of steps, the final step landing on alphas_cumprod[0] as in ddpo-pytorch; schedule on the policy's
    device."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config({**policy._sampler["scheduler_config"], "set_alpha_to_one": False})
    scheduler.set_timesteps(policy.num_steps)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(policy.stds.device)
    scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.to(policy.stds.device)
    return scheduler


def ddim_scheduler_std(scheduler, t: int, eta: float) -> torch.Tensor:
    """The std ``eta * sqrt(var)`` that ``DDIMScheduler.step`` adds noise with at timestep ``t``."""
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    acp = scheduler.alphas_cumprod
    a, a_prev = acp[t], acp[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    return eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()


@torch.no_grad()
def plain_loop(unet, vae, embeds, conds, null_id, scheduler, shape, guidance, eta, generator, dtype):
    """The baseline: a plain loop over ``DDIMScheduler.step`` (eta > 0) keeping every latent and each step's
    log-prob (mean over dims, as ddpo-pytorch), latents in the model dtype, guidance by a doubled batch.
    Returns images in [0, 1], ``B x (T+1) x *shape`` latents and ``B x T`` log-probs."""
    device = embeds.device
    hidden = torch.cat([embeds[torch.full_like(conds, null_id)], embeds[conds]]).to(dtype)
    latents = torch.randn((len(conds), *shape), generator=generator, device=device, dtype=dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda" and dtype != torch.float32)
    all_latents, log_probs = [latents], []
    with autocast:
        for t in scheduler.timesteps:
            eps_u, eps_c = unet(torch.cat([latents, latents]), t, encoder_hidden_states=hidden).sample.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
            noise = torch.randn(latents.shape, generator=generator, device=device, dtype=dtype)
            latents = scheduler.step(eps, t, latents, eta=eta, variance_noise=noise).prev_sample
            std = ddim_scheduler_std(scheduler, int(t), eta).to(device)
            # x_prev = mean + std * noise, so log N(x_prev; mean, std^2) per dim is the noise's standard log-density
            log_prob = -noise.float() ** 2 / 2 - std.log() - 0.5 * math.log(2 * math.pi)
            all_latents.append(latents)
            log_probs.append(log_prob.flatten(1).mean(1))
        images = vae.decode(latents / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1), torch.stack(all_latents, 1), torch.stack(log_probs, 1)


def measure(fn: Callable[[], object], device: torch.device, repeats: int, warmup: bool) -> tuple[float, float | None]:
    """Seconds per call of ``fn`` (after one untimed call if ``warmup``) and the peak CUDA MiB over the timed calls
    (None off CUDA)."""
    cuda = device.type == "cuda"
    if warmup:
        fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    return seconds, torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None


def sampling_rows(policy, weights: str, args, deadline: Deadline) -> list[Row]:
    from bench_sd_sampling import NUM_PROMPTS

    device = torch.device(args.device)
    den = policy.sd_denoiser
    dtype = den.autocast_dtype or torch.float32
    conds = torch.arange(args.batch) % NUM_PROMPTS
    scheduler = plain_scheduler(policy)
    gen = torch.Generator(device=device).manual_seed(1)

    def ours():
        return policy.decode(policy.rollout(conds, torch.Generator().manual_seed(1))[0].x0)

    def plain():
        return plain_loop(den.unet, policy.decoder.vae, den.prompt_embeds, conds.to(device), den.null_condition,
                          scheduler, policy.sample_shape, policy.guidance_scale, policy.eta, gen, dtype)

    setting = (f"{policy.resolution} px, {policy.num_steps} steps, eta 1, guidance {policy.guidance_scale:g}, "
               f"batch {args.batch}, {str(dtype).removeprefix('torch.')}; {weights}")
    rows = [Row("sampling", "benchsuite: SDPolicy.rollout + VAE decode", setting),
            Row("sampling", "plain loop: UNet + DDIMScheduler.step(eta=1) + log-prob", setting)]

    def timed(fn):
        def fill(row: Row) -> None:
            row.seconds, row.peak_mib = measure(fn, device, args.repeats, args.warmup)
            row.images_per_s = args.batch / row.seconds
        return fill

    _guarded(rows[0], timed(ours), deadline)
    _guarded(rows[1], timed(plain), deadline)
    if rows[0].images_per_s and rows[1].images_per_s:
        ratio = rows[0].images_per_s / rows[1].images_per_s
        verdict = "meets" if ratio >= THROUGHPUT_TARGET else "below"
        rows[0].result = f"{ratio:.2f}x the plain loop ({verdict} the {THROUGHPUT_TARGET}x target)"
    return rows


# ---- 2. peak memory of one training step --------------------------------------------------------------------
def only_fields(cls, settings: dict) -> dict:
    """The entries of ``settings`` that are fields of method class ``cls``'s config."""
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    return {k: v for k, v in settings.items() if k in fields}


def method_step(name: str, policy, batch: int, extra: dict) -> Callable[[], dict]:
    """A zero-argument callable taking one ``step`` of method ``name`` (its ``sd`` preset with ``extra`` over it, at
    ``batch`` chains; DRaFT with K = 1) on a fresh differentiable mean-brightness oracle each time."""
    from bench_sd_sampling import NUM_PROMPTS

    from benchsuite.budget import BudgetedOracle
    from benchsuite.config import build_method_config, preset_layers
    from benchsuite.registry import METHODS
    from benchsuite.tasks import TaskInfo
    from benchsuite.rewards.brightness import MeanBrightness

    cls = METHODS.load(name)
    wanted = {**extra, "batch_size": batch, "train_batch_size": batch, **({"k": 1} if name == "draft" else {})}
    layers = [*preset_layers(name, "sd", "gpu-check"), ("gpu_check", only_fields(cls, wanted))]
    method = cls(build_method_config(cls.Config, layers))
    method.setup(policy, TaskInfo("gpu-check", torch.arange(NUM_PROMPTS), oracle_differentiable=True),
                 torch.Generator().manual_seed(0))
    reward = MeanBrightness()
    return lambda: method.step(BudgetedOracle(reward, batch))


def memory_rows(policy, weights: str, args, deadline: Deadline) -> list[Row]:
    device = torch.device(args.device)
    initial = {k: v.detach().clone() for k, v in policy.trainable_state_dict().items()}
    label = {"draft": "DRaFT-1", "ddpo": "DDPO", "sqdf": "SQDF", "vard": "VARD", "ctrl": "CTRL"}
    setting = (f"{policy.resolution} px, {policy.num_steps} steps, LoRA rank {policy.sd_denoiser.lora_rank}, "
               f"batch {args.batch}, sd preset; {weights}")
    rows = []
    for name in MEMORY_METHODS:
        def fill(row: Row, name=name) -> None:
            policy.load_trainable_state_dict(initial)  # every method starts from the pretrained policy
            step = method_step(name, policy, args.batch, TOY_SETTINGS if args.smoke else {})
            seconds, row.peak_mib = measure(step, device, 1, args.warmup)
            row.seconds, row.images_per_s = seconds, args.batch / seconds
            if device.type != "cuda":
                row.result = "ok (CPU: no CUDA peak)"
        rows.append(_guarded(Row("memory", f"one {label[name]} training step", setting), fill, deadline))
    return rows


# ---- 3. every method end to end on the tiny SD --------------------------------------------------------------
def write_tiny_sd(folder: Path, steps: int, resolution: int) -> Path:
    """A tasks folder with the tiny-SD card and its prompt list, the tiny SD model and a random LCM-LoRA for it
    (written by diffusers' own LoRA saver); returns the tasks folder."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from benchsuite.policies.sd_tiny import TINY_UNET_CONFIG, save_tiny_sd

    model = save_tiny_sd(folder / "tiny-sd", seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
        unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    StableDiffusionPipeline.save_lora_weights(folder / "lcm", unet_lora_layers=get_peft_model_state_dict(unet))
    tasks = folder / "tasks"
    (tasks / "prompts").mkdir(parents=True)
    (tasks / "prompts" / "gpu-check-animals.txt").write_text("\n".join(E2E_PROMPTS) + "\n")
    lcm = folder / "lcm" / "pytorch_lora_weights.safetensors"
    (tasks / "gpu-check-tiny-sd-v0.yaml").write_text(E2E_CARD.format(model=model, steps=steps, lcm=lcm,
                                                                                  resolution=resolution))
    return tasks


def e2e_rows(args, deadline: Deadline) -> list[Row]:
    from benchsuite import tasks as task_cards
    from benchsuite.config import resolve
    from benchsuite.registry import METHODS
    from benchsuite.runner import run

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        previous = os.environ.get("BENCHSUITE_TASKS_DIR")
        os.environ["BENCHSUITE_TASKS_DIR"] = str(write_tiny_sd(tmp, args.e2e_steps, args.e2e_resolution))
        task_cards._cards.cache_clear()
        budget = args.e2e_budget
        setting = f"tiny SD, {args.e2e_resolution} px, {args.e2e_steps} steps, budget {budget}, on {args.device}"
        try:
            for name in METHODS.names():
                if METHODS.load(name).contract_task is not None:  # a method for one kind of sample (sequence-ga)
                    rows.append(Row("end to end", name, setting, result="skipped: not an image method (its contract "
                                    f"runs on {METHODS.load(name).contract_task})"))
                    continue

                def fill(row: Row, name=name) -> None:
                    cls = METHODS.load(name)
                    settings = {**TOY_SETTINGS, "batch_size": 4, "train_batch_size": 4}
                    cfg = resolve("gpu-check-tiny-sd-v0", name, seed=0, budget=budget, eval_fractions=(0.0, 1.0),
                                  overrides=only_fields(cls, settings),
                                  output_root=str(tmp / "out"), device=args.device)
                    began = time.perf_counter()
                    result = run(cfg)
                    row.seconds = time.perf_counter() - began
                    final = result.final
                    bad = sorted(k for k, v in final.items() if k.startswith("eval/") and not math.isfinite(v))
                    if len(result.query_log) != budget or bad:
                        raise RuntimeError(f"{len(result.query_log)} queries of {budget}; non-finite {bad}")
                    if cls.trains_policy and name != "pretrained" and not final["eval/kl"] > 0:
                        raise RuntimeError("the LoRA weights did not move (eval/kl = 0)")
                    if not (cfg.run_dir / "checkpoint.pt").exists():
                        raise RuntimeError("no checkpoint written")
                    row.result = f"ok: eval/jpeg {final['eval/jpeg_mean']:.4g}, eval/kl {final['eval/kl']:.3g}"
                rows.append(_guarded(Row("end to end", name, setting), fill, deadline))
        finally:
            if previous is None:
                os.environ.pop("BENCHSUITE_TASKS_DIR", None)
            else:
                os.environ["BENCHSUITE_TASKS_DIR"] = previous
            task_cards._cards.cache_clear()
    return rows


# ---- the table ----------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    lines = ["| section | what | setting | seconds | images/s | peak CUDA MiB | result |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r.section} | {r.item} | {r.setting} | {_fmt(r.seconds, '.3f')} | "
                     f"{_fmt(r.images_per_s, '.2f')} | {_fmt(r.peak_mib, '.0f')} | {r.result} |")
    return "\n".join(lines)


def header(args) -> str:
    import importlib.metadata

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    packages = ", ".join(f"{p} {version(p)}" for p in ("diffusers", "transformers", "peft", "accelerate"))
    mode = "smoke mode (tiny sizes on the CPU): not a measurement" if args.smoke else "GPU check"
    return (f"benchsuite {mode}, {datetime.date.today().isoformat()}: {device}; python {platform.python_version()}, "
            f"torch {torch.__version__}, {packages}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="the same code paths on the CPU at tiny sizes (tiny UNet, 2 steps, 64 px)")
    parser.add_argument("--device", default=None, help="torch device (default cuda; cpu with --smoke)")
    parser.add_argument("--batch", type=int, default=None, help="chains per rollout and method step (default 8; 2)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default 50; 2 with --smoke)")
    parser.add_argument("--resolution", type=int, default=None, help="pixels (default 512; 64 with --smoke)")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--repeats", type=int, default=None, help="timed rollouts per sampler (default 3; 1)")
    parser.add_argument("--time-limit", type=float, default=450.0,
                        help="seconds; rows not started by then are reported as not run (default 450)")
    parser.add_argument("--write", nargs="?", const=str(ROOT / "results" / "gpu"), default=None, metavar="FOLDER",
                        help="also write the table to FOLDER/<date>.md (default folder: results/gpu)")
    args = parser.parse_args(argv)
    args.tiny = args.smoke
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    defaults = {"batch": (2, 8), "steps": (2, 50), "resolution": (64, 512), "repeats": (1, 3)}  # (smoke, GPU)
    for name, (smoke, gpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else gpu)
    # the e2e runs at 8 px in smoke mode: the evaluation's Frechet distance on pixels costs a matrix square root of
    # side 3 x pixels, seconds on a CPU at 16 px
    args.e2e_steps, args.e2e_budget, args.e2e_resolution = (2, 4, 8) if args.smoke else (3, 8, 16)
    args.warmup = not args.smoke
    for name in defaults:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    if args.resolution % 8:
        parser.error("--resolution must be a multiple of 8")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --smoke on a CPU")
    try:
        import diffusers  # noqa: F401
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        parser.error(f"{exc.name or exc} is not installed: on the GPU machine run scripts/gpu_check.sh with the wheels "
                     "from scripts/gpu_wheels.sh")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    deadline = Deadline(args.time_limit)
    policy, weights = sd15_policy(args)
    rows = sampling_rows(policy, weights, args, deadline)
    rows += memory_rows(policy, weights, args, deadline)
    del policy
    gc.collect()
    rows += e2e_rows(args, deadline)
    text = f"{header(args)}\n\n{table(rows)}\n"
    print(text, end="", flush=True)
    if args.write:
        folder = Path(args.write)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{datetime.date.today().isoformat()}{'-smoke' if args.smoke else ''}.md"
        path.write_text(text)
        print(f"written to {path}")
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
