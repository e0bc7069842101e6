"""Sequence backbones: Gaussian diffusion over a continuous relaxation of token sequences.

A sequence of L tokens from a vocabulary of V is represented as its one-hot matrix scaled to [-1, 1]
(``one_hot * 2 - 1``), a ``V x L`` float tensor: the policy's ``sample_shape`` is ``(V, L)`` and the Gaussian
DDIM policy of ``base.py`` runs on it unchanged.

Decoder convention (fixed for every sequence backbone and reward): the policy's ``decoder`` maps final samples
``x0: B x V x L`` to **per-position token probabilities** ``softmax(x0 / DECODER_TEMPERATURE, dim=1)``, a
differentiable ``B x V x L`` float tensor. Sequence rewards take the argmax over dim 1 themselves (``tokens``);
a surrogate model can differentiate through the probabilities. With temperature 0.25 a clean sample (one entry
at +1, the others at -1) decodes to probability 0.99 for its token (V = 32) and the decoder still passes
gradients: measured on the shipped models, the parameter gradient of a random linear function of the decoded
probabilities, backpropagated through the last 10 of 20 sampler steps, has norm 1e-3 (SELFIES) to 2e-2 (Ehrlich
L = 32) at temperature 0.25 and 1e-8 to 1e-6 at 0.1, where the softmax saturates. Through the last 1-2 steps it
is exactly 0 at any temperature: at low noise the denoiser's x0 prediction is a saturated one-hot (the token is
already decided), so reward gradients reach the parameters only through earlier, noisier steps.

The denoiser (``SequenceDenoiser``) is **x0-parameterized**: it outputs per-position logits over V, the predicted
clean sample is the expected one-hot under their softmax, ``2 p - 1``, and ``forward`` converts it to the noise
prediction ``eps = (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t)`` that ``DiffusionPolicy`` expects. It is trained with
the cross-entropy of the logits against the clean tokens at uniformly drawn t (the "score interpolation" idea of
CDCD, Dieleman et al. 2022, arXiv 2211.15089; our code). The logits are built in three parts:

1. the single-site log-likelihood of each token given the noisy position, ``2 sqrt(a_t) x_t / (1 - a_t)``
   (exact for the Gaussian corruption of a one-hot in [-1, 1]);
2. plus a correction from a 1-D residual convolution net (sinusoidal time embedding, learned positional
   embedding, zero-initialized output) that reads the single-site posteriors;
3. then exact forward-backward marginals of a linear-chain CRF with a learned ``V x V`` pairwise log-potential
   (initialized by the training script at the data's log bigram frequencies).

For first-order Markov data such as the Ehrlich DMP this family contains the exact posterior. Measured on the
L = 32 Ehrlich DMP (600 training steps, 256 samples of 20 DDIM steps), share of feasible samples: a conv net
reading x_t alone 24 %, parts 1-2 4 %, parts 1-3 with W initialized at zero 0 % (Adam moves W by about lr per
step), parts 1-3 with the bigram initialization 98 %; the exact HMM posterior 100 %.

Shipped models (``shipped_models()``), each trained by ``python scripts/train_sequence_backbone.py --model NAME``
(deterministic: fixed seed, one thread) on sequences from its oracle's own generative process:

- ``ehrlich-s32-l{32,64,128,256}``: feasible chains of the DMP of the Ehrlich instance with 32 states and seed 0
  (``benchsuite.domains.ehrlich``); the instance's motifs do not enter the data.
- ``selfies-l32``: random SELFIES over ``benchsuite.domains.molecules.SELFIES_ALPHABET``
  (``sample_selfies_tokens``).
- ``selfies-chembl-l64``: real molecules, the ChEMBL list of ``benchsuite.domains.chembl`` (approved drugs and a
  ChEMBL sample set) over the same alphabet, trained and described by ``python scripts/train_chembl_prior.py``
  (data card: ``weights/selfies_chembl_l64.md``).

Backbones never import rewards: the problem definitions both use (the Ehrlich instance, the SELFIES alphabet and
pretraining process) live in ``benchsuite.domains``. Each policy carries its sample space (``policy.space``:
``SequenceSpace`` for Ehrlich, ``MoleculeSpace`` for SELFIES; ``benchsuite.spaces``).

Weights live in ``weights/<file stem>.safetensors`` with every config in the safetensors metadata; loading
refuses a file whose recorded configs differ from the module's (``MissingWeightsError`` saying how to rebuild)
and one whose bytes differ from its line in ``weights/SHA256SUMS`` (``WeightsDigestError``; ``benchsuite.weights``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchsuite.domains.ehrlich import EhrlichConfig, ehrlich_function
from benchsuite.domains.molecules import SELFIES_ALPHABET, SELFIES_LENGTH, require_rdkit, sample_selfies_tokens
from benchsuite.errors import ConfigError, MissingWeightsError
from benchsuite.weights import check_digest, embeds

from ..spaces import MoleculeSpace, SampleSpace, SequenceSpace
from .base import DiffusionPolicy
from benchsuite.domains.chembl import CHEMBL_DATA, CHEMBL_LENGTH, chembl_rows, chembl_tokens

SEQUENCE_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "timestep_spacing": "trailing",
}
"""Keyword arguments of the diffusers DDPM/DDIM schedulers for every sequence backbone (as the digits one, with
trailing spacing so that no sampler step starts at t = 0 with zero variance)."""

DECODER_TEMPERATURE = 0.25
"""Softmax temperature of the decoder ``x0 -> probabilities`` (see the module docstring)."""

WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"
"""Folder of the shipped weights files."""

TRAIN_SCRIPT = "python scripts/train_sequence_backbone.py"
"""The command that (re)creates the weights files (``--model NAME``, or every model without it)."""


# ---- representation ----------------------------------------------------------------------------------------
def one_hot_relaxation(tokens: Tensor, vocab_size: int) -> Tensor:
    """``B x L`` int64 token ids -> ``B x V x L`` float32 one-hot scaled to [-1, 1] (``one_hot * 2 - 1``)."""
    return F.one_hot(tokens.long(), vocab_size).permute(0, 2, 1).float() * 2 - 1


def token_probabilities(x0: Tensor, temperature: float = DECODER_TEMPERATURE) -> Tensor:
    """The decoder: ``B x V x L`` samples -> ``B x V x L`` per-position token probabilities (softmax over V of
    ``x0 / temperature``); differentiable."""
    return torch.softmax(x0 / temperature, dim=1)


def tokens(probs: Tensor) -> Tensor:
    """``B x V x L`` probabilities (or relaxed samples) -> ``B x L`` int64 token ids (argmax over V)."""
    return probs.argmax(1)


# ---- denoiser ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of a ``SequenceDenoiser``.

    Attributes:
        vocab_size: V, channels of the input and of the output logits.
        length: L, the sequence length (size of the positional embedding).
        channels: width C of the residual stream.
        dilations: one residual block per entry, each a dilated convolution with this dilation.
        kernel_size: kernel size of the dilated convolutions (odd).
        norm_groups: groups of the GroupNorms (divides ``channels``).
        pairwise: end with a chain-CRF layer: a learned ``V x V`` log-potential between neighbouring tokens and
            exact forward-backward marginals (see ``SequenceDenoiser.logits``).
    """

    vocab_size: int
    length: int
    channels: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    norm_groups: int = 8
    pairwise: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017 / DDPM) of ``B`` timesteps: ``B x dim`` float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def chain_marginal_logits(unary: Tensor, pair: Tensor) -> Tensor:
    """Unnormalized log-marginals of a linear-chain CRF by forward-backward in log space.

    Args:
        unary: ``B x V x L`` unary log-potentials u_i(v).
        pair: ``V x V`` log-potential ``W[a, b]`` of token a followed by token b.

    Returns:
        ``B x V x L``: ``alpha_i + beta_i``, whose softmax over V is the marginal of position i under
        ``p(x) ~ exp(sum_i u_i(x_i) + sum_i W[x_i, x_{i+1}])``.
    """
    u = unary.permute(2, 0, 1)  # L x B x V
    # Each recursion step is log(exp(v) @ exp(W)), done as a matrix product with a max shift on both sides
    # instead of a logsumexp over a B x V x V tensor: the same float32 accuracy (checked against float64 in
    # tests/sequences), about 10x faster forward and backward on CPU. The clamp only matters for states whose
    # probability under every predecessor is below 1e-30 relative to the best one (W entries below about -69).
    shift = pair.amax()
    trans = torch.exp(pair - shift)  # V x V, entries in (0, 1]

    def log_matmul_exp(v: Tensor, m: Tensor) -> Tensor:
        top = v.amax(1, keepdim=True)
        return top + shift + torch.log((torch.exp(v - top) @ m).clamp_min(1e-30))

    length = u.shape[0]
    alpha = [u[0]]
    for i in range(1, length):
        alpha.append(u[i] + log_matmul_exp(alpha[-1], trans))
    beta = [torch.zeros_like(u[0])]
    for i in range(length - 2, -1, -1):
        beta.append(log_matmul_exp(u[i + 1] + beta[-1], trans.t()))
    return (torch.stack(alpha) + torch.stack(beta[::-1])).permute(1, 2, 0)


class _ResidualBlock(nn.Module):
    """GroupNorm -> time scale/shift -> SiLU -> dilated conv -> GroupNorm -> SiLU -> 1x1 conv (zero-init), added."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.film = nn.Linear(channels, 2 * channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                               dilation=dilation)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        scale, shift = self.film(temb)[:, :, None].chunk(2, dim=1)
        y = self.conv1(F.silu(self.norm1(h) * (1 + scale) + shift))
        return h + self.conv2(F.silu(self.norm2(y)))


class SequenceDenoiser(nn.Module):
    """x0-parameterized noise predictor over relaxed sequences: ``forward(x: B x V x L, t: B int64, cond: None)
    -> eps: B x V x L``; ``logits(x, t) -> B x V x L`` is the network itself.

    Args:
        config: the architecture.
        scheduler_config: the training noise schedule (its ``alphas_cumprod`` turn x0 predictions into eps).
    """

    def __init__(self, config: DenoiserConfig, scheduler_config: dict[str, Any] = SEQUENCE_SCHEDULER_CONFIG):
        super().__init__()
        from diffusers import DDPMScheduler

        if config.kernel_size % 2 == 0 or config.channels % config.norm_groups:
            raise ConfigError("denoiser: kernel_size must be odd and channels divisible by norm_groups")
        self.config = config
        c = config.channels
        self.inp = nn.Conv1d(config.vocab_size, c, 1)
        self.pos = nn.Parameter(torch.zeros(1, c, config.length))
        self.time = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c))
        self.blocks = nn.ModuleList(
            _ResidualBlock(c, config.kernel_size, d, config.norm_groups) for d in config.dilations
        )
        self.out_norm = nn.GroupNorm(config.norm_groups, c)
        self.out = nn.Conv1d(c, config.vocab_size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if config.pairwise:
            self.pair = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))
        acp = DDPMScheduler(**scheduler_config).alphas_cumprod.to(torch.float32)
        self.register_buffer("alphas_cumprod", acp, persistent=False)

    def local_log_likelihood(self, x: Tensor, t: Tensor) -> Tensor:
        """``B x V x L``: log p(x_t[:, i] | token v at position i) up to a per-position constant.

        For ``x_t = sqrt(a) (2 e_v - 1) + sqrt(1 - a) n`` it is ``2 sqrt(a) x_t[v] / (1 - a)``.
        """
        a = self.alphas_cumprod.index_select(0, t.long()).view(-1, 1, 1)
        return 2 * a.sqrt() / (1 - a) * x

    def logits(self, x: Tensor, t: Tensor) -> Tensor:
        """Per-position logits over V of the clean token, ``B x V x L``.

        The conv net sees each position's single-site posterior ``softmax(local log-likelihood)`` (a calibrated
        input at every noise level) and adds a correction to that log-likelihood: the unary potentials
        ``u = local + net(...)``. With ``pairwise`` the logits are the exact marginals of the chain CRF
        ``p(x) ~ exp(sum_i u_i(x_i) + sum_i W[x_i, x_{i+1}])`` (forward-backward in log space), W learned. For
        first-order Markov data (the Ehrlich DMP) this family contains the exact posterior (u = local, W = log of
        the transition matrix), and banned transitions become strongly negative entries of W: the vetoes a plain
        conv net learned too weakly (measured: 24 % feasible samples at L = 32 without this layer).
        """
        if x.shape[1:] != (self.config.vocab_size, self.config.length):
            raise ValueError(
                f"expected B x {self.config.vocab_size} x {self.config.length} inputs, got {tuple(x.shape)}"
            )
        local = self.local_log_likelihood(x, t)
        temb = self.time(timestep_embedding(t, self.config.channels))
        h = self.inp(torch.softmax(local, dim=1)) + self.pos
        for block in self.blocks:
            h = block(h, temb)
        unary = local + self.out(F.silu(self.out_norm(h)))
        return chain_marginal_logits(unary, self.pair) if self.config.pairwise else unary

    def predict_x0(self, x: Tensor, t: Tensor) -> Tensor:
        """Predicted clean sample ``2 softmax(logits) - 1`` in [-1, 1], ``B x V x L``."""
        return 2 * torch.softmax(self.logits(x, t), dim=1) - 1

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            raise ValueError("sequence backbones are unconditional; pass cond=None")
        a = self.alphas_cumprod.index_select(0, t.long()).view(-1, 1, 1)
        return (x - a.sqrt() * self.predict_x0(x, t)) / (1 - a).sqrt()


# ---- shipped models ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run of ``scripts/train_sequence_backbone.py``.

    Attributes:
        seed: seeds the data, the initialization, the batches, noise and timesteps.
        num_sequences: N, size of the fixed training set drawn from the generative process.
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: peak AdamW learning rate (linear warmup over ``warmup_steps``, then cosine to 0).
        warmup_steps: warmup length.
        weight_decay: AdamW weight decay.
        grad_clip_norm: gradient norm clip.
        ema_decay: decay of the EMA of the weights, updated after every step as ``min(ema_decay, (1 + step) /
            (10 + step))`` (the usual warmup, so that short runs do not keep their initialization); the EMA
            weights are shipped.
        pair_smoothing: the pairwise potential W starts at the log bigram frequencies of the training set,
            ``log((n_ab + s) / (n_a + s V))`` with this s (additive smoothing): Adam moves each entry by about
            ``lr`` per step, far too slowly to reach the log-probabilities (and the vetoes) from zero.
        num_threads: torch threads (1: deterministic and what the test machines have).
    """

    seed: int = 0
    num_sequences: int = 16384
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.995
    pair_smoothing: float = 0.5
    num_threads: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ShippedModel:
    """A shipped sequence backbone.

    Attributes:
        name: model id, e.g. ``ehrlich-s32-l64``.
        data: the generative process of the training data: ``"ehrlich"`` (DMP chains of the Ehrlich instance
            ``data_kwargs``) or ``"selfies"`` (``sample_selfies_tokens(**data_kwargs)``).
        data_kwargs: arguments of that process (for ``ehrlich`` the ``Ehrlich`` reward's instance arguments).
        denoiser: the architecture.
        space: the policies' sample space from ``(length, pretraining_data)``: ``SequenceSpace`` over the default
            symbols (Ehrlich states 0..9, A..V) or ``MoleculeSpace`` (SELFIES).
        train: the training run.
    """

    name: str
    data: str
    data_kwargs: dict[str, Any]
    denoiser: DenoiserConfig
    space: Callable[[int, Callable[[], Tensor]], SampleSpace]
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name.replace('-', '_')}.safetensors"

    @property
    def rebuild_command(self) -> str:
        """The command that (re)trains this model and records its weights' digest."""
        return f"{TRAIN_SCRIPT} --model {self.name}"

    def metadata(self) -> dict[str, str]:
        """The configs as the weights file records them (JSON strings)."""
        return {
            "model_name": self.name,
            "data": json.dumps({"process": self.data, **self.data_kwargs}, sort_keys=True),
            "denoiser_config": self.denoiser.to_json(),
            "scheduler_config": json.dumps(SEQUENCE_SCHEDULER_CONFIG, sort_keys=True),
            "train_config": self.train.to_json(),
        }

    def sample_data(self, n: int, generator: torch.Generator) -> Tensor:
        """``n x L`` int64 training sequences from the model's generative process."""
        if self.data == "ehrlich":
            return ehrlich_function(EhrlichConfig(**self.data_kwargs)).sample(n, self.data_kwargs["dim"], generator)
        if self.data == "selfies":
            return sample_selfies_tokens(n, generator=generator, **self.data_kwargs)
        if self.data == "chembl":

            return chembl_tokens(n, self.data_kwargs["length"], generator)
        raise ValueError(f"unknown data process {self.data!r}")


EHRLICH_SEED = 0
"""Seed of the Ehrlich instances the shipped Ehrlich models were trained for (their DMP)."""


def _ehrlich_space(num_states: int, length: int, pretraining_data: Callable[[], Tensor]) -> SequenceSpace:
    return SequenceSpace(num_states, length, pretraining_data=pretraining_data)


def _ehrlich_model(num_states: int, length: int, steps: int) -> ShippedModel:
    return ShippedModel(
        name=f"ehrlich-s{num_states}-l{length}",
        data="ehrlich",
        data_kwargs={"num_states": num_states, "dim": length, "num_motifs": 4, "motif_length": 4,
                     "quantization": 4, "seed": EHRLICH_SEED},
        denoiser=DenoiserConfig(vocab_size=num_states, length=length),
        space=functools.partial(_ehrlich_space, num_states),
        train=TrainConfig(steps=steps),
    )


def _chembl_model() -> ShippedModel:
    import hashlib


    # the list's hash is part of the recorded data: weights trained on another version of the file are stale
    digest = hashlib.sha256(CHEMBL_DATA.read_bytes()).hexdigest()
    return ShippedModel(
        name=f"selfies-chembl-l{CHEMBL_LENGTH}",
        data="chembl",
        data_kwargs={"length": CHEMBL_LENGTH, "file": CHEMBL_DATA.name, "sha256": digest},
        denoiser=DenoiserConfig(vocab_size=len(SELFIES_ALPHABET), length=CHEMBL_LENGTH),
        space=MoleculeSpace,
        # every molecule of the list once (drawn as a permutation); steps set by scripts/train_chembl_prior.py's
        # measurements (the data card next to the weights)
        train=TrainConfig(num_sequences=len(chembl_rows()), steps=CHEMBL_STEPS),
    )


CHEMBL_STEPS = 2400
"""Optimizer steps of the ChEMBL backbone (batch 64)."""


def _selfies_model() -> ShippedModel:
    return ShippedModel(
        name=f"selfies-l{SELFIES_LENGTH}",
        data="selfies",
        data_kwargs={"length": SELFIES_LENGTH},
        denoiser=DenoiserConfig(vocab_size=len(SELFIES_ALPHABET), length=SELFIES_LENGTH),
        space=MoleculeSpace,
        train=TrainConfig(steps=2400),
    )


@functools.cache
def shipped_models() -> dict[str, ShippedModel]:
    """Every shipped sequence model by name."""
    # 2400 steps of 64 (about 9 epochs of the 16384 sequences): one to three CPU minutes each on one thread
    # l256: the same 2400 steps; each step's loss averages over 64 x L tokens, so a longer chain gives every step
    # more signal per first-order transition, not a harder problem (the DMP is a bigram chain whatever L)
    models = [_ehrlich_model(32, 32, 2400), _ehrlich_model(32, 64, 2400), _ehrlich_model(32, 128, 2400),
              _ehrlich_model(32, 256, 2400), _selfies_model(), _chembl_model()]
    return {m.name: m for m in models}


def shipped_model(name: str) -> ShippedModel:
    models = shipped_models()
    if name not in models:
        raise ConfigError(f"no shipped sequence model {name!r}; choose one of: {', '.join(sorted(models))}")
    return models[name]


STORED_TRAINING_SETS: dict[str, Path] = {
    "selfies-l32": Path(__file__).resolve().parents[1] / "domains" / "data" / "selfies_l32_training.npz",
}
"""Training sets kept on disk because drawing them is slow: ``selfies-l32``'s 16,384 molecules take about 8 s of
selfies and RDKit work (every other model's set draws in under 4 s), which every process that evaluates a
``selfies-qed`` run paid before its first evaluation. Written by ``scripts/train_sequence_backbone.py``."""


def training_set_key(model: ShippedModel) -> str:
    """What a stored training set was drawn from: the model's data process and its training draw (N, seed)."""
    return json.dumps({"data": model.data, "data_kwargs": model.data_kwargs, "num_sequences": model.train.num_sequences,
                       "seed": model.train.seed}, sort_keys=True)


def draw_training_tokens(model: ShippedModel) -> Tensor:
    """``model``'s training set drawn as ``scripts/train_sequence_backbone.py`` draws it: the first draw of a
    generator seeded with the training seed (``N x L`` int64)."""
    return model.sample_data(model.train.num_sequences, torch.Generator().manual_seed(model.train.seed))


def write_training_set(name: str) -> Path:
    """Draw shipped model ``name``'s training set and store it at ``STORED_TRAINING_SETS[name]`` (uint8 tokens and
    the ``training_set_key`` they were drawn for)."""
    model, path = shipped_model(name), STORED_TRAINING_SETS[name]
    if model.denoiser.vocab_size > 256:
        raise ValueError(f"{name}: a vocabulary of {model.denoiser.vocab_size} does not fit the stored uint8 tokens")
    tokens = draw_training_tokens(model).numpy().astype(np.uint8)
    np.savez_compressed(path, tokens=tokens, key=np.array(training_set_key(model)))
    return path


def stored_training_tokens(model: ShippedModel) -> Tensor | None:
    """``model``'s stored training set, or None when none is stored or the stored one was drawn for other settings
    (its key differs: the data process, N or the seed changed), so that a stale file is never used."""
    path = STORED_TRAINING_SETS.get(model.name)
    if path is None or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as stored:
        if str(stored["key"]) != training_set_key(model):
            return None
        return torch.from_numpy(stored["tokens"].astype(np.int64))


@functools.lru_cache(maxsize=4)
def training_tokens(name: str) -> Tensor:
    """The exact training set of shipped model ``name`` (``N x L`` int64): the stored copy where there is one for
    these settings (``STORED_TRAINING_SETS``), else drawn (``draw_training_tokens``). Cached per process: it is the
    reference of the novelty metrics at every evaluation."""
    model = shipped_model(name)
    stored = stored_training_tokens(model)
    return stored if stored is not None else draw_training_tokens(model)


def build_denoiser(model: ShippedModel, seed: int = 0) -> SequenceDenoiser:
    """A randomly initialized denoiser of ``model``'s architecture (initialization seeded by ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SequenceDenoiser(model.denoiser)


def load_denoiser(model: ShippedModel, path: str | Path | None = None) -> SequenceDenoiser:
    """``model``'s denoiser with its trained weights, in eval mode.

    Raises:
        MissingWeightsError: the file is missing, or its recorded configs differ from ``model``'s (stale).
        WeightsDigestError: the file differs from its line in its folder's ``SHA256SUMS`` (``benchsuite.weights``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(model.weights_path if path is None else path)
    rebuild = model.rebuild_command
    if not path.is_file():
        raise MissingWeightsError(f"sequence backbone weights not found at {path}; create them with: {rebuild}")
    check_digest(path, rebuild)
    with safe_open(str(path), framework="pt") as f:
        stored = f.metadata() or {}
    expected = model.metadata()
    stale = [k for k, v in expected.items() if k not in stored or _parse(stored[k]) != _parse(v)]
    if stale:
        raise MissingWeightsError(
            f"stale sequence backbone weights at {path} (recorded {', '.join(stale)} differ); rebuild with: {rebuild}"
        )
    denoiser = SequenceDenoiser(model.denoiser)
    denoiser.load_state_dict(load_file(str(path)), strict=True)
    return denoiser.eval()


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# ---- policies ----------------------------------------------------------------------------------------------
def sequence_policy(name: str, num_steps: int = 20, eta: float = 1.0, pretrained: bool = True,
                    init_seed: int = 0, timestep_spacing: str | None = None,
                    max_timestep: int | None = None) -> DiffusionPolicy:
    """The shipped sequence model ``name`` as a ``DiffusionPolicy`` over ``V x L`` relaxed sequences.

    Args:
        name: a key of ``shipped_models()``.
        num_steps: DDIM sampler steps.
        eta: DDIM eta (> 0).
        pretrained: load the shipped weights; False gives a random initialization (tests).
        init_seed: seed of the random initialization when ``pretrained`` is False.
        timestep_spacing, max_timestep: the sampler grid (``DiffusionPolicy``); None keeps the trailing spacing of
            ``SEQUENCE_SCHEDULER_CONFIG`` (the ``-v0`` cards).
    """
    model = shipped_model(name)
    denoiser = load_denoiser(model) if pretrained else build_denoiser(model, init_seed)
    # the novelty metrics compare samples with the model's exact training set (a no-argument callable, cached)
    space = model.space(model.denoiser.length, functools.partial(training_tokens, name))
    return DiffusionPolicy(
        denoiser,
        scheduler_config=SEQUENCE_SCHEDULER_CONFIG,
        sample_shape=(model.denoiser.vocab_size, model.denoiser.length),
        decoder=functools.partial(token_probabilities, temperature=DECODER_TEMPERATURE),
        num_steps=num_steps,
        eta=eta,
        timestep_spacing=timestep_spacing,
        max_timestep=max_timestep,
        space=space,
    )


def _shipped_files(name: str) -> list[tuple[Path, str]]:
    """The weights file of shipped model ``name`` and the command that rebuilds it (for ``benchsuite.weights``)."""
    model = shipped_model(name)
    return [(model.weights_path, model.rebuild_command)]


@embeds(lambda length=32, num_states=32, **_: _shipped_files(f"ehrlich-s{num_states}-l{length}"))
def ehrlich_policy(length: int = 32, num_states: int = 32, num_steps: int = 20, eta: float = 1.0,
                   pretrained: bool = True, timestep_spacing: str | None = None,
                   max_timestep: int | None = None) -> DiffusionPolicy:
    """The model pretrained on the DMP of the Ehrlich instance (``num_states``, ``length``, seed 0).

    Shipped: ``num_states=32`` with ``length`` 32, 64, 128 or 256. Rewards: ``Ehrlich(num_states, dim=length,
    num_motifs=4, motif_length=4, quantization=4, seed=0)`` (the task cards ``ehrlich-s32-l*-v0``).
    """
    return sequence_policy(f"ehrlich-s{num_states}-l{length}", num_steps=num_steps, eta=eta, pretrained=pretrained,
                           timestep_spacing=timestep_spacing, max_timestep=max_timestep)


@embeds(lambda **_: _shipped_files(f"selfies-l{SELFIES_LENGTH}"))
def selfies_policy(num_steps: int = 20, eta: float = 1.0, pretrained: bool = True,
                   timestep_spacing: str | None = None, max_timestep: int | None = None) -> DiffusionPolicy:
    """The model pretrained on random SELFIES (``benchsuite.domains.molecules``), ``V = len(SELFIES_ALPHABET)``,
    ``L = SELFIES_LENGTH``. Needs RDKit (the ``molecules`` extra), which makes its pretraining data (the reference
    of the novelty metrics); without it, a one-line error says how to install it."""
    require_rdkit("backbone 'selfies'")

    return sequence_policy(f"selfies-l{SELFIES_LENGTH}", num_steps=num_steps, eta=eta, pretrained=pretrained,
                           timestep_spacing=timestep_spacing, max_timestep=max_timestep)


@embeds(lambda **_: _shipped_files(f"selfies-chembl-l{CHEMBL_LENGTH}"))
def chembl_policy(num_steps: int = 20, eta: float = 1.0, pretrained: bool = True,
                  timestep_spacing: str | None = None, max_timestep: int | None = None) -> DiffusionPolicy:
    """The model pretrained on real molecules: the ChEMBL list of ``benchsuite.domains.chembl`` (approved drugs and a
    ChEMBL sample set, CC BY-SA 3.0), ``V = len(SELFIES_ALPHABET)``, ``L = CHEMBL_LENGTH`` (64); the same
    architecture and decoder as ``selfies_policy``, so the ``selfies-*`` and ``pmo-*`` rewards score its samples
    with ``length: 64``. Loads without RDKit or datamol (its data is a committed file); its rewards need RDKit."""

    return sequence_policy(f"selfies-chembl-l{CHEMBL_LENGTH}", num_steps=num_steps, eta=eta, pretrained=pretrained,
                           timestep_spacing=timestep_spacing, max_timestep=max_timestep)


# the sample space each factory's policies carry, declared for readers that need it without building a model (the
# report's sample-grid panels: benchsuite.tasks.backbone_space); a factory without one makes ImageSpace policies
ehrlich_policy.sample_space = SequenceSpace
selfies_policy.sample_space = MoleculeSpace
chembl_policy.sample_space = MoleculeSpace
