"""Batched PGD / FGSM in pixel space, robust accuracy over an ε grid, minimal perturbations.

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
ε = 0 rows never run at all in :func:`robust_accuracy`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # text bars: render in executed notebooks and the book alike

from .errors import InvrobError, check_choice, check_eps, check_positive_int
from .metrics import model_device, predict

NORMS = ("linf", "l2")

# Alpha = ALPHA_FACTOR * eps / steps when no step size is given (Madry et al. /
# the robustness library): the iterate can cross the ball 2.5 times.
ALPHA_FACTOR = 2.5

# Checking whether the batch is done needs a GPU→CPU sync; on an accelerator we
# only do it every few steps so kernel launches stay queued ahead of the GPU.
_SYNC_EVERY_ACCEL = 4
# Drop fooled samples from the working batch once they are this fraction of it
# (indexing copies cost a little, so don't compact for one or two samples).
_COMPACT_FRACTION = 0.25


# --------------------------------------------------------------------------- helpers

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


def _check_norm(norm: str) -> str:
    return check_choice(norm, NORMS, "norm")


def _check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    """Images: float (N, ...) in [0, 1]; labels: integer (N,)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InvrobError("x must be a float tensor of images shaped (N, C, H, W) (or (N, d)), "
                          f"got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
        raise InvrobError(f"y must be an integer label tensor of shape ({len(x)},), "
                          f"got {tuple(getattr(y, 'shape', ()))}")
    if x.numel() and (x.min().item() < -1e-6 or x.max().item() > 1 + 1e-6):
        raise InvrobError("x must be images in [0, 1] (normalisation belongs inside the model), "
                          f"got values in [{x.min().item():.3g}, {x.max().item():.3g}]")


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

class PGD:
    """Projected gradient descent, ℓ∞ or ℓ2, in pixel space [0, 1].

    ``PGD(model, eps)(x, y)`` returns adversarial images on ``x``'s device.

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

    def __init__(self, model: nn.Module, eps, alpha=None, steps: int = 40, norm: str = "linf",
                 random_start: bool = True, restarts: int = 1, early_stop: bool = True,
                 generator: torch.Generator | None = None, loss: str = "ce"):
        self.model = model
        self.loss = check_choice(loss, LOSSES, "loss")
        self.eps = _check_eps_value(eps, "eps")
        self.alpha = None if alpha is None else _check_eps_value(alpha, "alpha")
        self.steps = check_positive_int(steps, "steps")
        self.norm = _check_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = check_positive_int(restarts, "restarts")
        self.early_stop = bool(early_stop)
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_images(x, y)
        with attack_mode(self.model):
            # The flags of the final restart are not needed: skip its last forward.
            x_adv, _ = self.perturb(x.to(model_device(self.model)), y, check_last=False)
        return x_adv.to(x.device)

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


class FGSM:
    """Fast gradient (sign) method: one full step of size ε from the clean image.

    ℓ∞: ``x + ε·sign(∇)``; ℓ2: ``x + ε·∇/‖∇‖₂``; clamped to [0, 1] (Goodfellow
    et al., 2015). The one-step baseline that PGD must beat.
    """

    def __init__(self, model: nn.Module, eps, norm: str = "linf"):
        self.model = model
        self.eps = _check_eps_value(eps, "eps")
        self.norm = _check_norm(norm)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_images(x, y)
        device = model_device(self.model)
        with attack_mode(self.model):
            xd = x.detach().to(device)
            eps = _per_sample(self.eps, len(xd), xd)
            _, grad = _input_grad(self.model, xd, y.to(device))
            x_adv = _project(xd + _view(eps, xd) * _direction(grad, self.norm), xd, eps, self.norm)
        return x_adv.to(x.device)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, **kw) -> torch.Tensor:
    """Functional shortcut: ``PGD(model, eps, **kw)(x, y)``."""
    return PGD(model, eps, **kw)(x, y)


# --------------------------------------------------------------------------- evaluations

def _check_grid(eps_grid: Iterable[float]) -> list[float]:
    try:
        values = [float(e) for e in eps_grid]
    except TypeError:
        raise InvrobError(f"eps_grid must be a list of numbers >= 0, got {eps_grid!r}") from None
    if not values:
        raise InvrobError("eps_grid must contain at least one ε")
    return [check_eps(e, "eps in eps_grid") for e in values]


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: Iterable[float],
                    norm: str = "linf", steps: int = 40, alpha=None, restarts: int = 1,
                    batch_size: int = 500, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """PGD robust accuracy at every ε of ``eps_grid``, one tidy row per ε.

    A point counts as robust at ε when it is classified correctly and PGD
    (``steps``, ``alpha``, ``restarts``, random start seeded by ``seed``) finds
    no misclassified point in its ε-ball. ε = 0 is the clean accuracy, and a
    point misclassified clean is non-robust at every ε.

    The grid runs as stacked batches: every clean-correct point is copied once
    per positive ε, each copy carrying its own ε (and step size), and the rows
    are attacked ``batch_size`` at a time. Because a perturbation admissible at
    ε is admissible at every larger ε, a point fooled at ε counts as fooled at
    every larger ε of the grid too (the curve is the strongest attack found,
    and non-increasing by construction).

    Returns a DataFrame with columns ``eps, accuracy, n, norm, steps, restarts``
    (``accuracy`` a fraction of the ``n`` points), in the grid's order.
    """
    grid = _check_grid(eps_grid)
    norm = _check_norm(norm)
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive_int(batch_size, "batch_size")
    alpha = None if alpha is None else check_eps(alpha, "alpha")
    _check_images(x, y)
    n = len(x)
    device = model_device(model)
    y = y.to(x.device)

    correct = predict(model, x, batch_size) == y
    clean_idx = correct.nonzero().squeeze(1).cpu()
    positive = sorted({e for e in grid if e > 0})
    # fooled_at[e, i]: clean-correct point i fooled at positive[e].
    fooled_at = torch.zeros(len(positive), len(clean_idx), dtype=torch.bool)
    attack = PGD(model, eps=0.0, alpha=alpha, steps=steps, norm=norm, restarts=restarts,
                 generator=torch.Generator().manual_seed(seed))
    if positive and len(clean_idx):
        eps_values = torch.tensor(positive, dtype=x.dtype)
        total = len(clean_idx) * len(positive)
        # Row r ↦ (point r // |grid|, ε r % |grid|): each chunk is a few points × the whole grid.
        starts = range(0, total, batch_size)
        with attack_mode(model):
            for start in tqdm(starts, disable=not progress, desc=f"PGD-{norm} ε grid"):
                r = torch.arange(start, min(start + batch_size, total))
                point, e = r // len(positive), r % len(positive)
                src = clean_idx[point].to(x.device)
                _, hit = attack.perturb(x[src].to(device), y[src], eps=eps_values[e])
                fooled_at[e, point] = hit.cpu()
    # Fooled at a smaller ε ⇒ fooled at every larger one (same δ is admissible).
    fooled_at = fooled_at.cummax(0).values if len(positive) else fooled_at
    robust = {0.0: int(correct.sum())}
    for k, e in enumerate(positive):
        robust[e] = int((~fooled_at[k]).sum())
    rows = [{"eps": e, "accuracy": robust[e] / n if n else float("nan"), "n": n, "norm": norm,
             "steps": steps, "restarts": restarts} for e in grid]
    return pd.DataFrame(rows, columns=["eps", "accuracy", "n", "norm", "steps", "restarts"])


def minimal_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str = "linf",
                         max_eps: float | None = None, bisection_steps: int = 10, steps: int = 20,
                         restarts: int = 1, batch_size: int = 500, seed: int = 0,
                         progress: bool = False, loss: str = "margin") -> torch.Tensor:
    """Estimated distance from each point to the decision boundary, shape (N,).

    The smallest ε at which PGD changes the prediction, found by bisection on ε
    run for all points at once: every point carries its own bracket
    ``[lo, hi]`` (start ``[0, max_eps]``), and each bisection step is one PGD
    call with per-sample ε = (lo + hi) / 2 — fooled: ``hi ← min(mid, ‖δ‖)``
    with ``δ`` the perturbation PGD found; not fooled: ``lo ← mid``.

    The estimate is the final ``hi``: the norm of an actual adversarial
    perturbation, so it is an **upper bound** on the true distance (PGD may
    miss closer adversarial points), exact up to ``max_eps / 2^bisection_steps``
    when PGD is optimal (e.g. for a linear model). Points misclassified clean
    get 0; points PGD does not fool even at ``max_eps`` get ``inf``.

    ``max_eps`` defaults to 1 for ℓ∞ (the whole box) and ``sqrt(d)`` for ℓ2 (the
    box diagonal); a smaller bound gives a finer bisection. The result is on
    ``x``'s device. ``loss`` defaults to the logit margin: with cross-entropy
    PGD spreads its effort over all rival classes and overestimates the
    distance of multi-class models (by up to ~80% on a 10-class linear model).
    """
    norm = _check_norm(norm)
    check_positive_int(bisection_steps, "bisection_steps")
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive_int(batch_size, "batch_size")
    _check_images(x, y)
    if max_eps is None:
        max_eps = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    max_eps = check_eps(max_eps, "max_eps")
    device = model_device(model)
    y = y.to(x.device)
    n = len(x)

    dist = torch.zeros(n)
    correct = (predict(model, x, batch_size) == y).cpu()
    todo = correct.nonzero().squeeze(1)
    attack = PGD(model, eps=0.0, steps=steps, norm=norm, restarts=restarts,
                 generator=torch.Generator().manual_seed(seed), loss=loss)
    with attack_mode(model):
        for start in tqdm(range(0, len(todo), batch_size), disable=not progress,
                          desc=f"minimal {norm} perturbation"):
            idx = todo[start:start + batch_size]
            xb, yb = x[idx.to(x.device)].to(device), y[idx.to(x.device)].to(device)
            lo = torch.zeros(len(idx), device=device, dtype=xb.dtype)
            hi = torch.full_like(lo, math.inf)
            eps = torch.full_like(lo, max_eps)  # first call brackets: PGD at max_eps
            for it in range(bisection_steps + 1):
                # Points never fooled at max_eps keep hi = inf and leave the bisection.
                rows = torch.arange(len(idx), device=device) if it == 0 \
                    else torch.isfinite(hi).nonzero().squeeze(1)
                if len(rows) == 0:
                    break
                x_adv, hit = attack.perturb(xb[rows], yb[rows], eps=eps[rows])
                size = _flat_norm(x_adv - xb[rows], norm)
                hi[rows[hit]] = torch.minimum(eps[rows[hit]], size[hit])
                lo[rows[~hit]] = eps[rows[~hit]]
                # PGD is not monotone in ε: a δ smaller than a failed ε may turn up.
                lo = torch.minimum(lo, hi)
                eps = (lo + hi) / 2
            dist[idx] = hi.cpu()
    return dist.to(x.device)
