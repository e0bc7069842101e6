"""Explicit resolution of model weights that do not ship with the package.

Nothing downloads inside a constructor. Model classes take a resolved local path; factories call ``resolve``
first, which looks, in this order, at:

1. an explicit path (a task card's ``weights`` kwarg or a function argument): it must exist;
2. the environment variable named by the spec (e.g. ``BENCHSUITE_AESTHETIC_WEIGHTS``);
3. ``<weights dir>/<filename>``, where the weights dir is ``$BENCHSUITE_WEIGHTS_DIR`` or
   ``~/.cache/benchsuite/weights``;
4. the Hugging Face cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``): a file or repository that
   ``hf download`` or any diffusers/transformers program already fetched is used where it is, without a network
   call (``huggingface_hub.try_to_load_from_cache``, ``snapshot_download(local_files_only=True)``);
5. the Hugging Face hub, only when downloads are allowed (``allow_download=True`` or
   ``BENCHSUITE_ALLOW_DOWNLOADS=1``) and ``HF_HUB_OFFLINE`` is not set; the file is stored under the weights dir.

When none applies, ``MissingWeightsError`` names the file, where it was looked for and how to get it.

The weights that ship inside the package (``benchsuite/policies/weights/``) are pinned by a digest manifest,
``SHA256SUMS`` in the same folder, one ``<sha256>  <file name>`` line per file as ``sha256sum`` writes it (so
``cd benchsuite/policies/weights && sha256sum -c SHA256SUMS`` verifies them by hand). The loaders refuse a file
that does not match its line (``check_digest``: ``WeightsDigestError``, exit code 2 at the command line), the
training scripts rewrite the lines of what they write (``record_digests``), and a run records the digest of its
backbone's files (``weights_digest``; the ``backbone_digest`` tag and the task digest of its run id), so that a
task id's meaning is pinned to its weights.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import BenchsuiteError, MissingWeightsError, WeightsDigestError

DOWNLOADS_ENV = "BENCHSUITE_ALLOW_DOWNLOADS"
WEIGHTS_DIR_ENV = "BENCHSUITE_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightSpec:
    """Where a model file (or a model folder) comes from.

    Attributes:
        name: what it is, for messages (``"LAION aesthetic head"``).
        filename: file or folder name under the weights dir.
        env_var: environment variable that may hold its path.
        hub_repo: Hugging Face repo id to download from when allowed, or None.
        hub_filename: file inside ``hub_repo``; None downloads the whole repo snapshot (a diffusers folder).
        source: where a person gets it by hand (a URL), shown in the error.
        hub_allow_patterns: for a snapshot (``hub_filename=None``), the only files to fetch (glob patterns as
            ``huggingface_hub.snapshot_download``'s ``allow_patterns``); None fetches the whole repository.
    """

    name: str
    filename: str
    env_var: str
    hub_repo: str | None = None
    hub_filename: str | None = None
    source: str = ""
    hub_allow_patterns: tuple[str, ...] | None = None


def weights_dir() -> Path:
    """``$BENCHSUITE_WEIGHTS_DIR`` or ``~/.cache/benchsuite/weights``."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or Path.home() / ".cache" / "benchsuite" / "weights")


def downloads_allowed() -> bool:
    """True when ``BENCHSUITE_ALLOW_DOWNLOADS`` is 1, true or yes."""
    return os.environ.get(DOWNLOADS_ENV, "").strip().lower() in {"1", "true", "yes"}


def resolve(spec: WeightSpec, path: str | os.PathLike | None = None, allow_download: bool | None = None) -> Path:
    """The local path of ``spec``'s weights (see the module docstring for the search order).

    Raises:
        MissingWeightsError: not found locally and downloads not allowed (or the download failed).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise MissingWeightsError(f"{spec.name} weights not found at {p}; {_how_to_get(spec)}")
        return p
    env = os.environ.get(spec.env_var)
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise MissingWeightsError(f"${spec.env_var} points to {p}, which does not exist; {_how_to_get(spec)}")
        return p
    local = weights_dir() / spec.filename
    if local.exists():
        return local
    cached = hf_cached(spec)
    if cached is not None:
        return cached
    allow = downloads_allowed() if allow_download is None else allow_download
    if allow and spec.hub_repo:
        if hf_offline():
            raise MissingWeightsError(f"{spec.name} is neither in {local} nor in the Hugging Face cache, and "
                                      f"HF_HUB_OFFLINE is set, so nothing is downloaded; on a machine with network "
                                      f"run {_fetch_command(spec)} and copy the file to {local}, or unset HF_HUB_OFFLINE")
        return _download(spec, local)
    raise MissingWeightsError(f"{spec.name} weights not found (looked for ${spec.env_var}, {local} and the Hugging "
                              f"Face cache); {_how_to_get(spec)}")


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is 1, true, yes or on (the values huggingface_hub takes), read when asked."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "TRUE", "YES", "ON"}


def hf_cached(spec: WeightSpec) -> Path | None:
    """``spec``'s file (or repository snapshot) in the Hugging Face cache, or None; never touches the network.

    The cache is ``$HF_HUB_CACHE`` as it is now (else huggingface_hub's default, ``~/.cache/huggingface/hub``),
    the folder ``hf download`` and ``from_pretrained`` fill; the ``main`` revision is looked up."""
    if not spec.hub_repo:
        return None
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    if spec.hub_filename is not None:
        found = huggingface_hub.try_to_load_from_cache(spec.hub_repo, spec.hub_filename, cache_dir=cache_dir)
        return Path(found) if isinstance(found, str) else None  # else None or the "cached as missing" marker
    patterns = None if spec.hub_allow_patterns is None else list(spec.hub_allow_patterns)
    try:
        return Path(huggingface_hub.snapshot_download(spec.hub_repo, allow_patterns=patterns, cache_dir=cache_dir,
                                                      local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError (an OSError): not in the cache
        return None


def _fetch_command(spec: WeightSpec) -> str:
    """The command that fetches ``spec`` (its ``benchsuite weights fetch`` name, else ``hf download``)."""
    key = next((k for k, v in KNOWN_WEIGHTS.items() if v == spec), None)
    if key is not None:
        return f"'benchsuite weights fetch {key} --allow-download'"
    return f"'{_hf_download(spec)}'"


def _hf_download(spec: WeightSpec) -> str:
    return f"hf download {spec.hub_repo}" + (f" {spec.hub_filename}" if spec.hub_filename else "")


def _how_to_get(spec: WeightSpec) -> str:
    ways = [f"put {spec.filename} in {weights_dir()}", f"set ${spec.env_var} to its path"]
    if spec.hub_repo:
        ways.append(f"fetch it into the Hugging Face cache ('{_hf_download(spec)}')")
        ways.append(f"or set {DOWNLOADS_ENV}=1 to download it from the hub ({spec.hub_repo}"
                    + (f"/{spec.hub_filename})" if spec.hub_filename else ")"))
    if spec.source:
        ways.append(f"source: {spec.source}")
    return ", ".join(ways)


def _download(spec: WeightSpec, local: Path) -> Path:
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        raise MissingWeightsError(f"downloading {spec.name} needs huggingface_hub; pip install huggingface_hub")
    try:
        if spec.hub_filename is None:
            patterns = None if spec.hub_allow_patterns is None else list(spec.hub_allow_patterns)
            return Path(huggingface_hub.snapshot_download(spec.hub_repo, local_dir=local, allow_patterns=patterns))
        local.parent.mkdir(parents=True, exist_ok=True)
        got = huggingface_hub.hf_hub_download(spec.hub_repo, spec.hub_filename, local_dir=local.parent)
        got = Path(got)
        if got != local:
            os.replace(got, local)
        return local
    except Exception as exc:  # noqa: BLE001 - network, auth and missing-file errors all end the same way
        raise MissingWeightsError(f"could not download {spec.name} from {spec.hub_repo} "
                                  f"({type(exc).__name__}); {_how_to_get(spec)}") from None


class WeightsFormatError(BenchsuiteError):
    """A weights file exists but does not fit the model (wrong keys or shapes, not a checkpoint)."""


# --- the weights benchsuite knows how to get (``benchsuite weights fetch <name>``) ---------------------------
# Specs live here, in one catalog, so the fetch command can list them without importing any model code.

AESTHETIC_HEAD = WeightSpec(
    name="LAION aesthetic predictor v2 head",
    filename="sac+logos+ava1-l14-linearMSE.pth",
    env_var="BENCHSUITE_AESTHETIC_WEIGHTS",
    hub_repo="camenduru/improved-aesthetic-predictor",
    hub_filename="sac+logos+ava1-l14-linearMSE.pth",
    source="https://github.com/christophschuhmann/improved-aesthetic-predictor",
)
CLIP_VIT_L_14_OPENAI = WeightSpec(
    name="OpenAI CLIP ViT-L/14 (open_clip format)",
    filename="clip-vit-l-14-openai.safetensors",
    env_var="BENCHSUITE_CLIP_L14_WEIGHTS",
    hub_repo="timm/vit_large_patch14_clip_224.openai",
    hub_filename="open_clip_model.safetensors",
    source="https://huggingface.co/timm/vit_large_patch14_clip_224.openai",
)
HPSV2 = WeightSpec(
    name="HPS v2.0",
    filename="HPS_v2_compressed.pt",
    env_var="BENCHSUITE_HPSV2_WEIGHTS",
    hub_repo="xswu/HPSv2",
    hub_filename="HPS_v2_compressed.pt",
    source="https://github.com/tgxs002/HPSv2",
)
HPSV2_1 = WeightSpec(
    name="HPS v2.1",
    filename="HPS_v2.1_compressed.pt",
    env_var="BENCHSUITE_HPSV21_WEIGHTS",
    hub_repo="xswu/HPSv2",
    hub_filename="HPS_v2.1_compressed.pt",
    source="https://github.com/tgxs002/HPSv2",
)
# A diffusers folder (backbone ``sd``). runwayml/stable-diffusion-v1-5 left the hub in 2024; this is the maintained
# copy. Only the configs, the tokenizer and one fp32 safetensors file per model are fetched (the repository also
# holds ~30 GB of .ckpt, .bin and fp16 variants that are never read).
STABLE_DIFFUSION_V1_5 = WeightSpec(
    name="Stable Diffusion v1.5 (diffusers folder)",
    filename="runwayml--stable-diffusion-v1-5",
    env_var="BENCHSUITE_SD_MODEL",
    hub_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
    source="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5",
    hub_allow_patterns=("*.json", "*.txt", "unet/diffusion_pytorch_model.safetensors",
                        "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"),
)

LCM_LORA_SD15 = WeightSpec(
    name="LCM-LoRA for Stable Diffusion v1.5 (SQDF's consistency-model x0 predictor)",
    filename="lcm-lora-sdv1-5.safetensors",
    env_var="BENCHSUITE_LCM_LORA",
    hub_repo="latent-consistency/lcm-lora-sdv1-5",
    hub_filename="pytorch_lora_weights.safetensors",
    source="https://huggingface.co/latent-consistency/lcm-lora-sdv1-5",
)

KNOWN_WEIGHTS: dict[str, WeightSpec] = {
    "laion-aesthetic-head": AESTHETIC_HEAD,
    "clip-vit-l-14-openai": CLIP_VIT_L_14_OPENAI,
    "hpsv2": HPSV2,
    "hpsv2.1": HPSV2_1,
    "stable-diffusion-v1-5": STABLE_DIFFUSION_V1_5,
    "lcm-lora-sdv1-5": LCM_LORA_SD15,
}
"""Name (as typed after ``benchsuite weights fetch``) -> spec. A reward's docstring names the entries it needs."""


def fetch_weights_main(names: list[str], allow_download: bool) -> int:
    """``benchsuite weights fetch [NAME ...]``: make each named weights file local and print where it is.

    With no names, prints every known name, its file and whether it is already local (nothing is fetched).
    ``allow_download=False`` only looks (explicit path env var, then the weights dir); ``True`` also downloads
    from the hub into the weights dir. Output: one ``name: path`` line per file on stdout; each failure is one
    ``benchsuite: error: ...`` line on stderr.

    Returns:
        0 when every named file is local, 2 on an unknown name (nothing fetched) or any file still missing.
    """
    if not names:
        for key, spec in KNOWN_WEIGHTS.items():
            try:
                where = str(resolve(spec, allow_download=False))
            except MissingWeightsError:
                where = f"missing (benchsuite weights fetch {key} --allow-download, or put {spec.filename} in {weights_dir()})"
            print(f"{key}: {where}")
        return 0
    unknown = [n for n in names if n not in KNOWN_WEIGHTS]
    if unknown:
        print(f"benchsuite: error: unknown weights {', '.join(map(repr, unknown))}; "
              f"choose from: {', '.join(KNOWN_WEIGHTS)}", file=sys.stderr)
        return 2
    status = 0
    for key in dict.fromkeys(names):  # each once, in the given order
        try:
            print(f"{key}: {resolve(KNOWN_WEIGHTS[key], allow_download=allow_download)}")
        except MissingWeightsError as exc:
            print(f"benchsuite: error: {exc}", file=sys.stderr)
            status = 2
    return status


# --- digests of the embedded weights (the files that ship inside the package) -------------------------------------
EMBEDDED_WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "policies" / "weights"
"""The package's folder of embedded weights (the digits and sequence backbones, the digits consistency model, the
ChEMBL prior's data card and figure)."""

MANIFEST_NAME = "SHA256SUMS"
"""The digest manifest of a weights folder: ``<sha256>  <file name>`` per file, sorted by name."""

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256, per process


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (remembered per process while its size and mtime stay the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """File name -> hex SHA-256 from ``folder/SHA256SUMS``; ``{}`` when the folder has no manifest.

    Raises:
        WeightsDigestError: a line is not ``<64 hex digits>  <name>``.
    """
    manifest = Path(folder) / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    out = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise WeightsDigestError(f"{manifest}, line {number}: expected '<sha256>  <file name>', got {line[:80]!r}; "
                                     f"restore the manifest (git checkout -- {manifest}) or rerun the training script")
        out[name.removeprefix("*")] = digest  # sha256sum -b writes '*name'
    return out


def record_digests(*paths: str | os.PathLike) -> list[Path]:
    """Write the digests of ``paths`` (files just written) into the manifest of each one's folder, creating it when
    absent; the other lines stay as they are (a file this call did not write keeps the digest it was shipped with,
    so a corrupted neighbour is still refused). Returns the manifests written. The training scripts call this."""
    folders: dict[Path, list[Path]] = {}
    for path in map(Path, paths):
        folders.setdefault(path.resolve().parent, []).append(path)
    for folder, files in folders.items():
        entries = read_manifest(folder)
        entries.update({f.name: sha256_file(f) for f in files})
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
        (folder / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return [folder / MANIFEST_NAME for folder in folders]


def check_digest(path: str | os.PathLike, rebuild: str) -> str:
    """The SHA-256 of weights file ``path``, checked against the manifest of its folder when that folder has one
    (the package's folder always does; a file written elsewhere without one is taken as it is).

    Args:
        rebuild: the command that recreates the file (and records its digest), for the message.

    Raises:
        WeightsDigestError: the file differs from its manifest line, or the manifest has no line for it.
    """
    path = Path(path)
    manifest = read_manifest(path.parent)
    digest = sha256_file(path)
    if not manifest:
        return digest
    where = path.parent / MANIFEST_NAME
    if path.name not in manifest:
        raise WeightsDigestError(f"{path} has no digest in {where}; rerun {rebuild} (it records the digest), "
                                 f"or remove the file if it does not belong there")
    if manifest[path.name] != digest:
        raise WeightsDigestError(f"{path} does not match its digest in {where} (sha256 {digest[:12]}..., recorded "
                                 f"{manifest[path.name][:12]}...): the file is corrupted or was changed; restore it "
                                 f"(git checkout -- {path}) or rerun {rebuild}, which records the new digest")
    return digest


def weights_digest(files: Iterable[tuple[str | os.PathLike, str]]) -> str:
    """What a run records of its backbone's embedded weights: the hex SHA-256 of their manifest lines
    (``<sha256>  <name>\\n``, each file checked by ``check_digest`` first, sorted by name), so that ``grep -E
    'name1|name2' SHA256SUMS | sha256sum`` reproduces it. ``files``: (path, rebuild command) pairs; none gives ""."""
    lines = sorted((Path(p).name, check_digest(p, rebuild)) for p, rebuild in files)
    if not lines:
        return ""
    return hashlib.sha256("".join(f"{digest}  {name}\n" for name, digest in lines).encode()).hexdigest()


Factory = TypeVar("Factory", bound=Callable[..., Any])


def embeds(weights: Callable[..., Iterable[tuple[Path, str]]]) -> Callable[[Factory], Factory]:
    """Decorator of a backbone factory: ``weights(**sampler)`` gives the embedded files its policy loads, as
    (path, rebuild command) pairs, from the factory's keyword arguments (a card's sampler settings; it takes
    ``**_`` for the ones it does not need). ``benchsuite.config.backbone_digest`` reads it; a factory without it
    (Stable Diffusion, whose weights are downloaded, and plugins) records no digest."""

    def mark(factory: Factory) -> Factory:
        factory.embedded_weights = weights  # type: ignore[attr-defined]
        return factory

    return mark
