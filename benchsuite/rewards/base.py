"""The ``Reward`` contract every scorer follows.

Template method (as botorch's ``forward -> evaluate_true``): the public ``__call__`` validates the input,
calls the subclass's ``_score`` and checks that a ``(B,)`` float tensor of finite values came back. Subclasses
never override ``__call__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor

from ..spaces import to_uint8  # noqa: F401 - re-exported: image rewards quantize as the image space decodes


class Reward(ABC):
    """A scorer of samples.

    Class attributes every subclass sets:
        name: registry name, e.g. ``"jpeg-compressibility"``.
        version: bumped whenever the scale or definition changes (versioned task ids pin it).
        differentiable: True when ``_score`` is differentiable w.r.t. the samples (gradient methods need it).
        sample_kind: ``"image"`` (a ``B x C x H x W`` float tensor in [0, 1]) or ``"sequence"``.
        value_range: ``(low, high)``, finite, that every score lies in with the default arguments, or None (no
            bound is known: a JPEG size, an aesthetic score). A reward whose range depends on a constructor argument
            (the score of an invalid sample) overrides ``value_range_of``. Judges with a range enter the
            data-processing check of the path KL (``benchsuite.metrics.dpi``).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0"
    differentiable: ClassVar[bool] = False
    sample_kind: ClassVar[str] = "image"
    value_range: ClassVar[tuple[float, float] | None] = None

    @classmethod
    def value_range_of(cls, **kwargs) -> tuple[float, float] | None:
        """The range of the scores of ``cls(**kwargs)``, without building it (the report reads it from a card)."""
        return cls.value_range

    def __call__(self, samples: Tensor, conditions: Tensor | None = None) -> Tensor:
        """Score a batch.

        Args:
            samples: for images a ``B x C x H x W`` float tensor with values in [0, 1].
            conditions: a ``B`` long tensor of condition ids, or None for unconditional samples.

        Returns:
            A ``B`` float tensor. It carries gradients iff the reward is differentiable and ``samples``
            requires grad.
        """
        self._check_samples(samples)
        if conditions is not None and (conditions.ndim != 1 or len(conditions) != len(samples)):
            raise ValueError(
                f"{self.name}: conditions must have shape ({len(samples)},), got {tuple(conditions.shape)}"
            )
        out = self._score(samples, conditions)
        if not isinstance(out, Tensor) or out.shape != (len(samples),) or not out.is_floating_point():
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise RuntimeError(f"{self.name}._score must return a ({len(samples)},) float tensor, got {shape}")
        return out

    def _check_samples(self, samples: Tensor) -> None:
        if not isinstance(samples, Tensor):
            raise TypeError(f"{self.name}: samples must be a torch.Tensor, got {type(samples).__name__}")
        if self.sample_kind == "image":
            if samples.ndim != 4 or not samples.is_floating_point():
                raise ValueError(
                    f"{self.name}: expected a B x C x H x W float image batch, got shape {tuple(samples.shape)}"
                    f" and dtype {samples.dtype}"
                )
        elif samples.ndim < 2:
            raise ValueError(f"{self.name}: expected a batch of sequences, got shape {tuple(samples.shape)}")

    @abstractmethod
    def _score(self, samples: Tensor, conditions: Tensor | None) -> Tensor:
        """Return a ``B`` float tensor of rewards. Inputs are already validated."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"
