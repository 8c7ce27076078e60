"""Checkpoints: where a run lives, what its files hold, and how a run resumes from them.

A run with a ``checkpoint_dir`` lives in ``{checkpoint_dir}/{slug}`` (:func:`checkpoint_path`;
the slug ends in a hash of the whole config). ``last.pt``, written atomically at the
end of every epoch, holds the weights, the optimiser, every RNG state (the run's data
generator, torch's global RNG — weight init and dropout —, numpy's, Python's, CUDA's)
and the history, so an interrupted run resumes where it stopped and — on the CPU —
ends with weights bit-for-bit equal to those of an uninterrupted run (the learning
rate needs no saved state: it is a pure function of the epoch, :func:`~invrob.train.lr_at`).

With ``train(..., checkpoint_every=k)`` ``last.pt`` is also written after every k-th
batch of an epoch (not after its last one: the end-of-epoch file follows at once).
Such a mid-epoch file carries format version :data:`MID_EPOCH_VERSION` and the
epoch's running state, :class:`EpochState` (its shuffling order, the batches done,
the running loss / accuracy sums, the time spent), so the resumed run continues at
the next batch, again bit for bit. End-of-epoch and final files keep format version
:data:`CHECKPOINT_VERSION` (so an older invrob still reads them, and refuses a
mid-epoch file by its version instead of misreading it); this one reads both.

A finished run is stored as ``final.pt`` (weights, config, history) and is loaded,
not retrained. Every file records a fingerprint of its training data
(:func:`data_fingerprint`). A missing, truncated, foreign or tampered file, or one
written for another config or other data, is one :class:`~invrob.errors.InvrobError`
line naming the file.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import InvrobError
from ..utils import atomic_torch_save
from .config import TrainConfig, _build_model, _resolve_device

__all__ = ["checkpoint_path", "load_checkpoint", "data_fingerprint", "EpochState", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION", "MID_EPOCH_VERSION"]

CHECKPOINT_FORMAT = "invrob-checkpoint"
CHECKPOINT_VERSION = 1
#: The version of a mid-epoch ``last.pt``: version 1 plus the epoch's running state ("batch").
MID_EPOCH_VERSION = 2
_KEYS = ("format", "version", "config", "epoch", "done", "model_state", "history")
_RESUME_KEYS = ("optimizer_state", "step", "generator_state",
                "torch_rng_state", "numpy_rng_state", "python_rng_state")
_MID_EPOCH_KEYS = ("batch",)


def checkpoint_path(config: TrainConfig, checkpoint_dir: str | Path) -> Path:
    """The run's folder ``{checkpoint_dir}/{slug}`` (holds ``last.pt`` / ``final.pt``);
    one folder per config (see :meth:`TrainConfig.slug`)."""
    return Path(checkpoint_dir) / config.slug()


# ------------------------------------------------------------------------- RNG state

def _data_generator(seed: int) -> torch.Generator:
    # A stream apart from the global RNG's (which is seeded with ``seed`` itself
    # and draws the initial weights), so shuffling is not correlated with init.
    derived = int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(derived)


def _rng_states(generator: torch.Generator, device: torch.device) -> dict:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "generator_state": generator.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        # Plain types / tensors only, so ``weights_only=True`` can read them back.
        "numpy_rng_state": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                            "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python_rng_state": random.getstate(),
    }


def _set_rng_states(checkpoint: dict, generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(checkpoint["generator_state"])
    torch.set_rng_state(checkpoint["torch_rng_state"])
    if device.type == "cuda" and checkpoint.get("cuda_rng_state") is not None:
        torch.cuda.set_rng_state(checkpoint["cuda_rng_state"], device)
    state = checkpoint["numpy_rng_state"]
    np.random.set_state((state["name"], state["keys"].numpy().astype(np.uint32),
                         state["pos"], state["has_gauss"], state["gauss"]))
    version, internal, gauss = checkpoint["python_rng_state"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------ the epoch in progress

@dataclass
class EpochState:
    """One epoch as far as it has run: what a mid-epoch checkpoint holds besides the weights,
    the optimiser and the RNG states."""

    order: torch.Tensor      # the epoch's shuffling: a permutation of the training set (CPU, int64)
    loss_sum: torch.Tensor   # Σ over the batches done of loss × batch size (0-d, on the device)
    correct: torch.Tensor    # images of those batches classified correctly (0-d int64, on the device)
    batches: int = 0         # batches done
    seen: int = 0            # images in them
    seconds: float = 0.0     # time spent on the epoch up to the checkpoint

    @classmethod
    def start(cls, order: torch.Tensor, device: torch.device) -> "EpochState":
        """A new epoch that visits the training set in ``order``."""
        return cls(order, torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count one batch: its mean loss, its logits and labels."""
        self.batches += 1
        self.seen += len(y)
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()

    def to_dict(self) -> dict:
        return {"index": self.batches, "order": self.order, "loss_sum": self.loss_sum,
                "correct": self.correct, "seen": self.seen, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, state: Any, path: Path, n: int, n_batches: int, device: torch.device) -> "EpochState":
        """The state saved by :meth:`to_dict`, checked against a training set of ``n`` images
        in ``n_batches`` batches; anything else is one InvrobError naming ``path``."""
        fields = ("index", "order", "loss_sum", "correct", "seen", "seconds")
        if not isinstance(state, dict) or set(state) != set(fields):
            raise _corrupt(path, "batch is not a mid-epoch state")
        index, order, loss_sum, correct, seen, seconds = (state[k] for k in fields)
        if not _is_count(index) or not 0 < index < n_batches:
            raise _corrupt(path, f"batch index {index!r} is not an integer in [1, {n_batches})")
        if not (isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.shape == (n,)
                and torch.equal(order.sort().values, torch.arange(n))):
            raise _corrupt(path, f"the epoch's order is not a permutation of the {n} training images")
        if not (isinstance(loss_sum, torch.Tensor) and loss_sum.dim() == 0 and loss_sum.is_floating_point()
                and isinstance(correct, torch.Tensor) and correct.dim() == 0 and correct.dtype == torch.int64):
            raise _corrupt(path, "the running loss or accuracy sum is not a scalar tensor")
        if not _is_count(seen) or not isinstance(seconds, float) or not math.isfinite(seconds) or seconds < 0:
            raise _corrupt(path, f"seen {seen!r} or seconds {seconds!r} is not a count / a time")
        return cls(order, loss_sum.to(device), correct.to(device), index, seen, seconds)


# ------------------------------------------------------------------------ writing

def _save_last(run: Path, config: TrainConfig, epoch: int, step: int, model: nn.Module,
               optimizer: torch.optim.Optimizer, history: list, data: dict, generator: torch.Generator,
               device: torch.device, running: EpochState | None = None) -> None:
    """Write ``run/last.pt``: the state after ``epoch`` whole epochs and ``step`` batches in all,
    with ``running`` the next epoch's batches done so far (a mid-epoch checkpoint)."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION if running is None else MID_EPOCH_VERSION,
        "config": config.to_dict(), "epoch": epoch, "done": False, "step": step,
        "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
        # No scheduler state: the learning rate is a pure function of the epoch (lr_at).
        "history": history, "data": data, **_rng_states(generator, device),
        **({} if running is None else {"batch": running.to_dict()}),
    }, run / "last.pt")


def _save_final(run: Path, config: TrainConfig, model: nn.Module, history: list, data: dict) -> None:
    """Write ``run/final.pt`` (weights, config, history) and drop the resume state ``last.pt``."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "config": config.to_dict(), "epoch": config.epochs, "done": True,
        "model_state": model.state_dict(), "history": history, "data": data,
    }, run / "final.pt")
    # The resume state (optimizer, RNG) is no longer needed; it doubles the disk use.
    (run / "last.pt").unlink(missing_ok=True)


# ------------------------------------------------------------------------ reading

def _corrupt(path: Path, why: str) -> InvrobError:
    return InvrobError(f"checkpoint {path} is corrupt or not an invrob checkpoint ({why}); "
                       "delete it to retrain")


def _read_checkpoint(path: Path, resume: bool = False) -> dict:
    """``torch.load`` a checkpoint safely; anything unexpected is one InvrobError."""
    if not path.is_file():
        raise InvrobError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip/unpickling/EOF errors: all mean "bad file"
        message = (str(error).strip().splitlines() or [""])[0][:160]
        raise _corrupt(path, f"{type(error).__name__}: {message}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise _corrupt(path, "no invrob checkpoint header")
    version = checkpoint.get("version")
    if version not in (CHECKPOINT_VERSION, MID_EPOCH_VERSION):
        raise _corrupt(path, f"format version {version!r}, this invrob reads "
                             f"versions {CHECKPOINT_VERSION} and {MID_EPOCH_VERSION}")
    wanted = (*_KEYS, *(_RESUME_KEYS if resume else ()),
              *(_MID_EPOCH_KEYS if version == MID_EPOCH_VERSION else ()))
    missing = [k for k in wanted if k not in checkpoint]
    if missing:
        raise _corrupt(path, f"missing {', '.join(missing)}")
    try:
        checkpoint["config"] = TrainConfig.from_dict(checkpoint["config"])
    except (InvrobError, TypeError) as error:
        raise _corrupt(path, f"bad config: {error}") from None
    _check_fields(checkpoint, path, resume)
    return checkpoint


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_fields(checkpoint: dict, path: Path, resume: bool) -> None:
    """Types and ranges of the fields that ``train`` / ``load_checkpoint`` use, so a
    well-formed torch file with wrong contents fails here, not deep in training."""
    epochs = checkpoint["config"].epochs
    if not _is_count(checkpoint["epoch"]) or checkpoint["epoch"] > epochs:
        raise _corrupt(path, f"epoch {checkpoint['epoch']!r} is not an integer in [0, {epochs}]")
    if not isinstance(checkpoint["done"], bool):
        raise _corrupt(path, f"done is {checkpoint['done']!r}, not True or False")
    history = checkpoint["history"]
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise _corrupt(path, "history is not a list of per-epoch rows")
    state = checkpoint["model_state"]
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise _corrupt(path, "model_state is not a state dict")
    data = checkpoint.get("data")
    if data is not None and (not isinstance(data, dict) or set(data) != {"n", "label_sum", "pixel_sum"}):
        raise _corrupt(path, "data is not a data fingerprint")
    if resume:
        if not _is_count(checkpoint["step"]):
            raise _corrupt(path, f"step {checkpoint['step']!r} is not an integer >= 0")
        if not isinstance(checkpoint["optimizer_state"], dict):
            raise _corrupt(path, "optimizer_state is not an optimizer state dict")


def _load_weights(model: nn.Module, checkpoint: dict, path: Path) -> None:
    try:
        model.load_state_dict(checkpoint["model_state"])
    except Exception as error:
        message = (str(error).strip().splitlines() or [""])[0][:160]
        raise _corrupt(path, f"weights do not fit {checkpoint['config'].model}: {message}") from None


def load_checkpoint(path: str | Path, device=None) -> tuple[nn.Module, TrainConfig, pd.DataFrame]:
    """Load a trained model: ``(model in eval mode, config, history)``.

    ``path`` is a ``final.pt`` / ``last.pt`` file or a run folder (then its
    ``final.pt``, else its ``last.pt``). ``device`` defaults to CUDA when present.
    A missing, truncated or foreign file raises one :class:`InvrobError`.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "final.pt").exists() and not (path / "last.pt").exists():
            raise InvrobError(f"checkpoint folder {path} holds neither final.pt nor last.pt")
        path = path / "final.pt" if (path / "final.pt").exists() else path / "last.pt"
    checkpoint = _read_checkpoint(path)
    config = checkpoint["config"]
    model = _model_from(checkpoint, path, _resolve_device(config, device if device is not None else "auto"))
    return model, config, pd.DataFrame(checkpoint["history"])


def _model_from(checkpoint: dict, path: Path, device: torch.device) -> nn.Module:
    """The checkpoint's model with its weights, on ``device``, in eval mode."""
    model = _build_model(checkpoint["config"], device)
    _load_weights(model, checkpoint, path)
    return model.eval()


def _check_same_config(found: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    differences = found.differences(wanted)
    if differences:
        # The folder name holds a hash of the config, so this means the folder was
        # copied or renamed by hand (or, once in ~4e9 pairs, a hash collision).
        raise InvrobError(f"checkpoint {path} was trained with a different config "
                          f"({'; '.join(differences)}: checkpoint vs requested); delete it "
                          "or use another checkpoint_dir")


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> dict:
    """A cheap identity of a training set: its size, label sum and a strided pixel sum.

    TrainConfig does not hold the data, so a checkpoint records this and a run on
    other data (say, a profile with a bigger training subset) is refused instead of
    silently reloading a model trained on the old subset.
    """
    stride = max(1, len(x) // 512)
    return {"n": len(x), "label_sum": int(y.sum()),
            "pixel_sum": round(float(x[::stride].double().sum()), 3)}


def _check_same_data(checkpoint: dict, data: dict, path: Path) -> None:
    found = checkpoint.get("data")
    if found is not None and found != data:
        differ = "; ".join(f"{key} {found.get(key)} vs {data[key]}" for key in data if found.get(key) != data[key])
        raise InvrobError(f"checkpoint {path} was trained on other data ({differ}: checkpoint vs now); "
                          "delete it or use another checkpoint_dir")


def _load_finished(path: Path, config: TrainConfig, data: dict,
                   device: torch.device) -> tuple[nn.Module, pd.DataFrame]:
    """The finished run of ``path`` (a ``final.pt``), checked to be ``config``'s on ``data``:
    ``(model in eval mode, history)``."""
    checkpoint = _read_checkpoint(path)
    _check_same_config(checkpoint["config"], config, path)
    _check_same_data(checkpoint, data, path)
    return _model_from(checkpoint, path, device), pd.DataFrame(checkpoint["history"])


def _resume(path: Path, config: TrainConfig, data: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, device: torch.device, n: int,
            n_batches: int) -> tuple[int, int, list, EpochState | None]:
    """Load the resume state of ``path`` (a ``last.pt``) into the freshly built ``model``,
    ``optimizer``, ``generator`` and global RNGs: ``(epochs done, step, history, the next
    epoch's state or None)``, the latter for a mid-epoch checkpoint."""
    checkpoint = _read_checkpoint(path, resume=True)
    _check_same_config(checkpoint["config"], config, path)
    _check_same_data(checkpoint, data, path)
    running = None
    if checkpoint["version"] == MID_EPOCH_VERSION:
        if checkpoint["epoch"] >= config.epochs:
            raise _corrupt(path, f"a mid-epoch checkpoint after epoch {checkpoint['epoch']} of {config.epochs}")
        running = EpochState.from_dict(checkpoint["batch"], path, n, n_batches, device)
    _load_weights(model, checkpoint, path)
    try:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        _set_rng_states(checkpoint, generator, device)
    except Exception as error:
        raise _corrupt(path, f"bad optimizer or RNG state: {type(error).__name__}") from None
    return int(checkpoint["epoch"]), int(checkpoint["step"]), list(checkpoint["history"]), running
