"""Train the embedded digits backbone and write its weights (safetensors, EMA weights).

Usage:
    python scripts/train_digits_backbone.py [--out PATH] [--steps N]

Every setting comes from ``benchsuite.policies.digits.TRAIN_CONFIG``; the run is deterministic (fixed seed,
one thread, deterministic algorithms). The loss is the standard epsilon-prediction DDPM objective on the
1797 scikit-learn digits, with the class label replaced by ``NULL_CLASS`` with probability
``label_dropout`` (so classifier-free guidance works). The output file's metadata records the model,
scheduler and training configs as JSON, plus the final loss.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import save_file

from benchsuite.policies.digits import (
    DIGITS_SCHEDULER_CONFIG,
    DIGITS_UNET_CONFIG,
    TRAIN_CONFIG,
    WEIGHTS_PATH,
    build_digits_unet,
    config_to_json,
    load_digits_images,
    training_batch,
)
from benchsuite.weights import record_digests


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train(steps: int, log_every: int = 100) -> tuple[dict[str, torch.Tensor], float]:
    """Run the training loop.

    Returns:
        The EMA state dict (contiguous float32 tensors) and the mean loss over the last ``log_every`` steps.
    """
    cfg = TRAIN_CONFIG
    torch.manual_seed(cfg["seed"])  # model initialisation
    gen = torch.Generator().manual_seed(cfg["seed"])  # batches, label dropout, noise and timesteps

    images, labels = load_digits_images()  # N x 1 x 8 x 8 in [-1, 1], N
    scheduler = DDPMScheduler(**DIGITS_SCHEDULER_CONFIG)
    model = build_digits_unet().train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], betas=tuple(cfg["adam_betas"]), weight_decay=cfg["weight_decay"]
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg["lr_warmup_steps"], steps))

    recent: deque[float] = deque(maxlen=log_every)
    start = time.perf_counter()
    for step in range(steps):
        x0, y, noise = training_batch(images, labels, cfg["batch_size"], cfg["label_dropout"], gen)
        t = torch.randint(scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
        xt = scheduler.add_noise(x0, noise, t)

        loss = F.mse_loss(model(xt, t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip_norm"])
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k].lerp_(v, 1.0 - cfg["ema_decay"])

        recent.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - start
            print(f"step {step + 1:5d}/{steps}  loss {sum(recent) / len(recent):.4f}  {elapsed:6.1f} s", flush=True)

    final_loss = sum(recent) / len(recent)
    return {k: v.contiguous() for k, v in ema.items()}, final_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help="output safetensors file")
    parser.add_argument("--steps", type=int, default=TRAIN_CONFIG["steps"], help="optimizer steps")
    args = parser.parse_args()

    torch.set_num_threads(TRAIN_CONFIG["num_threads"])
    torch.use_deterministic_algorithms(True)

    start = time.perf_counter()
    state, final_loss = train(args.steps)
    seconds = time.perf_counter() - start

    train_config = dict(TRAIN_CONFIG, steps=args.steps)
    metadata = {
        "unet_config": config_to_json(DIGITS_UNET_CONFIG),
        "scheduler_config": config_to_json(DIGITS_SCHEDULER_CONFIG),
        "train_config": config_to_json(train_config),
        "final_loss": json.dumps(final_loss),
        "torch_version": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=metadata)
    record_digests(args.out)  # the folder's SHA256SUMS: the loaders refuse a file that differs from it
    size_mb = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.2f} MB) in {seconds:.1f} s, final loss {final_loss:.4f}")


if __name__ == "__main__":
    main()
