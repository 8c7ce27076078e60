"""Train independent runs side by side: one worker process per CPU core, one thread each.

A small MNIST net does not keep two cores busy. Measured on the book's 2-core CPU
(150 Adam steps of 128 images, PGD-5 adversarial training): Wong et al.'s net trains two
runs in 13.5 s as two one-thread processes side by side, against 19.6 s one after the
other with two threads (1.46×); the StdCNN 25.2 s against 35.9 s (1.42×).
``python -m benchmarks --only parallel`` measures it again. Stacking the runs into one
batched model (:mod:`invrob.stacked`) loses on such a CPU; separate processes win.

:func:`train_side_by_side` trains every config of a list that has no finished checkpoint,
``workers`` at a time, each in a spawned worker process that calls :func:`invrob.train.train`
exactly as the one-at-a-time path does: same checkpoint folder, same files, same resume. The
images are shared with the workers (shared memory), not copied. The longest runs start first
(:func:`cost`), so no worker is left with a long run at the end. The caller then loads the
finished runs (:func:`invrob.experiments.train_all` does both).

Reproducibility: every worker trains with one intra-op thread (``torch.set_num_threads(1)``),
so a run's numbers do not depend on how many cores the machine has or how many runs share it.
A run interrupted in a worker resumes bit for bit in a worker. Its numbers differ in the last
digits from the same config trained by one process with several threads (float sums in
another order): rerun the two ways, the tables agree within the regression tolerances, not bit
for bit.

Errors: a worker's :class:`~invrob.errors.InvrobError` (a corrupt checkpoint, say) reaches the
caller as the same one line; the runs not yet started are cancelled and those already running
finish and keep their checkpoints, so nothing trained is lost. A worker that dies (out of
memory, killed) is one line naming the run; the next call resumes from its last checkpoint. An
interrupt (Ctrl-C, a notebook's stop button) stops the workers at once, and a worker whose
caller is gone (a kernel restarted or killed) stops within a second; each run resumes from its
last end-of-epoch checkpoint.

The number of workers is a runtime choice, like the device, not part of any config:
:func:`set_default_workers` (``invrob.profiles.use`` sets it per profile: one worker per core
at ``cpu``, one at ``smoke``, ``gpu`` and ``paper``), ``workers=`` on the call, or the
environment variable ``INVROB_TRAIN_WORKERS`` over both. Runs on a GPU always train one at a
time. Workers are spawned processes, so a script (not a notebook) that trains side by side
must do so under ``if __name__ == "__main__":``.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InvrobError, check_positive_int
from .checkpoint import checkpoint_path
from .config import TrainConfig, _resolve_device

__all__ = ["train_side_by_side", "set_default_workers", "default_workers", "cpu_cores", "cost", "unfinished",
           "WORKERS_ENV"]

_DEFAULT: int | str = 1
WORKERS_ENV = "INVROB_TRAIN_WORKERS"
_WORKER_DATA: tuple | None = None  # (x, y) in a worker process, set by _start_worker


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_default_workers(workers: int | str) -> None:
    """The workers :func:`default_workers` gives: a count, or ``"cores"`` (one per core)."""
    global _DEFAULT
    if workers != "cores":
        check_positive_int(workers, "workers")
    _DEFAULT = workers


def default_workers() -> int:
    """The worker count set by :func:`set_default_workers` (``"cores"`` resolved); 1 unless set.

    The environment variable :data:`WORKERS_ENV` wins over both (a sweep running several notebooks
    side by side sets it to 1 in their kernels, so they do not fight over the cores)."""
    if os.environ.get(WORKERS_ENV):
        value = os.environ[WORKERS_ENV]
        if not value.isdigit() or int(value) < 1:
            raise InvrobError(f"{WORKERS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    return cpu_cores() if _DEFAULT == "cores" else int(_DEFAULT)


def cost(config: TrainConfig) -> float:
    """A run's relative cost: epochs × the forward-backward passes per batch (PGD steps + 1,
    k candidates of worst-of-k). Used only to start the longest runs first."""
    passes = 1 + (config.attack_steps if config.eps > 0 or config.schedule else 0)
    if config.spatial_attack:
        passes += config.spatial_attack.get("k", 10)
    return config.epochs * passes * (config.max_batches_per_epoch or 1.0)


def unfinished(configs: Sequence[TrainConfig], checkpoint_dir) -> list[TrainConfig]:
    """The configs without a finished run (``final.pt``) in ``checkpoint_dir``, in order."""
    return [c for c in configs if not (checkpoint_path(c, checkpoint_dir) / "final.pt").exists()]


def _start_worker(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, parent: int) -> None:
    global _WORKER_DATA
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(1)
    torch.set_default_dtype(dtype)
    _WORKER_DATA = (x, y)


def _exit_with_parent(parent: int) -> None:
    """End this worker when the process that started it (``parent``, its pid passed in: it may be
    gone before this worker has started) is gone — a notebook kernel restarted or killed: else the
    worker would go on writing the run's checkpoints beside the next kernel's."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _train_in_worker(config: TrainConfig, checkpoint_dir: str) -> str:
    from .loop import train

    x, y = _WORKER_DATA
    train(config, x, y, checkpoint_dir=checkpoint_dir, progress=False)
    return config.slug()


def train_side_by_side(configs: Sequence[TrainConfig], x: torch.Tensor, y: torch.Tensor, checkpoint_dir,
                       workers: int | None = None, progress: bool = True) -> list[TrainConfig]:
    """Train the unfinished ``configs`` into ``checkpoint_dir``, ``workers`` processes side by side
    (default :func:`default_workers`); return the configs trained here.

    Trains nothing (returns ``[]``) when fewer than two runs are left, ``workers`` is 1, or a run
    would go to a GPU: the caller's one-at-a-time loop trains those. ``progress``: one bar over
    the runs (the workers show none)."""
    from tqdm import tqdm  # text bars, as invrob.experiments

    workers = default_workers() if workers is None else check_positive_int(workers, "workers")
    if checkpoint_dir is None:
        raise InvrobError("training side by side needs a checkpoint_dir: the workers hand their runs over in it")
    todo = unfinished(configs, checkpoint_dir)
    if workers < 2 or len(todo) < 2 or any(_resolve_device(c, None).type != "cpu" for c in todo):
        return []
    for config in todo:
        config.validate()
    todo = sorted(todo, key=cost, reverse=True)  # longest first (stable: ties keep their order)
    import torch.multiprocessing as mp  # registers the reductions that share tensors with workers

    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"{len(todo)} runs, {min(workers, len(todo))} side by side",
               disable=not progress)
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                               initializer=_start_worker, initargs=(x, y, torch.get_default_dtype(), os.getpid()))
    try:
        running = {pool.submit(_train_in_worker, c, str(checkpoint_dir)): c for c in todo}
        while running:
            done, _ = wait(running, return_when=FIRST_EXCEPTION)
            for future in done:
                config = running.pop(future)
                error = future.exception()
                if error is None:
                    bar.update(1)
                    continue
                for other in running:
                    other.cancel()
                pool.shutdown(wait=True)  # the runs already going finish and keep their checkpoints
                if isinstance(error, BrokenProcessPool):
                    raise InvrobError(f"a training worker died while training {config.slug()}; rerun to "
                                      f"resume from its checkpoints in {checkpoint_dir} (in a script, call "
                                      f"training under `if __name__ == '__main__':`, which spawned workers "
                                      f"need)") from None
                raise error
    except BaseException:
        # Interrupted (Ctrl-C, a notebook's stop button): stop the workers now, not after their runs;
        # each resumes from its last end-of-epoch checkpoint (written atomically) on the next call.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return todo
