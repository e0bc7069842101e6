"""Stable Diffusion (SD 1.x latent diffusion) as a ``DiffusionPolicy``: the ``sd`` backbone.

- State space: SD latents, ``4 x (res / 8) x (res / 8)``, multiplied by the VAE's ``scaling_factor`` (unit
  variance, as the UNet was trained). The sampler is ``DiffusionPolicy``'s DDIM step with SD's own scheduler
  config (``scaled_linear`` betas, leading spacing with ``steps_offset = 1``), so the last step starts at t = 1
  and every step keeps a positive std (DDPO's setting; kvablack/ddpo-pytorch builds its DDIM scheduler from
  the pipeline's config the same way).
- Conditions: ids into a prompt list (``tasks/prompts/<name>.txt``). Every prompt's CLIP text embedding is
  computed once at construction (then the text encoder is dropped); id ``len(prompts)`` is the empty prompt, the
  null condition of classifier-free guidance (as the diffusers pipelines' unconditional branch).
- Decoder: the VAE decoder, differentiable, to images in [0, 1] (DRaFT backpropagates through it).
- Trainable weights: LoRA on the UNet attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``; r =
  lora_alpha = rank) through diffusers' peft integration (``unet.add_adapter``); base weights frozen.
  ``trainable_state_dict`` is the LoRA weights only (peft's ``get_peft_model_state_dict``).
- The frozen reference is the same UNet with the adapters disabled (no second copy of ~860 M parameters); a
  reference of an already fine-tuned policy holds a frozen snapshot of its LoRA weights as a second adapter.
- Mixed precision (``fp16`` / ``bf16``) applies on CUDA only: base UNet and VAE weights in half precision,
  LoRA weights in fp32, forward passes under autocast (the recipe of ddpo-pytorch and of diffusers'
  ``train_text_to_image_lora.py``). There is no loss scaling: bf16 needs none; with fp16 the LoRA gradients are
  fp32 but activation gradients are fp16. On the CPU everything is fp32.

Weights never download inside a constructor: ``sd_policy`` resolves ``model`` first (a local diffusers folder,
``$BENCHSUITE_SD_MODEL``, ``<weights dir>/<org>--<name>``, or the hub when downloads are allowed) and raises
``MissingWeightsError`` with what to do when none applies.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import unwrap
from ..errors import ConfigError, MissingWeightsError
from ..prompts import load_prompts
from ..spaces import ImageSpace
from ..weights import LCM_LORA_SD15, STABLE_DIFFUSION_V1_5, resolve
from .base import DiffusionPolicy
from .consistency import boundary_scalings

SD15 = "runwayml/stable-diffusion-v1-5"
SD15_IDS = (SD15, STABLE_DIFFUSION_V1_5.hub_repo)
"""Hub ids of SD 1.5, all served by the catalog entry ``stable-diffusion-v1-5`` (one local folder): the original id,
which most SD 1.5 code still names and the cards use, and the maintained copy it moved to in 2024."""
MODEL_ENV = "BENCHSUITE_SD_MODEL"
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PRECISIONS = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_ADAPTER = "default"


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on CUDA; a no-op elsewhere or when ``dtype`` is None."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def _lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS))


def _strip(key: str) -> str:
    """A denoiser state-dict key -> the UNet's key (drops a DDP ``module.`` and our ``unet.`` prefix)."""
    key = key.removeprefix("module.")
    return key.removeprefix("unet.")


class SDDenoiser(nn.Module):
    """``forward(x, t, cond) -> eps`` of a LoRA-adapted ``UNet2DConditionModel`` on precomputed prompt embeddings.

    Args:
        unet: the pretrained UNet; its weights are frozen and a LoRA adapter named ``default`` is added.
        prompt_embeds: ``(P + 1) x L x D`` text embeddings; row ``P`` is the empty prompt (the null condition).
        lora_rank: LoRA rank r (lora_alpha = r).
    """

    def __init__(self, unet: nn.Module, prompt_embeds: Tensor, lora_rank: int):
        super().__init__()
        from peft.tuners.tuners_utils import BaseTunerLayer

        unet.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):  # the LoRA init (lora_A Gaussian, lora_B zero) is part of the
            torch.manual_seed(0)  # pretrained policy: the same in every run and every process
            unet.add_adapter(_lora_config(lora_rank), adapter_name=DEFAULT_ADAPTER)
        self.unet = unet
        self.lora_rank = lora_rank
        self.register_buffer("prompt_embeds", prompt_embeds.float(), persistent=False)
        self.null_condition = len(prompt_embeds) - 1
        self.autocast_dtype: torch.dtype | None = None
        self.no_grad_chunk = 64  # UNet batch (guidance doubles the chains) per forward without gradients
        self._snapshot_names = itertools.count()

    @property
    def _tuner_layers(self) -> list[nn.Module]:
        """Every peft layer of the UNet (a loaded LoRA may add layers on modules the trained adapter leaves alone)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.unet.modules() if isinstance(m, BaseTunerLayer)]

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """``x``: ``B x 4 x h x w`` latents; ``t``: ``B`` int64 timesteps; ``cond``: ``B`` prompt ids or None
        (the empty prompt). Returns eps, ``B x 4 x h x w`` float32."""
        if cond is None:
            cond = torch.full((len(x),), self.null_condition, dtype=torch.int64, device=x.device)
        if len(cond) and (int(cond.min()) < 0 or int(cond.max()) > self.null_condition):
            raise ValueError(f"condition ids must be in [0, {self.null_condition}] (prompt ids and the null id "
                             f"{self.null_condition}), got {cond.min().item()}..{cond.max().item()}")
        hidden = self.prompt_embeds[cond.to(self.prompt_embeds.device)]
        # without gradients (rollouts, evaluation) a large batch goes through the UNet in chunks: same result,
        # bounded activation memory; with gradients a chunk would not save memory, so the batch stays whole
        step = max(1, len(x) if torch.is_grad_enabled() else self.no_grad_chunk)
        out = []
        with _autocast(x.device, self.autocast_dtype):
            for i in range(0, len(x), step):
                part = slice(i, i + step)
                out.append(self.unet(x[part], t[part], encoder_hidden_states=hidden[part], return_dict=False)[0])
        return torch.cat(out).float()

    # ---- precision ----------------------------------------------------------------------------------------
    def set_precision(self, dtype: torch.dtype) -> None:
        """Base weights to ``dtype``, every LoRA weight to fp32 (in place: parameter objects are kept, so
        optimizers stay valid); autocast to ``dtype`` unless it is fp32."""
        for name, p in self.unet.named_parameters():
            want = torch.float32 if "lora_" in name else dtype
            if p.dtype != want:
                p.data = p.data.to(want)
        self.autocast_dtype = None if dtype == torch.float32 else dtype

    # ---- adapters ----------------------------------------------------------------------------------------
    def _lora_params(self) -> list[nn.Parameter]:
        return [p for name, p in self.unet.named_parameters() if "lora_" in name]

    @contextlib.contextmanager
    def use_adapter(self, name: str | None) -> Iterator[None]:
        """Run the UNet with adapter ``name`` (None: no adapter, i.e. the pretrained model) inside the block.

        Afterwards the trainable ``default`` adapter is active again and every LoRA weight has its previous
        ``requires_grad`` (peft's switches set those flags themselves)."""
        if name == DEFAULT_ADAPTER:
            yield
            return
        saved = [(p, p.requires_grad) for p in self._lora_params()]
        try:
            for layer in self._tuner_layers:
                if name is None:
                    layer.enable_adapters(False)
                else:
                    layer.set_adapter(name)
            yield
        finally:
            for layer in self._tuner_layers:
                if name is None:
                    layer.enable_adapters(True)
                else:
                    layer.set_adapter(DEFAULT_ADAPTER)
            for p, flag in saved:
                p.requires_grad_(flag)

    def lora_state_dict(self, adapter: str = DEFAULT_ADAPTER) -> dict[str, Tensor]:
        """The weights of LoRA ``adapter`` under adapter-independent keys (peft's ``get_peft_model_state_dict``);
        the tensors share storage with the parameters."""
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.unet, adapter_name=adapter)

    def as_lora_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """LoRA weights from either a LoRA state (``lora_state_dict``'s keys) or a full state dict of this
        denoiser (``state_dict()``, possibly of a DDP wrapper), under ``lora_state_dict``'s keys."""
        from peft.utils import get_peft_model_state_dict

        if any(f".lora_A.{DEFAULT_ADAPTER}." in k for k in state):
            state = {_strip(k): v for k, v in state.items()}
            return get_peft_model_state_dict(self.unet, state_dict=state, adapter_name=DEFAULT_ADAPTER)
        return state

    def load_lora(self, state: dict[str, Tensor], adapter: str = DEFAULT_ADAPTER) -> None:
        """Copy LoRA weights (``lora_state_dict`` keys) into ``adapter`` in place; raises on missing or extra keys."""
        from peft.utils import set_peft_model_state_dict

        expected = {k: v.shape for k, v in self.lora_state_dict(adapter).items()}
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        reshaped = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k])
        if missing or unexpected or reshaped:
            raise ValueError(f"LoRA state does not match the adapter (rank {self.lora_rank}): {len(missing)} missing "
                             f"keys {missing[:2]}, {len(unexpected)} unexpected {unexpected[:2]}, {len(reshaped)} "
                             f"of another shape {reshaped[:2]}")
        with torch.no_grad():
            set_peft_model_state_dict(self.unet, state, adapter_name=adapter)

    def add_snapshot(self, state: dict[str, Tensor]) -> str:
        """A new frozen adapter holding ``state`` (LoRA weights); returns its name. The default adapter stays the
        active, trainable one."""
        name = f"frozen{next(self._snapshot_names)}"
        saved = [(p, p.requires_grad) for p in self._lora_params()]
        with warnings.catch_warnings():  # peft warns that a second adapter is being added: that is the point
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            self.unet.add_adapter(_lora_config(self.lora_rank), adapter_name=name)  # peft activates the new one
        for layer in self._tuner_layers:
            layer.set_adapter(DEFAULT_ADAPTER)
        for p, flag in saved:
            p.requires_grad_(flag)
        for pname, p in self.unet.named_parameters():
            if f".{name}." in pname:  # frozen, fp32 like every LoRA weight, on this denoiser's device
                p.requires_grad_(False)
                p.data = p.data.to(device=self.prompt_embeds.device, dtype=torch.float32)
        self.load_lora(state, name)
        return name

    def load_frozen_lora(self, path: Path, adapter: str) -> None:
        """Load a diffusers-format LoRA file (e.g. LCM-LoRA) as a frozen extra adapter ``adapter`` through diffusers'
        own loader; the trainable ``default`` adapter stays the active one, so sampling is unchanged."""
        from diffusers import StableDiffusionPipeline

        state = StableDiffusionPipeline.lora_state_dict(str(path))[0]  # converts kohya / older formats
        saved = [(p, p.requires_grad) for p in self._lora_params()]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            self.unet.load_lora_adapter(state, prefix="unet", adapter_name=adapter)
        for layer in self._tuner_layers:  # diffusers activates what it loads: back to the trained adapter alone
            layer.set_adapter(DEFAULT_ADAPTER)
        for p, flag in saved:
            p.requires_grad_(flag)
        for pname, p in self.unet.named_parameters():
            if f".{adapter}." in pname:
                p.requires_grad_(False)
                p.data = p.data.to(device=self.prompt_embeds.device, dtype=torch.float32)

    def lora_is_identity(self) -> bool:
        """True while the default adapter adds nothing (every ``lora_B`` is zero, as at initialisation)."""
        return all(not bool(p.any()) for name, p in self.unet.named_parameters()
                   if f"lora_B.{DEFAULT_ADAPTER}." in name)


class SDDecoder(nn.Module):
    """Latents (scaled) -> images in [0, 1] through the VAE decoder, differentiable; decodes ``chunk`` latents
    at a time to bound memory. ``B x 4 x h x w`` -> ``B x 3 x 8h x 8w`` (float32)."""

    def __init__(self, vae: nn.Module, chunk: int = 8):
        super().__init__()
        vae.requires_grad_(False)
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.chunk = chunk
        self.autocast_dtype: torch.dtype | None = None

    def forward(self, latents: Tensor) -> Tensor:
        images = []
        for part in latents.split(self.chunk):
            with _autocast(part.device, self.autocast_dtype):
                image = self.vae.decode(part / self.scaling_factor + self.shift_factor, return_dict=False)[0]
            images.append((image.float() / 2 + 0.5).clamp(0, 1))
        return torch.cat(images)

    def set_precision(self, dtype: torch.dtype) -> None:
        for p in self.vae.parameters():
            if p.dtype != dtype:
                p.data = p.data.to(dtype)
        self.autocast_dtype = None if dtype == torch.float32 else dtype


class _Shared:
    """A callable shared by reference: deep copies return the same object (the reference's decoder)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        self.fn = fn

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


class _FrozenView(nn.Module):
    """The live ``SDDenoiser`` run with a fixed adapter (None: adapters off). Holds no weights of its own: the
    UNet is not a submodule, so ``requires_grad_``/``eval``/``to`` on the reference policy leave it alone.

    ``load_state_dict`` freezes the given weights into the view (as a snapshot adapter), which is what loading a
    state into a frozen copy means."""

    def __init__(self, live: SDDenoiser, adapter: str | None):
        super().__init__()
        self.__dict__["live"] = live  # not registered as a submodule on purpose
        self.adapter = adapter

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        with self.live.use_adapter(self.adapter):
            return self.live(x, t, cond)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False):
        lora = self.live.as_lora_state(dict(state_dict))
        if self.adapter is None:
            self.adapter = self.live.add_snapshot(lora)
        else:
            self.live.load_lora(lora, self.adapter)
        return nn.modules.module._IncompatibleKeys([], [])


class SDReferencePolicy(DiffusionPolicy):
    """A frozen ``SDPolicy`` that shares the live UNet (see ``SDPolicy.frozen_copy``)."""

    def __init__(self, live: SDDenoiser, decoder: Callable[[Tensor], Tensor], sampler: dict[str, Any],
                 adapter: str | None, nfe: list[int]):
        super().__init__(_FrozenView(live, adapter), decoder=_Shared(decoder), **sampler)
        self._sampler = sampler
        self._nfe = nfe  # one counter with the live policy
        self.to(live.prompt_embeds.device)
        self.requires_grad_(False)
        self.eval()

    def trainable_state_dict(self) -> dict[str, Tensor]:
        view = self.denoiser
        return {} if view.adapter is None else view.live.lora_state_dict(view.adapter)

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.denoiser.load_state_dict(state)

    def frozen_copy(self) -> SDReferencePolicy:
        view = self.denoiser
        adapter = None if view.adapter is None else view.live.add_snapshot(view.live.lora_state_dict(view.adapter))
        return SDReferencePolicy(view.live, self.decoder.fn, self._sampler, adapter, self._nfe)


class SDConsistencyPredictor(nn.Module):
    """One latent-consistency step with an LCM-LoRA adapter of the shared UNet: ``(x, t, cond) -> x0`` latents.

    As diffusers' ``LCMScheduler.step`` (one step to the clean end): x0_pred = (x - sqrt(1 - abar) eps) / sqrt(abar)
    with eps from the UNet with only the ``adapter`` LoRA active (the base model plus LCM-LoRA, no guidance, as
    LCM-LoRA is used at guidance 1), then c_skip(t) x + c_out(t) x0_pred with LCM's boundary scalings
    (sigma_data 0.5, timestep scaling 10). Frozen; differentiable in ``x``.
    """

    def __init__(self, denoiser: SDDenoiser, adapter: str, alphas_cumprod: Tensor):
        super().__init__()
        self._denoiser = [denoiser]  # not a submodule: the UNet belongs to the policy
        self.adapter = adapter
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        denoiser = self._denoiser[0]
        with denoiser.use_adapter(self.adapter):
            eps = denoiser(x, t, cond)
        a = self.alphas_cumprod.to(x.device).index_select(0, t.long()).view(-1, 1, 1, 1)
        c_skip, c_out = boundary_scalings(t, sigma_data=0.5, timestep_scaling=10.0)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return c_skip.to(x.device).view(-1, 1, 1, 1) * x + c_out.to(x.device).view(-1, 1, 1, 1) * x0


class SDPolicy(DiffusionPolicy):
    """Stable Diffusion with LoRA as a ``DiffusionPolicy`` (see the module docstring). Built by ``sd_policy``
    from a model folder, or directly from modules (``scripts/bench_sd_sampling.py`` does so with random weights).

    Args:
        unet: ``UNet2DConditionModel`` (frozen here; a LoRA adapter is added).
        vae: ``AutoencoderKL`` (frozen).
        prompt_embeds: ``(P + 1) x L x D`` text embeddings, the last row the empty prompt.
        scheduler_config: the model's scheduler config (its betas, spacing and ``steps_offset`` are used).
        prompts: the P prompts the ids refer to (kept for display).
        resolution: image side in pixels.
        num_steps, eta, guidance_scale: sampler settings (see ``DiffusionPolicy``).
        lora_rank: LoRA rank.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"``; applies when the policy is on a CUDA device.
        consistency_lora: an LCM-LoRA for this model (a hub id or a local diffusers LoRA file), resolved on first use
            by ``resolve_x0_predictor`` (SQDF's x0 predictor), or None.
    """

    def __init__(self, unet: nn.Module, vae: nn.Module, prompt_embeds: Tensor, scheduler_config: dict,
                 prompts: Sequence[str] = (), resolution: int = 512, num_steps: int = 50, eta: float = 1.0,
                 guidance_scale: float = 5.0, lora_rank: int = 4, mixed_precision: str = "fp16",
                 consistency_lora: str | None = None):
        if mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {sorted(PRECISIONS)}, got {mixed_precision!r}")
        if lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {lora_rank}")
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(unet.config.block_out_channels) - 1)
        if resolution < 1 or resolution % (vae_factor * unet_factor):
            raise ValueError(f"resolution must be a positive multiple of {vae_factor * unet_factor} for this model, "
                             f"got {resolution}")
        latent = resolution // vae_factor
        sampler = dict(scheduler_config=dict(scheduler_config), sample_shape=(unet.config.in_channels, latent, latent),
                       num_steps=num_steps, eta=eta, guidance_scale=guidance_scale,
                       null_condition=len(prompt_embeds) - 1, space=ImageSpace(channels=3))  # RGB from the VAE
        super().__init__(SDDenoiser(unet, prompt_embeds, lora_rank), decoder=SDDecoder(vae), **sampler)
        self._sampler = sampler
        self.prompts = tuple(prompts)
        self.resolution = resolution
        self.mixed_precision = mixed_precision
        self.consistency_lora = consistency_lora

    def resolve_x0_predictor(self, allow_download: bool | None = None) -> nn.Module | None:
        """Load the LCM-LoRA (``consistency_lora``) as a frozen adapter of the UNet the first time it is asked for,
        through ``benchsuite.weights`` (a local file, ``$BENCHSUITE_LCM_LORA``, the weights dir, or the hub when
        downloads are allowed); None without one. Raises ``MissingWeightsError`` saying how to get it."""
        if self.x0_predictor is None and self.consistency_lora is not None:
            from dataclasses import replace

            local = Path(self.consistency_lora).expanduser()
            is_path = local.exists() or self.consistency_lora.startswith(("/", ".", "~"))
            spec = LCM_LORA_SD15 if is_path or self.consistency_lora == LCM_LORA_SD15.hub_repo else replace(
                LCM_LORA_SD15, filename=self.consistency_lora.replace("/", "--") + ".safetensors",
                hub_repo=self.consistency_lora, source=f"https://huggingface.co/{self.consistency_lora}")
            path = resolve(spec, path=local if is_path else None, allow_download=allow_download)
            denoiser = self.sd_denoiser
            denoiser.load_frozen_lora(path, "lcm")
            predictor = SDConsistencyPredictor(denoiser, "lcm", _alphas_cumprod(self._sampler["scheduler_config"]))
            self.x0_predictor = predictor.to(self.stds.device)
        return self.x0_predictor

    @property
    def sd_denoiser(self) -> SDDenoiser:
        """The ``SDDenoiser`` (also when ``denoiser`` is wrapped for distributed training)."""
        return unwrap(self.denoiser)

    def _apply(self, fn, recurse: bool = True):
        # every move (.to, .cuda, .cpu, .half) ends with the precision rule: half base weights on CUDA only
        out = super()._apply(fn, recurse)
        dtype = PRECISIONS[self.mixed_precision] if self.stds.device.type == "cuda" else torch.float32
        self.sd_denoiser.set_precision(dtype)
        self.decoder.set_precision(dtype)
        return out

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The LoRA weights (peft keys); the base weights never change."""
        return self.sd_denoiser.lora_state_dict()

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.sd_denoiser.load_lora(state)

    def frozen_copy(self) -> SDReferencePolicy:
        """The reference policy without a second UNet: the shared UNet with adapters disabled (the pretrained
        model), or, once the LoRA weights have moved, with a frozen snapshot of them as a second adapter. It
        shares this policy's ``nfe`` counter."""
        live = self.sd_denoiser
        adapter = None if live.lora_is_identity() else live.add_snapshot(live.lora_state_dict())
        return SDReferencePolicy(live, self.decoder, self._sampler, adapter, self._nfe)


def _alphas_cumprod(scheduler_config: dict) -> Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config).alphas_cumprod


# ---- loading -----------------------------------------------------------------------------------------------
def resolve_model(model: str, allow_download: bool | None = None) -> Path:
    """The local diffusers folder of ``model`` (a folder path or a hub id), via ``benchsuite.weights.resolve``.

    A path (it exists, or starts with ``/``, ``.`` or ``~``, or is not of the form ``org/name``) must exist. A hub
    id is looked up as ``$BENCHSUITE_SD_MODEL``, then ``<weights dir>/org--name``, then downloaded when allowed
    (SD 1.5, under either id of ``SD15_IDS``, from the catalog entry ``stable-diffusion-v1-5`` of
    ``benchsuite.weights``: its maintained hub copy, configs and fp32 safetensors only, in one local folder). Raises ``MissingWeightsError`` naming what to do.
    """
    from dataclasses import replace

    local = Path(model).expanduser()
    is_path = local.exists() or model.startswith(("/", ".", "~")) or model.count("/") != 1
    if is_path or model in SD15_IDS:
        spec = STABLE_DIFFUSION_V1_5
    else:  # another SD 1.x-style hub repository
        spec = replace(STABLE_DIFFUSION_V1_5, name=f"Stable Diffusion {model} (diffusers folder)",
                       filename=model.replace("/", "--"), hub_repo=model, source=f"https://huggingface.co/{model}")
    folder = resolve(spec, path=local if is_path else None, allow_download=allow_download)
    missing = [s for s in SUBFOLDERS if not (folder / s).is_dir()]
    if missing:
        raise MissingWeightsError(f"{folder} is not a diffusers Stable Diffusion folder (no {', '.join(missing)} "
                                  f"subfolder); point the task's sampler.model or ${MODEL_ENV} at one, e.g. a "
                                  f"download of {spec.source}")
    return folder


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder: nn.Module, prompts: Sequence[str], batch: int = 32) -> Tensor:
    """CLIP text embeddings (last hidden states, SD's conditioning) of ``prompts``: ``P x L x D`` float32 on CPU.
    Prompts are padded to the tokenizer's ``model_max_length`` (77 for SD) and truncated past it."""
    out = []
    for i in range(0, len(prompts), batch):
        ids = tokenizer(list(prompts[i : i + batch]), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids)[0].float().cpu())
    return torch.cat(out)


def _load(what: str, folder: Path, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (OSError, ValueError) as exc:  # missing or unreadable files: one line that names the folder
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise MissingWeightsError(f"could not load the {what} of {folder} ({first}); re-download the model folder "
                                  f"or point ${MODEL_ENV} at a complete one") from None


def sd_policy(model: str = SD15, prompts: str = "animals", num_steps: int = 50, eta: float = 1.0,
              guidance_scale: float = 5.0, resolution: int = 512, lora_rank: int = 4, mixed_precision: str = "fp16",
              consistency_lora: str | None = "latent-consistency/lcm-lora-sdv1-5",
              allow_download: bool | None = None) -> SDPolicy:
    """Stable Diffusion with LoRA as a ``DiffusionPolicy`` (backbone ``sd``).

    Args:
        model: a local diffusers folder or a hub id (``runwayml/stable-diffusion-v1-5`` is fetched from its
            maintained copy ``stable-diffusion-v1-5/stable-diffusion-v1-5``); see ``resolve_model``.
        prompts: prompt list name (``tasks/prompts/<name>.txt``); condition ids index it, the null id is its length.
        num_steps, eta, guidance_scale: sampler settings (DDPO: 50, 1.0, 5.0).
        resolution: image side in pixels (latents are ``resolution / 8``).
        lora_rank: LoRA rank on the UNet attention projections (DDPO's config: 4).
        mixed_precision: ``no`` / ``fp16`` / ``bf16`` on CUDA (see the module docstring); fp32 on the CPU.
        consistency_lora: the LCM-LoRA SQDF scores its soft-Q estimate with (a hub id or a local LoRA file; None:
            none). Resolved only when a method asks for it (``SDPolicy.resolve_x0_predictor``), never here.
        allow_download: download from the hub if the weights are not local (None: ``$BENCHSUITE_ALLOW_DOWNLOADS``).

    Raises:
        MissingWeightsError: the model is not local and downloads are off, or its folder is incomplete.
        ConfigError: transformers or peft is missing, or the prompt list does not exist.
    """
    if mixed_precision not in PRECISIONS:
        raise ConfigError(f"mixed_precision must be one of {sorted(PRECISIONS)}, got {mixed_precision!r}")
    prompt_list = load_prompts(prompts)
    try:
        import peft  # noqa: F401
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise ConfigError(f"the sd backbone needs transformers and peft ({exc.name} is missing); "
                          "pip install 'benchsuite[sd]'") from None
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    folder = resolve_model(model, allow_download)
    tokenizer = _load("tokenizer", folder, lambda: CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"))
    text_encoder = _load("text encoder", folder,
                         lambda: CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval())
    embeds = encode_prompts(tokenizer, text_encoder, [*prompt_list, ""])
    del text_encoder  # only the embeddings are needed from here on
    unet = _load("UNet", folder, lambda: UNet2DConditionModel.from_pretrained(folder, subfolder="unet"))
    vae = _load("VAE", folder, lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae"))
    scheduler_config = _load("scheduler config", folder,
                             lambda: dict(DDIMScheduler.load_config(folder, subfolder="scheduler")))
    return SDPolicy(unet.eval(), vae.eval(), embeds, scheduler_config, prompts=prompt_list, resolution=resolution,
                    num_steps=num_steps, eta=eta, guidance_scale=guidance_scale, lora_rank=lora_rank,
                    mixed_precision=mixed_precision, consistency_lora=consistency_lora)
