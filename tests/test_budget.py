"""invrob.tooling.budget (a chapter's cost before it runs) and the gpu profile it sizes."""
from __future__ import annotations

import math

import pytest

from invrob import studies
from invrob.tooling import budget
from invrob.errors import InvrobError
from invrob.train import TrainConfig


def test_training_passes_follow_the_formula():
    natural = TrainConfig(model="wong", epochs=3, batch_size=100)
    assert budget.training_passes(natural, n=1000) == 1000 * 3
    adversarial = TrainConfig(model="wong", epochs=3, batch_size=100, eps=0.1, attack_steps=5)
    assert budget.training_passes(adversarial, n=1000) == 1000 * 3 * 6
    rotated = TrainConfig(model="wong", epochs=2, batch_size=128, theta=30.0)
    assert budget.training_passes(rotated, n=1000) == math.ceil(1000 / 128) * 128 * 2 * (1 + budget.TRANSFORM)
    spatial = TrainConfig(model="wong", epochs=1, batch_size=100,
                          spatial_attack={"k": 10, "max_angle": 30.0, "max_shift": 3.0, "invariance": 1.0})
    assert budget.training_passes(spatial, n=100) == pytest.approx(100 * (1 + 10 * (budget.FORWARD + budget.TRANSFORM) + 1))
    capped = TrainConfig(model="wong", epochs=1, batch_size=100, max_batches_per_epoch=2)
    assert budget.training_passes(capped, n=1000) == 200


def test_reloaded_models_cost_nothing():
    """Chapter 05 reloads chapter 03's natural and adversarial models: they are counted once, in 03."""
    frame = budget.estimate("cpu")
    seen: set = set()
    adversarial = budget._adversarial("cpu", seen)
    tradeoff_alone = budget._tradeoff("cpu", set())
    tradeoff_after = budget._tradeoff("cpu", seen)
    train = lambda parts: sum(p.passes for p in parts if p.part == "training")
    assert train(tradeoff_after) < train(tradeoff_alone)
    S = studies.get("tradeoff").settings("cpu")
    reused = {c.slug() for c in studies.get("tradeoff").configs(S)} & \
             {c.slug() for c in studies.get("adversarial").configs(studies.get("adversarial").settings("cpu"))}
    assert reused  # natural and adversarial ε = 0.1, 0.2, five seeds each
    per_model = budget.training_passes(studies.get("adversarial").configs(studies.get("adversarial").settings("cpu"))[0])
    assert train(tradeoff_alone) - train(tradeoff_after) >= per_model
    assert frame["minutes"].gt(0).all() and set(frame["notebook"]) >= {"01_invariance_vs_robustness", "05_tradeoff"}
    assert train(adversarial) > 0


def test_h100_rates_reproduce_the_measured_chapter():
    """The calibration: chapter 03's MNIST part at paper takes the measured 4.6 h on the H100 rates."""
    minutes = budget.estimate("paper", "h100")
    chapter03 = minutes[minutes["notebook"] == "03_robustness_vs_invariance"]["minutes"].sum()
    assert chapter03 == pytest.approx(budget.H100_CHAPTER03_HOURS * 60, rel=1e-9)
    cpu, gpu = budget.throughput("cpu-2"), budget.throughput("h100")
    assert len({round(gpu[f] / cpu[f], 9) for f in cpu}) == 1  # one scale: the CPU's relative costs


def test_gpu_profile_fits_an_hour_per_chapter_and_cpu_does_not():
    gpu = budget.chapters("gpu", "h100")
    assert set(gpu.index) == {nb for s in studies.all_studies() for nb in s.notebooks if not nb.startswith("06")}
    assert (gpu <= 60).all(), gpu.to_dict()
    assert budget.chapters("gpu", "cpu-2").sum() > 3 * 90  # the gpu profile is not a cpu run


def test_gpu_profile_trains_gate_passing_recipes_on_full_mnist():
    adv = studies.get("adversarial").settings("gpu")
    assert adv.train_size is None and 0.3 in adv.eps_train and adv.epochs >= 20  # 85.8% AutoAttack at 0.3
    assert adv.eps_warmup_epochs == int(0.4 * adv.epochs)
    inv = studies.get("invariance").settings("gpu")
    assert inv.train_size is None and inv.thetas["stdcnn"] == [0, 30, 60, 90, 120, 150, 180]
    trade = studies.get("tradeoff")
    S = trade.settings("gpu")
    assert "CuSP" in S.recipes and any("joint" in r for r in S.recipes)
    stages = trade.curriculum(S)
    starts = [s[0] for s in stages] + [S.epochs]
    assert len(stages) == 3 and min(b - a for a, b in zip(starts, starts[1:])) >= 2
    # the same budget as the fixed recipes: epochs and PGD steps
    configs = trade.configs(S)
    assert {c.epochs for c in configs} == {S.epochs} and {c.attack_steps for c in configs} == {S.attack_steps}
    # chapter 05 reuses chapter 03's natural and adversarial models
    adv_slugs = {c.slug() for c in studies.get("adversarial").configs(adv)}
    reused = [c for c in configs if trade.recipe_of(c) in ("natural", "adversarial ε=0.1", "adversarial ε=0.2",
                                                           "adversarial ε=0.3")]
    assert reused and {c.slug() for c in reused} <= adv_slugs


def test_bad_profile_or_device_is_one_line():
    with pytest.raises(InvrobError, match="unknown profile 'huge'"):
        budget.estimate("huge")
    with pytest.raises(InvrobError, match="unknown device 'tpu'"):
        budget.chapters("gpu", "tpu")


def test_training_side_by_side_divides_the_cpu_training_minutes():
    """cpu trains its runs side by side (profiles.TRAIN_WORKERS): its training minutes on the 2-core
    machine are the one-at-a-time estimate over the family's measured gain; evaluation is not divided."""
    frame = budget.estimate("cpu")
    rates = budget.throughput("cpu-2")
    alone = frame["passes"] / frame["family"].map(rates) / 60
    training = frame["part"] == "training"
    assert training.any() and (~training).any()
    gain = frame.loc[training, "family"].map(budget.SIDE_BY_SIDE["cpu-2"]).fillna(1.0)
    assert (gain > 1).any()
    assert frame.loc[training, "minutes"].to_numpy() == pytest.approx(
        alone[training].to_numpy() / gain.to_numpy(), rel=1e-12)
    assert frame.loc[~training, "minutes"].to_numpy() == pytest.approx(alone[~training].to_numpy(), rel=1e-12)
    gpu = budget.estimate("gpu", "h100")  # one run at a time on a GPU: nothing divided
    assert gpu["minutes"].to_numpy() == pytest.approx(
        (gpu["passes"] / gpu["family"].map(budget.throughput("h100")) / 60).to_numpy(), rel=1e-12)
