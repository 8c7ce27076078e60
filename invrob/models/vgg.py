"""VGG16 for CIFAR-10 (batch norm, one linear head), with a ``width`` knob.

The net of the authors' CuSP code (``trades/cusp_cifar10.py`` uses the common CIFAR
``VGG('VGG16')``): thirteen 3×3 conv–BN–ReLU layers in five blocks of widths
64, 128, 256, 512, 512, each block closed by a 2×2 max pool, then a linear layer
from the 512 remaining features to 10 logits (14.7M parameters). ``width``
scales every block (64 = the standard net; ``width`` / 64 of its channels).
"""
from __future__ import annotations

import torch
from torch import nn

from .normalize import Normalize, dataset_stats

# Channels per conv layer at width 64; "M": a 2×2 max pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """CIFAR VGG16 with batch norm; ``width`` = channels of the first block (64 standard)."""

    def __init__(self, width: int = 64, num_classes: int = 10):
        super().__init__()
        self.normalize = Normalize(*dataset_stats("cifar10"))
        layers, channels = [], 3
        for item in VGG16_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = max(1, item * width // 64)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))
