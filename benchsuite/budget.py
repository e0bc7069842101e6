"""The query budget: ``BudgetedOracle`` is the only reward handle a method ever gets.

Rules (the harness owns the budget, as nevergrad's does; poli and mol_opt got these wrong):
- A call charges ``len(batch)`` *before* any work. A batch that does not fit in what remains raises
  ``BudgetExhausted`` and charges nothing.
- A query that was charged stays charged, also when the reward then raises: the query was sent.
- ``used`` never decreases, so ``exhausted`` (nothing left) is sticky.
- Every answered query is logged (call index, condition, reward) for audits and determinism checks.
- Faults: a call that raises, outlives ``timeout_s`` or returns NaN/inf is retried up to ``retries`` times with
  exponential backoff, charged once. After the last try it raises ``OracleError``: a non-finite reward never
  reaches a method.
Judges used for evaluation are plain ``Reward`` objects held by the runner; they never touch this object.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import BudgetExhausted, ConfigError, OracleError
from .rewards.base import Reward


@dataclass(frozen=True)
class QueryLog:
    """All answered queries, in order. Arrays have one entry per query.

    Attributes:
        call: index of the oracle call that answered the query (0, 1, ...).
        condition: condition id, or -1 for unconditional queries.
        reward: the reward returned (float64).
        charged: whether each query was charged to the budget, or None when every query is (the default
            accounting; ``benchsuite.accounting.PmoOracle`` serves repeats and invalid molecules free).
        key: each query's cache key under PMO accounting (None for an invalid molecule), or None.
    """

    call: np.ndarray
    condition: np.ndarray
    reward: np.ndarray
    charged: np.ndarray | None = None
    key: tuple[str | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.reward)

    @staticmethod
    def merge(logs: list[QueryLog]) -> QueryLog:
        """The processes' logs of one data-parallel run (rank order) as the log of the run: call ``c`` holds every
        process's call ``c``, rank 0's queries first, which is the order of the global batch that one process
        would have queried (each process queries its slice of it)."""
        if len(logs) == 1:
            return logs[0]
        call, condition, reward = (np.concatenate([getattr(log, f) for log in logs])
                                   for f in ("call", "condition", "reward"))
        rank = np.concatenate([np.full(len(log), r) for r, log in enumerate(logs)])
        order = np.lexsort((np.arange(len(call)), rank, call))  # by call, then rank, then position
        return QueryLog(call[order], condition[order], reward[order])


class BudgetedOracle:
    """Wraps a ``Reward`` with a hard budget of queries (one query = one sample scored).

    Args:
        reward: the training reward (the oracle).
        budget: total number of samples the method may have scored; an int >= 0.
        retries: extra tries of a failed call (0: fail at once).
        backoff_s: sleep before retry i is ``backoff_s * 2**i`` seconds.
        timeout_s: a call running longer fails (and is retried); None waits forever. The late call's thread
            cannot be killed and finishes in the background; its answer is discarded.
    """

    def __init__(self, reward: Reward, budget: int, retries: int = 0, backoff_s: float = 1.0,
                 timeout_s: float | None = None):
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
            raise ConfigError(f"budget must be a non-negative integer, got {budget!r}")
        if retries < 0 or backoff_s < 0 or (timeout_s is not None and timeout_s <= 0):
            raise ConfigError("oracle retries and backoff must be >= 0 and a timeout > 0")
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.failures = 0  # failed tries so far (each retried or fatal)
        self._reward = reward
        self.budget = int(budget)
        self._used = 0
        self._calls = 0
        self._log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # What a method may read about the oracle (never the reward object itself).
    @property
    def differentiable(self) -> bool:
        """Whether the oracle returns rewards that carry gradients to the samples."""
        return self._reward.differentiable

    @property
    def name(self) -> str:
        return self._reward.name

    @property
    def used(self) -> int:
        """Queries charged so far."""
        return self._used

    @property
    def remaining(self) -> int:
        return self.budget - self._used

    @property
    def exhausted(self) -> bool:
        """True once nothing is left; never becomes False again."""
        return self._used >= self.budget

    def __call__(self, samples: Tensor, conditions: Tensor | None = None) -> Tensor:
        """Score ``samples`` (a batch of B), charging B queries first.

        Returns the reward's ``(B,)`` tensor unchanged: with gradients when the reward is differentiable and
        the samples require grad. Raises ``BudgetExhausted`` (charging nothing) when B > ``remaining``.
        """
        n = len(samples)
        if n == 0:
            raise ValueError("an oracle call needs at least one sample")
        if n > self.remaining:
            raise BudgetExhausted(
                f"batch of {n} queries exceeds the remaining budget of {self.remaining} "
                f"(used {self._used} of {self.budget})"
            )
        self._used += n  # charged before any work, once, whatever the retries
        call = self._calls
        self._calls += 1
        rewards = self._answer(samples, conditions)
        values = rewards.detach().to(torch.float64).cpu().numpy()
        conds = (
            np.full(n, -1, dtype=np.int64) if conditions is None else conditions.detach().cpu().numpy().astype(np.int64)
        )
        self._log.append((np.full(n, call, dtype=np.int64), conds, values))
        return rewards

    def _answer(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        """The reward's answer, retried on exceptions, timeouts and non-finite values."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                rewards = self._call_once(samples, conditions)
                bad = int((~torch.isfinite(rewards.detach())).sum())
                if bad:
                    raise FloatingPointError(f"{bad} of {len(samples)} rewards are NaN or inf")
                return rewards
            except Exception as err:  # noqa: BLE001 - any oracle fault is retried, then reported below
                self.failures += 1
                last = err
        raise OracleError(
            f"oracle {self._reward.name!r} failed {self.retries + 1} time(s) on a batch of {len(samples)} "
            f"({type(last).__name__}: {last}); raise --oracle-retries or fix the oracle"
        ) from last

    def _call_once(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        if self.timeout_s is None:
            return self._reward(samples, conditions)
        grad = torch.is_grad_enabled()

        def call() -> Tensor:
            with torch.set_grad_enabled(grad):
                return self._reward(samples, conditions)

        pool = ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(call).result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def query_log(self) -> QueryLog:
        """The log of answered queries (charged queries whose reward raised are counted in ``used`` only)."""
        if not self._log:
            empty = np.zeros(0, dtype=np.int64)
            return QueryLog(empty, empty.copy(), np.zeros(0))
        call, cond, rew = (np.concatenate(parts) for parts in zip(*self._log))
        return QueryLog(call, cond, rew)

    def state_dict(self) -> dict:
        """Counters and the query log as tensors (loadable with ``torch.load(weights_only=True)``)."""
        log = self.query_log()
        return {
            "budget": self.budget,
            "used": self._used,
            "calls": self._calls,
            "failures": self.failures,
            "log": {k: torch.from_numpy(v.copy()) for k, v in
                    (("call", log.call), ("condition", log.condition), ("reward", log.reward))},
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["budget"]) != self.budget:
            raise ValueError(f"checkpoint budget {state['budget']} differs from this oracle's {self.budget}")
        self._used, self._calls, self.failures = int(state["used"]), int(state["calls"]), int(state["failures"])
        log = state["log"]
        self._log = [(log["call"].numpy(), log["condition"].numpy(), log["reward"].numpy())] if len(log["call"]) else []

    def __repr__(self) -> str:
        return f"BudgetedOracle({self._reward.name}, used={self._used}/{self.budget})"
