"""Shared fixtures. Tests run on the CPU with one thread (measured faster than two on the 2-core machines)."""

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
torch.set_num_threads(1)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
