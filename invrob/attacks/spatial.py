"""Spatial attacks: the adversary rotates and / or translates the image (Engstrom et al., 2019).

Threat model: an image may be rotated about its centre by an angle in
``[-φ, φ]`` degrees and then shifted by ``(dx, dy)`` pixels with
``|dx|, |dy| ≤ s`` (:func:`invrob.transforms.rotate_translate`: bilinear, zero
padding, dx right, dy down). The attacks search a finite set of transformations
and keep, per sample, the transformed image that is misclassified if any is —
the one with the largest cross-entropy among those — else the one with the
largest cross-entropy (ties: the first in the set's order). Gradient-free, so
gradient masking cannot fool them; exhaustive over their set.

- :class:`RotationGrid`: k angles evenly spaced in ``[-φ, φ]`` (rotations only);
- :class:`SpatialGrid`: the product grid angles × dx × dy, by default
  Engstrom et al.'s evaluation grid, 31 angles in ±30° × 5 × 5 shifts in ±3 px
  (775 transformations); a rotation-only grid over ±180° is
  ``SpatialGrid(model, rotations=numpy.linspace(-180, 180, k), translations=[0])``;
- :class:`WorstOfK`: k random transformations per sample (Engstrom et al.'s
  worst-of-10 *training* attack), fresh draws at every call;
- :class:`JointAttack`: a spatial attack, then ℓ∞ (or ℓ2) PGD on its output.

Budgets (``attack.eps``): φ in degrees for :class:`RotationGrid`; the pair
``(φ, s)`` = (largest |angle|, largest |shift|) for :class:`SpatialGrid` and
:class:`WorstOfK`, whose ``with_eps((φ', s'))`` rescales the set to the new
ranges; the ℓp radius ε for :class:`JointAttack` (its spatial budget stays
fixed, so ``robust_accuracy`` can sweep ε).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvrobError, check_eps, check_positive_int, check_theta
from ..metrics import check_model_inputs, eval_mode, model_device
from ..rotations import _correct_grid, rotate
from ..transforms import random_transforms, rotate_translate
from .base import NORMS, Attack, attack_mode

__all__ = ["RotationGrid", "SpatialGrid", "WorstOfK", "JointAttack", "ENGSTROM_ROTATIONS",
           "ENGSTROM_TRANSLATIONS"]

# Engstrom et al. (2019)'s evaluation grid: numpy.linspace(-limit, limit, granularity)
# with limits (3 px, 3 px, 30°) and granularities (5, 5, 31).
ENGSTROM_ROTATIONS = tuple(np.linspace(-30.0, 30.0, 31).tolist())
ENGSTROM_TRANSLATIONS = tuple(np.linspace(-3.0, 3.0, 5).tolist())


class RotationGrid(Attack):
    """Worst-of-k rotation attack: ``RotationGrid(model, phi, k)(x, y) -> x_adv``.

    Args:
        model: a classifier returning logits, images (N, C, H, W) in [0, 1].
        phi: half-range φ of the angles, in degrees, in [0, 180] (the budget:
            ``attack.eps`` is φ and ``with_eps`` changes it).
        k: number of angles, evenly spaced in ``[-φ, φ]`` (both ends included).
        batch_size: rotated images per forward pass (bounds memory whatever k).

    ``x_adv`` is exactly ``rotate(x, angles)`` for the chosen angle of each
    sample; :meth:`correct_grid` gives the whole (k, N) table of which angles
    each sample survives.
    """

    norm = "rotation"
    input_rules = {"ndim": 4}

    def __init__(self, model: nn.Module, phi: float, k: int = 10, batch_size: int = 1000):
        super().__init__(model, phi)
        self.k = check_positive_int(k, "k")
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _check_budget(self, phi):
        return check_theta(phi, "phi")

    @property
    def steps(self) -> int:
        return self.k   # model evaluations per sample

    @property
    def angles(self) -> torch.Tensor:
        """The k angles (float64, degrees); k = 1 is the clean image."""
        grid = np.linspace(-self.eps, self.eps, self.k) if self.k > 1 else np.zeros(1)
        return torch.tensor(grid, dtype=torch.float64)

    @property
    def name(self) -> str:
        return f"RotationGrid-{self.k}"

    def _grid(self, x: torch.Tensor, y: torch.Tensor, loss: bool):
        """(k, N) correctness (and cross-entropy) of every (angle, sample), on the model's device."""
        return _correct_grid(self.model, x, y, self.angles, torch.ones(len(x), dtype=torch.float64),
                             self.batch_size, desc="worst-of-k", loss=loss)

    def correct_grid(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean (k, N) on ``x``'s device: is sample n classified correctly at angle t?

        A sample survives the attack when its column is all True; the
        worst-of-k accuracy is ``correct_grid(x, y).all(0).mean()``.
        """
        check_model_inputs(self.model, x, y, **self.input_rules)
        with attack_mode(self.model):
            return self._grid(x, y, loss=False).to(x.device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, y)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching."""
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        correct, loss = attack._grid(x, y, loss=True)
        wrong = ~correct
        fooled = wrong.any(0)
        # Among misclassified angles (if any) the most confidently wrong, else the largest loss.
        score = torch.where(wrong | ~fooled[None], loss, torch.full_like(loss, -torch.inf))
        best = score.argmax(0)
        return rotate(x, attack.angles.to(device)[best]), fooled


# ------------------------------------------------------------------ rotation + translation

def _check_spatial_budget(eps, name: str = "eps") -> tuple[float, float]:
    """A spatial budget: the pair (largest |angle| in [0, 180] degrees, largest |shift| >= 0 px)."""
    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().tolist()
    if isinstance(eps, (str, bytes)) or not hasattr(eps, "__len__") or len(eps) != 2:
        raise InvrobError(f"{name} of a spatial attack is the pair (max angle in degrees, max shift "
                          f"in pixels), got {eps!r}")
    return check_theta(eps[0], f"{name}[0] (max angle)") + 0.0, check_eps(eps[1], f"{name}[1] (max shift)") + 0.0


@torch.no_grad()
def _transform_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, angles: torch.Tensor,
                      shifts: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N) correctness and cross-entropy of sample n under transformation t.

    ``angles`` (T, N) and ``shifts`` (T, N, 2) on ``x``'s device (a grid shared by
    all samples is an ``expand``ed view: no copy). The T·N (transformation,
    sample) pairs are flattened t-major and run in chunks of ``batch_size``
    transformed images, one ``rotate_translate`` and one forward pass per chunk,
    so memory is bounded whatever T. ``x`` and ``y`` on the model's device.
    """
    t_count, n = angles.shape
    correct = torch.zeros(t_count, n, dtype=torch.bool, device=x.device)
    losses = torch.zeros(t_count, n, device=x.device, dtype=torch.float32)  # the losses below are float32
    flat_angles, flat_shifts = angles.reshape(-1), shifts.reshape(-1, 2)
    with eval_mode(model):
        for start in range(0, t_count * n, batch_size):
            flat = torch.arange(start, min(start + batch_size, t_count * n), device=x.device)
            img, t = flat % n, flat // n
            logits = model(rotate_translate(x[img], flat_angles[flat], flat_shifts[flat]))
            correct[t, img] = logits.argmax(1) == y[img]
            losses[t, img] = F.cross_entropy(logits.float(), y[img], reduction="none")
    return correct, losses


@torch.no_grad()
def _survivors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor,
               batch_size: int) -> torch.Tensor:
    """(N,): is sample n classified correctly under every transformation t?

    The same images and forward passes as :func:`_transform_scores` (``.all(0)`` of its
    correctness), except that a sample is no longer transformed once one transformation
    fools the model: on a model that most transformations fool, a large grid then costs
    a few of its transformations per point, not all of them.
    """
    t_count, n = angles.shape
    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    t = 0
    with eval_mode(model):
        while t < t_count:
            live = alive.nonzero().squeeze(1)
            if len(live) == 0:
                break
            rows = torch.arange(t, min(t + max(1, batch_size // len(live)), t_count), device=x.device)
            t += len(rows)
            pair_t, pair_n = rows.repeat_interleave(len(live)), live.repeat(len(rows))
            for start in range(0, len(pair_t), batch_size):
                tt, nn_ = pair_t[start:start + batch_size], pair_n[start:start + batch_size]
                logits = model(rotate_translate(x[nn_], angles[tt, nn_], shifts[tt, nn_]))
                alive[nn_[logits.argmax(1) != y[nn_]]] = False
    return alive


def _pick_worst(correct: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (column): the index of the worst transformation, and whether it fools.

    Misclassified transformations win over classified ones; among equals the
    largest cross-entropy; among ties the first (``argmax``)."""
    wrong = ~correct
    fooled = wrong.any(0)
    score = torch.where(wrong | ~fooled[None], losses, torch.full_like(losses, -torch.inf))
    return score.argmax(0), fooled


class _SpatialSearch(Attack):
    """Shared machinery: evaluate a set of (angle, shift) per sample, keep the worst."""

    norm = "spatial"
    input_rules = {"ndim": 4}

    def _check_budget(self, eps):
        return _check_spatial_budget(eps)

    def _candidates(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``angles (T, n)`` and ``shifts (T, n, 2)`` (float64, on ``device``) to try."""
        raise NotImplementedError

    def _worst(self, x: torch.Tensor, y: torch.Tensor):
        angles, shifts = self._candidates(len(x), x.device)
        if len(x) == 0:
            return angles[0], shifts[0], torch.zeros(0, dtype=torch.bool, device=x.device)
        correct, losses = _transform_scores(self.model, x, y, angles, shifts, self.batch_size)
        best, fooled = _pick_worst(correct, losses)
        cols = torch.arange(len(x), device=x.device)
        return angles[best, cols], shifts[best, cols], fooled

    def worst_transforms(self, x: torch.Tensor, y: torch.Tensor):
        """``(angles (N,), shifts (N, 2), fooled (N,))`` on ``x``'s device: each sample's
        chosen transformation (``x_adv = rotate_translate(x, angles, shifts)``) and
        whether it is misclassified. Checks the batch; model in attack mode."""
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            angles, shifts, fooled = self._worst(x.detach().to(device), y.to(device))
        return angles.to(x.device), shifts.to(x.device), fooled.to(x.device)

    def survives(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean (N,) on ``x``'s device: is sample n classified correctly under every
        transformation of the set? (The attack's accuracy is its mean.) The same answer
        as classifying the attack's output, without evaluating a sample's remaining
        transformations once one fools the model. Checks the batch; model in attack mode."""
        check_model_inputs(self.model, x, y, **self.input_rules)
        device = model_device(self.model)
        with attack_mode(self.model):
            xd, yd = x.detach().to(device), y.to(device)
            angles, shifts = self._candidates(len(xd), device)
            return _survivors(self.model, xd, yd, angles, shifts, self.batch_size).to(x.device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, y)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching."""
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        angles, shifts, fooled = attack._worst(x, y)
        return rotate_translate(x, angles, shifts), fooled


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


class WorstOfK(_SpatialSearch):
    """Worst of k random rotations + translations per sample (Engstrom et al.'s training attack).

    Args:
        model: a classifier returning logits, images (N, C, H, W) in [0, 1].
        k: transformations tried per sample.
        max_angle: angles ~ U[−max_angle, max_angle] degrees (default 30).
        max_shift: dx, dy ~ U[−max_shift, max_shift] pixels, continuous (default 3).
        seed: seeds the attack's own CPU generator (when ``generator`` is None).
        generator: a ``torch.Generator`` to draw from instead (the training loop
            passes its own, so a resumed run draws the same transformations).
        batch_size: transformed images per forward pass.

    Every call draws fresh transformations (:meth:`draw`, from the generator):
    ``k · N`` of them, laid out sample-major (sample n's k draws are consecutive).
    ``attack.eps`` is ``(max_angle, max_shift)``. The identity is not among the
    candidates (as in Engstrom et al.): a sample can come back transformed even
    when the clean image is the worse one.
    """

    def __init__(self, model: nn.Module, k: int = 10, max_angle: float = 30.0, max_shift: float = 3.0,
                 seed: int = 0, generator: torch.Generator | None = None, batch_size: int = 1000):
        self.k = check_positive_int(k, "k")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if generator is None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise InvrobError(f"seed must be an integer >= 0, got {seed!r}")
            generator = torch.Generator().manual_seed(int(seed))
        elif not isinstance(generator, torch.Generator):
            raise InvrobError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        super().__init__(model, (max_angle, max_shift))

    @property
    def max_angle(self) -> float:
        return self.eps[0]

    @property
    def max_shift(self) -> float:
        return self.eps[1]

    @property
    def steps(self) -> int:
        return self.k

    @property
    def name(self) -> str:
        return f"WorstOf{self.k}"

    def draw(self, n: int, device: torch.device | str | None = None):
        """The next ``angles (k, n)`` and ``shifts (k, n, 2)`` from the generator (float64)."""
        angles, shifts = random_transforms(n * self.k, self.max_angle, self.max_shift, self.generator,
                                           device=device)
        return angles.reshape(n, self.k).T, shifts.reshape(n, self.k, 2).transpose(0, 1)

    def _candidates(self, n: int, device: torch.device):
        return self.draw(n, device)


class JointAttack(Attack):
    """The worst spatial transformation, then an ℓp attack on the transformed image.

    ``JointAttack(model, spatial, linf)(x, y) -> x_adv``, with ``spatial`` a
    :class:`SpatialGrid`, :class:`WorstOfK` or :class:`RotationGrid` and
    ``linf`` an ℓ∞ (or ℓ2) attack (:class:`~invrob.attacks.PGD`,
    :class:`~invrob.attacks.APGD`, ...) on the same model.

    Threat model: ``x_adv = T(x) + δ`` with ``T`` in the spatial attack's set
    and ``‖δ‖ ≤ ε``, ``x_adv ∈ [0, 1]`` — the ε-ball is around the
    **transformed** image ``T(x)``, not around ``x``. The search is greedy, not
    the joint maximum: ``T`` is chosen first (misclassified if possible, else
    maximum cross-entropy), then samples that ``T`` alone does not fool are
    attacked by ``linf`` from ``T(x)``; samples already fooled keep ``T(x)``.
    So the joint accuracy is at most the spatial attack's accuracy; it is an
    upper bound on the accuracy under this threat model.

    ``attack.eps`` is ``linf``'s ε (``with_eps`` changes only it, so
    ``robust_accuracy`` sweeps ε at a fixed spatial set); ε = 0 is the spatial
    attack alone — but ``robust_accuracy``'s ε = 0 row is the clean accuracy (it
    runs no attack at ε = 0), so read the spatial-only number from the spatial attack.
    """

    input_rules = {"ndim": 4}

    def __init__(self, model: nn.Module, spatial: Attack, linf: Attack):
        if not isinstance(spatial, Attack) or spatial.norm not in ("spatial", "rotation"):
            raise InvrobError("spatial must be a spatial attack (SpatialGrid, WorstOfK, RotationGrid), "
                              f"got {type(spatial).__name__}")
        if not isinstance(linf, Attack) or linf.norm not in NORMS:
            raise InvrobError(f"linf must be an l-inf or l2 attack (PGD, APGD, FGSM), got {type(linf).__name__}")
        if spatial.model is not model or linf.model is not model:
            raise InvrobError("spatial and linf must be built on the model that JointAttack attacks")
        self.spatial, self.linf = spatial, linf
        super().__init__(model, linf.eps)

    def _check_budget(self, eps):
        return check_eps(eps, "eps")

    @property
    def norm(self) -> str:
        return f"spatial+{self.linf.norm}"

    @property
    def steps(self) -> int:
        return self.spatial.steps + self.linf.steps

    @property
    def restarts(self) -> int:
        return self.linf.restarts

    @property
    def name(self) -> str:
        return f"{self.spatial.name}+{self.linf.name}"

    def with_eps(self, eps) -> "JointAttack":
        clone = super().with_eps(eps)
        clone.linf = self.linf.with_eps(clone.eps)
        return clone

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(x, y)[0]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps=None):
        """``(x_adv, fooled)`` on the model's device; no input checks, no mode switching."""
        attack = self if eps is None else self.with_eps(eps)
        device = model_device(self.model)
        x, y = x.detach().to(device), y.to(device)
        x_adv, fooled = attack.spatial.perturb(x, y)
        rest = torch.nonzero(~fooled).flatten()
        if attack.eps > 0 and len(rest):
            adv, hit = attack.linf.perturb(x_adv[rest], y[rest])
            x_adv, fooled = x_adv.clone(), fooled.clone()
            x_adv[rest], fooled[rest] = adv, hit
        return x_adv, fooled
