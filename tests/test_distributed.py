"""Data-parallel gradient sync: 2 processes with b chains each take the same optimizer step as 1 process with the
2b chains together (ddpo-pytorch shipped without this sync once: its issue #10)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchsuite import distributed

SCRIPT = Path(__file__).with_name("distributed_ddpo_update.py")


def _script():
    spec = importlib.util.spec_from_file_location("distributed_ddpo_update", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_path_does_not_touch_accelerate(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    assert distributed.accelerator() is None
    assert distributed.prepare(module, optimizer) == (module, optimizer)
    assert distributed.unwrap(module) is module
    assert (distributed.num_processes(), distributed.process_index(), distributed.local_budget(10)) == (1, 0, 10)
    code = "import sys, benchsuite.methods.ddpo, benchsuite.policies.sd; print('accelerate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "False"


def test_local_budget_splits_the_global_budget(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        shares.append(distributed.local_budget(10))
    assert shares == [4, 3, 3]


@pytest.mark.distributed  # starts 2 processes under accelerate launch: the distributed tier of .ci/run
def test_two_processes_with_batch_b_step_like_one_process_with_batch_2b(tmp_path, monkeypatch):
    from benchsuite.policies.sd_tiny import save_tiny_sd

    model = save_tiny_sd(tmp_path / "tiny-sd")
    tasks = tmp_path / "tasks"
    (tasks / "prompts").mkdir(parents=True)
    (tasks / "prompts" / "tiny-animals.txt").write_text("cat\ndog\nfox\nant\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("WORLD_SIZE", None)
    # --multi_gpu is accelerate's torchrun launcher; without CUDA it starts CPU processes (gloo). Its --cpu flag
    # would start a single process here (several only through mpirun).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           str(SCRIPT), "--model", str(model), "--tasks", str(tasks), "--batch", "2", "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tasks))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    script = _script()
    joint = script.update(str(model), per_process_batch=4, rank=0, world=1)  # one process, all 4 chains
    alone = script.update(str(model), per_process_batch=2, rank=0, world=2)  # rank 0's half, no sync

    assert [r["denoiser"] for r in ranks] == ["DistributedDataParallel"] * 2 and joint["denoiser"] == "SDDenoiser"
    scale = max(g.abs().max() for g in joint["grads"])
    tol = dict(rtol=1e-4, atol=1e-5 * scale)  # float noise of a different batch split, relative to the gradient
    for g0, g1, gj in zip(ranks[0]["grads"], ranks[1]["grads"], joint["grads"], strict=True):
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)  # synchronised: identical in both processes
        torch.testing.assert_close(g0, gj, **tol)  # the mean over the joint batch
    assert not all(torch.allclose(ga, gj, **tol) for ga, gj in zip(alone["grads"], joint["grads"]))  # not vacuous
    assert ranks[0]["stats"]["grad_norm"] == pytest.approx(joint["stats"]["grad_norm"], rel=1e-4)
    # AdamW's first step moves each weight by about lr * sign(gradient): compare where the sign is not float noise
    joint_grad = dict(zip(joint["params"], joint["grads"], strict=True))  # trainable params and LoRA keys align
    compared = 0
    for key, value in joint["params"].items():
        torch.testing.assert_close(ranks[0]["params"][key], ranks[1]["params"][key], rtol=0, atol=0)
        grad = joint_grad[key]
        clear = grad.abs() > 1e-3 * grad.abs().max()
        torch.testing.assert_close(ranks[0]["params"][key][clear], value[clear], rtol=1e-4, atol=1e-6)
        compared += int(clear.sum())
    assert compared > 0.9 * sum(v.numel() for v in joint["params"].values())


def test_a_subclass_with_its_own_step_is_not_data_parallel_until_it_says_so():
    from benchsuite.methods.best_of_n import BestOfN
    from benchsuite.methods.bo import BayesianOptimization

    class Tweaked(BestOfN):  # no step of its own: BestOfN's, which is data-parallel
        pass

    assert BestOfN.runs_data_parallel() and Tweaked.runs_data_parallel()
    assert BayesianOptimization.data_parallel and not BayesianOptimization.runs_data_parallel()
