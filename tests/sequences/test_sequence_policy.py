"""Sequence backbones: representation helpers, denoiser and policy shapes, shipped weights, pretrained sample
quality, task cards and registry entries."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from benchsuite.errors import ConfigError, MissingWeightsError
from benchsuite.policies.sequence import (
    DECODER_TEMPERATURE,
    SEQUENCE_SCHEDULER_CONFIG,
    SequenceDenoiser,
    build_denoiser,
    chain_marginal_logits,
    ehrlich_policy,
    load_denoiser,
    one_hot_relaxation,
    sequence_policy,
    shipped_model,
    shipped_models,
    token_probabilities,
    tokens,
)
from benchsuite.registry import BACKBONES, REWARDS
from benchsuite.tasks import load_spec

SEQUENCE_TASKS = ["ehrlich-s32-l32-v0", "ehrlich-s32-l64-v0", "ehrlich-s32-l128-v0", "selfies-qed-v0"]

# Share of feasible samples of the shipped models, measured by scripts/train_sequence_backbone.py (256 samples,
# 20 DDIM steps, eta 1, seed 1234): 0.984 (L=32), 0.980 (L=64), 0.977 (L=128) when trained; rerun on the committed
# files with torch 2.13: 0.984, 0.992, 0.973 and 0.980 (L=256, README table). Thresholds keep slack.
MIN_FEASIBLE = {"ehrlich-s32-l32": 0.9, "ehrlich-s32-l64": 0.9, "ehrlich-s32-l128": 0.9, "ehrlich-s32-l256": 0.9}


def test_relaxation_decoder_and_tokens_round_trip():
    ids = torch.randint(7, (3, 5), generator=torch.Generator().manual_seed(0))
    x = one_hot_relaxation(ids, 7)
    assert x.shape == (3, 7, 5) and set(x.unique().tolist()) == {-1.0, 1.0}
    probs = token_probabilities(x)
    assert torch.allclose(probs.sum(1), torch.ones(3, 5))
    assert tokens(probs).tolist() == ids.tolist()
    # temperature 0.25: a clean sample over 7 tokens decodes to 1 / (1 + 6 exp(-2 / 0.25)) = 0.998 for its token
    assert DECODER_TEMPERATURE == 0.25
    assert torch.allclose(probs.gather(1, ids[:, None]), torch.tensor(1 / (1 + 6 * torch.e**-8.0)))
    x.requires_grad_()
    token_probabilities(x)[:, 0].sum().backward()  # differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_chain_marginals_match_enumeration_of_every_sequence():
    """Hand check: for V = 3, L = 4 the 81 sequences are enumerated, p(x) ~ exp(sum u_i(x_i) + sum W[x_i, x_i+1])
    is normalised, and each position's marginal must equal softmax over V of the forward-backward output."""
    import itertools

    g = torch.Generator().manual_seed(3)
    unary = torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 2
    pair = -torch.rand(3, 3, generator=g, dtype=torch.float64) * 6
    seqs = torch.tensor(list(itertools.product(range(3), repeat=4)))  # 81 x 4
    for b in range(2):
        score = unary[b, seqs, torch.arange(4)].sum(1) + pair[seqs[:, :-1], seqs[:, 1:]].sum(1)
        p = torch.softmax(score, 0)
        expected = torch.stack([torch.stack([p[seqs[:, i] == v].sum() for v in range(3)]) for i in range(4)], 1)
        got = torch.softmax(chain_marginal_logits(unary[b:b + 1], pair), dim=1)[0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_chain_marginals_stay_accurate_at_the_scale_of_low_noise_steps():
    """At low noise the unary log-likelihoods reach the hundreds: float32 marginals must stay within 2e-3 of the
    float64 ones (the logsumexp recursion this replaced was measured at 6e-4 at scale 300)."""
    g = torch.Generator().manual_seed(0)
    unary = torch.randn(16, 32, 32, generator=g) * 300
    pair = -torch.rand(32, 32, generator=g) * 14
    truth = torch.softmax(chain_marginal_logits(unary.double(), pair.double()), 1)
    got = torch.softmax(chain_marginal_logits(unary, pair), 1).double()
    assert (got - truth).abs().max().item() < 2e-3
    assert torch.isfinite(chain_marginal_logits(unary, pair)).all()


def test_denoiser_is_x0_parameterized():
    model = shipped_model("ehrlich-s32-l32")
    net = build_denoiser(model, seed=1)
    x = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 250, 600, 999])
    eps = net(x, t, None)
    assert eps.shape == (4, 32, 32)
    a = net.alphas_cumprod[t].view(-1, 1, 1)
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    assert torch.allclose(x0[:3], net.predict_x0(x, t)[:3], atol=1e-4)  # t = 999: a ~ 1e-9, too ill-conditioned
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected B x 32 x 32"):
        net(torch.randn(2, 31, 32), t[:2], None)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_random_init_policy_shapes(name):
    model = shipped_model(name)
    policy = sequence_policy(name, num_steps=3, pretrained=False)
    v, L = model.denoiser.vocab_size, model.denoiser.length
    assert policy.sample_shape == (v, L)
    traj, _ = policy.rollout(None, torch.Generator().manual_seed(0), batch=2)
    assert traj.latents.shape == (2, 4, v, L) and traj.log_probs.shape == (2, 3)
    probs = policy.decode(traj.x0)
    assert probs.shape == (2, v, L) and torch.allclose(probs.sum(1), torch.ones(2, L))
    assert policy.stds.min() > 0


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_weights_match_the_configs_of_the_module(name):
    model = shipped_model(name)
    path = model.weights_path
    assert path.is_file(), f"missing {path}; run python scripts/train_sequence_backbone.py --model {name}"
    assert path.stat().st_size < 4 * 2**20
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    for key, value in model.metadata().items():
        assert metadata[key] == value, key
    assert json.loads(metadata["scheduler_config"]) == SEQUENCE_SCHEDULER_CONFIG
    assert 0 < json.loads(metadata["final_loss"]) < 3
    assert shapes == {k: tuple(v.shape) for k, v in SequenceDenoiser(model.denoiser).state_dict().items()}
    assert not load_denoiser(model).training


def test_loading_refuses_missing_or_stale_weights(tmp_path):
    model = shipped_model("ehrlich-s32-l32")
    with pytest.raises(MissingWeightsError, match="train_sequence_backbone.py --model ehrlich-s32-l32"):
        load_denoiser(model, tmp_path / "nothing.safetensors")
    stale = dict(model.metadata(), train_config=json.dumps({"steps": 1}))
    path = tmp_path / "stale.safetensors"
    save_file(load_file(str(model.weights_path)), str(path), metadata=stale)
    with pytest.raises(MissingWeightsError, match="stale .*train_config"):
        load_denoiser(model, path)
    with pytest.raises(ConfigError, match="no shipped sequence model"):
        ehrlich_policy(length=33)


def _feasible_rate(name: str, n: int) -> float:
    from benchsuite.rewards.ehrlich import EhrlichFeasibility

    model = shipped_model(name)
    policy = sequence_policy(name)
    traj, _ = policy.rollout(None, torch.Generator().manual_seed(1234), batch=n)
    return EhrlichFeasibility(**model.data_kwargs)(policy.decode(traj.x0)).mean().item()


def test_pretrained_ehrlich_l32_samples_are_mostly_feasible():
    assert _feasible_rate("ehrlich-s32-l32", 64) >= MIN_FEASIBLE["ehrlich-s32-l32"]


@pytest.mark.slow
def test_pretrained_selfies_samples_are_valid_drug_like_molecules():
    from benchsuite.rewards.molecules import SelfiesQED

    policy = sequence_policy("selfies-l32")
    traj, _ = policy.rollout(None, torch.Generator().manual_seed(1234), batch=256)
    qed = SelfiesQED()(policy.decode(traj.x0))
    # measured: every sample a non-empty molecule, QED mean 0.33 (training data 0.36), max 0.74
    assert (qed > 0).float().mean() >= 0.95 and 0.25 <= qed.mean() <= 0.45


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MIN_FEASIBLE if n != "ehrlich-s32-l32"])
def test_pretrained_ehrlich_samples_are_mostly_feasible_slow(name):
    assert _feasible_rate(name, 256) >= MIN_FEASIBLE[name]


@pytest.mark.parametrize("task_id", SEQUENCE_TASKS)
def test_task_cards_pair_each_backbone_with_its_oracle(task_id):
    spec = load_spec(task_id)
    assert spec.backbone in BACKBONES and spec.train_conditions is None and spec.eval_conditions is None
    assert spec.eval_samples_per_condition == 128 and spec.default_budget == 2048
    sampler = dict(spec.sampler)
    oracle = spec.oracle.build()
    assert oracle.sample_kind == "sequence" and not oracle.differentiable
    if spec.backbone == "ehrlich":
        model = shipped_model(f"ehrlich-s{sampler['num_states']}-l{sampler['length']}")
        kwargs = dict(spec.oracle.kwargs)
        kwargs.pop("infeasible_value")
        assert kwargs == model.data_kwargs  # the backbone was pretrained on this instance's DMP
    else:
        model = shipped_model(f"selfies-l{dict(spec.oracle.kwargs)['length']}")
    for _, judge in spec.judges:
        assert judge.build().sample_kind == "sequence"
    # the card's sampler arguments build the backbone (random init keeps this fast)
    policy = BACKBONES.load(spec.backbone)(**sampler, pretrained=False)
    assert policy.sample_shape == (model.denoiser.vocab_size, model.denoiser.length)


def test_registry_entries():
    assert {"ehrlich", "selfies"} <= set(BACKBONES.names())
    assert {"ehrlich", "ehrlich-feasibility", "selfies-qed", "selfies-sa"} <= set(REWARDS.names())
    for name in ("ehrlich", "ehrlich-feasibility", "selfies-qed", "selfies-sa"):
        assert REWARDS.load(name).name == name


def test_training_script_is_deterministic():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "train_sequence_backbone.py"
    spec = importlib.util.spec_from_file_location("train_sequence_backbone", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = shipped_model("ehrlich-s32-l32")
    model = replace(base, train=replace(base.train, steps=3, num_sequences=128, batch_size=8))
    first, loss1 = module.train(model, log_every=10**6)
    second, loss2 = module.train(model, log_every=10**6)
    assert loss1 == loss2 and all(torch.equal(first[k], second[k]) for k in first)
    # the pairwise potential starts at the log bigram frequencies: transitions never seen are strongly negative
    data = model.sample_data(128, torch.Generator().manual_seed(0))
    w = module.log_bigram_frequencies(data, 32, 0.5)
    assert torch.allclose(w.exp().sum(1), torch.ones(32), atol=1e-5)
