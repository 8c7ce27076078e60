"""invrob.metrics: accuracy helpers, bootstrap intervals, principal angles between subspaces."""
import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from scipy.special import gammaln
from scipy.stats import ortho_group
from torch import nn

from invrob.errors import InvrobError
from invrob.metrics import (accuracy, bootstrap_ci, eval_mode, model_device, predict,
                            principal_cosines, random_subspace_cosines, top_components)


# ------------------------------------------------------------------ predictions

class Pick(nn.Module):
    """Logits = the first 3 input features; dropout shows whether eval mode is on."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x[:, :3])


def test_predict_and_accuracy_in_eval_mode():
    x = torch.tensor([[3.0, 1, 0], [0, 5, 1], [0, 1, 2], [9, 0, 1]])
    y = torch.tensor([0, 1, 2, 1])
    model = Pick().train()
    assert torch.equal(predict(model, x, batch_size=3), torch.tensor([0, 1, 2, 0]))
    assert accuracy(model, x, y, batch_size=2) == pytest.approx(0.75)
    assert model.training  # mode restored
    assert model_device(model) == torch.device("cpu")
    with eval_mode(model):
        assert not model.training
    assert model.training


# ------------------------------------------------------------------ bootstrap

def test_bootstrap_ci_contains_mean_and_matches_normal_width():
    rng = np.random.default_rng(0)
    values = (rng.random(2000) < 0.7).astype(float)
    est, low, high = bootstrap_ci(values)
    assert est == pytest.approx(values.mean())
    assert low < est < high
    # For a mean the percentile interval is ~ ±1.96 standard errors.
    se = values.std() / np.sqrt(len(values))
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.12)
    assert bootstrap_ci(values, seed=0) == (est, low, high)  # reproducible
    narrower = bootstrap_ci(values, ci=0.5)
    assert low < narrower[1] < narrower[2] < high


def test_bootstrap_ci_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = bootstrap_ci(rng.normal(size=100), n_boot=1000)
    large = bootstrap_ci(rng.normal(size=10000), n_boot=1000)
    width_small, width_large = small[2] - small[1], large[2] - large[1]
    assert width_large < width_small / 5  # ~1/sqrt(n): 10x
    assert large[1] < 0 < large[2]


def test_bootstrap_ci_other_statistics():
    values = torch.arange(101, dtype=torch.float32)  # tensors are accepted
    est, low, high = bootstrap_ci(values, statistic=np.median, n_boot=500)
    assert est == 50 and low < 50 < high
    # A statistic without an ``axis`` argument falls back to a row-wise apply.
    est90, low90, high90 = bootstrap_ci(values, statistic=lambda v: np.percentile(v, 90), n_boot=200)
    assert est90 == pytest.approx(90.0) and low90 <= 90 <= high90 and high90 - low90 < 20


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(InvrobError):
        bootstrap_ci([])
    with pytest.raises(InvrobError):
        bootstrap_ci(np.ones((3, 3)))
    with pytest.raises(InvrobError):
        bootstrap_ci([1.0, 2.0], ci=1.5)
    with pytest.raises(InvrobError):
        bootstrap_ci([1.0, 2.0], n_boot=0)


# ------------------------------------------------------------------ principal angles

def in_span(basis, n, rng):
    """n random points in the span of the rows of ``basis``."""
    return rng.normal(size=(n, len(basis))) @ basis


def test_same_subspace_gives_ones_and_orthogonal_gives_zeros():
    rng = np.random.default_rng(0)
    dim, k = 50, 5
    basis = np.linalg.qr(rng.normal(size=(dim, k)))[0].T  # (k, dim)
    cos = principal_cosines(in_span(basis, 200, rng), in_span(basis, 150, rng), k)
    assert cos.shape == (k,)
    assert np.allclose(cos, 1.0, atol=1e-10)
    eye = np.eye(dim)
    cos = principal_cosines(in_span(eye[:k], 200, rng), in_span(eye[k:2 * k], 200, rng), k)
    assert np.allclose(cos, 0.0, atol=1e-12)


def test_known_angle_and_agreement_with_scipy():
    rng = np.random.default_rng(1)
    phi = 0.3
    e1, e2 = np.eye(10)[0], np.eye(10)[1]
    a = rng.normal(size=(100, 1)) * e1
    b = rng.normal(size=(100, 1)) * (np.cos(phi) * e1 + np.sin(phi) * e2)
    assert principal_cosines(a, b, 1) == pytest.approx([np.cos(phi)], abs=1e-10)
    # generic data: same as scipy's principal angles between the PCA bases
    a, b = rng.normal(size=(300, 40)) * np.linspace(3, 0.1, 40), rng.normal(size=(200, 40))
    cos = principal_cosines(a, b, 6)
    ua, _ = top_components(a, 6)
    ub, _ = top_components(b, 6)
    reference = np.sort(np.cos(subspace_angles(ua.T, ub.T)))[::-1]
    assert np.allclose(cos, reference, atol=1e-8)
    assert np.all(np.diff(cos) <= 1e-12) and np.all((cos >= 0) & (cos <= 1))


def test_principal_cosines_invariant_to_rotating_the_basis():
    rng = np.random.default_rng(2)
    dim = 30
    a = rng.normal(size=(200, dim)) * np.linspace(2, 0.2, dim)
    b = a @ np.diag(rng.uniform(0.5, 1.5, dim)) + 0.3 * rng.normal(size=(200, dim))
    q = ortho_group.rvs(dim, random_state=3)
    before = principal_cosines(a, b, 5)
    after = principal_cosines(a @ q, b @ q, 5)
    assert np.allclose(before, after, atol=1e-8)
    assert 0.1 < before.min() < before.max() < 1.0  # a non-trivial case


def test_centring_is_what_top_components_does():
    # rows ±3e1, ±2e2, ±e3: mean 0, variances 18 : 8 : 2 along e1, e2, e3
    e = np.eye(6)
    rows = np.array([3 * e[0], -3 * e[0], 2 * e[1], -2 * e[1], e[2], -e[2]])
    components, ratio = top_components(rows, 3)
    assert np.allclose(np.abs(components), e[:3], atol=1e-12)
    assert np.allclose(ratio, [18 / 28, 8 / 28, 2 / 28])
    assert np.allclose(components @ components.T, np.eye(3), atol=1e-12)
    # a large common offset along e4 is removed by centring, kept without it
    shifted = rows + 10 * e[3]
    assert np.allclose(np.abs(top_components(shifted, 1)[0]), e[0], atol=1e-12)
    assert np.abs(top_components(shifted, 1, center=False)[0][0, 3]) > 0.99
    # image-shaped tensors are flattened
    images = torch.as_tensor(rows.reshape(6, 1, 2, 3))
    assert np.allclose(np.abs(top_components(images, 1)[0]), e[0], atol=1e-12)


def test_principal_cosines_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(InvrobError):
        principal_cosines(rng.normal(size=(20, 5)), rng.normal(size=(20, 6)), 2)
    with pytest.raises(InvrobError):
        principal_cosines(rng.normal(size=(5, 50)), rng.normal(size=(20, 50)), 5)  # 5 centred rows: rank 4
    with pytest.raises(InvrobError):
        principal_cosines(rng.normal(size=(20, 5)), rng.normal(size=(20, 5)), 0)
    with pytest.raises(InvrobError):
        top_components(np.full((4, 3), np.nan), 1)
    with pytest.raises(InvrobError):
        random_subspace_cosines(5, 6)


# ------------------------------------------------------------------ random baseline

def test_random_subspaces_in_784_dims_are_nearly_orthogonal():
    cos = random_subspace_cosines(784, 10, n_trials=20, seed=0)
    assert cos.shape == (10,)
    assert np.all(np.diff(cos) <= 0) and cos.min() >= 0
    assert cos[0] < 0.4
    # top cosine ≈ largest singular value of a 10x10 Gaussian / sqrt(784) ≈ 2·sqrt(10)/28
    assert 0.15 < cos[0] < 0.3
    assert np.array_equal(cos, random_subspace_cosines(784, 10, n_trials=20, seed=0))


def test_random_subspace_cosines_match_known_expectations():
    dim = 784
    # k = 1: E|cos| between uniform unit vectors = Γ(d/2) / (√π Γ((d+1)/2)) ≈ 0.0285
    expected = np.exp(gammaln(dim / 2) - gammaln((dim + 1) / 2)) / np.sqrt(np.pi)
    mean_cos = random_subspace_cosines(dim, 1, n_trials=400, seed=1)[0]
    assert mean_cos == pytest.approx(expected, abs=0.005)  # standard error ≈ 0.001
    # any k: E[Σ cos²] = trace(P_a P_b) = k² / d; one trial per seed gives the raw draws
    k = 10
    sums = [np.sum(random_subspace_cosines(dim, k, n_trials=1, seed=s) ** 2) for s in range(100)]
    assert np.mean(sums) == pytest.approx(k * k / dim, abs=0.01)  # standard error ≈ 0.002


# ------------------------------------------------------------------ input validation

def test_accuracy_refuses_labels_outside_the_models_outputs():
    x = torch.tensor([[3.0, 1, 0], [0, 5, 1], [0, 1, 2], [9, 0, 1]])
    model = Pick()                                       # 3 outputs: labels 0, 1, 2
    assert accuracy(model, x, torch.tensor([0, 1, 2, 2])) == pytest.approx(0.75)
    with pytest.raises(InvrobError, match=r"class labels in \[0, 3\) \(the model has 3 outputs\)"):
        accuracy(model, x, torch.tensor([0, 1, 3, 0]), batch_size=2)
    with pytest.raises(InvrobError, match=r"class labels in \[0, .*got labels in \[-1, 2\]"):
        accuracy(model, x, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(InvrobError):
        accuracy(model, x, torch.tensor([0.0, 1.0, 2.0, 0.0]))   # float labels
    with pytest.raises(InvrobError):
        accuracy(model, x, torch.tensor([0, 1, 2]))              # one label short


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_predict_and_accuracy_refuse_non_finite_inputs(value):
    x = torch.tensor([[3.0, 1, 0], [0, 5, 1], [0, 1, 2], [9, 0, 1]])
    x[2, 1] = value
    with pytest.raises(InvrobError, match="1 NaN or infinite"):
        predict(Pick(), x)
    with pytest.raises(InvrobError, match="NaN or infinite"):
        accuracy(Pick(), x, torch.tensor([0, 1, 2, 0]))


def test_check_images_is_the_one_image_check():
    from invrob.errors import check_images
    from invrob.metrics import check_model_inputs

    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    check_images(x, y, num_classes=3)                     # fine: returns quietly
    check_images(x[:0], y[:0])                            # empty is fine by default
    bad = {
        "not float": lambda: check_images((x * 255).long()),
        "1-D": lambda: check_images(torch.rand(5)),
        "ndim": lambda: check_images(x.flatten(1), ndim=4),
        "empty": lambda: check_images(x[:0], empty_ok=False),
        "box": lambda: check_images(x * 2),
        "nan": lambda: check_images(torch.where(x > 0.5, x, torch.nan)),
        "float labels": lambda: check_images(x, y.float()),
        "bool labels": lambda: check_images(x, y > 0),
        "label count": lambda: check_images(x, y[:4]),
        "label range": lambda: check_images(x, y, num_classes=2),
        "negative label": lambda: check_images(x, -y),
    }
    for name, call in bad.items():
        with pytest.raises(InvrobError):
            call()
            pytest.fail(name)
    check_images(x * 2, box=False)                        # features outside [0, 1] on request
    # With a model at hand the bound is its output size (a 3-output linear model).
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    check_model_inputs(model, x, y)
    with pytest.raises(InvrobError, match=r"\[0, 3\) \(the model has 3 outputs\)"):
        check_model_inputs(model, x, torch.tensor([0, 1, 2, 3, 0]))


def test_a_dtype_that_differs_from_the_model_s_is_one_line_naming_both():
    """float64 images reach torch's raw RuntimeError, float16 ones run silently: both are refused up front,
    by every measure and attack (they all check their inputs through check_model_inputs / predict)."""
    from invrob.attacks import PGD
    from invrob.errors import InvrobError
    from invrob.metrics import accuracy
    from invrob.rotations import rotated_accuracy

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).float()
    y = torch.tensor([0, 1])
    for dtype, name in ((torch.float64, "float64"), (torch.float16, "float16")):
        x = torch.rand(2, 1, 4, 4).to(dtype)
        for call in (lambda: accuracy(model, x, y), lambda: rotated_accuracy(model, x, y, [0, 30]),
                     lambda: PGD(model, eps=0.1, steps=2)(x, y)):
            with pytest.raises(InvrobError, match=f"x is {name} but the model's weights are float32"):
                call()
