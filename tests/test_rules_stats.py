"""invrob.trend on synthetic data whose answer is known: the Jonckheere–Terpstra test, adjacent
steps, the "progressively" rule, equivalence at every φ, power and margin sensitivity."""
import itertools

import numpy as np
import pandas as pd
import pytest

from invrob.errors import InvrobError
from invrob.stats import BootstrapResult, one_sided, paired_bootstrap, slope
from invrob.trend import (adjacent_steps, equivalence_needed, every_equivalent, jonckheere_terpstra,
                          margin_sensitivity, minimal_detectable_effect, needed_replicates, progressive)

Z = 1.6449 + 0.8416   # z_{0.95} + z_{0.80}


def curves(means, seeds=5, noise=0.3, seed_sd=1.0, rng=0):
    """A long table (levels, values, seed ids): every seed follows ``means`` plus its own offset
    (shared by all its levels) and independent noise."""
    g = np.random.default_rng(rng)
    means = np.asarray(means, float)
    k = len(means)
    values = np.tile(means, seeds) + np.repeat(g.normal(0, seed_sd, seeds), k) + g.normal(0, noise, seeds * k)
    return np.tile(np.arange(k, dtype=float), seeds), values, np.repeat(np.arange(seeds), k)


def naive_jt(levels, values, groups, direction="decrease"):
    """J by a plain double loop over pairs within a group, from a lower to a higher level."""
    total = 0.0
    for i, j in itertools.permutations(range(len(values)), 2):
        if groups[i] == groups[j] and levels[i] < levels[j]:
            step = values[j] - values[i]
            total += 0.5 if step == 0 else float(step < 0 if direction == "decrease" else step > 0)
    return total


# --------------------------------------------------------------------------- Jonckheere–Terpstra

def test_jt_statistic_matches_a_hand_count():
    levels, values = [1, 1, 2, 2, 3], [3, 1, 2, 2, 0]
    # increase: only 1 -> 2 (twice) among the 8 pairs from a lower to a higher level
    assert jonckheere_terpstra(levels, values, direction="increase", n_perm=10).statistic == 2
    assert jonckheere_terpstra(levels, values, direction="decrease", n_perm=10).statistic == 6
    tied = [2, 1, 2, 2, 0]   # 2 -> 2 twice: each tie counts 1/2 both ways
    up = jonckheere_terpstra(levels, tied, direction="increase", n_perm=10)
    assert up.statistic == 3 and jonckheere_terpstra(levels, tied, n_perm=10).statistic == 5
    # E = (N² − Σ n_i²)/4 = (25 − 9)/4, V = (25·13 − 2·4·7 − 5)/72
    assert up.expected == 4 and up.z == pytest.approx((3 - 4) / np.sqrt(264 / 72))
    lv, v, g = curves([3, 2, 2, 1], seeds=3)
    assert jonckheere_terpstra(lv, v, g, n_perm=10).statistic == naive_jt(lv, v, g)


@pytest.mark.parametrize("grouped", [False, True])
def test_jt_permutation_p_matches_full_enumeration(grouped):
    """Every relabelling the null allows (all 720 orders of 6 values; or the 6 × 6 orders within
    two seeds of 3) gives the exact p-value; the permutation p must be close to it."""
    levels = np.array([0, 1, 2, 0, 1, 2] if grouped else [0, 0, 1, 1, 2, 2], float)
    values = np.array([5.0, 4.1, 4.3, 6.2, 5.0, 3.9])
    groups = np.array([0, 0, 0, 1, 1, 1]) if grouped else np.zeros(6, int)
    observed = naive_jt(levels, values, groups)
    if grouped:
        orders = [np.r_[levels[:3][list(p)], levels[3:][list(q)]]
                  for p in itertools.permutations(range(3)) for q in itertools.permutations(range(3))]
    else:
        orders = [levels[list(p)] for p in itertools.permutations(range(6))]
    exact = np.mean([naive_jt(o, values, groups) >= observed for o in orders])
    res = jonckheere_terpstra(levels, values, groups if grouped else None, n_perm=20000, seed=1)
    assert res.statistic == observed and res.paired == grouped
    assert 0.05 < exact < 0.5 and res.p_value == pytest.approx(exact, abs=0.015)


def test_jt_declares_a_clean_decrease_only():
    drop = jonckheere_terpstra(*curves([52, 49, 46, 43]))
    assert drop.declared and drop.statistic == 30 and drop.p_value == pytest.approx(1 / 2001)
    assert drop.z > 4 and drop.direction == "decrease"
    flat = jonckheere_terpstra(*curves([50, 50, 50, 50], rng=3))
    assert not flat.declared and flat.p_value > 0.2
    rise = jonckheere_terpstra(*curves([43, 46, 49, 52]))
    assert not rise.declared and rise.p_value == 1.0 and rise.z < -4
    assert jonckheere_terpstra(*curves([43, 46, 49, 52]), direction="increase").declared
    # ungrouped, the seed offsets (sd 10) swamp a drop that the paired test sees
    lv, v, g = curves([52, 51, 50, 49], seed_sd=10.0, noise=0.2)
    assert jonckheere_terpstra(lv, v, g).declared and not jonckheere_terpstra(lv, v).declared


# --------------------------------------------------------------------------- steps and progressive

def test_steady_drop_is_progressive():
    res = progressive(*curves([52, 49, 46, 43]))
    assert res.declared and res.reason == ""
    assert res.trend.declared and res.endpoint.declared and res.slope.declared
    table = res.steps.table
    assert list(table.columns) == ["from", "to", "difference", "lo", "hi", "se", "p_value", "declared",
                                   "reversed"]
    assert res.steps.declared and table["declared"].all() and not table["reversed"].any()
    assert table["difference"].to_numpy() == pytest.approx([-3, -3, -3], abs=0.5)
    assert progressive(*curves([52, 49, 46, 43]), every_step=True).declared


def test_v_shaped_curve_fools_endpoint_and_slope_but_not_progressive():
    levels, values, groups = curves([50.5, 52.4, 51.0, 42.7])
    matrix = values.reshape(5, 4)
    # the checks in use today both say "decrease"
    end = paired_bootstrap(matrix[:, 0], matrix[:, -1])
    assert one_sided(end.estimate, end, "decrease").declared
    assert slope(np.arange(4.0), matrix).ci[1] < 0
    res = progressive(levels, values, groups)
    assert res.endpoint.declared and res.slope.declared
    assert not res.declared and "step 0 -> 1 goes significantly the other way" in res.reason
    first = res.steps.table.iloc[0]
    assert first["reversed"] and first["lo"] > 0 and first["difference"] == pytest.approx(1.9, abs=0.5)
    # with a longer falling tail JT alone is fooled too; the reversed step still blocks the claim
    long = progressive(*curves([50.5, 52.4, 51.0, 48.0, 45.0, 42.7]))
    assert long.trend.declared and long.endpoint.declared and not long.declared
    assert long.steps.table["reversed"].tolist() == [True, False, False, False, False]


def test_flat_then_cliff_needs_every_step():
    """Flat steps are not *significantly* reversed: the default rule accepts a cliff, every_step does not.
    (20 seeds: the paired JT then sees the cliff whatever order the flat levels fall in; each flat
    step is still falsely "reversed" ~3.5% of the time, which would block the default rule.)"""
    data = curves([50, 50, 50, 42], seeds=20, noise=0.1)
    assert progressive(*data).declared
    strict = progressive(*data, every_step=True)
    assert not strict.declared and "is not a significant decrease" in strict.reason
    steps = adjacent_steps(*data)
    assert not steps.declared and steps.table["declared"].tolist()[-1]


def test_adjacent_steps_pair_by_seed_and_average_repeats():
    lv, v, g = curves([10, 9, 8], seeds=4, seed_sd=5.0, noise=0.1)
    doubled = adjacent_steps(np.r_[lv, lv], np.r_[v - 1, v + 1], np.r_[g, g])   # averaged per cell
    plain = adjacent_steps(lv, v, g, n_boot=500)
    assert plain.declared and doubled.declared and len(plain.table) == 2
    assert doubled.table["difference"].to_numpy() == pytest.approx(plain.table["difference"].to_numpy())
    up = adjacent_steps(lv, -v, g, direction="increase")
    assert up.declared and up.direction == "increase"
    # a seed missing a level is dropped, not mis-paired
    keep = ~((g == 0) & (lv == 1))
    assert adjacent_steps(lv[keep], v[keep], g[keep]).table["difference"].to_numpy() == pytest.approx(
        adjacent_steps(lv[g > 0], v[g > 0], g[g > 0]).table["difference"].to_numpy())


# --------------------------------------------------------------------------- every φ

def gaps(per_phi, seeds=5, noise=0.002, rng=0):
    g = np.random.default_rng(rng)
    return pd.DataFrame([{"seed": s, "phi": phi, "difference": d + g.normal(0, noise)}
                         for s in range(seeds) for phi, d in per_phi.items()])


def test_every_equivalent_fails_when_one_phi_leaves_the_margin():
    frame = gaps({-30: -0.03, -15: 0.0, 0: 0.0, 15: 0.0, 30: 0.03})   # opposite signs cancel on average
    res = every_equivalent(frame, "phi", margin=0.02)
    assert res.average.declared and abs(res.average.estimate) < 0.005      # the average says "unchanged"
    assert not res.declared
    assert res.table["equivalent"].tolist() == [False, True, True, True, False]
    assert list(res.table.columns) == ["phi", "estimate", "lo", "hi", "se", "p_value", "equivalent"]
    ok = every_equivalent(gaps({-30: -0.005, 0: 0.0, 30: 0.004}), "phi", margin=0.02)
    assert ok.declared and ok.table["equivalent"].all() and (ok.table["hi"] < 0.02).all()


# --------------------------------------------------------------------------- power and margins

def test_minimal_detectable_effect_and_needed_replicates():
    assert minimal_detectable_effect(1.0) == pytest.approx(Z, abs=1e-3)
    assert minimal_detectable_effect(0.01) == pytest.approx(Z * 0.01, abs=1e-5)
    assert minimal_detectable_effect(1.0, one_sided=False) == pytest.approx(1.9600 + 0.8416, abs=1e-3)
    reps = np.random.default_rng(0).normal(0, 0.02, 4000)
    result = BootstrapResult(0.0, (-0.03, 0.03), reps)
    assert minimal_detectable_effect(result) == pytest.approx(minimal_detectable_effect(reps))
    assert minimal_detectable_effect(reps) == pytest.approx(Z * 0.02, rel=0.05)
    mde = minimal_detectable_effect(0.01)
    for n in (5, 7, 200):
        assert needed_replicates(mde, 0.01, n) == n
        assert needed_replicates(-mde / 2, 0.01, n) == 4 * n
    assert needed_replicates(10 * mde, 0.01, 5) == 1


def test_equivalence_needed():
    se, n, m = 0.01, 5, 0.05
    at_n = m - Z * se            # the estimate whose distance to the margin is just the MDE at n
    assert equivalence_needed(at_n, se, m, n) == n
    assert equivalence_needed(m - 2 * Z * se, se, m, n) <= n
    assert equivalence_needed(m - Z * se / 2, se, m, n) == 4 * n
    assert equivalence_needed(0.05, se, m, n) is None and equivalence_needed(-0.07, se, m, n) is None


def test_margin_sensitivity():
    table = margin_sensitivity(lambda m: "agree" if m > 0.015 else "inconclusive", 0.02)
    assert len(table) == 3 and list(table.columns) == ["factor", "margin", "verdict"]
    assert table["margin"].to_numpy() == pytest.approx([0.01, 0.02, 0.04])
    assert table["verdict"].tolist() == ["inconclusive", "agree", "agree"]


# --------------------------------------------------------------------------- bad input

def one_line(match):
    return pytest.raises(InvrobError, match=match)


def test_bad_inputs_raise_one_line_errors():
    lv, v, g = curves([3, 2, 1])
    frame = gaps({0: 0.0, 30: 0.0})
    cases = [
        (lambda: jonckheere_terpstra([], []), "values is empty"),
        (lambda: jonckheere_terpstra(lv, np.r_[v[:-1], np.nan]), "NaN"),
        (lambda: jonckheere_terpstra(lv, v, alpha=0.6), r"alpha must be a number in \(0, 0.5\)"),
        (lambda: jonckheere_terpstra(lv, v, direction="sideways"), "unknown direction 'sideways'"),
        (lambda: jonckheere_terpstra(lv, v[:-1]), "one entry each"),
        (lambda: jonckheere_terpstra(np.zeros(4), np.arange(4.0)), "two distinct levels"),
        (lambda: jonckheere_terpstra(lv, v, n_perm=0), "n_perm must be a positive integer"),
        (lambda: adjacent_steps(lv, v, None), "groups"),
        (lambda: adjacent_steps(lv, v, np.zeros(len(v))), "at least two seeds"),
        (lambda: progressive(lv, v, g, alpha=0), "alpha"),
        (lambda: every_equivalent(frame, "phi", margin=0), "margin must be a number > 0"),
        (lambda: every_equivalent(frame, "phi", margin=-1), "margin must be a number > 0"),
        (lambda: every_equivalent(frame, "theta", margin=0.1), "lacks column"),
        (lambda: every_equivalent(frame.iloc[:0], "phi", margin=0.1), "non-empty"),
        (lambda: every_equivalent(frame.assign(difference=np.nan), "phi", margin=0.1), "NaN"),
        (lambda: minimal_detectable_effect(0.0), "standard error must be a number > 0"),
        (lambda: minimal_detectable_effect(float("nan")), "NaN"),
        (lambda: minimal_detectable_effect(0.01, power=1.2), "power"),
        (lambda: minimal_detectable_effect(0.01, alpha=0.5), "alpha"),
        (lambda: needed_replicates(0.0, 0.01, 5), "effect must be nonzero"),
        (lambda: needed_replicates(0.1, 0.01, 0), "n must be a positive integer"),
        (lambda: equivalence_needed(0.0, 0.01, 0.0, 5), "margin"),
        (lambda: margin_sensitivity("agree", 0.1), "callable"),
        (lambda: margin_sensitivity(str, -0.1), "margin"),
        (lambda: margin_sensitivity(str, 0.1, factors=(1, -1)), "factors"),
    ]
    for call, match in cases:
        with one_line(match) as info:
            call()
        assert "\n" not in str(info.value)
