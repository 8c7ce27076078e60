"""Worst of k rotations: :class:`RotationGrid` (Engstrom et al., 2019).

The adversary rotates the image about its centre (:func:`invrob.rotations.rotate`)
by one of the k angles evenly spaced in ``[-φ, φ]`` degrees, both ends included,

    θ_j = −φ + 2φ j / (k − 1),   j = 0, …, k − 1   (k = 1: θ_0 = 0, the clean image),

and keeps, per sample, the most confidently wrong angle (largest cross-entropy)
if any angle is misclassified, else the angle of largest cross-entropy (ties: the
first). Gradient-free and exhaustive over its k angles. Budget: ``attack.eps`` is φ.

Reference: L. Engstrom, B. Tran, D. Tsipras, L. Schmidt, A. Madry, "Exploring the
Landscape of Spatial Robustness", ICML 2019 — its grid / worst-of-k attacks,
restricted here to rotations.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import check_positive_int, check_theta
from ..metrics import check_model_inputs
from ..rotations import _correct_grid, rotate
from .base import attack_mode
from .spatial_base import _pick_worst, _ScoredAttack

__all__ = ["RotationGrid"]


class RotationGrid(_ScoredAttack):
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

    def _search(self, x: torch.Tensor, y: torch.Tensor):
        correct, loss = self._grid(x, y, loss=True)
        # Among misclassified angles (if any) the most confidently wrong, else the largest loss.
        best, fooled = _pick_worst(correct, loss)
        return rotate(x, self.angles.to(x.device)[best]), fooled
