"""Batched translations, and rotation + translation in one resampling.

Conventions (those of :func:`invrob.rotations.rotate`): images are float
tensors ``(N, C, H, W)`` in [0, 1]; the output has the input's shape, dtype
and device and is differentiable in ``x``. Angles are in **degrees**,
counter-clockwise on screen. A shift ``(dx, dy)`` is in **pixels**, ``dx``
to the **right** (columns), ``dy`` **down** (rows, the image's own axis):
``translate(x, (1, 0))`` moves the content one column to the right.

The map. With centred pixel coordinates ``X = j − (W − 1)/2`` (column ``j``)
and ``Y = i − (H − 1)/2`` (row ``i``, down), the forward transformation of
:func:`rotate_translate` is ``u ↦ R_φ u + t``: rotate about the image centre
by φ, then translate by ``t = (dx, dy)``. It is computed as an inverse warp,
one bilinear sample per output pixel::

    output(X, Y) = input( R_φ⁻¹ (X − dx, Y − dy) ),
    R_φ⁻¹ (X, Y) = (X cos φ − Y sin φ,  X sin φ + Y cos φ)

(the matrix :func:`~invrob.rotations.rotate` uses; y points down, which is why
this is the inverse of a counter-clockwise turn on screen). Points that fall
outside the input read **zero** (black background), and between the border
pixel and the outside the bilinear weights blend towards that zero
(``grid_sample(padding_mode="zeros")``; ``scipy.ndimage``'s ``mode="grid-constant"``).

Exact cases. A sample whose angle is a multiple of 90° (square images; a
multiple of 360° for any shape) **and** whose shift is a whole number of
pixels is a pixel permutation followed by a zero-filled shift: it is done by
``torch.rot90`` and index arithmetic, so no interpolation touches it
(bit-identical to ``torch.roll`` with the wrapped-around part set to zero).
Every other sample goes through one ``grid_sample`` call for the batch.
Zero shifts give exactly :func:`~invrob.rotations.rotate` (same grid, same
kernel, same bits).

Accuracy against an independent bilinear implementation
(``scipy.ndimage.affine_transform`` / ``shift``, ``order=1``): with
``mode="grid-constant"`` the two agree everywhere to float32 rounding (the
normalised sampling grid costs ~1e-6 of a pixel, times the image gradient).
With ``mode="constant"`` scipy does not interpolate between the border pixel
and the outside (a point half a pixel outside reads 0 there, half the border
value here), so the two differ only within one pixel of where the input's
border lands; tests/test_transforms.py checks both statements.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvrobError, check_eps, check_theta
from .rotations import _angles_tensor

__all__ = ["translate", "rotate_translate", "random_transforms", "random_rotate_translate"]


def _check_batch(x, fn: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise InvrobError(f"{fn} expects float images of shape (B, C, H, W), got "
                          f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _shifts_tensor(shifts, batch: int, device: torch.device) -> torch.Tensor:
    """``shifts`` (one ``(dx, dy)`` pair, or one per sample) as float64 of shape (batch, 2)."""
    if isinstance(shifts, torch.Tensor):
        t = shifts.detach().to(device=device, dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(shifts, dtype=np.float64), device=device)
        except (TypeError, ValueError):
            raise InvrobError(f"shifts must be a pair (dx, dy) of pixels or one pair per sample, "
                              f"got {shifts!r}") from None
    if t.shape == (2,):
        t = t.expand(batch, 2)
    if t.shape != (batch, 2):
        raise InvrobError(f"shifts must have shape (2,) or ({batch}, 2) (one (dx, dy) per sample), "
                          f"got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InvrobError("shifts must be finite numbers of pixels")
    return t + 0.0  # -0.0 -> 0.0


def _shift_exact(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Whole-pixel shift of each sample (``dx`` right, ``dy`` down, int64 (B,)), zero fill.

    A gather of the source pixel ``(i − dy, j − dx)``; pixels whose source lies
    outside the image are set to zero. No arithmetic on the values: exact.
    """
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]          # (B, H) source rows
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]          # (B, W) source columns
    inside = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    moved = x.reshape(b, c, h * w).gather(2, index.reshape(b, 1, h * w).expand(b, c, h * w))
    return torch.where(inside[:, None], moved.reshape(b, c, h, w), torch.zeros((), dtype=x.dtype,
                                                                                device=x.device))


def _exact(x: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Quarter turns (``torch.rot90``) then whole-pixel shifts: a permutation plus zero fill."""
    turns = torch.remainder(torch.round(angles / 90.0), 4).long()
    rotated = x
    if bool((turns != 0).any()):
        rotated = torch.empty_like(x)
        for k in range(4):
            idx = torch.nonzero(turns == k).flatten()
            if len(idx):
                rotated[idx] = torch.rot90(x[idx], k, dims=(2, 3))
    whole = torch.round(shifts).long()
    return _shift_exact(rotated, whole[:, 0], whole[:, 1])


def _grid_rotate_translate(x: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Bilinear ``output(X, Y) = input(R⁻¹ (X − dx, Y − dy))`` for every sample, one grid_sample.

    The grid of :func:`invrob.rotations._grid_rotate` with the shift subtracted
    first (in ``grid_sample``'s normalised frame one pixel is ``2 / W`` across
    and ``2 / H`` down); with zero shifts every operation is the same, so the
    result is bit-identical to :func:`~invrob.rotations.rotate`.
    """
    _, _, h, w = x.shape
    rad = angles * (math.pi / 180.0)
    cos = torch.cos(rad).to(x.dtype)[:, None, None]
    sin = torch.sin(rad).to(x.dtype)[:, None, None]
    tx = (shifts[:, 0] * (2.0 / w)).to(x.dtype)[:, None, None]
    ty = (shifts[:, 1] * (2.0 / h)).to(x.dtype)[:, None, None]
    gx = ((torch.arange(w, dtype=x.dtype, device=x.device) * 2 + 1) / w - 1)[None, None, :] - tx
    gy = ((torch.arange(h, dtype=x.dtype, device=x.device) * 2 + 1) / h - 1)[None, :, None] - ty
    grid = torch.stack((cos * gx - sin * (h / w) * gy, sin * (w / h) * gx + cos * gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_translate(x: torch.Tensor, angles, shifts) -> torch.Tensor:
    """Rotate each image about its centre by ``angles`` degrees, then shift it by ``shifts`` pixels.

    ``angles``: one number or a (B,) tensor / array; ``shifts``: one pair
    ``(dx, dy)`` or a (B, 2) tensor / array (dx right, dy down). One bilinear
    resampling for both (not two: interpolating twice would blur twice), zero
    padding; quarter turns with whole-pixel shifts are exact (module docstring).
    Returns a tensor of ``x``'s shape, dtype and device; differentiable in ``x``.
    """
    _check_batch(x, "rotate_translate")
    b, _, h, w = x.shape
    a = _angles_tensor(angles, b, x.device)
    t = _shifts_tensor(shifts, b, x.device)
    if b == 0:
        return x.clone()
    period = 90.0 if h == w else 360.0  # a non-square image turned by 90° would change shape
    exact = (torch.remainder(a, period) == 0) & (t == torch.round(t)).all(1)
    if bool(exact.all()):
        return _exact(x, a, t)
    if not bool(exact.any()):
        return _grid_rotate_translate(x, a, t)
    out = torch.empty_like(x)
    idx, rest = torch.nonzero(exact).flatten(), torch.nonzero(~exact).flatten()
    out[idx] = _exact(x[idx], a[idx], t[idx])
    out[rest] = _grid_rotate_translate(x[rest], a[rest], t[rest])
    return out


def translate(x: torch.Tensor, shifts) -> torch.Tensor:
    """Shift each image by ``shifts`` pixels (``dx`` right, ``dy`` down), zero padding.

    ``shifts``: one pair ``(dx, dy)`` or a (B, 2) tensor / array. Whole-pixel
    shifts are exact (``torch.roll`` with the wrapped part zeroed); sub-pixel
    shifts are bilinear. Same as ``rotate_translate(x, 0, shifts)``.
    """
    _check_batch(x, "translate")
    return rotate_translate(x, 0.0, shifts)


def random_transforms(n: int, max_angle: float, max_shift: float,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (angle, shift) pairs: angle ~ U[−max_angle, max_angle] degrees and
    dx, dy ~ U[−max_shift, max_shift] pixels, independently (continuous, so shifts
    are sub-pixel; Engstrom et al.'s random spatial attack).

    One ``torch.rand((n, 3))`` draw (float64) on the generator's device, moved to
    ``device``: the same seeded CPU generator gives the same transforms on any device.
    Returns ``(angles (n,), shifts (n, 2))``, float64.
    """
    max_angle = check_theta(max_angle, "max_angle")
    max_shift = check_eps(max_shift, "max_shift")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InvrobError(f"n must be an integer >= 0, got {n!r}")
    draw_on = generator.device if generator is not None else (device or "cpu")
    u = 2.0 * torch.rand((int(n), 3), generator=generator, device=draw_on, dtype=torch.float64) - 1.0
    angles, shifts = u[:, 0] * max_angle, u[:, 1:] * max_shift
    if device is not None:
        angles, shifts = angles.to(device), shifts.to(device)
    return angles, shifts


def random_rotate_translate(x: torch.Tensor, max_angle: float, max_shift: float,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Each sample rotated and shifted by its own transform from :func:`random_transforms`."""
    _check_batch(x, "random_rotate_translate")
    angles, shifts = random_transforms(len(x), max_angle, max_shift, generator, device=x.device)
    return rotate_translate(x, angles, shifts)
