"""The digits consistency model (SQDF's x0 predictor): boundary condition, loading rules, and the property it is
shipped for (it scores like a final sample where a Tweedie estimate is blurry)."""

import pytest
import torch

from benchsuite.errors import MissingWeightsError
from benchsuite.policies.consistency import (
    CONSISTENCY_WEIGHTS_PATH,
    boundary_scalings,
    load_consistency_model,
    teacher_digest,
)


def test_boundary_scalings_by_hand():
    c_skip, c_out = boundary_scalings(torch.tensor([0, 1, 999]), sigma_data=0.5, timestep_scaling=10.0)
    # t = 1: scaled 10, c_skip = 0.25 / 100.25, c_out = 10 / sqrt(100.25)
    torch.testing.assert_close(c_skip, torch.tensor([1.0, 0.25 / 100.25, 0.25 / (9990**2 + 0.25)]))
    torch.testing.assert_close(c_out, torch.tensor([0.0, 10 / 100.25**0.5, 9990 / (9990**2 + 0.25) ** 0.5]))


def test_shipped_model_loads_frozen_and_is_the_identity_at_t0():
    model = load_consistency_model()
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    out = model(x, torch.zeros(4, dtype=torch.int64), torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out, x)


def test_missing_or_stale_weights_say_how_to_rebuild(tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(MissingWeightsError, match="train_consistency_model.py"):
        load_consistency_model(tmp_path / "absent.safetensors")
    stale = tmp_path / "stale.safetensors"
    save_file(load_file(str(CONSISTENCY_WEIGHTS_PATH)), str(stale), metadata={"teacher_digest": "0" * 16})
    assert teacher_digest() != "0" * 16
    with pytest.raises(MissingWeightsError, match="stale"):
        load_consistency_model(stale)


def test_digits_policy_carries_it_and_it_scores_like_a_final_sample():
    """Early in the chain (states 2-4 of the -v1 grid) the Tweedie estimate is blurry and compresses better than the
    sample it stands for (reward bias > 0.02 kB); the consistency model's bias is a few times smaller."""
    from benchsuite.methods.sqdf import predict_x0
    from benchsuite.tasks import make_task

    task = make_task("digits-jpeg-compress-v1")
    policy = task.make_policy()
    assert policy.x0_predictor is not None
    conds = torch.arange(10).repeat(8)
    traj, _ = policy.rollout(conds, torch.Generator().manual_seed(0))
    jpeg = task.judges["jpeg"]
    final = jpeg(policy.decode(traj.x0), conds)
    for j in (2, 3, 4):
        state = torch.full((80,), j)
        with torch.no_grad():
            tweedie = jpeg(policy.decode(predict_x0(policy, traj.latents[:, j], state, conds, 1)), conds)
            cm = jpeg(policy.decode(policy.consistency_x0(traj.latents[:, j], state, conds)), conds)
        bias_tweedie, bias_cm = (tweedie - final).mean().item(), (cm - final).mean().item()
        assert bias_tweedie > 0.02 and abs(bias_cm) < bias_tweedie / 2, (j, bias_tweedie, bias_cm)
