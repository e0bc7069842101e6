"""The CLIP-based rewards with the real weights (tier ``weights``: ``python -m pytest -m weights``).

Each case skips, naming the missing file, unless its weights resolve (``benchsuite weights fetch <name>``,
``$BENCHSUITE_WEIGHTS_DIR`` or the per-file environment variables of ``benchsuite.weights``). Needs open_clip.
"""

from __future__ import annotations

import pytest
import torch

from benchsuite.errors import MissingWeightsError
from benchsuite.registry import REWARDS
from benchsuite.testing import check_reward_scores

pytestmark = pytest.mark.weights


@pytest.mark.parametrize("name", ["laion-aesthetic", "hpsv2", "hpsv2.1"])
def test_real_weights(name):
    pytest.importorskip("open_clip")
    kwargs = {} if name == "laion-aesthetic" else {"prompts": ["a photo of a cat", "an oil painting of a ship"]}
    try:
        reward = REWARDS.make(name, **kwargs)
    except MissingWeightsError as exc:
        pytest.skip(str(exc))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    noise = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    x = torch.cat([torch.full((1, 3, 512, 512), 0.5), noise]).to(device)
    ids = None if name == "laion-aesthetic" else torch.tensor([0, 1], device=device)
    out = check_reward_scores(reward, x, ids)
    # aesthetic scores live on the AVA 1-10 scale; HPS is a cosine similarity (real images: about 0.2-0.35)
    low, high = (0.0, 11.0) if name == "laion-aesthetic" else (-1.0, 1.0)
    assert ((out > low) & (out < high)).all(), out
