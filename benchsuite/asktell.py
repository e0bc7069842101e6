"""Ask/tell: runs whose oracle lives outside Python (a wet lab, a slow simulator, a person).

``benchsuite ask`` writes a batch of candidates to a file (CSV or JSON, one id per candidate); whoever holds the
oracle fills in a ``score`` per id; ``benchsuite tell`` reads the file back and the method continues. The same
loop from Python::

    session = AskTellSession.create("lab/run1", resolve("ehrlich-s32-l32-v0", "ddpo", seed=0))
    while not session.finished:
        batch = session.ask()
        session.tell(dict(zip(batch.ids, my_assay(batch.records))))

How it works. A method never sees who answers its oracle: ``step(oracle)`` calls ``oracle(samples)``. Here the
oracle is a stand-in that, when it has no answer, stops the step by raising ``AskInterrupt`` with the samples:
those are the asked batch. On ``tell``, the session restores the checkpoint taken before the step and runs the
same step again (every method is deterministic given its state, which the contract suite tests), answering the
oracle call with the told scores; a digest of the samples checks that the replayed batch is the asked one. A step
that calls the oracle twice is asked twice; its earlier answers are kept and replayed. Only a completed step moves
the checkpoint.

On disk (``folder``), every file is written atomically (``benchsuite.files``: temp file, fsync, rename) and validated
when read, so that no file is ever half-written, not even on a full disk (the command fails in one line and the
session is as before it):
- ``session.json``: the run config, format and run id (written once);
- ``state.pt``: method, oracle and RNG state after the last completed step, the answers of the step in progress,
  the pending ask and every told (id, score); loaded with ``torch.load(weights_only=True)``;
- ``asks/ask-<n>.csv|json``: the candidates of ask n, for the user, described by the policy's sample space
  (``benchsuite.spaces``: one PNG per candidate in ``asks/ask-<n>/`` for images, the string and token ids of a
  sequence, SELFIES and SMILES of a molecule);
- ``told.csv``: every told id and score so far (derived from ``state.pt``).
- the trained weights (``benchsuite.export``: ``model.safetensors`` or the LoRA adapter), once the tell that spends
  the budget completes, as a finished run writes them into its folder (methods that train the policy).
A crash between any two writes leaves the previous state or the next one. A tell that is rejected (unknown or
duplicate ids, a missing, NaN or inf score, no pending ask) changes nothing.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .budget import BudgetedOracle
from .config import RunConfig
from .errors import BenchsuiteError, ConfigError, WriteFailedError, clip, clip_repr
from .export import export_finished
from .files import atomic_write_bytes as _atomic_write, describe_os_error
from .rewards.base import Reward
from .runner import build_method
from .spaces import SampleSpace

FORMAT = 1
STATE = "state.pt"
SESSION = "session.json"


class AskInterrupt(BaseException):
    """Raised by the stand-in oracle when the method asks for scores nobody has given yet. A ``BaseException``
    so that the oracle's retry loop (which retries ``Exception``) lets it through."""

    def __init__(self, samples: Tensor, conditions: Tensor | None):
        super().__init__("ask")
        self.samples, self.conditions = samples, conditions


def digest(samples: Tensor, conditions: Tensor | None) -> str:
    """SHA-256 of the exact bytes of a batch (and its conditions): the identity of an asked batch."""
    h = hashlib.sha256(samples.detach().cpu().contiguous().float().numpy().tobytes())
    if conditions is not None:
        h.update(conditions.detach().cpu().to(torch.int64).numpy().tobytes())
    return h.hexdigest()


class _ExternalReward(Reward):
    """Answers oracle calls from a queue of told batches; raises ``AskInterrupt`` when the queue is empty."""

    name = "external"
    differentiable = False

    def __init__(self, space: SampleSpace, answers: list[tuple[str, Tensor]]):
        self.space = space
        self.answers = list(answers)

    def _check_samples(self, samples: Tensor) -> None:
        self.space.check(samples)  # the method's samples are the policy's: its space validates them

    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        if not self.answers:
            raise AskInterrupt(samples.detach().clone(), None if conditions is None else conditions.detach().clone())
        expected, rewards = self.answers.pop(0)
        if digest(samples, conditions) != expected:
            raise BenchsuiteError(
                "the replayed batch differs from the asked one (the session's code or environment changed since "
                "the ask); finish the session with the same benchsuite version and torch build")
        return rewards.to(samples.device, torch.float32)


@dataclass
class Batch:
    """An asked batch.

    Attributes:
        ids: one id per candidate (``q000123``: the query's index in the run).
        samples: the decoded candidates (``B x ...``).
        conditions: ``B`` condition ids, or None.
        records: one dict per candidate as written to the ask file (id, condition, and the sample space's
            description: a PNG file, a sequence string, a SMILES).
        path: the ask file.
    """

    ids: list[str]
    samples: Tensor
    conditions: Tensor | None
    records: list[dict[str, Any]]
    path: Path


class AskTellSession:
    """A resumable ask/tell run in ``folder`` (see the module docstring). Open an existing one with
    ``AskTellSession(folder)``, start one with ``AskTellSession.create(folder, config)``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta_path = self.folder / SESSION
        if not meta_path.is_file():
            raise ConfigError(f"{self.folder} holds no ask/tell session (no {SESSION}); start one with --task and --method")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            self.config = RunConfig.from_dict(meta["config"])
            if self.config.run_id != meta["run_id"]:
                raise ValueError("run id mismatch")
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{meta_path} is not a valid session file ({exc}); start a new session") from None
        self._build()
        self._load()

    # ---- construction ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike, config: RunConfig) -> AskTellSession:
        """Start a session for ``config`` in ``folder`` (which must not hold one already)."""
        folder = Path(folder)
        if (folder / SESSION).exists():
            raise ConfigError(f"{folder} already holds an ask/tell session; continue it without --task/--method "
                              "or choose another --state folder")
        self = cls.__new__(cls)
        self.folder, self.config = folder, config
        self._build()  # validates everything (names, weights) before anything is written
        self.state = {"format": FORMAT, "run_id": config.run_id, "method": self.method.state_dict(),
                      "oracle": self.oracle.state_dict(), "torch_rng": torch.get_rng_state(),
                      "step_answers": [], "pending": None, "told_ids": [], "told_scores": torch.zeros(0, dtype=torch.float64),
                      "asks": 0, "steps": 0}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "asks").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {folder} ({exc.strerror}); choose a writable --state folder") from None
        self._save_state()
        meta = {"format": FORMAT, "run_id": config.run_id, "config": config.to_dict()}
        _atomic_write(folder / SESSION, json.dumps(meta, indent=2, default=str).encode())
        return self

    def _build(self) -> None:
        torch.set_num_threads(self.config.num_threads)
        self.task = self.config.make_task()
        self.policy = self.task.make_policy().to(self.config.device)
        self.method = build_method(self.config, self.task, self.policy, torch.Generator().manual_seed(self.config.seed),
                                   external_oracle=True)
        self.oracle = self._oracle([])

    def _oracle(self, answers: list[tuple[str, Tensor]]):
        return BudgetedOracle(_ExternalReward(self.policy.space, answers), self.config.budget)

    def _load(self) -> None:
        path = self.folder / STATE
        try:
            state = torch.load(path, weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("run_id") != self.config.run_id:
                raise ValueError("not this session's state")
        except Exception as exc:  # noqa: BLE001 - any unreadable state gets the same one-line answer
            raise ConfigError(f"{path} is unreadable or belongs to another run ({type(exc).__name__}); "
                              "the session cannot continue") from None
        self.state = state

    def _save_state(self) -> None:
        import io

        buf = io.BytesIO()
        torch.save(self.state, buf)
        _atomic_write(self.folder / STATE, buf.getvalue())

    @contextmanager
    def _locked(self):
        """One ask or tell at a time per session folder (an advisory lock held for the operation)."""
        with open(self.folder / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self._load()  # another process may have moved the state since this object was made
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---- status ------------------------------------------------------------------------------------------
    @property
    def used(self) -> int:
        return int(self.state["oracle"]["used"])

    @property
    def finished(self) -> bool:
        """True once the budget is spent (nothing left to ask)."""
        return self.used >= self.config.budget

    @property
    def pending_ids(self) -> list[str]:
        p = self.state["pending"]
        return [] if p is None else list(p["ids"])

    def told(self) -> dict[str, float]:
        """Every told id and its score, in tell order."""
        return dict(zip(self.state["told_ids"], self.state["told_scores"].tolist()))

    # ---- the loop ------------------------------------------------------------------------------------------
    def _replay(self, answers: list[tuple[str, Tensor]]) -> AskInterrupt | None:
        """Restore the last checkpoint and run one method step with ``answers``; returns the ask that stopped it,
        or None when the step completed (then the state holds the new checkpoint, not yet saved)."""
        self.method.load_state_dict(self.state["method"])
        torch.set_rng_state(self.state["torch_rng"])
        oracle = self._oracle(answers)
        oracle.load_state_dict(self.state["oracle"])
        try:
            self.method.step(oracle)
        except AskInterrupt as ask:
            return ask
        self.state.update(method=self.method.state_dict(), oracle=oracle.state_dict(),
                          torch_rng=torch.get_rng_state(), step_answers=[], steps=self.state["steps"] + 1)
        return None

    def ask(self, fmt: str = "csv") -> Batch:
        """The next batch to score (the pending one again if it was asked but not told). ``fmt``: csv or json."""
        if fmt not in ("csv", "json"):
            raise ConfigError(f"ask format must be csv or json, got {fmt!r}")
        with self._locked():
            if self.finished:
                raise ConfigError(f"the session's budget of {self.config.budget} queries is spent; nothing to ask")
            if not self._told_is_current():  # a tell whose told.csv could not be written (a full disk)
                self._write_told()
            ask = self._replay([(a["digest"], a["rewards"]) for a in self.state["step_answers"]])
            if ask is None:  # cannot happen: the stand-in oracle has no answer for the step's next call
                raise RuntimeError("a method step completed without asking the oracle")
            d = digest(ask.samples, ask.conditions)
            pending = self.state["pending"]
            if pending is None:
                first = self.used + sum(len(a["rewards"]) for a in self.state["step_answers"])
                pending = {"digest": d, "ids": [f"q{first + i:06d}" for i in range(len(ask.samples))],
                           "ask": self.state["asks"] + 1}
                self.state.update(pending=pending, asks=self.state["asks"] + 1)
                self._save_state()
            elif pending["digest"] != d:
                raise BenchsuiteError("the re-asked batch differs from the pending one (the code or environment "
                                      "changed); finish the session with the same benchsuite version")
            path, records = self._write_ask_file(pending, ask, fmt)
        return Batch(list(pending["ids"]), ask.samples, ask.conditions, records, path)

    def _write_ask_file(self, pending: dict, ask: AskInterrupt, fmt: str) -> tuple[Path, list[dict[str, Any]]]:
        path = self.folder / "asks" / f"ask-{pending['ask']:04d}.{fmt}"
        path.parent.mkdir(exist_ok=True)
        ids = pending["ids"]
        conds = [None] * len(ids) if ask.conditions is None else ask.conditions.tolist()
        # what each candidate is, in the policy's sample space's words (image spaces write one PNG per candidate
        # into a folder named as the ask file)
        described = self.policy.space.records(ask.samples, ids, path.parent / path.stem)
        records = [{"id": i, "condition": "" if c is None else int(c), **d} for i, c, d in zip(ids, conds, described)]
        rows = [{**r, "score": ""} for r in records]
        if fmt == "json":
            data = json.dumps({"ask": pending["ask"], "candidates": rows}, indent=1).encode()
        else:
            import io

            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            data = buf.getvalue().encode()
        _atomic_write(path, data)
        return path, records

    def tell(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Give the scores of the pending batch (every id exactly once, finite values) and run the method on.

        Returns a summary: queries used, the batch's mean and max, the best score so far.
        Raises ``ConfigError`` (and changes nothing) on any problem with ``scores``.
        """
        with self._locked():
            pending = self.state["pending"]
            if pending is None:
                raise ConfigError("no pending ask: run `benchsuite ask` first (scores already told are kept)")
            values = _validate_scores(scores, pending["ids"])
            answers = [(a["digest"], a["rewards"]) for a in self.state["step_answers"]]
            answers.append((pending["digest"], values.float()))
            told_ids = self.state["told_ids"] + list(pending["ids"])
            told_scores = torch.cat([self.state["told_scores"], values])
            ask = self._replay(answers)
            if ask is not None:  # the step asks again: keep its answers so far, the next ask returns the new batch
                self.state["step_answers"] = [{"digest": d, "rewards": r} for d, r in answers]
            self.state.update(pending=None, told_ids=told_ids, told_scores=told_scores)
            self._save_state()
            try:
                self._write_told()
            except OSError as exc:  # told.csv is derived: the tell has happened, the next ask writes it again
                raise WriteFailedError(f"the scores of ask {pending['ask']} were taken ({self.folder / STATE} is "
                                       f"saved), but {describe_os_error(exc)}; the next ask writes told.csv again") \
                    from exc
            if ask is None and self.finished:  # the budget is spent: export the trained weights, as a run does
                export_finished(self.config, self.policy, self.folder, "FINISHED", self.method)
        return {"queries_used": float(self.used + (0 if ask is None else sum(len(r) for _, r in answers))),
                "batch_mean": values.mean().item(), "batch_max": values.max().item(),
                "best_so_far": told_scores.max().item()}

    def tell_file(self, path: str | os.PathLike) -> dict[str, float]:
        """``tell`` with the scores of a filled-in ask file (CSV or JSON with ``id`` and ``score``)."""
        return self.tell(read_scores(Path(path)))

    def _told_is_current(self) -> bool:
        try:
            rows = (self.folder / "told.csv").read_text().count("\n")
        except OSError:
            rows = 0
        told = len(self.state["told_ids"])
        return rows == told + 1 or rows == told == 0  # the header and one row per told id; none before a tell

    def _write_told(self) -> None:
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["id", "score"])
        for i, s in zip(self.state["told_ids"], self.state["told_scores"].tolist()):
            writer.writerow([i, repr(float(s))])
        _atomic_write(self.folder / "told.csv", buf.getvalue().encode())


def _validate_scores(scores: Mapping[str, Any], ids: list[str]) -> Tensor:
    expected = set(ids)
    unknown = sorted(set(scores) - expected)
    if unknown:
        shown = ", ".join(clip(u, 60) for u in unknown[:5])
        raise ConfigError(f"unknown id(s) {shown}{' ...' if len(unknown) > 5 else ''}: "
                          f"the pending ask has ids {ids[0]}..{ids[-1]}")
    missing = [i for i in ids if i not in scores]
    if missing:
        raise ConfigError(f"{len(missing)} id(s) of the pending ask have no score ({', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}); score every candidate")
    out = []
    for i in ids:
        v = scores[i]
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"score of {i} is not a number ({clip_repr(v)})") from None
        if not math.isfinite(f):
            raise ConfigError(f"score of {i} is {f}; scores must be finite numbers")
        out.append(f)
    return torch.tensor(out, dtype=torch.float64)


def read_scores(path: Path) -> dict[str, Any]:
    """Read ``id -> score`` from a CSV (columns ``id``, ``score``) or JSON file (``{"candidates": [{id, score}]}``,
    a list of such objects, or a plain ``{id: score}`` mapping). Duplicate ids, blank or missing scores and
    malformed files raise ``ConfigError``."""
    if not path.is_file():
        raise ConfigError(f"scores file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path} ({type(exc).__name__}); give a UTF-8 CSV or JSON file") from None
    rows: list[tuple[Any, Any]]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict) and "candidates" in data:
            data = data["candidates"]
        if isinstance(data, dict):
            rows = list(data.items())
        elif isinstance(data, list) and all(isinstance(r, dict) and "id" in r for r in data):
            rows = [(r["id"], r.get("score")) for r in data]
        else:
            raise ConfigError(f"{path}: expected {{'candidates': [{{'id', 'score'}}, ...]}} or {{id: score}}")
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "id" not in reader.fieldnames or "score" not in reader.fieldnames:
            raise ConfigError(f"{path}: a CSV of scores needs the columns id and score (got {clip(reader.fieldnames)})")
        rows = [(r["id"], r["score"]) for r in reader]
    out: dict[str, Any] = {}
    for i, s in rows:
        i = str(i).strip()
        if i in out:
            raise ConfigError(f"{path}: id {clip(i, 60)} appears more than once")
        if s is None or (isinstance(s, str) and not s.strip()):
            raise ConfigError(f"{path}: id {clip(i, 60)} has no score; score every candidate")
        out[i] = s
    return out
