"""invrob.measures: the rotation Lie derivative, layer-wise equivariance errors, rotation smoothing.

Tolerances (each measured value in parentheses, on this repository's CPU build):

- Lie derivative vs the central finite difference of ``rotate``: a smooth tanh CNN on
  MNIST digits, float32, h = 0.5°: relative ℓ2 gap < 3% (0.9%; the gap is O(h), the
  bilinear rotation's second-order error), forward difference > 20% away (46%);
  a random registry StdCNN in float64 on noise images (no flat regions, so no max-pool
  ties), h = 1e-5°: < 1% (1.5e-6; up to 3e-3 for other input seeds, where a kink lies
  within 1e-5°). Random ReLU nets cross their own kinks within ±0.5° (and for some inputs
  within ±0.001°), so only a tiny h tests the definition there.
- A model reading only the total intensity: |L f| < 1e-5 per degree on digits with a zero
  border (exactly 0 in exact arithmetic: central differences telescope; float32 rounding).
- gcnn_p4: 90° equivariance of every feature field and invariance of the logits < 1e-4
  (≈ 2e-7); 15° logit error > 10× that (≈ 0.13).
- Smoothing: a base model that flips when the principal-axis angle leaves [−20°, 20°];
  every certified radius ≤ the true distance to the flip + 1° (orientation estimate
  error ≤ 0.1° under bilinear rotation; interpolation slack), and no flip inside the
  radius on a grid of 61 angles.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from torch import nn

from invrob.errors import InvrobError
from invrob.measures import (RotationSmoothing, certified_accuracy, clopper_pearson_lower,
                             equivariance_error, group_element, layerwise_lie_derivative,
                             lie_derivative)
from invrob.models import build_model
from invrob.rotations import rotate


def _zero_border(x: torch.Tensor) -> torch.Tensor:
    rim = torch.cat([x[:, 0, 0], x[:, 0, -1], x[:, 0, :, 0], x[:, 0, :, -1]], 1)
    return rim.abs().amax(1) == 0


@pytest.fixture(scope="module")
def digits(mnist_test):
    """16 MNIST test digits with an all-zero outer ring (99% of MNIST test images have one)."""
    x, y = mnist_test
    keep = _zero_border(x[:64])
    return x[:64][keep][:16], y[:64][keep][:16]


def _smooth_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Conv2d(8, 16, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def _central(model, x, h):
    return (model(rotate(x, h)) - model(rotate(x, -h))) / (2 * h)


# ----------------------------------------------------------------------------- Lie derivative

def test_lie_derivative_is_the_central_slope_of_rotate_on_a_smooth_model(digits):
    x, _ = digits
    model = _smooth_cnn()
    lie = lie_derivative(model, x, batch_size=7)  # several batches
    assert lie.shape == (len(x), 10)
    central = _central(model, x, 0.5)
    with torch.no_grad():
        forward = (model(rotate(x, 0.5)) - model(x)) / 0.5
    assert _rel(lie, central) < 0.03
    assert _rel(lie, forward) > 0.2  # the one-sided slope is a different (kink) quantity


def test_lie_derivative_matches_central_difference_on_a_random_stdcnn():
    torch.manual_seed(0)
    model = build_model("stdcnn").double().eval()
    x = 0.1 + 0.8 * torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lie = lie_derivative(model, x)
    assert _rel(lie, _central(model, x, 1e-5)) < 1e-2
    # the same derivative through a named layer (the head's output is the logits)
    assert torch.allclose(lie_derivative(model, x, layer="fc"), lie)
    # layer-wise: the logits row is the mean square of the same derivative
    frame = layerwise_lie_derivative(model, x[:3])
    logits = frame[frame.layer == "logits"].sort_values("point")
    assert np.allclose(logits.lie_msq.to_numpy(), lie[:3].pow(2).mean(1).numpy(), rtol=1e-6)


def test_lie_derivative_vanishes_for_a_total_intensity_model(digits):
    x, _ = digits
    torch.manual_seed(0)
    head = nn.Linear(1, 3)

    class Mass(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, images):
            return self.head(images.sum((1, 2, 3))[:, None])

    class Quadrant(Mass):  # not invariant: reads the top-left quarter only
        def forward(self, images):
            return self.head(images[:, :, :14, :14].sum((1, 2, 3))[:, None])

    lie = lie_derivative(Mass(), x)
    assert lie.abs().max() < 1e-5
    assert lie_derivative(Quadrant(), x).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["lenet", "wong", "gcnn_p4"])
def test_layerwise_lie_derivative_covers_the_layers(name, digits):
    x, _ = digits
    torch.manual_seed(0)
    model = build_model(name)
    frame = layerwise_lie_derivative(model, x[:2])
    layers = list(dict.fromkeys(frame.layer))
    assert layers[0] == "normalize" and layers[-1] == "logits"
    assert len(frame) == 2 * len(layers) and set(frame.point) == {0, 1}
    assert np.isfinite(frame[["lie_msq", "act_msq"]].to_numpy()).all()
    assert (frame.lie_msq > 0).any()
    if name == "gcnn_p4":  # e2cnn modules, not their internals (basis expansion, BatchNorm3d)
        assert {"CachedR2Conv", "InnerBatchNorm", "ReLU", "PointwiseMaxPool"} <= set(frame.module)
        assert not {"BlocksBasisExpansion", "BatchNorm3d"} & set(frame.module)
    assert model.training  # the mode is restored


# ------------------------------------------------------------------------- equivariance error

def test_e2cnn_element_k_is_rotate_by_90k():
    from e2cnn import nn as enn
    model = build_model("gcnn_p4")
    x = torch.rand(2, 1, 28, 28)
    scalar = enn.GeometricTensor(x, model.in_type)
    for k in range(4):
        element = group_element(model.in_type, 90 * k)
        assert element == k
        assert torch.equal(scalar.transform(element).tensor, rotate(x, 90 * k))
    assert group_element(model.in_type, 15) is None and group_element(model.in_type, -90) == 3


def test_gcnn_p4_is_equivariant_at_90_and_its_logits_invariant(digits):
    x, _ = digits
    torch.manual_seed(0)
    frame = equivariance_error(build_model("gcnn_p4"), x[:8], angles=[90, 15])
    at90, at15 = frame[frame.angle == 90].set_index("layer"), frame[frame.angle == 15].set_index("layer")
    fields = at90[at90.kind == "group equivariance"]
    assert len(fields) >= 10 and (fields.error_max < 1e-4).all()
    assert at90.loc["logits", "kind"] == "invariance" and at90.loc["logits", "error_max"] < 1e-4
    assert at15.loc["logits", "error"] > 10 * 1e-4
    # a regular field has no action of a 15° turn: reported as undefined, not as a number
    assert (at15.loc[fields.index, "kind"] == "undefined").all() and at15.loc[fields.index, "error"].isna().all()


def test_stdcnn_is_not_equivariant_and_per_point_rows(digits):
    x, _ = digits
    torch.manual_seed(0)
    model = build_model("stdcnn")
    frame = equivariance_error(model, x[:4], angles=90, layers=["features.0", "fc", "logits"],
                               per_point=True)
    assert list(frame.columns) == ["point", "layer", "module", "kind", "angle", "error"]
    assert len(frame) == 4 * 3  # points x layers
    conv = frame[frame.layer == "features.0"]
    assert (conv.kind == "equivariance").all() and (conv.error > 0.1).all()
    assert (frame[frame.layer == "fc"].kind == "invariance").all()


# ----------------------------------------------------------------------------- smoothing

class Orientation(nn.Module):
    """Class 0 while the principal axis (image moments) lies within ``limit`` degrees of horizontal."""

    def __init__(self, limit: float):
        super().__init__()
        self.limit = limit

    def angle(self, x: torch.Tensor) -> torch.Tensor:
        w = x.sum(1)
        h, wd = w.shape[-2:]
        right = (torch.arange(wd, dtype=w.dtype) - (wd - 1) / 2)[None, None, :]
        up = ((h - 1) / 2 - torch.arange(h, dtype=w.dtype))[None, :, None]
        mass = w.sum((1, 2))
        cx = right - ((w * right).sum((1, 2)) / mass)[:, None, None]
        cy = up - ((w * up).sum((1, 2)) / mass)[:, None, None]
        mu20, mu02, mu11 = (w * cx * cx).sum((1, 2)), (w * cy * cy).sum((1, 2)), (w * cx * cy).sum((1, 2))
        return 0.5 * torch.rad2deg(torch.atan2(2 * mu11, mu20 - mu02))  # in (-90, 90], counter-clockwise

    def forward(self, x):
        margin = self.limit - self.angle(x).abs()
        return torch.stack([margin, -margin], 1)


def bars(angles, size: int = 28) -> torch.Tensor:
    """Elongated Gaussian bars at ``angles`` (degrees, counter-clockwise), cut to a disk: zero border."""
    c = (size - 1) / 2
    right = torch.arange(size, dtype=torch.float32)[None, :] - c
    up = c - torch.arange(size, dtype=torch.float32)[:, None]
    out = []
    for a in angles:
        r = math.radians(a)
        u = right * math.cos(r) + up * math.sin(r)
        v = -right * math.sin(r) + up * math.cos(r)
        out.append(torch.exp(-(u / 6) ** 2 / 2 - (v / 1.5) ** 2 / 2) * ((right ** 2 + up ** 2) <= 11 ** 2))
    return torch.stack(out)[:, None]


LIMIT = 20.0
ANGLES = [0.0, 6.0, -9.0, 45.0, -60.0]


def _distance_to_flip(a: float) -> float:
    """How far (degrees, either direction) a bar at angle ``a`` must turn to change class (axes mod 180°)."""
    return min(abs((a - b + 90.0) % 180.0 - 90.0) for b in (LIMIT, -LIMIT))


def test_orientation_model_flips_at_the_limit():
    x = bars([0.0])
    model = Orientation(LIMIT)
    turns = torch.tensor([-21.0, -19.0, 0.0, 19.0, 21.0])
    pred = model(rotate(x.expand(5, -1, -1, -1), turns)).argmax(1)
    assert pred.tolist() == [1, 0, 0, 0, 1]
    for phi in (-33.0, 5.0, 17.0):  # the moments follow the turn to 0.1°
        assert torch.allclose(model.angle(rotate(bars(ANGLES[:4]), phi)),
                              torch.tensor(ANGLES[:4]) + phi, atol=0.1)


@pytest.mark.parametrize("distribution, sigma", [("gaussian", 10.0), ("uniform", 15.0)])
def test_certified_radius_is_sound_for_a_model_that_flips_at_a_known_angle(distribution, sigma):
    x = bars(ANGLES)
    y = torch.tensor([0 if abs(a) < LIMIT else 1 for a in ANGLES])
    smooth = RotationSmoothing(Orientation(LIMIT), sigma, distribution=distribution, n0=64, n=256,
                               alpha=0.01, batch_size=4096, generator=0)
    frame = smooth.certify(x, y)
    assert list(frame.columns[:6]) == ["point", "label", "prediction", "radius", "abstain", "correct"]
    assert "heuristic" in frame.attrs["certificate"] and "heuristic" in RotationSmoothing.certify.__doc__
    assert frame.correct.all() and not frame.abstain.any()
    distance = np.array([_distance_to_flip(a) for a in ANGLES])
    assert (frame.radius.to_numpy() <= distance + 1.0).all()
    assert (frame.radius > 5).all()  # not vacuous
    # grid attack inside each certified radius: the (same, seeded) smoothed classifier never flips
    grid = np.linspace(-1, 1, 61)
    images, expected = [], []
    for k, row in frame.iterrows():
        turns = torch.as_tensor(grid * row.radius, dtype=torch.float32)
        images.append(rotate(x[k:k + 1].expand(len(grid), -1, -1, -1), turns))
        expected += [row.prediction] * len(grid)
    pred = smooth.predict(torch.cat(images)).numpy()
    expected = np.array(expected)
    assert ((pred == expected) | (pred == -1)).all()
    assert (pred == expected).mean() > 0.8
    # certified accuracy is a decreasing step function of the radius
    curve = certified_accuracy(frame, [0, 5, 10, 100])
    assert curve.certified_accuracy.tolist()[0] == 1.0 and curve.certified_accuracy.tolist()[-1] == 0.0
    assert np.all(np.diff(curve.certified_accuracy) <= 0)


def test_smoothing_is_reproducible_and_abstains_at_the_boundary():
    x = bars([LIMIT, 0.0])  # on the decision boundary: p_A ≈ 1/2
    smooth = RotationSmoothing(Orientation(LIMIT), 10.0, n0=32, n=128, alpha=0.01, generator=3)
    first = smooth.predict(x)
    assert first.tolist()[0] == -1 and first.tolist()[1] == 0
    assert torch.equal(first, smooth.predict(x))  # an int seed fixes the Monte-Carlo classifier


def test_clopper_pearson_matches_scipy_binomtest():
    k, n, alpha = 231, 256, 0.01
    exact = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(exact, rel=1e-10)
    assert clopper_pearson_lower(0, n, alpha) == 0.0
    assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), rel=1e-10)
    smooth = RotationSmoothing(nn.Identity(), 10.0)
    assert smooth.radius(0.9) == pytest.approx(10.0 * scipy_stats.norm.ppf(0.9))
    assert math.isnan(smooth.radius(0.5))


# ------------------------------------------------------------------------------ bad input

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("stdcnn", width=2)


def test_bad_inputs_raise_one_line_errors(tiny):
    x = torch.rand(2, 1, 28, 28)
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    for fn in (lambda v: lie_derivative(tiny, v), lambda v: layerwise_lie_derivative(tiny, v),
               lambda v: equivariance_error(tiny, v), lambda v: RotationSmoothing(tiny, 5.0).predict(v)):
        with pytest.raises(InvrobError, match="NaN"):
            fn(nan)
        with pytest.raises(InvrobError, match=r"shaped \(N, C, H, W\)"):
            fn(x[:, 0])
    with pytest.raises(InvrobError, match="unknown layer 'nope'"):
        lie_derivative(tiny, x, layer="nope")
    with pytest.raises(InvrobError, match="unknown layer"):
        equivariance_error(tiny, x, layers=["features.0", "fc.weight"])
    with pytest.raises(InvrobError, match="angles"):
        equivariance_error(tiny, x, angles=[float("nan")])
    with pytest.raises(InvrobError, match="labels in"):
        RotationSmoothing(tiny, 5.0, n0=2, n=2).certify(x, torch.tensor([0, 10]))
    with pytest.raises(InvrobError, match="alpha"):
        RotationSmoothing(tiny, 5.0, alpha=1.0)
    with pytest.raises(InvrobError, match="alpha"):
        RotationSmoothing(tiny, 5.0, alpha=0)
    with pytest.raises(InvrobError, match="n must be a positive integer"):
        RotationSmoothing(tiny, 5.0, n=0)
    with pytest.raises(InvrobError, match="n0 must be a positive integer"):
        RotationSmoothing(tiny, 5.0, n0=-1)
    with pytest.raises(InvrobError, match="sigma"):
        RotationSmoothing(tiny, -1.0)
    with pytest.raises(InvrobError, match="sigma"):
        RotationSmoothing(tiny, 181.0)
    with pytest.raises(InvrobError, match="unknown distribution"):
        RotationSmoothing(tiny, 5.0, distribution="laplace")
    with pytest.raises(InvrobError, match="radii"):
        certified_accuracy(RotationSmoothing(tiny, 5.0, n0=2, n=2).certify(x, torch.tensor([0, 1])), [-1])
    with pytest.raises(InvrobError, match="successes"):
        clopper_pearson_lower(5, 4, 0.01)
