"""Which named modules of a model count as "layers", and capturing their outputs with hooks.

Shared by :mod:`.lie` and :mod:`.equivariance`. A *layer* is a named module
(``dict(model.named_modules())``) whose forward runs when the model runs and
returns a tensor or an e2cnn ``GeometricTensor``. The default selection, in
call order, is the innermost such modules:

- a plain ``nn`` model gives its leaf modules that are called (for StdCNN:
  ``normalize``, ``features.0`` conv, ``features.1`` batch norm, ``features.2``
  ReLU, ..., ``fc``; LeNet's functional ReLUs / pools are not modules and are
  folded into the next module's input);
- a GCNN (e2cnn) gives the e2cnn modules that return ``GeometricTensor`` s
  (``R2Conv``, ``InnerBatchNorm``, ``ReLU``, ``PointwiseMaxPool``) and skips
  e2cnn's internals (the basis expansion, the ``BatchNorm3d`` inside
  ``InnerBatchNorm``); its group pooling and global max are functional, so the
  next captured output after the last ReLU is the head ``fc`` (the logits).

A module called more than once per forward is captured at its first call.
The model's own output is always available as the layer ``"logits"``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import InvrobError
from ..metrics import eval_mode, model_device

LOGITS = "logits"


def _is_geometric(value) -> bool:
    return type(value).__name__ == "GeometricTensor" and hasattr(value, "tensor") and hasattr(value, "type")


def _snapshot(value):
    """A copy that later in-place ops (``ReLU(inplace=True)``) cannot change; None if not a tensor output."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if _is_geometric(value):
        return type(value)(value.tensor.clone(), value.type)
    return None


@contextlib.contextmanager
def capture(model: nn.Module, names):
    """Within the block, ``store[name]`` is a snapshot of the first output of each named module."""
    modules = dict(model.named_modules())
    store: dict[str, object] = {}
    handles = []

    def hook_for(name):
        def hook(_module, _inputs, output):
            if name not in store:
                snap = _snapshot(output)
                if snap is not None:
                    store[name] = snap
        return hook

    try:
        for name in names:
            if name != LOGITS:
                handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def as_tensor(value) -> torch.Tensor:
    """The plain tensor of a captured output (``GeometricTensor.tensor`` for e2cnn)."""
    return value.tensor if _is_geometric(value) else value


@torch.no_grad()
def _fired(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """Every named module that returns a tensor / GeometricTensor on ``x[:1]``, in call order."""
    names = [name for name, _ in model.named_modules() if name]
    with eval_mode(model), capture(model, names) as store:
        model(x[:1].to(model_device(model)))
    return dict(store)  # insertion order = call order


def resolve_layers(model: nn.Module, x: torch.Tensor, layers=None, *, logits: bool = True) -> list[str]:
    """The checked list of layer names (default: the innermost called modules, then ``"logits"``).

    Raises :class:`InvrobError` for a name that is not a module of the model or
    whose forward never runs (e.g. an e2cnn basis expansion in eval mode).
    """
    fired = _fired(model, x)
    if layers is None:
        geometric = [n for n, v in fired.items() if _is_geometric(v)]
        chosen = []
        for name, value in fired.items():
            # e2cnn internals: a plain-tensor module inside a module that returns a GeometricTensor
            if not _is_geometric(value) and any(name.startswith(g + ".") for g in geometric):
                continue
            chosen.append(name)
        keep = [n for n in chosen if not any(other.startswith(n + ".") for other in chosen)]
        return keep + ([LOGITS] if logits else [])
    if isinstance(layers, str):
        layers = [layers]
    out = []
    modules = dict(model.named_modules())
    for name in layers:
        if name == LOGITS:
            out.append(name)
            continue
        if not isinstance(name, str) or name not in modules or name == "":
            valid = [n for n in fired] + [LOGITS]
            shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
            raise InvrobError(f"unknown layer {name!r}; valid: {shown}")
        if name not in fired:
            raise InvrobError(f"layer {name!r} never returns a tensor when the model runs "
                              "(not called in forward); pick a module that is")
        out.append(name)
    return out
