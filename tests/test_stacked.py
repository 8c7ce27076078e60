"""invrob.stacked: seeds trained as one batched model equal seeds trained one at a time.

Everything runs in float64, where the only difference between the two is the order in
which grouped and plain convolutions sum: the weights agree to :data:`TOL` (observed:
~1e-14 after six Adam / SGD steps, PGD included).
"""
from __future__ import annotations

import pytest
import torch

from invrob import stacked
from invrob.errors import InvrobError
from invrob.experiments import train_all
from invrob.stacked import train_stacked
from invrob.train import TrainConfig, checkpoint_path, train

TOL = 1e-10   # max |stacked − sequential| over every weight and buffer, float64
SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def data(mnist_train):
    x, y = mnist_train
    return x[:200].double(), y[:200]


def configs(model: str = "wong", **kw) -> list[TrainConfig]:
    """Two epochs of three batches of 32 (the last epoch's batches see a new permutation)."""
    base = dict(model=model, epochs=2, batch_size=32, max_batches_per_epoch=3, device="cpu")
    return [TrainConfig(**{**base, **kw, "seed": seed}) for seed in SEEDS]


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_matches_sequential(recipe: list[TrainConfig], x, y) -> None:
    together = train_stacked(recipe, x, y, progress=False)
    alone = [train(c, x, y, progress=False) for c in recipe]
    for (model, history), (reference, reference_history) in zip(together, alone):
        assert max_diff(model, reference) < TOL
        assert not model.training
        assert list(history.columns) == ["epoch", "loss", "train_acc", "lr", "seconds"]
        for column in ("epoch", "loss", "train_acc", "lr"):
            assert (history[column] - reference_history[column]).abs().max() < TOL, column
    # The seeds gave different nets (so equality above is per member, not a shared net).
    assert max_diff(together[0][0], together[1][0]) > 1e-3


@pytest.mark.parametrize("recipe", [
    dict(optimizer="adam", lr_schedule="onecycle"),                                    # (a) natural
    dict(optimizer="sgd", lr=0.05, theta=30.0),                                        # (b) rotation
    dict(optimizer="adam", eps=0.1, attack_steps=2, eps_warmup_epochs=1),              # (c) PGD, ramp
    dict(optimizer="adam", lr_schedule="onecycle", eps=0.1, attack_steps=1, attack_alpha=0.125),  # (d) FGSM-RS
], ids=["natural-adam-onecycle", "rotation30-sgd", "pgd2-ramp", "fgsm-rs"])
def test_stacked_equals_sequential_wong(recipe, data):
    assert_matches_sequential(configs(**recipe), *data)


def test_stacked_equals_sequential_stdcnn_batchnorm(data):
    """stdcnn has batch norm: per member under vmap (stacked running statistics), eval
    mode inside PGD, so it stacks too — running means and variances included."""
    assert_matches_sequential(configs("stdcnn", optimizer="adam", theta=30.0, eps=0.1, attack_steps=2), *data)


@pytest.mark.parametrize("recipe, message", [
    (configs("lenet"), r"model 'lenet' has layers Dropout2d"),
    (configs(schedule=((0, 0.0, 0.1),)), r"a schedule"),
    (configs(spatial_attack={"k": 2}), r"spatial adversarial training"),
    (configs()[:1] + configs(lr=0.5)[1:], r"differ only in seed, these differ in lr: 0\.01 vs 0\.5"),
    (configs()[:1] * 2, r"distinct seeds, got \[0, 0\]"),
    ([], r"non-empty list"),
])
def test_unsupported_configs_are_refused(recipe, message, data):
    with pytest.raises(InvrobError, match=message) as error:
        train_stacked(recipe, *data, progress=False)
    assert "\n" not in str(error.value)


def test_checkpoints_are_trains(data, tmp_path, monkeypatch):
    """Each member's final.pt is what train writes: a later train() loads it (no optimiser is
    ever built), and a member whose final.pt exists is loaded, not trained, by train_stacked."""
    x, y = data
    recipe = configs(eps=0.1, attack_steps=2, optimizer="adam")
    first, = train_stacked(recipe[:1], x, y, checkpoint_dir=tmp_path, progress=False)
    result = train_stacked(recipe, x, y, checkpoint_dir=tmp_path, progress=False)
    assert_same_weights(result[0][0], first[0])
    assert not list(tmp_path.glob("stacked-*"))   # the group's resume state is removed at the end

    def no_training(*args, **kwargs):
        raise AssertionError("train() retrained instead of loading final.pt")
    monkeypatch.setattr("invrob.train.loop._make_optimizer", no_training)
    for config, (model, history) in zip(recipe, result):
        assert (checkpoint_path(config, tmp_path) / "final.pt").is_file()
        loaded, loaded_history = train(config, x, y, checkpoint_dir=tmp_path, progress=False)
        assert_same_weights(loaded, model)
        assert loaded_history.equals(history)


class Interrupt(Exception):
    """Stands in for a crash after the first epoch's group checkpoint."""


def test_resume_is_bit_for_bit(data, tmp_path, monkeypatch):
    x, y = data
    recipe = configs("stdcnn", optimizer="adam", epochs=3, theta=15.0, eps=0.1, attack_steps=2,
                     eps_warmup_epochs=2)
    uninterrupted = train_stacked(recipe, x, y, progress=False)

    save = stacked.atomic_torch_save

    def save_then_crash(state, path):
        save(state, path)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise Interrupt
    monkeypatch.setattr(stacked, "atomic_torch_save", save_then_crash)
    with pytest.raises(Interrupt):
        train_stacked(recipe, x, y, checkpoint_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("stacked-*/last.pt"))) == 1
    monkeypatch.undo()
    resumed = train_stacked(recipe, x, y, checkpoint_dir=tmp_path, progress=False)
    for (model, history), (reference, reference_history) in zip(resumed, uninterrupted):
        assert_same_weights(model, reference)
        assert history.drop(columns="seconds").equals(reference_history.drop(columns="seconds"))


def test_train_all_stack_groups_by_recipe(data, tmp_path, monkeypatch):
    """stack=True: the seeds of each stackable recipe train together, the rest alone; same
    order and histories as stack=False."""
    x, y = data
    grid = [*configs(optimizer="adam")[:2], *configs("lenet")[:1], configs(optimizer="adam")[2],
            *configs(optimizer="adam", theta=30.0)[:2]]
    stacks = []

    def recording(recipe, *args, **kwargs):
        stacks.append([(c.seed, c.theta) for c in recipe])
        return train_stacked(recipe, *args, **kwargs)
    monkeypatch.setattr(stacked, "train_stacked", recording)
    fast, fast_history = train_all(grid, x, y, tmp_path / "stacked", progress=False, stack=True)
    assert stacks == [[(0, 0.0), (1, 0.0), (2, 0.0)], [(0, 30.0), (1, 30.0)]]   # lenet: alone
    slow, slow_history = train_all(grid, x, y, tmp_path / "alone", progress=False)
    assert [c for c, _ in fast] == grid
    for (_, model), (_, reference) in zip(fast, slow):
        assert max_diff(model, reference) < TOL
    assert list(fast_history.columns) == list(slow_history.columns)
    assert (fast_history["loss"] - slow_history["loss"]).abs().max() < TOL
    keys = ["epoch", "seed", "theta", "model"]
    assert fast_history[keys].equals(slow_history[keys])
