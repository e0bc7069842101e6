"""The data-processing check of a path KL: how far a bounded judge's mean may move at a given KL.

For a judge ``f`` with values in [0, 1], the map from a final sample ``x`` to a coin that lands heads with chance
``f(x)`` is a Markov kernel, so by the data-processing inequality the binary KL of the two coins,

    kl(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q)),   p = E_theta f,  q = E_ref f,

is at most the KL between the fine-tuned and pretrained distributions of final samples, which is at most the path
KL (the chain rule: the final sample is a function of the chain). A run that reports a path KL below
``kl(p || q)`` measured its KL wrongly (a per-dim figure, a missing step, a wrong variance). A judge with another
finite range ``[a, b]`` enters as ``(f - a) / (b - a)``.

``p`` and ``q`` are means of ``n`` samples, so the check compares the KL with a lower confidence bound of
``kl(p || q)``: the smallest binary KL over the box of true means that the two sample means allow
(``mean_interval``: Wilson score intervals at ``z`` standard errors, from the variance bound ``m (1 - m)`` that
every variable in [0, 1] with mean ``m`` obeys). Wilson intervals instead of the plug-in ``p +- z sqrt(p (1 - p) /
n)``: at a sample mean of 0 or 1 (a feasible share of 1.0) the plug-in interval has width 0 and the binary KL to a
mean near 0 or 1 is unbounded, so the plug-in bound would flag noise. At the default ``z = 3`` each interval misses
its true mean with chance about 0.3 %, and a false alarm needs the two intervals to miss in opposite directions at
once (a difference of more than 4 standard errors of the difference: a chance below 1e-4), so noise alone does not
flag a run.
The eval samples of a fine-tuned model and of its pretrained model share their noise, which correlates the two
means and only makes the box wider than needed. The path KL itself is a Monte Carlo mean and is compared as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z = 3.0
"""Standard errors of each judge mean's interval (``mean_interval``)."""


def binary_kl(p: float, q: float) -> float:
    """``kl(p || q)`` in nats of two coins with chances ``p`` and ``q`` in [0, 1] (0 log 0 = 0; inf where ``q`` is
    0 or 1 and ``p`` is not)."""
    out = 0.0
    for a, b in ((p, q), (1.0 - p, 1.0 - q)):
        if a > 0.0:
            if b <= 0.0:
                return math.inf
            out += a * math.log(a / b)
    return max(out, 0.0)


def mean_interval(mean: float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of the true mean of a variable in [0, 1] from the mean of ``n`` samples: the means
    ``m`` with ``|mean - m| <= z sqrt(m (1 - m) / n)``. Never of width 0 for finite ``n``, also at 0 and 1."""
    if n < 1:
        raise ValueError(f"mean_interval: n must be a positive sample count, got {n}")
    mean = min(max(float(mean), 0.0), 1.0)
    shrink = 1.0 + z * z / n
    center = (mean + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(mean * (1.0 - mean) / n + z * z / (4 * n * n))
    return max(center - half, 0.0), min(center + half, 1.0)


def dpi_bound(p: float, q: float, n: int, n_ref: int | None = None, z: float = Z,
              value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Lower confidence bound (nats) of ``kl(p || q)``, the data-processing lower bound of the KL between the final
    samples, from a judge's fine-tuned mean ``p`` (``n`` samples) and pretrained mean ``q`` (``n_ref`` samples,
    default ``n``), both in ``value_range``: the smallest binary KL over the box of ``mean_interval``s (0 where the
    intervals overlap). ``z = 0`` gives the plug-in ``kl(p || q)``."""
    low, high = value_range
    if not high > low:
        raise ValueError(f"dpi_bound: value_range must have low < high, got {value_range}")
    p, q = (p - low) / (high - low), (q - low) / (high - low)
    p_lo, p_hi = mean_interval(p, n, z)
    q_lo, q_hi = mean_interval(q, n if n_ref is None else n_ref, z)
    if p_lo > q_hi:  # kl(a || b) grows as a moves away from b and as b moves away from a
        return binary_kl(p_lo, q_hi)
    if p_hi < q_lo:
        return binary_kl(p_hi, q_lo)
    return 0.0


@dataclass(frozen=True)
class DpiCheck:
    """One judge at one evaluation point against the path KL measured there.

    Attributes:
        bound: ``dpi_bound``, nats: the least KL the judge's move implies.
        kl: the reported path KL, nats.
        violated: ``bound > kl``: the reported KL is too small to be a path KL.
    """

    bound: float
    kl: float
    violated: bool


def dpi_check(p: float, q: float, n: int, kl: float, n_ref: int | None = None, z: float = Z,
              value_range: tuple[float, float] = (0.0, 1.0)) -> DpiCheck:
    """Whether a reported path KL ``kl`` (nats) is at least the data-processing bound of a judge whose mean moved
    from ``q`` (the pretrained model, ``n_ref`` samples) to ``p`` (``n`` samples); see ``dpi_bound``."""
    bound = dpi_bound(p, q, n, n_ref, z, value_range)
    return DpiCheck(bound, float(kl), bound > kl)
