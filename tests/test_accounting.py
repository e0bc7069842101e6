"""PMO accounting (benchsuite.accounting): charges, the cache, the log and the metrics against hand counts."""

from typing import ClassVar

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from benchsuite.accounting import AccountingSpec, PmoOracle, canonical_smiles, parse_accounting  # noqa: E402
from benchsuite.domains.molecules import selfies_to_tokens, smiles_to_selfies  # noqa: E402
from benchsuite.errors import BudgetExhausted, ConfigError  # noqa: E402
from benchsuite.rewards.molecules import _SelfiesReward  # noqa: E402

VALUES = {"CCO": 0.2, "c1ccccc1": 0.4, "CCN": 0.1, "CC(=O)O": 0.8}
"""Hand-set oracle values by canonical SMILES."""


class StubMoleculeReward(_SelfiesReward):
    """Scores a molecule by ``VALUES`` of its canonical SMILES; counts the molecules it was asked for."""

    name: ClassVar[str] = "stub-molecule"
    version: ClassVar[str] = "0"

    def __init__(self):
        super().__init__()
        self.asked: list[str] = []

    def _molecule_score(self, smiles):
        key = canonical_smiles(smiles)
        self.asked.append(key)
        return VALUES[key]


def tokens(*smiles: str) -> torch.Tensor:
    """``B x L`` token ids; ``""`` is the all-padding sequence, the empty (invalid) molecule."""
    return selfies_to_tokens([smiles_to_selfies([s])[0] if s else "" for s in smiles])


def test_canonical_keys():
    assert canonical_smiles("OCC") == canonical_smiles("CCO") == "CCO"
    assert canonical_smiles("") is None and canonical_smiles("C1CC") is None


def test_hand_counted_sequence_with_repeats_and_invalid_molecules():
    reward = StubMoleculeReward()
    oracle = PmoOracle(reward, budget=4, spec=AccountingSpec(mode="pmo", freq=2))
    assert oracle.last_charged is None
    # A, B, A written otherwise, empty | B, C, empty, C | D
    out1 = oracle(tokens("CCO", "c1ccccc1", "OCC", ""))
    assert oracle.used == 2 and not oracle.exhausted
    out2 = oracle(tokens("c1ccccc1", "CCN", "", "NCC"))
    assert oracle.used == 3 and oracle.last_charged.tolist() == [False, True, False, False]
    out3 = oracle(tokens("OC(C)=O"))
    assert oracle.used == 4 and oracle.exhausted
    assert out1.tolist() == pytest.approx([0.2, 0.4, 0.2, 0.0])
    assert out2.tolist() == pytest.approx([0.4, 0.1, 0.0, 0.1])
    assert out3.tolist() == pytest.approx([0.8])
    assert reward.asked == ["CCO", "c1ccccc1", "CCN", "CC(=O)O"]  # each distinct molecule scored once
    log = oracle.query_log()
    assert log.charged.astype(int).tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 1]
    assert log.call.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert log.key[3] is None and log.key[2] == "CCO"
    assert oracle.record().tolist() == pytest.approx([0.2, 0.4, 0.1, 0.8])
    m = oracle.metrics()
    assert (m["pmo/charged"], m["pmo/cache_hits"], m["pmo/invalid"]) == (4, 3, 2)
    # by hand, freq 2, budget 4: top-1 curve 0 -> 0.4 at 2 calls -> 0.8 at 4: (2 * 0.2 + 2 * 0.6) / 4
    assert m["pmo/auc_top1"] == pytest.approx(0.4)
    # top-10 over fewer than 10: the mean of all; 0 -> 0.3 at 2 -> 0.375 at 4: (2 * 0.15 + 2 * 0.3375) / 4
    assert m["pmo/auc_top10"] == pytest.approx(0.24375)
    assert m["pmo/top1"] == pytest.approx(0.8) and m["pmo/top10"] == pytest.approx(0.375)
    assert 0 < m["pmo/diversity_top100"] <= 1
    with pytest.raises(BudgetExhausted):
        oracle(tokens("CCO"))


def test_unfinished_run_is_not_padded_and_finished_one_is():
    oracle = PmoOracle(StubMoleculeReward(), budget=6, spec=AccountingSpec(mode="pmo", freq=2))
    oracle(tokens("CCO", "c1ccccc1", "CCN", "OC(C)=O"))
    # 4 of 6 used: area so far (2 * 0.2 + 2 * 0.6) / 6; finished would add 2 * 0.8
    assert oracle.metrics()["pmo/auc_top1"] == pytest.approx(1.6 / 6)


def test_new_molecules_over_the_remaining_budget_charge_nothing():
    oracle = PmoOracle(StubMoleculeReward(), budget=3, spec=AccountingSpec(mode="pmo"))
    oracle(tokens("CCO", "CCN"))
    with pytest.raises(BudgetExhausted):
        oracle(tokens("c1ccccc1", "OC(C)=O"))
    assert oracle.used == 2 and len(oracle.query_log()) == 2
    oracle(tokens("CCO", "CCN", "", "c1ccccc1"))  # 4 samples, 1 new: fits
    assert oracle.used == 3


def test_free_limit_ends_the_run():
    oracle = PmoOracle(StubMoleculeReward(), budget=10, spec=AccountingSpec(mode="pmo", free_limit=3))
    oracle(tokens("CCO", "CCO"))
    assert not oracle.exhausted
    oracle(tokens("", "OCC"))
    assert oracle.exhausted and oracle.used == 1
    with pytest.raises(BudgetExhausted):
        oracle(tokens("CCN"))


def test_state_dict_round_trip_keeps_the_cache():
    import io

    reward = StubMoleculeReward()
    a = PmoOracle(reward, budget=5, spec=AccountingSpec(mode="pmo"))
    a(tokens("CCO", "", "CCN"))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = PmoOracle(reward, budget=5, spec=AccountingSpec(mode="pmo"))
    b.load_state_dict(torch.load(buffer, weights_only=True))
    reward.asked.clear()
    assert b(tokens("OCC")).tolist() == pytest.approx([0.2]) and reward.asked == [] and b.used == 2
    assert b.query_log().key == ("CCO", None, "CCN", "CCO")
    assert b.metrics() == {**b.metrics()}


@pytest.mark.parametrize("raw, message", [
    ("bogus", "accounting.mode"), ({"mode": "pmo", "freq": 0}, "accounting.freq"),
    ({"mode": "pmo", "every": 3}, "unknown accounting key"), (3, "accounting must be"),
])
def test_bad_accounting_blocks_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_accounting(raw, "card.yaml")
    assert "\n" not in str(err.value)


def test_default_accounting_is_none_so_old_cards_keep_their_digest():
    from benchsuite.config import task_digest
    from benchsuite.tasks import load_spec

    assert parse_accounting("queries", "x") is None and parse_accounting(None, "x") is None
    spec = load_spec("selfies-pmo-qed-v0")
    assert spec.accounting == AccountingSpec(mode="pmo")
    import dataclasses

    assert task_digest(spec) != task_digest(dataclasses.replace(spec, accounting=None))


def test_accounting_needs_keyable_oracle():
    from benchsuite.testing import MeanBrightness

    with pytest.raises(ConfigError, match="cache keys"):
        PmoOracle(MeanBrightness(), 4, AccountingSpec(mode="pmo"))


@pytest.mark.slow
def test_run_under_pmo_accounting_logs_charges(tmp_path):
    """A short run on the PMO card: the query log's charged column matches the budget, pmo/* metrics are logged at
    every evaluation point, and query_log.csv has the charged and key columns."""
    from benchsuite.config import resolve
    from benchsuite.runner import run

    cfg = resolve("selfies-pmo-qed-v0", "best-of-n", seed=0, budget=24, eval_fractions=(0.0, 1.0), overrides={"batch_size": 8},
                  task_overrides={"sampler.num_steps": 2}, output_root=str(tmp_path))
    result = run(cfg, write=True)
    log = result.query_log
    assert int(log.charged.sum()) == 24 and len(log) >= 24
    assert result.final["pmo/charged"] == 24
    assert all("pmo/auc_top10" in point for point in result.curve[1:])
    # every charged key is distinct and valid, every uncharged one repeats an earlier key or is invalid
    charged_keys = [k for k, c in zip(log.key, log.charged) if c]
    assert len(set(charged_keys)) == 24 and None not in charged_keys
    seen = set()
    for key, charged in zip(log.key, log.charged):
        assert bool(charged) == (key is not None and key not in seen)
        seen.add(key)
    lines = (result.run_dir / "query_log.csv").read_text().splitlines()
    assert lines[0] == "call,condition,reward,charged,key" and len(lines) == len(log) + 1
    assert np.isclose(result.final["pmo/top1"], max(log.reward))
