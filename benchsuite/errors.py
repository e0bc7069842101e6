"""Exceptions raised by benchsuite.

``BenchsuiteError`` and its subclasses are *user-facing*: the CLI turns them into a one-line message and exit
code 2. Anything else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Any

MAX_ECHO = 200
"""Characters of one piece of user input (a name, a value, a field of a card) that a message repeats."""
MAX_MESSAGE = 2000
"""Characters of a whole message: past it, ``BenchsuiteError`` keeps the start and the end and says how much it left
out, wherever a message still repeats too much (every message is printed on one line)."""
MAX_CHOICES = 700
"""Characters of registered names an unknown-name message lists; past it, it names the closest few."""


def clip(value: Any, limit: int = MAX_ECHO) -> str:
    """``value`` (a string as is, anything else as its ``repr``) for a message: at most ``limit`` characters, then an
    ellipsis and the full length, so that a 10 MB name in a card gives a short error."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def clip_repr(value: Any, limit: int = MAX_ECHO) -> str:
    """``clip(repr(value))``: a quoted string or a value as a message shows it, bounded."""
    return clip(repr(value), limit)


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    head, tail = message[: MAX_MESSAGE * 2 // 3], message[-(MAX_MESSAGE // 3):]
    return f"{head} ... [{len(message) - len(head) - len(tail)} of {len(message)} characters left out] ... {tail}"


class BenchsuiteError(Exception):
    """An error the user can fix (bad name, bad value, missing file). The message says what to do.

    ``exit_code``: what the command line exits with (2: bad input, nothing written; 1: a run or command that failed
    on the way, e.g. a full disk). A message longer than ``MAX_MESSAGE`` is shortened in the middle."""

    exit_code = 2

    def __init__(self, *args: Any):
        if args and isinstance(args[0], str):
            args = (_bounded(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(BenchsuiteError):
    """A configuration value, override or card is invalid."""


class UnknownNameError(ConfigError):
    """A task, method, reward or backbone name is not registered."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {clip_repr(name)}; choose one of: {choices_listing(name, self.choices)}")


def choices_listing(name: str, choices: list[str]) -> str:
    """``choices`` joined by commas; for a long registry (the PMO oracles, the task cards) the names nearest to
    ``name`` and where the rest are listed, so that the message stays one short line."""
    listing = ", ".join(map(clip, choices))
    if len(listing) <= MAX_CHOICES:
        return listing
    near = difflib.get_close_matches(str(name)[:MAX_ECHO], choices, n=5, cutoff=0.4)
    return (f"{', '.join(near)}, or one of the {len(choices) - len(near)} others" if near
            else f"one of the {len(choices)}") + " that `benchsuite list` shows"


class MissingWeightsError(BenchsuiteError):
    """A model file is not where it should be. The message names the file and how to obtain it."""


class WeightsDigestError(BenchsuiteError):
    """An embedded weights file is not the one its folder's digest manifest (``SHA256SUMS``) records: corrupted,
    edited, or retrained without the manifest. The message names the file and how to restore or rebuild it."""


class BudgetExhausted(BenchsuiteError):
    """A query would take the oracle past its budget. Nothing was charged and nothing was evaluated."""


class OracleError(BenchsuiteError):
    """The oracle kept failing (raised, timed out or returned NaN/inf) after all retries. Its queries stay charged."""


class StopRun(Exception):
    """Raised by a runner callback to end a run early (e.g. a pruned tuning trial). The run is checkpointed and
    marked KILLED; the exception propagates to the caller of ``run``."""


class DirtyTreeError(BenchsuiteError):
    """A report would publish results of code with uncommitted changes (a run's recorded commit ends in ``-dirty``,
    or the tree making the report has changes). Nothing was written; exit code 2. ``--allow-dirty`` publishes it
    marked."""


class RunLockedError(BenchsuiteError):
    """Another process is writing the run folder (``benchsuite.files.RunFolderLock``): the message names it. Nothing
    was written; exit code 2."""


class WriteFailedError(BenchsuiteError):
    """A command or run could not write a file for a reason of the file system (no space, a quota, a read-only file
    system, a folder removed meanwhile). The message names the path, what is intact and what to do; exit code 1.
    ``__cause__`` is the ``OSError``."""

    exit_code = 1
