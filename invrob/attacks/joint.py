"""A spatial attack, then an ℓp attack on its output: :class:`JointAttack`.

Threat model: ``x_adv = T(x) + δ`` with ``T`` in a spatial attack's set
(:class:`~invrob.attacks.RotationGrid`, :class:`~invrob.attacks.SpatialGrid`,
:class:`~invrob.attacks.WorstOfK`; Engstrom et al., 2019), ``‖δ‖_p ≤ ε``
(p = ∞ or 2) and ``x_adv ∈ [0, 1]^d``. The search is greedy:

    T* = the spatial attack's worst T,   x_adv = T*(x) if f(T*(x)) ≠ y, else linf(T*(x), y),

with ``linf`` an ℓp attack (PGD, Madry et al., 2018; APGD, Croce & Hein, 2020), so
its accuracy is an upper bound on the accuracy under the joint threat model.
Budget: ``attack.eps`` is ``linf``'s ε; the spatial set stays fixed.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InvrobError, check_eps
from .base import NORMS, Attack
from .spatial_base import _ScoredAttack

__all__ = ["JointAttack"]


class JointAttack(_ScoredAttack):
    """The worst spatial transformation, then an ℓp attack on the transformed image.

    ``JointAttack(model, spatial, linf)(x, y) -> x_adv``, with ``spatial`` a
    :class:`SpatialGrid`, :class:`WorstOfK` or :class:`RotationGrid` and
    ``linf`` an ℓ∞ (or ℓ2) attack (:class:`~invrob.attacks.PGD`,
    :class:`~invrob.attacks.APGD`, ...) on the same model.

    Threat model: ``x_adv = T(x) + δ`` with ``T`` in the spatial attack's set
    and ``‖δ‖ ≤ ε``, ``x_adv ∈ [0, 1]`` — the ε-ball is around the
    **transformed** image ``T(x)``, not around ``x``. The search is greedy, not
    the joint maximum: ``T`` is chosen first (misclassified if possible, else
    maximum cross-entropy), then samples that ``T`` alone does not fool are
    attacked by ``linf`` from ``T(x)``; samples already fooled keep ``T(x)``.
    So the joint accuracy is at most the spatial attack's accuracy; it is an
    upper bound on the accuracy under this threat model.

    ``attack.eps`` is ``linf``'s ε (``with_eps`` changes only it, so
    ``robust_accuracy`` sweeps ε at a fixed spatial set); ε = 0 is the spatial
    attack alone — but ``robust_accuracy``'s ε = 0 row is the clean accuracy (it
    runs no attack at ε = 0), so read the spatial-only number from the spatial attack.
    """

    input_rules = {"ndim": 4}

    def __init__(self, model: nn.Module, spatial: Attack, linf: Attack):
        if not isinstance(spatial, Attack) or spatial.norm not in ("spatial", "rotation"):
            raise InvrobError("spatial must be a spatial attack (SpatialGrid, WorstOfK, RotationGrid), "
                              f"got {type(spatial).__name__}")
        if not isinstance(linf, Attack) or linf.norm not in NORMS:
            raise InvrobError(f"linf must be an l-inf or l2 attack (PGD, APGD, FGSM), got {type(linf).__name__}")
        if spatial.model is not model or linf.model is not model:
            raise InvrobError("spatial and linf must be built on the model that JointAttack attacks")
        self.spatial, self.linf = spatial, linf
        super().__init__(model, linf.eps)

    def _check_budget(self, eps):
        return check_eps(eps, "eps")

    @property
    def norm(self) -> str:
        return f"spatial+{self.linf.norm}"

    @property
    def steps(self) -> int:
        return self.spatial.steps + self.linf.steps

    @property
    def restarts(self) -> int:
        return self.linf.restarts

    @property
    def name(self) -> str:
        return f"{self.spatial.name}+{self.linf.name}"

    def with_eps(self, eps) -> "JointAttack":
        clone = super().with_eps(eps)
        clone.linf = self.linf.with_eps(clone.eps)
        return clone

    def _search(self, x: torch.Tensor, y: torch.Tensor):
        x_adv, fooled = self.spatial.perturb(x, y)
        rest = torch.nonzero(~fooled).flatten()
        if self.eps > 0 and len(rest):
            adv, hit = self.linf.perturb(x_adv[rest], y[rest])
            x_adv, fooled = x_adv.clone(), fooled.clone()
            x_adv[rest], fooled[rest] = adv, hit
        return x_adv, fooled
