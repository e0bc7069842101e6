"""One DDPO policy-gradient update of a tiny SD policy in each process; run by tests/test_distributed.py.

    accelerate launch --multi_gpu --num_processes N tests/distributed_ddpo_update.py \
        --model M --tasks T --batch b --out O

Every process rolls out the same ``N x b`` chains (same weights, same generator), computes advantages over all of
them (DDPO's per-batch statistics, as ddpo-pytorch gathers rewards across processes), and trains on its own ``b``
chains: one REINFORCE update through ``Method.make_optimizer`` (which DDP-wraps the denoiser when launched) and
DDPO's own ``_update``. Each process saves its gradients and updated LoRA weights to ``<out>/rank<r>.pt``.
Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import os

import torch


def update(model: str, per_process_batch: int, rank: int, world: int) -> dict:
    """The update of process ``rank`` of ``world`` on its share of the ``world x per_process_batch`` chains.

    Returns the gradients of the trainable parameters after the step (clipped as DDPO clips them), the updated
    LoRA weights, DDPO's step diagnostics and the class of the policy's denoiser (DDP-wrapped when launched).
    Expects ``BENCHSUITE_TASKS_DIR`` to hold the prompt list ``tiny-animals``.
    """
    from benchsuite.methods.ddpo import DDPO, DDPOConfig
    from benchsuite.policies.sd import sd_policy
    from benchsuite.tasks import TaskInfo

    policy = sd_policy(model=model, prompts="tiny-animals", num_steps=3, guidance_scale=2.0, resolution=16,
                       lora_rank=2, mixed_precision="no")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # LoRA away from its identity start, so that lora_A gets gradients too
        for v in policy.trainable_state_dict().values():
            v.add_(0.1 * torch.randn(v.shape, generator=g))
    b = per_process_batch
    config = DDPOConfig(batch_size=b, train_batch_size=b, variant="reinforce", lr=1e-2, weight_decay=0.0)
    method = DDPO(config)
    method.setup(policy, TaskInfo("tiny", torch.arange(4), False), torch.Generator().manual_seed(2))

    conds = torch.arange(world * b) % 4
    traj, _ = policy.rollout(conds, torch.Generator().manual_seed(3))  # identical in every process
    rewards = traj.x0.flatten(1).mean(1)
    adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)  # statistics of the global batch
    mine = torch.arange(rank * b, (rank + 1) * b)
    T = traj.num_steps
    rows, ks = torch.arange(b).repeat_interleave(T), torch.arange(T).repeat(b)  # every step of every own chain
    stats = method._update(traj.select(mine), adv[mine], rows, ks)
    return {
        "grads": [p.grad.detach().clone() for p in method.params],
        "params": {k: v.detach().clone() for k, v in policy.trainable_state_dict().items()},
        "stats": stats,
        "denoiser": type(policy.denoiser).__name__,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--batch", type=int, required=True, help="chains per process")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["BENCHSUITE_TASKS_DIR"] = args.tasks
    from benchsuite import distributed

    rank, world = distributed.process_index(), distributed.num_processes()
    result = update(args.model, args.batch, rank, world)
    torch.save(result, os.path.join(args.out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
