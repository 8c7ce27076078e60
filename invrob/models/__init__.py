"""Model registry: every model takes images in [0, 1] and returns 10 logits.

======== ================ ==========================================================
name     datasets         what
======== ================ ==========================================================
stdcnn   mnist, cifar10   plain CNN, same layout as the GCNNs (:mod:`.layout`)
gcnn_p4  mnist, cifar10   e2cnn GCNN, C4 (90° rotations), invariant logits
gcnn_p8  mnist, cifar10   e2cnn GCNN, C8 (45° rotations; exact for 90°)
gcnn_d4  mnist, cifar10   e2cnn GCNN, D4 = p4m (90° rotations and flips)
lenet    mnist            the authors' MNIST net
madry    mnist            Madry et al.'s MNIST net
wong     mnist            Wong et al.'s fast adversarial training net (``width``: 1 = theirs; fractional allowed)
resnet18 cifar10          CIFAR ResNet-18
vgg16    cifar10          CIFAR VGG16 with batch norm (the authors' CuSP net)
======== ================ ==========================================================

``stdcnn`` and ``gcnn_*`` take ``width`` (StdCNN channels of the first block;
a GCNN of the same ``width`` has about as many parameters), ``resnet18`` and
``vgg16`` take ``width`` (64 = the standard net). Each built model carries ``name``,
``dataset`` and ``build_kwargs``, so ``build_model(m.name, m.dataset,
**m.build_kwargs)`` rebuilds it (e.g. to load a checkpoint). The first child of
every model is its :class:`Normalize` layer.

Adding a model is one file: a module of this package that defines
``MODELS = {name: (datasets, builder)}`` (``builder(dataset, **options) -> nn.Module``)
is found when the package is imported and its models are registered after the built-ins
above (:func:`register_model`); ``tests/test_models.py`` runs every registered model
through its checks.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Callable

import torch
from torch import nn

from ..data import DATASETS
from ..errors import InvrobError, check_choice, check_positive_int
from .layout import DEFAULT_WIDTH, LAYOUTS
from .mnist import LeNet, MadryNet, WongNet
from .normalize import Normalize, dataset_stats
from .resnet import ResNet18
from .stdcnn import StdCNN
from .vgg import VGG16

__all__ = ["build_model", "model_names", "register_model", "count_parameters", "Normalize", "DATASETS",
           "StdCNN", "GCNN", "LeNet", "MadryNet", "WongNet", "ResNet18", "VGG16"]


def _stdcnn(dataset: str, width: int | None = None) -> nn.Module:
    return StdCNN(LAYOUTS[dataset], width or DEFAULT_WIDTH[dataset], *dataset_stats(dataset))


def _gcnn(group: str) -> Callable[..., nn.Module]:
    def build(dataset: str, width: int | None = None) -> nn.Module:
        from .gcnn import GCNN  # e2cnn loads (about 1 s) only where a GCNN is built

        return GCNN(group, LAYOUTS[dataset], width or DEFAULT_WIDTH[dataset], *dataset_stats(dataset))
    return build


def _resnet18(dataset: str, width: int = 64) -> nn.Module:
    return ResNet18(width)


def _vgg16(dataset: str, width: int = 64) -> nn.Module:
    return VGG16(width)


# name -> (datasets it is defined for, builder(dataset, **options))
_REGISTRY: dict[str, tuple[tuple[str, ...], Callable[..., nn.Module]]] = {
    "stdcnn": (DATASETS, _stdcnn),
    "gcnn_p4": (DATASETS, _gcnn("p4")),
    "gcnn_p8": (DATASETS, _gcnn("p8")),
    "gcnn_d4": (DATASETS, _gcnn("d4")),
    "lenet": (("mnist",), lambda dataset: LeNet()),
    "madry": (("mnist",), lambda dataset: MadryNet()),
    "wong": (("mnist",), lambda dataset, width=1: WongNet(1 if width is None else width)),
    "resnet18": (("cifar10",), _resnet18),
    "vgg16": (("cifar10",), _vgg16),
}


def register_model(name: str, datasets, builder: Callable[..., nn.Module]) -> None:
    """Register ``builder(dataset, **options)`` as model ``name`` for ``datasets``."""
    if not isinstance(name, str) or not name:
        raise InvrobError(f"a model name must be a non-empty string, got {name!r}")
    datasets = (datasets,) if isinstance(datasets, str) else tuple(datasets)
    for dataset in datasets:
        check_choice(dataset, DATASETS, "dataset")
    if not callable(builder):
        raise InvrobError(f"model {name!r}: the builder {builder!r} is not callable")
    if name in _REGISTRY and _REGISTRY[name] != (datasets, builder):
        raise InvrobError(f"model name {name!r} is taken")
    _REGISTRY[name] = (datasets, builder)


def __getattr__(name: str):
    if name == "GCNN":  # imported on first use: e2cnn takes about 1 s to load, and most runs build no GCNN
        from .gcnn import GCNN
        return GCNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# gcnn's models are registered above; importing it to search it would load e2cnn
_NOT_SEARCHED = {"gcnn"}


def _discover() -> None:
    """Register the ``MODELS`` of every module of this package (a new model is one file)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _NOT_SEARCHED:
            module = importlib.import_module(f"{__name__}.{info.name}")
            for name, (datasets, builder) in getattr(module, "MODELS", {}).items():
                register_model(name, datasets, builder)


_discover()


def model_names(dataset: str | None = None) -> list[str]:
    """Registered model names (only those defined for ``dataset`` if given)."""
    if dataset is None:
        return list(_REGISTRY)
    check_choice(dataset, DATASETS, "dataset")
    return [name for name, (datasets, _) in _REGISTRY.items() if dataset in datasets]


def build_model(name: str, dataset: str = "mnist", **kwargs) -> nn.Module:
    """Build a freshly initialised model (seed torch first for a reproducible init)."""
    check_choice(name, _REGISTRY, "model")
    check_choice(dataset, DATASETS, "dataset")
    datasets, builder = _REGISTRY[name]
    if dataset not in datasets:
        raise InvrobError(f"model {name!r} is not defined for dataset {dataset!r}; "
                          f"it supports: {', '.join(datasets)}")
    options = [p for p in inspect.signature(builder).parameters if p != "dataset"]
    for key, value in kwargs.items():
        if key not in options:
            raise InvrobError(f"model {name!r} takes no option {key!r}; "
                              f"valid: {', '.join(options) if options else 'none'}")
        if key == "width" and value is not None and name != "wong":  # wong's width may be fractional
            check_positive_int(value, "width")
    # Every floating parameter and buffer in the default dtype: e2cnn samples its filter
    # bases once per process and reuses them, so a GCNN built after the default dtype
    # changed would otherwise mix float32 and float64 buffers.
    model = builder(dataset, **kwargs).to(torch.get_default_dtype())
    model.name, model.dataset, model.build_kwargs = name, dataset, dict(kwargs)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (for e2cnn layers: the basis coefficients, the true degrees of freedom)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
