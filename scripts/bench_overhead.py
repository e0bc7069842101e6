"""How much do the runner and method code add to the bare model compute? Prints a table.

Three ways to do the same DDPO iteration on the embedded digits UNet (64 chains x 20 steps, JPEG reward,
two optimizer steps of 32 chains x 20 steps):
  bare    a straightforward loop: UNet2DModel + diffusers DDIMScheduler.step, log-probs by hand, PPO update;
  method  ``DDPO.step`` on a ``BudgetedOracle`` (our policy, trajectory, advantage tracker);
  runner  ``benchsuite.runner.run`` with checkpoints, JSONL and MLflow logging; evaluation and loading the task
          are timed separately and subtracted.
Target (shared/design): method and runner within 10% of bare.

    python scripts/bench_overhead.py [--iters 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def bare_iteration(unet, sched, gen, opt, batch=64, steps=20, minibatch=32):
    """ddpo-pytorch-style iteration written out with no benchsuite policy or method code."""
    from benchsuite.rewards.jpeg import jpeg_kilobytes

    acp = sched.alphas_cumprod
    stride = sched.config.num_train_timesteps // steps
    ts = sched.timesteps
    prev_ts = ts - stride
    alpha = acp[ts].view(-1, 1, 1, 1, 1)
    alpha_prev = torch.where(prev_ts >= 0, acp[prev_ts.clamp(min=0)], sched.final_alpha_cumprod).view(-1, 1, 1, 1, 1)
    var = (1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)
    conds = torch.randint(10, (batch,), generator=gen)
    x = torch.randn(batch, 1, 8, 8, generator=gen)
    lats, logps = [x], []
    with torch.no_grad():
        for k, t in enumerate(ts):
            eps = unet(x, t, class_labels=conds).sample
            noise = torch.randn(x.shape, generator=gen)
            prev = sched.step(eps, t, x, eta=1.0, variance_noise=noise).prev_sample
            mean = prev - var[k].sqrt() * noise
            logps.append(torch.distributions.Normal(mean, var[k].sqrt()).log_prob(prev).flatten(1).sum(1))
            lats.append(prev)
            x = prev
    rewards = -jpeg_kilobytes(((x + 1) / 2).clamp(0, 1), 95, 32)
    adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
    lat, old = torch.stack(lats, 1), torch.stack(logps, 1)
    for start in range(0, batch, minibatch):
        idx = torch.arange(start, min(batch, start + minibatch))
        rows, ks = idx.repeat_interleave(steps), torch.arange(steps).repeat(len(idx))
        a, ap, v = alpha[ks, 0], alpha_prev[ks, 0], var[ks, 0]
        xk, xn = lat[rows, ks], lat[rows, ks + 1]
        eps = unet(xk, ts[ks], class_labels=conds[rows]).sample
        x0 = ((xk - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        mean = ap.sqrt() * x0 + (1 - ap - v).clamp(min=0).sqrt() * eps
        logp = torch.distributions.Normal(mean, v.sqrt()).log_prob(xn).flatten(1).sum(1)
        ratio = torch.exp(logp - old[rows, ks])
        loss = torch.maximum(-adv[rows] * ratio, -adv[rows] * ratio.clamp(1 - 1e-4, 1 + 1e-4)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()


def time_interleaved(fns: dict, iters: int) -> dict[str, float]:
    """Median CPU seconds per call of each function, calls interleaved so that load changes hit all alike.

    CPU time (``time.process_time``) of a single-threaded process is what its wall time would be on an idle
    core; on a shared machine it is the stable number.
    """
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import DDIMScheduler

    from benchsuite.config import resolve
    from benchsuite.methods.ddpo import DDPO
    from benchsuite.policies.digits import DIGITS_SCHEDULER_CONFIG, load_digits_unet
    from benchsuite.runner import run
    from benchsuite.tasks import make_task
    from benchsuite.tracking import MlflowTracker, default_tracking_uri

    unet = load_digits_unet().train()
    sched = DDIMScheduler.from_config({**DIGITS_SCHEDULER_CONFIG, "set_alpha_to_one": False,
                                       "timestep_spacing": "trailing"})
    sched.set_timesteps(20)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    task = make_task("digits-jpeg-compress-v0")
    cfg = resolve("digits-jpeg-compress-v0", "ddpo", budget=64 * (args.iters + 2),
                  overrides={"train_batch_size": 32})
    method = DDPO(DDPO.Config(**dict(cfg.method_config)))
    method.setup(task.make_policy(), task.info, torch.Generator().manual_seed(0))
    oracle = task.train_oracle(64 * (args.iters + 2))
    med = time_interleaved({"bare": lambda: bare_iteration(unet, sched, gen, opt),
                            "method": lambda: method.step(oracle)}, args.iters)
    bare, meth = med["bare"], med["method"]

    # runner: one run with evaluation only at 0 and 100%, minus the two evaluations; CPU time of this process
    with tempfile.TemporaryDirectory() as tmp:
        rcfg = resolve("digits-jpeg-compress-v0", "ddpo", budget=64 * args.iters, eval_fractions=(0.0, 1.0),
                       overrides={"train_batch_size": 32}, output_root=tmp)
        tracker = MlflowTracker(default_tracking_uri(Path(tmp) / "mlflow"), artifact_root=Path(tmp) / "art")
        tracker._client()  # connect (and create the store) outside the timed region
        t0 = time.process_time()
        result = run(rcfg, tracker=tracker)
        total = time.process_time() - t0
        from benchsuite.evaluation import evaluate

        policy = task.make_policy()
        ref = policy.frozen_copy()
        ev = time_interleaved({"eval": lambda: evaluate(policy, ref, task)}, 3)["eval"]
    setup = time_interleaved({"setup": lambda: (make_task("digits-jpeg-compress-v0").make_policy())}, 3)["setup"]
    runner_per_iter = (total - 2 * ev - setup) / args.iters

    print(f"DDPO iteration on digits (64 chains x 20 steps, 2 x 32-chain updates), {args.threads} thread(s), "
          f"median CPU seconds of {args.iters}")
    print(f"| {'variant':8s} | {'s / iteration':>13s} | {'vs bare':>8s} |")
    print(f"|{'-' * 10}|{'-' * 15}|{'-' * 10}|")
    for name, v in (("bare", bare), ("method", meth), ("runner", runner_per_iter)):
        print(f"| {name:8s} | {v:13.3f} | {100 * (v / bare - 1):+7.1f}% |")
    print(f"evaluation (160 samples x 20 steps + reference KL + judges): {ev:.3f} s per evaluation point; "
          f"task + policy load {setup:.3f} s; run CPU total {total:.1f} s ({result.wall_time:.1f} s wall)")


if __name__ == "__main__":
    main()
