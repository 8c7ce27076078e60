"""The attack registry: one name per attack class, as the model registry has for models.

A config, a sweep file or a study names an attack (``"pgd"``, ``"autoattack"``,
``"spatial-grid"``…) and :func:`build` makes it for a model::

    attack = attacks.build("pgd", model, eps=0.1, steps=20)
    joint = attacks.build("joint", model, spatial={"name": "worst-of-k", "k": 10},
                          linf={"name": "apgd", "eps": 0.1})

Keyword arguments are checked against the class's signature first, so a mistyped option is
one :class:`~invrob.errors.InvrobError` line naming the valid ones. A keyword whose value is a
``{"name": ..., **options}`` mapping is built for the same model (how :class:`JointAttack`
gets its two parts from plain data). :func:`register` adds an attack (a subclass of
:class:`~invrob.attacks.base.Attack` whose first argument is the model).

Adding an attack is one file: a module of :mod:`invrob.attacks` that defines
``ATTACKS = {name: cls}`` is found when the package is imported (:func:`discover`) and its
attacks are registered after the built-ins below.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Mapping

from torch import nn

from ..errors import InvrobError, check_choice
from .apgd import APGD
from .autoattack import AutoAttack
from .base import Attack
from .joint import JointAttack
from .pgd import FGSM, PGD
from .rotation_grid import RotationGrid
from .spatial_grid import SpatialGrid
from .worst_of_k import WorstOfK

_REGISTRY: dict[str, type] = {
    "pgd": PGD,
    "fgsm": FGSM,
    "apgd": APGD,
    "autoattack": AutoAttack,
    "rotation-grid": RotationGrid,
    "spatial-grid": SpatialGrid,
    "worst-of-k": WorstOfK,
    "joint": JointAttack,
}


def attack_names() -> list[str]:
    """The registered attack names."""
    return list(_REGISTRY)


def register(name: str, cls: type) -> type:
    """Register ``cls`` (an :class:`Attack` subclass taking the model first) under ``name``; returns it."""
    if not isinstance(name, str) or not name:
        raise InvrobError(f"an attack name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise InvrobError(f"attack {name!r}: {cls!r} is not a subclass of invrob.attacks.Attack")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise InvrobError(f"attack name {name!r} is taken by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def options(name: str) -> list[str]:
    """The keyword options of attack ``name`` (everything after the model)."""
    check_choice(name, _REGISTRY, "attack")
    params = list(inspect.signature(_REGISTRY[name].__init__).parameters.values())[2:]  # self, model
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def build(name: str, model: nn.Module, **kwargs) -> Attack:
    """The attack registered as ``name`` on ``model`` with ``kwargs`` (nested ``{"name": ...}``
    mappings are built for the same model)."""
    check_choice(name, _REGISTRY, "attack")
    valid = options(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise InvrobError(f"attack {name!r} takes no option {', '.join(map(repr, unknown))}; "
                          f"valid: {', '.join(valid) or 'none'}")
    built = {k: _nested(v, model, f"{name}.{k}") for k, v in kwargs.items()}
    return _REGISTRY[name](model, **built)


def _nested(value, model: nn.Module, where: str):
    if isinstance(value, Mapping) and "name" in value:
        spec = dict(value)
        inner = spec.pop("name")
        if not isinstance(inner, str):
            raise InvrobError(f"{where}: the attack name must be a string, got {inner!r}")
        return build(inner, model, **spec)
    return value


__all__ = ["attack_names", "build", "discover", "options", "register"]


def discover() -> None:
    """Register the ``ATTACKS`` of every module of :mod:`invrob.attacks` (a new attack is one file)."""
    package = importlib.import_module(__name__.rpartition(".")[0])
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, cls in getattr(module, "ATTACKS", {}).items():
                register(name, cls)
