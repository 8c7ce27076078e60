"""Rules for claims about a whole grid: a *progressive* trend, *no change at every* level, and power.

"Robustness drops *progressively* as ε grows" is a claim about every step of the
ε grid, not about its two ends: an endpoint change or a least-squares slope accepts a
V-shaped or flat-then-cliff curve (per-ε means 50.5 / 52.4 / 51.0 / 42.7 have a negative
endpoint change and slope). "The gap is unchanged *for every* φ" is a claim about each
φ: an average over φ lets opposite signs cancel. Data: a long table with one value per
(seed, level) (or several, e.g. one per φ, averaged per (seed, level)); seed s is the
same training run/split at every level, so comparisons are **paired** by seed.

Here: :func:`jonckheere_terpstra` (a monotone trend over ordered levels, paired by seed),
:func:`adjacent_steps` (every step moves, intersection–union), :func:`progressive` (the rule
combining them with the endpoint change), :func:`every_equivalent` (TOST at every φ,
intersection–union), normal-approximation power (:func:`minimal_detectable_effect`,
:func:`needed_replicates`, :func:`equivalence_needed`) and :func:`margin_sensitivity`.

Intervals follow :mod:`invrob.stats`: the (1 − 2α) percentile interval of a paired
bootstrap over seeds, widened by :func:`~invrob.stats.few_seeds` (``widen=True``: with
5 seeds a plain bootstrap rejects a true null ~12% of the time at a nominal 5%). NumPy and
pandas only (normal quantiles from :class:`statistics.NormalDist`: SciPy is a test dependency).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np
import pandas as pd

from .errors import InvrobError, check_choice, check_positive_int
from .stats import (_ALIASES, BootstrapResult, TestResult, _as_array, _check_alpha, equivalence_test,
                    few_seeds, one_sided as _one_sided, paired_bootstrap, slope as _slope)

__all__ = ["TrendResult", "StepsResult", "ProgressiveResult", "EveryResult", "jonckheere_terpstra",
           "adjacent_steps", "progressive", "every_equivalent", "minimal_detectable_effect",
           "needed_replicates", "equivalence_needed", "margin_sensitivity"]

DIRECTIONS = ("decrease", "increase")
_OPPOSITE = {"decrease": "increase", "increase": "decrease"}
_MAX_STRATUM = 2000   # values per stratum the O(n²) pair matrix of the JT permutation allows


@dataclass(frozen=True)
class TrendResult:
    """A Jonckheere–Terpstra test: ``statistic`` J (pairs ordered in ``direction``, ties ½),
    its null mean ``expected``, the standardised ``z`` (NaN when the null variance is 0), the
    one-sided permutation ``p_value``, ``declared = p_value < alpha``; ``paired``: within seeds."""
    statistic: float
    expected: float
    z: float
    p_value: float
    declared: bool
    direction: str
    alpha: float
    n_perm: int
    paired: bool


@dataclass(frozen=True)
class StepsResult:
    """Adjacent steps: ``table`` has one row per step (from, to, difference, lo, hi, se,
    p_value, declared, reversed); ``declared``: every step moves in ``direction``."""
    table: pd.DataFrame
    declared: bool
    direction: str
    alpha: float


@dataclass(frozen=True)
class ProgressiveResult:
    """The "progressively" rule (:func:`progressive`); ``reason`` says what failed ("" if declared)."""
    declared: bool
    reason: str
    endpoint: TestResult
    slope: TestResult
    trend: TrendResult
    steps: StepsResult


@dataclass(frozen=True)
class EveryResult:
    """Equivalence at every value of ``by``: ``table`` (by, estimate, lo, hi, se, p_value,
    equivalent), ``declared`` iff every row is equivalent; ``average``: TOST of the mean over ``by``
    (reported, never used for the decision)."""
    table: pd.DataFrame
    declared: bool
    average: TestResult
    margin: float
    alpha: float


# --------------------------------------------------------------------------- helpers

def _direction(direction) -> str:
    return check_choice(_ALIASES.get(direction, direction), DIRECTIONS, "direction")


def _margin(margin) -> float:
    try:
        m = float(margin)
    except (TypeError, ValueError):
        raise InvrobError(f"margin must be a number > 0, got {margin!r}") from None
    if not np.isfinite(m) or m <= 0:
        raise InvrobError(f"margin must be a number > 0, got {margin!r}")
    return m


def _long(levels, values, groups, need_groups: bool):
    y = _as_array(values, "values").reshape(-1)
    x = _as_array(levels, "levels").reshape(-1)
    if x.shape != y.shape:
        raise InvrobError(f"levels and values must have one entry each, got {x.size} and {y.size}")
    if groups is None:
        if need_groups:
            raise InvrobError("groups (one seed id per value) are needed: steps are paired by seed")
        g = np.zeros(y.size, dtype=int)
    else:
        g = np.asarray(groups).reshape(-1)
        if g.shape != y.shape or pd.isna(g).any():
            raise InvrobError(f"groups must hold one seed id per value ({y.size}), without NaN")
    if np.unique(x).size < 2:
        raise InvrobError("a trend needs at least two distinct levels")
    return x, y, g


def _seed_matrix(levels, values, groups):
    """``(grid, M)``: the mean value per seed (rows) and level (columns), complete seeds only."""
    x, y, g = _long(levels, values, groups, True)
    table = pd.DataFrame({"g": g, "x": x, "y": y}).groupby(["g", "x"])["y"].mean().unstack("x").dropna()
    if table.shape[0] < 2:
        raise InvrobError(f"need at least two seeds measured at every level, got {table.shape[0]}")
    return table.columns.to_numpy(float), table.to_numpy(float)


def _change(a, b, n_boot, seed, alpha, widen) -> BootstrapResult:
    res = paired_bootstrap(a, b, n_boot=n_boot, seed=seed, alpha=alpha)
    return few_seeds(res) if widen else res


# --------------------------------------------------------------------------- Jonckheere–Terpstra

def jonckheere_terpstra(levels, values, groups=None, direction: str = "decrease", n_perm: int = 2000,
                        seed: int = 0, alpha: float = 0.05) -> TrendResult:
    """Jonckheere–Terpstra test of a monotone trend of ``values`` over ordered ``levels``.

    ``J = Σ_s Σ_{a,b in s: l_a < l_b} [1(y_b ≺ y_a) + ½·1(y_b = y_a)]`` for ``"decrease"``
    (``≻`` for ``"increase"``): the number of pairs, from a lower to a higher level, that
    move in ``direction``. Without ``groups`` there is one stratum (the classic JT); with
    ``groups`` (seed ids) only pairs within a seed count (the stratified JT, Page-test-like),
    so seed-to-seed offsets cancel. H0: the level labels are exchangeable within each
    stratum; the null is drawn by permuting the labels within each stratum, and
    ``p = (1 + #{J* ≥ J}) / (1 + n_perm)`` (one-sided). ``z = (J − E)/√V`` with, per stratum
    of n values and n_i at level i, ``E = (n² − Σn_i²)/4`` and
    ``V = (n²(2n+3) − Σn_i²(2n_i+3))/72`` (no tie correction: with ties ``|z|`` is conservative).
    """
    direction = _direction(direction)
    alpha = _check_alpha(alpha)
    check_positive_int(n_perm, "n_perm")
    x, y, g = _long(levels, values, groups, False)
    codes = np.unique(x, return_inverse=True)[1].reshape(-1)
    y = -y if direction == "decrease" else y
    rng = np.random.default_rng(seed)
    stat = expected = var = 0.0
    null = np.zeros(n_perm)
    for s in pd.unique(g):
        idx = np.flatnonzero(g == s)
        n, lev, ys = idx.size, codes[idx], y[idx]
        if n > _MAX_STRATUM:
            raise InvrobError(f"{n} values in one stratum: average per (seed, level) first")
        c = (ys[None, :] > ys[:, None]) + 0.5 * (ys[None, :] == ys[:, None])   # b beyond a
        stat += float(((lev[:, None] < lev[None, :]) * c).sum())
        k = np.bincount(lev).astype(float)
        expected += (n * n - (k * k).sum()) / 4
        var += (n * n * (2 * n + 3) - (k * k * (2 * k + 3)).sum()) / 72
        chunk = max(1, 2_000_000 // (n * n))
        for start in range(0, n_perm, chunk):
            r = min(chunk, n_perm - start)
            perm = lev[np.argsort(rng.random((r, n)), axis=1)]
            null[start:start + r] += ((perm[:, :, None] < perm[:, None, :]) * c).sum((1, 2))
    p = float((1 + np.sum(null >= stat - 1e-9)) / (1 + n_perm))
    z = (stat - expected) / math.sqrt(var) if var > 0 else float("nan")
    return TrendResult(stat, expected, float(z), p, p < alpha, direction, alpha, n_perm, groups is not None)


# --------------------------------------------------------------------------- steps and the rule

def _steps(grid, m, direction, alpha, n_boot, seed, widen) -> StepsResult:
    rows = []
    for k in range(len(grid) - 1):
        res = _change(m[:, k], m[:, k + 1], n_boot, seed, alpha, widen)
        test = _one_sided(res.estimate, res, direction, alpha)
        back = _one_sided(res.estimate, res, _OPPOSITE[direction], alpha)
        rows.append({"from": grid[k], "to": grid[k + 1], "difference": res.estimate,
                     "lo": test.interval[0], "hi": test.interval[1], "se": res.se,
                     "p_value": test.p_value, "declared": test.declared, "reversed": back.declared})
    table = pd.DataFrame(rows)
    return StepsResult(table, bool(table["declared"].all()), direction, alpha)


def adjacent_steps(levels, values, groups, direction: str = "decrease", alpha: float = 0.05,
                   n_boot: int = 2000, seed: int = 0, widen: bool = True) -> StepsResult:
    """Every adjacent step ``l_k → l_{k+1}`` tested for a move in ``direction``, paired by seed.

    Values are averaged per (seed, level); seeds missing a level are dropped. Step k's
    change ``Δ_k = mean_s(y_{s,k+1} − y_{s,k})`` gets a bootstrap over seeds
    (:func:`~invrob.stats.paired_bootstrap`, widened by :func:`~invrob.stats.few_seeds`
    when ``widen``; the same ``seed`` for every step, so the steps share their resampled
    seeds) and the one-sided test :func:`~invrob.stats.one_sided` at level α: ``lo, hi``
    is the (1 − 2α) interval, ``declared`` its verdict, ``reversed`` the verdict of the
    test in the opposite direction. Overall ``declared`` iff every step is declared: an
    intersection–union test (H0 is the union "some step does not move"), whose level is
    at most α with each step at level α — no multiplicity correction is needed.
    """
    direction = _direction(direction)
    alpha = _check_alpha(alpha)
    check_positive_int(n_boot, "n_boot")
    grid, m = _seed_matrix(levels, values, groups)
    return _steps(grid, m, direction, alpha, n_boot, seed, widen)


def progressive(levels, values, groups, direction: str = "decrease", alpha: float = 0.05,
                n_boot: int = 2000, n_perm: int = 2000, seed: int = 0, widen: bool = True,
                every_step: bool = False) -> ProgressiveResult:
    """The "changes progressively over the grid" rule, all tests one-sided at level α.

    On the per-(seed, level) means (complete seeds), declared iff all of:

    1. the paired-by-seed Jonckheere–Terpstra test (:func:`jonckheere_terpstra` with
       ``groups``) finds a monotone trend in ``direction`` (p < α);
    2. the endpoint change ``mean_s(y_{s,K} − y_{s,1})`` is significant in ``direction``
       (:func:`~invrob.stats.one_sided` on its seed bootstrap);
    3. no adjacent step is significantly in the *opposite* direction (no ``reversed`` row of
       :func:`adjacent_steps`);
    4. only with ``every_step=True``: every adjacent step is significant in ``direction``.

    A V-shaped curve fails 3 (its rising step is significant). A flat-then-cliff curve
    passes 1–3 (flat steps are not *significantly* reversed): only ``every_step`` rejects
    it. Each flat step is falsely ``reversed`` with probability ≈ α or less (≈ 3.5% measured
    at α = 0.05, 5 seeds), so many flat steps make the rule conservative. The least-squares
    slope (:func:`~invrob.stats.slope`; its one-sided test in ``slope``) is reported but takes
    no part in the decision.
    """
    direction = _direction(direction)
    alpha = _check_alpha(alpha)
    check_positive_int(n_boot, "n_boot")
    grid, m = _seed_matrix(levels, values, groups)
    s, k = m.shape
    jt = jonckheere_terpstra(np.tile(grid, s), m.reshape(-1), np.repeat(np.arange(s), k), direction,
                             n_perm, seed, alpha)
    end = _change(m[:, 0], m[:, -1], n_boot, seed, alpha, widen)
    endpoint = _one_sided(end.estimate, end, direction, alpha)
    fit = _slope(grid, m, n_boot=n_boot, seed=seed, alpha=alpha)
    fit = few_seeds(fit) if widen else fit
    steps = _steps(grid, m, direction, alpha, n_boot, seed, widen)
    why = []
    if not jt.declared:
        why.append(f"no monotone {direction} (Jonckheere-Terpstra p = {jt.p_value:.3g})")
    if not endpoint.declared:
        why.append(f"endpoint change {endpoint.estimate:+.4g} is not a significant {direction}")
    for row in steps.table.to_dict("records"):
        if row["reversed"]:
            why.append(f"step {row['from']:g} -> {row['to']:g} goes significantly the other way")
        elif every_step and not row["declared"]:
            why.append(f"step {row['from']:g} -> {row['to']:g} is not a significant {direction}")
    fitted = _one_sided(fit.estimate, fit, direction, alpha)
    return ProgressiveResult(not why, "; ".join(why), endpoint, fitted, jt, steps)


# --------------------------------------------------------------------------- equivalence everywhere

def every_equivalent(frame: pd.DataFrame, by: str, margin: float, alpha: float = 0.05,
                     value: str = "difference", seed_col: str = "seed", n_boot: int = 2000,
                     seed: int = 0, widen: bool = True) -> EveryResult:
    """"Unchanged for every value of ``by``": TOST at each value, intersection–union.

    ``frame`` is a long table of paired differences: columns ``seed_col`` (seed id),
    ``by`` (e.g. φ) and ``value`` (the per-seed change ``b − a`` at that φ; several rows per
    (seed, φ) are averaged; seeds missing a φ are dropped). For each φ, the mean change over
    seeds gets a seed bootstrap (widened by :func:`~invrob.stats.few_seeds` when ``widen``)
    and :func:`~invrob.stats.equivalence_test`: equivalent iff the (1 − 2α) interval lies in
    ``(−margin, margin)``. ``declared`` iff every φ is equivalent — the intersection–union
    test has level α with each φ at level α, no correction needed. ``average`` is the TOST of
    the per-seed mean over φ, where opposite signs cancel: reported, never decisive.
    """
    alpha, m = _check_alpha(alpha), _margin(margin)
    check_positive_int(n_boot, "n_boot")
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise InvrobError("frame must be a non-empty pandas DataFrame of per-seed differences")
    missing = [c for c in (seed_col, by, value) if c not in frame.columns]
    if missing:
        raise InvrobError(f"frame lacks column(s) {', '.join(missing)}; "
                          f"it has {', '.join(map(str, frame.columns))}")
    _as_array(frame[value].to_numpy(), value)
    table = frame.groupby([seed_col, by])[value].mean().unstack(by).dropna()
    if table.shape[0] < 2:
        raise InvrobError(f"need at least two seeds measured at every {by}, got {table.shape[0]}")
    rows = []
    for level in table.columns:
        d = table[level].to_numpy(float)
        res = _change(np.zeros_like(d), d, n_boot, seed, alpha, widen)
        eq = equivalence_test(res.estimate, res, m, alpha)
        rows.append({by: level, "estimate": res.estimate, "lo": eq.interval[0], "hi": eq.interval[1],
                     "se": res.se, "p_value": eq.p_value, "equivalent": eq.declared})
    out = pd.DataFrame(rows)
    mean = table.mean(axis=1).to_numpy(float)
    avg = _change(np.zeros_like(mean), mean, n_boot, seed, alpha, widen)
    return EveryResult(out, bool(out["equivalent"].all()), equivalence_test(avg.estimate, avg, m, alpha),
                       m, alpha)


# --------------------------------------------------------------------------- power

def _z_sum(alpha, power, one_sided: bool) -> float:
    alpha = _check_alpha(alpha)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power < 1:
        raise InvrobError(f"power must be a number in (0, 1), got {power!r}")
    return NormalDist().inv_cdf(1 - alpha if one_sided else 1 - alpha / 2) + NormalDist().inv_cdf(power)


def _se(source) -> float:
    if isinstance(source, BootstrapResult):
        se = source.se
    elif np.ndim(source) == 0 and not isinstance(source, (str, bytes, bool)):
        se = float(_as_array(source, "se"))
    else:
        arr = _as_array(source, "samples").reshape(-1)
        if arr.size < 2:
            raise InvrobError("give a standard error, a BootstrapResult or >= 2 bootstrap replicates")
        se = float(np.std(arr, ddof=1))
    if not np.isfinite(se) or se <= 0:
        raise InvrobError(f"the standard error must be a number > 0, got {se!r}")
    return se


def minimal_detectable_effect(samples_or_se, alpha: float = 0.05, power: float = 0.8,
                              one_sided: bool = True) -> float:
    """``MDE = (z_{1−α} + z_{power}) · SE`` (``z_{1−α/2}`` when not ``one_sided``): the smallest
    true effect a level-α normal test detects with probability ``power``. SE: a float, the
    ``se`` of a :class:`~invrob.stats.BootstrapResult`, or the sd of an array of replicates."""
    return _z_sum(alpha, power, one_sided) * _se(samples_or_se)


def needed_replicates(effect: float, se, n: int, alpha: float = 0.05, power: float = 0.8,
                      one_sided: bool = True) -> int:
    """The n at which ``MDE(n) = |effect|``, assuming ``SE ∝ 1/√n``: ``⌈n·((z_a + z_b)·se/|effect|)²⌉``.

    ``se`` is the standard error measured with ``n`` units (a float, a BootstrapResult or
    replicates). The formula scales whichever unit n counts — seeds or test points — and is
    only as right as ``SE ∝ 1/√n`` for that unit (more points do not shrink the seed-to-seed
    part of the SE; more seeds shrink both).
    """
    e = float(_as_array(effect, "effect"))
    if e == 0:
        raise InvrobError("effect must be nonzero: no n detects an effect of 0")
    ratio = _z_sum(alpha, power, one_sided) * _se(se) / abs(e)
    return max(1, math.ceil(check_positive_int(n, "n") * ratio ** 2 * (1 - 1e-9)))


def equivalence_needed(estimate: float, se, margin: float, n: int, alpha: float = 0.05,
                       power: float = 0.8) -> int | None:
    """The n at which a true difference equal to ``estimate`` would be declared equivalent (TOST
    within ``±margin``) with probability about ``power``, assuming ``SE ∝ 1/√n``.

    Approximate: requires ``m − |est| ≥ (z_{1−α} + z_{power})·SE(n)``, i.e.
    ``n' = ⌈n·((z_{1−α} + z_{power})·se/(m − |est|))²⌉``, which ignores the far margin (near
    ``est = 0`` both one-sided tests can fail and the true n is somewhat larger). ``None`` when
    ``|est| ≥ m``: a true difference at or beyond the margin is never declared equivalent.
    """
    est, m = float(_as_array(estimate, "estimate")), _margin(margin)
    z, s, n = _z_sum(alpha, power, True), _se(se), check_positive_int(n, "n")
    if abs(est) >= m:
        return None
    return max(1, math.ceil(n * (z * s / (m - abs(est))) ** 2 * (1 - 1e-9)))


def margin_sensitivity(decide: Callable[[float], str], margin: float,
                       factors=(0.5, 1.0, 2.0)) -> pd.DataFrame:
    """``decide(f·margin)`` for each factor f: a DataFrame (factor, margin, verdict), one row per f —
    does the verdict hinge on the margin chosen?"""
    if not callable(decide):
        raise InvrobError(f"decide must be a callable margin -> verdict, got {type(decide).__name__}")
    m = _margin(margin)
    fs = _as_array(list(factors), "factors").reshape(-1)
    if (fs <= 0).any():
        raise InvrobError(f"factors must be numbers > 0, got {list(factors)!r}")
    return pd.DataFrame([{"factor": float(f), "margin": float(f) * m, "verdict": decide(float(f) * m)}
                         for f in fs])
