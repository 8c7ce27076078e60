"""invrob.experiments: the tables the notebooks plot, on a briefly trained LeNet."""
from __future__ import annotations

import numpy as np
import pandas as pd
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
    rob = ex.summarize_points(ex.robust_points_table(lenet, x[:64], y[:64], [0.0, 0.1, 0.3], steps=10))
    for _, group in rob.groupby("seed"):
        acc = group.sort_values("eps")["accuracy"].to_numpy()
        assert (np.diff(acc) <= 0).all() and acc[-1] < 0.2


def test_boundary_distance_agrees_with_robust_accuracy(lenet, points):
    # The share of points whose minimal perturbation exceeds ε is (up to the attack's
    # randomness and the bisection resolution) the robust accuracy at ε.
    x, y = points
    trained = lenet[:1]
    dist = ex.boundary_distances(trained, x[:64], y[:64], norms=["linf"], steps=10, bisection_steps=7)
    rob = ex.summarize_points(ex.robust_points_table(trained, x[:64], y[:64], [0.05], steps=10))["accuracy"].item()
    share = (dist["distance"] > 0.05).sum() / 64
    assert abs(share - rob) <= 0.1
    summary = ex.summarize_distances(dist)
    row = summary.iloc[0]
    assert row["mean_low"] <= row["mean"] <= row["mean_high"]


def test_subspace_table_has_its_controls(lenet, points):
    x, y = points
    table = ex.subspace_table(lenet[:1], x, y, eps=0.1, steps=10, small_angles=[-3, -1, 1, 3], ks=[1, 5])
    assert set(table["comparison"]) == {"adversarial vs rotation", "adversarial vs adversarial",
                                        "random vs random", "support-random vs rotation",
                                        "image PCA vs rotation", "translation vs rotation",
                                        "adversarial vs rotation (data PCs removed)",
                                        "translation vs rotation (data PCs removed)"}
    assert table[["mean_cosine", "max_cosine"]].stack().between(0, 1 + 1e-9).all()
    at5 = table[table["k"] == 5].set_index("comparison")["mean_cosine"]
    # the positive control shares directions; random subspaces of R^784 barely do,
    # and confining the noise to the digits' pixels makes it overlap more
    assert at5["adversarial vs adversarial"] > at5["random vs random"] + 0.3
    assert at5["support-random vs rotation"] > at5["random vs random"]


def test_robust_points_table_per_point_and_per_model_grid():
    """AutoAttack-grade rows per point, each family at its own budgets; summaries from them;
    the attack is never weaker than PGD on the same points; the conditional column is
    robust accuracy among the clean-correct points."""
    import torch
    from torch import nn

    from invrob.train import TrainConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(12, 1, 8, 8)
    y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10  # three points misclassified clean
    trained = [(TrainConfig(model="lenet", seed=3), model), (TrainConfig(model="stdcnn", seed=3), model)]
    grids = {"lenet": [0.0, 0.02, 0.2], "stdcnn": [0.0, 0.05]}
    points = ex.robust_points_table(trained, x, y, grids, attack=ex.autoattack(["apgd-ce", "apgd-t"], targets=3))
    assert len(points) == 12 * 3 + 12 * 2
    assert set(points["robust"]) <= {0, 1} and points["attack"].str.startswith("AutoAttack").all()
    lenet = points[points["model"] == "lenet"]
    assert list(lenet["eps"].unique()) == [0.0, 0.02, 0.2]
    per_point = lenet.pivot_table(index="point", columns="eps", values="robust")
    assert (per_point.loc[[0, 1, 2]] == 0).all().all()          # wrong clean: robust nowhere
    assert (per_point.diff(axis=1).fillna(0) <= 0).all().all()   # fooled at ε ⇒ fooled at larger ε
    summary = ex.summarize_points(points)
    clean = summary[(summary["model"] == "lenet") & (summary["eps"] == 0)]["accuracy"].item()
    assert clean == pytest.approx(9 / 12)
    row = summary[(summary["model"] == "lenet") & (summary["eps"] == 0.2)].iloc[0]
    assert row["accuracy"] == pytest.approx(per_point[0.2].mean()) and row["n"] == 12
    assert row["conditional"] == pytest.approx(row["accuracy"] / clean)
    pgd = ex.summarize_points(ex.robust_points_table(trained, x, y, grids, steps=5))
    merged = summary.merge(pgd, on=["model", "seed", "eps"], suffixes=("", "_pgd"))
    assert (merged["accuracy"] <= merged["accuracy_pgd"] + 1e-12).all()
    assert set(pgd["attack"]) == {"PGD-5"}

def test_attack_accuracy_table_and_recipes_sharing_tags():
    """Accuracy under named attacks, one row per model and attack; summarize_points keeps a recipe column
    apart (two recipes can share every tag, e.g. natural and worst-of-k training: θ = ε = 0)."""
    import torch
    from torch import nn

    from invrob.attacks import SpatialGrid
    from invrob.metrics import accuracy
    from invrob.train import TrainConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x = torch.rand(8, 1, 28, 28)
    y = model(x).argmax(1)
    config = TrainConfig(model="lenet", seed=2)
    table = ex.attack_accuracy_table([(config, model)], x, y, {
        "identity": lambda m: SpatialGrid(m, rotations=[0.0], translations=[0.0]),
        "grid": lambda m: SpatialGrid(m, rotations=[-20.0, 0.0, 20.0], translations=[0.0])})
    acc = table.set_index("attack")["accuracy"]
    assert acc["identity"] == accuracy(model, x, y) == 1.0 and acc["grid"] <= acc["identity"]
    assert set(table["seed"]) == {2} and (table["n"] == 8).all()
    points = ex.robust_points_table([(config, model)], x, y, [0.0, 0.1], steps=3)
    both = pd.concat([points.assign(recipe="natural"), points.assign(recipe="worst-of-k")])
    summary = ex.summarize_points(both)
    assert len(summary) == 4 and set(summary["recipe"]) == {"natural", "worst-of-k"}


def test_parameter_counts_one_row_per_dataset_and_model_in_grid_order():
    from invrob.models import build_model, count_parameters

    table = ex.parameter_counts({"mnist": ["lenet", "stdcnn"], "cifar10": ["stdcnn"]})
    assert table.index.names == ["dataset", "model"] and list(table.columns) == ["parameters"]
    assert list(table.index) == [("mnist", "lenet"), ("mnist", "stdcnn"), ("cifar10", "stdcnn")]
    assert table.loc[("cifar10", "stdcnn"), "parameters"] == count_parameters(build_model("stdcnn", "cifar10"))
    assert table.loc[("mnist", "lenet"), "parameters"] == count_parameters(build_model("lenet", "mnist"))
    assert (table.loc[("mnist", "stdcnn"), "parameters"]
            != table.loc[("cifar10", "stdcnn"), "parameters"])  # one colour channel vs three


def test_accuracy_per_phi_is_one_row_against_phi():
    rotated = pd.DataFrame({"theta": [0.0, 22.5, 180.0], "accuracy": [0.98765, 0.5, 0.1234], "n": 100})
    table = ex.accuracy_per_phi(rotated)
    assert list(table.index) == ["accuracy"] and table.columns.name == "φ (°)"
    assert list(table.columns) == ["0", "22.5", "180"]
    assert table.loc["accuracy"].tolist() == [0.988, 0.5, 0.123]
