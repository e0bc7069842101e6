"""``benchsuite`` under ``accelerate launch``, for tests/test_distributed_run.py; not collected by pytest.

    accelerate launch --multi_gpu --num_processes N tests/distributed_run.py run --task ... [--resume]

With ``CRASH_AFTER=k`` in the environment every process raises after ``k`` DDPO steps (a crash at the same point
in each, as a failing node would leave the others at their next gather).
"""

from __future__ import annotations

import os
import sys

from benchsuite.cli import main
from benchsuite.methods.ddpo import DDPO


class Crash(RuntimeError):
    pass


def crash_after(steps: int) -> None:
    original, calls = DDPO.step, {"n": 0}

    def step(self, oracle):
        calls["n"] += 1
        if calls["n"] > steps:
            raise Crash(f"crash after {steps} steps")
        return original(self, oracle)

    DDPO.step = step


def report_process_group_at_exit() -> None:
    """Registered before anything imports accelerate, so it runs after benchsuite's own exit handler (LIFO)."""
    import atexit

    import torch.distributed as dist

    atexit.register(lambda: print(f"process group alive at exit: {dist.is_initialized()}", file=sys.stderr, flush=True))


if __name__ == "__main__":
    report_process_group_at_exit()
    if os.environ.get("CRASH_AFTER"):
        crash_after(int(os.environ["CRASH_AFTER"]))
    sys.exit(main(sys.argv[1:]))
