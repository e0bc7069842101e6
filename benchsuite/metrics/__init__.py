"""Metrics: small pure functions over tensors, shapes in the docstrings."""

from .diversity import mean_pairwise_distance

__all__ = ["mean_pairwise_distance"]
