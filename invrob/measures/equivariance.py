"""Layer-wise equivariance and invariance errors of a model for a finite set of rotation angles.

For a named layer ``f_l`` (a module's output, see :mod:`invrob.measures._layers`)
and an angle φ (degrees, :func:`invrob.rotations.rotate`'s convention), the
relative error of one input ``x`` is

- spatial feature maps ``(C, H, W)`` — **equivariance**:
  ``‖f_l(R_φ x) − T_φ f_l(x)‖ / ‖f_l(x)‖``, where ``T_φ`` rotates the feature
  map with the same :func:`~invrob.rotations.rotate` (bilinear, zero padding;
  exact ``rot90`` at multiples of 90°) and leaves the channels alone: the
  hypothesis that a plain CNN's channels are rotation-invariant "scalar"
  fields. Channels of a plain CNN are not; the error says how far they are.
- e2cnn feature fields (a GCNN's ``GeometricTensor``) — **group equivariance**:
  ``T_φ = ρ(g) ∘ rotate(·, φ)`` with ``ρ`` the field type's representation
  of the group element ``g`` that rotates by φ (for p4's regular fields a
  cyclic shift of the 4 orientation channels of each field). Defined only
  when φ is a multiple of 360°/N for the group's N rotations; for other angles
  the row has ``kind = "undefined"`` and ``error = NaN`` (a regular field of C4
  has no action of a 15° turn). At multiples of 90° the result is exact (pixel
  permutations), so a p4 GCNN shows float-precision zeros in every layer.
- everything else (vectors such as the logits, flattened features) —
  **invariance**: ``‖f_l(R_φ x) − f_l(x)‖ / ‖f_l(x)‖``.

``logits`` (the model's output) is the last of the default layers (name it
in ``layers`` to get it with an explicit list). For ``gcnn_p4``
(group pooling, then a global spatial max, then a linear head) the logits are
invariant to 90° turns up to float error and clearly not to 15° turns.

At angles that are not multiples of 90° every feature map is compared after a
bilinear resampling, so even an exactly equivariant continuous map shows an
interpolation error (e.g. ``gcnn_p8`` at 45°), and maps with a non-zero
background (the ``Normalize`` output, batch-norm outputs) also differ in the
corners, where the rotated map reads the zero padding.

A relative error is ``0`` when both norms are 0 and ``inf`` when only ``f_l(x)``
is 0 (a dead layer that comes alive after the turn).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import InvrobError, check_positive_int
from ..metrics import check_model_inputs, eval_mode, model_device
from ..rotations import rotate
from ._layers import LOGITS, _is_geometric, capture, resolve_layers

__all__ = ["equivariance_error", "group_element"]


def _angle_list(angles) -> list[float]:
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().reshape(-1).tolist()
    elif isinstance(angles, (int, float, np.number)):
        angles = [angles]
    try:
        values = [float(a) for a in angles]
    except (TypeError, ValueError):
        raise InvrobError(f"angles must be numbers of degrees, got {angles!r}") from None
    if not values or not all(math.isfinite(a) for a in values):
        raise InvrobError(f"angles must be a non-empty list of finite numbers of degrees, got {angles!r}")
    return values


def group_element(field_type, angle: float):
    """The e2cnn group element of ``field_type`` that rotates by ``angle`` degrees, or None.

    Cyclic groups C_N (``p4``, ``p8``): the integer ``k`` with ``angle = k·360/N``;
    dihedral groups D_N (``d4``): ``(0, k)`` (no flip). e2cnn's element ``k``
    transforms a scalar field exactly as ``torch.rot90(x, k, (2, 3))``, i.e. as
    :func:`~invrob.rotations.rotate` by ``+90k`` degrees for N = 4 (tested).
    None when the angle is not one of the group's rotations.
    """
    group = field_type.fibergroup
    kind = type(group).__name__
    if kind == "CyclicGroup":
        n = group.order()
    elif kind == "DihedralGroup":
        n = group.rotation_order
    else:
        return None
    steps = angle * n / 360.0
    k = round(steps)
    if abs(steps - k) > 1e-9:
        return None
    k %= n
    return k if kind == "CyclicGroup" else (0, k)


def _transform(value, angle: float):
    """``(T_φ f_l(x), kind)``; ``(None, "undefined")`` where no action of φ exists."""
    if _is_geometric(value):
        element = group_element(value.type, angle)
        if element is None:
            return None, "undefined"
        t = value.tensor
        rho = torch.as_tensor(np.asarray(value.type.representation(element)), dtype=t.dtype, device=t.device)
        return torch.einsum("oi,bihw->bohw", rho, rotate(t, angle)), "group equivariance"
    if value.dim() == 4:
        return rotate(value, angle), "equivariance"
    return value, "invariance"


def _relative(diff: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    out = diff / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    zero = norm == 0
    return torch.where(zero, torch.where(diff == 0, 0.0, math.inf).to(out.dtype), out)


@torch.no_grad()
def equivariance_error(model: nn.Module, x: torch.Tensor, angles=(15.0, 90.0), layers=None, *,
                       per_point: bool = False, batch_size: int = 256) -> pd.DataFrame:
    """Relative equivariance (feature maps) / invariance (vectors, logits) error per layer and angle.

    Args:
        model: any model taking images in [0, 1] (eval mode is used).
        x: images ``(N, C, H, W)`` in [0, 1].
        angles: degrees (a number or a list); each gives its own rows.
        layers: module names (default: the innermost modules called in forward,
            then ``"logits"``; see :mod:`invrob.measures._layers`).
        per_point: one row per (point, layer, angle) instead of the mean over points.
        batch_size: images per forward pass.

    Returns a tidy frame: ``layer``, ``module`` (class name), ``kind``
    (``"equivariance"``, ``"group equivariance"``, ``"invariance"`` or
    ``"undefined"``), ``angle``, ``error`` (mean over points of the relative
    error; NaN where undefined), ``error_max`` and ``n`` (points); with
    ``per_point`` a ``point`` column and only ``error``.
    """
    check_model_inputs(model, x, ndim=4, empty_ok=False)
    check_positive_int(batch_size, "batch_size")
    angle_list = _angle_list(angles)
    names = resolve_layers(model, x, layers)
    modules = dict(model.named_modules())
    device = model_device(model)
    errors = {(name, a): [] for name in names for a in angle_list}
    kinds: dict[tuple[str, float], str] = {}

    def run(batch):
        with capture(model, names) as store:
            out = model(batch)
        return {n: (out if n == LOGITS else store[n]) for n in names}

    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device)
            base = run(xb)
            for a in angle_list:
                turned = run(rotate(xb, a))
                for name in names:
                    value = base[name]
                    expected, kind = _transform(value, a)
                    kinds[(name, a)] = kind
                    plain = value.tensor if _is_geometric(value) else value
                    if expected is None:
                        errors[(name, a)].append(torch.full((len(xb),), math.nan, dtype=torch.float64))
                        continue
                    got = turned[name].tensor if _is_geometric(turned[name]) else turned[name]
                    diff = (got - expected).flatten(1).double().norm(dim=1)
                    norm = plain.flatten(1).double().norm(dim=1)
                    errors[(name, a)].append(_relative(diff, norm).cpu())

    rows = []
    for name in names:
        module = type(model).__name__ if name == LOGITS else type(modules[name]).__name__
        for a in angle_list:
            err = torch.cat(errors[(name, a)]).numpy()
            kind = kinds[(name, a)]
            if per_point:
                rows += [(k, name, module, kind, a, float(e)) for k, e in enumerate(err)]
            else:
                undefined = kind == "undefined"
                rows.append((name, module, kind, a, math.nan if undefined else float(err.mean()),
                             math.nan if undefined else float(err.max()), len(err)))
    columns = (["point", "layer", "module", "kind", "angle", "error"] if per_point
               else ["layer", "module", "kind", "angle", "error", "error_max", "n"])
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update(error="relative l2: ||f_l(R x) - T f_l(x)|| / ||f_l(x)|| per point",
                       rotation="invrob.rotations.rotate (bilinear, zero padding, exact rot90)")
    return frame
