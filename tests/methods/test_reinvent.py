"""reinvent's math on tiny tensors and tiny models, checked by hand, and short runs on the ChEMBL SELFIES cards."""

import itertools
import math

import pytest
import torch

from benchsuite.methods.reinvent import ReplayBuffer, augmented_likelihood_loss, first_occurrences
from benchsuite.policies.selfies_rnn import RnnConfig, SelfiesRNN, log_likelihood, scored_positions, token_kl

TINY = RnnConfig(vocab_size=3, length=3, embedding=2, hidden=3, layers=1)


def tiny_model(seed: int) -> SelfiesRNN:
    torch.manual_seed(seed)
    return SelfiesRNN(TINY).double()


def every_sequence(config: RnnConfig) -> torch.Tensor:
    """Every sequence the model can emit: symbols 1..V-1 up to an end token 0, zeros after it."""
    rows = []
    for body in range(config.length + 1):
        for symbols in itertools.product(range(1, config.vocab_size), repeat=body):
            rows.append(list(symbols) + [0] * (config.length - body))
    return torch.tensor(rows, dtype=torch.int64)


def test_augmented_likelihood_loss_by_hand():
    agent = torch.tensor([-10.0, -20.0], requires_grad=True)
    prior, scores = torch.tensor([-12.0, -18.0]), torch.tensor([0.5, 0.1])
    # targets -12 + 4 * 0.5 = -10 and -18 + 4 * 0.1 = -17.6: errors 0 and 2.4, mean square 2.88;
    # penalty 100 * mean(1/10, 1/20) = 7.5
    loss = augmented_likelihood_loss(agent, prior, scores, sigma=4.0, likelihood_penalty=100.0)
    assert loss.item() == pytest.approx(2.88 + 7.5)
    loss.backward()
    # d/da mean((t - a)^2) = -(t - a) (B = 2); d/da 100 * mean(-1/a) = 50 / a^2
    assert agent.grad.tolist() == pytest.approx([0.0 + 50 / 100, -2.4 + 50 / 400])


def test_loss_is_zero_when_the_agent_matches_the_target():
    prior, scores = torch.tensor([-30.0, -5.0]), torch.tensor([0.25, 1.0])
    agent = prior + 8.0 * scores
    assert augmented_likelihood_loss(agent, prior, scores, sigma=8.0).item() == 0.0


def test_replay_buffer_keeps_the_top_k_distinct_molecules():
    memory = ReplayBuffer(capacity=3, length=2)
    tokens = torch.tensor([[1, 0], [2, 0], [3, 0], [1, 1]])
    # "a" twice: its first entry stays
    memory.add(["a", "b", "c", "a"], tokens, torch.tensor([0.1, 0.9, 0.5, 0.95], dtype=torch.float64), torch.tensor([-1.0, -2, -3, -4]))
    assert memory.keys == ["b", "c", "a"]
    assert memory.scores.tolist() == [0.9, 0.5, 0.1] and memory.prior_ll.tolist() == [-2.0, -3.0, -1.0]
    assert memory.tokens.tolist() == [[2, 0], [3, 0], [1, 0]]
    # a new best, a repeat of "b" (ignored) and a tie with "c" (the earlier entry wins); "a" falls out
    memory.add(["d", "b", "e"], torch.tensor([[4, 0], [2, 2], [5, 0]]), torch.tensor([0.7, 0.99, 0.5], dtype=torch.float64),
               torch.zeros(3))
    assert memory.keys == ["b", "d", "c"] and memory.scores.tolist() == [0.9, 0.7, 0.5]


def test_replay_draws_distinct_rows_in_proportion_to_score():
    memory = ReplayBuffer(capacity=4, length=1)
    memory.add(["a", "b", "c"], torch.tensor([[1], [2], [3]]), torch.tensor([1.0, 0.0, -1.0]), torch.zeros(3))
    g = torch.Generator().manual_seed(0)
    assert all(memory.sample(1, g).tolist() == [0] for _ in range(20))  # zero and negative scores: never first
    assert sorted(memory.sample(3, g).tolist()) == [0, 1, 2]


def test_first_occurrences():
    tokens = torch.tensor([[1, 0], [2, 0], [1, 0], [3, 1], [2, 0]])
    assert first_occurrences(tokens).tolist() == [0, 1, 3]


def test_scored_positions():
    tokens = torch.tensor([[1, 2, 0, 0], [0, 0, 0, 0], [1, 2, 1, 2]])
    assert scored_positions(tokens).int().tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


def step_log_probs(model: SelfiesRNN, prefix: list[int]) -> torch.Tensor:
    """log p(. | prefix) computed one token at a time through the GRU's recurrence (not through ``logits``)."""
    x, hidden = torch.tensor([[model.start]]), None
    for token in [None, *prefix]:
        if token is not None:
            x = torch.tensor([[token]])
        out, hidden = model.gru(model.embed(x), hidden)
    return torch.log_softmax(model.head(out[0, 0]), -1)


@pytest.mark.parametrize("sequence", [[1, 2, 0], [2, 0, 0], [0, 0, 0], [1, 1, 2]])
def test_sequence_log_likelihood_is_the_sum_of_its_token_log_probabilities(sequence):
    model = tiny_model(0)
    body = sequence[: sequence.index(0) + 1] if 0 in sequence else sequence  # up to and including the end token
    by_hand = sum(step_log_probs(model, body[:t])[body[t]].item() for t in range(len(body)))
    got = log_likelihood(model, torch.tensor([sequence])).item()
    assert got == pytest.approx(by_hand, abs=1e-12)


def test_the_model_is_a_distribution_over_sequences():
    model = tiny_model(1)
    total = log_likelihood(model, every_sequence(TINY)).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_kl_is_zero_for_the_same_model_and_exact_in_expectation():
    agent, prior = tiny_model(2), tiny_model(3)
    seqs = every_sequence(TINY)
    with torch.no_grad():
        assert token_kl(agent, agent, seqs).abs().max().item() == 0.0
        p = log_likelihood(agent, seqs).exp()
        exact = (p * (log_likelihood(agent, seqs) - log_likelihood(prior, seqs))).sum().item()
        estimate = (p * token_kl(agent, prior, seqs)).sum().item()  # the chain-rule estimator's mean under agent
    assert exact > 0 and estimate == pytest.approx(exact, abs=1e-12)


def test_samples_pad_after_the_end_token_and_follow_the_generator():
    model = tiny_model(4)
    a = model.sample(200, torch.Generator().manual_seed(5))
    assert torch.equal(a, model.sample(200, torch.Generator().manual_seed(5)))
    ended = (a == 0).long().cumsum(1) > 0
    assert bool((a[ended] == 0).all())
    # the empirical frequencies match the model's probabilities (200 draws, loose)
    seqs = every_sequence(TINY)
    with torch.no_grad():
        probs = log_likelihood(model, seqs).exp()
    counts = torch.tensor([(a == s).all(1).sum().item() for s in seqs], dtype=torch.float64)
    assert counts.sum().item() == 200
    assert float((counts / 200 - probs.double()).abs().max()) < 0.1


# ---- the method on the ChEMBL SELFIES cards (molecule rewards: RDKit) ----------------------------------------------
@pytest.fixture
def rdkit():
    pytest.importorskip("rdkit")


@pytest.mark.usefixtures("rdkit")

def test_short_run_respects_the_budget_and_moves_the_agent():
    from benchsuite.config import resolve
    from benchsuite.runner import run

    result = run(resolve("selfies-chembl-qed-v1", "reinvent", budget=96, eval_fractions=(0.0, 1.0),
                         overrides={"batch_size": 32, "replay": 4}), write=False)
    assert len(result.query_log) == 96 and result.final["queries"] == 96
    assert result.curve[0]["eval/kl"] == 0.0 and result.final["eval/kl"] > 0
    assert math.isfinite(result.final["eval/qed_mean"]) and math.isfinite(result.final["select/qed_mean"])


@pytest.mark.parametrize("setting, message", [
    ({"sigma": 0.0}, "sigma must be > 0"), ({"lr": -1.0}, "lr must be > 0"), ({"replay": -1}, "replay must be >= 0"),
    ({"replay_capacity": 8}, "replay_capacity must be >= 1 and >= replay"),
])
@pytest.mark.usefixtures("rdkit")
def test_bad_settings_give_one_line_errors(setting, message):
    from benchsuite.config import resolve
    from benchsuite.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        resolve("selfies-chembl-qed-v1", "reinvent", overrides=setting)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.usefixtures("rdkit")
def test_refuses_a_task_outside_its_prior_in_one_line():
    from benchsuite.config import resolve
    from benchsuite.errors import ConfigError
    from benchsuite.runner import run

    with pytest.raises(ConfigError, match="selfies-chembl backbone") as info:
        run(resolve("toy-selfies-qed-v0", "reinvent", budget=64), write=False)
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("rdkit")
def test_a_finished_run_exports_its_trained_agent_which_load_prior_reloads(tmp_path):
    from safetensors import safe_open

    from benchsuite.config import resolve
    from benchsuite.methods.reinvent import AGENT_FILE
    from benchsuite.policies.selfies_rnn import load_prior
    from benchsuite.runner import CHECKPOINT, run

    config = resolve("toy-selfies-chembl-qed-v0", "reinvent", budget=8, eval_fractions=(0.0, 1.0),
                     overrides={"batch_size": 8, "replay": 0}, output_root=str(tmp_path))
    result = run(config)
    path = result.run_dir / AGENT_FILE
    assert sorted(p.name for p in result.run_dir.glob("*.safetensors")) == [AGENT_FILE]  # no policy weights
    with safe_open(path, "pt") as f:
        assert f.metadata()["run_id"] == config.run_id and f.metadata()["method"] == "reinvent"
    exported = load_prior(path).state_dict()  # the prior's loader: it checks the configs and data the file records
    # the agent as the run ended: the method's state in the checkpoint of the last evaluation
    trained = torch.load(result.run_dir / CHECKPOINT, weights_only=True)["method"]["agent"]
    prior = load_prior().state_dict()
    assert exported.keys() == trained.keys() == prior.keys()
    assert all(torch.equal(exported[k], trained[k]) for k in trained)
    assert not all(torch.equal(exported[k], prior[k]) for k in prior)
    # load_run samples the trained agent, not the card's diffusion prior
    import benchsuite
    from benchsuite.errors import ConfigError, MissingWeightsError
    from benchsuite.spaces import one_hot_tokens

    done = benchsuite.load_run(result.run_dir)
    drawn = done.sample(n=5, seed=3)
    agent = load_prior(path)
    expected = one_hot_tokens(agent.sample(5, torch.Generator().manual_seed(3)), agent.config.vocab_size)
    assert drawn.shape == expected.shape and torch.equal(drawn, expected)
    with pytest.raises(ConfigError, match="unconditionally"):
        done.sample([0, 1])
    path.unlink()
    with pytest.raises(MissingWeightsError, match="resuming the run") as info:
        benchsuite.load_run(result.run_dir)
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("rdkit")
def test_the_priors_digest_enters_the_run_ids_of_reinvent_only(tmp_path, monkeypatch):
    from benchsuite.config import config_yaml, resolve, resolve_file
    from benchsuite.errors import ConfigError
    from benchsuite.methods.reinvent import Reinvent
    from benchsuite.policies.selfies_rnn import PRIOR_WEIGHTS, TRAIN_SCRIPT
    from benchsuite.weights import weights_digest

    before = resolve("toy-selfies-chembl-qed-v0", "reinvent", budget=64)
    ddpo = resolve("digits-jpeg-compress-v1", "ddpo")
    assert before.method_digest == weights_digest([(PRIOR_WEIGHTS, TRAIN_SCRIPT)])
    # a method without weights of its own: nothing added to its config's dict, so its hash and run id are as before
    assert ddpo.method_digest == "" and "method_digest" not in ddpo.to_dict()
    written = tmp_path / "run.yaml"
    written.write_text(config_yaml(before))
    assert resolve_file(written).run_id == before.run_id

    retrained = tmp_path / PRIOR_WEIGHTS.name  # another prior (its digest is all that counts here)
    retrained.write_bytes(PRIOR_WEIGHTS.read_bytes() + b"\0")
    monkeypatch.setattr(Reinvent, "embedded_weights", classmethod(lambda cls: ((retrained, TRAIN_SCRIPT),)))
    after = resolve("toy-selfies-chembl-qed-v0", "reinvent", budget=64)
    assert after.method_digest != before.method_digest and after.run_id != before.run_id
    assert resolve("digits-jpeg-compress-v1", "ddpo").run_id == ddpo.run_id
    with pytest.raises(ConfigError, match="written for method digest") as info:  # a config of the old prior's run
        resolve_file(written)
    assert "\n" not in str(info.value)
