"""The attack contract, and the helpers every attack shares.

An attack is an object built around one model and one budget that maps a batch
``(x, y)`` to worst-case inputs ``x_adv`` (torchattacks style: one class per
attack, a small ``forward``):

- ``attack(x, y) -> x_adv``: checks the batch (:func:`invrob.metrics.check_model_inputs`:
  finite images in [0, 1], labels in ``[0, classes)``), runs the model on its
  own device under :func:`attack_mode` (eval mode, frozen parameters, both
  restored), and returns images of ``x``'s shape on ``x``'s device;
- ``attack.perturb(x, y, eps=None) -> (x_adv, fooled)``: the same on the
  model's device, for callers that already checked the batch and hold
  :func:`attack_mode` (:func:`~invrob.attacks.robust_accuracy`); ``fooled[i]``
  says whether ``x_adv[i]`` is misclassified;
- ``attack.eps`` (the budget: ε for ℓp attacks, the half-range φ in degrees for
  rotations), ``attack.with_eps(eps)`` (a copy at another budget, for ε grids),
  ``attack.name``, ``attack.norm`` (the threat model: ``"linf"``, ``"l2"``,
  ``"rotation"``), ``attack.steps``, ``attack.restarts``.

Attacks with ``per_sample_eps = True`` (:class:`~invrob.attacks.PGD`,
:class:`~invrob.attacks.FGSM`) accept a ``(B,)`` tensor of budgets in
``perturb``, which lets :func:`~invrob.attacks.robust_accuracy` run a whole ε
grid as one stacked batch.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ..errors import InvrobError, check_choice, check_eps
from ..metrics import check_model_inputs, model_device

NORMS = ("linf", "l2")


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """Eval mode and frozen parameters for the block; both restored afterwards.

    Freezing the parameters (``requires_grad = False``) means backward through
    the model computes only what the input gradient needs — no weight
    gradients, and ``.grad`` of every parameter stays exactly as it was.
    """
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    try:
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)


class Attack:
    """Base class of the attacks: ``Attack(model, eps)(x, y) -> x_adv``.

    Subclasses set ``norm``, check their budget in :meth:`_check_budget` and
    implement :meth:`forward` (batch already checked and on the model's device,
    model in :func:`attack_mode`); :meth:`perturb` adds the ``fooled`` flags
    with one forward pass unless a subclass knows them already.
    """

    norm: str = ""
    per_sample_eps: bool = False   # perturb() accepts a (B,) tensor of budgets
    input_rules: dict = {}         # extra rules for check_images (e.g. ndim=4)
    steps: int = 1
    restarts: int = 1

    def __init__(self, model: nn.Module, eps):
        if not isinstance(model, nn.Module):
            raise InvrobError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.eps = self._check_budget(eps)

    # --- the contract
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            x_adv = self.forward(x.detach().to(device), y.to(device))
        return x_adv.detach().to(x.device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Worst-case inputs for a checked batch on the model's device (in attack mode)."""
        raise NotImplementedError

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching.

        ``eps`` overrides the budget (one number; a ``(B,)`` tensor only where
        ``per_sample_eps``).
        """
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        x_adv = attack.forward(x, y)
        with torch.no_grad():
            fooled = self.model(x_adv).argmax(1) != y
        return x_adv, fooled

    def with_eps(self, eps) -> "Attack":
        """A copy of this attack at budget ``eps`` (same model, settings and generator)."""
        clone = copy.copy(self)
        clone.eps = self._check_budget(eps)
        return clone

    # --- description
    def _check_budget(self, eps):
        return check_eps(eps, "eps")

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        eps = self.eps if not isinstance(self.eps, torch.Tensor) else f"tensor{tuple(self.eps.shape)}"
        return f"{type(self).__name__}(eps={eps}, norm={self.norm!r}, steps={self.steps}, " \
               f"restarts={self.restarts})"


# --------------------------------------------------------------------------- ℓp helpers

def _check_norm(norm: str) -> str:
    return check_choice(norm, NORMS, "norm")


def _check_eps_value(eps, name: str = "eps"):
    """A float ε (checked like ``check_eps``) or a tensor of ε ≥ 0, all finite."""
    if isinstance(eps, torch.Tensor):
        if eps.dim() == 0:
            return check_eps(eps.item(), name)
        if eps.dim() != 1:
            raise InvrobError(f"{name} must be a number or a 1-D tensor with one value per sample, "
                              f"got shape {tuple(eps.shape)}")
        if not eps.is_floating_point():
            eps = eps.float()
        if eps.numel() and not (torch.isfinite(eps).all().item() and (eps >= 0).all().item()):
            raise InvrobError(f"{name} must be finite numbers >= 0, got values in "
                              f"[{eps.min().item():.3g}, {eps.max().item():.3g}]")
        return eps.detach()
    return check_eps(eps, name)


def _per_sample(value, n: int, like: torch.Tensor) -> torch.Tensor:
    """A float or a (n,) tensor as a (n,) tensor on ``like``'s device and dtype."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 1 and len(value) != n:
            raise InvrobError(f"per-sample eps/alpha has {len(value)} values for {n} samples")
        return value.to(device=like.device, dtype=like.dtype).expand(n).contiguous()
    return torch.full((n,), float(value), device=like.device, dtype=like.dtype)


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) → (B, 1, 1, ...) so it broadcasts against a batch shaped like ``x``."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def _flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ℓ∞ or ℓ2 norm of a batch, shape (B,)."""
    flat = t.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
