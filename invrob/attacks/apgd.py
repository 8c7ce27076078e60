"""APGD (Croce & Hein, 2020): AutoAttack's step-size-free PGD, from torchattacks.

An independent implementation of a stronger attack: when our PGD and APGD
agree, PGD's numbers are not an artefact of gradient masking or of a badly
tuned step size. A thin wrapper that gives ``torchattacks.APGD`` the
:class:`~invrob.attacks.Attack` contract: checked inputs, eval mode and frozen
parameters (:func:`~invrob.attacks.attack_mode`), images back on ``x``'s device.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import check_choice, check_positive_int
from .base import Attack, _check_norm

__all__ = ["APGD", "APGD_LOSSES"]

APGD_LOSSES = ("ce", "dlr")


class APGD(Attack):
    """``torchattacks.APGD`` (ℓ∞ or ℓ2, loss ``"ce"`` or ``"dlr"``) as an :class:`Attack`.

    Args:
        model: a classifier returning logits (images (N, C, H, W) in [0, 1]).
        eps: radius ε ≥ 0 (one number: torchattacks has no per-sample ε).
        steps: iterations per restart (AutoAttack uses 100).
        norm: ``"linf"`` or ``"l2"``.
        restarts: random restarts (torchattacks' ``n_restarts``).
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (difference of logits ratio,
            scale invariant; needs at least 3 classes).
        seed: torchattacks seeds the global torch RNG with it at every call, so
            one call is reproducible; the caller's global RNG state is restored
            afterwards.
        rho: torchattacks' step-size halving threshold.

    Only samples classified correctly are attacked (torchattacks' rule); the
    others come back unchanged.
    """

    input_rules = {"ndim": 4}   # torchattacks' APGD broadcasts ε over (N, 1, 1, 1)

    def __init__(self, model: nn.Module, eps: float, steps: int = 100, norm: str = "linf",
                 restarts: int = 1, loss: str = "ce", seed: int = 0, rho: float = 0.75):
        super().__init__(model, eps)
        self.steps = check_positive_int(steps, "steps")
        self.norm = _check_norm(norm)
        self.restarts = check_positive_int(restarts, "restarts")
        self.loss = check_choice(loss, APGD_LOSSES, "loss")
        self.seed = int(seed)
        self.rho = float(rho)

    @property
    def name(self) -> str:
        return f"APGD-{self.loss.upper()}{'-L2' if self.norm == 'l2' else ''}-{self.steps}" + \
            (f"x{self.restarts}" if self.restarts > 1 else "")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torchattacks  # heavy import, only when APGD actually runs

        # Built per call: torchattacks fixes its device when constructed, and the
        # model may have moved since this attack was.
        attack = torchattacks.APGD(self.model, norm={"linf": "Linf", "l2": "L2"}[self.norm],
                                   eps=self.eps, steps=self.steps, n_restarts=self.restarts,
                                   seed=self.seed, loss=self.loss, rho=self.rho)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):   # APGD reseeds the global RNG
            return attack(x, y)

