"""StdCNN: the plain CNN with the same layout as the GCNNs (see :mod:`.layout`)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .normalize import Normalize


class StdCNN(nn.Module):
    """conv–BN–ReLU layers and 2×2 max pools per ``layout``, global max pool, linear head.

    ``width`` is the channel count of the first block; a step ``(k, m)`` has
    ``m · width`` channels.
    """

    def __init__(self, layout: Sequence, width: int, mean: Sequence[float], std: Sequence[float],
                 num_classes: int = 10):
        super().__init__()
        self.normalize = Normalize(mean, std)  # first child: models see [0, 1] pixels
        layers: list[nn.Module] = []
        channels = len(mean)
        for step in layout:
            if step == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            kernel, mult = step
            out = mult * width
            # no conv bias: the batch norm right after has its own shift
            layers += [nn.Conv2d(channels, out, kernel, padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.normalize(x))
        return self.fc(h.amax(dim=(2, 3)))
