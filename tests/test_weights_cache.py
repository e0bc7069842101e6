"""benchsuite.weights honours the Hugging Face cache and HF_HUB_OFFLINE (a fake cache built in tmp_path)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchsuite import weights
from benchsuite.errors import MissingWeightsError
from benchsuite.weights import HPSV2, STABLE_DIFFUSION_V1_5, WeightSpec, resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cached_snapshot(cache: Path, repo: str) -> Path:
    """The snapshot folder of ``repo``'s ``main`` revision in a Hugging Face cache laid out as huggingface_hub
    writes it (``models--org--name/refs/main`` naming the commit, ``snapshots/<commit>/``)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty weights dir and an empty Hugging Face cache ($HF_HUB_CACHE); no download may happen."""
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCHSUITE_ALLOW_DOWNLOADS", raising=False)
    for spec in weights.KNOWN_WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)

    def no_download(spec, local):
        raise AssertionError(f"tried to download {spec.hub_repo}")

    monkeypatch.setattr(weights, "_download", no_download)
    return tmp_path / "hf"


def test_a_cached_file_is_found_without_a_download(hf_cache):
    snapshot = cached_snapshot(hf_cache, HPSV2.hub_repo)
    (snapshot / HPSV2.hub_filename).write_bytes(b"weights")
    for allow in (False, True):  # found in the cache before any download is considered
        assert resolve(HPSV2, allow_download=allow) == snapshot / HPSV2.hub_filename


def test_the_weights_dir_comes_before_the_cache(hf_cache):
    (cached_snapshot(hf_cache, HPSV2.hub_repo) / HPSV2.hub_filename).write_bytes(b"cached")
    local = weights.weights_dir() / HPSV2.filename
    local.parent.mkdir(parents=True)
    local.write_bytes(b"local")
    assert resolve(HPSV2) == local


def test_another_file_of_a_cached_repository_is_not_taken(hf_cache):
    (cached_snapshot(hf_cache, HPSV2.hub_repo) / "HPS_v2.1_compressed.pt").write_bytes(b"other")
    with pytest.raises(MissingWeightsError) as err:
        resolve(HPSV2)
    message = str(err.value)
    assert "\n" not in message and "Hugging Face cache" in message
    assert f"hf download {HPSV2.hub_repo} {HPSV2.hub_filename}" in message


def test_a_cached_repository_snapshot_is_found(hf_cache):
    snapshot = cached_snapshot(hf_cache, STABLE_DIFFUSION_V1_5.hub_repo)
    (snapshot / "model_index.json").write_text("{}")
    assert resolve(STABLE_DIFFUSION_V1_5) == snapshot


def test_hf_hub_offline_never_downloads_and_says_what_to_fetch(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec, fetch in ((HPSV2, "benchsuite weights fetch hpsv2 --allow-download"),
                        (dataclasses.replace(HPSV2, hub_repo="org/other"), f"hf download org/other {HPSV2.hub_filename}")):
        with pytest.raises(MissingWeightsError) as err:
            resolve(spec, allow_download=True)  # no_download would fail the test on a download attempt
        message = str(err.value)
        assert "\n" not in message and "HF_HUB_OFFLINE" in message and fetch in message
    # ... while the cache still serves what it holds
    (cached_snapshot(hf_cache, HPSV2.hub_repo) / HPSV2.hub_filename).write_bytes(b"weights")
    assert resolve(HPSV2, allow_download=True).read_bytes() == b"weights"


def test_a_spec_without_a_hub_repository_skips_the_cache(hf_cache):
    spec = WeightSpec(name="local only", filename="x.pt", env_var="BENCHSUITE_TEST_X")
    with pytest.raises(MissingWeightsError, match="local only weights not found"):
        resolve(spec, allow_download=True)


def test_fetch_list_shows_cached_weights(hf_cache, capsys):
    snapshot = cached_snapshot(hf_cache, HPSV2.hub_repo)
    (snapshot / HPSV2.hub_filename).write_bytes(b"weights")
    assert weights.fetch_weights_main([], allow_download=False) == 0
    assert f"hpsv2: {snapshot / HPSV2.hub_filename}" in capsys.readouterr().out.splitlines()


def test_stable_diffusion_from_the_cache_by_hub_id(hf_cache, tmp_path, monkeypatch):
    """The sd backbone's model id resolves to a diffusers folder in the cache and loads offline."""
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from benchsuite.policies.sd import sd_policy
    from benchsuite.policies.sd_tiny import TINY_RESOLUTION, save_tiny_sd

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tiny_sd(cached_snapshot(hf_cache, "someone/tiny-sd"))
    tasks = tmp_path / "tasks"
    (tasks / "prompts").mkdir(parents=True)
    (tasks / "prompts" / "two.txt").write_text("cat\ndog\n")
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tasks))
    policy = sd_policy(model="someone/tiny-sd", prompts="two", num_steps=2, resolution=TINY_RESOLUTION, lora_rank=2,
                       consistency_lora=None)
    assert policy.prompts == ("cat", "dog") and policy.sample_shape == (4, TINY_RESOLUTION // 2, TINY_RESOLUTION // 2)
