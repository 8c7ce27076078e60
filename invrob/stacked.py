"""Train the seeds of one recipe together, as one batched ("stacked") model.

M configs that differ only in ``seed`` train M independent networks. Stacking
their parameters, ``Θ = (θ_1, …, θ_M)`` (each tensor gains a leading member axis
of size M), and their mini-batches, ``X = (x_1, …, x_M)`` of shape
``(M, B, C, H, W)``, one step minimises

    L(Θ) = Σ_m CE_mean(f(x_m; θ_m), y_m),      ∂L/∂θ_m = ∇CE_mean(f(x_m; θ_m), y_m),

so the members never interact: the stacked step is M separate steps of
:func:`invrob.train.train`, computed by one ``torch.vmap`` over
``torch.func.functional_call`` (convolutions become one grouped convolution,
linear layers one batched matmul). Adam and SGD (momentum, L2 weight decay) are
elementwise in the parameters, with a step count all members share, so one
optimiser over Θ equals M optimisers. Batch norm is per member too: its
running statistics are stacked buffers, updated in place under ``vmap``.

Adversarial training runs the inner maximisation of
:func:`invrob.attacks.pgd_training_examples` on the stack:

    x⁰ = Π(x + δ⁰), δ⁰ ~ U[−ε, ε]^d;   xᵗ⁺¹ = Π(xᵗ + α · sign ∇ₓ Σ_m Σ_i CE(f(x_mi; θ_m), y_mi)),

with Π the projection onto the ε-ball around the clean image ∩ [0, 1]^d, the
model in eval mode with frozen parameters, and the last iterate kept. The
gradient of the sum w.r.t. ``x_mi`` is the member's own, and sign and Π are
elementwise, so each member gets exactly its sequential iterates.

Randomness. Member m seeds python / numpy / torch with its seed and builds its
net exactly as ``train`` does, and owns the data generator ``train`` would use
(``_data_generator(seed)``), from which it draws in ``train``'s order: the
epoch's permutation, then per batch the rotation angles (θ > 0), then the PGD
random start. Learning rate (:func:`~invrob.train.lr_at`, per batch for
``onecycle``), ε ramp and α are ``train``'s. So each member ends with ``train``'s
weights up to float rounding (grouped vs plain convolutions sum in another
order); ``tests/test_stacked.py`` bounds the difference.

Checkpoints. Each epoch ends with an atomic group checkpoint
``{checkpoint_dir}/stacked-{hash}/last.pt`` (stacked weights and buffers, the
optimiser, every member's generator, the histories; the hash covers the
members' config digests), from which an interrupted run resumes — on the CPU
bit for bit. At the end every member gets the ``final.pt`` that ``train``
writes, so ``train(config, ...)`` loads it instead of retraining, and members
whose ``final.pt`` already exists are loaded, not trained.

Speed. Stacking saves per-call overhead and is meant to fill an accelerator that one small
net at batch 128 leaves mostly idle (not measured yet); it does not save arithmetic. On a CPU, where one
net's kernels already keep a core busy, it loses: ``python -m benchmarks --only stacked``
(5 seeds, batch 128, one thread, 2-core machine) measured 0.65–0.72× the throughput of
one-at-a-time training for ``wong`` and natural ``stdcnn`` and 1.0× for ``stdcnn`` with
PGD-5 — grouped-convolution backward and vmap's layout copies cost more than the Python
overhead saved — at ~4× the peak memory (M nets' activations at once).

Not stackable (one :class:`~invrob.errors.InvrobError` line; train those with
``train``): ``schedule``, ``spatial_attack``, configs differing in more than
``seed`` (or sharing one), and models with layers outside
:data:`STACKABLE_LAYERS` — dropout above all (its masks come from the global
RNG stream of each member, which a vmap cannot replay).
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from .attacks.base import _per_sample, _view
from .attacks.pgd import _direction, _project, _random_delta
from .errors import InvrobError
from .models import Normalize
from .rotations import random_angles, rotate
from .train import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, TrainConfig, _batches_per_epoch, _build_model,
                    _check_data, _data_generator, _eps_at, _fits_on_gpu, _make_optimizer, _progress,
                    _resolve_device, checkpoint_path, data_fingerprint, lr_at, train)
from .utils import atomic_torch_save

__all__ = ["train_stacked", "stack_key", "unstackable_reason", "check_stackable", "STACKABLE_LAYERS"]

#: Leaf layers known to behave identically under ``vmap`` (deterministic, per sample or
#: per member); any other leaf makes a model unstackable.
STACKABLE_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                    nn.Flatten, nn.Identity, nn.BatchNorm2d, Normalize)
GROUP_FORMAT = "invrob-stacked-checkpoint"
GROUP_VERSION = 1
_GROUP_KEYS = ("format", "version", "members", "data", "epoch", "step", "params", "buffers",
               "optimizer_state", "generator_states", "histories")


# ------------------------------------------------------------------------ what stacks

def stack_key(config: TrainConfig) -> str:
    """Canonical JSON of the config's identity without its seed: equal keys stack together."""
    identity = {k: v for k, v in config.identity().items() if k != "seed"}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)


def unstackable_reason(config: TrainConfig) -> str | None:
    """Why ``config`` cannot train stacked (a phrase), or ``None`` when it can."""
    if config.schedule is not None:
        return "a schedule (θ, ε stages)"
    if config.spatial_attack is not None:
        return "worst-of-k spatial adversarial training (spatial_attack)"
    with torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
        model = _build_model(config, torch.device("cpu"))
    layers = sorted({type(module).__name__ for module in model.modules()
                     if not list(module.children()) and not _stackable_layer(module)})
    return f"model {config.model!r} has layers {', '.join(layers)}" if layers else None


def _stackable_layer(module: nn.Module) -> bool:
    # BatchNorm with momentum=None averages with 1/num_batches_tracked, a Python float of a buffer.
    return isinstance(module, STACKABLE_LAYERS) and getattr(module, "momentum", 0.0) is not None


def check_stackable(configs: Sequence[TrainConfig]) -> None:
    """Raise one :class:`InvrobError` line unless ``configs`` can train as one stack."""
    if not configs or not all(isinstance(c, TrainConfig) for c in configs):
        raise InvrobError("train_stacked needs a non-empty list of TrainConfig")
    for config in configs:
        config.validate()
    first = configs[0]
    for other in configs[1:]:
        if stack_key(other) != stack_key(first):
            differ = "; ".join(d for d in first.differences(other) if not d.startswith("seed:"))
            raise InvrobError(f"stacked configs may differ only in seed, these differ in {differ}; "
                              "train each recipe as its own stack")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise InvrobError(f"stacked configs need distinct seeds, got {seeds}")
    reason = unstackable_reason(first)
    if reason is not None:
        raise InvrobError(f"cannot train {first.slug()} stacked: {reason}; use invrob.train.train")


# ------------------------------------------------------------------------ the stack

@dataclass
class _Stack:
    """M nets of one architecture as stacked tensors: ``params[name]`` and ``buffers[name]``
    have shape ``(M, *shape)``; ``base`` holds the structure only (meta device)."""

    base: nn.Module
    params: dict[str, nn.Parameter]
    buffers: dict[str, torch.Tensor]

    @classmethod
    def of(cls, models: Sequence[nn.Module]) -> "_Stack":
        params, buffers = stack_module_state(list(models))
        base = copy.deepcopy(models[0]).to("meta")
        return cls(base, {k: nn.Parameter(v.detach()) for k, v in params.items()}, buffers)

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Logits ``(M, B, K)`` of member m on ``x[m]``, for ``x`` of shape ``(M, B, C, H, W)``.

        ``training=False`` is :func:`invrob.attacks.attack_mode`: eval mode (batch norm
        reads its running statistics) and frozen parameters (no weight gradients)."""
        self.base.train(training)
        params = self.params if training else {k: v.detach() for k, v in self.params.items()}

        def member(p, b, xm):
            return functional_call(self.base, (p, b), (xm,))
        return torch.vmap(member)(params, self.buffers, x)

    def state(self) -> dict:
        """Stacked weights and buffers, for the group checkpoint."""
        return {"params": {k: v.detach() for k, v in self.params.items()}, "buffers": self.buffers}

    def load(self, state: dict) -> None:
        """Inverse of :meth:`state` (in place: the optimiser keeps its parameters)."""
        with torch.no_grad():
            for k, v in {**self.params, **self.buffers}.items():
                v.copy_(state["params"][k] if k in self.params else state["buffers"][k])

    def unstack_into(self, models: Sequence[nn.Module]) -> None:
        """Copy member m's weights and buffers into ``models[m]`` (contiguous, own storage)."""
        stacked = {**self.params, **self.buffers}
        for m, model in enumerate(models):
            model.load_state_dict({k: stacked[k][m] for k in model.state_dict()})


def _init_member(config: TrainConfig, device: torch.device) -> nn.Module:
    """The member's initial net, exactly as ``train`` builds it (global RNGs seeded from its seed)."""
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    return _build_model(config, device)


# ------------------------------------------------------------------- one stacked batch

def _rotate_members(x: torch.Tensor, theta: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """:func:`invrob.rotations.random_rotate` of each member's batch ``x[m]`` with its generator."""
    angles = torch.cat([random_angles(x.shape[1], theta, g, device=x.device) for g in generators])
    return rotate(x.flatten(0, 1), angles).view_as(x)


def _input_grad(stack: _Stack, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ Σ_m Σ_i CE(f(x_mi; θ_m), y_mi), shaped like ``x_adv`` (M, B, C, H, W)."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = stack(x_adv, training=False)
        grad, = torch.autograd.grad(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"), x_adv)
    return grad


def _pgd_members(stack: _Stack, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                 generators: Sequence[torch.Generator]) -> torch.Tensor:
    """:func:`invrob.attacks.pgd_training_examples` (ℓ∞) for every member at once (module docstring).

    Member m's random start comes from ``generators[m]``; the projection and sign step
    act on the flattened ``(M·B, C, H, W)`` batch, elementwise.
    """
    x = x.detach()
    flat = x.flatten(0, 1)
    eps_t = _per_sample(eps, len(flat), flat)
    alpha_t = _view(_per_sample(alpha, len(flat), flat), flat)
    start = torch.cat([_random_delta(xm, eps_t[:len(xm)], "linf", g) for xm, g in zip(x, generators)])
    x_adv = _project(flat + start, flat, eps_t, "linf")
    for _ in range(steps):
        grad = _input_grad(stack, x_adv.view_as(x), y).flatten(0, 1)
        x_adv = _project(x_adv + alpha_t * _direction(grad, "linf"), flat, eps_t, "linf")
    return x_adv.view_as(x).detach()


def _as_trained(config: TrainConfig, stack: _Stack, x: torch.Tensor, y: torch.Tensor, eps: float,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
    """The stacked batch as ``train`` trains on it: each image rotated by a random angle in
    [−θ, θ] (θ > 0), then replaced by its PGD example at ``eps`` (``config.eps`` > 0)."""
    if config.theta > 0:
        x = _rotate_members(x, config.theta, generators)
    if config.eps > 0:
        x = _pgd_members(stack, x, y, eps, config.alpha_for(eps), config.attack_steps, generators)
    return x


# ------------------------------------------------------------------------ checkpoints

def _group_dir(configs: Sequence[TrainConfig], checkpoint_dir) -> Path:
    """``{checkpoint_dir}/stacked-{12 hex digits}``: a hash of the members' digests, in order."""
    digest = hashlib.sha256(",".join(c.digest() for c in configs).encode()).hexdigest()
    return Path(checkpoint_dir) / f"stacked-{digest[:12]}"


def _group_state(configs, stack: _Stack, optimizer, generators, histories, epoch: int, step: int,
                 data: dict) -> dict:
    """Everything the next epoch depends on (the learning rate and ε are functions of epoch and step)."""
    return {"format": GROUP_FORMAT, "version": GROUP_VERSION, "members": [c.slug() for c in configs],
            "data": data, "epoch": epoch, "step": step, **stack.state(),
            "optimizer_state": optimizer.state_dict(),
            "generator_states": [g.get_state() for g in generators], "histories": histories}


def _resume(path: Path, configs, stack: _Stack, optimizer, generators, data: dict) -> tuple[int, int, list]:
    """Load a group checkpoint into the fresh stack; returns ``(epoch, step, histories)``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip/unpickling/EOF errors: all mean "bad file"
        raise _corrupt_group(path, type(error).__name__) from None
    if not isinstance(state, dict) or state.get("format") != GROUP_FORMAT \
            or state.get("version") != GROUP_VERSION or not all(k in state for k in _GROUP_KEYS):
        raise _corrupt_group(path, "no invrob group checkpoint header or missing fields")
    if state["members"] != [c.slug() for c in configs] or state["data"] != data:
        raise InvrobError(f"group checkpoint {path} was written for other members or other data; "
                          "delete it or use another checkpoint_dir")
    try:
        stack.load(state)
        optimizer.load_state_dict(state["optimizer_state"])
        for generator, generator_state in zip(generators, state["generator_states"]):
            generator.set_state(generator_state)
    except Exception as error:
        raise _corrupt_group(path, f"bad weights, optimizer or RNG state: {type(error).__name__}") from None
    return int(state["epoch"]), int(state["step"]), [list(h) for h in state["histories"]]


def _corrupt_group(path: Path, why: str) -> InvrobError:
    return InvrobError(f"group checkpoint {path} is corrupt ({why}); delete it to retrain")


def _write_final(config: TrainConfig, model: nn.Module, history: list, data: dict, checkpoint_dir) -> None:
    """The member's ``final.pt``, in the format ``train`` writes and reads."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "config": config.to_dict(), "epoch": config.epochs, "done": True,
        "model_state": model.state_dict(), "history": history, "data": data,
    }, checkpoint_path(config, checkpoint_dir) / "final.pt")


# --------------------------------------------------------------------------- training

def train_stacked(configs: Sequence[TrainConfig], x: torch.Tensor, y: torch.Tensor, checkpoint_dir=None,
                  device=None, progress: bool = True) -> list[tuple[nn.Module, pd.DataFrame]]:
    """Train configs that differ only in ``seed`` as one stack (module docstring).

    Returns ``(model in eval mode, history)`` per config, in order — what
    ``train(config, x, y, checkpoint_dir)`` returns for each, up to float rounding.
    History rows: epoch, loss, train_acc, lr, seconds (the member's share, 1/M, of the
    stack's epoch time). Members whose ``final.pt`` exists are loaded by ``train``.
    """
    configs = list(configs)
    check_stackable(configs)
    device = _resolve_device(configs[0], device)
    _check_data(configs[0], x, y)
    done = [checkpoint_dir is not None and (checkpoint_path(c, checkpoint_dir) / "final.pt").exists()
            for c in configs]
    todo = [c for c, d in zip(configs, done) if not d]
    trained = iter(_train_group(todo, x, y, checkpoint_dir, device, progress) if todo else ())
    return [train(c, x, y, checkpoint_dir=checkpoint_dir, device=device, progress=progress) if d
            else next(trained) for c, d in zip(configs, done)]


def _train_group(configs: list[TrainConfig], x, y, checkpoint_dir, device: torch.device,
                 progress: bool) -> list[tuple[nn.Module, pd.DataFrame]]:
    """The training loop of ``train`` with a member axis (checked, unfinished configs)."""
    config, members = configs[0], len(configs)
    models = [_init_member(c, device) for c in configs]
    generators = [_data_generator(c.seed) for c in configs]
    stack = _Stack.of(models)
    optimizer = _make_optimizer(config, nn.ParameterList(stack.params.values()))
    data = data_fingerprint(x, y)
    group = _group_dir(configs, checkpoint_dir) if checkpoint_dir is not None else None
    start_epoch, step, histories = 0, 0, [[] for _ in configs]
    if group is not None and (group / "last.pt").exists():
        start_epoch, step, histories = _resume(group / "last.pt", configs, stack, optimizer, generators, data)
        if progress:
            print(f"stack of {members} × {config.slug()}: resuming after epoch {start_epoch}/{config.epochs}")

    n = len(x)
    data_device = device if _fits_on_gpu(x, device) else x.device
    x_data, y_data = x.to(data_device), y.to(data_device)
    n_batches = _batches_per_epoch(config, n)
    bar = _progress(progress, f"stack of {members} × {config.slug()}",
                    total=(config.epochs - start_epoch) * n_batches)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])
        loss_sum = torch.zeros(members, device=device)
        correct = torch.zeros(members, dtype=torch.long, device=device)
        seen = 0
        for b in range(n_batches):
            # Per epoch (constant, cosine, step) or per batch (onecycle), as train sets it.
            lr = lr_at(config, epoch + (b + 1) / n_batches if config.lr_schedule == "onecycle" else epoch)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            index = orders[:, b * config.batch_size:(b + 1) * config.batch_size].to(data_device)
            xb = x_data[index].to(device, non_blocking=True)      # (M, B, C, H, W)
            yb = y_data[index].to(device, non_blocking=True)      # (M, B)
            xb = _as_trained(config, stack, xb, yb, _eps_at(config, step, n_batches), generators)
            optimizer.zero_grad(set_to_none=True)
            logits = stack(xb, training=True)
            losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view_as(yb).mean(1)
            losses.sum().backward()
            optimizer.step()
            step += 1
            seen += yb.shape[1]
            loss_sum += losses.detach() * yb.shape[1]
            correct += (logits.detach().argmax(-1) == yb).sum(1)
            bar.update()
        seconds = (time.perf_counter() - started) / members
        for history, loss, hits in zip(histories, loss_sum.tolist(), correct.tolist()):
            history.append({"epoch": epoch + 1, "loss": loss / seen, "train_acc": hits / seen, "lr": lr,
                            "seconds": seconds})
        if progress:
            bar.set_postfix({"epoch": f"{epoch + 1}/{config.epochs}",
                             "mean loss": f"{loss_sum.sum().item() / (members * seen):.4f}"})
        if group is not None:
            state = _group_state(configs, stack, optimizer, generators, histories, epoch + 1, step, data)
            atomic_torch_save(state, group / "last.pt")
    bar.close()

    stack.unstack_into(models)
    if group is not None:
        for c, model, history in zip(configs, models, histories):
            _write_final(c, model, history, data, checkpoint_dir)
        (group / "last.pt").unlink(missing_ok=True)   # the resume state is no longer needed
        if not any(group.iterdir()):
            group.rmdir()
    return [(model.eval(), pd.DataFrame(history)) for model, history in zip(models, histories)]
