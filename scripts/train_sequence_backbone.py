"""Train the shipped sequence backbones and write their weights (safetensors, EMA weights).

Usage:
    python scripts/train_sequence_backbone.py [--model NAME ...] [--steps N] [--out-dir DIR] [--eval N]
    python scripts/train_sequence_backbone.py --model selfies-l32 --training-set-only

Without ``--model`` every model of ``benchsuite.policies.sequence.shipped_models()`` is trained. Every setting
comes from the model's ``ShippedModel`` entry (``TrainConfig``, ``DenoiserConfig``, the data process); the run is
deterministic (fixed seed, one thread, deterministic algorithms). Data: ``num_sequences`` sequences drawn once
from the oracle's own generative process (feasible DMP chains for Ehrlich, the random-SELFIES process for
molecules), as ``V x L`` one-hot relaxations in [-1, 1]. The CRF pairwise potential starts at the data's log
bigram frequencies (``TrainConfig.pair_smoothing``). Loss: cross-entropy of the denoiser's logits against
the clean tokens at a uniformly drawn timestep (x0-parameterized denoiser, see ``sequence.py``). The output
file's metadata records the configs (what ``load_denoiser`` checks) plus the final loss; its SHA-256 goes into the
folder's ``SHA256SUMS`` (``benchsuite.weights.record_digests``), which the loaders check.

``--eval N`` (default 256) samples N sequences from the trained policy (20 DDIM steps, eta 1, seed 1234) and
prints the oracle statistics: feasibility rate and value of the samples against those of the training data.

A model whose training set is slow to draw (``STORED_TRAINING_SETS``: ``selfies-l32``) also gets that set written
to the package's data folder, which the novelty metrics then read instead of drawing it again in every process;
``--training-set-only`` writes just that file (a few seconds), without training.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import save_file

from benchsuite.policies.sequence import (
    SEQUENCE_SCHEDULER_CONFIG,
    STORED_TRAINING_SETS,
    ShippedModel,
    SequenceDenoiser,
    one_hot_relaxation,
    sequence_policy,
    shipped_models,
    token_probabilities,
    write_training_set,
)
from benchsuite.weights import record_digests


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def log_bigram_frequencies(data: torch.Tensor, vocab_size: int, smoothing: float) -> torch.Tensor:
    """``V x V``: ``log((n_ab + s) / (n_a + s V))`` over the consecutive token pairs (a, b) of ``N x L`` data."""
    pairs = data[:, :-1] * vocab_size + data[:, 1:]
    counts = torch.bincount(pairs.flatten(), minlength=vocab_size**2).view(vocab_size, vocab_size).double()
    probs = (counts + smoothing) / (counts.sum(1, keepdim=True) + smoothing * vocab_size)
    return probs.log().float()


def train(model: ShippedModel, log_every: int = 100) -> tuple[dict[str, torch.Tensor], float]:
    """Train ``model``; returns its EMA state dict and the mean loss over the last ``log_every`` steps."""
    cfg = model.train
    gen = torch.Generator().manual_seed(cfg.seed)  # data, batches, noise and timesteps
    data = model.sample_data(cfg.num_sequences, gen)  # N x L int64
    torch.manual_seed(cfg.seed)  # initialization
    net = SequenceDenoiser(model.denoiser).train()
    if model.denoiser.pairwise:
        with torch.no_grad():
            net.pair.copy_(log_bigram_frequencies(data, model.denoiser.vocab_size, cfg.pair_smoothing))
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    scheduler = DDPMScheduler(**SEQUENCE_SCHEDULER_CONFIG)
    acp = scheduler.alphas_cumprod.to(torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))

    recent: deque[float] = deque(maxlen=log_every)
    start = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen)
        clean = data[idx]  # B x L
        x0 = one_hot_relaxation(clean, model.denoiser.vocab_size)  # B x V x L
        t = torch.randint(len(acp), (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.cross_entropy(net.logits(xt, t), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip_norm)
        opt.step()
        sched.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                ema[k].lerp_(v, 1.0 - decay)
        recent.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - start
            print(f"  step {step + 1:5d}/{cfg.steps}  loss {sum(recent) / len(recent):.4f}  {elapsed:6.1f} s",
                  flush=True)
    return {k: v.contiguous() for k, v in ema.items()}, sum(recent) / len(recent)


def train_and_save(model: ShippedModel, out_dir: Path | None = None
                   ) -> tuple[Path, dict[str, torch.Tensor], float, float]:
    """Train ``model`` and write its EMA weights with the configs as metadata, into the package (``out_dir`` None)
    or ``out_dir``; returns the file, the state dict, the final loss and the training seconds."""
    start = time.perf_counter()
    state, final_loss = train(model)
    seconds = time.perf_counter() - start
    out = model.weights_path if out_dir is None else out_dir / model.weights_path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**model.metadata(), "final_loss": json.dumps(final_loss), "train_seconds": f"{seconds:.1f}",
                "torch_version": torch.__version__}
    save_file(state, str(out), metadata=metadata)
    record_digests(out)  # the folder's SHA256SUMS: the loaders refuse a file that differs from it
    return out, state, final_loss, seconds


def oracle_report(model: ShippedModel, n: int, weights: Path) -> dict[str, float]:
    """Feasibility and reward statistics of ``n`` samples of the trained policy and of ``n`` training sequences."""
    from benchsuite.policies.sequence import load_denoiser

    policy = sequence_policy(model.name, pretrained=False)
    policy.denoiser = load_denoiser(model, weights)
    traj, _ = policy.rollout(None, torch.Generator().manual_seed(1234), batch=n)
    probs = policy.decode(traj.x0)
    data = one_hot_relaxation(model.sample_data(n, torch.Generator().manual_seed(4321)), model.denoiser.vocab_size)
    data_probs = token_probabilities(data)
    if model.data == "ehrlich":
        from benchsuite.rewards.ehrlich import Ehrlich, EhrlichFeasibility

        reward, feasible = Ehrlich(**model.data_kwargs), EhrlichFeasibility(**model.data_kwargs)
    else:
        from benchsuite.rewards.molecules import SelfiesQED, tokens_to_smiles

        reward = SelfiesQED(**model.data_kwargs)

        def feasible(p: torch.Tensor) -> torch.Tensor:
            from benchsuite.rewards.molecules import mol_from_smiles

            smiles = tokens_to_smiles(p.argmax(1))
            return torch.tensor([float(mol_from_smiles(s) is not None) for s in smiles])

    out = {}
    for label, p in (("samples", probs), ("data", data_probs)):
        f, r = feasible(p), reward(p)
        ok = r[f > 0]
        out[f"{label}_feasible"] = f.mean().item()
        out[f"{label}_reward_mean_feasible"] = ok.mean().item() if len(ok) else float("nan")
        out[f"{label}_reward_max"] = r.max().item()
        out[f"{label}_reward_mean"] = r.mean().item()
        out[f"{label}_distinct"] = len({tuple(row) for row in p.argmax(1).tolist()}) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", choices=sorted(shipped_models()), help="model(s) to train")
    parser.add_argument("--steps", type=int, default=None, help="override the optimizer steps (changes metadata)")
    parser.add_argument("--out-dir", type=Path, default=None, help="output folder (default: the package's)")
    parser.add_argument("--eval", type=int, default=256, help="samples for the oracle report (0: none)")
    parser.add_argument("--training-set-only", action="store_true",
                        help="write the stored training set of each named model that has one, and train nothing")
    args = parser.parse_args()
    if args.training_set_only and (args.steps is not None or args.out_dir is not None):
        parser.error("--training-set-only writes the package's stored training sets; drop --steps and --out-dir")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in args.model or sorted(shipped_models()):
        if name in STORED_TRAINING_SETS and args.steps is None and args.out_dir is None:
            print(f"{name}: wrote its training set to {write_training_set(name)}", flush=True)
        if args.training_set_only:
            continue
        model = shipped_models()[name]
        if args.steps is not None:
            model = replace(model, train=replace(model.train, steps=args.steps))
        print(f"{name}: {model.denoiser}", flush=True)
        out, state, final_loss, seconds = train_and_save(model, args.out_dir)
        params = sum(v.numel() for v in state.values())
        print(f"{name}: wrote {out} ({params / 1e3:.0f} k params, {out.stat().st_size / 2**20:.2f} MB) in "
              f"{seconds:.1f} s, final loss {final_loss:.4f}", flush=True)
        if args.eval:
            start = time.perf_counter()
            report = oracle_report(model, args.eval, out)
            print(f"{name}: oracle report ({time.perf_counter() - start:.1f} s): "
                  + json.dumps({k: round(v, 4) for k, v in report.items()}), flush=True)


if __name__ == "__main__":
    main()
