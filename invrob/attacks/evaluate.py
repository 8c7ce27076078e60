"""Evaluations built on the attacks: robust accuracy over a budget grid, minimal perturbations."""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm  # text bars: render in executed notebooks and the book alike

from ..errors import InvrobError, check_eps, check_positive_int
from ..metrics import check_model_inputs, model_device, predict
from .base import Attack, _check_norm, _flat_norm, attack_mode
from .rotation_grid import RotationGrid
from .pgd import PGD

__all__ = ["robust_accuracy", "robust_points", "minimal_perturbation"]


def _check_grid(eps_grid: Iterable[float]) -> list[float]:
    try:
        values = [float(e) for e in eps_grid]
    except TypeError:
        raise InvrobError(f"eps_grid must be a list of numbers >= 0, got {eps_grid!r}") from None
    if not values:
        raise InvrobError("eps_grid must contain at least one ε")
    return [check_eps(e, "eps in eps_grid") for e in values]


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: Iterable[float],
                    attack: Attack | None = None, norm: str = "linf", steps: int = 40, alpha=None,
                    restarts: int = 1, batch_size: int = 500, seed: int = 0,
                    progress: bool = False) -> pd.DataFrame:
    """Robust accuracy under ``attack`` at every budget of ``eps_grid``, one tidy row per ε.

    ``attack`` is any :class:`~invrob.attacks.Attack` on ``model`` (its own budget
    is replaced by each ε of the grid, :meth:`~invrob.attacks.Attack.with_eps`);
    by default ℓ``norm`` PGD with ``steps``, ``alpha``, ``restarts`` and a random
    start seeded by ``seed`` — those keywords configure only that default, and
    passing them together with an ``attack`` is an error.

    A point counts as robust at ε when it is classified correctly and the attack
    finds no misclassified point within budget ε. ε = 0 is the clean accuracy,
    and a point misclassified clean is non-robust at every ε.

    Attacks with per-sample budgets (PGD, FGSM) run the grid as stacked batches:
    every clean-correct point is copied once per positive ε, each copy carrying
    its own ε (and step size), and the rows are attacked ``batch_size`` at a
    time. Other attacks (AutoAttack, APGD, the spatial ones) run once per ε, in
    increasing order, ``batch_size`` points at a time, on the points not fooled at a
    smaller ε. Because a perturbation admissible at ε is admissible at every larger
    ε, a point fooled at ε counts as fooled at every larger ε of the grid too (the
    curve is the strongest attack found, and non-increasing by construction).

    Returns a DataFrame with columns ``eps, accuracy, n, norm, steps, restarts``
    (``accuracy`` a fraction of the ``n`` points; ``norm``, ``steps``,
    ``restarts`` describe the attack), in the grid's order. :func:`robust_points`
    gives the same verdicts point by point.
    """
    points = robust_points(model, x, y, eps_grid, attack=attack, norm=norm, steps=steps, alpha=alpha,
                           restarts=restarts, batch_size=batch_size, seed=seed, progress=progress)
    n, grid = len(x), _check_grid(eps_grid)
    robust = points["robust"].to_numpy().reshape(len(grid), n)
    frame = pd.DataFrame({"eps": grid, "accuracy": robust.sum(1) / n if n else float("nan"), "n": n})
    for key in ("norm", "steps", "restarts"):
        frame[key] = points.attrs[key]
    return frame


def robust_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: Iterable[float],
                  attack: Attack | None = None, norm: str = "linf", steps: int = 40, alpha=None,
                  restarts: int = 1, batch_size: int = 500, seed: int = 0,
                  progress: bool = False) -> pd.DataFrame:
    """:func:`robust_accuracy` point by point: one row per ε of the grid and test point.

    Columns ``eps, point, robust`` (``point`` the index into ``x``; ``robust`` 1 when
    the point is classified correctly and the attack found no misclassified point
    within ε, else 0), ε in the grid's order, points in order. Keyword arguments and
    the rules are those of :func:`robust_accuracy`; ``attrs`` holds the attack's
    ``norm``, ``steps`` and ``restarts``. Paired statistics over test points
    (:func:`invrob.stats.paired_bootstrap`) read this.
    """
    grid = _check_grid(eps_grid)
    check_positive_int(batch_size, "batch_size")
    if attack is None:
        norm = _check_norm(norm)
        check_positive_int(steps, "steps")
        check_positive_int(restarts, "restarts")
        alpha = None if alpha is None else check_eps(alpha, "alpha")
    else:
        if not isinstance(attack, Attack):
            raise InvrobError(f"attack must be an invrob.attacks.Attack (PGD, FGSM, APGD, "
                              f"RotationGrid...), got {type(attack).__name__}")
        if attack.model is not model:
            raise InvrobError("attack was built on another model than the one evaluated: "
                              "build it on `model`")
        if (norm, steps, alpha, restarts, seed) != ("linf", 40, None, 1, 0):
            raise InvrobError("norm, steps, alpha, restarts and seed configure the default PGD: "
                              "with an explicit attack, set them on the attack instead")
    check_model_inputs(model, x, y)
    n = len(x)
    device = model_device(model)
    y = y.to(x.device)
    if attack is None:
        attack = PGD(model, eps=0.0, alpha=alpha, steps=steps, norm=norm, restarts=restarts,
                     generator=torch.Generator().manual_seed(seed))

    correct = predict(model, x, batch_size) == y
    clean_idx = correct.nonzero().squeeze(1).cpu()
    positive = sorted({e for e in grid if e > 0})
    # fooled_at[e, i]: clean-correct point i fooled at positive[e].
    fooled_at = torch.zeros(len(positive), len(clean_idx), dtype=torch.bool)
    if positive and len(clean_idx):
        with attack_mode(model):
            if attack.per_sample_eps:
                eps_values = torch.tensor(positive, dtype=x.dtype)
                total = len(clean_idx) * len(positive)
                # Row r ↦ (point r // |grid|, ε r % |grid|): each chunk is a few points × the whole grid.
                starts = range(0, total, batch_size)
                for start in tqdm(starts, disable=not progress, desc=f"{attack.name} ε grid"):
                    r = torch.arange(start, min(start + batch_size, total))
                    point, e = r // len(positive), r % len(positive)
                    src = clean_idx[point].to(x.device)
                    _, hit = attack.perturb(x[src].to(device), y[src], eps=eps_values[e])
                    fooled_at[e, point] = hit.cpu()
            else:
                for k in tqdm(range(len(positive)), disable=not progress, desc=f"{attack.name} ε grid"):
                    # only the points no smaller ε fooled: the others are fooled here too
                    alive = (~fooled_at[:k].any(0)).nonzero().squeeze(1) if k else \
                        torch.arange(len(clean_idx))
                    for start in range(0, len(alive), batch_size):
                        at = alive[start:start + batch_size]
                        src = clean_idx[at].to(x.device)
                        _, hit = attack.perturb(x[src].to(device), y[src], eps=positive[k])
                        fooled_at[k, at] = hit.cpu()
    # Fooled at a smaller ε ⇒ fooled at every larger one (same δ is admissible).
    fooled_at = fooled_at.cummax(0).values if len(positive) else fooled_at
    robust = torch.zeros(len(grid), n, dtype=torch.int64)
    for g, e in enumerate(grid):
        if e == 0:
            robust[g] = correct.cpu().long()
        else:
            robust[g, clean_idx] = (~fooled_at[positive.index(e)]).long()
    frame = pd.DataFrame({"eps": [e for e in grid for _ in range(n)],
                          "point": list(range(n)) * len(grid),
                          "robust": robust.reshape(-1).numpy()})
    frame.attrs.update(norm=attack.norm, steps=attack.steps, restarts=attack.restarts)
    return frame


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
    check_model_inputs(model, x, y)
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


def worst_of_k_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, theta: float,
                        k: int = 10, batch_size: int = 1000) -> float:
    """Accuracy under the grid attack of Engstrom et al. (2019).

    An image counts as correct only if it is classified correctly at *all* k
    angles evenly spaced in ``[-theta, theta]`` (``numpy.linspace``; k = 1 is
    the single angle 0, i.e. the clean accuracy). A lower bound on accuracy at
    any fixed angle of the grid. Computed by the grid attack
    :class:`RotationGrid` (whose ``x_adv`` is the failing rotation).
    """
    attack = RotationGrid(model, theta, k, batch_size)
    return attack.correct_grid(x, y).all(0).double().mean().item()
