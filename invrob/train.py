"""One training loop for natural, rotation-augmented and adversarial training.

Every step minimises the cross-entropy of a mini-batch that may first be
transformed:

- **rotation augmentation** (θ > 0): each image is rotated by its own angle
  drawn uniformly from ``[-θ, θ]`` degrees — the "augmented" models of the
  paper, trained to be (approximately) rotation invariant;
- **adversarial training** (ε > 0, Madry et al. 2018): the batch is replaced by
  ℓ∞ PGD adversarial examples, i.e. the step minimises
  ``E max_{‖δ‖∞ ≤ ε} L(f(x + δ), y)`` with the inner max approximated by
  ``attack_steps`` sign-gradient steps of size ``α = 2.5 ε / steps`` from a
  random start, keeping the last iterate (:func:`invrob.attacks.pgd_training_examples`).
  ε may be ramped up linearly over the first ``eps_warmup_epochs`` epochs
  (per batch), which helps small networks get off the ground.

- **worst-of-k spatial adversarial training** (``spatial_attack``, Engstrom et
  al. 2019): each image is replaced by the worst of k random rotations +
  translations (:class:`invrob.attacks.WorstOfK`, misclassified if any, else
  the largest cross-entropy), with k and the ranges in the config. With
  ``"invariance": λ > 0`` the loss gains Yang, Wang and Heinze-Deml's (NeurIPS
  2019) invariance-inducing regulariser, ``λ · ‖f(x) − f(x')‖²₂ / C`` between the
  logits of the untransformed image and of its worst-of-k transform ``x'``
  (squared ℓ2 per example, divided by the C classes, averaged over the batch).

They compose, in this order: rotate each image by a random angle in
``[-θ, θ]``, then the worst-of-k spatial transformation, then PGD at ε **on the
transformed batch** (the ε-ball is around the rotated image: the joint threat
model of :class:`invrob.attacks.JointAttack`).

Recipes are data, not code. ``schedule`` makes θ and ε piecewise constant in
the epoch: a tuple of stages ``(start_epoch, θ, ε)``, each in force from its
start epoch until the next one starts (:func:`stage_at`, a pure function of
the epoch, like the learning rate, so resuming needs no extra state). CuSP
(Kamath et al., NeurIPS 2021; the authors' ``cusp_cifar10.py``) is
``schedule=((0, 120, 2/255), (74, 150, 4/255), (89, 180, 8/255))`` with
``lr_schedule="step", lr_milestones=(74, 89, 99)`` over 120 epochs: epochs here
count from 0, theirs from 1 (their ``epoch >= 75`` is our ``epoch >= 74``), so
their stages last 74, 15 and 31 epochs and so do ours. With a
schedule the history also records each epoch's stage, ``stage_theta`` and ``stage_eps``
(apart from the ``theta`` and ``eps_train`` columns that name the model in the tables: the
config's final stage).

Reproducibility. Everything random in the loop — the shuffling, the rotation
angles, the PGD random starts — is drawn from one dedicated CPU
``torch.Generator`` seeded from ``config.seed`` (numbers are drawn on the CPU
and moved to the device, so the stream does not depend on the device).
Weight initialisation and dropout use torch's global RNG, seeded from the same
seed. Each epoch ends with an atomic checkpoint ``{checkpoint_dir}/{slug}/last.pt``
(the slug ends in a hash of the whole config, :meth:`TrainConfig.slug`)
holding the weights, the optimiser, every RNG state and the history, so an
interrupted run resumes where it stopped and — on the CPU — ends with weights
bit-for-bit equal to those of an uninterrupted run (the learning rate needs no
saved state: it is a pure function of the epoch, :func:`lr_at`). A finished run is stored as
``final.pt`` (weights, config, history) and is loaded, not retrained, by the
next ``train`` call with the same config: later notebooks reuse the models that
earlier ones trained.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvrobError, check_choice, check_eps, check_positive_int, check_theta
from .attacks import WorstOfK, attack_mode, pgd_training_examples
from .data import DATASETS, IMAGE_SHAPES
from .metrics import accuracy
from .utils import atomic_torch_save, default_device

__all__ = ["TrainConfig", "train", "load_checkpoint", "checkpoint_path",
           "lr_at", "stage_at", "CUSP_SCHEDULE", "CUSP_LR_MILESTONES", "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "invrob-checkpoint"
CHECKPOINT_VERSION = 1
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
ONECYCLE_PEAK = 0.4  # one-cycle: the rate peaks 2/5 of the way through (Wong et al. 2020's MNIST script)
# Fields that say *where* a run executes, not *what* it computes: a run trained
# on a GPU may be loaded or resumed on the CPU.
RUNTIME_FIELDS = ("device",)
# Fields that only matter for adversarial training (eps > 0).
ATTACK_FIELDS = ("attack_steps", "attack_alpha", "eps_warmup_epochs")
# Fields added after the first checkpoints were written: left out of the digest
# while they hold their default (None), so every earlier config keeps its hash,
# its slug and therefore its checkpoint folder.
OPTIONAL_FIELDS = ("schedule", "spatial_attack", "lr_milestones")
SPATIAL_ATTACK_DEFAULTS = {"k": 10, "max_angle": 30.0, "max_shift": 3.0, "invariance": 0.0}
# The curriculum of the authors' cusp_cifar10.py: (start epoch, θ in degrees, ε) of 120 epochs,
# epochs counted from 0 (their loop counts from 1 and switches at its epochs 75 and 90).
CUSP_SCHEDULE = ((0, 120.0, 2 / 255), (74, 150.0, 4 / 255), (89, 180.0, 8 / 255))
# Their learning-rate steps (×0.1 from their epochs 75, 90 and 100), counted from 0.
CUSP_LR_MILESTONES = (74, 89, 99)
_KEYS = ("format", "version", "config", "epoch", "done", "model_state", "history")
_RESUME_KEYS = ("optimizer_state", "step", "generator_state",
                "torch_rng_state", "numpy_rng_state", "python_rng_state")


# ------------------------------------------------------------------------ config

def _is_plain(value: Any) -> bool:
    """JSON-like values only: they survive ``torch.load(weights_only=True)``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvrobError(f"{name} must be a finite number {bound}, got {value!r}")
    return number + 0.0  # -0.0 -> 0.0: one spelling per value, so one slug and one hash


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_schedule(schedule: Any, epochs: int) -> tuple:
    """Stages ``(start_epoch, θ, ε)`` as a tuple of (int, float, float) tuples, or one InvrobError."""
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, (list, tuple)) or not schedule:
        raise InvrobError(f"schedule must be a non-empty list of (start_epoch, theta, eps) stages, "
                          f"got {schedule!r}")
    stages = []
    for i, stage in enumerate(schedule):
        if isinstance(stage, (str, bytes)) or not isinstance(stage, (list, tuple)) or len(stage) != 3:
            raise InvrobError(f"schedule stage {i} must be (start_epoch, theta, eps), got {stage!r}")
        start, theta, eps = stage
        if not _is_int(start) or not 0 <= start < epochs:
            raise InvrobError(f"schedule stage {i} starts at epoch {start!r}: must be an integer in "
                              f"[0, epochs={epochs})")
        theta = check_theta(theta, f"theta of schedule stage {i}") + 0.0
        eps = check_eps(eps, f"eps of schedule stage {i}") + 0.0
        if eps > 1:
            raise InvrobError(f"eps of schedule stage {i} is in [0, 1] pixel units, got {stage[2]!r}")
        stages.append((int(start), theta, eps))
    starts = [stage[0] for stage in stages]
    if starts[0] != 0:
        raise InvrobError(f"the first schedule stage must start at epoch 0, got {starts[0]}")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise InvrobError(f"schedule stages must be sorted by start epoch, each later than the last, "
                          f"got start epochs {starts}")
    return tuple(stages)


def _check_spatial_attack(options: Any) -> dict:
    """``{"k", "max_angle", "max_shift"}`` with defaults filled in, or one InvrobError."""
    if not isinstance(options, dict) or not set(options) <= set(SPATIAL_ATTACK_DEFAULTS):
        raise InvrobError(f"spatial_attack must be a dict with keys among {sorted(SPATIAL_ATTACK_DEFAULTS)} "
                          f"(or None), got {options!r}")
    values = {**SPATIAL_ATTACK_DEFAULTS, **options}
    check_positive_int(values["k"], "spatial_attack['k']")
    checked = {"k": int(values["k"]),
               "max_angle": check_theta(values["max_angle"], "spatial_attack['max_angle']") + 0.0,
               "max_shift": check_eps(values["max_shift"], "spatial_attack['max_shift']") + 0.0}
    weight = _positive_float(values["invariance"], "spatial_attack['invariance']", allow_zero=True)
    if weight > 0:  # left out at 0, so unregularised configs keep their digests
        checked["invariance"] = weight
    return checked


def _check_milestones(milestones: Any, epochs: int) -> tuple:
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, (list, tuple)) or not milestones \
            or not all(_is_int(m) and 0 < m < epochs for m in milestones) \
            or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise InvrobError(f"lr_milestones must be increasing integer epochs in (0, epochs={epochs}), "
                          f"got {milestones!r}")
    return tuple(int(m) for m in milestones)


@dataclass
class TrainConfig:
    """Everything that determines a trained model (and its checkpoint file name).

    ``lr=None`` picks a default for the optimiser and dataset (SGD: 0.01 on
    MNIST, 0.1 on CIFAR-10; Adam: 1e-3). ``theta`` is the augmentation range in
    degrees, ``eps`` the ℓ∞ radius of PGD adversarial training (0: natural
    training). ``max_batches_per_epoch`` truncates epochs (smoke runs). ``tag``
    is an optional readable label in the slug (runs that differ in any field
    already get different slugs through the config hash). ``device`` ("auto",
    "cpu", "cuda", ...) is where to run; it is not part of the run's identity.

    Recipes beyond a fixed (θ, ε) (module docstring):

    - ``schedule``: stages ``(start_epoch, θ, ε)``, sorted, the first at epoch 0
      (e.g. :data:`CUSP_SCHEDULE`). ``theta`` and ``eps`` then come from it:
      leave them at 0 and they are set to the final stage's values (what the
      slug shows, with ``-sched``); ``eps_warmup_epochs`` must be 0, and a
      given ``attack_alpha`` is used as is at every stage (the authors' fixed
      PGD step), else α = 2.5 ε / steps per stage.
    - ``spatial_attack``: ``{"k": 10, "max_angle": 30.0, "max_shift": 3.0}``
      (any subset; missing keys take these defaults, Engstrom et al.'s) for
      worst-of-k spatial adversarial training, plus ``"invariance": λ`` for
      Yang et al.'s regulariser (module docstring; default 0: off); ``None``: off.
    - ``lr_milestones``: with ``lr_schedule="step"``, the epochs at which the
      learning rate is multiplied by 0.1 (default: 50 % and 75 % of the epochs).

    Each of the three is left out of :meth:`digest` while it is ``None``, so
    configs that do not use them keep the hashes (and checkpoint folders) they
    had before these fields existed.
    """

    model: str
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    theta: float = 0.0
    eps: float = 0.0
    attack_steps: int = 10
    attack_alpha: float | None = None
    eps_warmup_epochs: int = 0
    seed: int = 0
    max_batches_per_epoch: int | None = None
    model_kwargs: dict = field(default_factory=dict)
    tag: str = ""
    device: str = "auto"
    schedule: tuple | None = None
    spatial_attack: dict | None = None
    lr_milestones: tuple | None = None

    def __post_init__(self):
        if self.lr is None:
            self.lr = 1e-3 if self.optimizer == "adam" else (0.1 if self.dataset == "cifar10" else 0.01)
        self.validate()

    def validate(self) -> "TrainConfig":
        """Check every field; raise one :class:`InvrobError` line on the first bad one.

        Numbers are normalised (θ, ε, lr to float) so that equal configs compare equal.
        """
        from .models import model_names

        if not isinstance(self.model, str):
            raise InvrobError(f"model must be a model name, got {self.model!r}")
        check_choice(self.model, model_names(), "model")
        check_choice(self.dataset, DATASETS, "dataset")
        if self.model not in model_names(self.dataset):
            raise InvrobError(f"model {self.model!r} is not defined for dataset {self.dataset!r}; "
                              f"use one of {', '.join(model_names(self.dataset))}")
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        self.lr = _positive_float(self.lr, "lr")
        momentum = _positive_float(self.momentum, "momentum", allow_zero=True)
        if momentum >= 1:
            raise InvrobError(f"momentum must be in [0, 1), got {self.momentum!r}")
        self.momentum = momentum
        self.weight_decay = _positive_float(self.weight_decay, "weight_decay", allow_zero=True)
        check_choice(self.lr_schedule, SCHEDULES, "lr_schedule")
        self.theta = check_theta(self.theta) + 0.0  # -0.0 -> 0.0
        self.eps = check_eps(self.eps) + 0.0
        if self.eps > 1:
            raise InvrobError(f"eps is in [0, 1] pixel units (images are in [0, 1]), got {self.eps!r}")
        check_positive_int(self.attack_steps, "attack_steps")
        if self.attack_alpha is not None:
            self.attack_alpha = _positive_float(self.attack_alpha, "attack_alpha")
        if (isinstance(self.eps_warmup_epochs, bool) or not isinstance(self.eps_warmup_epochs, int)
                or not 0 <= self.eps_warmup_epochs <= self.epochs):
            raise InvrobError(f"eps_warmup_epochs must be an integer in [0, epochs={self.epochs}], "
                              f"got {self.eps_warmup_epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvrobError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.max_batches_per_epoch is not None:
            check_positive_int(self.max_batches_per_epoch, "max_batches_per_epoch")
        if not isinstance(self.model_kwargs, dict) or not _is_plain(self.model_kwargs):
            raise InvrobError("model_kwargs must be a dict of plain values (numbers, strings, "
                              f"lists), got {self.model_kwargs!r}")
        if not isinstance(self.tag, str) or not re.fullmatch(r"[A-Za-z0-9._-]*", self.tag):
            raise InvrobError(f"tag may only hold letters, digits, '.', '_' and '-', got {self.tag!r}")
        try:
            if self.device != "auto":
                torch.device(self.device)
        except (TypeError, RuntimeError):
            raise InvrobError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from None
        if self.schedule is not None:
            self.schedule = _check_schedule(self.schedule, self.epochs)
            theta, eps = self.schedule[-1][1:]
            if self.theta not in (0.0, theta) or self.eps not in (0.0, eps):
                raise InvrobError(f"with a schedule, theta and eps come from its stages: leave them at 0 "
                                  f"(they become the final stage's, {theta:g} and {eps:g}), got "
                                  f"theta={self.theta:g}, eps={self.eps:g}")
            if self.eps_warmup_epochs:
                raise InvrobError("eps_warmup_epochs must be 0 with a schedule (the schedule sets ε per epoch)")
            self.theta, self.eps = theta, eps
        if self.spatial_attack is not None:
            self.spatial_attack = _check_spatial_attack(self.spatial_attack)
        if self.lr_milestones is not None:
            if self.lr_schedule != "step":
                raise InvrobError(f"lr_milestones need lr_schedule='step', got {self.lr_schedule!r}")
            self.lr_milestones = _check_milestones(self.lr_milestones, self.epochs)
        return self

    @property
    def adversarial(self) -> bool:
        """Does any epoch run PGD (ε > 0 in some stage)?"""
        if self.schedule is None:
            return self.eps > 0
        return any(eps > 0 for _, _, eps in self.schedule)

    # -- identity ---------------------------------------------------------------
    def slug(self) -> str:
        """File-name id: readable fields, the ``tag`` if any, then 8 hex digits of
        :meth:`digest`, e.g. ``lenet-mnist-theta30-eps0.1-seed0-1a2b3c4d``.

        The hash covers every field that changes the trained weights, so two runs
        that differ only in, say, epochs or optimiser never share a checkpoint folder.
        """
        recipe = ("-sched" if self.schedule is not None else "") + \
            (f"-worst{self.spatial_attack['k']}" if self.spatial_attack is not None else "") + \
            ("-reg" if (self.spatial_attack or {}).get("invariance") else "")
        base = f"{self.model}-{self.dataset}-theta{self.theta:g}-eps{self.eps:g}{recipe}-seed{self.seed}"
        return "-".join([base, *([self.tag] if self.tag else []), self.digest()[:8]])

    @property
    def id(self) -> str:
        return self.slug()

    def to_dict(self) -> dict:
        """Plain dict of every field (what the checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown or missing fields raise :class:`InvrobError`."""
        if not isinstance(values, dict):
            raise InvrobError(f"a TrainConfig needs a dict, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvrobError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        if "model" not in values:
            raise InvrobError("a TrainConfig needs a model name")
        return cls(**values)

    def identity(self) -> dict:
        """The fields that determine the trained weights: :meth:`to_dict` without the
        runtime fields, and without the attack settings when no epoch attacks (they are
        unused then, so a natural model trained by one notebook is reused by another
        that spells its attack settings differently), and without the optional
        recipe fields (:data:`OPTIONAL_FIELDS`) while they are ``None``."""
        values = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        if not self.adversarial:
            for k in ATTACK_FIELDS:
                values.pop(k)
        for k in OPTIONAL_FIELDS:
            if values[k] is None:
                values.pop(k)
        return values

    def digest(self) -> str:
        """SHA-256 (64 hex digits) of the canonical JSON of :meth:`identity`.

        Canonical: sorted keys, no whitespace, floats as Python's shortest
        round-trip ``repr``; so it is the same in every process and on every
        platform (unlike ``hash()``, which is salted per process).
        """
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def differences(self, other: "TrainConfig") -> list[str]:
        """``"field: mine vs other"`` for each field of :meth:`identity` that differs."""
        mine, theirs = self.identity(), other.identity()
        return [f"{k}: {mine.get(k)!r} vs {theirs.get(k)!r}" for k in {**mine, **theirs}
                if mine.get(k, None) != theirs.get(k, None)]

    # -- derived hyper-parameters -------------------------------------------------
    def alpha_for(self, eps: float) -> float:
        """PGD step size for radius ``eps``: ``2.5 ε / steps``, or ``attack_alpha``
        scaled by ``eps / self.eps`` while ε is being warmed up (with a schedule:
        ``attack_alpha`` as given, at every stage)."""
        if self.attack_alpha is None:
            return 2.5 * eps / self.attack_steps
        if self.schedule is not None:
            return self.attack_alpha
        return self.attack_alpha * eps / self.eps


def lr_at(config: TrainConfig, epoch: float) -> float:
    """Learning rate at 0-based ``epoch``: a pure function, so resuming needs no state.

    constant: ``lr``; cosine: ``lr · (1 + cos(π e / E)) / 2``; step: ``lr`` times
    0.1 from 50 % and again from 75 % of the epochs (or at each of ``lr_milestones``);
    these three change once per epoch. onecycle (Smith & Topin 2019, as in Wong et al.
    2020's fast adversarial training): per batch, with ``epoch`` fractional (``e + (b + 1) / B``
    after batch b of B), linear from 0 up to ``lr`` at :data:`ONECYCLE_PEAK` · E, then linear
    down to 0 at E.
    """
    if config.lr_schedule == "onecycle":
        peak = ONECYCLE_PEAK * config.epochs
        return float(config.lr * np.interp(epoch, [0.0, peak, float(config.epochs)], [0.0, 1.0, 0.0]))
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.lr_schedule == "step":
        milestones = config.lr_milestones or [max(1, round(f * config.epochs)) for f in (0.5, 0.75)]
        return config.lr * 0.1 ** sum(epoch >= m for m in milestones)
    return config.lr


def stage_at(config: TrainConfig, epoch: int) -> tuple[float, float]:
    """``(θ, ε)`` of 0-based ``epoch``: the last schedule stage that has started by then
    (``(config.theta, config.eps)`` without a schedule). A pure function, like :func:`lr_at`."""
    if config.schedule is None:
        return config.theta, config.eps
    theta, eps = config.schedule[0][1:]
    for start, stage_theta, stage_eps in config.schedule:
        if epoch >= start:
            theta, eps = stage_theta, stage_eps
    return theta, eps


def _eps_at(config: TrainConfig, step: int, batches_per_epoch: int) -> float:
    """ε for global (0-based) batch ``step``: linear ramp over the warm-up epochs."""
    ramp = config.eps_warmup_epochs * batches_per_epoch
    return config.eps if ramp == 0 else config.eps * min(1.0, (step + 1) / ramp)


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


# ------------------------------------------------------------------------ checkpoints

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
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise _corrupt(path, f"format version {checkpoint.get('version')!r}, this invrob reads "
                             f"version {CHECKPOINT_VERSION}")
    missing = [k for k in (*_KEYS, *(_RESUME_KEYS if resume else ())) if k not in checkpoint]
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


def _build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    from .models import build_model
    return build_model(config.model, config.dataset, **config.model_kwargs).to(device)


def _load_weights(model: nn.Module, checkpoint: dict, path: Path) -> None:
    try:
        model.load_state_dict(checkpoint["model_state"])
    except Exception as error:
        message = (str(error).strip().splitlines() or [""])[0][:160]
        raise _corrupt(path, f"weights do not fit {checkpoint['config'].model}: {message}") from None


def _resolve_device(config: TrainConfig, device) -> torch.device:
    choice = device if device is not None else config.device
    if choice == "auto":
        return default_device()
    try:
        resolved = torch.device(choice)
    except (TypeError, RuntimeError):
        raise InvrobError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {choice!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvrobError(f"device {choice!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return resolved


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


# --------------------------------------------------------------------------- training

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


def train(config: TrainConfig, x: torch.Tensor, y: torch.Tensor, checkpoint_dir: str | Path | None = None,
          device=None, progress: bool = True, x_val: torch.Tensor | None = None,
          y_val: torch.Tensor | None = None,
          callbacks: Iterable[Callable[[int, nn.Module, dict], None]] = (),
          desc: str | None = None) -> tuple[nn.Module, pd.DataFrame]:
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

    ``callbacks`` are called as ``callback(epoch, model, row)`` after each
    epoch's checkpoint is written (epoch is 1-based); an exception raised by a
    callback stops training there, and a later call resumes after that epoch.
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

    run = checkpoint_path(config, checkpoint_dir) if checkpoint_dir is not None else None
    data = data_fingerprint(x, y)
    if run is not None and (run / "final.pt").exists():
        checkpoint = _read_checkpoint(run / "final.pt")
        _check_same_config(checkpoint["config"], config, run / "final.pt")
        _check_same_data(checkpoint, data, run / "final.pt")
        model, history = _model_from(checkpoint, run / "final.pt", device), pd.DataFrame(checkpoint["history"])
        if progress:
            print(f"{desc or config.slug()}: already trained; loaded {run / 'final.pt'}")
        return model, history

    # Fresh start: seed everything, build the model (the init draws from the
    # global RNG). On resume the states saved at the end of the last epoch then
    # overwrite all of this, so the remaining epochs see exactly the same numbers.
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    generator = _data_generator(config.seed)
    model = _build_model(config, device)
    optimizer = _make_optimizer(config, model)
    history: list[dict] = []
    start_epoch, step = 0, 0
    if run is not None and (run / "last.pt").exists():
        checkpoint = _read_checkpoint(run / "last.pt", resume=True)
        _check_same_config(checkpoint["config"], config, run / "last.pt")
        _check_same_data(checkpoint, data, run / "last.pt")
        _load_weights(model, checkpoint, run / "last.pt")
        try:
            optimizer.load_state_dict(checkpoint["optimizer_state"])
            _set_rng_states(checkpoint, generator, device)
        except Exception as error:
            raise _corrupt(run / "last.pt", f"bad optimizer or RNG state: {type(error).__name__}") from None
        start_epoch, step, history = int(checkpoint["epoch"]), int(checkpoint["step"]), list(checkpoint["history"])
        if progress:
            print(f"{desc or config.slug()}: resuming after epoch {start_epoch}/{config.epochs}")

    if config.theta > 0 or config.schedule is not None:
        from .rotations import random_rotate
    spatial = None
    if config.spatial_attack is not None:
        # Draws its transformations from the run's generator: a resumed run draws the same.
        spatial = WorstOfK(model, config.spatial_attack["k"], config.spatial_attack["max_angle"],
                           config.spatial_attack["max_shift"], generator=generator,
                           batch_size=config.batch_size * config.spatial_attack["k"])
    invariance = (config.spatial_attack or {}).get("invariance", 0.0)
    n = len(x)
    data_device = device if _fits_on_gpu(x, device) else x.device
    x_data, y_data = x.to(data_device), y.to(data_device)
    n_batches = _batches_per_epoch(config, n)
    per_batch_lr = config.lr_schedule == "onecycle"
    callbacks = list(callbacks)
    # One bar per run, not per epoch: a notebook (and the book) shows one line per model.
    bar = _progress(progress, desc or config.slug(), total=(config.epochs - start_epoch) * n_batches)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        lr = lr_at(config, epoch)
        theta, stage_eps = stage_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        model.train()
        for b in range(n_batches):
            if per_batch_lr:
                lr = lr_at(config, epoch + (b + 1) / n_batches)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            index = order[b * config.batch_size:(b + 1) * config.batch_size].to(data_device)
            xb = x_data[index].to(device, non_blocking=True)
            yb = y_data[index].to(device, non_blocking=True)
            if theta > 0:
                xb = random_rotate(xb, theta, generator=generator)
            untransformed = xb
            if spatial is not None:
                with attack_mode(model):   # eval mode, frozen weights; train mode restored
                    xb = spatial.perturb(xb, yb)[0]
            if stage_eps > 0:
                eps = _eps_at(config, step, n_batches) if config.schedule is None else stage_eps
                xb = pgd_training_examples(model, xb, yb, eps, config.alpha_for(eps),
                                           config.attack_steps, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if invariance:
                loss = loss + invariance * invariance_penalty(model(untransformed), logits)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(yb)
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            bar.update()
            if progress and (b % 20 == 0 or b == n_batches - 1):
                bar.set_postfix({"epoch": f"{epoch + 1}/{config.epochs}", "loss": f"{loss_sum.item() / seen:.4f}",
                                 "acc": f"{correct.item() / seen:.4f}"}, refresh=False)
        row = {"epoch": epoch + 1, "loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}
        if x_val is not None:
            row["val_acc"] = accuracy(model, x_val, y_val)
        row["lr"] = lr
        if config.schedule is not None:
            row["stage_theta"], row["stage_eps"] = theta, stage_eps
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if progress:
            final = {"epoch": f"{epoch + 1}/{config.epochs}", "loss": f"{row['loss']:.4f}",
                     "acc": f"{row['train_acc']:.4f}"}
            if "val_acc" in row:
                final["val_acc"] = f"{row['val_acc']:.4f}"
            bar.set_postfix(final)
        if run is not None:
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "config": config.to_dict(), "epoch": epoch + 1, "done": False, "step": step,
                "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                # No scheduler state: the learning rate is a pure function of the epoch (lr_at).
                "history": history, "data": data, **_rng_states(generator, device),
            }, run / "last.pt")
        for callback in callbacks:
            callback(epoch + 1, model, row)

    bar.close()
    if run is not None:
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": config.to_dict(), "epoch": config.epochs, "done": True,
            "model_state": model.state_dict(), "history": history, "data": data,
        }, run / "final.pt")
        # The resume state (optimizer, RNG) is no longer needed; it doubles the disk use.
        (run / "last.pt").unlink(missing_ok=True)
    return model.eval(), pd.DataFrame(history)


def invariance_penalty(logits: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """Yang et al.'s invariance regulariser: mean over the batch of ‖f(x) − f(x')‖²₂ / C."""
    return (logits - transformed).pow(2).mean(1).mean()


def _progress(enabled: bool, desc: str, total: int):
    """A tqdm bar over the run's batches (plain tqdm: text that papermill records cleanly)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True, mininterval=2.0, dynamic_ncols=True,
                disable=not enabled)
