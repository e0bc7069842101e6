"""The ``Method`` base class's shared parts against hand computations on tiny tensors: the reward scale, the
batch query with reward gradients, the state it saves for every method, and the shared config fields."""

import math

import pytest
import torch

from benchsuite.budget import BudgetedOracle
from benchsuite.methods.base import ChainUpdateFields, Method, MethodConfig, OptimizerFields, RewardScale
from benchsuite.methods.ctrl import CTRLConfig
from benchsuite.methods.ddpo import DDPO, DDPOConfig
from benchsuite.methods.draft import DRaFTConfig
from benchsuite.methods.sqdf import SQDFConfig
from benchsuite.methods.vard import VARDConfig
from benchsuite.rewards.brightness import MeanBrightness
from benchsuite.tasks import TaskInfo
from benchsuite.testing import check_method_config, tiny_policy

TASK = TaskInfo(id="tiny", train_conditions=torch.tensor([0, 1, 2]), oracle_differentiable=True)


def test_running_scale_is_the_std_of_every_reward_so_far_whatever_the_batches():
    scale = RewardScale("running")
    scale.update(torch.tensor([1.0, 3.0]))
    scale.update(torch.tensor([5.0]))
    # 1, 3, 5: mean 3, squared deviations 4 + 0 + 4 = 8, sample variance 8 / 2 = 4
    assert scale.value == pytest.approx(2.0)
    assert (scale.count, scale.mean) == (3, pytest.approx(3.0))
    batch = RewardScale("batch")
    batch.update(torch.tensor([1.0, 3.0]))
    batch.update(torch.tensor([0.0, 4.0]))
    assert batch.value == pytest.approx(math.sqrt(8.0))  # the last batch only: deviations 2, 2 -> 8 / 1
    assert RewardScale("none").value == 1.0


def test_a_degenerate_scale_is_one():
    scale = RewardScale("running")
    assert scale.value == 1.0  # nothing seen yet
    scale.update(torch.tensor([2.0, 2.0]))
    assert scale.value == 1.0  # all equal


class _Plain(Method):
    """A method that makes an optimizer and declares nothing about its state."""

    name = "plain"
    display_name, colour, marker = "plain", None, "o"

    def setup(self, policy, task, generator) -> None:
        super().setup(policy, task, generator)
        self.make_optimizer(1e-2, 0.0)

    def step(self, oracle):
        return {}


def test_the_base_saves_the_optimizer_and_the_reward_scale_of_every_method():
    plain = _Plain()
    plain.setup(tiny_policy(num_steps=2), TASK, torch.Generator().manual_seed(0))
    assert plain.reward_scale is None and {"optimizer"} <= set(plain.state_dict())  # no reward_norm field
    ddpo = DDPO(DDPOConfig(batch_size=4, train_batch_size=4))
    ddpo.setup(tiny_policy(num_steps=2), TASK, torch.Generator().manual_seed(0))
    ddpo.reward_scale.update(torch.tensor([1.0, 3.0, 5.0]))
    state = ddpo.state_dict()
    assert state["reward_scale"]["count"] == 3 and "optimizer" in state
    fresh = DDPO(DDPOConfig(batch_size=4, train_batch_size=4))
    fresh.setup(tiny_policy(num_steps=2), TASK, torch.Generator().manual_seed(1))
    fresh.load_state_dict(state)
    assert fresh.reward_scale.value == pytest.approx(2.0)


def test_query_batch_returns_the_paid_for_reward_gradients():
    plain = _Plain()
    policy = tiny_policy(num_steps=2)
    plain.setup(policy, TASK, torch.Generator().manual_seed(0))
    oracle = BudgetedOracle(MeanBrightness(), 3)
    batch = plain.query_batch(oracle, reward_grads=True)
    assert oracle.used == 3 and not batch.rewards.requires_grad and not batch.samples.requires_grad
    # r = mean over the 4 pixels of (x0 + 1) / 2 clamped to [0, 1]: d r / d x0 = 1 / 8 where x0 is inside [-1, 1]
    inside = (batch.trajectory.x0.abs() < 1).float()
    torch.testing.assert_close(batch.reward_grads, inside / 8)
    assert plain.query_batch(BudgetedOracle(MeanBrightness(), 3)).reward_grads is None


@pytest.mark.parametrize("config", [DDPOConfig, DRaFTConfig, SQDFConfig, VARDConfig, CTRLConfig])
def test_the_shared_fields_are_declared_once_and_checked_there(config):
    assert issubclass(config, OptimizerFields)
    with pytest.raises(ValueError, match="max_grad_norm"):
        config(max_grad_norm=0)
    if issubclass(config, ChainUpdateFields):
        with pytest.raises(ValueError, match="timestep_fraction"):
            config(timestep_fraction=0)


def test_the_methods_keep_their_own_optimizer_defaults():
    # the papers' values stay where a method redeclares a shared field
    assert (DDPOConfig().lr, DRaFTConfig().lr, SQDFConfig().lr, VARDConfig().lr, CTRLConfig().lr) == (
        3e-4, 2e-4, 1e-3, 1e-4, 1e-4)
    assert DRaFTConfig().weight_decay == 0.0 and DDPOConfig().weight_decay == 1e-4
    assert not issubclass(MethodConfig, OptimizerFields)  # best-of-N, BO, the GAs train no policy


class _PluginDDPO(DDPO):
    """A plugin's DDPO variant that declares its name only."""

    name = "plugin-ddpo"


class _DeclaredDDPO(DDPO):
    """A DDPO variant that declares who it is."""

    name = "declared-ddpo"
    display_name, colour, marker = "DDPO+", "#123456", "h"


def test_a_subclass_does_not_inherit_who_its_parent_is():
    assert (DDPO.colour, DDPO.marker, DDPO.display_name) == ("#0072B2", "^", "DDPO")
    assert (_PluginDDPO.colour, _PluginDDPO.marker, _PluginDDPO.display_name) == (None, "o", None)
    assert _PluginDDPO.tune_params is None and _PluginDDPO.leaderboard is True  # the defaults, not DDPO's tuple
    assert _PluginDDPO.undeclared == Method.IDENTITY and DDPO.undeclared == ("leaderboard",)
    assert (_DeclaredDDPO.colour, _DeclaredDDPO.marker) == ("#123456", "h") and _DeclaredDDPO.tune_params is None
    assert _PluginDDPO.Config is DDPOConfig and _PluginDDPO.data_parallel  # behaviour is still inherited


def test_the_contract_names_the_declarations_a_method_left_out(monkeypatch):
    from benchsuite.registry import METHODS

    real_load = METHODS.load
    monkeypatch.setattr(METHODS, "load", lambda n: {"plugin-ddpo": _PluginDDPO}.get(n) or real_load(n))
    with pytest.raises(AssertionError, match="plugin-ddpo: declare display_name, colour, marker in the class body"):
        check_method_config("plugin-ddpo")
