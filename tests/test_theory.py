"""The toy cyclic-group setting of invrob.theory: closed forms, simulation, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm as gaussian

from invrob import theory
from invrob.errors import InvrobError

M, K, SIGMA = 16, 4, 1.0  # the module's defaults: d = 64, a quarter turn = a shift of d/4


def _tolerance(q: float, n: int) -> float:
    """Four binomial standard errors (plus a floor): a Monte-Carlo estimate of q must lie within."""
    return 4 * math.sqrt(max(q * (1 - q), 1e-4) / n) + 1e-3


def test_template_and_rotation_are_the_cyclic_group():
    mu = theory.template(M, K)
    assert mu.shape == (M * K,) and mu[:M].sum() == M and mu[M:].sum() == 0
    turned = theory.rotate(mu, 1, M)
    assert turned[M:2 * M].sum() == M and turned.sum() == M  # the bright block moved one block on
    np.testing.assert_array_equal(theory.rotate(mu, K, M), mu)  # g^k = identity
    rows = np.stack([mu, mu, mu])
    per_row = theory.rotate(rows, np.array([0, 1, 3]), M)
    for i, s in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(per_row[i], theory.rotate(mu, s, M))


def test_full_augmentation_gives_an_exactly_invariant_classifier():
    w = theory.centroid_direction(1.0, M, K)
    np.testing.assert_allclose(w, np.full(M * K, 1 / K))  # the group average of μ
    x = np.random.default_rng(3).standard_normal((50, M * K))
    for s in range(K):
        np.testing.assert_array_equal(np.sign(theory.rotate(x, s, M) @ w), np.sign(x @ w))
    exact = theory.exact_metrics(1.0, 0.0, "linf", M, K, SIGMA)
    assert exact["spatial_acc"] == pytest.approx(exact["clean_acc"], abs=1e-12)


def test_closed_forms_against_scipy():
    a = math.sqrt(M) / SIGMA
    template_matcher = theory.exact_metrics(0.0, 0.2, "linf", M, K, SIGMA)
    assert template_matcher["clean_acc"] == pytest.approx(gaussian.cdf(a), abs=1e-12)
    assert template_matcher["spatial_acc"] == pytest.approx((gaussian.cdf(a) + (K - 1) * 0.5) / K, abs=1e-12)
    assert template_matcher["robust_acc"] == pytest.approx(gaussian.cdf(a * 0.8), abs=1e-12)
    invariant = theory.exact_metrics(1.0, 0.2, "linf", M, K, SIGMA)
    # w = 1/√d: w·μ = √(m/k), ‖w‖₁ = √d, so the margin is √m·(1/√k − ε√k)
    assert invariant["robust_acc"] == pytest.approx(gaussian.cdf(a * (1 / math.sqrt(K) - 0.2 * math.sqrt(K))),
                                                    abs=1e-12)
    # at ε = 1/k the invariant classifier's worst case sits exactly on the boundary: chance
    assert theory.exact_metrics(1.0, 1 / K, "linf", M, K, SIGMA)["robust_acc"] == pytest.approx(0.5, abs=1e-12)
    l2 = theory.exact_metrics(1.0, 2.0, "l2", M, K, SIGMA)
    assert l2["robust_acc"] == pytest.approx(gaussian.cdf(a / math.sqrt(K) - 2.0), abs=1e-12)


def test_margins_at_the_two_ends():
    assert theory.exact_metrics(0.0)["mean_margin"] == pytest.approx(1.0)
    assert theory.exact_metrics(1.0)["mean_margin"] == pytest.approx(1 / K)
    assert theory.exact_metrics(0.0, norm="l2")["mean_margin"] == pytest.approx(math.sqrt(M))
    assert theory.exact_metrics(1.0, norm="l2")["mean_margin"] == pytest.approx(math.sqrt(M / K))
    for p in (0.0, 0.3, 1.0):  # mean_margin of w_p agrees with the closed form
        w = theory.centroid_direction(p, M, K)
        for name in theory.NORMS:
            assert theory.mean_margin(w, name, M, K) == pytest.approx(theory.exact_metrics(p, norm=name)["mean_margin"])


def test_no_invariant_linear_classifier_beats_one_over_k_in_linf():
    rng = np.random.default_rng(0)
    margins = [theory.mean_margin(np.tile(rng.standard_normal(M), K), "linf", M, K) for _ in range(2000)]
    assert max(margins) <= 1 / K + 1e-12
    assert theory.mean_margin(np.ones(M * K), "linf", M, K) == pytest.approx(1 / K)  # attained


def test_the_trade_off_is_monotone_in_augmentation():
    curve = theory.tradeoff_curve(augment_probs=np.linspace(0, 1, 11), eps=(0.1, 0.3), n=200)
    for _, rows in curve.groupby("eps"):
        rows = rows.sort_values("augment_prob")
        assert np.all(np.diff(rows["spatial_acc"]) > 0)  # more invariant ...
        assert np.all(np.diff(rows["robust_acc"]) < 0)   # ... less ℓ∞-robust
        assert np.all(np.diff(rows["mean_margin"]) < 0)


def test_simulation_matches_the_closed_forms():
    curve = theory.tradeoff_curve(n=20000, seed=1)
    for _, row in curve.iterrows():
        for metric in ("clean_acc", "spatial_acc", "robust_acc"):
            assert abs(row[f"{metric}_mc"] - row[metric]) <= _tolerance(row[metric], 20000), (metric, row.to_dict())
    l2 = theory.simulated_metrics(1.0, 2.0, "l2", n=20000, seed=2)
    assert abs(l2["robust_acc_mc"] - 0.5) <= _tolerance(0.5, 20000)


def test_tidy_table_shape_and_seed_reproducibility():
    first = theory.tradeoff_curve(augment_probs=(0, 1), eps=(0, 0.2), n=500, seed=7)
    again = theory.tradeoff_curve(augment_probs=(0, 1), eps=(0, 0.2), n=500, seed=7)
    other = theory.tradeoff_curve(augment_probs=(0, 1), eps=(0, 0.2), n=500, seed=8)
    assert len(first) == 4 and set(first["norm"]) == {"linf"}
    assert {"augment_prob", "eps", "spatial_acc", "robust_acc", "mean_margin", "robust_acc_mc"} <= set(first)
    assert first.equals(again)
    assert not first["spatial_acc_mc"].equals(other["spatial_acc_mc"])
    single = theory.simulated_metrics(0.0, 0.2, n=500, seed=7)
    row = first[(first.augment_prob == 0) & (first.eps == 0.2)].iloc[0]
    assert single["robust_acc_mc"] == row["robust_acc_mc"]


@pytest.mark.parametrize("kwargs, words", [
    ({"augment_probs": (1.5,)}, "augment_prob"),
    ({"augment_probs": (float("nan"),)}, "augment_prob"),
    ({"eps": (-0.1,)}, "eps"),
    ({"norm": "l1"}, "norm"),
    ({"order": 1}, "order"),
    ({"block": 0}, "block"),
    ({"noise": 0.0}, "noise"),
    ({"n": 0}, "n"),
    ({"seed": 1.5}, "seed"),
    ({"eps": ()}, "at least one"),
])
def test_bad_input_is_one_invrob_error(kwargs, words):
    with pytest.raises(InvrobError, match=words) as info:
        theory.tradeoff_curve(**kwargs)
    assert "\n" not in str(info.value)


def test_mean_margin_rejects_a_wrong_vector():
    with pytest.raises(InvrobError, match="length 64"):
        theory.mean_margin(np.ones(10))
    with pytest.raises(InvrobError, match="nonzero"):
        theory.mean_margin(np.zeros(64))
