"""The recipe of one training batch: which images the step is taken on, and its loss.

In this order (the joint threat model of :class:`invrob.attacks.JointAttack`):

1. rotate each image by its own angle drawn uniformly from ``[-θ, θ]`` (θ of the
   epoch's stage, :func:`~invrob.train.stage_at`);
2. replace it by the worst of k random rotations + translations (``spatial_attack``,
   Engstrom et al. 2019; attack ``"worst-of-k"``);
3. replace the batch by ℓ∞ PGD adversarial examples at ε around the transformed
   images (Madry et al. 2018; attack ``"pgd-train"``: the last iterate of
   ``attack_steps`` steps of size :meth:`~invrob.train.TrainConfig.alpha_for` from a
   random start, ε ramped up per batch over ``eps_warmup_epochs`` or the stage's ε);
4. the cross-entropy of the result, plus ``λ ·`` :func:`invariance_penalty` between
   the logits of the images before and after step 2 (``spatial_attack["invariance"]``,
   Yang, Wang and Heinze-Deml, NeurIPS 2019).

Both attacks are built by name through the registry (:func:`invrob.attacks.build`),
run in :func:`~invrob.attacks.attack_mode` (eval mode, frozen weights; train mode
restored) and draw from the run's generator, as does the rotation, so a resumed
run draws the same numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import attack_mode, build
from ..rotations import random_rotate
from .config import TrainConfig, _eps_at, stage_at

__all__ = ["batch_loss", "invariance_penalty"]


def batch_loss(config: TrainConfig, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, *, epoch: int,
               step: int, batches_per_epoch: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, loss)`` of the batch ``(xb, yb)`` as the config trains it (module docstring),
    at 0-based ``epoch`` and global batch ``step``; ``model`` in train mode."""
    theta, stage_eps = stage_at(config, epoch)
    if theta > 0:
        xb = random_rotate(xb, theta, generator=generator)
    untransformed = xb
    attacks = []
    spatial = config.spatial_attack
    if spatial is not None:
        attacks.append(build("worst-of-k", model, k=spatial["k"], max_angle=spatial["max_angle"],
                             max_shift=spatial["max_shift"], generator=generator,
                             batch_size=config.batch_size * spatial["k"]))
    if stage_eps > 0:
        eps = _eps_at(config, step, batches_per_epoch) if config.schedule is None else stage_eps
        attacks.append(build("pgd-train", model, eps=eps, alpha=config.alpha_for(eps),
                             steps=config.attack_steps, generator=generator))
    if attacks:
        with attack_mode(model):
            for attack in attacks:
                xb = attack.forward(xb, yb)
    logits = model(xb)
    loss = F.cross_entropy(logits, yb)
    invariance = (spatial or {}).get("invariance", 0.0)
    if invariance:
        loss = loss + invariance * invariance_penalty(model(untransformed), logits)
    return logits, loss


def invariance_penalty(logits: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """Yang et al.'s invariance regulariser: mean over the batch of ‖f(x) − f(x')‖²₂ / C."""
    return (logits - transformed).pow(2).mean(1).mean()
