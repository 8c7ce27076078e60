"""What a training run is: :class:`TrainConfig`, its checks, and the pure functions of a config.

A config is data: every field that changes the trained weights is hashed into
its slug (:meth:`TrainConfig.slug`), so one config is one checkpoint folder. The
learning rate (:func:`lr_at`), the schedule's stage (:func:`stage_at`) and the
ε warm-up (:func:`_eps_at`) are pure functions of the config and the epoch or
step, so a resumed run needs no scheduler state. :func:`_build_model` and
:func:`_resolve_device` turn a config into a network on a device (for training
and for loading checkpoints alike).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DATASETS
from ..errors import InvrobError, check_choice, check_eps, check_positive_int, check_theta
from ..utils import default_device

__all__ = ["TrainConfig", "lr_at", "stage_at", "OPTIMIZERS", "SCHEDULES", "ONECYCLE_PEAK",
           "SPATIAL_ATTACK_DEFAULTS", "CUSP_SCHEDULE", "CUSP_LR_MILESTONES"]

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
        from ..models import model_names

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


def _build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    from ..models import build_model
    return build_model(config.model, config.dataset, **config.model_kwargs).to(device)


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

