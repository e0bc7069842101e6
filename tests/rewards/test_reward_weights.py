"""The parts of the CLIP-based rewards that need no open_clip: weight resolution and its errors, the weights
catalog and ``fetch_weights_main``, the aesthetic head (loading and math) and the differentiable preprocessing.

The open_clip parts are in test_image_rewards.py (marker ``images``, run in .venv-images).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from benchsuite.errors import MissingWeightsError
from benchsuite.rewards.aesthetic import AestheticHead, LaionAesthetic, load_aesthetic_head
from benchsuite.rewards.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_preprocess
from benchsuite.rewards.hps import HPSv2, HPSv21
from benchsuite.weights import (
    AESTHETIC_HEAD,
    CLIP_VIT_L_14_OPENAI,
    HPSV2,
    HPSV2_1,
    KNOWN_WEIGHTS,
    WeightsFormatError,
    fetch_weights_main,
)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty weights dir and Hugging Face cache, no weights env vars, downloads off (HF_HUB_OFFLINE unset: the
    download tests fake the hub)."""
    monkeypatch.setenv("BENCHSUITE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path.with_name(tmp_path.name + "-hf-cache")))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCHSUITE_ALLOW_DOWNLOADS", raising=False)
    for spec in KNOWN_WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    return tmp_path


def test_registry_and_reward_modules_do_not_import_open_clip():
    code = ("import sys, benchsuite.registry as r, benchsuite.rewards.aesthetic, benchsuite.rewards.hps;"
            "[r.REWARDS.load(n) for n in ('laion-aesthetic', 'hpsv2', 'hpsv2.1')];"
            "assert 'open_clip' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_known_weights_are_distinct_files_and_env_vars():
    specs = list(KNOWN_WEIGHTS.values())
    assert len({s.filename for s in specs}) == len({s.env_var for s in specs}) == len(specs)
    assert all(s.env_var.startswith("BENCHSUITE_") for s in specs)
    assert HPSV2.filename == "HPS_v2_compressed.pt" and HPSV2_1.filename == "HPS_v2.1_compressed.pt"
    assert AESTHETIC_HEAD.filename == "sac+logos+ava1-l14-linearMSE.pth"
    assert CLIP_VIT_L_14_OPENAI.filename.endswith(".safetensors")  # open_clip picks the loader by suffix


@pytest.mark.parametrize("make, spec", [
    (lambda: LaionAesthetic(), AESTHETIC_HEAD),
    (lambda: HPSv2(prompts=["a cat"]), HPSV2),
    (lambda: HPSv21(prompts=["a cat"]), HPSV2_1),
])
def test_missing_weights_name_the_file_and_env_var(weights_dir, make, spec):
    with pytest.raises(MissingWeightsError) as info:
        make()
    msg = str(info.value)
    assert "\n" not in msg
    assert spec.filename in msg and spec.env_var in msg and str(weights_dir) in msg


def test_missing_clip_backbone_is_reported_after_the_head_is_found(weights_dir):
    torch.save(AestheticHead().state_dict(), weights_dir / AESTHETIC_HEAD.filename)
    with pytest.raises(MissingWeightsError, match=CLIP_VIT_L_14_OPENAI.env_var) as info:
        LaionAesthetic()
    assert CLIP_VIT_L_14_OPENAI.filename in str(info.value)


def test_explicit_path_and_env_var_that_do_not_exist(weights_dir, monkeypatch):
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        LaionAesthetic(head_weights=str(weights_dir / "nowhere.pth"))
    monkeypatch.setenv(HPSV2.env_var, str(weights_dir / "gone.pt"))
    with pytest.raises(MissingWeightsError, match=f"{HPSV2.env_var}.*gone.pt"):
        HPSv2(prompts=["a cat"])


# --- the aesthetic head ---------------------------------------------------------------------------------------

def test_head_state_dict_keys_match_the_released_file():
    # christophschuhmann/improved-aesthetic-predictor: nn.Sequential `layers` with dropouts at 1, 3, 5
    shapes = {k: tuple(v.shape) for k, v in AestheticHead(768).state_dict().items()}
    assert shapes == {
        "layers.0.weight": (1024, 768), "layers.0.bias": (1024,),
        "layers.2.weight": (128, 1024), "layers.2.bias": (128,),
        "layers.4.weight": (64, 128), "layers.4.bias": (64,),
        "layers.6.weight": (16, 64), "layers.6.bias": (16,),
        "layers.7.weight": (1, 16), "layers.7.bias": (1,),
    }


def test_head_math_is_a_linear_stack_on_the_normalised_embedding(tmp_path):
    torch.manual_seed(0)
    head = AestheticHead(4)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    loaded = load_aesthetic_head(tmp_path / "head.pth", in_dim=4)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    emb = torch.tensor([[3.0, 0.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    x = emb / torch.tensor([[5.0], [2.0]])  # the L2 norms, by hand
    sd = head.state_dict()
    for i in (0, 2, 4, 6, 7):  # no activations between the layers; dropout is off in eval mode
        x = x @ sd[f"layers.{i}.weight"].T + sd[f"layers.{i}.bias"]
    torch.testing.assert_close(loaded(F.normalize(emb, dim=-1)), x[:, 0])
    # the whole head is one affine map: a hand-collapsed W, b gives the same scores
    w, b = torch.eye(4), torch.zeros(4)
    for i in (0, 2, 4, 6, 7):
        w, b = sd[f"layers.{i}.weight"] @ w, sd[f"layers.{i}.weight"] @ b + sd[f"layers.{i}.bias"]
    torch.testing.assert_close(loaded(F.normalize(emb, dim=-1)), (F.normalize(emb, dim=-1) @ w.T + b)[:, 0])


def test_head_with_wrong_keys_fails_clearly(tmp_path):
    sd = {k.replace("layers.", "net."): v for k, v in AestheticHead(8).state_dict().items()}
    torch.save(sd, tmp_path / "renamed.pth")
    with pytest.raises(WeightsFormatError, match=r"renamed.pth.*missing keys \['layers.0.bias'.*unexpected keys \['net"):
        load_aesthetic_head(tmp_path / "renamed.pth", in_dim=8)


def test_head_with_wrong_shapes_or_no_state_dict_fails_clearly(tmp_path):
    torch.save(AestheticHead(8).state_dict(), tmp_path / "small.pth")
    with pytest.raises(WeightsFormatError, match=r"768-d CLIP embedding: layers.0.weight \(1024, 8\) != \(1024, 768\)"):
        load_aesthetic_head(tmp_path / "small.pth", in_dim=768)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFormatError, match="junk.pth is not a LAION aesthetic head"):
        load_aesthetic_head(tmp_path / "junk.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(WeightsFormatError, match="holds a list"):
        load_aesthetic_head(tmp_path / "list.pth")


# --- preprocessing --------------------------------------------------------------------------------------------

def test_preprocess_at_the_model_size_only_normalises():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None], torch.tensor(OPENAI_CLIP_STD)[:, None, None]
    torch.testing.assert_close(clip_preprocess(x, 8), (x - mean) / std)
    gray = x[:, :1]
    torch.testing.assert_close(clip_preprocess(gray, 8), (gray.expand(-1, 3, -1, -1) - mean) / std)


@pytest.mark.parametrize("hw, crop", [((16, 24), (8, 12)), ((24, 16), (12, 8))])
def test_preprocess_resizes_the_shorter_side_and_centre_crops(hw, crop):
    # a constant image stays constant; a ramp along the long side keeps its centre column/row
    x = torch.full((1, 3, *hw), 0.3)
    out = clip_preprocess(x, 8)
    assert out.shape == (1, 3, 8, 8)
    torch.testing.assert_close(out, clip_preprocess(torch.full((1, 3, 8, 8), 0.3), 8))
    big = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    resized = F.interpolate(big, size=crop, mode="bicubic", align_corners=False, antialias=True)
    top, left = (crop[0] - 8) // 2, (crop[1] - 8) // 2
    expected = clip_preprocess(resized[..., top:top + 8, left:left + 8], 8)
    torch.testing.assert_close(clip_preprocess(big, 8), expected)


def test_preprocess_is_differentiable_and_rejects_other_channel_counts():
    x = torch.rand(2, 3, 20, 20, requires_grad=True)
    clip_preprocess(x, 8).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="4 channels"):
        clip_preprocess(torch.rand(1, 4, 8, 8), 8)


def test_without_open_clip_the_error_names_the_extra():
    pytest.importorskip("benchsuite.rewards.clip")
    try:
        import open_clip  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("open_clip is installed here")
    from benchsuite.rewards.clip import MissingDependencyError, import_open_clip

    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[images\]"'):
        import_open_clip()


# --- fetch_weights_main ---------------------------------------------------------------------------------------

def test_fetch_lists_known_weights(weights_dir, capsys):
    (weights_dir / HPSV2.filename).write_bytes(b"x")
    assert fetch_weights_main([], allow_download=False) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == list(KNOWN_WEIGHTS)
    assert f"hpsv2: {weights_dir / HPSV2.filename}" in out
    assert any(line.startswith("laion-aesthetic-head: missing") for line in out)


def test_fetch_unknown_name_fetches_nothing(weights_dir, capsys):
    assert fetch_weights_main(["hpsv2", "clip-giant"], allow_download=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchsuite: error: unknown weights 'clip-giant'") and "hpsv2.1" in err
    assert list(weights_dir.iterdir()) == []


def test_fetch_without_downloads_reports_what_is_missing(weights_dir, capsys):
    (weights_dir / HPSV2.filename).write_bytes(b"x")
    assert fetch_weights_main(["hpsv2"], allow_download=False) == 0
    assert capsys.readouterr().out == f"hpsv2: {weights_dir / HPSV2.filename}\n"
    assert fetch_weights_main(["hpsv2", "laion-aesthetic-head"], allow_download=False) == 2
    captured = capsys.readouterr()
    assert captured.out == f"hpsv2: {weights_dir / HPSV2.filename}\n"
    assert captured.err.count("\n") == 1 and AESTHETIC_HEAD.env_var in captured.err


def test_fetch_downloads_into_the_weights_dir_under_the_spec_filename(weights_dir, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    def fake_download(repo, filename, local_dir):
        calls.append((repo, filename))
        path = weights_dir / filename
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert fetch_weights_main(["clip-vit-l-14-openai"], allow_download=True) == 0
    assert calls == [(CLIP_VIT_L_14_OPENAI.hub_repo, CLIP_VIT_L_14_OPENAI.hub_filename)]
    local = weights_dir / CLIP_VIT_L_14_OPENAI.filename
    assert local.read_bytes() == b"weights"
    assert capsys.readouterr().out == f"clip-vit-l-14-openai: {local}\n"
