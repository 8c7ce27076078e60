"""One exception type for every user mistake, and the checks that raise it.

Bad input (an unknown model, θ outside [0, 180], ε < 0, a missing dataset, a
corrupt checkpoint) must fail *before* any work starts, with one sentence that
says what was wrong and how to fix it — never a traceback deep inside torch.
"""
from __future__ import annotations

import math
from typing import Iterable


class InvrobError(ValueError):
    """A user-facing error: its message is the whole story, on one line."""


def check_theta(theta: float, name: str = "theta") -> float:
    """A rotation range in degrees must lie in [0, 180]."""
    try:
        value = float(theta)
    except (TypeError, ValueError):
        raise InvrobError(f"{name} must be a number of degrees in [0, 180], got {theta!r}") from None
    if not (0.0 <= value <= 180.0) or math.isnan(value):
        raise InvrobError(f"{name} must be in [0, 180] degrees, got {theta!r}")
    return value


def check_eps(eps: float, name: str = "eps") -> float:
    """A perturbation budget must be a finite number ≥ 0."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise InvrobError(f"{name} must be a number >= 0, got {eps!r}") from None
    if not value >= 0.0 or math.isinf(value):
        raise InvrobError(f"{name} must be a finite number >= 0, got {eps!r}")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Counts (steps, epochs, batch sizes, restarts) must be integers > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvrobError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_choice(value: str, choices: Iterable[str], name: str) -> str:
    """An option must be one of a known set; the error lists the valid ones."""
    choices = list(choices)
    if value not in choices:
        raise InvrobError(f"unknown {name} {value!r}; valid: {', '.join(map(str, choices))}")
    return value


def check_labels(y, num_classes: int | None = None, name: str = "y") -> None:
    """Class labels must lie in [0, num_classes) (only ≥ 0 when ``num_classes`` is None).

    Out-of-range labels would otherwise end in a raw ``IndexError`` deep inside
    ``cross_entropy`` (on CUDA: a device-side assert that poisons the context).
    """
    if y.numel() == 0:
        return
    low, high = int(y.min().item()), int(y.max().item())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = f"[0, {num_classes}) (the model has {num_classes} outputs)" if num_classes is not None \
            else "[0, number of classes)"
        raise InvrobError(f"{name} must hold class labels in {bound}, got labels in [{low}, {high}]")


def check_images(x, y=None, num_classes: int | None = None, *, ndim: int | None = None,
                 box: bool = True, empty_ok: bool = True, name: str = "x") -> None:
    """The one check of an image batch (and its labels) before any model sees it.

    ``x``: a float tensor shaped ``(N, C, H, W)`` (exactly ``ndim`` dimensions
    when given, else at least 2, e.g. ``(N, d)``), finite (no NaN / inf: an
    attack would silently return NaN), and in the pixel box [0, 1] when ``box``
    (normalisation belongs inside the model); empty only when ``empty_ok``.
    ``y`` (optional): integer labels shaped ``(N,)``, in ``[0, num_classes)``
    (only ≥ 0 when ``num_classes`` is None: :func:`invrob.metrics.check_model_inputs`
    takes the bound from the model's output size).
    """
    import torch  # here, not at the top: the sweep imports errors without paying for torch

    shape = tuple(getattr(x, "shape", ()))
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 \
            or (ndim is not None and x.dim() != ndim):
        want = "(N, C, H, W)" if ndim == 4 else "(N, C, H, W) (or (N, d))"
        raise InvrobError(f"{name} must be a float tensor of images shaped {want}, "
                          f"got {type(x).__name__} {shape}")
    if not empty_ok and len(x) == 0:
        raise InvrobError(f"{name} is empty: need at least one image")
    if x.numel():
        bad = int((~torch.isfinite(x)).sum().item())
        if bad:
            raise InvrobError(f"{name} contains {bad} NaN or infinite values: images must be finite "
                              "numbers in [0, 1]")
        if box:
            low, high = x.min().item(), x.max().item()
            if low < -1e-6 or high > 1 + 1e-6:
                raise InvrobError(f"{name} must be images in [0, 1] (normalisation belongs inside the "
                                  f"model), got values in [{low:.3g}, {high:.3g}]")
    if y is None:
        return
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x) or y.is_floating_point() \
            or y.is_complex() or y.dtype == torch.bool:
        raise InvrobError(f"y must be an integer label tensor of shape ({len(x)},) (one per image), "
                          f"got {type(y).__name__} {tuple(getattr(y, 'shape', ()))}"
                          f"{' of ' + str(y.dtype) if isinstance(y, torch.Tensor) else ''}")
    check_labels(y, num_classes)
