"""Per-channel normalisation as the first layer of every model.

Models take images in [0, 1]; ``Normalize`` maps them to ``(x - mean) / std``
inside the network, so attacks (ε in pixel units) and rotations (zero fill =
black) work in pixel space and never need to know the statistics.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..data import DATASETS
from ..errors import InvrobError, check_choice

#: Training-set statistics (mean, std) per channel, in [0, 1] pixel units, for
#: each of :data:`invrob.data.DATASETS`.
DATASET_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def dataset_stats(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` for a dataset name (one of :data:`invrob.data.DATASETS`)."""
    check_choice(dataset, DATASETS, "dataset")
    return DATASET_STATS[dataset]


class Normalize(nn.Module):
    """``x ↦ (x − mean) / std`` per channel, for ``x`` of shape ``(N, C, H, W)``.

    ``mean`` and ``std`` are buffers (they follow ``.to(device)`` and are saved
    in the state_dict, so a checkpoint records the statistics it was trained with).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or not all(s > 0 for s in std):
            raise InvrobError(f"Normalize needs one positive std per mean, got mean={mean!r} std={std!r}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.get_default_dtype()).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.get_default_dtype()).view(1, -1, 1, 1))

    @property
    def channels(self) -> int:
        return self.mean.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A wrong shape would otherwise surface as a broadcasting error deep in a conv.
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise InvrobError(f"expected images of shape (N, {self.channels}, H, W) in [0, 1], "
                              f"got shape {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.flatten().tolist())
        std = tuple(round(v, 4) for v in self.std.flatten().tolist())
        return f"mean={mean}, std={std}"
