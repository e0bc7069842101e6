"""Metrics: small pure functions over tensors, shapes in the docstrings. One module per family:
``reward`` (summaries), ``diversity`` (pairwise distance, Vendi), ``drift`` (Fréchet distance to pretrained);
``pmo`` (numpy only: PMO's top-k AUC and top-k means, regret, feasibility and queries-to-solve of a query log)."""

from .diversity import mean_pairwise_distance, vendi_score
from .drift import frechet_distance
from .reward import reward_summary

__all__ = ["frechet_distance", "mean_pairwise_distance", "reward_summary", "vendi_score"]
