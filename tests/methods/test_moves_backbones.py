"""Contract: every fine-tuning method (a registered method that trains the policy) moves every embedded backbone
with its preset: after two steps the weights have changed and the policy's path KL to the pretrained model is
positive. (DRaFT-1 was an exact no-op on the sequence backbones: their x0 prediction is one-hot near t = 0.)"""

import pytest
import torch

from benchsuite.config import resolve
from benchsuite.registry import METHODS
from benchsuite.runner import build_method
from benchsuite.tasks import make_task

BACKBONE_TASKS = {"digits": "digits-jpeg-compress-v1", "ehrlich": "ehrlich-s32-l32-v0", "selfies": "selfies-qed-v0"}
FINE_TUNERS = [m for m in METHODS.builtin_names() if METHODS.load(m).trains_policy]
DEFAULT_TIER = {(m, "digits") for m in FINE_TUNERS} | {("draft", "ehrlich")}
"""The pairs the default test tier runs (every fine-tuner on digits, and the DRaFT-1 regression on a sequence
backbone); the other sequence pairs (about 27 s on 2 cores) run in CI's slow step, so the default tier stays under
5 minutes. Batches of 8: a no-op shows at any batch size, and the six default pairs take about 19 s of the file's
run instead of 30 s at batches of 32."""


@pytest.mark.parametrize(("method_name", "backbone"), [
    pytest.param(m, b, marks=() if (m, b) in DEFAULT_TIER else pytest.mark.slow)
    for m in FINE_TUNERS for b in sorted(BACKBONE_TASKS)])
def test_every_fine_tuner_moves_every_embedded_backbone(method_name, backbone):
    task_id = BACKBONE_TASKS[backbone]
    task = make_task(task_id)
    budget = 16  # two steps of 8 (one online round of 16 on the sequence tasks, then its inner steps)
    overrides = {"batch_size": 8, **({"grad_share_every": 0} if method_name == "ctrl" else {})}  # no diagnostic
    cfg = resolve(task_id, method_name, budget=budget, overrides=overrides)
    policy = task.make_policy()
    before = {k: v.clone() for k, v in policy.trainable_state_dict().items()}
    method = build_method(cfg, task, policy, torch.Generator().manual_seed(0))
    oracle = task.train_oracle(budget)
    while not oracle.exhausted:
        method.step(oracle)
    after = policy.trainable_state_dict()
    change = max((after[k] - before[k]).abs().max().item() for k in before)
    assert change > 0, f"{method_name} left the {backbone} weights unchanged"
    reference = task.make_policy()
    conds = task.eval_conditions()
    n = 8 if conds is None else len(conds[:8])
    _, kls = policy.rollout(None if conds is None else conds[:8], torch.Generator().manual_seed(1), batch=n,
                            reference=reference)
    assert kls.sum(1).mean().item() > 0, f"{method_name} on {backbone}: zero path KL"
