"""Sampler grids: the per-step KL sensitivity in closed form, the log-SNR grid, and the bound every current
embedded task card's sampler must meet (no single step holds most of the path KL)."""

import pytest
import torch

from benchsuite.metrics.sampler import parameter_kl_shares
from benchsuite.policies.base import DiffusionPolicy, gaussian_kl, logsnr_timesteps
from benchsuite.policies.digits import DIGITS_SCHEDULER_CONFIG
from benchsuite.registry import BACKBONES
from benchsuite.tasks import superseded_by, task_specs
from benchsuite.testing import TINY_SCHEDULER_CONFIG, TinyDenoiser

EMBEDDED = ("digits", "ehrlich", "selfies", "selfies-chembl")
MAX_STEP_SHARE = 1 / 3
"""No step of a current embedded card's pretrained sampler may hold more than this share of the path KL under
small random parameter changes (measured: 0.29 digits -v1, 0.15 sequences; the digits -v0 trailing grid 0.94)."""
MAX_EPS_SHARE = 0.10
"""Nor, on the image backbones, more than this share of the closed-form sensitivity per unit of eps change
(a uniform share is 1 / T = 0.05 at 20 steps; measured 0.058 on the -v1 digits grid)."""


def _policy(schedule=DIGITS_SCHEDULER_CONFIG, **kw):
    return DiffusionPolicy(TinyDenoiser((1, 2, 2)), schedule, (1, 2, 2), decoder=lambda x: x, **kw)


@pytest.mark.parametrize("kw", [dict(timestep_spacing="trailing"), dict(timestep_spacing="leading", steps_offset=1),
                                dict(timestep_spacing="logsnr", max_timestep=951)])
def test_kl_sensitivity_is_half_the_snr_ratio_minus_one(kw):
    """At eta = 1, d mean / d eps = -(1 - alpha) / sqrt(alpha (1 - a)) with alpha = a / a' and
    sigma^2 = (1 - a')(1 - alpha) / (1 - a), so slope^2 / (2 sigma^2) = (SNR' / SNR - 1) / 2 exactly."""
    p = _policy(num_steps=20, **kw)
    a, ap = p.alpha.double(), p.alpha_prev.double()
    snr, snr_prev = a / (1 - a), ap / (1 - ap)
    torch.testing.assert_close(p.kl_sensitivity.double(), (snr_prev / snr - 1) / 2, rtol=2e-4, atol=0)


def test_kl_sensitivity_is_the_kl_of_a_unit_eps_change():
    """The definition, by autograd-free finite change: move eps by delta at one unclipped state and compare
    gaussian_kl of the two means (summed over the D = 4 dims, each moved by delta) with D * sensitivity * delta^2."""
    p = _policy(schedule={**DIGITS_SCHEDULER_CONFIG, "clip_sample": False}, num_steps=10,
                timestep_spacing="logsnr", max_timestep=951)
    x = 0.3 * torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    for k in range(10):
        eps = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(k))
        a, ap, s = p.alpha[k].double(), p.alpha_prev[k].double(), p.stds[k].double()

        def mean(e):
            x0 = (x.double() - (1 - a).sqrt() * e) / a.sqrt()
            return ap.sqrt() * x0 + (1 - ap - s**2).sqrt() * e

        delta = 1e-3
        kl = gaussian_kl(mean(eps.double() + delta), mean(eps.double()), s)
        assert kl.mean().item() == pytest.approx(4 * float(p.kl_sensitivity[k]) * delta**2, rel=1e-3)


def test_logsnr_grid_is_uniform_in_log_snr_and_valid():
    acp = torch.from_numpy(__import__("diffusers").DDPMScheduler(**DIGITS_SCHEDULER_CONFIG).alphas_cumprod.numpy())
    t = logsnr_timesteps(acp.double(), 20, 951, float(acp[0]))
    assert t[0] == 951 and t[-1] >= 1 and bool((t[1:] < t[:-1]).all())
    lam = torch.log(acp.double() / (1 - acp.double()))
    levels = torch.cat([lam[t], lam[:1]])  # the last step lands on alphas_cumprod[0]
    steps = levels[1:] - levels[:-1]
    assert bool((steps > 0).all())
    assert steps.max() / steps.min() < 1.6  # integer timesteps: as uniform as they allow (ideal: 1)
    # more steps than distinct timesteps below the start, and a start beyond the schedule, are refused
    with pytest.raises(ValueError):
        logsnr_timesteps(acp.double(), 30, 20, float(acp[0]))
    with pytest.raises(ValueError):
        logsnr_timesteps(acp.double(), 20, 1000, float(acp[0]))
    # and on a grid too dense for distinct integer timesteps near t = 0, collisions are pushed apart
    dense = logsnr_timesteps(torch.from_numpy(
        __import__("diffusers").DDPMScheduler(**TINY_SCHEDULER_CONFIG).alphas_cumprod.numpy()).double(), 200, 999,
        float(acp[0]))
    assert len(set(dense.tolist())) == 200 and int(dense.min()) >= 1


def test_logsnr_options_are_validated():
    with pytest.raises(ValueError, match="max_timestep applies"):
        _policy(num_steps=5, timestep_spacing="trailing", max_timestep=900)
    with pytest.raises(ValueError, match="steps_offset applies"):
        _policy(num_steps=5, timestep_spacing="logsnr", steps_offset=1)


def _current_embedded_cards():
    specs = task_specs()
    return [tid for tid, spec in specs.items() if spec.backbone in EMBEDDED and superseded_by(tid, specs) is None]


def _distinct_samplers():
    """One current card per distinct (backbone, sampler): cards that share both share the measurement."""
    seen = {}
    for tid in _current_embedded_cards():
        spec = task_specs()[tid]
        seen.setdefault((spec.backbone, spec.sampler, spec.eval_conditions is None), tid)
    # the longest sequence backbone (L = 256, 10 s) in the slow tier
    return [pytest.param(t, marks=pytest.mark.slow) if "l256" in t else t for t in sorted(seen.values())]


def _shares(task_id, batch=64):
    spec = task_specs()[task_id]
    policy = BACKBONES.make(spec.backbone, **dict(spec.sampler))
    conds = None if spec.eval_conditions is None else torch.tensor(spec.eval_conditions).repeat(batch)[:batch]
    return policy, parameter_kl_shares(policy, conds, batch, seed=0)


@pytest.mark.parametrize("task_id", _distinct_samplers())
def test_no_step_of_a_current_embedded_sampler_holds_most_of_the_path_kl(task_id):
    policy, shares = _shares(task_id)
    assert shares.sum().item() == pytest.approx(1.0)
    assert shares.max().item() <= MAX_STEP_SHARE, f"step {int(shares.argmax())} holds {shares.max():.2f}"
    if task_specs()[task_id].backbone == "digits":
        eps = policy.kl_sensitivity.double()
        assert (eps / eps.sum()).max().item() <= MAX_EPS_SHARE


@pytest.mark.slow  # 8 s
def test_the_superseded_v0_digits_grid_fails_the_bound():
    """The measure can fail: the trailing grid of digits-jpeg-compress-v0 puts almost all of it on the last step."""
    policy, shares = _shares("digits-jpeg-compress-v0")
    assert int(shares.argmax()) == policy.num_steps - 1 and shares.max().item() > 0.8
    assert superseded_by("digits-jpeg-compress-v0", task_specs()) == "digits-jpeg-compress-v2"  # the newest


def test_current_embedded_cards_are_the_ones_expected():
    cards = _current_embedded_cards()
    assert {"digits-jpeg-compress-v2", "digits-jpeg-incompress-v1", "digits-classifier-v2", "digits-ink-v0"} <= set(cards)
    # the trailing-grid cards (digits-{jpeg-compress,jpeg-incompress,classifier}-v0) are superseded; a digits card
    # first published on the log-SNR grid (digits-ink-v0) is current at v0
    assert all(dict(task_specs()[c].sampler).get("timestep_spacing") == "logsnr"
               for c in cards if c.startswith("digits"))
