"""Ehrlich functions: hand-computed values, feasibility, quantization, holo's reference values, the reward contract."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from benchsuite.errors import ConfigError
from benchsuite.registry import REWARDS
from benchsuite.rewards.ehrlich import (
    Ehrlich,
    EhrlichConfig,
    EhrlichFeasibility,
    EhrlichFunction,
    circulant_band,
    is_ergodic,
    stationary_distribution,
)
from benchsuite.testing import check_reward

REFERENCE = Path(__file__).parent / "data" / "ehrlich_reference.json"

# A 4-state cycle with self-loops: i -> i and i -> i+1 (mod 4) allowed, everything else banned.
CYCLE = torch.tensor([
    [0.5, 0.5, 0.0, 0.0],
    [0.0, 0.5, 0.5, 0.0],
    [0.0, 0.0, 0.5, 0.5],
    [0.5, 0.0, 0.0, 0.5],
])


def tiny(quantization=None, epistasis=0.0) -> EhrlichFunction:
    """4 states, 2 motifs of length 2: a0 = (0, 1) with gap 2 (offsets 0, 2), a1 = (2, 3) with gap 1."""
    return EhrlichFunction(CYCLE, torch.tensor([[0, 1], [2, 3]]), torch.tensor([[2], [1]]), quantization, epistasis)


@pytest.mark.parametrize("seq, expected", [
    # x[0]=0, x[2]=1 -> a0 complete; x[4]=2, x[5]=3 -> a1 complete: 1 * 1
    ([0, 0, 1, 1, 2, 3, 3, 0], 1.0),
    # a0 at l=2 (x2=0, x4=1) complete; no 2 and no 3 anywhere -> a1 scores 0: 1 * 0
    ([0, 0, 0, 0, 1, 1, 1, 1], 0.0),
    # a0: the best placement matches one element (x[l+2]=1 for l=0, 1) -> 1/2; a1: one element (2 at l=4..6,
    # never followed by 3) -> 1/2: 0.25
    ([1, 1, 1, 1, 2, 2, 2, 2], 0.25),
    # a1 at l=0 (2, 3); a0 at l=2 (x2=0, x4=1): 1 * 1
    ([2, 3, 0, 0, 1, 1, 1, 1], 1.0),
    # 0 -> 2 is banned: infeasible whatever the motifs
    ([0, 2, 3, 3, 0, 0, 1, 1], -math.inf),
    # 1 -> 0 is banned (the last transition)
    ([2, 3, 0, 0, 1, 1, 1, 0], -math.inf),
])
def test_hand_computed_values(seq, expected):
    assert tiny()(torch.tensor([seq])).item() == expected


def test_feasibility_is_the_absence_of_banned_transitions():
    f = tiny()
    x = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0, 0, 0], [3, 0, 1, 1, 2, 2, 3, 3],
                      [0, 1, 2, 3, 0, 1, 2, 1], [3, 2, 1, 0, 0, 0, 0, 0]])
    assert f.feasible(x).tolist() == [True, True, True, False, False]


def test_quantization_floors_the_match_count():
    # one motif (0, 1, 2, 3), contiguous; q = 2 -> f1 = ceil(4/2) = 2: n matches score (n // 2) / 2
    f = EhrlichFunction(CYCLE, torch.tensor([[0, 1, 2, 3]]), torch.tensor([[1, 1, 1]]), quantization=2)
    x = torch.tensor([
        [0, 1, 2, 3, 3, 3],  # 4 matches -> 1.0
        [0, 1, 2, 2, 2, 2],  # 3 -> 0.5
        [0, 1, 1, 1, 1, 1],  # 2 -> 0.5
        [0, 0, 0, 0, 0, 0],  # 1 -> 0.0
    ])
    assert f(x).tolist() == [1.0, 0.5, 0.5, 0.0]
    assert EhrlichFunction(CYCLE, torch.tensor([[0, 1, 2, 3]]), torch.tensor([[1, 1, 1]]))(x).tolist() == [
        1.0, 0.75, 0.5, 0.25]


def test_epistasis_bends_partial_motifs():
    # h = 1/2 for both motifs; e = 1: (1 + 1 * 0.5 * (0.5 - 1)) * 0.5 = 0.375 each, product 0.140625
    assert tiny(epistasis=1.0)(torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2]])).item() == 0.375 ** 2


def test_ergodicity_and_stationary_distribution():
    assert is_ergodic(CYCLE)
    assert not is_ergodic(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # periodic
    assert not is_ergodic(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))  # reducible
    pi = stationary_distribution(CYCLE)
    assert torch.allclose(pi, torch.full((4,), 0.25))
    band = circulant_band(6, 1)
    assert band.sum(1).tolist() == [3] * 6 and band[0].tolist() == [True, True, False, False, False, True]


def test_seeded_instance_properties():
    f = EhrlichFunction.generate(EhrlichConfig(num_states=32, dim=64, num_motifs=4, motif_length=4, seed=0))
    banned = (~f.allowed).sum(1)
    assert banned.min() >= 6 and banned.max() <= 7  # 32 - (2 * int(0.4 * 32) + 1) = 7, minus a diagonal hit
    assert f.allowed.diagonal().all()
    pi = f.stationary
    assert torch.allclose(pi @ f.transition_matrix, pi, atol=1e-6)
    samples = f.sample(64, 64, torch.Generator().manual_seed(1))
    assert f.feasible(samples).all()
    opt = f.optimal_solution(64)
    assert f(opt[None]).item() == 1.0
    assert (f.offsets[:, -1] <= 3 + (64 - 16) // 4).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"num_motifs": 4, "motif_length": 4, "dim": 15}, "exceeds dim"),
    ({"motif_length": 1}, "motif_length"),
    ({"motif_length": 4, "quantization": 5}, "quantization"),
    ({"motif_length": 5, "quantization": 3, "dim": 40}, "caps a present motif"),
    ({"num_states": 1}, "num_states"),
])
def test_bad_configs_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Ehrlich(**kwargs)


def _reference():
    return json.loads(REFERENCE.read_text())["instances"]


def _check_against_record(record: dict) -> None:
    cfg = EhrlichConfig(**record["config"])
    f = EhrlichFunction.generate(cfg)
    assert f.motifs.tolist() == record["motifs"]
    assert f.spacings.tolist() == record["spacings"]
    assert ["".join("1" if a else "0" for a in row) for row in f.allowed.tolist()] == record["allowed"]
    assert f.sample(8, cfg.dim, torch.Generator().manual_seed(cfg.seed)).tolist() == record["dmp_samples"]
    ours = f(torch.tensor(record["sequences"])).tolist()
    theirs = [-math.inf if v is None else v for v in record["values"]]
    assert ours == theirs  # exact: same float32 arithmetic


@pytest.mark.parametrize("index", range(6))
def test_matches_stored_holo_values(index):
    records = _reference()
    assert len(records) == 6
    _check_against_record(records[index])


def _holo_ehrlich():
    pytest.importorskip("holo")
    try:
        import pooch  # noqa: F401
    except ModuleNotFoundError:  # holo's package init imports its lookup tables, which need pooch; Ehrlich does not
        sys.modules.setdefault("pooch", types.ModuleType("pooch"))
    from holo.test_functions.closed_form import Ehrlich as HoloEhrlich

    return HoloEhrlich


@pytest.mark.parametrize("v, L, c, k, q, e, seed", [
    (32, 32, 4, 4, 4, 0.0, 11), (32, 128, 4, 4, None, 0.0, 5), (5, 12, 2, 3, None, 0.0, 2), (16, 48, 3, 4, 2, 0.3, 9),
])
def test_matches_live_holo(v, L, c, k, q, e, seed):
    holo_cls = _holo_ehrlich()
    h = holo_cls(num_states=v, dim=L, num_motifs=c, motif_length=k, quantization=q, epistasis_factor=e,
                 random_seed=seed)
    f = EhrlichFunction.generate(EhrlichConfig(v, L, c, k, q, e, seed))
    assert torch.equal(h.transition_matrix, f.transition_matrix)
    assert torch.equal(torch.stack(h.motifs), f.motifs) and torch.equal(torch.stack(h.spacings), f.spacings)
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([h.initial_solution(16), torch.randint(v, (16, L), generator=gen), h.optimal_solution()[None]])
    assert torch.equal(f.sample(16, L, torch.Generator().manual_seed(seed)), x[:16])
    assert torch.equal(h(x), f(x))


def test_reward_contract_on_probabilities():
    reward = Ehrlich(num_states=4, dim=8, num_motifs=2, motif_length=2, seed=0)
    feasible = reward.sample_feasible(5, torch.Generator().manual_seed(0))
    x = torch.cat([feasible, torch.tensor([[0, 2, 0, 2, 0, 2, 0, 2]])])
    probs = torch.softmax((torch.nn.functional.one_hot(x, 4).permute(0, 2, 1).float() * 2 - 1) / 0.1, 1)
    out = reward(probs.requires_grad_())
    assert out.shape == (6,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not out.requires_grad
    expected = reward.function(x)
    assert out[:5].tolist() == expected[:5].tolist() and ((out[:5] >= 0) & (out[:5] <= 1)).all()
    assert out[5].item() == -1.0 and math.isinf(expected[5].item())  # banned 0 -> 2 in this instance
    assert reward(x).tolist() == out.tolist()  # token ids give the same values
    assert EhrlichFeasibility(num_states=4, dim=8, num_motifs=2, motif_length=2)(probs).tolist() == [1.0] * 5 + [0.0]
    with pytest.raises(ValueError, match="token probabilities"):
        reward(torch.rand(2, 5, 8))
    with pytest.raises(ValueError, match="token ids"):
        reward(torch.full((2, 8), 4))


def test_infeasible_value_is_configurable_and_finite():
    x = torch.tensor([[0, 2, 0, 2, 0, 2, 0, 2]])
    assert Ehrlich(num_states=4, dim=8, num_motifs=2, motif_length=2, infeasible_value=0.0)(x).item() == 0.0
    with pytest.raises(ConfigError, match="finite"):
        Ehrlich(infeasible_value=-math.inf)


SEQUENCE_REWARDS = [n for n in REWARDS.builtin_names() if getattr(REWARDS.load(n), "sample_kind", None) == "sequence"]


@pytest.mark.parametrize("name", SEQUENCE_REWARDS)
def test_every_sequence_reward_scores_probabilities(name):
    """The call contract of every registered sequence reward (tests/rewards/test_reward_contract.py defers here):
    built with defaults, it scores ``B x V x L`` probabilities to ``(B,)`` finite floats, deterministically, and
    rejects a batch of the wrong vocabulary size."""
    from benchsuite.policies.sequence import one_hot_relaxation, token_probabilities

    reward = REWARDS.make(name)
    ids = torch.randint(reward.vocab_size, (6, reward.length), generator=torch.Generator().manual_seed(0))
    ids[0] = 0
    probs = token_probabilities(one_hot_relaxation(ids, reward.vocab_size))
    out = check_reward(name, probs)  # benchsuite.testing's call contract
    assert out.dtype == torch.float32 and reward(probs).tolist() == out.tolist()
    with pytest.raises(ValueError):
        reward(torch.rand(2, reward.vocab_size + 1, reward.length))
