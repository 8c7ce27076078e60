"""The reference MNIST nets: the authors' LeNet, Madry et al.'s net and Wong et al.'s fast-training net."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .normalize import Normalize, dataset_stats
from ..errors import InvrobError


class LeNet(nn.Module):
    """The authors' MNIST net (PyTorch's MNIST example), returning logits.

    conv(1→10, 5×5) – maxpool 2 – ReLU, conv(10→20, 5×5) + Dropout2d – maxpool 2 –
    ReLU, fc 320→50 – ReLU – dropout, fc 50→10. 28→24→12→8→4, so 20·4·4 = 320.
    """

    def __init__(self):
        super().__init__()
        self.normalize = Normalize(*dataset_stats("mnist"))
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class MadryNet(nn.Module):
    """Madry et al.'s MNIST net: conv32(5×5, pad 2) – pool – conv64(5×5, pad 2) – pool – fc1024 – fc10."""

    def __init__(self):
        super().__init__()
        self.normalize = Normalize(*dataset_stats("mnist"))
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class WongNet(nn.Module):
    """Wong, Rice and Kolter's MNIST net (ICLR 2020, *Fast is better than free*, ``locuslab/fast_adversarial``).

    conv(1→16w, 4×4, stride 2, pad 1) – ReLU – conv(16w→32w, 4×4, stride 2, pad 1) – ReLU –
    fc 32w·7·7→100w – ReLU – fc 100w→10; 28→14→7 (channel counts rounded; w may be
    fractional, e.g. 0.25 for chapter 03's capacity point). ``width`` w = 1 is theirs (166k
    parameters, ≈ 0.6 M multiply-adds per image, a tenth of a width-4 LeNet's): the
    fast-training anchor of AutoAttack's table (98.50% clean / 82.93% AutoAttack at ε = 0.3).
    """

    def __init__(self, width: float = 1):
        super().__init__()
        if not (isinstance(width, (int, float)) and 1 / 16 <= width <= 64):
            raise InvrobError(f"wong: width must be a number in [1/16, 64] (1 = Wong et al.'s net), got {width!r}")
        c1, c2, hidden = (max(1, round(k * width)) for k in (16, 32, 100))
        self.normalize = Normalize(*dataset_stats("mnist"))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
