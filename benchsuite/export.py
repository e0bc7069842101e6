"""Trained weights of a finished run, written into its run folder in the format its ecosystem loads.

- Embedded backbones (digits, sequences, the tiny test model): ``model.safetensors``, the denoiser's
  ``trainable_state_dict`` written with safetensors. Rebuilding the policy needs only the run's config, which the
  run folder holds already (``summary.json``): ``benchsuite.load_run(run_dir)`` does both.
- Stable Diffusion (LoRA through peft): ``pytorch_lora_weights.safetensors`` in diffusers' LoRA format, written by
  diffusers' own ``StableDiffusionPipeline.save_lora_weights`` from peft's ``get_peft_model_state_dict``, so that

      pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
      pipe.load_lora_weights("results/runs/<run id>")

  applies the fine-tuned adapter.

- A method that trains a model of its own instead of the policy (``Method.exported_model``: REINVENT's agent): that
  model's ``state_dict`` under the file name the method gives (``agent.safetensors``), with the metadata its loader
  checks (``selfies_rnn.load_prior`` reloads REINVENT's).

Only methods that train the policy (``Method.trains_policy``) or a model of their own (``Method.exported_model``)
export: not ``pretrained``, ``best-of-n`` or ``bo``, whose product is the pretrained model or a set of samples; and
only the process that writes the run folder (rank 0 under a distributed launch). Files are written atomically
(``benchsuite.files.atomic_write_bytes``; diffusers' LoRA file: a temporary folder, then ``os.replace``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import distributed
from .errors import MissingWeightsError
from .files import atomic_write_bytes
from .policies.sd import DEFAULT_ADAPTER, SDPolicy
from .registry import METHODS
from .weights import WeightsFormatError

MODEL_FILE = "model.safetensors"
"""The embedded backbones' exported weights (safetensors; keys of ``DiffusionPolicy.trainable_state_dict``)."""
LORA_FILE = "pytorch_lora_weights.safetensors"
"""Stable Diffusion's exported LoRA: diffusers' default LoRA file name, which ``load_lora_weights(folder)`` finds."""


def _is_sd(policy) -> bool:
    return isinstance(policy, SDPolicy)


def weights_file(policy) -> str:
    """The file name ``save_weights`` writes for ``policy``."""
    return LORA_FILE if _is_sd(policy) else MODEL_FILE


def save_weights(policy, folder: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``policy``'s trained weights into ``folder`` (see the module docstring) and return the file.

    Args:
        policy: a ``DiffusionPolicy`` (an ``SDPolicy`` writes its LoRA adapter, any other its
            ``trainable_state_dict``).
        folder: an existing folder (the run folder).
        metadata: strings stored in the safetensors header of ``model.safetensors`` (e.g. the run id); diffusers'
            LoRA file holds its own (the LoRA config).
    """
    folder = Path(folder)
    state = _on_cpu(policy.trainable_state_dict())
    if not _is_sd(policy):
        return _write_safetensors(folder / MODEL_FILE, state, metadata)
    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:  # diffusers writes the file itself
        # the LoRA config (rank, alpha, targets) goes in the header, so that diffusers rebuilds the adapter exactly
        config = policy.sd_denoiser.unet.peft_config[DEFAULT_ADAPTER].to_dict()
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=state, weight_name=LORA_FILE,
                                                  unet_lora_adapter_metadata=config)
        target = folder / LORA_FILE
        os.replace(Path(tmp) / LORA_FILE, target)
    return target


def _on_cpu(state: dict) -> dict:
    """``state``'s tensors detached, on the CPU (off the GPU) and contiguous, as safetensors writes them."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _write_safetensors(path: Path, state: dict, metadata: dict[str, str] | None) -> Path:
    """Write ``state`` to ``path`` as safetensors (atomically), ``metadata`` in its header; returns ``path``."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save(state, metadata={"format": "pt", **(metadata or {})}))


def load_weights(policy, folder: str | os.PathLike) -> Path:
    """Load the weights ``save_weights`` wrote in ``folder`` into ``policy`` (in place) and return the file.

    Raises:
        MissingWeightsError: the folder holds no exported weights for this kind of policy.
        WeightsFormatError: the file does not fit the policy (other keys or shapes, not a safetensors file).
    """
    from safetensors import SafetensorError

    path = Path(folder) / weights_file(policy)
    if not path.is_file():
        raise MissingWeightsError(f"{path} does not exist: the run exported no weights (only methods that train the "
                                  "policy do, when their run finishes)")
    try:
        if _is_sd(policy):
            from diffusers import StableDiffusionPipeline

            state = StableDiffusionPipeline.lora_state_dict(str(path.parent), weight_name=path.name)[0]
            state = {k.removeprefix("unet."): v for k, v in state.items()}  # diffusers' keys -> peft's
        else:
            from safetensors.torch import load_file

            state = load_file(path)
        policy.load_trainable_state_dict(state)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:  # from safetensors, torch, peft
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise WeightsFormatError(f"{path} does not fit the run's policy ({first}); export it again by resuming "
                                 "the run") from None
    return path


def export_finished(config, policy, run_dir: Path | None, status: str, method=None) -> Path | None:
    """The runner's end-of-run hook: when a run has ``status`` FINISHED and this process writes the run folder, save
    there the policy's weights of a method that trains it (``save_weights``), or else the model of ``method``'s own
    that it exports (``Method.exported_model``; ``method``: the run's ``Method``). Returns the file, or None."""
    if run_dir is None or status != "FINISHED" or not distributed.is_main_process():
        return None
    run = {"run_id": config.run_id, "task": config.task, "method": config.method}
    if METHODS.load(config.method).trains_policy:
        return save_weights(policy, run_dir, metadata=run)
    own = None if method is None else method.exported_model()
    if own is None:
        return None
    name, module, metadata = own
    return _write_safetensors(Path(run_dir) / name, _on_cpu(module.state_dict()), {**metadata, **run})
