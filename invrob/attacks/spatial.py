"""Spatial attacks: the adversary rotates and / or translates the image (Engstrom et al., 2019).

One class per module; this module re-exports them, so ``from invrob.attacks.spatial
import ...`` keeps working:

- :class:`RotationGrid` (:mod:`invrob.attacks.rotation_grid`): k angles evenly spaced in ``[-φ, φ]``;
- :class:`SpatialGrid`, :data:`ENGSTROM_ROTATIONS`, :data:`ENGSTROM_TRANSLATIONS`
  (:mod:`invrob.attacks.spatial_grid`): the exhaustive rotations × translations grid,
  by default Engstrom et al.'s 31 × 5 × 5;
- :class:`WorstOfK` (:mod:`invrob.attacks.worst_of_k`): k random rotations + translations per sample;
- :class:`JointAttack` (:mod:`invrob.attacks.joint`): a spatial attack, then ℓ∞ (or ℓ2) PGD on its output;
- their shared threat model and search, :class:`_SpatialSearch` (:mod:`invrob.attacks.spatial_base`).
"""
from .joint import JointAttack
from .rotation_grid import RotationGrid
from .spatial_base import _SpatialSearch  # noqa: F401  (the fifth class, for subclasses)
from .spatial_grid import ENGSTROM_ROTATIONS, ENGSTROM_TRANSLATIONS, SpatialGrid
from .worst_of_k import WorstOfK

__all__ = ["RotationGrid", "SpatialGrid", "WorstOfK", "JointAttack", "ENGSTROM_ROTATIONS",
           "ENGSTROM_TRANSLATIONS"]
