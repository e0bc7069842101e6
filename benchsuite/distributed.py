"""Data-parallel runs over several processes (one per GPU) through accelerate.

``accelerate launch --multi_gpu --num_processes N -m benchsuite run ...`` (or ``torchrun --nproc_per_node N``) runs
the rank-aware runner in N processes. On a machine without CUDA the same command starts N CPU processes that sync
over gloo (tests/test_distributed_run.py does this; accelerate's ``--cpu`` flag, or none, starts one process, and
several only through mpirun). Nothing here imports accelerate unless the process was started by such a launcher
(``WORLD_SIZE`` > 1): a plain ``python``/``benchsuite`` run takes the single-process path untouched.

Semantics (batch sizes per process, as in kvablack/ddpo-pytorch, whose sample and train batch sizes are per GPU):
- a method's ``batch_size`` (and ``train_batch_size``) is **per process**; one step of N processes queries
  ``batch_size x N`` samples in all (the global batch);
- the oracle budget is **global** and split evenly: each process spends ``B / N`` (``local_budget``; the runner
  refuses a budget that N does not divide, which would leave the processes out of step);
- every process seeds the same generator and draws the conditions and noise of the whole global batch, then rolls
  out and queries only its slice (``Method.query_batch``): the processes' chains are distinct, and the global batch
  is exactly the one a single process with batch ``batch_size x N`` draws. (Per-process seeds, as ddpo-pytorch
  uses, would give independent samples too but no run that one process can reproduce.) Rewards are ``gather``-ed
  for advantages and metrics;
- gradients are averaged over processes by DistributedDataParallel hooks during ``backward``, so an optimizer
  step equals (to float tolerance) a single-process step on the global minibatch: every process ends the step
  with the same weights (tests/test_distributed.py checks one update; ddpo-pytorch once shipped without this sync:
  its issue #10);
- rank 0 alone evaluates, logs and writes the run folder and checkpoints (with every process's oracle state, so
  that ``--resume`` restores each; it needs the same N).

Methods declare ``data_parallel = True`` when their ``step`` follows these rules (DDPO, pretrained, best-of-N); the runner
refuses several processes for the others and for tasks with online rounds, with one line.

How methods use it: ``Method.make_optimizer`` passes the denoiser and its optimizer through ``prepare`` (a
no-op in one process), so the methods' own ``loss.backward()`` calls synchronise gradients. Mixed precision is
the policy's business (the SD backbone keeps fp32 LoRA weights and autocasts itself), so the accelerator is
created with ``mixed_precision="no"`` and ``backward`` here is ``loss.backward`` with DDP's sync.

Limits: DDP requires that a parameter gets its gradient once per backward; a method that runs the denoiser
with gradients several times before one backward (DRaFT with K > 1) needs ``static_graph`` and is not covered.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
from torch import nn

_ACCELERATOR: Any = None


def launched() -> bool:
    """True in a process started by ``accelerate launch``/``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def accelerator():
    """The process's ``accelerate.Accelerator`` (created on first use), or None when not launched."""
    global _ACCELERATOR
    if not launched():
        return None
    if _ACCELERATOR is None:
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # cpu=True on a machine without CUDA: gloo processes (accelerate's own CPU mode needs mpirun to start
        # several processes; its GPU launcher, torchrun, starts them anywhere). The prompt-embedding buffers are
        # identical on every process: no need to broadcast them every forward.
        _ACCELERATOR = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no",
                                   kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
        atexit.register(shutdown)
    return _ACCELERATOR


def shutdown() -> None:
    """Destroy the process group while the interpreter is still whole (registered with ``atexit`` when the
    accelerator is made; a no-op when there is none). A gloo process that exits with its group alive can abort in
    interpreter finalization ("terminate called without an active exception", SIGABRT: pytorch/pytorch#190489);
    CI saw it once in about twenty ``--resume`` runs of tests/test_distributed_run.py. Destroying a group is local
    to the process (no collective), so a rank that fails alone still exits."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def num_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_index() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the process that logs, evaluates and writes checkpoints."""
    return process_index() == 0


def device(default: str | torch.device = "cpu") -> torch.device:
    """This process's device (``cuda:<local rank>`` under a GPU launch), else ``default``."""
    acc = accelerator()
    return torch.device(default) if acc is None else acc.device


def local_budget(global_budget: int) -> int:
    """This process's share of a global oracle budget (the remainder goes to the first processes)."""
    n, rank = num_processes(), process_index()
    return global_budget // n + (1 if rank < global_budget % n else 0)


def prepare(module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Wrap a trainable module (DistributedDataParallel) and its optimizer for gradient sync when launched;
    return both unchanged otherwise. The module must already be on ``device()`` (no placement happens here, so
    the policy's buffers and the module stay together)."""
    acc = accelerator()
    if acc is None:
        return module, optimizer
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(module, DistributedDataParallel):  # a second optimizer over the same module: wrap once
        module = acc.prepare_model(module, device_placement=False)
    return module, acc.prepare_optimizer(optimizer, device_placement=False)


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()``, through the accelerator when launched."""
    acc = accelerator()
    if acc is None:
        loss.backward()
    else:
        acc.backward(loss)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """The concatenation over processes of ``tensor`` (same shape on each), in rank order; itself in one process."""
    acc = accelerator()
    return tensor if acc is None else acc.gather(tensor)


def gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process; ``[obj]`` in one process."""
    if accelerator() is None:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * num_processes()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a decision all processes must take alike); ``obj`` in one process."""
    if accelerator() is None:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process reaches this point (nothing in one process)."""
    acc = accelerator()
    if acc is not None:
        acc.wait_for_everyone()


def sync_gradients(module: nn.Module, sync: bool):
    """Context for one backward pass: with ``sync=False`` a DistributedDataParallel ``module`` accumulates the
    gradient locally (``no_sync``), the next synchronised backward averages the sum over processes; a no-op for
    an unwrapped module."""
    from contextlib import nullcontext

    from torch.nn.parallel import DistributedDataParallel

    return module.no_sync() if isinstance(module, DistributedDataParallel) and not sync else nullcontext()


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (itself if not wrapped)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module
