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
