"""invrob: invariance vs robustness of neural networks.

A thin helper package behind the book's notebooks:

- :mod:`invrob.data` — MNIST / CIFAR-10 as tensors in [0, 1]
- :mod:`invrob.models` — StdCNN, GCNN (e2cnn), LeNet, Madry net, ResNet-18
- :mod:`invrob.rotations` — batched rotations and rotated accuracy
- :mod:`invrob.attacks` — batched PGD, ε grids, minimal perturbations
- :mod:`invrob.train` — natural / rotation-augmented / adversarial training
- :mod:`invrob.metrics` — accuracy, bootstrap intervals, subspace angles
"""
from .errors import InvrobError

__version__ = "0.1.0"
__all__ = ["InvrobError", "__version__"]
