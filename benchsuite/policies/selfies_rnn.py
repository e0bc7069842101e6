"""An autoregressive prior on the ChEMBL SELFIES backbone's token space: the GRU language model of REINVENT.

REINVENT (Olivecrona et al. 2017, arXiv 1704.07555) fine-tunes a recurrent language model of molecules; PMO runs it
with a 3-layer GRU of 512 units over SMILES characters (wenhao-gao/mol_opt ``main/reinvent/model.py``). This one is
smaller and reads the tokens of the ``selfies-chembl`` diffusion backbone, so that its samples lie in that backbone's
sample space and every reward, judge and metric of the ``selfies-chembl-*`` cards applies unchanged:

- Symbols: ``SELFIES_ALPHABET`` (V = 25). Index 0, ``[nop]``, is the space's padding; here it is also the **end**
  token: a molecule is its symbols up to the first 0, and every position after it is 0 (padding). A molecule of
  exactly ``length`` symbols has no end token: at position ``length`` nothing is left to choose.
- Start: the network reads an extra input index V (the start token) before the first symbol; it never emits it.
- So the model is a proper distribution over token sequences of at most ``length`` symbols:
  ``log p(x) = sum_{t <= T} log p(x_t | x_<t)`` with ``T`` the position of the first 0 (``length - 1`` when there is
  none); ``log_likelihood`` computes it, ``sample`` draws from it.

``token_kl`` is the KL of two such models along a sequence: per position the exact KL of their next-symbol
distributions, summed over the positions the sequence scores. Averaged over sequences drawn from the first model it
is an unbiased estimate of the sequence-level KL(first || second) in nats (the chain rule of KL), never negative,
and 0 exactly where the models agree; the same estimand as the mean of ``log p_1(x) - log p_2(x)``, with lower
variance. It is the analogue of the diffusion policies' path KL (per-step KLs summed along sampled chains).

The shipped prior (``load_prior``) is trained on ``benchsuite.domains.chembl``'s molecule list by
``scripts/train_reinvent_prior.py``; its data card is ``weights/selfies_chembl_gru.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchsuite.domains.chembl import CHEMBL_DATA, CHEMBL_LENGTH
from benchsuite.domains.molecules import SELFIES_ALPHABET
from benchsuite.errors import MissingWeightsError
from benchsuite.weights import check_digest

END = 0
"""The end token (= the space's padding ``[nop]``)."""

PRIOR_WEIGHTS: Path = Path(__file__).resolve().parent / "weights" / "selfies_chembl_gru.safetensors"
"""The shipped prior's weights (with its configs as metadata)."""

TRAIN_SCRIPT = "python scripts/train_reinvent_prior.py"


@dataclass(frozen=True)
class RnnConfig:
    """The network. Defaults: the shipped prior."""

    vocab_size: int = len(SELFIES_ALPHABET)
    """V: output symbols (index 0 is the end token); the input has one more, the start token V."""
    length: int = CHEMBL_LENGTH
    """Most symbols of a sequence (the backbone's L)."""
    embedding: int = 32
    """Width of the token embedding."""
    hidden: int = 128
    """Units per GRU layer (mol_opt's REINVENT: 512)."""
    layers: int = 2
    """GRU layers (mol_opt's REINVENT: 3)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class RnnTrainConfig:
    """How ``scripts/train_reinvent_prior.py`` trains the shipped prior (recorded in the weights' metadata)."""

    seed: int = 0
    """Seed of the initialization, the validation split and the minibatches."""
    steps: int = 1200
    """Adam steps (about 28 epochs). Measured with the schedule over 4,000 steps: the held-out likelihood is best near
    step 1,000 (1.105 nats per symbol) and worsens after it (1.34 at 2,000, 1.55 at 3,000): 2,765 molecules are
    memorised beyond that."""
    batch_size: int = 64
    lr: float = 3e-3
    """Peak learning rate (linear warmup over 100 steps, then cosine decay to 0)."""
    grad_clip_norm: float = 1.0
    validation_fraction: float = 0.05
    """Share of the molecules held out (never trained on) for the validation likelihood of the data card."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class SelfiesRNN(nn.Module):
    """Embedding -> GRU -> linear head over the V symbols; reads the start token V first (module docstring)."""

    def __init__(self, config: RnnConfig = RnnConfig()):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.embedding)
        self.gru = nn.GRU(config.embedding, config.hidden, num_layers=config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    @property
    def start(self) -> int:
        return self.config.vocab_size

    def logits(self, tokens: Tensor) -> Tensor:
        """``B x L x V`` next-symbol logits: row ``t`` is the distribution of ``tokens[:, t]`` given
        ``tokens[:, :t]`` (``tokens``: ``B x L`` int64)."""
        start = torch.full((len(tokens), 1), self.start, dtype=torch.int64, device=tokens.device)
        out, _ = self.gru(self.embed(torch.cat([start, tokens[:, :-1]], 1)))
        return self.head(out)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n x L`` int64 sequences drawn from the model with ``generator`` (on the CPU, whatever the model's device:
        the draw does not depend on the device); after the end token every position is 0."""
        device = self.head.weight.device
        tokens = torch.zeros(n, self.config.length, dtype=torch.int64)
        finished = torch.zeros(n, dtype=torch.bool)
        x = torch.full((n, 1), self.start, dtype=torch.int64, device=device)
        hidden = None
        for t in range(self.config.length):
            out, hidden = self.gru(self.embed(x), hidden)
            probs = F.softmax(self.head(out[:, 0]).double(), -1).cpu()
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            drawn[finished] = END
            tokens[:, t] = drawn
            finished |= drawn == END
            if bool(finished.all()):
                break
            x = drawn[:, None].to(device)
        return tokens


def scored_positions(tokens: Tensor) -> Tensor:
    """``B x L`` bool: the positions whose symbol the model chose (every one up to and including the first end
    token; all ``L`` when there is none)."""
    ends = (tokens == END).long()
    return (ends.cumsum(1) - ends) == 0


def log_likelihood(model: SelfiesRNN, tokens: Tensor) -> Tensor:
    """``B`` log-probabilities (nats) of the ``B x L`` sequences under ``model``: the sum of the log-probabilities
    of their scored symbols (differentiable in the model's parameters)."""
    logp = F.log_softmax(model.logits(tokens), -1).gather(2, tokens[..., None]).squeeze(2)
    return (logp * scored_positions(tokens)).sum(1)


def token_kl(model: SelfiesRNN, reference: SelfiesRNN, tokens: Tensor) -> Tensor:
    """``B`` sums over the scored positions of ``KL(model(. | x_<t) || reference(. | x_<t))`` in nats (module
    docstring: averaged over samples of ``model``, the sequence-level KL(model || reference))."""
    logp = F.log_softmax(model.logits(tokens).double(), -1)
    logq = F.log_softmax(reference.logits(tokens).double(), -1)
    per_position = (logp.exp() * (logp - logq)).sum(-1)
    return (per_position * scored_positions(tokens)).sum(1)


def data_digest() -> str:
    """SHA-256 of the molecule list the prior is trained on (recorded in, and checked against, its weights)."""
    return hashlib.sha256(CHEMBL_DATA.read_bytes()).hexdigest()


def prior_metadata(config: RnnConfig = RnnConfig(), train: RnnTrainConfig = RnnTrainConfig()) -> dict[str, str]:
    """What the weights file records and ``load_prior`` checks: the configs and the data's hash."""
    return {"model_name": "selfies-chembl-gru", "rnn_config": config.to_json(), "train_config": train.to_json(),
            "data": json.dumps({"file": CHEMBL_DATA.name, "sha256": data_digest()}, sort_keys=True)}


def load_prior(path: str | Path | None = None) -> SelfiesRNN:
    """The shipped prior (or the one at ``path``), in eval mode.

    Raises:
        MissingWeightsError: the file is missing, or its recorded configs or data differ from this code's (stale).
        WeightsDigestError: the file differs from its folder's ``SHA256SUMS`` line (or the line is missing).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(PRIOR_WEIGHTS if path is None else path)
    if not path.is_file():
        raise MissingWeightsError(f"REINVENT prior weights not found at {path}; create them with: {TRAIN_SCRIPT}")
    with safe_open(str(path), framework="pt") as f:
        stored = f.metadata() or {}
    check_digest(path, TRAIN_SCRIPT)  # the package's copy must be the one its SHA256SUMS line records
    stale = [k for k, v in prior_metadata().items() if stored.get(k) != v]
    if stale:
        raise MissingWeightsError(f"stale REINVENT prior weights at {path} (recorded {', '.join(stale)} differ); "
                                  f"rebuild them with: {TRAIN_SCRIPT}")
    model = SelfiesRNN(RnnConfig())
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
