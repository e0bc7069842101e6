"""scripts/gpu_check.py: its baseline sampler is a correct DDIM chain with log-probs, bad arguments exit 2, and its
CPU smoke mode runs every section with only the packages the GPU machine has (tier ``smoke``, about a minute)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# absent from the GPU machine's image and not carried by scripts/gpu_wheels.sh: the check must not import them
ABSENT_ON_GPU = ("mlflow", "optuna", "open_clip", "rdkit", "selfies", "ray")
BLOCKER = """\
import importlib.machinery, sys
BLOCK = set({names!r})
class Blocking:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCK:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
    find_distributions = staticmethod(importlib.machinery.PathFinder.find_distributions)
    invalidate_caches = staticmethod(importlib.machinery.PathFinder.invalidate_caches)
sys.meta_path[:] = [Blocking if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_plain_loop_is_the_policys_ddim_chain_with_its_log_probs():
    """The baseline calls diffusers' DDIMScheduler.step; its std, means and log-probs must be the policy's own, so
    that the throughput comparison sets two samplers of the same chain against each other."""
    from benchsuite.policies.base import gaussian_log_prob

    gpu_check = load_script()
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_sd_sampling import build_policy

    args = type("Args", (), dict(tiny=True, resolution=16, steps=3, precision="fp16", device="cpu"))
    policy = build_policy(args)
    scheduler = gpu_check.plain_scheduler(policy)
    stds = torch.stack([gpu_check.ddim_scheduler_std(scheduler, int(t), policy.eta) for t in scheduler.timesteps])
    torch.testing.assert_close(stds.float(), policy.stds)
    assert scheduler.timesteps.tolist() == policy.timesteps.tolist()
    den = policy.sd_denoiser
    conds = torch.tensor([0, 3, 5])
    images, latents, log_probs = gpu_check.plain_loop(
        den.unet, policy.decoder.vae, den.prompt_embeds, conds, den.null_condition, scheduler, policy.sample_shape,
        policy.guidance_scale, policy.eta, torch.Generator().manual_seed(0), torch.float32)
    assert images.shape == (3, 3, 16, 16) and latents.shape == (3, 4, 4, 8, 8) and log_probs.shape == (3, 3)
    dims = latents[0, 0].numel()
    with torch.no_grad():
        for k in range(policy.num_steps):
            mean, _ = policy.step_mean(latents[:, k], k, conds)
            want = gaussian_log_prob(latents[:, k + 1], mean, policy.step_std(k, 3)) / dims  # ddpo-pytorch: mean
            torch.testing.assert_close(log_probs[:, k], want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(images, policy.decode(latents[:, -1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--smoke", "--resolution", "30"], "multiple of 8"),
    (["--smoke", "--batch", "0"], "--batch must be a positive integer"),
    pytest.param([], "no CUDA device", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    gpu_check = load_script()
    with pytest.raises(SystemExit) as info:
        gpu_check.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and message in err[-1]


def test_gpu_check_sh_without_wheels_says_what_to_run(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gpu_check.sh", tmp_path / "scripts")
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "gpu_check.sh"), "--smoke"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "scripts/gpu_wheels.sh" in done.stderr and not done.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.smoke
def test_smoke_mode_runs_every_section_without_the_packages_the_gpu_lacks(tmp_path):
    from benchsuite.registry import METHODS

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER.format(names=ABSENT_ON_GPU))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "BENCHSUITE_WEIGHTS_DIR": str(tmp_path / "weights")}
    env.pop("BENCHSUITE_SD_MODEL", None)
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--smoke", "--write", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    written = list((tmp_path / "out").glob("*-smoke.md"))
    assert len(written) == 1
    table = written[0].read_text()
    assert table in done.stdout and table.startswith("benchsuite smoke mode")
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    by_section: dict[str, list[list[str]]] = {}
    for row in rows:
        by_section.setdefault(row[0].removeprefix("| "), []).append(row)
    sampling = by_section["sampling"]
    assert [r[1].split(":")[0] for r in sampling] == ["benchsuite", "plain loop"]
    assert "x the plain loop" in sampling[0][-1] and "64 px, 2 steps" in sampling[0][2]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in sampling)
    memory = [r[1] for r in by_section["memory"]]
    assert memory == [f"one {m} training step" for m in ("DDPO", "SQDF", "DRaFT-1", "VARD", "CTRL")]
    assert [r[1] for r in by_section["end to end"]] == METHODS.names()
    assert all(r[-1].startswith("ok") for r in by_section["memory"])
    # every image method runs; the methods of one sample kind (their contract_task) are listed as skipped
    for r in by_section["end to end"]:
        specific = METHODS.load(r[1]).contract_task is not None
        assert r[-1].startswith("skipped: not an image method" if specific else "ok"), r
