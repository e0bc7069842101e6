"""CLIP-based image rewards (LAION aesthetic, HPSv2/2.1) with tiny random open_clip models.

The tiny models are saved to a temporary weights dir under the real file names and in the real formats
(open_clip safetensors for the CLIP backbone, a torch state dict for the aesthetic head, ``{"state_dict": ...}``
for HPS), then loaded back by the rewards' own code: weight resolution through ``BENCHSUITE_WEIGHTS_DIR`` and
``open_clip.create_model(name, pretrained=<file>)``. Only the open_clip config name differs from the real one.

Needs open_clip + torchvision: run in .venv-images with ``python -m pytest -m images`` (see .ci/run).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from test_reward_contract import NOT_BUILT_BY_DEFAULT  # sibling module (pytest's rootdir import)

from benchsuite.errors import ConfigError, MissingWeightsError
from benchsuite.prompts import load_prompts
from benchsuite.registry import REWARDS
from benchsuite.rewards.aesthetic import AestheticHead, LaionAesthetic
from benchsuite.rewards.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_preprocess
from benchsuite.rewards.hps import HPSv2, HPSv21
from benchsuite.testing import check_reward_scores
from benchsuite.weights import (
    AESTHETIC_HEAD,
    CLIP_VIT_L_14_OPENAI,
    HPSV2,
    HPSV2_1,
    KNOWN_WEIGHTS,
    WeightsFormatError,
)

pytestmark = pytest.mark.images

TINY = "benchsuite-tiny-clip"
TINY_CONFIG = {  # a ViT-B-like layout at toy size: 32 px images, 2 x 2 patches, 2 layers per tower
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PROMPTS = ("a photo of a cat", "a watercolor of a dog", "an astronaut riding a horse")


def _open_clip():
    # imported here, not at module level, so that the default tier (which deselects this file) never imports it
    return pytest.importorskip("open_clip")


def _tiny_clip(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _open_clip().create_model(TINY).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny models (kept in memory as references) saved as the real weight files of a weights dir."""
    root = tmp_path_factory.mktemp("tiny-clip")
    (root / f"{TINY}.json").write_text(json.dumps(TINY_CONFIG))
    _open_clip().add_model_config(root / f"{TINY}.json")
    wdir = root / "weights"
    wdir.mkdir()
    clip = _tiny_clip(0)
    save_file(clip.state_dict(), wdir / CLIP_VIT_L_14_OPENAI.filename)  # as open_clip_model.safetensors
    torch.manual_seed(1)
    head = AestheticHead(TINY_CONFIG["embed_dim"]).eval()
    torch.save(head.state_dict(), wdir / AESTHETIC_HEAD.filename)
    hps2, hps21 = _tiny_clip(2), _tiny_clip(3)
    torch.save({"state_dict": hps2.state_dict(), "epoch": 1}, wdir / HPSV2.filename)
    # a DDP-trained checkpoint's "module." prefix is unwrapped too
    torch.save({"state_dict": {f"module.{k}": v for k, v in hps21.state_dict().items()}}, wdir / HPSV2_1.filename)
    return SimpleNamespace(root=root, dir=wdir, clip=clip, head=head, hps2=hps2, hps21=hps21)


@pytest.fixture
def env(tiny, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tiny.dir))
    monkeypatch.delenv("BENCHSUITE_ALLOW_DOWNLOADS", raising=False)
    for spec in KNOWN_WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    return tiny


def _images(n: int, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None], torch.tensor(OPENAI_CLIP_STD)[:, None, None]
    return (x - mean) / std


# --- LAION aesthetic ------------------------------------------------------------------------------------------

def test_aesthetic_equals_the_head_on_the_normalised_clip_embedding(env):
    reward = LaionAesthetic(clip_model=TINY)
    x = _images(4)
    with torch.no_grad():
        emb = env.clip.encode_image(_normalise(x))  # images at the model size: preprocessing only normalises
        emb = emb / emb.norm(dim=-1, keepdim=True)
        expected = env.head(emb)
    torch.testing.assert_close(reward(x), expected)
    assert reward(x).dtype == torch.float32


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 40, 56), (1, 3, 512, 512)])
def test_aesthetic_contract_on_any_image_size(env, shape):
    reward = REWARDS.make("laion-aesthetic", clip_model=TINY)
    check_reward_scores(reward, _images(*shape), None)


def test_aesthetic_gradient_matches_finite_differences(env):
    reward = LaionAesthetic(clip_model=TINY)
    x = _images(1, h=40, w=40, seed=5).double()
    reward.scorer.double()
    reward.dtype = torch.float64
    x.requires_grad_(True)
    reward(x).sum().backward()
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = 1e-5
    with torch.no_grad():  # the reward returns float32; the finite difference needs the float64 scores
        fd = (reward.scorer(x + eps * direction) - reward.scorer(x - eps * direction)).sum() / (2 * eps)
    assert x.grad.dtype == torch.float64
    torch.testing.assert_close((x.grad * direction).sum(), fd, rtol=1e-4, atol=1e-7)


def test_aesthetic_bfloat16_returns_float32_close_to_float32(env):
    x = _images(2)
    full, half = LaionAesthetic(clip_model=TINY)(x), LaionAesthetic(clip_model=TINY, dtype="bfloat16")(x)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)


def test_clip_checkpoint_with_wrong_keys_fails_clearly(env, tmp_path):
    sd = {k.replace("visual.", "vision."): v for k, v in env.clip.state_dict().items()}
    save_file(sd, tmp_path / "renamed.safetensors")
    with pytest.raises(WeightsFormatError, match=rf"renamed.safetensors is not a CLIP image encoder checkpoint "
                                                 rf"for open_clip '{TINY}'.*(Missing|Unexpected) key"):
        LaionAesthetic(clip_model=TINY, clip_weights=str(tmp_path / "renamed.safetensors"))


def test_clip_checkpoint_of_another_architecture_fails_clearly(env):
    # the real ViT-L-14 config with the tiny file: shapes differ
    with pytest.raises(WeightsFormatError, match="ViT-L-14-quickgelu"):
        LaionAesthetic()


def test_unknown_clip_model_name_is_a_config_error(env):
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-Q-99'"):
        LaionAesthetic(clip_model="ViT-Q-99")


def test_aesthetic_head_that_does_not_fit_the_embedding(env, tmp_path):
    torch.save(AestheticHead(768).state_dict(), tmp_path / "head768.pth")
    with pytest.raises(WeightsFormatError, match="16-d CLIP embedding"):
        LaionAesthetic(clip_model=TINY, head_weights=str(tmp_path / "head768.pth"))


# --- HPSv2 ----------------------------------------------------------------------------------------------------

def _hand_hps(model, x: torch.Tensor, ids: list[int]) -> torch.Tensor:
    tokenizer = _open_clip().get_tokenizer(TINY)
    with torch.no_grad():
        img = model.encode_image(_normalise(x))
        txt = model.encode_text(tokenizer([PROMPTS[i] for i in ids]))
    return F.cosine_similarity(img, txt, dim=-1)


@pytest.mark.parametrize("cls, ref", [(HPSv2, "hps2"), (HPSv21, "hps21")])
def test_hps_is_the_cosine_similarity_of_image_and_prompt_embeddings(env, cls, ref):
    reward = cls(prompts=PROMPTS, clip_model=TINY)
    x, ids = _images(4, seed=2), [2, 0, 1, 2]
    expected = _hand_hps(getattr(env, ref), x, ids)
    torch.testing.assert_close(reward(x, torch.tensor(ids)), expected)
    assert expected.abs().max() <= 1


def test_hps_versions_load_their_own_files(env):
    x, ids = _images(2), torch.tensor([0, 1])
    assert not torch.allclose(HPSv2(PROMPTS, clip_model=TINY)(x, ids), HPSv21(PROMPTS, clip_model=TINY)(x, ids))


@pytest.mark.parametrize("name", ["hpsv2", "hpsv2.1"])
def test_hps_contract(env, name):
    reward = REWARDS.make(name, prompts=PROMPTS, clip_model=TINY)
    check_reward_scores(reward, _images(3, c=3, h=48, w=36), torch.tensor([0, 1, 2]))
    check_reward_scores(reward, _images(2, c=1, h=512, w=512), torch.tensor([1, 1]))


def test_hps_caches_only_the_prompts_it_scored(env):
    reward = HPSv2(PROMPTS, clip_model=TINY)
    reward(_images(2), torch.tensor([2, 2]))
    assert set(reward.scorer._text_cache) == {2}
    first = reward.scorer._text_cache[2].clone()
    reward(_images(2), torch.tensor([0, 2]))
    assert set(reward.scorer._text_cache) == {0, 2}
    torch.testing.assert_close(reward.scorer._text_cache[2], first)


def test_hps_needs_conditions_in_range(env):
    reward = HPSv2(PROMPTS, clip_model=TINY)
    with pytest.raises(ValueError, match="pass condition ids"):
        reward(_images(1))
    with pytest.raises(ValueError, match=r"in \[0, 3\), got \[0, 3\]"):
        reward(_images(2), torch.tensor([0, 3]))


def test_hps_prompts_by_list_name(env, tmp_path, monkeypatch):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "tiny-hps-test.txt").write_text("# test prompts\n" + "\n".join(PROMPTS) + "\n")
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path))
    load_prompts.cache_clear()
    try:
        reward = HPSv2(prompts="tiny-hps-test", clip_model=TINY)
    finally:
        load_prompts.cache_clear()
    assert reward.prompts == PROMPTS
    x = _images(2)
    torch.testing.assert_close(reward(x, torch.tensor([1, 0])), _hand_hps(env.hps2, x, [1, 0]))


def test_hps_rejects_an_empty_prompt_list(env):
    with pytest.raises(ConfigError, match="non-empty"):
        HPSv2(prompts=[], clip_model=TINY)


# --- shared -----------------------------------------------------------------------------------------------------

TINY_BUILDERS = {
    "laion-aesthetic": (dict(clip_model=TINY), None),
    "hpsv2": (dict(prompts=PROMPTS, clip_model=TINY), torch.tensor([0, 1])),
    "hpsv2.1": (dict(prompts=PROMPTS, clip_model=TINY), torch.tensor([2, 1])),
}


def test_every_reward_deferred_to_this_file_has_a_tiny_build():
    deferred = {n for n, where in NOT_BUILT_BY_DEFAULT.items() if "test_image_rewards.py" in where}
    assert deferred == set(TINY_BUILDERS)


@pytest.mark.parametrize("name", sorted(TINY_BUILDERS))
def test_registered_contract_with_tiny_models(env, name):
    kwargs, conditions = TINY_BUILDERS[name]
    reward = REWARDS.make(name, **kwargs)
    assert reward.name == name and reward.differentiable
    check_reward_scores(reward, _images(2, h=64, w=64), conditions)


@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (48, 80), (100, 37), (512, 512)])
def test_preprocess_matches_torchvision_on_tensors(hw):
    T = pytest.importorskip("torchvision.transforms")

    x = _images(2, h=hw[0], w=hw[1], seed=9)
    tv = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(32),
                    T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    torch.testing.assert_close(clip_preprocess(x, 32), tv(x))


def test_missing_weights_still_raise_before_any_model_is_built(env, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=HPSV2.env_var):
        HPSv2(PROMPTS, clip_model=TINY)
