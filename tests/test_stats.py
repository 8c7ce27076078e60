"""invrob.stats on synthetic data whose answer is known: TOST, one-sided tests, slopes,
verdicts, and the coverage of the bootstrap intervals."""
import numpy as np
import pytest

from invrob.errors import InvrobError
from invrob.stats import (BootstrapResult, equivalence_test, one_sided, paired_bootstrap, slope,
                          verdict)


def paired(effect, seeds=5, points=200, seed_sd=0.02, noise=0.05, rng=0):
    """(seeds, points) measurements under A and B = A + effect (+ independent noise):
    a seed effect shared by both conditions, a point effect shared by both, and noise."""
    g = np.random.default_rng(rng)
    base = g.normal(0.5, seed_sd, (seeds, 1)) + g.normal(0, 0.1, (1, points))
    a = base + g.normal(0, noise, (seeds, points))
    b = base + effect + g.normal(0, noise, (seeds, points))
    return a, b


def test_paired_bootstrap_estimate_and_pairing():
    a, b = paired(-0.1)
    res = paired_bootstrap(a, b, n_boot=500)
    assert isinstance(res, BootstrapResult)
    assert res.estimate == pytest.approx(b.mean() - a.mean())
    assert res.ci[0] < res.estimate < res.ci[1] and res.ci[1] < -0.09 + 0.02
    assert res.n_groups == 5 and res.n_points == 200 and len(res.samples) == 500
    # Pairing removes the point-to-point variation shared by A and B: an unpaired
    # bootstrap of the same data would be much wider.
    g = np.random.default_rng(1)
    unpaired = [b[g.integers(0, 5, 5)][:, g.integers(0, 200, 200)].mean()
                - a[g.integers(0, 5, 5)][:, g.integers(0, 200, 200)].mean() for _ in range(300)]
    assert res.se < 0.5 * np.std(unpaired)
    # A custom statistic gives the same answer as the vectorised mean.
    custom = paired_bootstrap(a, b, statistic=np.mean, n_boot=300, seed=3)
    assert custom.estimate == pytest.approx(res.estimate)
    assert custom.se == pytest.approx(res.se, rel=0.25)
    # Reproducible from its seed.
    assert np.array_equal(paired_bootstrap(a, b, n_boot=500).samples, res.samples)


def test_two_level_bootstrap_sees_training_variance():
    """Seeds that disagree on the effect: the two-level interval widens with the seed spread,
    a points-only view of one seed cannot."""
    g = np.random.default_rng(0)
    a = g.normal(0, 0.05, (5, 300))
    per_seed_effect = np.array([-0.3, 0.0, 0.3, -0.2, 0.2])[:, None]
    b = a + per_seed_effect + g.normal(0, 0.05, (5, 300))
    two = paired_bootstrap(a, b, n_boot=1000)
    seeds_only = paired_bootstrap(a, b, n_boot=1000, points=False)
    assert two.ci[0] < 0 < two.ci[1]                        # the effect is not consistent
    assert two.se > 0.08 and seeds_only.se > 0.08          # ≈ sd(per-seed effects)/√5 ≈ 0.1
    one_seed = paired_bootstrap(a[:1], b[:1], n_boot=1000)  # a single seed: points only
    assert one_seed.se < 0.01


def test_true_zero_effect_is_declared_unchanged():
    a, b = paired(0.0, noise=0.02)
    res = paired_bootstrap(a, b)
    eq = equivalence_test(res.estimate, res, margin=0.02)
    assert eq.declared and -0.02 < eq.interval[0] < 0 < eq.interval[1] < 0.02
    assert eq.p_value < 0.05
    assert verdict("unchanged", res, margin=0.02) == "agree"
    assert not one_sided(res.estimate, res, "decrease").declared


def test_large_negative_effect_is_declared_a_decrease():
    a, b = paired(-0.15)
    res = paired_bootstrap(a, b)
    dec = one_sided(res.estimate, res, "decrease")
    assert dec.declared and dec.interval[1] < 0 and dec.p_value < 0.05
    assert verdict("drops", res) == "agree"
    assert verdict("increase", res) == "disagree"
    assert verdict("unchanged", res, margin=0.05) == "disagree"    # well outside the margin
    assert not equivalence_test(res.estimate, res, margin=0.05).declared


def test_tiny_noisy_sample_is_inconclusive():
    g = np.random.default_rng(4)
    a = g.normal(0, 1.0, 3)
    b = a - 0.1 + g.normal(0, 1.0, 3)      # 3 seeds, noise ten times the effect
    res = paired_bootstrap(a, b)
    assert res.n_points == 0 and res.n_groups == 3
    assert verdict("unchanged", res, margin=0.1) == "inconclusive"
    assert verdict("drops", res) == "inconclusive"
    assert verdict("increase", res) == "inconclusive"


def test_intervals_given_directly():
    # (L, U) is read as the (1 − 2α) interval.
    assert equivalence_test(0.0, (-0.01, 0.02), margin=0.03).declared
    assert not equivalence_test(0.0, (-0.04, 0.02), margin=0.03).declared
    assert one_sided(-0.1, (-0.2, -0.01), "decrease").declared
    assert not one_sided(-0.1, (-0.2, 0.01), "decrease").declared
    assert one_sided(0.1, (0.01, 0.2), "increase").declared
    assert one_sided(-0.1, (-0.2, -0.06), "decrease", margin=0.05).declared
    assert not one_sided(-0.1, (-0.2, -0.04), "decrease", margin=0.05).declared
    # verdict edge cases: interval straddling a margin, small drop with a relevance margin.
    assert verdict("unchanged", (0.01, 0.08), margin=0.05) == "inconclusive"
    assert verdict("unchanged", (0.06, 0.08), margin=0.05) == "disagree"
    assert verdict("drops", (-0.01, 0.01), margin=0.02) == "disagree"   # any drop < 0.02
    assert verdict("drops", (-0.01, 0.01)) == "inconclusive"
    # TOST at α = 0.05 reads the 90% interval of the replicates, not the 95% one.
    samples = np.random.default_rng(0).normal(0, 1, 20000)
    eq = equivalence_test(None, samples, margin=1.7)
    assert eq.interval == pytest.approx((-1.645, 1.645), abs=0.05) and eq.declared
    assert not equivalence_test(None, samples, margin=1.6).declared


def _coverage(draw, truth, reps=200, **kw):
    hits = 0
    for r in range(reps):
        a, b = draw(r)
        lo, hi = paired_bootstrap(a, b, n_boot=1000, seed=r, **kw).ci
        hits += lo <= truth <= hi
    return hits / reps


def test_coverage_on_normal_data():
    """95% percentile intervals cover the true difference ≈ 95% of the time
    (200 repetitions: binomial sd ≈ 1.5 points; percentile intervals run a little
    narrow at n = 30)."""
    def draw(r):
        g = np.random.default_rng(1000 + r)
        a = g.normal(0, 1, 30)
        return a, a + 0.3 + g.normal(0, 0.5, 30)
    cov = _coverage(draw, 0.3)
    assert 0.89 <= cov <= 0.99, cov


def test_coverage_two_level():
    """Hierarchical data (seed effect + point noise): the two-level interval covers the
    true mean difference at least at its nominal rate, give or take sampling (it is
    slightly conservative); pooling all points ignores the seed level and under-covers."""
    def draw(r):
        g = np.random.default_rng(5000 + r)
        a = g.normal(0, 1, (10, 50))
        seed_effect = g.normal(0, 0.1, (10, 1))
        return a, a - 0.2 + seed_effect + g.normal(0, 0.3, (10, 50))
    cov = _coverage(draw, -0.2)
    assert 0.90 <= cov <= 1.0, cov
    pooled = _coverage(lambda r: tuple(v.reshape(-1) for v in draw(r)), -0.2, reps=100)
    assert pooled < 0.8, pooled             # ≈ 55%: the seed-level variance is invisible


def test_slope_over_the_grid():
    """A known linear trend across a θ grid, 5 seeds with their own offsets."""
    g = np.random.default_rng(0)
    thetas = np.array([0, 15, 30, 45, 60, 90, 120, 180], dtype=float)
    curves = 0.6 - 0.001 * thetas + g.normal(0, 0.03, (5, 1)) + g.normal(0, 0.01, (5, len(thetas)))
    res = slope(thetas, curves)
    assert res.estimate == pytest.approx(-0.001, abs=2e-4)
    assert res.ci[0] < -0.001 < res.ci[1] and res.ci[1] < 0
    assert verdict("drops", res) == "agree"
    # Flat data with groups gives the same estimate and the same bootstrap.
    flat = slope(np.tile(thetas, 5), curves.reshape(-1), groups=np.repeat(np.arange(5), len(thetas)))
    assert flat.estimate == pytest.approx(res.estimate)
    assert np.allclose(flat.samples, res.samples)
    # It equals the mean of the per-seed slopes (balanced grid).
    per_seed = [np.polyfit(thetas, c, 1)[0] for c in curves]
    assert res.estimate == pytest.approx(np.mean(per_seed))
    # No trend: the slope interval covers 0 and the claim "drops" is not supported.
    none = slope(thetas, 0.5 + g.normal(0, 0.05, (5, 1)) + g.normal(0, 0.02, (5, len(thetas))))
    assert none.ci[0] < 0 < none.ci[1]
    assert verdict("drops", none) == "inconclusive"
    assert verdict("unchanged", none, margin=0.001) == "agree"   # < 0.1 points per 100° either way


def test_slope_bootstrap_is_the_one_draw_at_a_time_loop():
    """Seeds of one grid size are bootstrapped in one array operation: the same draws and the same
    sums as resampling one replicate at a time, so the interval is bit for bit the loop's; seeds of
    unequal grids take the loop itself."""
    from invrob.stats import _ols_slope

    def loop(x, y, groups, n_boot, seed):
        units = np.unique(groups)
        members = [np.flatnonzero(groups == u) for u in units]
        rng, out = np.random.default_rng(seed), []
        for _ in range(n_boot):
            rows = np.concatenate([members[u] for u in rng.integers(0, len(units), size=len(units))])
            out.append(np.nan if np.ptp(x[rows]) == 0 else _ols_slope(x[rows], y[rows]))
        out = np.asarray(out)
        return out[np.isfinite(out)]

    g = np.random.default_rng(3)
    for seeds, grid in [(5, 4), (3, 9), (2, 2), (7, 3)]:
        x = np.tile(g.choice([0.0, 0.05, 0.1, 0.2, 0.3], grid), seeds)
        y, groups = g.random(seeds * grid), np.repeat(np.arange(seeds), grid)
        assert np.array_equal(slope(x, y, groups=groups, n_boot=300, seed=4).samples, loop(x, y, groups, 300, 4))
    uneven = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])                   # seeds with 3, 2 and 4 grid points
    x, y = g.choice([0.0, 45.0, 90.0], 9), g.random(9)
    assert np.array_equal(slope(x, y, groups=uneven, n_boot=300).samples, loop(x, y, uneven, 300, 0))


@pytest.mark.parametrize("call", [
    lambda: paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 4))),
    lambda: paired_bootstrap(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))),
    lambda: paired_bootstrap([1.0, np.nan], [1.0, 2.0]),
    lambda: paired_bootstrap([1.0], [2.0]),
    lambda: paired_bootstrap([], []),
    lambda: paired_bootstrap([1.0, 2.0], [1.0, 2.0], n_boot=0),
    lambda: paired_bootstrap([1.0, 2.0], [1.0, 2.0], alpha=0.6),
    lambda: equivalence_test(0.0, (-0.1, 0.1), margin=0.0),
    lambda: equivalence_test(0.0, (0.1, -0.1), margin=0.2),
    lambda: one_sided(0.0, (-0.1, 0.1), direction="sideways"),
    lambda: verdict("unchanged", (-0.1, 0.1)),                 # no margin
    lambda: verdict("improves somehow", (-0.1, 0.1)),
    lambda: slope([0, 0, 0], [1, 2, 3], groups=[0, 1, 2]),
    lambda: slope([0, 1, 2], [1, 2, 3], groups=[0, 0, 0]),
    lambda: slope([0, 1], np.zeros((3, 4))),
])
def test_bad_input_raises(call):
    with pytest.raises(InvrobError):
        call()


def test_few_seeds_restores_the_level_with_five_seeds():
    """With 5 seeds and no effect, the plain percentile bootstrap of a slope over a 3-point grid
    rejects a true null ~12% of the time at a nominal one-sided 5%; few_seeds brings it to ~6%
    (and makes a paired mean difference conservative: 6% → 3%, measured)."""
    from invrob.stats import few_seeds

    rng = np.random.default_rng(7)
    plain = widened = 0
    reps = 300
    for r in range(reps):
        y = rng.normal(0.5, 0.05, size=(5, 3))   # 5 seeds' curves, no trend: a declared one is false
        result = slope([0, 90, 180], y, n_boot=1000, seed=r, alpha=0.1)
        plain += verdict("increase", result) == "agree"
        widened += verdict("increase", few_seeds(result)) == "agree"
    assert plain / reps > 0.08            # the problem is real
    assert widened / reps <= 0.08         # and fixed (nominal 0.05; binomial sd at 300 reps ≈ 0.013)
    same = few_seeds(paired_bootstrap(np.zeros((1, 4)), np.ones((1, 4)), n_boot=50))
    assert same.ci == (1.0, 1.0)          # one seed: nothing to widen


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (89, 100), (100, 100), (412, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    from invrob.stats import wilson_interval

    ci = binomtest(k, n).proportion_ci(0.90, method="wilson")
    assert wilson_interval(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-4)  # z rounded to 1.6449


@pytest.mark.parametrize("p, n", [(1.2, 10), (-0.1, 10), (0.5, 0), (float("nan"), 10)])
def test_wilson_interval_refuses_what_is_no_proportion(p, n):
    from invrob.stats import wilson_interval

    with pytest.raises(InvrobError, match="wilson_interval"):
        wilson_interval(p, n)
