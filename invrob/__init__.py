"""invrob: invariance vs robustness of neural networks.

A thin helper package behind the book's notebooks, in layers (each imports only
the layers before it; ``tests/test_layering.py`` checks it):

1. :mod:`invrob.errors` — one-line :class:`InvrobError` checks (θ, ε, images, labels);
   :mod:`invrob.utils` — devices and atomic writes
2. :mod:`invrob.data` — MNIST / CIFAR-10 as tensors in [0, 1];
   :mod:`invrob.metrics` — accuracy, bootstrap intervals, subspace angles;
   :mod:`invrob.stats` — paired bootstraps over seeds and points, equivalence and one-sided tests;
   :mod:`invrob.pareto` — Pareto fronts of two robustness axes;
   :mod:`invrob.theory` — a toy cyclic-group model where invariance costs ℓ∞ robustness (closed forms)
3. :mod:`invrob.rotations` — batched rotations, rotated accuracy, the rotation tangent;
   :mod:`invrob.transforms` — translations and rotation + translation;
   :mod:`invrob.models` — StdCNN, GCNN (e2cnn), LeNet, Madry net, ResNet-18
4. :mod:`invrob.attacks` — one contract: PGD, FGSM, APGD, AutoAttack, spatial grid attacks;
   robust accuracy over ε grids, minimal perturbations
5. :mod:`invrob.train` — natural / rotation-augmented / adversarial / scheduled training,
   checkpoints that resume bit for bit
6. :mod:`invrob.experiments` — train a grid, measure it into tidy tables;
   :mod:`invrob.plots` — the book's figures
7. :mod:`invrob.studies` — one module per study: settings per profile, training grid,
   table schemas, the paper's claims and their decision rules; :mod:`invrob.profiles`
8. :mod:`invrob.tooling` — the machinery around the science, apart from it: the notebook
   runner (:mod:`~invrob.tooling.runbook`, ``invrob run``), sweeps (:mod:`~invrob.tooling.sweep`,
   ``invrob sweep``), the portable smoke checks (:mod:`~invrob.tooling.regression`), a
   chapter's cost before it runs (:mod:`~invrob.tooling.budget`) and the ``invrob`` command
   (:mod:`~invrob.tooling.cli`, also ``python -m invrob``)
"""
from .errors import InvrobError

__version__ = "0.1.0"
__all__ = ["InvrobError", "__version__"]
