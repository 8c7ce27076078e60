"""invrob.train: learning, bit-for-bit resume, seeding, validation, checkpoint safety."""
from __future__ import annotations

import time

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from invrob.errors import InvrobError
from invrob.train import (TrainConfig, checkpoint_path, load_checkpoint,
                          lr_at, train)


class Interrupt(Exception):
    """Stands in for a crash / Colab disconnect after an epoch's checkpoint."""


def stop_after(epoch_to_stop: int):
    def callback(epoch, model, row):
        if epoch == epoch_to_stop:
            raise Interrupt
    return callback


def small(**kw) -> TrainConfig:
    """A seconds-long LeNet run (LeNet has dropout: the global RNG matters too)."""
    base = dict(model="lenet", epochs=3, batch_size=32, lr=0.05, lr_schedule="cosine",
                max_batches_per_epoch=4)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def subset(mnist_train):
    x, y = mnist_train
    return x[:512], y[:512]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def weights_differ(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------- it learns

def test_lenet_learns_mnist(mnist_train, mnist_test):
    from invrob.metrics import accuracy

    x, y = mnist_train
    xt, yt = mnist_test
    config = TrainConfig(model="lenet", epochs=1, batch_size=64, optimizer="adam", lr=3e-3,
                         lr_schedule="constant", max_batches_per_epoch=200)
    model, history = train(config, x, y, progress=False, x_val=xt[:2000], y_val=yt[:2000])
    assert not model.training
    assert list(history.columns) == ["epoch", "loss", "train_acc", "val_acc", "lr", "seconds"]
    assert len(history) == 1 and history.epoch.tolist() == [1]
    assert history.val_acc.iloc[0] == pytest.approx(accuracy(model, xt[:2000], yt[:2000]))
    assert history.val_acc.iloc[0] > 0.90
    assert history.loss.iloc[0] < 1.0


# -------------------------------------------------------- resume is bit-for-bit

@pytest.mark.parametrize("kw", [
    dict(),                                                   # natural, SGD + momentum
    dict(theta=30.0, optimizer="adam", lr=1e-3),              # rotation angles from the generator
    dict(eps=0.1, attack_steps=2, eps_warmup_epochs=2),       # PGD random starts from the generator
], ids=["natural", "theta30-adam", "eps0.1"])
def test_interrupted_run_resumes_bit_for_bit(subset, tmp_path, kw):
    x, y = subset
    config = small(**kw)
    straight, straight_history = train(config, x, y, checkpoint_dir=tmp_path / "a", progress=False)

    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    run = checkpoint_path(config, tmp_path / "b")
    assert (run / "last.pt").exists() and not (run / "final.pt").exists()
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1

    seen = []
    resumed, resumed_history = train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False,
                                     callbacks=[lambda epoch, model, row: seen.append(epoch)])
    assert seen == [2, 3]  # only the remaining epochs ran
    assert_same_weights(straight, resumed)
    cols = ["epoch", "loss", "train_acc", "lr"]
    pd.testing.assert_frame_equal(straight_history[cols], resumed_history[cols])
    assert (run / "final.pt").exists() and not (run / "last.pt").exists()


def test_same_seed_same_weights_other_seed_differs(subset):
    x, y = subset
    a, _ = train(small(epochs=1, theta=15.0), x, y, progress=False)
    b, _ = train(small(epochs=1, theta=15.0), x, y, progress=False)
    c, _ = train(small(epochs=1, theta=15.0, seed=1), x, y, progress=False)
    assert_same_weights(a, b)
    assert weights_differ(a, c)


# ------------------------------------------------------------------ finished runs

def test_finished_run_is_loaded_not_retrained(subset, tmp_path):
    x, y = subset
    config = small(epochs=2)
    model, history = train(config, x, y, checkpoint_dir=tmp_path, progress=False)

    def must_not_train(epoch, model, row):
        raise AssertionError("a finished run was retrained")

    again, again_history = train(config, x, y, checkpoint_dir=tmp_path, progress=False,
                                 callbacks=[must_not_train])
    assert_same_weights(model, again)
    pd.testing.assert_frame_equal(history, again_history)
    assert not again.training

    loaded, loaded_config, loaded_history = load_checkpoint(checkpoint_path(config, tmp_path), device="cpu")
    assert loaded_config == config
    assert_same_weights(model, loaded)
    pd.testing.assert_frame_equal(history, loaded_history)
    assert (loaded.name, loaded.dataset) == ("lenet", "mnist")


def test_other_config_in_checkpoint_is_refused(subset, tmp_path):
    x, y = subset
    train(small(epochs=1), x, y, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(InvrobError, match="different config.*lr: 0.05 vs 0.02"):
        train(small(epochs=1, lr=0.02), x, y, checkpoint_dir=tmp_path, progress=False)
    # ... also for an interrupted run; the device is not part of a run's identity.
    with pytest.raises(Interrupt):
        train(small(epochs=2), x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    with pytest.raises(InvrobError, match="different config.*batch_size"):
        train(small(epochs=2, batch_size=16), x, y, checkpoint_dir=tmp_path / "b", progress=False)
    train(small(epochs=2, device="cpu"), x, y, checkpoint_dir=tmp_path / "b", progress=False)
    # Attack settings are unused (and ignored) when eps == 0, but not when eps > 0.
    def must_not_train(epoch, model, row):
        raise AssertionError("a finished run was retrained")

    train(small(epochs=1, attack_steps=7, attack_alpha=0.01), x, y, checkpoint_dir=tmp_path,
          progress=False, callbacks=[must_not_train])
    assert small(eps=0.1, attack_steps=3).differences(small(eps=0.1)) == ["attack_steps: 3 vs 10"]


# ------------------------------------------------------------- corrupt checkpoints

@pytest.mark.parametrize("stage", ["finished", "interrupted"])
def test_checkpoint_trained_on_other_data_is_refused(subset, tmp_path, stage):
    # TrainConfig does not hold the data: a bigger training subset under the same
    # config must not silently reload the model trained on the smaller one.
    x, y = subset
    callbacks = [stop_after(1)] if stage == "interrupted" else []
    try:
        train(small(), x[:256], y[:256], checkpoint_dir=tmp_path, progress=False, callbacks=callbacks)
    except Interrupt:
        pass
    with pytest.raises(InvrobError, match=r"trained on other data \(n 256 vs 512; label_sum .*checkpoint vs now"):
        train(small(), x, y, checkpoint_dir=tmp_path, progress=False)
    model, _ = train(small(), x[:256], y[:256], checkpoint_dir=tmp_path, progress=False)  # same data: fine
    assert not model.training


def test_corrupt_checkpoints_raise_invrob_error(subset, tmp_path):
    x, y = subset
    config = small(epochs=1)
    run = checkpoint_path(config, tmp_path)
    run.mkdir(parents=True)

    (run / "last.pt").write_bytes(b"\x00garbage, not a checkpoint" * 10)
    with pytest.raises(InvrobError, match=r"corrupt or not an invrob checkpoint.*delete it"):
        train(config, x, y, checkpoint_dir=tmp_path, progress=False)
    (run / "last.pt").unlink()

    train(config, x, y, checkpoint_dir=tmp_path, progress=False)
    final = run / "final.pt"
    data = final.read_bytes()
    final.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(InvrobError, match="corrupt or not an invrob checkpoint"):
        load_checkpoint(final)
    with pytest.raises(InvrobError, match="corrupt or not an invrob checkpoint"):
        train(config, x, y, checkpoint_dir=tmp_path, progress=False)

    torch.save({"state_dict": {}}, final)  # a torch file, but not ours
    with pytest.raises(InvrobError, match="not an invrob checkpoint"):
        load_checkpoint(final)

    torch.save({"format": "invrob-checkpoint", "version": 1, "config": config.to_dict(), "epoch": 1,
                "done": True, "model_state": {"bogus": torch.zeros(1)}, "history": []}, final)
    with pytest.raises(InvrobError, match="weights do not fit lenet"):
        load_checkpoint(final)

    with pytest.raises(InvrobError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")


# -------------------------------------------------------------------- validation

@pytest.mark.parametrize("kw, message", [
    (dict(theta=200), r"theta must be in \[0, 180\]"),
    (dict(eps=-1), "eps must be a finite number >= 0"),
    (dict(eps=2), r"eps is in \[0, 1\]"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(model="nope"), "unknown model 'nope'; valid: .*lenet"),
    (dict(model="resnet18"), "not defined for dataset 'mnist'"),
    (dict(dataset="svhn"), "unknown dataset 'svhn'"),
    (dict(optimizer="rmsprop"), "unknown optimizer"),
    (dict(lr_schedule="linear"), "unknown lr_schedule"),
    (dict(lr=0), "lr must be a finite number > 0"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
    (dict(attack_steps=0), "attack_steps must be a positive integer"),
    (dict(eps_warmup_epochs=20), "eps_warmup_epochs"),
    (dict(max_batches_per_epoch=0), "max_batches_per_epoch"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(model_kwargs={"width": object()}), "model_kwargs"),
    (dict(tag="a/b"), "tag may only hold"),
])
def test_bad_config_fails_first(kw, message):
    with pytest.raises(InvrobError, match=message):
        TrainConfig(**{"model": "lenet", **kw})


def test_bad_data_and_device_fail_first(subset):
    x, y = subset
    config = small(epochs=1)
    with pytest.raises(InvrobError, match=r"\[0, 1\]"):
        train(config, x * 255, y, progress=False)
    with pytest.raises(InvrobError, match="shape"):
        train(config, x[:, :, :20], y, progress=False)
    with pytest.raises(InvrobError, match="labels"):
        train(config, x, y[:10], progress=False)
    with pytest.raises(InvrobError, match="x_val and y_val"):
        train(config, x, y, x_val=x, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(InvrobError, match="CUDA is not available"):
            train(config, x, y, device="cuda", progress=False)


def test_config_round_trip_and_slug():
    config = TrainConfig(model="lenet", theta=30, eps=0.1, seed=0, model_kwargs={}, lr=0.01)
    assert config.slug() == config.id == "lenet-mnist-theta30-eps0.1-seed0"
    assert TrainConfig(model="stdcnn", theta=22.5, tag="wide").slug() == "stdcnn-mnist-theta22.5-eps0-seed0-wide"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert isinstance(config.theta, float)  # 30 and 30.0 are the same run
    with pytest.raises(InvrobError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})
    # Per-dataset / per-optimiser learning-rate defaults.
    assert TrainConfig(model="lenet").lr == 0.01
    assert TrainConfig(model="resnet18", dataset="cifar10").lr == 0.1
    assert TrainConfig(model="lenet", optimizer="adam").lr == 1e-3


def test_lr_schedules():
    cosine = TrainConfig(model="lenet", epochs=4, lr=0.1, lr_schedule="cosine")
    assert [lr_at(cosine, e) for e in range(4)] == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)
    step = TrainConfig(model="lenet", epochs=4, lr=0.1, lr_schedule="step")
    assert [lr_at(step, e) for e in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    constant = TrainConfig(model="lenet", epochs=4, lr=0.1, lr_schedule="constant")
    assert [lr_at(constant, e) for e in range(4)] == [0.1] * 4


