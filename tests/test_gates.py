"""Quality gates (invrob.gates): the table, the anchors, and the models table they read."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from invrob import experiments as ex
from invrob import gates
from invrob.errors import InvrobError
from invrob.train import TrainConfig

TAGS = dict(dataset="mnist", theta=0.0)


def models(rows):
    """A models table from ``(model, eps_train, seed, clean, autoattack)`` rows."""
    return pd.DataFrame([dict(model=m, eps_train=e, seed=s, clean=c, autoattack=a, n_clean=10000,
                              n_autoattack=100, **TAGS) for m, e, s, c, a in rows])


def test_a_family_passes_on_its_seed_mean_and_shows_the_spread():
    table = models([("wong", 0.0, 0, 0.992, math.nan), ("wong", 0.0, 1, 0.988, math.nan),  # mean 0.990: pass
                    ("wong", 0.3, 0, 0.985, 0.80), ("wong", 0.3, 1, 0.983, 0.76),          # mean AA 0.78 < 0.785
                    ("lenet", 0.0, 0, 0.981, math.nan), ("lenet", 0.0, 1, 0.983, math.nan)])
    found = gates.gate_table(table, [gates.natural_gate(), *gates.adversarial_gates()])
    found = found.set_index(["model", "eps_train", "gate"]).sort_index()
    natural = found.loc[("wong", 0.0, "natural: clean")]
    assert natural["passed"] and natural["value"] == pytest.approx(0.990)
    assert (natural["low"], natural["high"], natural["seeds"], natural["n"]) == (0.988, 0.992, 2, 10000)
    assert not found.loc[("lenet", 0.0, "natural: clean"), "passed"]
    robust = found.loc[("wong", 0.3, "adversarial: AutoAttack")]
    assert not robust["passed"] and robust["value"] == pytest.approx(0.78) and robust["n"] == 100
    assert found.loc[("wong", 0.3, "adversarial: clean"), "passed"]  # 98.4% ≥ 97.5%
    assert robust["threshold"] == "AutoAttack accuracy at its own training ε ≥ 78.5%"
    assert "88.50%" in robust["anchor"] and "Croce & Hein" in robust["anchor"]
    # only the natural gate reads ε = 0 models, only the adversarial ones read ε > 0
    assert set(found.loc[("wong", 0.0)].index) == {"natural: clean"}


def test_anchors_are_the_published_numbers():
    assert gates.ADVERSARIAL_AA == pytest.approx(0.885 - 0.10)
    assert gates.NATURAL_CLEAN == 0.990 and gates.ROTATED == 0.977
    assert gates.CIFAR_AA == pytest.approx(0.443 - 0.10)
    for gate in (gates.natural_gate(), gates.rotation_gate(), *gates.adversarial_gates(),
                 gates.spatial_gate("worst-of-10"), gates.curriculum_gate(), gates.natural_gate("cifar10")):
        assert gate.anchor and gate.text()


def test_published_rows_stand_beside_ours_at_eps_03():
    table = models([("wong", 0.0, 0, 0.991, math.nan), ("wong", 0.3, 0, 0.990, 0.91), ("wong", 0.3, 1, 0.986, 0.87)])
    found = gates.published_comparison(table, "PGD-5, 6 epochs", "APGD-CE on 100 points")
    assert [m.split(" (")[0].split(":")[0] for m in found.index[:3]] == ["Madry et al.", "TRADES",
                                                                          "fast adversarial training"]
    robust = "robust accuracy at ε = 0.3 (%)"
    assert found.iloc[0][robust] == "88.50" and found.iloc[1]["clean (%)"] == "99.48"
    ours = found.iloc[3]
    assert "PGD-5, 6 epochs" in ours.name and "ε = 0.3" in ours.name
    # mean over the two seeds with [min, max], in %; the natural model is not a row
    assert (ours["clean (%)"], ours[robust]) == ("98.8 [98.6, 99.0]", "89.0 [87.0, 91.0]")
    assert "100 test points × 2 seeds" in ours["evaluation"] and len(found) == 4
    # the interval over the 100 shared points (Wilson, 90%) around 89%, not over seeds × points: scipy's
    from scipy.stats import binomtest

    low, high = binomtest(89, 100).proportion_ci(0.90, method="wilson")
    assert f"90% interval over the points [{100 * low:.1f}, {100 * high:.1f}]" in ours["evaluation"]
    assert "[82.8, 93.2]" in ours["evaluation"]
    missing = gates.published_comparison(table[table["eps_train"] < 0.3], "x", "y")
    assert "no model trained at ε = 0.3 (largest ε: 0)" in missing.index[-1]


def test_a_metric_not_measured_fails_its_gate():
    table = models([("wong", 0.3, 0, 0.99, math.nan)])
    row = gates.gate_table(table, gates.adversarial_gates()).set_index("gate").loc["adversarial: AutoAttack"]
    assert not row["passed"] and math.isnan(row["value"]) and row["seeds"] == 0
    assert gates.failed_for(gates.gate_table(table, gates.adversarial_gates()), table) == [
        "Wong net, ε = 0.3: AutoAttack accuracy at its own training ε ≥ 78.5% (not measured)"]


def test_gates_judge_only_their_dataset():
    table = pd.concat([models([("stdcnn", 0.0, 0, 0.95, math.nan)]),
                       models([("stdcnn", 0.0, 0, 0.95, math.nan)]).assign(dataset="cifar10")])
    found = gates.gate_table(table, [gates.natural_gate(), gates.natural_gate("cifar10")])
    assert dict(zip(found["dataset"], found["passed"])) == {"mnist": False, "cifar10": True}  # 95% vs 99% / 90%


def test_costs_and_counts():
    table = pd.DataFrame([dict(model="lenet", recipe=r, seed=s, spatial_drop=d, min_stage_epochs=k, **TAGS,
                               eps_train=0.0) for r, s, d, k in [("worst-of-10 spatial", 0, 0.01, math.nan),
                                                                 ("worst-of-10 spatial", 1, 0.02, math.nan),
                                                                 ("CuSP", 0, math.nan, 1.0), ("CuSP", 1, math.nan, 1.0)]])
    found = gates.gate_table(table, [gates.spatial_gate("worst-of-10"), gates.curriculum_gate("CuSP")])
    found = found.set_index("recipe")
    assert found.loc["worst-of-10 spatial", "passed"]  # a 1.5-point mean cost ≤ 2 points
    assert not found.loc["CuSP", "passed"] and found.loc["CuSP", "threshold"].endswith("≥ 2")
    assert "| LeNet, CuSP | epochs of its shortest curriculum stage ≥ 2 | 1 [1, 1] | 2 | **below gate** |" \
        in gates.markdown(found.reset_index())


def test_markdown_shows_the_points_and_each_anchor_once():
    table = models([("wong", 0.3, 0, 0.985, 0.90), ("wong", 0.3, 1, 0.983, 0.92),
                    ("lenet", 0.3, 0, 0.985, 0.90), ("lenet", 0.3, 1, 0.983, 0.92)])
    text = gates.markdown(gates.gate_table(table, gates.adversarial_gates()))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "AutoAttack accuracy" in line]
    assert len(rows) == 2 and all("| 2 × 100 |" in r for r in rows)   # seeds × attack points
    clean = [line for line in text.splitlines() if line.startswith("| ") and "clean accuracy" in line]
    assert all("| 2 × 10,000 |" in r for r in clean)
    anchors = text.split("*Anchors.*")[1]
    # two gates, four rows: each anchor's text once below the table, the rows cite its number
    assert anchors.count("Croce & Hein, ICML 2020") == 1 and "[1]" in rows[0] and "[2]" in clean[0]
    assert text.count("88.50% AutoAttack") == 1


def test_unknown_metric_is_one_clear_error():
    with pytest.raises(InvrobError, match="unknown metric 'robustness'"):
        gates.Gate("x", "robustness", 0.5, "nowhere", lambda m: m["seed"] >= 0)


def test_models_table_reads_what_the_gates_need(mnist_train, mnist_test):
    x, y = mnist_train
    xt, yt = mnist_test[0][:200], mnist_test[1][:200]
    configs = [TrainConfig(model="wong", epochs=1, batch_size=64, optimizer="adam", lr=5e-3, max_batches_per_epoch=3,
                           theta=t, eps=e) for t, e in ((30.0, 0.0), (0.0, 0.1))]
    trained, history = ex.train_all(configs, x[:256], y[:256], None, progress=False)
    points = ex.robust_points_table(trained, xt[:20], yt[:20], [0.0, 0.1], steps=3)
    table = ex.models_table(trained, xt, yt, robust_points=points, spatial_points=50, history=history)
    from invrob.metrics import accuracy
    from invrob.rotations import rotated_accuracy

    assert table["clean"].tolist() == pytest.approx([accuracy(m, xt, yt) for _, m in trained])
    assert table["n_clean"].tolist() == [200, 200]
    at30 = rotated_accuracy(trained[0][1], xt, yt, [30.0], seed=0)["accuracy"].item()
    assert table["rotated"].iloc[0] == pytest.approx(at30) and math.isnan(table["rotated"].iloc[1])
    own = points[(points["eps_train"] == 0.1) & (points["eps"] == 0.1)]["robust"].mean()
    assert math.isnan(table["autoattack"].iloc[0]) and table["autoattack"].iloc[1] == pytest.approx(own)
    assert table["n_autoattack"].iloc[1] == 20
    assert table["spatial_drop"].between(-1, 1).all()
    assert table["min_stage_epochs"].isna().all()  # no curriculum here
