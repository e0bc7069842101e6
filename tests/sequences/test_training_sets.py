"""The stored training sets (``STORED_TRAINING_SETS``): what the novelty metrics read instead of drawing the set
again in every process. The stored copy must be exactly the draw it replaces, and a copy drawn for other settings
must never be used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchsuite.policies import sequence
from benchsuite.policies.sequence import (
    STORED_TRAINING_SETS,
    draw_training_tokens,
    shipped_model,
    stored_training_tokens,
    training_set_key,
)


@pytest.mark.parametrize("name", sorted(STORED_TRAINING_SETS))
def test_stored_set_is_the_start_of_the_draw_it_replaces(name):
    """The file is committed, matches the model's settings, and its first rows are a fresh draw of those rows (the
    draw fills rows in order from one generator, so a shorter draw is a prefix of the full one; the whole set is
    compared in the slow tier)."""
    model = shipped_model(name)
    stored = stored_training_tokens(model)
    assert stored is not None, f"{STORED_TRAINING_SETS[name]} is missing or was drawn for other settings"
    assert stored.dtype == torch.int64
    assert stored.shape == (model.train.num_sequences, model.denoiser.length)
    assert 0 <= int(stored.min()) and int(stored.max()) < model.denoiser.vocab_size
    head = model.sample_data(48, torch.Generator().manual_seed(model.train.seed))
    assert torch.equal(stored[:48], head)
    assert len({tuple(row) for row in stored[:512].tolist()}) > 400  # molecules, not one row repeated


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STORED_TRAINING_SETS))
def test_stored_set_equals_the_full_draw(name):
    model = shipped_model(name)
    assert torch.equal(stored_training_tokens(model), draw_training_tokens(model))


def test_a_set_stored_for_other_settings_or_absent_is_not_used(tmp_path, monkeypatch):
    model = shipped_model("selfies-l32")
    path = tmp_path / "set.npz"
    monkeypatch.setitem(STORED_TRAINING_SETS, model.name, path)
    assert stored_training_tokens(model) is None  # no file
    tokens = np.zeros((4, model.denoiser.length), dtype=np.uint8)
    np.savez_compressed(path, tokens=tokens, key=np.array(training_set_key(model)))
    assert torch.equal(stored_training_tokens(model), torch.zeros(4, model.denoiser.length, dtype=torch.int64))
    retrained = dataclasses.replace(model, train=dataclasses.replace(model.train, seed=model.train.seed + 1))
    assert stored_training_tokens(retrained) is None  # another training seed: another draw
    longer = dataclasses.replace(model, data_kwargs={**model.data_kwargs, "length": 40})
    assert stored_training_tokens(longer) is None
    # models without a stored set are drawn, as before
    assert stored_training_tokens(shipped_model("ehrlich-s32-l32")) is None


def test_training_tokens_reads_the_stored_set(monkeypatch):
    """``training_tokens`` returns the stored copy and does not draw when one is stored."""
    sequence.training_tokens.cache_clear()

    def no_draw(model):
        raise AssertionError(f"{model.name}: drawn although a stored set exists")

    monkeypatch.setattr(sequence, "draw_training_tokens", no_draw)
    try:
        tokens = sequence.training_tokens("selfies-l32")
    finally:
        sequence.training_tokens.cache_clear()
    assert tokens.shape == (shipped_model("selfies-l32").train.num_sequences, 32)
