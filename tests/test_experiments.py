"""invrob.experiments: the tables the notebooks plot, on a briefly trained LeNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from invrob import experiments as ex
from invrob.train import TrainConfig


@pytest.fixture(scope="module")
def lenet(mnist_train):
    """Two LeNets (two seeds), a few hundred steps each: right on most test digits."""
    x, y = mnist_train
    configs = [TrainConfig(model="lenet", epochs=1, optimizer="adam", lr=3e-3, seed=s,
                           max_batches_per_epoch=120) for s in (0, 1)]
    trained, history = ex.train_all(configs, x[:20000], y[:20000], checkpoint_dir=None, progress=False)
    assert list(history["seed"]) == [0, 1]
    return trained


@pytest.fixture(scope="module")
def points(mnist_test):
    return ex.subset(*mnist_test, 200, seed=1)


def test_subset_is_fixed_and_sized(mnist_test):
    a, _ = ex.subset(*mnist_test, 50, seed=3)
    b, _ = ex.subset(*mnist_test, 50, seed=3)
    assert len(a) == 50 and torch.equal(a, b)
    assert len(ex.subset(*mnist_test, None)[0]) == 10_000


def test_tables_are_tidy_and_tagged(lenet, points):
    x, y = points
    inv = ex.invariance_table(lenet, x, y, [0, 90, 180])
    assert len(inv) == 2 * 3 and set(inv["seed"]) == {0, 1} and set(inv["phi"]) == {0, 90, 180}
    clean = inv[inv["phi"] == 0]["accuracy"]
    assert (clean > 0.85).all() and (inv[inv["phi"] == 180]["accuracy"] < clean.min()).all()
    rob = ex.robustness_table(lenet, x[:64], y[:64], [0.0, 0.1, 0.3], steps=10)
    for _, group in rob.groupby("seed"):
        acc = group.sort_values("eps")["accuracy"].to_numpy()
        assert (np.diff(acc) <= 0).all() and acc[-1] < 0.2


def test_boundary_distance_agrees_with_robust_accuracy(lenet, points):
    # The share of points whose minimal perturbation exceeds ε is (up to the attack's
    # randomness and the bisection resolution) the robust accuracy at ε.
    x, y = points
    trained = lenet[:1]
    dist = ex.boundary_distances(trained, x[:64], y[:64], norms=["linf"], steps=10, bisection_steps=7)
    rob = ex.robustness_table(trained, x[:64], y[:64], [0.05], steps=10)["accuracy"].item()
    share = (dist["distance"] > 0.05).sum() / 64
    assert abs(share - rob) <= 0.1
    summary = ex.summarize_distances(dist)
    row = summary.iloc[0]
    assert row["mean_low"] <= row["mean"] <= row["mean_high"]


def test_subspace_table_has_its_controls(lenet, points):
    x, y = points
    table = ex.subspace_table(lenet[:1], x, y, eps=0.1, steps=10, small_angles=[-3, -1, 1, 3], ks=[1, 5])
    assert set(table["comparison"]) == {"adversarial vs rotation", "adversarial vs adversarial",
                                        "random vs random", "support-random vs rotation"}
    assert table[["mean_cosine", "max_cosine"]].stack().between(0, 1 + 1e-9).all()
    at5 = table[table["k"] == 5].set_index("comparison")["mean_cosine"]
    # the positive control shares directions; random subspaces of R^784 barely do,
    # and confining the noise to the digits' pixels makes it overlap more
    assert at5["adversarial vs adversarial"] > at5["random vs random"] + 0.3
    assert at5["support-random vs rotation"] > at5["random vs random"]


def test_gradient_masking_check_runs_the_three_attacks(lenet, points):
    import torchattacks

    from invrob.metrics import accuracy

    x, y = points[0][:64], points[1][:64]
    trained = lenet[:1]
    table = ex.gradient_masking_check(trained, x, y, eps=0.1, steps=5, strong_steps=10, restarts=2, seed=0)
    assert table["attack"].tolist() == ["PGD-5", "PGD-10x2", "APGD-CE-10"]
    assert (table["n"] == 64).all() and (table["model"] == "lenet").all()
    acc = table.set_index("attack")["accuracy"]
    assert acc["PGD-10x2"] <= acc["PGD-5"] + 1 / 64          # more steps and restarts: never weaker
    assert acc["PGD-5"] < accuracy(trained[0][1], x, y)      # the attacks bite
    # The APGD row is torchattacks' APGD itself, run independently on the same points.
    model = trained[0][1]
    x_ref = torchattacks.APGD(model, norm="Linf", eps=0.1, steps=10, n_restarts=1, seed=0, loss="ce")(x, y)
    assert acc["APGD-CE-10"] == pytest.approx(accuracy(model, x_ref, y), abs=1e-6)
    assert abs(acc["APGD-CE-10"] - acc["PGD-10x2"]) <= 0.1   # no gradient masking on a LeNet


def test_autoattack_table_pairs_pgd_and_autoattack_per_budget():
    import torch
    from torch import nn

    from invrob import experiments as ex
    from invrob.train import TrainConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(12, 1, 8, 8)
    y = model(x).argmax(1)  # every point correct: robust accuracy starts at 1
    config = TrainConfig(model="lenet", seed=3)
    table = ex.autoattack_table([(config, model)], x, y, lambda c: [0.02, 0.2], steps=5,
                                attacks=("apgd-ce", "apgd-t"))
    assert list(table["eps"]) == [0.02, 0.02, 0.2, 0.2] and set(table["seed"]) == {3}
    assert list(table["attack"]) == ["PGD-5", "AutoAttack"] * 2
    assert set(table.loc[table["attack"] == "AutoAttack", "components"]) == {"apgd-ce+apgd-t"}
    pgd, aa = (table[table["attack"] == a].set_index("eps")["accuracy"] for a in ("PGD-5", "AutoAttack"))
    assert (aa <= pgd + 1e-12).all() and aa[0.2] <= aa[0.02] and (table["n"] == 12).all()
