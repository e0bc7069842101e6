"""sequence-ga's operators on tiny inputs, checked by hand (holo-bench's DiscreteEvolution rules)."""

import pytest
import torch

from benchsuite.methods.sequence_ga import SequenceGAConfig, mutate, next_generation, recombine, survivors


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_survivors_are_the_top_half_by_linear_quantile():
    # sorted -1, 0.1, 0.3, 0.5: the 0.5 quantile is (0.1 + 0.3) / 2 = 0.2
    assert survivors(torch.tensor([0.1, 0.5, -1.0, 0.3]), 0.5).tolist() == [False, True, False, True]
    # survival 0.25: the 0.75 quantile is 0.3 + 0.25 * (0.5 - 0.3) = 0.35
    assert survivors(torch.tensor([0.1, 0.5, -1.0, 0.3]), 0.25).tolist() == [False, True, False, False]


def test_mostly_infeasible_generation_survives_whole():
    # the median is the infeasible value: every particle survives (holo keeps all when its threshold is inf)
    assert survivors(torch.tensor([-1.0, -1.0, -1.0, 0.2]), 0.5).all()


def test_recombination_takes_each_position_from_one_of_two_parents():
    parents = torch.tensor([[0] * 8, [1] * 8])
    only_second = recombine(parents, 50, 0.0, gen())
    assert all(row.unique().numel() == 1 for row in only_second)  # a copy of one parent
    mixed = recombine(parents, 200, 0.5, gen())
    assert set(mixed.unique().tolist()) <= {0, 1}
    assert any(row.unique().numel() == 2 for row in mixed)  # some children mix both parents
    assert 0.4 < mixed.float().mean() < 0.6


def test_mutation_rate_and_identity():
    tokens = torch.full((4, 6), 3)
    assert torch.equal(mutate(tokens, 32, 0.0, gen()), tokens)
    big = torch.zeros(2000, 32, dtype=torch.int64)
    out = mutate(big, 32, 0.1, gen(1))
    changed = (out != big).float().mean().item()
    # a position is redrawn with probability 0.1 and the draw differs from 0 with probability 31/32
    expected = 0.1 * 31 / 32
    assert abs(changed - expected) < 4 * (expected * (1 - expected) / big.numel()) ** 0.5
    assert out.max() < 32 and out.min() >= 0


def test_next_generation_keeps_survivors_and_refills_from_them():
    tokens = torch.tensor([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4]])
    scores = torch.tensor([0.9, -1.0, 0.8, 0.1])
    out = next_generation(tokens, scores, vocab_size=8, mutation_prob=0.0, recombine_prob=0.5,
                          survival_quantile=0.5, generator=gen())
    assert out[0].tolist() == [1, 1, 1, 1] and out[2].tolist() == [3, 3, 3, 3]  # survivors, unmutated
    assert set(out[[1, 3]].unique().tolist()) <= {1, 3}  # refilled from the survivors 1 and 3


@pytest.mark.parametrize("field, value", [("mutation_prob", 1.0), ("recombine_prob", -0.1),
                                          ("survival_quantile", 1.0), ("init", "zinc")])
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        SequenceGAConfig(**{field: value})


def test_refuses_an_image_task_in_one_line():
    from benchsuite.config import resolve
    from benchsuite.errors import ConfigError
    from benchsuite.runner import run

    with pytest.raises(ConfigError, match="token-sequence backbone"):
        run(resolve("toy-brightness-v0", "sequence-ga", budget=32), write=False)


def test_product_is_the_best_queried_sequences():
    """Elitism as best-of-N keeps it: the final evaluation judges the 16 best queried sequences, so its mean is the
    mean of the 16 best rewards of the query log (the judge is the oracle's function)."""
    import numpy as np

    from benchsuite.config import resolve
    from benchsuite.runner import run

    result = run(resolve("toy-ehrlich-v0", "sequence-ga", seed=0, budget=512, eval_fractions=(0.0, 1.0)),
                 write=False)
    rewards = result.query_log.reward
    assert len(rewards) == 512
    assert result.final["eval/ehrlich_mean"] == pytest.approx(np.sort(rewards)[-16:].mean(), abs=1e-6)
