"""Pareto fronts of 2-D points (e.g. spatial vs adversarial robust accuracy, one point per model).

Definitions, for points ``p = (p₁, p₂)`` and a direction per coordinate
(``maximize[i]``: larger is better, else smaller is better):

- ``a`` **dominates** ``b`` when ``a`` is at least as good as ``b`` in both
  coordinates and strictly better in at least one;
- the **Pareto front** is the set of points that no point dominates.

Ties and duplicates, explicitly:

- two points equal in one coordinate: the one worse in the other is
  dominated (``(1, 2)`` dominates ``(1, 1)`` when maximising both);
- exact duplicates do not dominate each other (neither is strictly better), so
  **every copy** of a front point is on the front (the mask marks them all;
  :func:`front_line` draws the point once);
- points on a line that trades one coordinate for the other
  (``(0, 2), (1, 1), (2, 0)``) are all on the front; points on a line along
  which both improve (``(0, 0), (1, 1), (2, 2)``) are not, except the best;
- a single point is its own front.

A **mixture** of two models (each input sent to one of them at random, with
probabilities λ and 1 − λ) scores ``λ·a + (1 − λ)·b`` in both coordinates, so
mixtures of fixed points reach every point of the segments between them:
:func:`mixture_dominates` asks whether some point of the convex hull dominates,
:func:`mixture_pair` names the two points whose segment does, and :func:`hull_line` draws
the hull's front.

Coordinates must be finite (a NaN would compare false with everything and
silently join the front): NaN or ±inf raise :class:`~invrob.errors.InvrobError`.
"""
from __future__ import annotations

import numpy as np

from .errors import InvrobError

__all__ = ["dominates", "mixture_dominates", "mixture_pair", "pareto_front", "pareto_indices", "front_line",
           "hull_line"]


def _directions(maximize) -> np.ndarray:
    """+1 where larger is better, −1 where smaller is: ``maximize`` as a sign per coordinate."""
    try:
        flags = tuple(maximize)
    except TypeError:
        flags = ()
    if len(flags) != 2 or not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise InvrobError(f"maximize must be a pair of booleans (one per coordinate), got {maximize!r}")
    return np.where(np.array(flags, dtype=bool), 1.0, -1.0)


def _points(points) -> np.ndarray:
    """``points`` as a float (N, 2) array of finite values (N may be 0)."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvrobError(f"points must be an (N, 2) array of numbers, got {points!r}") from None
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise InvrobError(f"points must have shape (N, 2) (one (x, y) per row), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvrobError("points must be finite numbers (a NaN would silently join the front)")
    return array


def dominates(a, b, maximize=(True, True)) -> bool:
    """Does point ``a`` dominate point ``b``? (At least as good in both coordinates,
    strictly better in one; equal points do not dominate each other.)"""
    sign = _directions(maximize)
    pair = _points([a, b]) * sign
    return bool((pair[0] >= pair[1]).all() and (pair[0] > pair[1]).any())


def mixture_dominates(points, b, maximize=(True, True)) -> bool:
    """Does some mixture ``λ·p_i + (1 − λ)·p_j`` of two of ``points`` (λ in [0, 1], ``i = j``
    allowed) dominate ``b``? In 2-D two points suffice: the dominated region of the convex
    hull is bounded by segments between two hull vertices.

    Per pair, each coordinate's ``m(λ) ≥ b`` is an interval of λ; where the two
    intervals meet, ``m(λ) − b`` is linear in λ, so a strictly better coordinate
    exists somewhere in the overlap iff it exists at one of its ends.
    """
    sign = _directions(maximize)
    p = _points(points) * sign
    target = _points([b])[0] * sign
    for i in range(len(p)):
        for j in range(i, len(p)):
            a, c = p[i], p[j]
            lo, hi = 0.0, 1.0
            for k in range(2):  # m_k(λ) = c_k + λ (a_k − c_k) ≥ target_k
                slope, need = a[k] - c[k], target[k] - c[k]
                if slope > 0:
                    lo = max(lo, need / slope)
                elif slope < 0:
                    hi = min(hi, need / slope)
                elif need > 0:
                    lo, hi = 1.0, 0.0
            if lo <= hi and any((c + lam * (a - c) > target).any() for lam in (lo, hi)):
                return True
    return False


def pareto_front(points, maximize=(True, True)) -> np.ndarray:
    """Boolean mask (N,): is ``points[i]`` on the Pareto front (dominated by no point)?

    O(N²) comparisons (vectorised): fine for the hundreds of models a study
    trains. Duplicates of a front point are all marked (module docstring).
    """
    p = _points(points) * _directions(maximize)        # in "larger is better" units
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    # dominated[i, j]: does j dominate i?
    at_least = (p[None, :, :] >= p[:, None, :]).all(2)
    strictly = (p[None, :, :] > p[:, None, :]).any(2)
    return ~(at_least & strictly).any(1)


def pareto_indices(points, maximize=(True, True)) -> np.ndarray:
    """Indices of the front's points, ordered along the front: by the first
    coordinate from worst to best (so the second goes from best to worst), ties
    in index order; duplicates all listed."""
    p = _points(points) * _directions(maximize)
    idx = np.flatnonzero(pareto_front(points, maximize))
    return idx[np.lexsort((idx, -p[idx, 1], p[idx, 0]))]


def front_line(points, maximize=(True, True)) -> tuple[np.ndarray, np.ndarray]:
    """The staircase that bounds the region the points dominate: ``(xs, ys)`` to ``plot``.

    With both coordinates maximised and the front ``(x₁, y₁), …, (x_k, y_k)``
    sorted by ``x`` (so ``y`` decreases), the vertices are
    ``(x₁, y₁), (x₁, y₂), (x₂, y₂), (x₂, y₃), …, (x_k, y_k)``: any point on or
    below-left of the line is dominated by (or equal to) a front point. Other
    directions are the same construction mirrored. Duplicates appear once; a
    single point is a one-vertex line; no points give empty arrays.
    """
    sign = _directions(maximize)
    p = _points(points)
    front = np.unique(p[pareto_front(p, maximize)] * sign, axis=0)  # sorted by x, then y
    if len(front) == 0:
        return np.zeros(0), np.zeros(0)
    # In "larger is better" units the front, sorted by x ascending, has y strictly descending.
    front = front[np.argsort(front[:, 0], kind="stable")]
    xs, ys = [front[0, 0]], [front[0, 1]]
    for x, y in front[1:]:
        xs += [xs[-1], x]
        ys += [y, y]
    return np.array(xs) * sign[0], np.array(ys) * sign[1]


def _turn(a, b, c) -> float:
    """The z-component of (b − a) × (c − a): > 0 for a left turn a → b → c, < 0 for a right turn."""
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _hull_indices(points, maximize=(True, True)) -> np.ndarray:
    """Indices into ``points`` of the vertices of :func:`hull_line`, by the first coordinate
    (one index per distinct point: the first of duplicates)."""
    p = _points(points) * _directions(maximize)
    idx = np.flatnonzero(pareto_front(points, maximize))
    _, first = np.unique(p[idx], axis=0, return_index=True)
    idx = idx[np.sort(first)]
    idx = idx[np.lexsort((-p[idx, 1], p[idx, 0]))]   # x ascending, so y descending on the front
    chain: list[int] = []
    for i in idx:  # Andrew's monotone chain, the upper side: drop points that are not a right turn
        while len(chain) >= 2 and _turn(p[chain[-2]], p[chain[-1]], p[i]) >= 0:
            chain.pop()
        chain.append(int(i))
    return np.array(chain, dtype=int)


def hull_line(points, maximize=(True, True)) -> tuple[np.ndarray, np.ndarray]:
    """The front of the mixtures of the points: ``(xs, ys)`` along the convex hull's outer chain.

    The front points (:func:`pareto_front`) that lie on the upper-right convex hull, sorted by
    the first coordinate; a point strictly below-left of a segment between two of them is
    beaten by a mixture of the two (:func:`mixture_dominates`). Fewer than two distinct front
    points: just those points.
    """
    p = _points(points)
    hull = p[_hull_indices(p, maximize)]
    return hull[:, 0], hull[:, 1]


def mixture_pair(points, b, maximize=(True, True)) -> tuple[int, int] | None:
    """Which two of ``points`` mix to dominate ``b``: indices ``(i, j)`` of two consecutive
    vertices of :func:`hull_line` (the segment a figure draws), ``(i, i)`` when vertex ``i``
    alone dominates ``b``, ``None`` when no mixture does.

    Complete, so ``mixture_pair(...) is not None`` exactly when :func:`mixture_dominates`:
    a mixture that dominates ``b`` is itself matched or beaten in both coordinates by a
    point of the hull's outer chain, which lies on one of its segments.
    """
    p = _points(points)
    chain = _hull_indices(p, maximize)
    for i in chain:
        if dominates(p[i], b, maximize):
            return int(i), int(i)
    for i, j in zip(chain[:-1], chain[1:]):
        if mixture_dominates(p[[i, j]], b, maximize):
            return int(i), int(j)
    return None
