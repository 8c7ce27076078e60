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
