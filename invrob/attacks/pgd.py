"""ℓ∞ / ℓ2 PGD and FGSM in pixel space, and the training-time PGD of Madry et al.

Threat model: for an image ``x`` in [0, 1]^d with label ``y``, an adversary may
add any ``δ`` with ``‖δ‖_p ≤ ε`` (p = ∞ or 2) such that ``x + δ`` stays in [0, 1]^d.
Projected gradient descent (Madry et al., 2018) approximately solves

    max_{‖δ‖_p ≤ ε, x+δ ∈ [0,1]^d}  CE(f(x + δ), y)

by k steps of  ``x ← Π(x + α · s(∇_x CE))``, where the step direction is
``s(g) = sign(g)`` for ℓ∞ (the steepest ascent direction of the ℓ∞ ball) and
``s(g) = g / ‖g‖₂`` for ℓ2; ``Π`` projects onto the ε-ball around the clean
image (clamp for ℓ∞, radial rescale for ℓ2) and then clamps to the box. Clamping
to the box after the ball projection never leaves the ball, because it only
shrinks each coordinate of ``δ`` towards 0 (the clean image is in the box).

Conventions (the Madry / ``robustness`` library ones):

- default step ``α = 2.5 ε / k``: enough to cross the ball 2.5 times;
- random start uniform in the ℓ∞ box, or uniform in the ℓ2 ball;
- ``eps`` may be one float or one value per sample (a ``(B,)`` tensor): the step
  is then per sample too, which lets a whole ε grid run as one stacked batch.

What makes this PGD stronger than the textbook last iterate: every iterate
(the random start included) is checked, and a sample keeps the first iterate
that fools the model. An attack that once succeeded is never undone by a later
step that happens to walk back across the boundary.

Efficiency: the model runs in eval mode with its parameters' ``requires_grad``
switched off for the duration (both restored afterwards, also on error), and
the gradient is taken with ``torch.autograd.grad`` w.r.t. the input only — so
backward computes no weight gradients and nothing lands in ``.grad``. Samples
already fooled are dropped from the working batch (``early_stop``), and
ε = 0 rows never run at all in :func:`~invrob.attacks.robust_accuracy`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice, check_positive_int
from ..metrics import model_device
from .base import Attack, _check_eps_value, _check_norm, _flat_norm, _per_sample, _view, attack_mode

__all__ = ["PGD", "FGSM", "pgd", "pgd_training_examples", "ALPHA_FACTOR", "LOSSES"]

# Alpha = ALPHA_FACTOR * eps / steps when no step size is given (Madry et al. /
# the robustness library): the iterate can cross the ball 2.5 times.
ALPHA_FACTOR = 2.5

# Checking whether the batch is done needs a GPU→CPU sync; on an accelerator we
# only do it every few steps so kernel launches stay queued ahead of the GPU.
_SYNC_EVERY_ACCEL = 4
# Drop fooled samples from the working batch once they are this fraction of it
# (indexing copies cost a little, so don't compact for one or two samples).
_COMPACT_FRACTION = 0.25


# --------------------------------------------------------------------------- primitives

def _rand(shape, generator: torch.Generator | None, like: torch.Tensor, normal: bool = False):
    """Uniform [0, 1) (or standard normal) noise on ``like``'s device.

    With a generator the noise is drawn on the generator's device and moved, so
    a CPU generator gives the same noise whether the model is on CPU or CUDA.
    """
    draw = torch.randn if normal else torch.rand
    if generator is None:
        return draw(shape, device=like.device, dtype=like.dtype)
    noise = draw(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


def _random_delta(x: torch.Tensor, eps: torch.Tensor, norm: str, generator) -> torch.Tensor:
    """A random start: uniform in the ℓ∞ box, or uniform in the ℓ2 ball, of radius ε."""
    if norm == "linf":
        return (2 * _rand(x.shape, generator, x) - 1) * _view(eps, x)
    direction = _rand(x.shape, generator, x, normal=True)
    direction = direction / _view(_flat_norm(direction, "l2").clamp_min(1e-12), x)
    # Radius ε·u^(1/d) makes the point uniform in the ball (not just on the sphere).
    d = x[0].numel()
    radius = eps * _rand((len(x),), generator, x) ** (1.0 / d)
    return direction * _view(radius, x)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto {‖x_adv − x‖ ≤ ε} ∩ [0, 1]^d (ball first, then the box)."""
    delta = x_adv - x
    eps_b = _view(eps, x)
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, eps_b), -eps_b)
    else:
        scale = (eps / _flat_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _view(scale, x)
    return (x + delta).clamp_(0.0, 1.0)


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of the unit ℓ∞ / ℓ2 ball for gradient ``grad``."""
    if norm == "linf":
        return grad.sign()
    return grad / _view(_flat_norm(grad, "l2").clamp_min(1e-12), grad)


LOSSES = ("ce", "margin")


def _loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed attack objective (sum, not mean: no 1/B scaling of the gradient).

    ``ce``: cross-entropy. ``margin``: Carlini–Wagner's ``max_{j≠y} z_j − z_y``,
    positive exactly when the point is misclassified; its gradient points at the
    nearest rival class instead of spreading over all of them, which makes
    minimal-perturbation estimates much tighter on multi-class models.
    """
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="sum")
    true = logits.gather(1, y[:, None]).squeeze(1)
    rival = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return (rival - true).sum()


def _input_grad(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str = "ce"):
    """Logits and ∇_x of the summed attack loss."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        grad, = torch.autograd.grad(_loss(logits, y, loss), x_adv)
    return logits.detach(), grad


# --------------------------------------------------------------------------- attacks

class PGD(Attack):
    """Projected gradient descent, ℓ∞ or ℓ2, in pixel space [0, 1].

    ``PGD(model, eps)(x, y)`` returns adversarial images on ``x``'s device
    (the :class:`~invrob.attacks.Attack` contract; ``eps`` may be per sample).

    Args:
        model: a classifier returning logits; it runs on its own device
            (``metrics.model_device``) in eval mode, its mode and parameters'
            ``requires_grad`` restored afterwards.
        eps: radius ε ≥ 0, a float or a ``(B,)`` tensor (one per sample).
        alpha: step size; default ``2.5 ε / steps`` (per sample when ε is).
        steps: gradient steps per restart.
        norm: ``"linf"`` (sign step, clamp) or ``"l2"`` (normalised step, rescale).
        random_start: start uniformly in the ε-ball instead of at ``x``.
        restarts: number of runs; every run after the first starts afresh
            (new random start) on the samples no earlier run fooled.
        early_stop: drop fooled samples from the working batch, and stop when
            none is left. Off: every sample takes every step (the returned
            images are the same — the first fooling iterate is kept either way).
        generator: ``torch.Generator`` for the random start (reproducible, and
            the same noise on CPU and CUDA when it is a CPU generator).
        loss: ``"ce"`` (cross-entropy, as Madry et al. and torchattacks) or
            ``"margin"`` (Carlini–Wagner logit margin).

    Returns, per sample, the first iterate that is misclassified if any was,
    else the last iterate: never weaker than the last-iterate PGD.
    """

    per_sample_eps = True

    def __init__(self, model: nn.Module, eps, alpha=None, steps: int = 40, norm: str = "linf",
                 random_start: bool = True, restarts: int = 1, early_stop: bool = True,
                 generator: torch.Generator | None = None, loss: str = "ce"):
        self.loss = check_choice(loss, LOSSES, "loss")
        super().__init__(model, eps)
        self.alpha = None if alpha is None else _check_eps_value(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.norm = _check_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = check_positive_int(restarts, "restarts")
        self.early_stop = bool(early_stop)
        self.generator = generator

    def _check_budget(self, eps):
        return _check_eps_value(eps, "eps")

    @property
    def name(self) -> str:
        return f"PGD{'-L2' if self.norm == 'l2' else ''}-{self.steps}" + \
            (f"x{self.restarts}" if self.restarts > 1 else "")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The flags of the final restart are not needed: skip its last forward.
        return self.perturb(x, y, check_last=False)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None, check_last: bool = True):
        """``(x_adv, fooled)`` on the model's device, no input checks, no mode switching.

        For callers that already hold :func:`attack_mode` (robust accuracy,
        minimal perturbation); ``eps`` overrides ``self.eps`` (float or (B,)).
        ``fooled[i]`` is True when ``x_adv[i]`` is misclassified. With
        ``check_last=False`` the final iterate of the final restart is not
        classified (one forward pass saved): ``x_adv`` is the same, but
        ``fooled`` may then miss samples fooled only by that iterate.
        """
        device = model_device(self.model)
        x = x.detach().to(device)
        y = y.to(device)
        eps = _per_sample(self.eps if eps is None else eps, len(x), x)
        if self.alpha is None:
            alpha = eps * (ALPHA_FACTOR / self.steps)
        else:
            alpha = _per_sample(self.alpha, len(x), x)
        x_adv = x.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=device)
        for restart in range(self.restarts):
            if restart == 0:
                idx = None
            else:
                idx = (~fooled).nonzero().squeeze(1)
                if len(idx) == 0:
                    break
            sub = (lambda t: t) if idx is None else (lambda t: t[idx])
            adv, hit = self._run(sub(x), sub(y), sub(eps), sub(alpha),
                                 check_last or restart < self.restarts - 1)
            if idx is None:
                x_adv, fooled = adv, hit
            else:
                x_adv[idx], fooled[idx] = adv, hit
        return x_adv, fooled

    def _run(self, x, y, eps, alpha, check_last=True):
        """One restart on a batch already on the device; returns (x_adv, fooled).

        Cost: ``steps`` forward+backward passes (fewer rows once samples are
        fooled), plus one forward for the last iterate when ``check_last``.
        """
        n = len(x)
        x_adv = _project(x + _random_delta(x, eps, self.norm, self.generator), x, eps, self.norm) \
            if self.random_start else x.clone()
        out = x_adv.clone()
        out_fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        # The working batch: `rows` are its positions in the full batch. Rows leave
        # it once fooled (early_stop) or once checked at ε = 0 (they can't move);
        # their result is written to `out` when they leave.
        rows = torch.arange(n, device=x.device)
        wx, wy, weps, walpha, wadv = x, y, eps, alpha, x_adv
        wbest, wfooled = x_adv, out_fooled.clone()   # first fooling iterate, and whether any

        def retire(mask):
            """Write the result of the working rows in ``mask``: best if fooled, else last."""
            r = rows[mask]
            fooled = wfooled[mask]
            out[r] = torch.where(_view(fooled, wadv), wbest[mask], wadv[mask])
            out_fooled[r] = fooled

        sync_every = 1 if x.device.type == "cpu" else _SYNC_EVERY_ACCEL
        for step in range(self.steps + 1):
            last = step == self.steps
            if last and not check_last:  # unfooled rows return the last iterate anyway
                break
            if last:  # the final iterate only needs its prediction
                with torch.no_grad():
                    logits = self.model(wadv)
            else:
                logits, grad = _input_grad(self.model, wadv, wy, self.loss)
            hit = logits.argmax(1) != wy
            # Keep the first fooling iterate; no GPU→CPU sync needed for this.
            wbest = torch.where(_view(hit & ~wfooled, wadv), wadv, wbest)
            wfooled = wfooled | hit
            if last:
                break
            if step == 0:  # ε = 0 rows are done once their (clean) start is checked
                keep = (weps > 0) & ~wfooled if self.early_stop else weps > 0
            elif self.early_stop and step % sync_every == 0:
                keep = ~wfooled
            else:
                keep = None
            if keep is not None:
                n_keep = int(keep.sum())
                if n_keep == 0:
                    retire(torch.ones_like(keep))
                    return out, out_fooled
                if n_keep <= (1 - _COMPACT_FRACTION) * len(rows):
                    retire(~keep)
                    rows, wx, wy, weps, walpha, wadv, wbest, wfooled, grad = (
                        t[keep] for t in (rows, wx, wy, weps, walpha, wadv, wbest, wfooled, grad))
            wadv = _project(wadv + _view(walpha, wadv) * _direction(grad, self.norm), wx, weps,
                            self.norm)
        retire(torch.ones_like(wfooled))
        return out, out_fooled


def pgd_training_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                          alpha: float, steps: int, norm: str = "linf",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Madry et al.'s inner maximisation: PGD on the cross-entropy, the *last* iterate.

    ``x⁰ = Π(x + U(ε-ball))``, ``xᵗ⁺¹ = Π(xᵗ + α · dir ∇ₓ L(f(xᵗ), y))``, with Π the
    projection onto the ε-ball around ``x`` intersected with [0, 1]. Unlike
    :class:`PGD` (an *evaluation* attack that keeps each sample's first
    misclassified iterate and drops fooled samples) every sample takes every
    step and keeps climbing the loss after it is fooled: that is the objective
    adversarial training minimises. Same primitives as :class:`PGD`; the model
    runs under :func:`attack_mode` (eval mode, frozen parameters, restored).
    """
    x = x.detach()
    eps_t = _per_sample(eps, len(x), x)
    alpha_t = _view(_per_sample(alpha, len(x), x), x)
    x_adv = _project(x + _random_delta(x, eps_t, norm, generator), x, eps_t, norm)
    with attack_mode(model):
        for _ in range(steps):
            _, grad = _input_grad(model, x_adv, y)
            x_adv = _project(x_adv + alpha_t * _direction(grad, norm), x, eps_t, norm)
    return x_adv.detach()


class FGSM(Attack):
    """Fast gradient (sign) method: one full step of size ε from the clean image.

    ℓ∞: ``x + ε·sign(∇)``; ℓ2: ``x + ε·∇/‖∇‖₂``; clamped to [0, 1] (Goodfellow
    et al., 2015). The one-step baseline that PGD must beat. ``eps`` may be a
    float or a ``(B,)`` tensor (one per sample).
    """

    per_sample_eps = True

    def __init__(self, model: nn.Module, eps, norm: str = "linf"):
        super().__init__(model, eps)
        self.norm = _check_norm(norm)

    def _check_budget(self, eps):
        return _check_eps_value(eps, "eps")

    @property
    def name(self) -> str:
        return f"FGSM{'-L2' if self.norm == 'l2' else ''}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = _per_sample(self.eps, len(x), x)
        _, grad = _input_grad(self.model, x, y)
        return _project(x + _view(eps, x) * _direction(grad, self.norm), x, eps, self.norm)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, **kw) -> torch.Tensor:
    """Functional shortcut: ``PGD(model, eps, **kw)(x, y)``."""
    return PGD(model, eps, **kw)(x, y)
