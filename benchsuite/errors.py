"""Exceptions raised by benchsuite.

``BenchsuiteError`` and its subclasses are *user-facing*: the CLI turns them into a one-line message and exit
code 2. Anything else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations


class BenchsuiteError(Exception):
    """An error the user can fix (bad name, bad value, missing file). The message says what to do."""


class ConfigError(BenchsuiteError):
    """A configuration value, override or card is invalid."""


class UnknownNameError(ConfigError):
    """A task, method, reward or backbone name is not registered."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")


class MissingWeightsError(BenchsuiteError):
    """A model file is not where it should be. The message names the file and how to obtain it."""


class BudgetExhausted(BenchsuiteError):
    """A query would take the oracle past its budget. Nothing was charged and nothing was evaluated."""


class OracleError(BenchsuiteError):
    """The oracle kept failing (raised, timed out or returned NaN/inf) after all retries. Its queries stay charged."""


class StopRun(Exception):
    """Raised by a runner callback to end a run early (e.g. a pruned tuning trial). The run is checkpointed and
    marked KILLED; the exception propagates to the caller of ``run``."""
