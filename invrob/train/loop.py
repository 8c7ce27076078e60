"""The training loop: :func:`train` and its small helpers.

One step per mini-batch: the batch's loss under the config's recipe
(:func:`~invrob.train.recipe.batch_loss`), backward, an optimiser step, with the
learning rate of :func:`~invrob.train.lr_at` (per epoch, or per batch for
``onecycle``). Checkpoints are written and resumed by :mod:`invrob.train.checkpoint`.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import IMAGE_SHAPES
from ..errors import InvrobError, check_positive_int
from ..metrics import accuracy
from .checkpoint import (EpochState, _data_generator, _load_finished, _resume, _save_final, _save_last,
                         checkpoint_path, data_fingerprint)
from .config import TrainConfig, _build_model, _resolve_device, lr_at, stage_at
from .recipe import batch_loss

__all__ = ["train"]


def _check_data(config: TrainConfig, x, y, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InvrobError(f"{name} and its labels must be torch tensors (use invrob.data loaders)")
    shape = IMAGE_SHAPES[config.dataset]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape or not x.is_floating_point():
        raise InvrobError(f"{name} must be float images of shape (N, {', '.join(map(str, shape))}) "
                          f"for {config.dataset}, got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or y.dtype != torch.int64:
        raise InvrobError(f"labels for {name} must be int64 of shape ({len(x)},), got {y.dtype} {tuple(y.shape)}")
    if len(x) == 0:
        raise InvrobError(f"{name} holds no images")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise InvrobError(f"{name} must hold images in [0, 1] (models normalise inside), "
                          f"got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _batches_per_epoch(config: TrainConfig, n: int) -> int:
    full, rest = divmod(n, config.batch_size)
    # A last batch of one image would break BatchNorm in train mode: drop it.
    count = full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)
    return min(count, config.max_batches_per_epoch or count)


def _fits_on_gpu(x: torch.Tensor, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return x.element_size() * x.numel() < 0.25 * free


def _progress(enabled: bool, desc: str, total: int):
    """A tqdm bar over the run's batches (plain tqdm: text that papermill records cleanly)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True, mininterval=2.0, dynamic_ncols=True,
                disable=not enabled)


def train(config: TrainConfig, x: torch.Tensor, y: torch.Tensor, checkpoint_dir: str | Path | None = None,
          device=None, progress: bool = True, x_val: torch.Tensor | None = None,
          y_val: torch.Tensor | None = None,
          callbacks: Iterable[Callable[[int, nn.Module, dict], None]] = (),
          desc: str | None = None, checkpoint_every: int | None = None,
          batch_callbacks: Iterable[Callable[[int, int, nn.Module], None]] = ()) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``config.model`` on ``(x, y)``; return ``(model in eval mode, history)``.

    ``x``: float images in [0, 1], ``(N, C, H, W)``; ``y``: int64 labels. With a
    ``checkpoint_dir`` the run lives in ``{checkpoint_dir}/{config.slug()}``:
    a finished run (``final.pt``) is loaded and returned without training; an
    interrupted one (``last.pt``) is resumed; a corrupt checkpoint, or one written
    for another config or other data, raises one :class:`InvrobError` line naming
    the file. ``device`` overrides ``config.device``.
    ``history`` has one row per epoch: epoch, loss, train_acc (both on the
    batches as trained, i.e. rotated / adversarial), val_acc (clean accuracy on
    ``x_val`` when given), lr, [theta, eps: the stage's, with a schedule only], seconds.

    ``progress`` shows one bar for the whole run (all epochs; its postfix holds
    the epoch, loss and accuracy so far), labelled ``desc`` (default: the slug).

    ``checkpoint_every=k`` (needs a ``checkpoint_dir``) also writes ``last.pt`` after
    every k-th batch of an epoch, from which an interrupted run continues at the next
    batch, bit for bit (:mod:`invrob.train.checkpoint`). A runtime option like
    ``device``: it is not part of the config, its slug or its folder.

    ``callbacks`` are called as ``callback(epoch, model, row)`` after each
    epoch's checkpoint is written (epoch is 1-based); ``batch_callbacks`` as
    ``callback(epoch, batch, model)`` after each batch and its mid-epoch checkpoint
    (both 1-based: ``batch`` counts the epoch's batches done). An exception raised
    by a callback stops training there, and a later call resumes from the last
    checkpoint written.
    """
    if not isinstance(config, TrainConfig):
        raise InvrobError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    device = _resolve_device(config, device)
    _check_data(config, x, y)
    if (x_val is None) != (y_val is None):
        raise InvrobError("give both x_val and y_val, or neither")
    if x_val is not None:
        _check_data(config, x_val, y_val, "x_val")
    if checkpoint_every is not None:
        check_positive_int(checkpoint_every, "checkpoint_every")
        if checkpoint_dir is None:
            raise InvrobError("checkpoint_every needs a checkpoint_dir to write last.pt to")

    run = checkpoint_path(config, checkpoint_dir) if checkpoint_dir is not None else None
    data = data_fingerprint(x, y)
    if run is not None and (run / "final.pt").exists():
        model, history = _load_finished(run / "final.pt", config, data, device)
        if progress:
            print(f"{desc or config.slug()}: already trained; loaded {run / 'final.pt'}")
        return model, history

    # Fresh start: seed everything, build the model (the init draws from the
    # global RNG). On resume the states saved in last.pt then overwrite all of
    # this, so the rest of the run sees exactly the same numbers.
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    generator = _data_generator(config.seed)
    model = _build_model(config, device)
    optimizer = _make_optimizer(config, model)
    n = len(x)
    n_batches = _batches_per_epoch(config, n)
    history: list[dict] = []
    start_epoch, step, running = 0, 0, None   # running: the epoch in progress (EpochState)
    if run is not None and (run / "last.pt").exists():
        start_epoch, step, history, running = _resume(run / "last.pt", config, data, model, optimizer,
                                                      generator, device, n, n_batches)
        if progress:
            where = f" batch {running.batches}/{n_batches} of epoch {start_epoch + 1}" if running else \
                f" epoch {start_epoch}"
            print(f"{desc or config.slug()}: resuming after{where}/{config.epochs}")

    data_device = device if _fits_on_gpu(x, device) else x.device
    x_data, y_data = x.to(data_device), y.to(data_device)
    per_batch_lr = config.lr_schedule == "onecycle"
    callbacks, batch_callbacks = list(callbacks), list(batch_callbacks)
    # One bar per run, not per epoch: a notebook (and the book) shows one line per model.
    bar = _progress(progress, desc or config.slug(),
                    total=(config.epochs - start_epoch) * n_batches - (running.batches if running else 0))

    for epoch in range(start_epoch, config.epochs):
        lr = lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if running is None:
            running = EpochState.start(torch.randperm(n, generator=generator), device)
        started = time.perf_counter() - running.seconds
        model.train()
        for b in range(running.batches, n_batches):
            if per_batch_lr:
                lr = lr_at(config, epoch + (b + 1) / n_batches)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            index = running.order[b * config.batch_size:(b + 1) * config.batch_size].to(data_device)
            xb = x_data[index].to(device, non_blocking=True)
            yb = y_data[index].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits, loss = batch_loss(config, model, xb, yb, epoch=epoch, step=step, batches_per_epoch=n_batches,
                                      generator=generator)
            loss.backward()
            optimizer.step()
            step += 1
            running.add(loss, logits, yb)
            bar.update()
            if progress and (b % 20 == 0 or b == n_batches - 1):
                bar.set_postfix({"epoch": f"{epoch + 1}/{config.epochs}",
                                 "loss": f"{running.loss_sum.item() / running.seen:.4f}",
                                 "acc": f"{running.correct.item() / running.seen:.4f}"}, refresh=False)
            if checkpoint_every and running.batches % checkpoint_every == 0 and running.batches < n_batches:
                running.seconds = time.perf_counter() - started
                _save_last(run, config, epoch, step, model, optimizer, history, data, generator, device, running)
            for callback in batch_callbacks:
                callback(epoch + 1, running.batches, model)
        row = {"epoch": epoch + 1, "loss": running.loss_sum.item() / running.seen,
               "train_acc": running.correct.item() / running.seen}
        running = None
        if x_val is not None:
            row["val_acc"] = accuracy(model, x_val, y_val)
        row["lr"] = lr
        if config.schedule is not None:
            row["stage_theta"], row["stage_eps"] = stage_at(config, epoch)
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if progress:
            final = {"epoch": f"{epoch + 1}/{config.epochs}", "loss": f"{row['loss']:.4f}",
                     "acc": f"{row['train_acc']:.4f}"}
            if "val_acc" in row:
                final["val_acc"] = f"{row['val_acc']:.4f}"
            bar.set_postfix(final)
        if run is not None:
            _save_last(run, config, epoch + 1, step, model, optimizer, history, data, generator, device)
        for callback in callbacks:
            callback(epoch + 1, model, row)

    bar.close()
    if run is not None:
        _save_final(run, config, model, history, data)
    return model.eval(), pd.DataFrame(history)
