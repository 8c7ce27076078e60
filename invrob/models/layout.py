"""The one conv layout shared by StdCNN and the GCNNs (the paper's fair comparison).

A layout is a sequence of steps: ``(kernel, multiplier)`` is a conv layer
(``kernel × kernel``, padding ``kernel // 2``, then batch norm and ReLU) with
``multiplier × width`` output channels, and ``"M"`` is a 2×2 max pool.
After the last step both families pool globally (max over space: on small MNIST
nets it trains much faster than the mean) and apply one linear layer to 10 logits.

Why these choices: odd kernels with padding ``k // 2`` and 2×2 pools on even
sizes (28→14→7, 32→16→8→4) map the pixel grid onto itself under a 90°
rotation, so a rotation of the input commutes *exactly* with every layer and
the GCNN logits are invariant up to float error.
"""
from __future__ import annotations

#: MNIST (1×28×28): 4 conv layers, two pools (28→14→7); pooling right after the
#: first conv keeps a CPU epoch short (most of the cost sits at 28×28).
MNIST_LAYOUT = ((3, 1), "M", (3, 2), (3, 2), "M", (3, 4))
#: CIFAR-10 (3×32×32): a VGG-ish 6 conv layers, three pools (32→16→8→4).
CIFAR10_LAYOUT = ((3, 1), (3, 1), "M", (3, 2), (3, 2), "M", (3, 4), (3, 4), "M")

LAYOUTS = {"mnist": MNIST_LAYOUT, "cifar10": CIFAR10_LAYOUT}
#: ``width`` (StdCNN channels of the first block) when none is given.
#: MNIST 8 (≈8.6k parameters) trains an epoch in well under a minute on one CPU core;
#: pass ``width=16`` (≈34k) or more on a GPU.
DEFAULT_WIDTH = {"mnist": 8, "cifar10": 64}
