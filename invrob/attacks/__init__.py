"""Attacks: objects that map ``(model, x, y)`` to worst-case inputs, and evaluations over budgets.

Every attack follows one contract (:class:`Attack`, :mod:`invrob.attacks.base`):
``attack(x, y) -> x_adv`` on ``x``'s device, ``attack.perturb(x, y) -> (x_adv,
fooled)``, ``attack.with_eps(eps)``, ``attack.name``, ``attack.norm``.

- :class:`PGD` ℓ∞ / ℓ2 (per-sample ε, first fooling iterate kept, early stop,
  restarts) and :class:`FGSM` — :mod:`invrob.attacks.pgd`;
- :class:`APGD` — AutoAttack's APGD from torchattacks, :mod:`invrob.attacks.apgd`;
- :class:`AutoAttack` — the standard AutoAttack ensemble (pyautoattack), :mod:`invrob.attacks.autoattack`;
- :class:`RotationGrid` — worst of k rotations in ``[-φ, φ]``, :mod:`invrob.attacks.rotation_grid`;
  :class:`SpatialGrid` — exhaustive rotation × translation grid (Engstrom et al.'s 5 × 5 × 31),
  :mod:`invrob.attacks.spatial_grid`; :class:`WorstOfK` — worst of k random rotations +
  translations, :mod:`invrob.attacks.worst_of_k`; :class:`JointAttack` — spatial, then ℓ∞ PGD,
  :mod:`invrob.attacks.joint`; their shared search in :mod:`invrob.attacks.spatial_base`
  (:mod:`invrob.attacks.spatial` re-exports all four);
- :func:`build` (:mod:`invrob.attacks.registry`): an attack by name, as configs, sweeps and studies name them;
- :func:`robust_accuracy` over an ε grid for any attack (stacked for PGD), and
  :func:`minimal_perturbation` (PGD bisection) — :mod:`invrob.attacks.evaluate`.

Layering: attacks build on ``errors``, ``metrics`` and ``rotations``, never on
``experiments`` or ``train``.
"""
from .apgd import APGD, APGD_LOSSES
from .autoattack import AUTOATTACK_ATTACKS, AUTOATTACK_VERSIONS, AutoAttack
from .base import NORMS, Attack, attack_mode
from .evaluate import minimal_perturbation, robust_accuracy, robust_points, worst_of_k_accuracy
from .joint import JointAttack
from .pgd import ALPHA_FACTOR, FGSM, LOSSES, PGD, pgd, pgd_training_examples
from .registry import attack_names, build, discover, register
from .rotation_grid import RotationGrid
from .spatial_grid import SpatialGrid
from .worst_of_k import WorstOfK

__all__ = ["robust_points", "Attack", "attack_mode", "PGD", "FGSM", "APGD", "RotationGrid", "SpatialGrid", "WorstOfK",
           "JointAttack", "pgd",
           "pgd_training_examples", "robust_accuracy", "minimal_perturbation", "NORMS", "LOSSES",
           "APGD_LOSSES", "ALPHA_FACTOR", "AutoAttack", "AUTOATTACK_ATTACKS",
           "AUTOATTACK_VERSIONS", "worst_of_k_accuracy", "attack_names", "build", "register"]

discover()  # attacks defined in modules added beside these (ATTACKS = {name: cls})
