"""Evaluation owned by the runner: fixed conditions, fixed noise, judges that never touch the budget."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .metrics import frechet_distance, mean_pairwise_distance, reward_summary, vendi_score
from .policies.base import DiffusionPolicy
from .tasks import Task


@torch.no_grad()
def evaluate(policy: DiffusionPolicy, reference: DiffusionPolicy, task: Task, method=None,
             pretrained_images: Tensor | None = None
             ) -> tuple[dict[str, float], Tensor, Tensor | None, dict[str, Tensor]]:
    """Sample the task's eval set with its fixed eval seed and score it with every judge.

    A ``method`` whose ``eval_samples`` returns images (best-of-N) is judged on those instead, with the KL it
    reports. Model evaluations made here are not counted in the policies' ``nfe``.

    Returns:
        metrics: per judge ``eval/<judge>_{mean,median,std,top10}``; ``eval/gold_proxy_gap`` when the task has
            a gold judge; ``eval/kl`` (mean over samples of the
            summed per-step KL to the reference along the sampled chains), ``eval/kl_last_step`` (the last
            step's part of it) and ``eval/kl_max_step_share`` (the largest step's share of it; 0 at zero KL); ``eval/diversity`` (mean pairwise L2
            distance between images of one condition) and ``eval/vendi`` (Vendi score per condition), both
            averaged over conditions; ``eval/fd_pretrained`` (Fréchet distance of image features to
            ``pretrained_images`` when given).
        images: ``N x C x H x W`` in [0, 1].
        conditions: ``N`` or None.
        scores: each judge's ``N`` rewards.
    """
    nfe_before = policy.nfe  # shared with the reference and the method's frozen copies
    conds = task.eval_conditions()
    n = len(conds) if conds is not None else task.spec.eval_samples_per_condition
    own = method.eval_samples(conds, n) if method is not None else None
    step_kl = None
    if own is not None:
        images, kl = own
    else:
        images, kl, step_kl = _eval_rollout(policy, reference, task, conds, n)
    scores = {label: judge(images, conds) for label, judge in task.judges.items()}
    policy.nfe = nfe_before
    metrics: dict[str, float] = {}
    for label, values in scores.items():
        for stat, value in reward_summary(values).items():
            metrics[f"eval/{label}_{stat}"] = value
    gold = task.spec.gold_judge
    if gold is not None:
        metrics["eval/gold_proxy_gap"] = metrics[f"eval/{gold}_mean"] - metrics[f"eval/{task.spec.primary_judge}_mean"]
    metrics["eval/kl"] = kl
    if step_kl is not None:  # a sampler grid with a degenerate step puts most of the path KL there
        metrics["eval/kl_last_step"] = float(step_kl[-1])
        metrics["eval/kl_max_step_share"] = float(step_kl.max() / step_kl.sum()) if kl > 0 else 0.0
    if images.ndim == 3:  # sequences: B x V x L token probabilities
        metrics.update(sequence_metrics(images, conds, policy, task, pretrained_images))
        return metrics, images, conds, scores
    feats = image_features(images)
    metrics["eval/diversity"] = mean_pairwise_distance(feats, conds)
    metrics["eval/vendi"] = vendi_score(feats, conds)
    if pretrained_images is not None:
        metrics["eval/fd_pretrained"] = frechet_distance(feats, image_features(pretrained_images))
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
                  n: int) -> tuple[Tensor, float, Tensor]:
    """The eval rollout on the task's fixed noise: decoded samples, path KL and the ``T`` per-step KLs (means over
    samples).

    Deterministic given the task card and the policy's weights, so a process keeps the result for a policy whose
    weights equal the reference's (the pretrained model: the first evaluation of every run, and every evaluation
    of methods that never change the policy). A sweep worker then samples the pretrained eval set once per task
    instead of once per run and evaluation point; a policy with other weights is never served from the cache.
    Judges are not cached: they run on every evaluation.
    """
    key = None
    shared = ({p.data_ptr() for p in policy.denoiser.parameters()}
              & {p.data_ptr() for p in reference.denoiser.parameters()})
    # shared storage (Stable Diffusion's reference is the policy's UNet with its adapters switched off): equal
    # weights would not mean equal samples, so no cache
    own_print = None if shared else _fingerprint(policy.denoiser)
    if own_print is not None and own_print == _fingerprint(reference.denoiser):
        key = (task.spec, type(policy).__qualname__, str(policy.stds.device), own_print)
    if key is not None and key in _ROLLOUT_CACHE:
        images, kl, step_kl = _ROLLOUT_CACHE[key]
        return images.clone(), kl, step_kl.clone()
    generator = torch.Generator().manual_seed(task.spec.eval_seed)
    was_training = policy.training
    policy.eval()
    traj, kls = policy.rollout(conds, generator, batch=n, reference=reference)
    policy.train(was_training)
    images, kl, step_kl = policy.decode(traj.x0), kls.sum(1).mean().item(), kls.mean(0).double().cpu()
    if key is not None:
        _ROLLOUT_CACHE[key] = (images.clone(), kl, step_kl.clone())
    return images, kl, step_kl


FEATURE_SIZE = 32
"""Images larger than this are average-pooled to ``FEATURE_SIZE x FEATURE_SIZE`` before the pixel metrics."""


def image_features(images: Tensor) -> Tensor:
    """Pixels as metric features: unchanged up to ``FEATURE_SIZE`` px (the digits' 8 x 8), area-averaged down to
    ``FEATURE_SIZE`` px above it, so that diversity, Vendi and the Fréchet drift stay cheap and well-posed for
    512 px Stable Diffusion images (a covariance over 786k raw pixels is neither)."""
    if max(images.shape[-2:]) <= FEATURE_SIZE:
        return images
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), FEATURE_SIZE)


def sequence_metrics(samples: Tensor, conds: Tensor | None, policy: DiffusionPolicy, task: Task,
                     pretrained_samples: Tensor | None) -> dict[str, float]:
    """Domain metrics of decoded sequences (``B x V x L``): ``eval/diversity`` (mean pairwise normalised Hamming
    distance, per condition, averaged), ``eval/vendi`` (Hamming-kernel Vendi score), ``eval/novelty_frac`` and
    ``eval/novelty_hamming`` against the backbone's training set when the policy exposes it
    (``pretraining_data()``, as the shipped sequence backbones do),
    ``eval/tanimoto_diversity`` when the oracle decodes molecules (``smiles``), and ``eval/drift_tv`` (mean over
    positions of the total-variation distance between token frequencies and the pretrained model's)."""
    from .metrics.diversity import _groups
    from .metrics.sequences import hamming_vendi, mean_pairwise_hamming, novelty

    tokens = samples.argmax(1).cpu()
    groups = [tokens[idx] for idx in _groups(len(tokens), conds)]
    out = {"eval/diversity": float(np.mean([mean_pairwise_hamming(g) for g in groups])),
           "eval/vendi": float(np.mean([hamming_vendi(g) for g in groups]))}
    data = getattr(policy, "pretraining_data", None)
    if callable(data):
        out["eval/novelty_frac"], out["eval/novelty_hamming"] = novelty(tokens, data().cpu())
    smiles = getattr(task.oracle_reward, "smiles", None)
    if callable(smiles):
        from .rewards.molecules import tanimoto_diversity

        out["eval/tanimoto_diversity"] = tanimoto_diversity(smiles(samples))
    if pretrained_samples is not None:
        v = samples.shape[1]
        freq = torch.nn.functional.one_hot(tokens, v).float().mean(0)  # L x V
        ref = torch.nn.functional.one_hot(pretrained_samples.argmax(1).cpu(), v).float().mean(0)
        out["eval/drift_tv"] = 0.5 * (freq - ref).abs().sum(1).mean().item()
    return out


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


MAX_TILE = 128
"""Largest tile width (px) of a sample grid."""


GRID_HEADER_PX = 16
"""Height of the one-line header of the runner's sample and sequence grids (report panels crop it)."""
_GRID_LEFT, _GRID_PAD, _GRID_PER_ROW = 18, 4, 8


def sample_grid_panel(grid, columns: int = 4):
    """A report panel cut from a ``sample_grid`` image (PIL) drawn with the default ``per_row``: the header line
    dropped and the first ``columns`` samples of every row kept, so that the reward captions stay legible at a
    paper's column width. The canvas is ``left + per_row * (cell + pad) + pad`` wide, so the cut is exact."""
    width, height = grid.size
    step = (width - _GRID_LEFT - _GRID_PAD) // _GRID_PER_ROW  # cell width + pad
    return grid.crop((0, GRID_HEADER_PX, min(width, _GRID_LEFT + _GRID_PAD + columns * step), height))


def sample_grid(images: Tensor, conditions: Tensor | None, rewards: Tensor | None = None, per_row: int = _GRID_PER_ROW,
                scale: int = 4, label: str = "reward") -> np.ndarray:
    """A captioned ``H x W x 3`` uint8 grid: one row per condition (its first ``per_row`` samples), upscaled
    ``scale`` times, the condition id left of each row and each sample's reward under it.

    Args:
        images: ``N x C x h x w`` in [0, 1], C in {1, 3}.
        conditions: ``N`` or None (then rows of ``per_row`` in order).
        rewards: ``N`` rewards to print under the samples, or None.
        label: what the rewards are (named in the header line).
    """
    from PIL import Image, ImageDraw, ImageFont

    imgs = images.detach().cpu().float().clamp(0, 1)
    if imgs.shape[-1] * scale > MAX_TILE:  # large images (SD, 512 px): downscale the tiles instead of upscaling
        size = (MAX_TILE * imgs.shape[-2] // imgs.shape[-1], MAX_TILE)
        imgs = torch.nn.functional.interpolate(imgs, size=size, mode="area")
        scale = 1
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    index = torch.arange(len(imgs))
    if conditions is None:
        rows = [("", index[i : i + per_row]) for i in range(0, min(len(imgs), 8 * per_row), per_row)]
    else:
        conds = conditions.cpu()
        rows = [(str(int(c)), index[conds == c][:per_row]) for c in torch.unique(conds)]
    font = ImageFont.load_default()
    h, w = imgs.shape[-2] * scale, imgs.shape[-1] * scale
    cell_w, cap_h, left, pad, top = max(w, 42), (12 if rewards is not None else 0), _GRID_LEFT, _GRID_PAD, GRID_HEADER_PX
    canvas = Image.new("RGB", (left + per_row * (cell_w + pad) + pad, top + len(rows) * (h + cap_h + pad) + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    header = "rows: condition" + (f"; under each sample: {label}" if rewards is not None else "")
    draw.text((3, 2), header, fill="black", font=font)
    for i, (name, idx) in enumerate(rows):
        y = top + pad + i * (h + cap_h + pad)
        draw.text((3, y + h // 2 - 6), name, fill="black", font=font)
        for j, k in enumerate(idx.tolist()):
            x0 = left + pad + j * (cell_w + pad)
            tile = (imgs[k].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            canvas.paste(Image.fromarray(tile).resize((w, h), Image.NEAREST), (x0 + (cell_w - w) // 2, y))
            if rewards is not None:
                text = f"{float(rewards[k]):+.3f}"
                tw = draw.textlength(text, font=font)
                draw.text((x0 + (cell_w - tw) / 2, y + h + 1), text, fill="black", font=font)
    return np.array(canvas)  # a writable copy
