"""A toy statistical setting where invariance to a cyclic group costs adversarial robustness.

Ours, not the paper's theorem. Kamath et al. (NeurIPS 2021, arXiv 2002.11318 v5) "prove a
quantitative trade-off between spatial and adversarial robustness in a simple statistical
setting" (abstract); we could not read that section, so this module is *an illustration in
the spirit of the paper's setting*, with statements we prove here, not a transcription.

Setting. Inputs ``x ∈ R^d`` with ``d = k·m``: ``k`` blocks of ``m`` coordinates. The cyclic
group ``G = Z_k`` acts by shifting the blocks (``g^s x`` rolls ``x`` by ``s·m`` coordinates:
with ``k = 4`` a quarter turn of an image is modelled as a cyclic shift of ``d/4``
coordinates). A label ``y = ±1`` is drawn uniformly and ``x = y·μ + σ·z``, ``z ~ N(0, I_d)``,
where the template ``μ`` is 1 on the first block and 0 elsewhere (one bright quadrant).

Classifiers. Train on data where each point is turned by a uniformly random ``g ∈ G`` with
probability ``p`` (augmentation strength). The population class-mean difference of that
data, the direction a nearest-centroid rule learns, is

    w_p = (1 − p)·μ + p·P_G μ,        P_G = (1/k) Σ_g g   (the group average),

i.e. weight ``α = 1 − p + p/k`` on the template's block and ``β = p/k`` on every other block;
``f_p(x) = sign(w_p · x)``. ``p = 0`` is the template matcher; ``p = 1`` is exactly
G-invariant (``f(gx) = f(x)`` for every ``x`` and ``g``).

Closed forms (Φ the standard normal CDF, ``a = √m/σ``, ``r = β/α ∈ [0, 1]``,
``q = √(1 + (k−1)r²)``; all follow from ``w·x ~ N(y·w·μ, σ²‖w‖₂²)``):

* clean accuracy          Φ(a/q)
* spatial accuracy        (1/k)·[Φ(a/q) + (k−1)·Φ(a·r/q)]   (a uniformly random ``g`` per point)
* ℓ∞ robust accuracy at ε Φ(a·(1 − ε(1 + (k−1)r))/q)        (worst case ``−ε·y·sign(w)``)
* ℓ2 robust accuracy at ε Φ(a/q − ε/σ)                      (worst case ``−ε·y·w/‖w‖₂``)
* distance from the class mean ``μ`` to the boundary: ``1/(1 + (k−1)r)`` in ℓ∞,
  ``√m/q`` in ℓ2 (pixel units: the template's amplitude is 1).

Statements (ours). As ``p`` goes from 0 to 1, ``r`` rises from 0 to 1 and (i) spatial
accuracy rises (its derivative in ``r`` is ``(k−1)·a/q³·[φ(ar/q) − r·φ(a/q)] ≥ 0``), while
(ii) ℓ∞ robust accuracy at any fixed ``0 < ε ≤ 1`` falls (derivative ``∝ −(ε + (1−ε)r) < 0``)
and the ℓ∞ margin of the class mean falls from 1 to ``1/k``. (iii) No exactly G-invariant
linear classifier does better: such a ``w`` repeats one block ``v`` ``k`` times, so its ℓ∞
margin at ``μ`` is ``Σv / (k·‖v‖₁) ≤ 1/k`` (:func:`mean_margin` computes it for any ``w``).
The ℓ2 margin shrinks only by ``√k``: invariance hurts ℓ∞ robustness most.

What :func:`tradeoff_curve` computes: the closed forms above and, from one seeded Monte-Carlo
sample, the same accuracies measured by actually turning and perturbing the points. What it
does not show: anything about CNNs, training dynamics, or the paper's own theorem.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import InvrobError, check_choice, check_eps, check_positive_int

NORMS = ("linf", "l2")

_erfc = np.vectorize(math.erfc, otypes=[float])


def _phi(z) -> np.ndarray:
    """The standard normal CDF, accurate in the tails (numpy has no erf)."""
    return 0.5 * _erfc(-np.asarray(z, dtype=float) / math.sqrt(2.0))


def _check_setting(block: int, order: int, noise: float) -> None:
    check_positive_int(block, "block")
    check_positive_int(order, "order")
    if order < 2:
        raise InvrobError(f"order (the size of the cyclic group) must be at least 2, got {order!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 < noise < math.inf:
        raise InvrobError(f"noise must be a finite number > 0 (the noise's standard deviation), got {noise!r}")


def _check_prob(p) -> float:
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise InvrobError(f"augment_prob must be a probability in [0, 1], got {p!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvrobError(f"augment_prob must be a probability in [0, 1], got {p!r}")
    return value


def template(block: int = 16, order: int = 4) -> np.ndarray:
    """The class template μ: ones on the first of ``order`` blocks of ``block`` coordinates."""
    _check_setting(block, order, 1.0)
    mu = np.zeros(block * order)
    mu[:block] = 1.0
    return mu


def rotate(x: np.ndarray, steps, block: int = 16) -> np.ndarray:
    """Apply ``g^steps`` of the cyclic group: roll the last axis by ``steps·block``.

    ``steps`` is one integer, or one per row of ``x`` (shape ``(n,)``).
    """
    x = np.asarray(x, dtype=float)
    steps = np.asarray(steps)
    if steps.ndim == 0:
        return np.roll(x, int(steps) * block, axis=-1)
    idx = (np.arange(x.shape[-1])[None, :] - steps[:, None] * block) % x.shape[-1]
    return np.take_along_axis(x, idx, axis=-1)


def centroid_direction(augment_prob: float, block: int = 16, order: int = 4) -> np.ndarray:
    """``w_p = (1 − p)·μ + p·P_G μ``: the class-mean difference after augmenting with prob. ``p``."""
    p = _check_prob(augment_prob)
    mu = template(block, order)
    return (1.0 - p) * mu + p * mu.mean() * np.ones_like(mu)  # P_G μ = mean(μ)·1 for this μ


def mean_margin(w: np.ndarray, norm: str = "linf", block: int = 16, order: int = 4) -> float:
    """Distance (in ``norm``, pixel units) from the class mean μ to the boundary ``w·x = 0``.

    The smallest perturbation that moves μ onto the boundary has norm ``w·μ / ‖w‖_*`` with
    ``‖·‖_*`` the dual norm (ℓ1 for ℓ∞, ℓ2 for ℓ2); negative when μ is misclassified.
    """
    check_choice(norm, NORMS, "norm")
    mu = template(block, order)
    w = np.asarray(w, dtype=float)
    if w.shape != mu.shape or not np.all(np.isfinite(w)) or not np.any(w):
        raise InvrobError(f"w must be a finite, nonzero vector of length {mu.size}, got shape {w.shape}")
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)
    return float(w @ mu / dual)


def exact_metrics(augment_prob: float, eps: float = 0.0, norm: str = "linf", block: int = 16,
                  order: int = 4, noise: float = 1.0) -> dict[str, float]:
    """The closed forms of the module docstring for ``f_p``: accuracies (fractions) and margin."""
    check_choice(norm, NORMS, "norm")
    eps = check_eps(eps)
    _check_setting(block, order, noise)
    p = _check_prob(augment_prob)
    alpha, beta = 1.0 - p + p / order, p / order
    r, a = beta / alpha, math.sqrt(block) / noise
    q = math.sqrt(1.0 + (order - 1) * r * r)
    if norm == "linf":
        robust = _phi(a * (1.0 - eps * (1.0 + (order - 1) * r)) / q)
        margin = 1.0 / (1.0 + (order - 1) * r)
    else:
        robust = _phi(a / q - eps / noise)
        margin = math.sqrt(block) / q
    return {"clean_acc": float(_phi(a / q)),
            "spatial_acc": float((_phi(a / q) + (order - 1) * _phi(a * r / q)) / order),
            "robust_acc": float(robust), "mean_margin": float(margin)}


def _sample(n: int, block: int, order: int, noise: float, seed: int):
    """``n`` labelled points of the setting and one uniformly random turn per point, from ``seed``."""
    check_positive_int(n, "n")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvrobError(f"seed must be an integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    x = y[:, None] * template(block, order)[None, :] + noise * rng.standard_normal((n, block * order))
    steps = rng.integers(0, order, size=n)
    return x, y, steps


def simulated_metrics(augment_prob: float, eps: float = 0.0, norm: str = "linf", block: int = 16,
                      order: int = 4, noise: float = 1.0, n: int = 20000,
                      seed: int = 0) -> dict[str, float]:
    """Monte-Carlo estimates of the same accuracies from ``n`` points drawn with ``seed``.

    Spatial accuracy turns each point by its own uniformly random ``g``; robust accuracy
    applies the worst-case perturbation of a linear classifier (``−ε·y·sign(w)`` in ℓ∞,
    ``−ε·y·w/‖w‖₂`` in ℓ2) to the unturned points.
    """
    check_choice(norm, NORMS, "norm")
    eps = check_eps(eps)
    _check_setting(block, order, noise)
    x, y, steps = _sample(n, block, order, noise, seed)
    return _measure(centroid_direction(augment_prob, block, order), x, y, steps, eps, norm, block)


def _measure(w, x, y, steps, eps, norm, block) -> dict[str, float]:
    delta = np.sign(w) if norm == "linf" else w / np.linalg.norm(w)
    return {"clean_acc_mc": float(np.mean(np.sign(x @ w) == y)),
            "spatial_acc_mc": float(np.mean(np.sign(rotate(x, steps, block) @ w) == y)),
            "robust_acc_mc": float(np.mean(np.sign((x - eps * y[:, None] * delta) @ w) == y))}


def tradeoff_curve(augment_probs=(0.0, 0.25, 0.5, 0.75, 1.0), eps=(0.0, 0.1, 0.2, 0.3),
                   norm: str = "linf", block: int = 16, order: int = 4, noise: float = 1.0,
                   n: int = 20000, seed: int = 0) -> pd.DataFrame:
    """One row per (augmentation probability, ε): exact and simulated accuracies of ``f_p``.

    Columns: ``augment_prob`` (probability a training point was turned, in [0, 1]), ``norm``,
    ``eps`` (perturbation budget, pixel units: the template's amplitude is 1), ``clean_acc``,
    ``spatial_acc``, ``robust_acc`` (closed forms, fractions in [0, 1]), ``mean_margin``
    (ℓ-``norm`` distance from the class mean to the boundary, pixel units), the Monte-Carlo
    ``clean_acc_mc``, ``spatial_acc_mc``, ``robust_acc_mc`` (fractions of ``n_points`` points,
    the same sample for every row), ``n_points`` and ``seed``.
    """
    check_choice(norm, NORMS, "norm")
    _check_setting(block, order, noise)
    probs = [_check_prob(p) for p in np.atleast_1d(augment_probs)]
    budgets = [check_eps(e) for e in np.atleast_1d(eps)]
    if not probs or not budgets:
        raise InvrobError("augment_probs and eps must each hold at least one value")
    x, y, steps = _sample(n, block, order, noise, seed)
    rows = []
    for p in probs:
        w = centroid_direction(p, block, order)
        for e in budgets:
            rows.append({"augment_prob": p, "norm": norm, "eps": e,
                         **exact_metrics(p, e, norm, block, order, noise),
                         **_measure(w, x, y, steps, e, norm, block),
                         "n_points": n, "seed": int(seed)})
    return pd.DataFrame(rows)
