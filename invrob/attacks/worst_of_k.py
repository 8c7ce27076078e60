"""Worst of k random rotations + translations: :class:`WorstOfK` (Engstrom et al., 2019).

Per sample, k transformations drawn independently,

    θ ~ U[−φ, φ] degrees,   dx, dy ~ U[−s, s] pixels (continuous),

(:func:`invrob.transforms.random_transforms`), fresh at every call; ``x_adv`` is
the worst of the k (the rule of :mod:`invrob.attacks.spatial_base`). The identity
is not a candidate. Budget: ``attack.eps`` is ``(φ, s)``; defaults (30°, 3 px).

Reference: L. Engstrom, B. Tran, D. Tsipras, L. Schmidt, A. Madry, "Exploring the
Landscape of Spatial Robustness", ICML 2019 — the worst-of-k attack, whose k = 10
is their adversarial-training attack.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InvrobError, check_positive_int
from ..transforms import random_transforms
from .spatial_base import _SpatialSearch

__all__ = ["WorstOfK"]


class WorstOfK(_SpatialSearch):
    """Worst of k random rotations + translations per sample (Engstrom et al.'s training attack).

    Args:
        model: a classifier returning logits, images (N, C, H, W) in [0, 1].
        k: transformations tried per sample.
        max_angle: angles ~ U[−max_angle, max_angle] degrees (default 30).
        max_shift: dx, dy ~ U[−max_shift, max_shift] pixels, continuous (default 3).
        seed: seeds the attack's own CPU generator (when ``generator`` is None).
        generator: a ``torch.Generator`` to draw from instead (the training loop
            passes its own, so a resumed run draws the same transformations).
        batch_size: transformed images per forward pass.

    Every call draws fresh transformations (:meth:`draw`, from the generator):
    ``k · N`` of them, laid out sample-major (sample n's k draws are consecutive).
    ``attack.eps`` is ``(max_angle, max_shift)``. The identity is not among the
    candidates (as in Engstrom et al.): a sample can come back transformed even
    when the clean image is the worse one.
    """

    def __init__(self, model: nn.Module, k: int = 10, max_angle: float = 30.0, max_shift: float = 3.0,
                 seed: int = 0, generator: torch.Generator | None = None, batch_size: int = 1000):
        self.k = check_positive_int(k, "k")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if generator is None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise InvrobError(f"seed must be an integer >= 0, got {seed!r}")
            generator = torch.Generator().manual_seed(int(seed))
        elif not isinstance(generator, torch.Generator):
            raise InvrobError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        super().__init__(model, (max_angle, max_shift))

    @property
    def max_angle(self) -> float:
        return self.eps[0]

    @property
    def max_shift(self) -> float:
        return self.eps[1]

    @property
    def steps(self) -> int:
        return self.k

    @property
    def name(self) -> str:
        return f"WorstOf{self.k}"

    def draw(self, n: int, device: torch.device | str | None = None):
        """The next ``angles (k, n)`` and ``shifts (k, n, 2)`` from the generator (float64)."""
        angles, shifts = random_transforms(n * self.k, self.max_angle, self.max_shift, self.generator,
                                           device=device)
        return angles.reshape(n, self.k).T, shifts.reshape(n, self.k, 2).transpose(0, 1)

    def _candidates(self, n: int, device: torch.device):
        return self.draw(n, device)
