"""Measures of (learned) rotation invariance: Lie derivatives, layer-wise equivariance errors, rotation smoothing.

One concept per module:

- :mod:`invrob.measures.lie` — :func:`lie_derivative` (``d/dφ f(R_φ x)`` at φ = 0,
  the central derivative, per degree, by an exact JVP) and
  :func:`layerwise_lie_derivative` (its mean square per layer);
- :mod:`invrob.measures.equivariance` — :func:`equivariance_error`: per layer and
  angle, ``‖f_l(R_φ x) − T_φ f_l(x)‖ / ‖f_l(x)‖`` (feature maps rotated, e2cnn
  fields also acted on by their group representation; vectors and logits: invariance);
- :mod:`invrob.measures.smoothing` — :class:`RotationSmoothing`, a classifier
  smoothed over random rotation angles with a certified angle radius (heuristic
  with respect to interpolation), and :func:`certified_accuracy`.

Layering: measures sit beside :mod:`invrob.attacks` and build only on
``errors``, ``utils``, ``data``, ``metrics``, ``stats``, ``rotations``,
``transforms`` and ``models``.
"""
from .equivariance import equivariance_error, group_element
from .lie import layerwise_lie_derivative, lie_derivative
from .smoothing import (DISTRIBUTIONS, HEURISTIC_NOTE, RotationSmoothing, certified_accuracy,
                        clopper_pearson_lower)

__all__ = ["lie_derivative", "layerwise_lie_derivative", "equivariance_error", "group_element",
           "RotationSmoothing", "certified_accuracy", "clopper_pearson_lower", "DISTRIBUTIONS",
           "HEURISTIC_NOTE"]
