"""JPEG rewards against PIL on fixed images."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from benchsuite.rewards.jpeg import JpegCompressibility, JpegIncompressibility, jpeg_kilobytes


def pil_kb(array: np.ndarray, quality: int = 95) -> float:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return len(buf.getvalue()) / 1000


def test_matches_pil_on_fixed_images():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (2, 16, 16), dtype=np.uint8)
    rgb = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    t_gray = torch.from_numpy(gray).float()[:, None] / 255
    t_rgb = torch.from_numpy(rgb).float().permute(0, 3, 1, 2) / 255
    expected_gray = [pil_kb(a) for a in gray]
    expected_rgb = [pil_kb(a) for a in rgb]
    assert jpeg_kilobytes(t_gray).tolist() == pytest.approx(expected_gray)
    assert jpeg_kilobytes(t_rgb).tolist() == pytest.approx(expected_rgb)
    assert JpegCompressibility()(t_rgb).tolist() == pytest.approx([-v for v in expected_rgb])
    assert JpegIncompressibility()(t_rgb).tolist() == pytest.approx(expected_rgb)


def test_blank_is_more_compressible_than_noise():
    blank = torch.zeros(1, 1, 8, 8)
    noise = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    r = JpegCompressibility(render_size=32)(torch.cat([blank, noise]))
    assert r[0] > r[1]


def test_render_size_upsamples_before_encoding():
    img = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    up = torch.nn.functional.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)
    assert jpeg_kilobytes(img, render_size=32).item() == pytest.approx(jpeg_kilobytes(up).item())


@pytest.mark.parametrize("kwargs", [{"quality": 0}, {"quality": 101}, {"render_size": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        JpegCompressibility(**kwargs)


def test_wrong_shapes_raise():
    with pytest.raises(ValueError):
        JpegCompressibility()(torch.rand(8, 8))
    with pytest.raises(ValueError):
        JpegCompressibility()(torch.rand(2, 4, 8, 8))


def _fixed_image(size: int, seed: int) -> np.ndarray:
    """A ``size x size x 3`` uint8 image with smooth and sharp parts (gradients, a disc, mild noise)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    disc = ((yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.08).astype(float)
    noise = np.random.default_rng(seed).normal(0, 0.05, (size, size, 3))
    rgb = np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 0.7 + 0.3 * disc[..., None] + noise
    return (rgb.clip(0, 1) * 255).round().astype(np.uint8)


def test_matches_pil_at_512_px_rgb_and_grayscale():
    # the size of real image backbones (Stable Diffusion 1.x: 512 px, 3 channels); no render_size, no resizing
    rgb = np.stack([_fixed_image(512, s) for s in (0, 1)])
    gray = rgb.mean(-1).round().astype(np.uint8)
    t_rgb = torch.from_numpy(rgb).float().permute(0, 3, 1, 2) / 255
    t_gray = torch.from_numpy(gray).float()[:, None] / 255
    expected_rgb, expected_gray = [pil_kb(a) for a in rgb], [pil_kb(a) for a in gray]
    assert JpegCompressibility()(t_rgb).tolist() == pytest.approx([-v for v in expected_rgb])
    assert JpegIncompressibility()(t_gray).tolist() == pytest.approx(expected_gray)
    assert min(expected_rgb) > 10 * max(pil_kb(a[:16, :16]) for a in rgb)  # the size does grow with the image
