"""Training side by side (invrob.train.parallel): the same runs as one at a time, errors as one line."""
from __future__ import annotations

import pytest
import torch

from invrob import experiments as ex
from invrob import profiles
from invrob.errors import InvrobError
from invrob.train import TrainConfig
from invrob.train import parallel
from invrob.train.checkpoint import checkpoint_path


def _config(**kw) -> TrainConfig:
    base = dict(model="wong", epochs=2, batch_size=64, optimizer="adam", lr=5e-3, weight_decay=0.0,
                lr_schedule="onecycle", attack_steps=2, max_batches_per_epoch=3, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.fixture
def workers_reset(monkeypatch):
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    yield
    parallel.set_default_workers(1)


def test_side_by_side_gives_the_runs_of_one_at_a_time_and_a_worker_error_is_one_line(
        mnist_train, float64, tmp_path):
    """Workers train with one thread, as this process does under the suite (OMP_NUM_THREADS=1):
    the weights are bit for bit those of the one-at-a-time loop. A corrupt checkpoint met in a
    worker is the loop's one InvrobError line, and the runs the other worker finished are kept."""
    x, y = mnist_train[0][:512].double(), mnist_train[1][:512]
    good = [_config(seed=0), _config(seed=1, eps=0.1), _config(seed=2, theta=30.0)]
    broken = _config(seed=3)
    run = checkpoint_path(broken, tmp_path / "side")
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"not a checkpoint")
    assert [parallel.cost(c) for c in good] == [6, 18, 6]  # epochs × passes × batches: PGD-2 first
    with pytest.raises(InvrobError, match="last.pt") as caught:
        parallel.train_side_by_side([*good, broken], x, y, tmp_path / "side", workers=2, progress=False)
    assert "\n" not in str(caught.value)
    finished = [c for c in good if (checkpoint_path(c, tmp_path / "side") / "final.pt").exists()]
    assert finished == good  # queued before the broken run (longest first, ties in order): every one finished
    assert parallel.train_side_by_side(finished, x, y, tmp_path / "side", workers=2) == []  # nothing left to train

    side, side_history = ex.train_all(finished, x, y, tmp_path / "side", progress=False, workers=1)
    alone, alone_history = ex.train_all(finished, x, y, tmp_path / "alone", progress=False, workers=1)
    for (config, a), (_, b) in zip(side, alone):
        for name, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[name]), (config.slug(), name)
    assert side_history.drop(columns="seconds").equals(alone_history.drop(columns="seconds"))


def test_nothing_goes_to_workers_when_there_is_nothing_to_share(mnist_train, tmp_path):
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    one = [_config(seed=0)]
    assert parallel.train_side_by_side(one, x, y, tmp_path, workers=2) == []  # one run: trained by the caller
    assert parallel.train_side_by_side([*one, _config(seed=1)], x, y, tmp_path, workers=1) == []
    with pytest.raises(InvrobError, match="checkpoint_dir"):
        parallel.train_side_by_side(one, x, y, None, workers=2)
    with pytest.raises(InvrobError, match="workers must be a positive integer"):
        parallel.train_side_by_side(one, x, y, tmp_path, workers=0)


def test_workers_per_profile_and_from_the_environment(workers_reset, monkeypatch):
    profiles.use("cpu")
    assert parallel.default_workers() == parallel.cpu_cores()
    profiles.use("smoke")
    assert parallel.default_workers() == 1
    assert torch.get_default_dtype() == torch.float64
    torch.set_default_dtype(torch.float32)
    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.default_workers() == 3
    monkeypatch.setenv(parallel.WORKERS_ENV, "two")
    with pytest.raises(InvrobError, match="INVROB_TRAIN_WORKERS must be a positive integer, got 'two'"):
        parallel.default_workers()
    with pytest.raises(InvrobError, match="workers must be a positive integer"):
        parallel.set_default_workers(0)


def test_a_sweep_running_notebooks_side_by_side_trains_one_run_at_a_time_in_each(workers_reset):
    import queue
    import os

    from invrob.tooling.sweep import execute

    devices = queue.Queue()
    devices.put(None)  # a CPU worker
    execute._pin_worker(devices)
    assert os.environ[parallel.WORKERS_ENV] == "1"
    del os.environ[parallel.WORKERS_ENV]


@pytest.mark.slow
def test_workers_stop_when_their_caller_is_killed(tmp_path):
    """A kernel restarted mid-training must not leave workers writing checkpoints beside the next one."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from invrob.train import TrainConfig
        from invrob.train.parallel import train_side_by_side

        if __name__ == "__main__":
            x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
            configs = [TrainConfig(model="wong", epochs=10_000, batch_size=64, optimizer="adam", seed=s,
                                   device="cpu") for s in (0, 1)]
            train_side_by_side(configs, x, y, {str(tmp_path / "runs")!r}, workers=2, progress=False)
        """))
    caller = subprocess.Popen([sys.executable, str(script)])

    def children() -> set[int]:
        found = subprocess.run(["pgrep", "-f", "multiprocessing.spawn"], capture_output=True, text=True).stdout
        return {int(p) for p in found.split() if os.path.exists(f"/proc/{p}") and
                open(f"/proc/{p}/stat").read().split()[3] == str(caller.pid)}

    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while len(workers := children()) < 2 and time.time() < deadline and caller.poll() is None:
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start"
        caller.send_signal(signal.SIGKILL)  # while they are still starting: the harder case
        caller.wait()
        deadline = time.time() + 15
        while any(os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]
                  for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        alive = [p for p in workers if os.path.exists(f"/proc/{p}")
                 and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
        assert not alive, f"workers {alive} outlived their caller"
    finally:
        caller.kill()
        for p in workers:
            if os.path.exists(f"/proc/{p}"):
                os.kill(p, signal.SIGKILL)
