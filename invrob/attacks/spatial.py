"""The spatial attack: worst of k rotations (Engstrom et al., 2019).

Threat model: the adversary may rotate an image by any angle in ``[-φ, φ]``
degrees. The grid attack tries k angles evenly spaced in that range
(``numpy.linspace(-φ, φ, k)``; k = 1 is the single angle 0) and keeps, per
sample, the rotated image that is misclassified if any is — the one with the
largest cross-entropy among those — else the one with the largest
cross-entropy. Gradient-free, so it cannot be fooled by gradient masking, and
exhaustive over its grid: for k large enough it is close to the exact worst case.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import check_positive_int, check_theta
from ..metrics import check_model_inputs, model_device
from ..rotations import _correct_grid, rotate
from .base import Attack, attack_mode

__all__ = ["RotationGrid"]


class RotationGrid(Attack):
    """Worst-of-k rotation attack: ``RotationGrid(model, phi, k)(x, y) -> x_adv``.

    Args:
        model: a classifier returning logits, images (N, C, H, W) in [0, 1].
        phi: half-range φ of the angles, in degrees, in [0, 180] (the budget:
            ``attack.eps`` is φ and ``with_eps`` changes it).
        k: number of angles, evenly spaced in ``[-φ, φ]`` (both ends included).
        batch_size: rotated images per forward pass (bounds memory whatever k).

    ``x_adv`` is exactly ``rotate(x, angles)`` for the chosen angle of each
    sample; :meth:`correct_grid` gives the whole (k, N) table of which angles
    each sample survives.
    """

    norm = "rotation"
    input_rules = {"ndim": 4}

    def __init__(self, model: nn.Module, phi: float, k: int = 10, batch_size: int = 1000):
        super().__init__(model, phi)
        self.k = check_positive_int(k, "k")
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _check_budget(self, phi):
        return check_theta(phi, "phi")

    @property
    def steps(self) -> int:
        return self.k   # model evaluations per sample

    @property
    def angles(self) -> torch.Tensor:
        """The k angles (float64, degrees); k = 1 is the clean image."""
        grid = np.linspace(-self.eps, self.eps, self.k) if self.k > 1 else np.zeros(1)
        return torch.tensor(grid, dtype=torch.float64)

    @property
    def name(self) -> str:
        return f"RotationGrid-{self.k}"

    def _grid(self, x: torch.Tensor, y: torch.Tensor, loss: bool):
        """(k, N) correctness (and cross-entropy) of every (angle, sample), on the model's device."""
        return _correct_grid(self.model, x, y, self.angles, torch.ones(len(x), dtype=torch.float64),
                             self.batch_size, desc="worst-of-k", loss=loss)

    def correct_grid(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean (k, N) on ``x``'s device: is sample n classified correctly at angle t?

        A sample survives the attack when its column is all True; the
        worst-of-k accuracy is ``correct_grid(x, y).all(0).mean()``.
        """
        check_model_inputs(self.model, x, y, **self.input_rules)
        with attack_mode(self.model):
            return self._grid(x, y, loss=False).to(x.device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, y)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching."""
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        correct, loss = attack._grid(x, y, loss=True)
        wrong = ~correct
        fooled = wrong.any(0)
        # Among misclassified angles (if any) the most confidently wrong, else the largest loss.
        score = torch.where(wrong | ~fooled[None], loss, torch.full_like(loss, -torch.inf))
        best = score.argmax(0)
        return rotate(x, attack.angles.to(device)[best]), fooled
