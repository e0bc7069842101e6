"""Evaluation owned by the runner: fixed conditions, fixed noise, judges that never touch the budget."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .metrics import reward_summary
from .policies.base import DiffusionPolicy
from .tasks import PREFIXES, Task


@torch.no_grad()
def evaluate(policy: DiffusionPolicy, reference: DiffusionPolicy, task: Task, method=None,
             pretrained_images: Tensor | None = None, split: str = "test", run_seed: int | None = None
             ) -> tuple[dict[str, float], Tensor, Tensor | None, dict[str, Tensor]]:
    """Sample one of the task's evaluation sets and score it with every judge.

    ``split``: ``test`` (metrics ``eval/``: the reported numbers) or, on a card with two sets
    (``tasks.EvalProtocol``), ``selection`` (``select/``: what every choice reads; judges and KL only, no diversity
    metrics). Its noise comes from ``task.eval_noise_seed(split, run_seed)``: the card's fixed seed on a card with one
    set, else drawn from the run's seed.

    A ``method`` whose ``eval_samples`` returns images (best-of-N) is judged on those instead, with the KL it
    reports. Model evaluations made here are not counted in the policies' ``nfe``.

    Returns:
        metrics: per judge ``eval/<judge>_{mean,median,std,top10}``; ``eval/gold_proxy_gap`` when the task has
            a gold judge; ``eval/kl`` (the path KL in nats: mean over samples of the per-step KL to the reference
            summed over dims and steps along the sampled chains), ``eval/kl_per_dim`` (that divided by the
            number of data dims, the suite's drift figure before the v2 protocol), ``eval/kl_last_step`` (the last
            step's part of it) and ``eval/kl_max_step_share`` (the largest step's share of it; 0 at zero KL); and
            the diversity and drift metrics of the policy's sample space (``policy.space.metrics``:
            ``eval/diversity`` and ``eval/vendi`` per condition, averaged over conditions; for images
            ``eval/fd_pretrained``, the Fréchet distance of image features to ``pretrained_images`` when given; for
            sequences novelty and token-frequency drift).
        images: ``N x ...`` samples of ``policy.space`` (images ``N x C x H x W`` in [0, 1]).
        conditions: ``N`` or None.
        scores: each judge's ``N`` rewards.
    """
    nfe_before = policy.nfe  # shared with the reference and the method's frozen copies
    prefix = PREFIXES[split]
    conds = task.eval_conditions(split)
    n = len(conds) if conds is not None else task.eval_samples(split)
    own = method.eval_samples(conds, n) if method is not None else None
    step_kl = None
    if own is not None:
        images, kl = own
    else:
        images, kl, step_kl = _eval_rollout(policy, reference, task, conds, n, task.eval_noise_seed(split, run_seed))
    scores = {label: judge(images, conds) for label, judge in task.judges.items()}
    policy.nfe = nfe_before
    metrics: dict[str, float] = {}
    for label, values in scores.items():
        for stat, value in reward_summary(values).items():
            metrics[f"{prefix}{label}_{stat}"] = value
    gold = task.spec.gold_judge
    if gold is not None:
        metrics[f"{prefix}gold_proxy_gap"] = (metrics[f"{prefix}{gold}_mean"]
                                              - metrics[f"{prefix}{task.spec.primary_judge}_mean"])
    metrics[f"{prefix}kl"] = kl
    metrics[f"{prefix}kl_per_dim"] = kl / math.prod(policy.sample_shape)
    if split != "test":
        return metrics, images, conds, scores
    if step_kl is not None:  # a sampler grid with a degenerate step puts most of the path KL there
        metrics["eval/kl_last_step"] = float(step_kl[-1])
        metrics["eval/kl_max_step_share"] = float(step_kl.max() / step_kl.sum()) if kl > 0 else 0.0
    metrics.update(policy.space.metrics(images, conds, pretrained_images))
    return metrics, images, conds, scores



_ROLLOUT_CACHE: dict[tuple, tuple[Tensor, float, Tensor]] = {}
"""Eval rollouts of unchanged pretrained policies, per process (see ``_eval_rollout``)."""
CACHE_MAX_PARAMETERS = 20_000_000
"""Policies up to this size are fingerprinted for the cache (hashing their weights costs milliseconds)."""


def _fingerprint(module: torch.nn.Module) -> str | None:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes, bytes), or None for a large module."""
    import hashlib

    tensors = list(module.state_dict().items())
    if sum(t.numel() for _, t in tensors) > CACHE_MAX_PARAMETERS:
        return None
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _eval_rollout(policy: DiffusionPolicy, reference: DiffusionPolicy, task: Task, conds: Tensor | None,
                  n: int, seed: int) -> tuple[Tensor, float, Tensor]:
    """The eval rollout on the noise of ``seed``: decoded samples, path KL and the ``T`` per-step KLs (means over
    samples).

    Deterministic given the task card, the seed, the set's size and the policy's weights, so a process keeps the
    result for a policy whose weights equal the reference's (the pretrained model: the first evaluation of every
    run, and every evaluation of methods that never change the policy). A sweep worker then samples the pretrained
    eval set once per task and noise seed instead of once per run and evaluation point; a policy with other weights
    is never served from the cache. Judges are not cached: they run on every evaluation.
    """
    key = None
    shared = ({p.data_ptr() for p in policy.denoiser.parameters()}
              & {p.data_ptr() for p in reference.denoiser.parameters()})
    # shared storage (Stable Diffusion's reference is the policy's UNet with its adapters switched off): equal
    # weights would not mean equal samples, so no cache
    own_print = None if shared else _fingerprint(policy.denoiser)
    if own_print is not None and own_print == _fingerprint(reference.denoiser):
        key = (task.spec, seed, n, type(policy).__qualname__, str(policy.stds.device), own_print)
    if key is not None and key in _ROLLOUT_CACHE:
        images, kl, step_kl = _ROLLOUT_CACHE[key]
        return images.clone(), kl, step_kl.clone()
    generator = torch.Generator().manual_seed(seed)
    was_training = policy.training
    policy.eval()
    traj, kls = policy.rollout(conds, generator, batch=n, reference=reference)
    policy.train(was_training)
    images, kl, step_kl = policy.decode(traj.x0), kls.sum(1).mean().item(), kls.mean(0).double().cpu()
    if key is not None:
        _ROLLOUT_CACHE[key] = (images.clone(), kl, step_kl.clone())
    return images, kl, step_kl


def cost_metrics(used: int, nfe: int, wall_s: float) -> dict[str, float]:
    """``cost/queries``, ``cost/nfe`` (denoiser evaluations outside evaluation), ``cost/wall_s`` and the peak
    memory: ``cost/peak_rss_mb`` (process) and ``cost/peak_cuda_mb`` when CUDA is in use."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"cost/queries": float(used), "cost/nfe": float(nfe), "cost/wall_s": wall_s,
           "cost/peak_rss_mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cost/peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out
