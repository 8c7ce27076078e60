"""invrob.train: learning, bit-for-bit resume, seeding, validation, checkpoint safety."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys

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
    dict(eps=0.3, attack_steps=1, attack_alpha=0.375, optimizer="adam", lr=5e-3,
         lr_schedule="onecycle", eps_warmup_epochs=1),        # fast AT: FGSM + random start, one-cycle rate
], ids=["natural", "theta30-adam", "eps0.1", "fgsm-rs-onecycle"])
def test_interrupted_run_resumes_bit_for_bit(subset, tmp_path, kw):
    x, y = subset
    config = small(**kw)
    straight, straight_history = train(config, x, y, checkpoint_dir=tmp_path / "a", progress=False)

    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    run = checkpoint_path(config, tmp_path / "b")
    assert (run / "last.pt").exists() and not (run / "final.pt").exists()
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 1
    assert "scheduler_state" not in last  # the cosine schedule resumes from lr_at alone

    seen = []
    resumed, resumed_history = train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False,
                                     callbacks=[lambda epoch, model, row: seen.append(epoch)])
    assert seen == [2, 3]  # only the remaining epochs ran
    assert_same_weights(straight, resumed)
    cols = ["epoch", "loss", "train_acc", "lr"]
    pd.testing.assert_frame_equal(straight_history[cols], resumed_history[cols])
    assert (run / "final.pt").exists() and not (run / "last.pt").exists()


def stop_at_batch(epoch_to_stop: int, batch_to_stop: int):
    def callback(epoch, batch, model):
        if (epoch, batch) == (epoch_to_stop, batch_to_stop):
            raise Interrupt
    return callback


# Rotation + PGD on a dropout LeNet (dropout masks: the global RNG), and a one-cycle rate with an
# ε warm-up (both change every batch, so a resume must know exactly which batch comes next).
MID_EPOCH_RECIPES = {
    "dropout-theta-pgd": dict(theta=30.0, eps=0.1, attack_steps=2),
    "onecycle-fgsm-rs": dict(eps=0.3, attack_steps=1, attack_alpha=0.375, optimizer="adam", lr=5e-3,
                             lr_schedule="onecycle", eps_warmup_epochs=2),
}


@pytest.mark.parametrize("kw", MID_EPOCH_RECIPES.values(), ids=MID_EPOCH_RECIPES.keys())
def test_run_interrupted_mid_epoch_resumes_at_the_next_batch_bit_for_bit(subset, tmp_path, kw):
    x, y = subset
    config = small(**kw)   # 3 epochs of 4 batches
    from invrob.models import build_model
    assert any(isinstance(m, torch.nn.Dropout2d) for m in build_model("lenet").modules())
    straight, straight_history = train(config, x, y, checkpoint_dir=tmp_path / "a", progress=False)

    # Checkpoints after batch 2 of each epoch; the crash comes after batch 3 of epoch 2, whose work is lost.
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False, checkpoint_every=2,
              batch_callbacks=[stop_at_batch(2, 3)])
    run = checkpoint_path(config, tmp_path / "b")   # checkpoint_every is not part of the run's identity
    last = torch.load(run / "last.pt", weights_only=True)
    assert (last["version"], last["epoch"], last["batch"]["index"], last["step"]) == (2, 1, 2, 6)
    assert len(last["history"]) == 1 and not (run / "final.pt").exists()

    batches = []
    resumed, resumed_history = train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False,
                                     batch_callbacks=[lambda epoch, batch, model: batches.append((epoch, batch))])
    assert batches == [(2, 3), (2, 4)] + [(3, b) for b in range(1, 5)]   # from the batch after the checkpoint
    assert_same_weights(straight, resumed)
    columns = [c for c in straight_history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(straight_history[columns], resumed_history[columns])
    assert (run / "final.pt").exists() and not (run / "last.pt").exists()


def test_checkpoint_every_is_checked_first(subset, tmp_path):
    x, y = subset
    with pytest.raises(InvrobError, match="checkpoint_every must be a positive integer"):
        train(small(), x, y, checkpoint_dir=tmp_path, checkpoint_every=0, progress=False)
    with pytest.raises(InvrobError, match="checkpoint_every needs a checkpoint_dir"):
        train(small(), x, y, checkpoint_every=2, progress=False)


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


def must_not_train(epoch, model, row):
    raise AssertionError("a finished run was retrained")


def test_configs_that_differ_get_their_own_folders(subset, tmp_path):
    x, y = subset
    base = small(epochs=1)
    others = [small(epochs=2), small(epochs=1, optimizer="adam"), small(epochs=1, lr=0.02),
              small(epochs=1, max_batches_per_epoch=3), small(epochs=1, lr_schedule="step"),
              small(epochs=1, weight_decay=0.0), small(epochs=1, eps=0.1)]
    slugs = {config.slug() for config in [base, *others]}
    assert len(slugs) == 1 + len(others)
    # Still readable: model, dataset, θ, ε, seed, then the hash.
    assert re.fullmatch(r"lenet-mnist-theta0-eps0-seed0-[0-9a-f]{8}", base.slug())
    # The same run, spelled differently, keeps its folder: the device is not part of
    # a run's identity, nor are the (unused) attack settings when eps == 0.
    for same in [small(epochs=1, device="cpu"), small(epochs=1, attack_steps=7, attack_alpha=0.01),
                 small(epochs=1, lr=0.05, theta=0, eps=0)]:
        assert same.slug() == base.slug()
    assert small(eps=0.1, attack_steps=3).slug() != small(eps=0.1).slug()

    # Two runs that differ only in epochs live side by side in one checkpoint_dir.
    one, one_history = train(base, x, y, checkpoint_dir=tmp_path, progress=False)
    two, two_history = train(small(epochs=2), x, y, checkpoint_dir=tmp_path, progress=False)
    assert len(one_history) == 1 and len(two_history) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([base.slug(), small(epochs=2).slug()])
    again, _ = train(base, x, y, checkpoint_dir=tmp_path, progress=False, callbacks=[must_not_train])
    assert_same_weights(one, again)
    # The same run, spelled differently, is reloaded, not retrained.
    train(small(epochs=1, device="cpu", attack_steps=7), x, y, checkpoint_dir=tmp_path, progress=False,
          callbacks=[must_not_train])


def test_slug_is_the_same_in_every_process():
    # The hash must not come from Python's per-process salted hash().
    # One other process, whose string hashes are salted differently from this one's (checked).
    make = "TrainConfig(model='stdcnn', theta=22.5, eps=0.1, epochs=3, optimizer='adam', model_kwargs={'width': 4})"
    code = f"from invrob.train import TrainConfig; print({make}.slug()); print(hash('invrob'))"
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                         capture_output=True, text=True, check=True)
    slug, salted = out.stdout.split()
    assert int(salted) != hash("invrob")
    here = TrainConfig(model="stdcnn", theta=22.5, eps=0.1, epochs=3, optimizer="adam", model_kwargs={"width": 4})
    assert slug == here.slug()
    assert here.digest() == TrainConfig.from_dict(here.to_dict()).digest()


def test_checkpoint_of_another_config_is_refused(subset, tmp_path):
    # Only a folder copied or renamed by hand can hold another config's run.
    x, y = subset
    train(small(epochs=1), x, y, checkpoint_dir=tmp_path, progress=False)
    shutil.copytree(checkpoint_path(small(epochs=1), tmp_path), checkpoint_path(small(epochs=1, lr=0.02), tmp_path))
    with pytest.raises(InvrobError, match="different config.*lr: 0.05 vs 0.02"):
        train(small(epochs=1, lr=0.02), x, y, checkpoint_dir=tmp_path, progress=False)
    # ... also for an interrupted run.
    with pytest.raises(Interrupt):
        train(small(epochs=2), x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    shutil.copytree(checkpoint_path(small(epochs=2), tmp_path / "b"),
                    checkpoint_path(small(epochs=2, batch_size=16), tmp_path / "b"))
    with pytest.raises(InvrobError, match="different config.*batch_size"):
        train(small(epochs=2, batch_size=16), x, y, checkpoint_dir=tmp_path / "b", progress=False)
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


@pytest.fixture(scope="module")
def real_checkpoints(subset, tmp_path_factory):
    """The bytes of a genuine ``last.pt`` (after epoch 1 of 2), a mid-epoch one (after batch 2
    of epoch 2, resumed from the first) and ``final.pt``."""
    x, y = subset
    root = tmp_path_factory.mktemp("real")
    config = small(epochs=2)
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=root, progress=False, callbacks=[stop_after(1)])
    run = checkpoint_path(config, root)
    last = (run / "last.pt").read_bytes()
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=root, progress=False, checkpoint_every=2,
              batch_callbacks=[stop_at_batch(2, 2)])
    mid = (run / "last.pt").read_bytes()
    train(config, x, y, checkpoint_dir=root, progress=False)
    return config, {"last.pt": last, "mid-epoch last.pt": mid, "final.pt": (run / "final.pt").read_bytes()}


def _edited(**changes):
    """A genuine checkpoint with some entries replaced (``None``: removed)."""
    def write(data: bytes, path):
        checkpoint = torch.load(io.BytesIO(data), weights_only=True)
        for key, value in changes.items():
            if value is None:
                checkpoint.pop(key)
            else:
                checkpoint[key] = value
        torch.save(checkpoint, path)
    return write


CORRUPTIONS = {
    "truncated": (lambda data, path: path.write_bytes(data[: len(data) // 2]), "corrupt or not an invrob"),
    "random-bytes": (lambda data, path: path.write_bytes(
        bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())),
        "corrupt or not an invrob"),
    "garbage-text": (lambda data, path: path.write_bytes(b"\x00garbage, not a checkpoint" * 10), "corrupt"),
    "empty": (lambda data, path: path.write_bytes(b""), "corrupt or not an invrob"),
    "foreign-torch-file": (lambda data, path: torch.save({"state_dict": {}}, path), "no invrob checkpoint header"),
    "plain-tensor": (lambda data, path: torch.save(torch.zeros(3), path), "no invrob checkpoint header"),
    "other-version": (_edited(version=99), "format version 99"),
    "missing-keys": (_edited(history=None, model_state=None), "missing model_state, history"),
    "bad-config": (_edited(config={"model": "nope"}), "bad config: unknown model 'nope'"),
    "config-not-a-dict": (_edited(config=[1, 2]), "bad config"),
    "bad-epoch": (_edited(epoch="1"), "epoch '1' is not an integer"),
    "epoch-too-big": (_edited(epoch=7), r"epoch 7 is not an integer in \[0, 2\]"),
    "bad-history": (_edited(history=5), "history is not a list"),
    "bad-model-state": (_edited(model_state=[1]), "model_state is not a state dict"),
    "wrong-weights": (_edited(model_state={"bogus": torch.zeros(1)}), "weights do not fit lenet"),
    "bad-data": (_edited(data=[1]), "data is not a data fingerprint"),
}
RESUME_CORRUPTIONS = {
    "no-rng-state": (_edited(generator_state=None), "missing generator_state"),
    "bad-step": (_edited(step=-1), "step -1 is not an integer"),
    "bad-optimizer": (_edited(optimizer_state={"state": {}, "param_groups": []}), "bad optimizer or RNG state"),
    "bad-rng": (_edited(generator_state=torch.zeros(3)), "bad optimizer or RNG state"),
}
CASES = ([(name, "final.pt", how) for name in CORRUPTIONS for how in ("load_checkpoint", "train")]
         + [(name, "last.pt", how) for name in CORRUPTIONS for how in ("load_checkpoint", "train")]
         + [(name, "last.pt", "train") for name in RESUME_CORRUPTIONS])


@pytest.mark.parametrize("corruption, file, how", CASES, ids=["-".join(case) for case in CASES])
def test_corrupt_checkpoint_is_one_clear_error(subset, real_checkpoints, tmp_path, corruption, file, how):
    x, y = subset
    config, genuine = real_checkpoints
    corrupt, message = {**CORRUPTIONS, **RESUME_CORRUPTIONS}[corruption]
    path = checkpoint_path(config, tmp_path) / file
    path.parent.mkdir(parents=True)
    corrupt(genuine[file], path)
    with pytest.raises(InvrobError, match=message) as info:
        if how == "train":
            train(config, x, y, checkpoint_dir=tmp_path, progress=False, callbacks=[must_not_train])
        else:
            load_checkpoint(path, device="cpu")
    assert_one_clear_line(info.value, path)


def assert_one_clear_line(error: InvrobError, path) -> None:
    text = str(error)
    assert "\n" not in text and str(path) in text  # one line, naming the file
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert "delete it" in text  # and what to do about it


def _edited_batch(**changes):
    """A genuine mid-epoch checkpoint with entries of its epoch state replaced."""
    def write(data: bytes, path):
        batch = torch.load(io.BytesIO(data), weights_only=True)["batch"]
        _edited(batch={**batch, **changes})(data, path)
    return write


MID_EPOCH_CORRUPTIONS = {
    "truncated": CORRUPTIONS["truncated"],
    "no-epoch-state": (_edited(batch=None), "missing batch"),
    "epoch-state-not-a-dict": (_edited(batch=[2]), "batch is not a mid-epoch state"),
    "batch-index-at-the-end": (_edited_batch(index=4), r"batch index 4 is not an integer in \[1, 4\)"),
    "order-not-a-permutation": (_edited_batch(order=torch.zeros(512, dtype=torch.int64)), "not a permutation"),
    "order-too-short": (_edited_batch(order=torch.arange(256)), "not a permutation of the 512"),
    "bad-sums": (_edited_batch(loss_sum=torch.zeros(2)), "running loss or accuracy sum"),
    "bad-seconds": (_edited_batch(seconds=-1.0), "seconds -1.0"),
    "past-the-last-epoch": (_edited(epoch=2), "mid-epoch checkpoint after epoch 2 of 2"),
}


@pytest.mark.parametrize("corruption", MID_EPOCH_CORRUPTIONS)
def test_corrupt_mid_epoch_checkpoint_is_one_clear_error(subset, real_checkpoints, tmp_path, corruption):
    x, y = subset
    config, genuine = real_checkpoints
    corrupt, message = MID_EPOCH_CORRUPTIONS[corruption]
    path = checkpoint_path(config, tmp_path) / "last.pt"
    path.parent.mkdir(parents=True)
    corrupt(genuine["mid-epoch last.pt"], path)
    with pytest.raises(InvrobError, match=message) as info:
        train(config, x, y, checkpoint_dir=tmp_path, progress=False, callbacks=[must_not_train],
              batch_callbacks=[lambda epoch, batch, model: pytest.fail("trained from a corrupt checkpoint")])
    assert_one_clear_line(info.value, path)


def test_genuine_mid_epoch_checkpoint_loads_and_resumes(subset, real_checkpoints, tmp_path):
    # The edits above start from a file that works: load_checkpoint reads it (the weights
    # part-way through epoch 2, the history of epoch 1), and train finishes the run from it.
    x, y = subset
    config, genuine = real_checkpoints
    path = checkpoint_path(config, tmp_path) / "last.pt"
    path.parent.mkdir(parents=True)
    _edited()(genuine["mid-epoch last.pt"], path)
    _, loaded, history = load_checkpoint(path, device="cpu")
    assert loaded == config and history.epoch.tolist() == [1]
    batches = []
    _, history = train(config, x, y, checkpoint_dir=tmp_path, progress=False,
                       batch_callbacks=[lambda epoch, batch, model: batches.append((epoch, batch))])
    assert batches == [(2, 3), (2, 4)] and history.epoch.tolist() == [1, 2]


def test_genuine_checkpoints_survive_the_round_trip(subset, real_checkpoints, tmp_path):
    # The edits above start from files that load: the checks do not refuse good ones.
    x, y = subset
    config, genuine = real_checkpoints
    for file in ("last.pt", "final.pt"):
        path = tmp_path / file / file
        path.parent.mkdir()
        _edited()(genuine[file], path)
        model, loaded, history = load_checkpoint(path, device="cpu")
        assert loaded == config and len(history) == (1 if file == "last.pt" else 2)


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(InvrobError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(InvrobError, match="holds neither final.pt nor last.pt"):
        load_checkpoint(tmp_path)


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
    assert config.slug() == config.id
    assert re.fullmatch(r"lenet-mnist-theta30-eps0\.1-seed0-[0-9a-f]{8}", config.slug())
    assert config.slug().endswith(config.digest()[:8]) and re.fullmatch(r"[0-9a-f]{64}", config.digest())
    wide = TrainConfig(model="stdcnn", theta=22.5, tag="wide")
    assert re.fullmatch(r"stdcnn-mnist-theta22\.5-eps0-seed0-wide-[0-9a-f]{8}", wide.slug())
    assert wide.slug() != TrainConfig(model="stdcnn", theta=22.5).slug()
    # One spelling per value: 30 == 30.0, -0.0 == 0.0, a default lr == the same lr given.
    assert TrainConfig(model="lenet", theta=-0.0, eps=-0.0).slug() == TrainConfig(model="lenet").slug()
    assert TrainConfig(model="lenet", theta=30.0, eps=0.1, lr=0.01).slug() == config.slug()
    assert TrainConfig(model="lenet", lr=0.01).slug() == TrainConfig(model="lenet").slug()
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
    # one-cycle (Wong et al.'s fast adversarial training): 0 → lr at 2/5 of the run → 0, linear, per batch
    onecycle = TrainConfig(model="wong", epochs=10, lr=5e-3, lr_schedule="onecycle", optimizer="adam")
    at = [0.0, 1.0, 2.0, 4.0, 5.5, 7.0, 10.0, 2.5, 9.99]
    want = [0.0, 1.25e-3, 2.5e-3, 5e-3, 3.75e-3, 2.5e-3, 0.0, 3.125e-3, 5e-3 * 0.01 / 6]
    assert [lr_at(onecycle, e) for e in at] == pytest.approx(want, abs=1e-12)


def test_onecycle_rate_changes_every_batch(subset, monkeypatch):
    """The loop sets lr_at(epoch + (b + 1) / B) before batch b: the optimiser sees every rate."""
    x, y = subset
    config = small(model="wong", optimizer="adam", lr=5e-3, lr_schedule="onecycle", epochs=2)
    seen = []
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    _, history = train(config, x, y, progress=False)
    batches = 4  # small(): max_batches_per_epoch
    expected = [lr_at(config, e + (b + 1) / batches) for e in range(2) for b in range(batches)]
    assert seen == pytest.approx(expected) and len(set(seen)) >= 6  # up to the peak and down: not per epoch
    assert history["lr"].tolist() == pytest.approx([expected[batches - 1], expected[-1]])


def test_fgsm_with_random_start_stays_in_the_ball_and_the_box(subset):
    """Fast adversarial training's examples (attack_steps=1, α = 1.25 ε from a uniform start,
    Wong et al. 2020): within ε of the clean image, inside [0, 1], and not the clean image."""
    from invrob.attacks import pgd_training_examples
    from invrob.models import build_model

    x, y = subset[0][:256], subset[1][:256]
    torch.manual_seed(0)
    model = build_model("wong")
    eps = 0.3
    x_adv = pgd_training_examples(model, x, y, eps, 1.25 * eps, 1, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).abs()
    assert float(delta.max()) <= eps + 1e-6 and float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(delta.mean()) > 0.05  # it moved: a random start plus one large step
    # the step reaches the ball's edge wherever the box allows (|start + α sign g| ≥ α − ε = ε/4 ... ε)
    inside_box = (x > eps) & (x < 1 - eps)
    assert float(delta[inside_box].min()) >= 0.25 * eps - 1e-6




def test_training_attack_by_registry_name_is_pgd_training_examples(subset):
    """The recipe's ℓ∞ step is attack "pgd-train": Madry's last iterate, the numbers of
    pgd_training_examples exactly (from the same generator state) — not the evaluation PGD's
    "pgd", which keeps each sample's first misclassified iterate."""
    from invrob import attacks
    from invrob.attacks import pgd_training_examples
    from invrob.models import build_model

    x, y = subset[0][:64], subset[1][:64]
    torch.manual_seed(0)
    model = build_model("wong")
    expected = pgd_training_examples(model, x, y, 0.3, 0.1, 3, generator=torch.Generator().manual_seed(1))
    same = dict(eps=0.3, alpha=0.1, steps=3)
    attack = attacks.build("pgd-train", model, **same, generator=torch.Generator().manual_seed(1))
    with attacks.attack_mode(model):
        assert torch.equal(attack.forward(x, y), expected)
    evaluation = attacks.build("pgd", model, **same, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(evaluation(x, y), expected)


# ------------------------------------------------------- recipes: schedules (CuSP), spatial training

from invrob.train import CUSP_LR_MILESTONES, CUSP_SCHEDULE, stage_at  # noqa: E402

# Digests of configs written before the recipe fields existed (recorded with the code at
# that time): new fields at their default must leave every hash, slug and folder alone.
PINNED_DIGESTS = [
    (dict(model="lenet"), "3c3bff482130e706d0beab33c085f42b67b6cddc9415e16c22474bff2d785a4c"),
    (dict(model="stdcnn", theta=22.5, eps=0.1, epochs=3, optimizer="adam", model_kwargs={"width": 4}),
     "271d744f558f74fcc9bee0d0a0b5b82fbcb7e393b2049e1a7d3322896d7ab475"),
    (dict(model="lenet", epochs=12, lr_schedule="step", eps=0.3, attack_steps=40, attack_alpha=0.01, seed=3),
     "5e2e2e62e545bd498eb416a9463219dcc38831600392c34a67feab826057b81b"),
    (dict(model="resnet18", dataset="cifar10", theta=180, tag="paper"),
     "9b4239ed9c31e82a0c450f5504187d13c25458c40bbabf180cb62113f3be8393"),
    (dict(model="lenet", epochs=1, batch_size=32, max_batches_per_epoch=8, eps=0.1, attack_steps=2,
          eps_warmup_epochs=1, theta=15.0), "7f6a111f6089edfd09424323bae5d0828c18c4ebd09ba2c6f5893555d436c9e4"),
]


@pytest.mark.parametrize("kw, digest", PINNED_DIGESTS, ids=[str(i) for i in range(len(PINNED_DIGESTS))])
def test_existing_configs_keep_their_digest(kw, digest):
    config = TrainConfig(**kw)
    assert config.digest() == digest
    assert TrainConfig(**kw, schedule=None, spatial_attack=None, lr_milestones=None).digest() == digest
    assert not {"schedule", "spatial_attack", "lr_milestones"} & set(config.identity())
    # An old checkpoint's config dict (no recipe fields) reads back as the same config.
    old = {k: v for k, v in config.to_dict().items() if k not in ("schedule", "spatial_attack", "lr_milestones")}
    assert TrainConfig.from_dict(old) == config


def test_cusp_schedule_stages_and_lr_steps():
    """The authors' loop, ``for epoch in range(1, 121)``: stage 1 while ``epoch < 75``, stage 2 while
    ``epoch < 90``, stage 3 after; lr 0.1, ×0.1 from epochs 75, 90 and 100. Epoch e there is e − 1 here."""
    cusp = TrainConfig(model="resnet18", dataset="cifar10", epochs=120, lr=0.1, lr_schedule="step",
                       lr_milestones=CUSP_LR_MILESTONES, schedule=CUSP_SCHEDULE, attack_alpha=2 / 255)
    theirs = {1: (120.0, 2 / 255), 2: (150.0, 4 / 255), 3: (180.0, 8 / 255)}
    for epoch in range(1, 121):  # their epoch numbers
        stage = 1 if epoch < 75 else 2 if epoch < 90 else 3
        lr = 0.1 * 0.1 ** sum(epoch >= m for m in (75, 90, 100))
        assert stage_at(cusp, epoch - 1) == theirs[stage] and lr_at(cusp, epoch - 1) == pytest.approx(lr)
    stages = [stage_at(cusp, e) for e in range(120)]
    assert [stages.count(s) for s in theirs.values()] == [74, 15, 31]
    # θ and ε hold the final stage's values (the slug says so, and that it is scheduled).
    assert (cusp.theta, cusp.eps) == (180.0, 8 / 255) and cusp.adversarial
    assert re.fullmatch(r"resnet18-cifar10-theta180-eps0\.0313725-sched-seed0-[0-9a-f]{8}", cusp.slug())
    assert cusp.alpha_for(2 / 255) == cusp.alpha_for(8 / 255) == 2 / 255   # the authors' fixed step
    # Lists (as JSON would give them) are the same config, hash and slug.
    same = TrainConfig.from_dict(json_round_trip(cusp.to_dict()))
    assert same == cusp and same.slug() == cusp.slug()
    fixed = TrainConfig(model="resnet18", dataset="cifar10", epochs=120, lr=0.1, lr_schedule="step",
                        lr_milestones=CUSP_LR_MILESTONES, theta=180, eps=8 / 255, attack_alpha=2 / 255)
    assert fixed.slug() != cusp.slug()
    # Without a schedule stage_at is the fixed (θ, ε).
    assert stage_at(fixed, 3) == (180.0, 8 / 255)


def json_round_trip(values):
    import json
    return json.loads(json.dumps(values))


def test_schedule_switches_at_the_right_epochs(subset):
    x, y = subset
    schedule = ((0, 10.0, 0.0), (2, 30.0, 0.05), (4, 60.0, 0.1))
    config = small(epochs=5, schedule=schedule, attack_steps=1, max_batches_per_epoch=2)
    _, history = train(config, x, y, progress=False)
    assert list(history.columns) == ["epoch", "loss", "train_acc", "lr", "stage_theta", "stage_eps", "seconds"]
    assert history.stage_theta.tolist() == [10.0, 10.0, 30.0, 30.0, 60.0]
    assert history.stage_eps.tolist() == [0.0, 0.0, 0.05, 0.05, 0.1]
    # The studies' tables tag each model by its config; the stages survive beside the tags.
    from invrob.experiments import train_all
    _, tagged = train_all([config], x, y, checkpoint_dir=None, progress=False)
    assert tagged.theta.tolist() == [60.0] * 5 and tagged.eps_train.tolist() == [0.1] * 5
    assert tagged.stage_theta.tolist() == [10.0, 10.0, 30.0, 30.0, 60.0]


def test_schedule_stages_really_drive_training(subset):
    # Stage 0 of a schedule trains exactly like the fixed config with its (θ, ε): same weights
    # after the epochs it covers, different ones after the switch.
    x, y = subset
    snapshots = {}

    def keep(name):
        def callback(epoch, model, row):
            snapshots[(name, epoch)] = {k: v.clone() for k, v in model.state_dict().items()}
        return callback

    common = dict(epochs=3, attack_steps=2, max_batches_per_epoch=3)
    train(small(**common, schedule=((0, 30.0, 0.1), (2, 90.0, 0.2))), x, y, progress=False,
          callbacks=[keep("sched")])
    train(small(**common, theta=30.0, eps=0.1), x, y, progress=False, callbacks=[keep("fixed")])
    for key in snapshots[("sched", 2)]:
        assert torch.equal(snapshots[("sched", 2)][key], snapshots[("fixed", 2)][key]), key
    assert any(not torch.equal(snapshots[("sched", 3)][k], snapshots[("fixed", 3)][k])
               for k in snapshots[("sched", 3)])
    # One stage from epoch 0 is the fixed recipe itself, bit for bit.
    one, _ = train(small(**common, schedule=((0, 30.0, 0.1),)), x, y, progress=False)
    fixed, _ = train(small(**common, theta=30.0, eps=0.1), x, y, progress=False)
    assert_same_weights(one, fixed)


@pytest.mark.parametrize("stop", [1, 3], ids=["mid-stage-0", "mid-stage-1"])
def test_scheduled_run_resumes_mid_stage_bit_for_bit(subset, tmp_path, stop):
    x, y = subset
    config = small(epochs=5, schedule=((0, 15.0, 0.05), (2, 45.0, 0.1), (4, 90.0, 0.15)), attack_steps=2,
                   max_batches_per_epoch=3)
    straight, straight_history = train(config, x, y, checkpoint_dir=tmp_path / "a", progress=False)
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(stop)])
    run = checkpoint_path(config, tmp_path / "b")
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == stop
    seen = []
    resumed, resumed_history = train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False,
                                     callbacks=[lambda epoch, model, row: seen.append(epoch)])
    assert seen == list(range(stop + 1, 6))
    assert_same_weights(straight, resumed)
    cols = ["epoch", "loss", "train_acc", "lr", "stage_theta", "stage_eps"]
    pd.testing.assert_frame_equal(straight_history[cols], resumed_history[cols])
    # The finished run is found again under the same folder, config read back equal.
    _, loaded, _ = load_checkpoint(run, device="cpu")
    assert loaded == config and loaded.schedule == config.schedule


def test_worst_of_k_spatial_training(subset, tmp_path):
    x, y = subset
    config = small(epochs=2, spatial_attack={"k": 3, "max_angle": 20}, max_batches_per_epoch=3)
    assert config.spatial_attack == {"k": 3, "max_angle": 20.0, "max_shift": 3.0}
    assert re.fullmatch(r"lenet-mnist-theta0-eps0-worst3-seed0-[0-9a-f]{8}", config.slug())
    assert config.slug() != small(epochs=2, spatial_attack={"k": 4, "max_angle": 20},
                                  max_batches_per_epoch=3).slug()
    # Resumes bit for bit (its transformations come from the run's generator) ...
    straight, _ = train(config, x, y, checkpoint_dir=tmp_path / "a", progress=False)
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    resumed, history = train(config, x, y, checkpoint_dir=tmp_path / "b", progress=False)
    assert_same_weights(straight, resumed)
    assert list(history.columns) == ["epoch", "loss", "train_acc", "lr", "seconds"]
    # ... and really trains on transformed images: not the natural run's weights.
    natural, _ = train(small(epochs=2, max_batches_per_epoch=3), x, y, progress=False)
    assert weights_differ(straight, natural)


def test_worst_of_k_training_uses_the_worst_transformation(subset, monkeypatch):
    # The training batch is the WorstOfK attack's output (the batch the optimiser sees).
    from invrob.attacks import WorstOfK
    x, y = subset
    calls = []
    original = WorstOfK.perturb

    def spy(self, xb, yb, eps=None):
        out = original(self, xb, yb, eps)
        calls.append((self.k, self.max_angle, self.max_shift, len(xb), self.model.training))
        return out

    monkeypatch.setattr(WorstOfK, "perturb", spy)   # the recipe builds it as attack "worst-of-k"
    train(small(epochs=1, spatial_attack={"k": 2, "max_shift": 1.5}, max_batches_per_epoch=2), x, y, progress=False)
    assert calls == [(2, 30.0, 1.5, 32, False)] * 2   # once per batch, in eval mode


def test_invariance_regulariser(subset, tmp_path, monkeypatch):
    """Yang et al.'s term: λ · mean ‖f(x) − f(x')‖²/C on the untransformed batch and its worst transform."""
    import invrob.train.recipe as recipe   # where the loss looks the penalty up
    x, y = subset
    plain = small(epochs=2, spatial_attack={"k": 3}, max_batches_per_epoch=3)
    zero = small(epochs=2, spatial_attack={"k": 3, "invariance": 0.0}, max_batches_per_epoch=3)
    regularised = small(epochs=2, spatial_attack={"k": 3, "invariance": 2.0}, max_batches_per_epoch=3)
    assert zero == plain and zero.digest() == plain.digest()  # λ = 0 is the plain recipe, same checkpoint
    assert regularised.spatial_attack["invariance"] == 2.0 and "-worst3-reg-" in regularised.slug()
    logits, other = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    assert recipe.invariance_penalty(logits, other).item() == pytest.approx(((4 / 2) + (10 / 2)) / 2)
    # the penalty sees the untransformed batch and the transformed one the loss is taken on
    seen = []
    original = recipe.invariance_penalty
    monkeypatch.setattr(recipe, "invariance_penalty",
                        lambda a, b: seen.append((a.shape, b.shape)) or original(a, b))
    straight, _ = train(regularised, x, y, checkpoint_dir=tmp_path / "a", progress=False)
    assert seen == [((32, 10), (32, 10))] * 6  # every batch: 2 epochs × 3 batches
    unregularised, _ = train(plain, x, y, progress=False)
    assert weights_differ(straight, unregularised)
    with pytest.raises(Interrupt):  # resumes bit for bit like the plain recipe
        train(regularised, x, y, checkpoint_dir=tmp_path / "b", progress=False, callbacks=[stop_after(1)])
    resumed, _ = train(regularised, x, y, checkpoint_dir=tmp_path / "b", progress=False)
    assert_same_weights(straight, resumed)


@pytest.mark.parametrize("kw, message", [
    (dict(spatial_attack={"invariance": -1.0}), r"spatial_attack\['invariance'\] must be a finite number >= 0"),
    (dict(spatial_attack={"invariance": float("nan")}), r"spatial_attack\['invariance'\]"),
    (dict(schedule=((0, 30, 0.1), (0, 60, 0.2))), "sorted by start epoch"),
    (dict(schedule=((0, 30, 0.1), (2, 60, 0.2), (1, 90, 0.3))), "sorted by start epoch"),
    (dict(schedule=((1, 30, 0.1),)), "first schedule stage must start at epoch 0"),
    (dict(schedule=((0, 200, 0.1),)), r"theta of schedule stage 0 must be in \[0, 180\]"),
    (dict(schedule=((0, 30, -0.1),)), "eps of schedule stage 0 must be a finite number >= 0"),
    (dict(schedule=((0, 30, 2.0),)), r"eps of schedule stage 0 is in \[0, 1\]"),
    (dict(schedule=((0, 30, 0.1), (10, 60, 0.2))), r"starts at epoch 10: must be an integer in \[0, epochs=10\)"),
    (dict(schedule=((0, 30),)), r"stage 0 must be \(start_epoch, theta, eps\)"),
    (dict(schedule=()), "non-empty"),
    (dict(schedule=((0.5, 30, 0.1),)), "starts at epoch 0.5"),
    (dict(schedule=((0, 30, 0.1),), theta=45), "theta and eps come from its stages"),
    (dict(schedule=((0, 30, 0.1),), eps_warmup_epochs=2), "eps_warmup_epochs must be 0 with a schedule"),
    (dict(spatial_attack={"k": 0}), r"spatial_attack\['k'\] must be a positive integer"),
    (dict(spatial_attack={"angle": 30}), "spatial_attack must be a dict with keys"),
    (dict(spatial_attack={"max_angle": 270}), r"spatial_attack\['max_angle'\] must be in \[0, 180\]"),
    (dict(spatial_attack={"max_shift": -1}), r"spatial_attack\['max_shift'\]"),
    (dict(spatial_attack=10), "spatial_attack must be a dict"),
    (dict(lr_milestones=(5,)), "lr_milestones need lr_schedule='step'"),
    (dict(lr_milestones=(5, 3), lr_schedule="step"), "lr_milestones must be increasing"),
    (dict(lr_milestones=(12,), lr_schedule="step"), "lr_milestones must be increasing"),
])
def test_bad_recipe_fails_first(kw, message):
    with pytest.raises(InvrobError, match=message) as info:
        TrainConfig(**{"model": "lenet", **kw})
    assert "\n" not in str(info.value)
