"""The rotation Lie derivative of a model at φ = 0: how fast its outputs move as the input turns.

For a model ``f`` and an image ``x``, the Lie derivative of ``f`` along
rotations is ``L f(x) = d/dφ f(R_φ x)`` at φ = 0 (Gruver et al., 2023, *The
Lie derivative for measuring learned equivariance*). For an invariant model it
is 0; its size measures how far from invariant the model is *locally*.
Units: **per degree** (``R_φ`` is :func:`invrob.rotations.rotate`, which takes
degrees); multiply by 180/π for per radian.

Which derivative (the trap)
---------------------------
:func:`~invrob.rotations.rotate` interpolates bilinearly, and at φ = 0 every
sample point sits exactly on a pixel centre, where bilinear interpolation has
a kink: φ ↦ R_φ x is not differentiable at 0. Its one-sided derivatives differ
(measured on a StdCNN: the logits' forward slope was 69, the backward one 54 and
the central one 26, in the same units), so "the" derivative must be chosen.

We use the **central (symmetric) derivative**::

    L f(x) = lim_{h→0} [f(R_h x) − f(R_{−h} x)] / (2h)

Why: it is the one a symmetric finite difference estimates (the standard
numerical check), it is the mean of the two one-sided slopes (so it favours
neither direction of turning), it is *odd* in the direction of rotation like a
true derivative, and for a smooth rotation (e.g. the continuous image the
pixels sample) it is the ordinary derivative. The one-sided slopes measure
mostly the interpolation kink, not the model.

How it is computed: by the chain rule, when ``f`` is differentiable at ``x``,
``[f(R_h x) − f(R_{−h} x)] / 2h = J_f(x) · [R_h x − R_{−h} x] / 2h + o(1)``, and
the image difference quotient converges to the central rotation tangent
``t(x)`` of :func:`invrob.rotations.rotation_tangent` (central pixel
differences, exactly what the symmetric difference of bilinear rotation
converges to). So ``L f(x) = J_f(x) t(x)``, computed exactly (no finite
difference, no random probe) as the forward-mode derivative
``torch.func.jvp`` of the smooth map ``φ ↦ f(x + φ t(x))`` — the linearised
rotation, which has the same central derivative at 0 as ``φ ↦ f(R_φ x)``.
One JVP costs about two forward passes.

Checks (``tests/test_invariance_measures.py``) and their tolerances:

- a smooth (tanh) CNN on MNIST digits, float32: ``L f`` equals the central
  finite difference of :func:`~invrob.rotations.rotate` with h = 0.5° to 3%
  (relative ℓ2 over the batch of logits; measured 0.9%, the gap is O(h), from
  the second-order interpolation error), while the forward difference is off
  by more than 20% (measured 46%);
- a random registry StdCNN in float64 on noise images in [0.1, 0.9] (no flat
  regions, hence no max-pool ties): equal to the central difference with
  h = 1e-5° to 1% (measured 1.5e-6, up to 3e-3 for inputs with a kink within
  1e-5°). A random ReLU net crosses many of its own kinks within ±0.5° (there
  the symmetric difference differs from the slope at 0 by 60–90% on a random
  StdCNN), so for ReLU nets only a tiny h tests the *definition*;
- a model reading only the total intensity: 0 up to float error on images with
  a zero border (central differences telescope to 0 when summed).

Where the JVP is not the central derivative: ReLUs and max pools make ``f``
piecewise smooth. At points where ``x`` sits *on* one of their kinks the JVP
takes PyTorch's convention instead of the mean of the one-sided slopes. For
generic inputs this never happens, but images with flat zero backgrounds
(MNIST) give max pools exact ties between entries whose tangents differ (the
zero pixels next to a stroke move, the others do not): on MNIST digits the
logits' JVP of a random StdCNN differs from the central-difference limit by
≈ 8% (relative ℓ2, float64, h = 0.001°; ≈ 2% for Wong's net, which has no
max pools). Read small differences
between ReLU models on MNIST with that in mind.

Models run in eval mode (batch norm with running statistics, no dropout), so
each input's derivative depends on that input only.
"""
from __future__ import annotations

import warnings

import pandas as pd
import torch
from torch import nn

from ..errors import check_positive_int
from ..metrics import check_model_inputs, eval_mode, model_device
from ..rotations import rotation_tangent
from ._layers import LOGITS, as_tensor, capture, resolve_layers

__all__ = ["lie_derivative", "layerwise_lie_derivative"]


def _jvp_batches(model: nn.Module, x: torch.Tensor, names: list[str], batch_size: int):
    """For each batch: (activations, their derivatives d/dφ per degree), each a list per name."""
    from torch.func import jvp

    device = model_device(model)
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device)
            tangent = rotation_tangent(xb)

            def along(phi: torch.Tensor):
                moved = xb + phi.view(-1, 1, 1, 1) * tangent
                with capture(model, names) as store:
                    out = model(moved)
                return tuple(out if n == LOGITS else as_tensor(store[n]) for n in names)

            phi = torch.zeros(len(xb), dtype=xb.dtype, device=device)
            with warnings.catch_warnings():  # functorch's first JVP scripts its decompositions
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                        category=FutureWarning)
                values, slopes = jvp(along, (phi,), (torch.ones_like(phi),))
            yield [v.detach() for v in values], [s.detach() for s in slopes]


def lie_derivative(model: nn.Module, x: torch.Tensor, *, layer: str | None = None,
                   batch_size: int = 256) -> torch.Tensor:
    """``d/dφ f(R_φ x)`` at φ = 0 (central derivative, per degree) for each input.

    ``f`` is the model's output (logits) or, with ``layer``, the output of that
    named module (``dict(model.named_modules())``; e2cnn ``GeometricTensor``
    outputs give their ``.tensor``, so for a GCNN this is the derivative of the
    raw feature fields). Returns a tensor shaped like ``f(x)`` (first dimension:
    the inputs), on ``x``'s device. ``lie_derivative(m, x).norm(dim=1)`` is the
    per-input size of the logits' Lie derivative.

    Raises :class:`~invrob.errors.InvrobError` for images that are not finite
    ``(N, C, H, W)`` tensors in [0, 1], a bad ``batch_size`` or an unknown layer.
    """
    check_model_inputs(model, x, ndim=4, empty_ok=False)
    check_positive_int(batch_size, "batch_size")
    name = resolve_layers(model, x, [layer if layer is not None else LOGITS])[0]
    parts = [slopes[0].to(x.device) for _, slopes in _jvp_batches(model, x, [name], batch_size)]
    return torch.cat(parts)


def layerwise_lie_derivative(model: nn.Module, x: torch.Tensor, layers=None, *,
                             batch_size: int = 256) -> pd.DataFrame:
    """Per input and layer: the mean square of ``d(activation)/dφ`` over the activation's elements.

    ``layers``: module names (default: the innermost modules called in forward,
    see :mod:`invrob.measures._layers`, then ``"logits"``). For plain ``nn``
    models (StdCNN, LeNet, Wong, Madry) each row is the derivative of that
    module's output. For a GCNN (e2cnn) the rows are the e2cnn modules' raw
    feature fields (``GeometricTensor.tensor``): an equivariant feature map
    still *moves* when the input turns (it turns with it), so these values are
    not zero; only the ``logits`` row measures invariance.

    Returns a tidy frame with one row per (point, layer): ``point`` (index in
    ``x``), ``layer``, ``module`` (class name), ``numel`` (elements per input),
    ``lie_msq`` (mean over elements of the squared derivative, per degree²,
    computed exactly by the JVP) and ``act_msq`` (mean square of the activation
    itself, for scale: ``sqrt(lie_msq / act_msq)`` is a relative rate per
    degree). ``attrs`` records the definition and units.
    """
    check_model_inputs(model, x, ndim=4, empty_ok=False)
    check_positive_int(batch_size, "batch_size")
    names = resolve_layers(model, x, layers)
    modules = dict(model.named_modules())
    rows = []
    start = 0
    for values, slopes in _jvp_batches(model, x, names, batch_size):
        count = len(values[0])
        for name, value, slope in zip(names, values, slopes):
            lie = slope.flatten(1).pow(2).mean(1).cpu()
            act = value.flatten(1).pow(2).mean(1).cpu()
            kind = type(model).__name__ if name == LOGITS else type(modules[name]).__name__
            for k in range(count):
                rows.append((start + k, name, kind, value[0].numel(), float(lie[k]), float(act[k])))
        start += count
    frame = pd.DataFrame(rows, columns=["point", "layer", "module", "numel", "lie_msq", "act_msq"])
    frame.attrs.update(definition="central derivative d/dphi at phi=0 via JVP along rotation_tangent",
                       units="lie_msq per degree^2")
    return frame
