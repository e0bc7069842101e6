"""Distil the digits consistency model (SQDF's x0 predictor) from the shipped digits backbone; write its weights.

Usage:
    python scripts/train_consistency_model.py [--out PATH] [--steps N]

Every setting comes from ``benchsuite.policies.consistency.CONSISTENCY_TRAIN_CONFIG`` (see that module for the
model and the loss); deterministic (fixed seed, one thread, deterministic algorithms). At the end it prints how
well each x0 predictor SQDF can use anticipates the final sample of the pretrained sampler
(``benchsuite.metrics.sampler.x0_predictor_quality`` on the digits-jpeg-compress-v1 grid).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections import deque
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from safetensors.torch import save_file

from benchsuite.policies.consistency import (
    CONSISTENCY_TRAIN_CONFIG,
    CONSISTENCY_WEIGHTS_PATH,
    build_consistency_model,
    metadata,
)
from benchsuite.policies.digits import DIGITS_SCHEDULER_CONFIG, load_digits_images, load_digits_unet, training_batch
from benchsuite.weights import record_digests


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """mean of sqrt((a - b)^2 + c^2) - c over every entry (improved consistency training's distance)."""
    return (((a - b) ** 2 + c**2).sqrt() - c).mean()


def distil(steps: int, log_every: int = 200) -> tuple[dict[str, torch.Tensor], float]:
    cfg = CONSISTENCY_TRAIN_CONFIG
    gen = torch.Generator().manual_seed(cfg["seed"])
    images, labels = load_digits_images()
    acp = DDPMScheduler(**DIGITS_SCHEDULER_CONFIG).alphas_cumprod.float()
    n_train = len(acp)
    teacher = load_digits_unet().eval().requires_grad_(False)
    student = build_consistency_model().train()
    target = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    skip = cfg["skip"]
    recent: deque[float] = deque(maxlen=log_every)
    start = time.perf_counter()
    for step in range(steps):
        x0, y, noise = training_batch(images, labels, cfg["batch_size"], cfg["label_dropout"], gen)
        t_hi = torch.randint(skip, n_train, (len(x0),), generator=gen)
        t_lo = t_hi - skip
        a_hi, a_lo = acp[t_hi].view(-1, 1, 1, 1), acp[t_lo].view(-1, 1, 1, 1)
        x_hi = a_hi.sqrt() * x0 + (1 - a_hi).sqrt() * noise
        with torch.no_grad():  # one deterministic DDIM step of the teacher, t_hi -> t_lo
            eps = teacher(x_hi, t_hi, class_labels=y).sample
            x0_teacher = ((x_hi - (1 - a_hi).sqrt() * eps) / a_hi.sqrt()).clamp(-1, 1)
            x_lo = a_lo.sqrt() * x0_teacher + (1 - a_lo).sqrt() * eps
            want = target(x_lo, t_lo, y)
        loss = pseudo_huber(student(x_hi, t_hi, y), want, cfg["huber_c"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg["grad_clip_norm"])
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_t, p_s in zip(target.parameters(), student.parameters()):
                p_t.lerp_(p_s, 1.0 - cfg["target_ema_decay"])
        recent.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"step {step + 1:5d}/{steps}  loss {sum(recent) / len(recent):.5f}  "
                  f"{time.perf_counter() - start:6.1f} s", flush=True)
    state = {k: v.detach().contiguous() for k, v in student.unet.state_dict().items()}
    return state, sum(recent) / len(recent)


def report() -> None:
    from benchsuite.diagnostics import print_predictor_quality

    print_predictor_quality("digits-jpeg-compress-v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CONSISTENCY_WEIGHTS_PATH, help="output safetensors file")
    parser.add_argument("--steps", type=int, default=CONSISTENCY_TRAIN_CONFIG["steps"], help="optimizer steps")
    parser.add_argument("--report-only", action="store_true", help="only print the predictor table")
    args = parser.parse_args()
    torch.set_num_threads(CONSISTENCY_TRAIN_CONFIG["num_threads"])
    if not args.report_only:
        torch.use_deterministic_algorithms(True)
        start = time.perf_counter()
        state, final_loss = distil(args.steps)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(args.out), metadata=metadata(dict(CONSISTENCY_TRAIN_CONFIG, steps=args.steps),
                                                          final_loss))
        record_digests(args.out)  # the folder's SHA256SUMS: the loaders refuse a file that differs from it
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MB) in {time.perf_counter() - start:.1f} s, "
              f"final loss {final_loss:.5f}")
    if args.out == CONSISTENCY_WEIGHTS_PATH:
        report()


if __name__ == "__main__":
    main()
