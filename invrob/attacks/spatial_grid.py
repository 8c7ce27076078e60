"""Exhaustive rotation × translation grid: :class:`SpatialGrid` (Engstrom et al., 2019).

``x_adv = rotate_translate(x, θ, (dx, dy))`` for each sample's worst ``(θ, dx, dy)``
of a finite set ``T`` (the rule of :mod:`invrob.attacks.spatial_base`). By default
``T`` is Engstrom et al.'s evaluation grid, the product

    θ ∈ linspace(−30°, 30°, 31) × dx ∈ linspace(−3, 3, 5) px × dy ∈ linspace(−3, 3, 5) px,

775 transformations, identity included (:data:`ENGSTROM_ROTATIONS`,
:data:`ENGSTROM_TRANSLATIONS`). Budget: ``(φ, s) = (max |θ|, max(|dx|, |dy|))``
over ``T``; ``with_eps((φ', s'))`` scales the angles by φ'/φ and the shifts by s'/s.
A rotation-only grid over ±180° is
``SpatialGrid(model, rotations=numpy.linspace(-180, 180, k), translations=[0])``.

Reference: L. Engstrom, B. Tran, D. Tsipras, L. Schmidt, A. Madry, "Exploring the
Landscape of Spatial Robustness", ICML 2019 — the exhaustive grid attack.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InvrobError, check_positive_int
from ..metrics import check_model_inputs, model_device
from .base import attack_mode
from .spatial_base import _check_spatial_budget, _SpatialSearch, _transform_scores

__all__ = ["SpatialGrid", "ENGSTROM_ROTATIONS", "ENGSTROM_TRANSLATIONS"]

# Engstrom et al. (2019)'s evaluation grid: numpy.linspace(-limit, limit, granularity)
# with limits (3 px, 3 px, 30°) and granularities (5, 5, 31).
ENGSTROM_ROTATIONS = tuple(np.linspace(-30.0, 30.0, 31).tolist())
ENGSTROM_TRANSLATIONS = tuple(np.linspace(-3.0, 3.0, 5).tolist())


def _grid_values(values, name: str, default) -> np.ndarray:
    values = default if values is None else values
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        grid = np.asarray(values, dtype=np.float64).reshape(-1) if np.ndim(values) <= 1 \
            else np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvrobError(f"{name} must be a list of numbers, got {values!r}") from None
    if grid.size == 0 or not np.isfinite(grid).all():
        raise InvrobError(f"{name} must be a non-empty list of finite numbers, got {values!r}")
    return grid


class SpatialGrid(_SpatialSearch):
    """Exhaustive grid attack over rotations × translations: ``SpatialGrid(model)(x, y) -> x_adv``.

    Args:
        model: a classifier returning logits, images (N, C, H, W) in [0, 1].
        rotations: the angles to try, in degrees (default Engstrom et al.'s
            ``linspace(-30, 30, 31)``).
        translations: the shifts to try, in pixels: a list of values used for
            both ``dx`` and ``dy`` (the grid is their product; default
            ``linspace(-3, 3, 5)``), or an (M, 2) array of explicit ``(dx, dy)`` pairs.
        transforms: instead of the two above, an explicit (T, 3) array of
            ``(angle, dx, dy)`` rows (any finite set, not a product).
        batch_size: transformed images per forward pass (bounds memory).

    The set is ``rotations × translations`` in that order (angle-major), i.e.
    :attr:`transforms`; the default has 31 · 25 = 775 elements and contains the
    identity. ``attack.eps`` is ``(max |angle|, max |shift|)`` over the set;
    ``with_eps((φ, s))`` scales angles by φ / max|angle| and shifts by
    s / max|shift| (a zero range stays zero). ``x_adv`` is exactly
    ``rotate_translate(x, angle, shift)`` for each sample's chosen transformation
    (:meth:`worst_transforms`); :meth:`correct_grid` gives the (T, N) table.
    """

    def __init__(self, model: nn.Module, rotations=None, translations=None, *, transforms=None,
                 batch_size: int = 1000):
        if transforms is not None:
            if rotations is not None or translations is not None:
                raise InvrobError("give either transforms or rotations / translations, not both")
            table = _grid_values(transforms, "transforms", None)
            if table.ndim != 2 or table.shape[1] != 3:
                raise InvrobError(f"transforms must be a (T, 3) array of (angle, dx, dy) rows, "
                                  f"got shape {table.shape}")
        else:
            angles = _grid_values(rotations, "rotations", ENGSTROM_ROTATIONS)
            shifts = _grid_values(translations, "translations", ENGSTROM_TRANSLATIONS)
            if angles.ndim != 1:
                raise InvrobError(f"rotations must be a flat list of angles, got shape {angles.shape}")
            if shifts.ndim == 1:
                shifts = np.stack(np.meshgrid(shifts, shifts, indexing="ij"), -1).reshape(-1, 2)
            elif shifts.ndim != 2 or shifts.shape[1] != 2:
                raise InvrobError(f"translations must be a list of values or an (M, 2) array of "
                                  f"(dx, dy) pairs, got shape {shifts.shape}")
            table = np.concatenate([np.repeat(angles, len(shifts))[:, None],
                                    np.tile(shifts, (len(angles), 1))], axis=1)
        self._table = torch.tensor(table + 0.0, dtype=torch.float64)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        super().__init__(model, self._range())

    def _range(self) -> tuple[float, float]:
        return (float(self._table[:, 0].abs().max()), float(self._table[:, 1:].abs().max()))

    @property
    def transforms(self) -> torch.Tensor:
        """The (T, 3) float64 table of ``(angle, dx, dy)`` tried, in order."""
        return self._table.clone()

    @property
    def steps(self) -> int:
        return len(self._table)  # model evaluations per sample

    @property
    def name(self) -> str:
        return f"SpatialGrid-{len(self._table)}"

    def with_eps(self, eps) -> "SpatialGrid":
        """A copy whose set is rescaled to the ranges ``eps = (max angle, max shift)``."""
        new = _check_spatial_budget(eps)
        old = self._range()
        table = self._table.clone()
        for cols, before, after in ((slice(0, 1), old[0], new[0]), (slice(1, 3), old[1], new[1])):
            if before == 0 and after > 0:
                raise InvrobError(f"cannot scale a grid whose {'angles' if cols.start == 0 else 'shifts'} "
                                  f"are all 0 to a range of {after:g}: build a new SpatialGrid")
            table[:, cols] = table[:, cols] * (after / before) if before > 0 else table[:, cols]
        clone = super().with_eps(new)
        clone._table = table
        return clone

    def _candidates(self, n: int, device: torch.device):
        table = self._table.to(device)
        return table[:, 0, None].expand(-1, n), table[:, None, 1:].expand(-1, n, 2)

    def correct_grid(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean (T, N) on ``x``'s device: is sample n classified correctly under transform t?

        The grid accuracy is ``correct_grid(x, y).all(0).mean()``."""
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            xd, yd = x.detach().to(device), y.to(device)
            angles, shifts = self._candidates(len(xd), device)
            return _transform_scores(self.model, xd, yd, angles, shifts, self.batch_size)[0].to(x.device)
