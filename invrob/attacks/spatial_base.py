"""The search shared by the rotation + translation attacks (Engstrom et al., 2019).

Threat model: an image may be rotated about its centre by an angle ``θ`` in
``[-φ, φ]`` degrees and then shifted by ``(dx, dy)`` pixels with
``|dx|, |dy| ≤ s`` (:func:`invrob.transforms.rotate_translate`: bilinear, zero
padding, dx right, dy down); the budget is the pair ``(φ, s)``. An attack tries a
finite set ``T`` of transformations ``t = (θ, dx, dy)`` per sample and keeps

    t* = argmax_{t ∈ T} CE(f(t(x)), y)   over the t with f(t(x)) ≠ y if there is one, else over all T

(ties: the first in ``T``'s order; :func:`_pick_worst`). Gradient-free, so
gradient masking cannot fool it; exhaustive over its set.

:class:`_SpatialSearch` is that search behind the attack contract; a subclass
gives the set (``_candidates``): :class:`~invrob.attacks.SpatialGrid` a fixed grid
(:mod:`invrob.attacks.spatial_grid`), :class:`~invrob.attacks.WorstOfK` k random
draws (:mod:`invrob.attacks.worst_of_k`). Its base :class:`_ScoredAttack` (``perturb``
from a ``_search`` that returns the fooled flags itself) also serves
:class:`~invrob.attacks.RotationGrid` and :class:`~invrob.attacks.JointAttack`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvrobError, check_eps, check_theta
from ..metrics import check_model_inputs, eval_mode, model_device
from ..transforms import rotate_translate
from .base import Attack, attack_mode


def _check_spatial_budget(eps, name: str = "eps") -> tuple[float, float]:
    """A spatial budget: the pair (largest |angle| in [0, 180] degrees, largest |shift| >= 0 px)."""
    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().tolist()
    if isinstance(eps, (str, bytes)) or not hasattr(eps, "__len__") or len(eps) != 2:
        raise InvrobError(f"{name} of a spatial attack is the pair (max angle in degrees, max shift "
                          f"in pixels), got {eps!r}")
    return check_theta(eps[0], f"{name}[0] (max angle)") + 0.0, check_eps(eps[1], f"{name}[1] (max shift)") + 0.0


@torch.no_grad()
def _transform_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, angles: torch.Tensor,
                      shifts: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N) correctness and cross-entropy of sample n under transformation t.

    ``angles`` (T, N) and ``shifts`` (T, N, 2) on ``x``'s device (a grid shared by
    all samples is an ``expand``ed view: no copy). The T·N (transformation,
    sample) pairs are flattened t-major and run in chunks of ``batch_size``
    transformed images, one ``rotate_translate`` and one forward pass per chunk,
    so memory is bounded whatever T. ``x`` and ``y`` on the model's device.
    """
    t_count, n = angles.shape
    correct = torch.zeros(t_count, n, dtype=torch.bool, device=x.device)
    losses = torch.zeros(t_count, n, device=x.device, dtype=torch.float32)  # the losses below are float32
    flat_angles, flat_shifts = angles.reshape(-1), shifts.reshape(-1, 2)
    with eval_mode(model):
        for start in range(0, t_count * n, batch_size):
            flat = torch.arange(start, min(start + batch_size, t_count * n), device=x.device)
            img, t = flat % n, flat // n
            logits = model(rotate_translate(x[img], flat_angles[flat], flat_shifts[flat]))
            correct[t, img] = logits.argmax(1) == y[img]
            losses[t, img] = F.cross_entropy(logits.float(), y[img], reduction="none")
    return correct, losses


@torch.no_grad()
def _survivors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor,
               batch_size: int) -> torch.Tensor:
    """(N,): is sample n classified correctly under every transformation t?

    The same images and forward passes as :func:`_transform_scores` (``.all(0)`` of its
    correctness), except that a sample is no longer transformed once one transformation
    fools the model: on a model that most transformations fool, a large grid then costs
    a few of its transformations per point, not all of them.
    """
    t_count, n = angles.shape
    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    t = 0
    with eval_mode(model):
        while t < t_count:
            live = alive.nonzero().squeeze(1)
            if len(live) == 0:
                break
            rows = torch.arange(t, min(t + max(1, batch_size // len(live)), t_count), device=x.device)
            t += len(rows)
            pair_t, pair_n = rows.repeat_interleave(len(live)), live.repeat(len(rows))
            for start in range(0, len(pair_t), batch_size):
                tt, nn_ = pair_t[start:start + batch_size], pair_n[start:start + batch_size]
                logits = model(rotate_translate(x[nn_], angles[tt, nn_], shifts[tt, nn_]))
                alive[nn_[logits.argmax(1) != y[nn_]]] = False
    return alive


def _pick_worst(correct: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (column): the index of the worst transformation, and whether it fools.

    Misclassified transformations win over classified ones; among equals the
    largest cross-entropy; among ties the first (``argmax``)."""
    wrong = ~correct
    fooled = wrong.any(0)
    score = torch.where(wrong | ~fooled[None], losses, torch.full_like(losses, -torch.inf))
    return score.argmax(0), fooled


class _ScoredAttack(Attack):
    """An attack whose search already knows which samples it fools (no extra forward pass).

    A subclass implements :meth:`_search` at its own budget; :meth:`perturb` moves the
    batch to the model's device and runs it at ``eps`` (the base of :class:`_SpatialSearch`,
    :class:`~invrob.attacks.RotationGrid` and :class:`~invrob.attacks.JointAttack`).
    """

    def _search(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, fooled)`` for ``x``, ``y`` on the model's device."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, y)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching."""
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        return attack._search(x, y)


class _SpatialSearch(_ScoredAttack):
    """Shared machinery: evaluate a set of (angle, shift) per sample, keep the worst."""

    norm = "spatial"
    input_rules = {"ndim": 4}

    def _check_budget(self, eps):
        return _check_spatial_budget(eps)

    def _candidates(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``angles (T, n)`` and ``shifts (T, n, 2)`` (float64, on ``device``) to try."""
        raise NotImplementedError

    def _worst(self, x: torch.Tensor, y: torch.Tensor):
        angles, shifts = self._candidates(len(x), x.device)
        if len(x) == 0:
            return angles[0], shifts[0], torch.zeros(0, dtype=torch.bool, device=x.device)
        correct, losses = _transform_scores(self.model, x, y, angles, shifts, self.batch_size)
        best, fooled = _pick_worst(correct, losses)
        cols = torch.arange(len(x), device=x.device)
        return angles[best, cols], shifts[best, cols], fooled

    def worst_transforms(self, x: torch.Tensor, y: torch.Tensor):
        """``(angles (N,), shifts (N, 2), fooled (N,))`` on ``x``'s device: each sample's
        chosen transformation (``x_adv = rotate_translate(x, angles, shifts)``) and
        whether it is misclassified. Checks the batch; model in attack mode."""
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            angles, shifts, fooled = self._worst(x.detach().to(device), y.to(device))
        return angles.to(x.device), shifts.to(x.device), fooled.to(x.device)

    def survives(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean (N,) on ``x``'s device: is sample n classified correctly under every
        transformation of the set? (The attack's accuracy is its mean.) The same answer
        as classifying the attack's output, without evaluating a sample's remaining
        transformations once one fools the model. Checks the batch; model in attack mode."""
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            xd, yd = x.detach().to(device), y.to(device)
            angles, shifts = self._candidates(len(xd), device)
            return _survivors(self.model, xd, yd, angles, shifts, self.batch_size).to(x.device)

    def _search(self, x: torch.Tensor, y: torch.Tensor):
        angles, shifts, fooled = self._worst(x, y)
        return rotate_translate(x, angles, shifts), fooled
