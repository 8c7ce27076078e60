"""Madry et al.'s training-time PGD as a registered attack: ``"pgd-train"`` (:data:`ATTACKS`).

The training loop names every attack it runs through :func:`invrob.attacks.build`.
Its ℓ∞ step cannot use ``"pgd"``: :class:`~invrob.attacks.PGD` is an evaluation
attack that keeps each sample's first misclassified iterate, whereas adversarial
training minimises the loss at the *last* iterate of a fixed number of steps from a
random start. :class:`TrainingPGD` is that inner maximisation,
:func:`~invrob.attacks.pgd_training_examples`, behind the attack contract; it adds
nothing to its numbers.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import check_positive_int
from .base import Attack, _check_eps_value, _check_norm
from .pgd import ALPHA_FACTOR, pgd_training_examples

__all__ = ["TrainingPGD", "ATTACKS"]


class TrainingPGD(Attack):
    """``steps`` PGD steps of size ``alpha`` from a random start in the ε-ball; the last iterate.

    Args:
        model: a classifier returning logits.
        eps: radius ε ≥ 0, a float or a ``(B,)`` tensor (one per sample).
        alpha: step size; default ``2.5 ε / steps``.
        steps: gradient steps (1 with ``alpha = 1.25 ε``: Wong et al.'s FGSM with random start).
        norm: ``"linf"`` or ``"l2"``.
        generator: ``torch.Generator`` for the random start (the training loop passes the
            run's own, so a resumed run draws the same starts).
    """

    per_sample_eps = True

    def __init__(self, model: nn.Module, eps, alpha=None, steps: int = 10, norm: str = "linf",
                 generator: torch.Generator | None = None):
        super().__init__(model, eps)
        self.steps = check_positive_int(steps, "steps")
        self.alpha = None if alpha is None else _check_eps_value(alpha, "alpha")
        self.norm, self.generator = _check_norm(norm), generator

    @property
    def name(self) -> str:
        return f"PGD-train{'-L2' if self.norm == 'l2' else ''}-{self.steps}"

    def _check_budget(self, eps):   # a float, or one ε per sample
        return _check_eps_value(eps, "eps")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = ALPHA_FACTOR * self.eps / self.steps if self.alpha is None else self.alpha
        return pgd_training_examples(self.model, x, y, self.eps, alpha, self.steps, self.norm,
                                     generator=self.generator)


#: Registered when :mod:`invrob.attacks` is imported (:func:`invrob.attacks.registry.discover`).
ATTACKS = {"pgd-train": TrainingPGD}
