"""The statistical rule helpers every study's claims are judged with.

Paired changes between the ends of a grid (:func:`change_test`, seeds and test points
resampled by a two-level bootstrap, :func:`bootstrap_change`), slopes over the whole grid
(:func:`trend`), both together (:func:`change_over_grid`), "progressively" as a monotone
trend (:func:`progressive_check`), and how several verdicts combine (:func:`combine`).
Every test is one-sided at level :data:`ALPHA`; the rule texts the pages print
(:data:`STATS_RULE`, :data:`PROGRESSIVE_RULE`, :data:`COMBINE_RULE`) live beside the code
they describe.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import InvrobError
from .options import option, record_evidence

COMBINE_RULE = ("A claim about several models (or norms) agrees only if each of them agrees, "
                "disagrees if any of them disagrees, and is inconclusive otherwise.")


def combine(verdicts: Iterable[str]) -> str:
    """One verdict from several (one per model / norm): see :data:`COMBINE_RULE`."""
    verdicts = list(verdicts)
    if verdicts and all(v == "agree" for v in verdicts):
        return "agree"
    if "disagree" in verdicts:
        return "disagree"
    return "inconclusive"


def paired_change(frame, level: str, lo, hi, value: str) -> tuple[float, float, float, float, int]:
    """Mean over seeds of ``value`` at ``level == lo`` and ``== hi``; the change and its seed spread.

    Seeds are paired (seed s at ``hi`` minus seed s at ``lo``); the spread is the
    max − min of those per-seed changes (0 with one seed). Returns
    ``(at_lo, at_hi, change, spread, n_seeds)``; NaNs when a level is absent.
    """
    per_seed = frame.groupby([level, "seed"])[value].mean()
    levels = per_seed.index.get_level_values(0)
    if lo not in set(levels) or hi not in set(levels):
        nan = float("nan")
        return nan, nan, nan, nan, 0
    a, b = per_seed.xs(lo, level=0), per_seed.xs(hi, level=0)
    seeds = a.index.intersection(b.index)
    changes = b[seeds] - a[seeds]
    spread = float(changes.max() - changes.min()) if len(changes) > 1 else 0.0
    return float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), spread, len(seeds)


ALPHA = 0.05  # every test is one-sided at level 0.05: read off the 90% two-sided bootstrap interval
STATS_RULE = ("Intervals are 90% bootstrap intervals (each side a one-sided test at level 0.05), widened "
              "to the width of a t-interval over the seeds (invrob.stats.few_seeds: with 5 seeds a plain "
              "bootstrap rejects a true null ~12% of the time). Where a table has one row per test point, "
              "a replicate resamples the seeds and one set of test points shared by them (every seed is "
              "measured on the same points); where it has one number per seed, only seeds are resampled "
              "and the interval is conditional on the fixed test set. A slope is fitted to every seed's "
              "whole curve and bootstrapped over seeds. Claims of a change need both the paired change "
              "between the ends of the grid and the slope to show it; on a three-point grid the slope is "
              "nearly the endpoint change.")


def ends(frame, level: str) -> tuple[float, float]:
    """The smallest and the largest value of ``level`` (θ or ε) in ``frame``."""
    return float(frame[level].min()), float(frame[level].max())


def change_over_grid(rows, level: str, value: str, claim: str, per: float, unit: str, points=None,
                     fmt: str = ".1%", delta: str = "+.1%", per_text: str | None = None
                     ) -> tuple[str, str, float, float]:
    """The two tests of a claim of change along a grid (``level``: θ or ε), and their text.

    The paired change of ``value`` from the smallest to the largest ``level`` (seed
    means, or per test point from ``points`` — a per-point table with a ``robust``
    column — when given) and the slope over the whole grid, combined by :func:`both`.
    Returns ``(text, verdict, lo, hi)``; the text reads "a → b (Δ …); slope …".
    """
    lo, hi = ends(rows, level)
    a, b, *_ = paired_change(rows, level, lo, hi, value)
    pairs = paired_points(points, level, lo, hi) if points is not None else seed_arrays(rows, level, lo, hi, value)
    end_text, end_verdict = change_test(*pairs, claim, fmt=delta)
    slope_text, slope_verdict = trend(rows, level, value, claim, per=per, unit=unit, fmt=delta, per_text=per_text)
    text, verdict = f"{a:{fmt}} → {b:{fmt}} ({end_text}); {slope_text}", both(end_verdict, slope_verdict)
    if option("progressive", False):
        step_text, verdict = progressive_check(rows, level, value, claim, verdict, delta)
        text += f"; {step_text}"
    return text, verdict, lo, hi


PROGRESSIVE_RULE = ("“Progressively” is read as a monotone trend over the whole grid: besides the endpoint change "
                    "and the slope, a within-seed Jonckheere–Terpstra test (permutations of the levels within each "
                    "seed) must show the trend at level 0.05, and no adjacent step may move significantly the "
                    "other way (one-sided, level 0.05: a V-shaped or rising-then-falling curve is not "
                    "“progressive”) (invrob.trend.progressive); with only two grid points the rule is the "
                    "endpoint change.")


def progressive_check(rows, level: str, value: str, claim: str, verdict: str, delta: str = "+.1%"
                      ) -> tuple[str, str]:
    """:data:`PROGRESSIVE_RULE` on top of the endpoint-and-slope ``verdict``: ``(text, verdict)``.

    An *agree* stays only if the monotone-trend test shows the claimed direction and no
    adjacent step goes significantly the other way; a *disagree* (both tests show the
    opposite) stands."""
    from .. import trend as trends

    grid, matrix = seed_matrix(rows, level, value)
    if len(grid) < 3 or matrix.shape[0] < 2:
        return "two grid points or one seed: no trend test beyond the endpoints", verdict
    levels = [g for g in grid for _ in range(matrix.shape[0])]
    seeds = [s for _ in grid for s in range(matrix.shape[0])]
    values = matrix.T.reshape(-1)
    result = trends.progressive(levels, values, seeds, direction=claim, alpha=ALPHA)
    steps = result.steps.table
    shown = ", ".join(f"{r['from']:g}→{r['to']:g} {r['difference']:{delta}} [{r['lo']:{delta}}, {r['hi']:{delta}}]"
                      + (" (against)" if r["reversed"] else "") for _, r in steps.iterrows())
    p = result.trend.p_value
    text = (f"monotone trend (within-seed Jonckheere–Terpstra) {'p < 0.001' if p < 0.0005 else f'p = {p:.3f}'}; "
            f"adjacent steps {shown}")
    if verdict == "agree" and not result.declared:
        return text + f" — not progressive ({result.reason})", "inconclusive"
    return text, verdict


def both(first: str, second: str) -> str:
    """Two tests of one claim: agree if both agree, disagree if both disagree, else inconclusive."""
    return first if first == second else "inconclusive"


def autoattack_of(settings, seed: int = 0):
    """The attack every robust accuracy of a study is measured with: a factory ``model -> Attack``.

    AutoAttack's standard ensemble where ``settings.aa_attacks`` is ``None`` (the
    ``paper`` profile); else those components with APGD-T's ``aa_targets`` most likely
    target classes (``cpu``, ``smoke``), which ``tests/test_autoattack.py`` and
    ``tools/attack_agreement.py`` check against the standard ensemble. ``aa_steps``: APGD's
    iterations (``None``: the standard 100; the smoke profile's regression runs use fewer).
    """
    from ..experiments import autoattack

    return autoattack(settings.aa_attacks, settings.aa_targets, seed=seed, steps=settings.aa_steps)


def bootstrap_change(a, b):
    """The paired change ``mean(b) − mean(a)`` with the study's interval: a two-level bootstrap
    (seeds, and one set of points shared by the seeds for (S, N) arrays: every seed is measured on
    the same test points) widened for few seeds."""
    import numpy as np

    from .. import stats

    result = stats.few_seeds(stats.paired_bootstrap(a, b, seed=0, alpha=2 * ALPHA, crossed=True))
    a = np.asarray(a)
    record_evidence(result.estimate, np.std(result.samples, ddof=1), a.shape[0], a.shape[1] if a.ndim == 2 else 1)
    return result


def seed_matrix(frame, level: str, value: str):
    """``(grid, matrix)``: the mean of ``value`` per seed (rows) and ``level`` (columns).

    Only seeds measured at every level are kept, so the rows pair up.
    """
    import numpy as np

    table = frame.groupby(["seed", level])[value].mean().unstack(level).dropna()
    return [float(v) for v in table.columns], np.asarray(table.to_numpy(), dtype=float)


def trend(frame, level: str, value: str, claim: str, per: float = 1.0, unit: str = "",
          fmt: str = "+.1%", per_text: str | None = None) -> tuple[str, str]:
    """The least-squares slope of ``value`` over the whole ``level`` grid, bootstrapped over seeds.

    Returns ``(text, verdict)``: ``stats.verdict(claim, slope)`` (``claim``:
    "increase", "decrease"); the slope is shown per ``per`` units of ``level``
    with its 90% interval (``per_text``: how that step is written, default ``{per}{unit}``).
    Fewer than two seeds: inconclusive (no interval).
    """
    from .. import stats

    grid, matrix = seed_matrix(frame, level, value)
    if len(grid) < 2:
        return "fewer than two grid points: no slope", "inconclusive"
    if matrix.shape[0] < 2:
        return f"1 seed: no interval for the slope", "inconclusive"
    result = stats.few_seeds(stats.slope(grid, matrix, seed=0, alpha=2 * ALPHA))
    lo, hi = result.ci
    text = (f"slope {result.estimate * per:{fmt}} per {per_text or f'{per:g}{unit}'} [90% CI {lo * per:{fmt}}, "
            f"{hi * per:{fmt}}], {matrix.shape[0]} seeds")
    return text, stats.verdict(claim, result, alpha=ALPHA)


def seed_arrays(frame, level: str, lo, hi, value: str):
    """``(a, b)``: per-seed means of ``value`` at ``level == lo`` and ``== hi``, paired by seed."""
    import numpy as np

    means = frame[frame[level].isin([lo, hi])].groupby([level, "seed"])[value].mean().unstack(level).dropna()
    if lo not in means.columns or hi not in means.columns:
        return np.empty(0), np.empty(0)
    return np.asarray(means[lo], dtype=float), np.asarray(means[hi], dtype=float)


def paired_points(frame, level: str, lo, hi, value: str = "robust", point: str = "point"):
    """``(a, b)``: (seeds, points) arrays of ``value`` at ``level == lo`` and ``== hi``.

    Rows pair by seed and by ``point`` (several rows per seed and point, e.g. one per
    ε, are averaged); only seeds and points present at both ends are kept.
    """
    import numpy as np

    means = frame[frame[level].isin([lo, hi])].groupby([level, "seed", point])[value].mean()
    present = set(means.index.get_level_values(0))
    missing = [f"{v:g}" for v in (lo, hi) if v not in present]
    if missing:
        raise InvrobError(f"the per-point table has no rows at {level} = {', '.join(missing)}, which the "
                          f"summary table has: the two come from different runs")
    a, b = means.xs(lo, level=0).unstack(point), means.xs(hi, level=0).unstack(point)
    seeds = a.index.intersection(b.index)
    cols = a.columns.intersection(b.columns)
    a, b = a.loc[seeds, cols], b.loc[seeds, cols]
    keep = a.notna().all(axis=0) & b.notna().all(axis=0)
    return np.asarray(a.loc[:, keep], dtype=float), np.asarray(b.loc[:, keep], dtype=float)


def change_test(a, b, claim: str, margin: float | None = None, fmt: str = "+.1%") -> tuple[str, str]:
    """Paired change ``mean(b) − mean(a)`` with a two-level bootstrap (seeds, then points).

    ``a, b``: (seeds, points) or (seeds,) arrays from the two conditions. Returns
    ``(text, verdict)``: ``stats.verdict(claim, …, margin)``; one seed with per-point
    data resamples points only (the text says so); one seed without: inconclusive.
    """
    from .. import stats

    if a.size == 0:
        return "no paired data", "inconclusive"
    if a.ndim == 1 and len(a) < 2:
        return "1 seed: no interval", "inconclusive"
    result = bootstrap_change(a, b)
    lo, hi = result.ci
    seeds = a.shape[0]
    where = f"{seeds} seed{'s' if seeds != 1 else ''}" + (f" × {a.shape[1]} points" if a.ndim == 2 else "")
    note = " (points only: 1 seed)" if seeds == 1 else ""
    text = f"Δ {result.estimate:{fmt}} [90% CI {lo:{fmt}}, {hi:{fmt}}], {where}{note}"
    return text, stats.verdict(claim, result, margin=margin, alpha=ALPHA)


def ranges_left_out(top: float, reach: float) -> list[str]:
    """A claim text's part when a run's rotation ranges stop at ``top`` short of the paper's ``reach``
    (degrees; the cpu profile stops at 90°, where its recipes pass the rotation gate), else none."""
    return [f"rotation ranges beyond {top:g}° (the paper's reach {reach:g}°): not in this run"] if top < reach else []


def label(model: str) -> str:
    """The display name of a model (StdCNN, GCNN (p4), LeNet): :func:`invrob.plots.model_label`."""
    from ..plots import model_label

    return model_label(str(model))


def models_in(frame) -> list[str]:
    """Models in the order they first appear (the order the notebook trained them)."""
    return list(dict.fromkeys(frame["model"]))
