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
], ids=["natural", "theta30-adam", "eps0.1"])
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
    make = "TrainConfig(model='stdcnn', theta=22.5, eps=0.1, epochs=3, optimizer='adam', model_kwargs={'width': 4})"
    code = f"from invrob.train import TrainConfig; print({make}.slug())"
    env = dict(os.environ)
    slugs = set()
    for hash_seed in ("1", "2"):
        env["PYTHONHASHSEED"] = hash_seed
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        slugs.add(out.stdout.strip())
    here = TrainConfig(model="stdcnn", theta=22.5, eps=0.1, epochs=3, optimizer="adam", model_kwargs={"width": 4})
    assert slugs == {here.slug()}
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
    """The bytes of a genuine ``last.pt`` (after epoch 1 of 2) and ``final.pt``."""
    x, y = subset
    root = tmp_path_factory.mktemp("real")
    config = small(epochs=2)
    with pytest.raises(Interrupt):
        train(config, x, y, checkpoint_dir=root, progress=False, callbacks=[stop_after(1)])
    run = checkpoint_path(config, root)
    last = (run / "last.pt").read_bytes()
    train(config, x, y, checkpoint_dir=root, progress=False)
    return config, {"last.pt": last, "final.pt": (run / "final.pt").read_bytes()}


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
    error = info.value
    text = str(error)
    assert "\n" not in text and str(path) in text  # one line, naming the file
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert "delete it" in text  # and what to do about it


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


