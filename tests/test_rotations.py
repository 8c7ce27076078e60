"""invrob.rotations: exact quarter turns, sign convention, round trips, batched accuracy."""
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms.functional import InterpolationMode, rotate as tv_rotate

from invrob.data import load_mnist
from invrob.errors import InvrobError
from invrob.metrics import accuracy
from invrob.rotations import (random_angles, random_rotate, rotate, rotated_accuracy,
                              rotation_tangent)
from invrob.attacks import worst_of_k_accuracy


@pytest.fixture(scope="module")
def mnist():
    x, y = load_mnist(train=False)
    return x[:600], y[:600]


@pytest.fixture(scope="module")
def template_model(mnist):
    """Nearest-class-mean classifier on raw pixels: fixed, fast and not rotation invariant."""
    x, y = load_mnist(train=False)
    x, y = x[-2000:].flatten(1), y[-2000:]  # disjoint from the 600 images evaluated
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    linear = nn.Linear(784, 10)
    with torch.no_grad():
        linear.weight.copy_(means)
        linear.bias.copy_(-0.5 * (means ** 2).sum(1))  # argmax = nearest mean in l2
    return nn.Sequential(nn.Flatten(), linear)


def disc_mask(h=28, w=28, radius=10.0):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) <= radius ** 2


def centroid(img):
    """(row, col) centre of mass of a (H, W) image."""
    h, w = img.shape
    rows = torch.arange(h, dtype=img.dtype)[:, None]
    cols = torch.arange(w, dtype=img.dtype)[None, :]
    mass = img.sum()
    return (img * rows).sum() / mass, (img * cols).sum() / mass


def blob(h, w, row, col, sigma=1.5):
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    return torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma ** 2))


# ------------------------------------------------------------------ rotate

@pytest.mark.parametrize("angle,k", [(90.0, 1), (180.0, 2), (270.0, 3), (-90.0, 3), (-180.0, 2),
                                     (360.0, 0), (0.0, 0), (450.0, 1)])
def test_quarter_turns_are_exact_rot90(angle, k):
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.equal(rotate(x, angle), torch.rot90(x, k, dims=(2, 3)))


def test_per_sample_angles_mix_exact_and_interpolated(mnist):
    x = mnist[0][:4]
    out = rotate(x, torch.tensor([0.0, 90.0, 37.0, -180.0]))
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], torch.rot90(x[1], 1, dims=(1, 2)))
    assert torch.equal(out[3], torch.rot90(x[3], 2, dims=(1, 2)))
    alone = rotate(x[2:3], 37.0)[0]
    assert torch.allclose(out[2], alone, atol=1e-6)
    assert (out[2] - x[2]).abs().mean() > 0.05  # 37° really moved the digit


def test_sign_convention_is_counter_clockwise_on_screen():
    # A blob right of the centre goes up (smaller row) under a counter-clockwise turn.
    img = blob(28, 28, 13.5, 21.5)[None, None]
    r45, c45 = centroid(rotate(img, 45.0)[0, 0])
    assert r45 < 13.5 - 4 and c45 > 13.5 + 4
    r90, c90 = centroid(rotate(img, 90.0)[0, 0])
    assert abs(r90 - 5.5) < 0.05 and abs(c90 - 13.5) < 0.05
    rm, cm = centroid(rotate(img, -60.0)[0, 0])
    assert rm > 13.5 + 5 and cm > 13.5 + 2  # clockwise: goes down


def test_non_square_images_rotate_rigidly():
    # 90° on a 30x50 image goes through grid_sample; an offset of 6 px to the
    # right must become 6 px up (not 3.6 or 10: the aspect correction).
    h, w = 30, 50
    img = blob(h, w, (h - 1) / 2, (w - 1) / 2 + 6)[None, None]
    out = rotate(img, 90.0)
    assert out.shape == img.shape
    r, c = centroid(out[0, 0])
    assert abs(r - ((h - 1) / 2 - 6)) < 0.05 and abs(c - (w - 1) / 2) < 0.05


@pytest.mark.parametrize("angle", [30.0, -45.0, 12.5, 135.0])
def test_agrees_with_torchvision_rotate(mnist, angle):
    x = mnist[0][:64]
    ours = rotate(x, angle)
    ref = tv_rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
    inner = (ours - ref)[..., 4:24, 4:24]
    assert inner.abs().mean() < 1e-3
    # ...and the opposite sign is far from it: the tolerance can tell them apart.
    wrong = (rotate(x, -angle) - ref)[..., 4:24, 4:24]
    assert wrong.abs().mean() > 0.05


def test_round_trip_is_close_to_identity_in_the_central_disc(mnist):
    x = mnist[0][:200]
    disc = disc_mask()
    for angle in (15.0, 30.0, 60.0):
        back = rotate(rotate(x, angle), -angle)
        err = (back - x)[..., disc].abs().mean()
        # Two bilinear resamplings blur a little; a wrong inverse is ~5x worse.
        assert err < 0.08
        wrong = (rotate(rotate(x, angle), angle) - x)[..., disc].abs().mean()
        assert wrong > 3 * err


def test_rotate_keeps_shape_dtype_and_gradient():
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    out = rotate(x, torch.tensor([10.0, 90.0, -33.0]))
    assert out.shape == x.shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert rotate(torch.empty(0, 1, 28, 28), 30.0).shape == (0, 1, 28, 28)


def test_rotate_rejects_bad_input():
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(InvrobError):
        rotate(x, torch.zeros(2))
    with pytest.raises(InvrobError):
        rotate(x, float("nan"))
    with pytest.raises(InvrobError):
        rotate(x[0], 10.0)
    with pytest.raises(InvrobError):
        rotate(x, "ten")


# ------------------------------------------------------------------ random angles / augmentation

def test_random_angles_range_and_reproducibility():
    a = random_angles(10000, 30.0, torch.Generator().manual_seed(0))
    assert a.shape == (10000,)
    assert a.min() >= -30.0 and a.max() <= 30.0
    assert a.min() < -29.0 and a.max() > 29.0  # fills the range
    assert abs(a.mean().item()) < 1.0 and abs(a.std().item() - 30 / 3 ** 0.5) < 0.5  # uniform
    b = random_angles(10000, 30.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c = random_angles(10000, 30.0, torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)
    assert torch.equal(random_angles(5, 0.0), torch.zeros(5))
    assert random_angles(0, 10.0).shape == (0,)


def test_random_rotate_per_sample_and_seeded(mnist):
    x = mnist[0][:1].repeat(2, 1, 1, 1)  # the same digit twice
    out = random_rotate(x, 45.0, torch.Generator().manual_seed(3))
    assert (out[0] - out[1]).abs().mean() > 0.01  # different angles per sample
    again = random_rotate(x, 45.0, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    angles = random_angles(2, 45.0, torch.Generator().manual_seed(3))
    assert torch.allclose(out, rotate(x, angles), atol=1e-6)
    assert random_rotate(x, 0.0) is x


@pytest.mark.parametrize("bad", [200.0, -1.0, float("nan"), "wide"])
def test_bad_theta_raises(mnist, template_model, bad):
    x, y = mnist[0][:10], mnist[1][:10]
    with pytest.raises(InvrobError):
        random_angles(4, bad)
    with pytest.raises(InvrobError):
        random_rotate(x, bad)
    with pytest.raises(InvrobError):
        rotated_accuracy(template_model, x, y, [0.0, bad])
    with pytest.raises(InvrobError):
        worst_of_k_accuracy(template_model, x, y, bad)


def test_bad_counts_raise(mnist, template_model):
    x, y = mnist[0][:10], mnist[1][:10]
    for k in (0, -3, 2.5, True):
        with pytest.raises(InvrobError):
            worst_of_k_accuracy(template_model, x, y, 30.0, k=k)
    with pytest.raises(InvrobError):
        rotated_accuracy(template_model, x, y, [0.0], batch_size=0)
    with pytest.raises(InvrobError):
        rotated_accuracy(template_model, x, y[:5], [0.0])
    with pytest.raises(InvrobError):
        rotated_accuracy(template_model, x, y, [])


# ------------------------------------------------------------------ rotated accuracy

class DiscMeanClassifier(nn.Module):
    """Predicts the class whose level is nearest the mean intensity in the central disc.

    Bilinear rotation maps a constant disc onto itself exactly, so on images
    that are constant there the prediction is rotation invariant.
    """

    def __init__(self, levels):
        super().__init__()
        self.register_buffer("levels", torch.as_tensor(levels, dtype=torch.float32))
        self.register_buffer("mask", disc_mask(radius=9.0).float())

    def forward(self, x):
        value = (x[:, 0] * self.mask).sum((1, 2)) / self.mask.sum()
        return -(value[:, None] - self.levels[None, :]) ** 2


def test_invariant_model_has_constant_accuracy():
    g = torch.Generator().manual_seed(0)
    levels = torch.linspace(0.1, 0.9, 5)
    cls = torch.randint(0, 5, (300,), generator=g)
    x = levels[cls][:, None, None, None] * torch.ones(300, 1, 28, 28)
    # labels agree with the image's class 60% of the time, so accuracy is
    # neither 0 nor 1 and a mix-up of images and labels would change it
    y = torch.where(torch.rand(300, generator=g) < 0.6, cls, (cls + 1) % 5)
    model = DiscMeanClassifier(levels)
    frame = rotated_accuracy(model, x, y, [0, 10, 45, 90, 133, 180], batch_size=128)
    expected = (cls == y).double().mean().item()
    assert list(frame.columns) == ["theta", "accuracy", "n"]
    assert 0.5 < expected < 0.7
    assert np.allclose(frame["accuracy"], expected, atol=0, rtol=0)
    assert (frame["n"] == 300).all()
    assert worst_of_k_accuracy(model, x, y, 180.0, k=7) == pytest.approx(expected, abs=0)


def test_theta_zero_is_clean_accuracy_and_accuracy_drops(mnist, template_model):
    x, y = mnist
    frame = rotated_accuracy(template_model, x, y, [0.0, 30.0, 90.0, 180.0])
    clean = accuracy(template_model, x, y)
    assert frame["theta"].tolist() == [0.0, 30.0, 90.0, 180.0]
    assert frame["accuracy"].iloc[0] == pytest.approx(clean, abs=1e-6)
    assert clean > 0.6
    assert frame["accuracy"].iloc[2] < clean - 0.2  # template matching is not invariant
    assert frame["accuracy"].is_monotonic_decreasing


def test_batched_equals_naive_per_theta_loop(mnist, template_model):
    x, y = mnist[0][:300], mnist[1][:300]
    thetas = [0.0, 15.0, 45.0, 90.0, 180.0]
    seed = 7
    frame = rotated_accuracy(template_model, x, y, thetas, seed=seed)
    # The documented draws: u ~ U[-1, 1] once per image from a CPU generator seeded with `seed`.
    u = 2.0 * torch.rand(len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 1.0
    with torch.no_grad():
        naive = [(template_model(rotate(x, theta * u)).argmax(1) == y).sum().item() for theta in thetas]
    batched = (frame["accuracy"] * len(x)).round().astype(int).tolist()
    assert np.abs(np.array(batched) - np.array(naive)).max() <= 1  # float ties at most
    # chunking: a tiny batch (blocks of 1 image, θ grid split over forwards) gives the same table
    small = rotated_accuracy(template_model, x[:40], y[:40], thetas, batch_size=3, seed=seed)
    big = rotated_accuracy(template_model, x[:40], y[:40], thetas, batch_size=1000, seed=seed)
    assert np.array_equal(small["accuracy"], big["accuracy"])


def test_rotated_accuracy_seeded_and_restores_mode(mnist, template_model):
    x, y = mnist[0][:200], mnist[1][:200]
    template_model.train()
    a = rotated_accuracy(template_model, x, y, [60.0], seed=1, progress=True)
    assert template_model.training
    template_model.eval()
    b = rotated_accuracy(template_model, x, y, 60.0, seed=1)
    c = rotated_accuracy(template_model, x, y, np.array([60.0]), seed=2)
    assert a.equals(b)
    assert c["accuracy"].iloc[0] != a["accuracy"].iloc[0]


# ------------------------------------------------------------------ worst of k

def test_worst_of_k_bounds(mnist, template_model):
    x, y = mnist
    clean = accuracy(template_model, x, y)
    assert worst_of_k_accuracy(template_model, x, y, 30.0, k=1) == pytest.approx(clean, abs=1e-6)
    assert worst_of_k_accuracy(template_model, x, y, 0.0, k=5) == pytest.approx(clean, abs=1e-6)
    frame = rotated_accuracy(template_model, x, y, [30.0])
    worst = worst_of_k_accuracy(template_model, x, y, 30.0, k=10)
    assert worst <= clean and worst <= frame["accuracy"].iloc[0]
    assert worst < clean - 0.05  # the grid attack finds something
    # independent check: all-correct over the k angles, done naively
    angles = np.linspace(-30.0, 30.0, 10)
    with torch.no_grad():
        ok = torch.stack([template_model(rotate(x, a)).argmax(1) == y for a in angles]).all(0)
    assert abs(worst - ok.float().mean().item()) <= 1.0 / len(x)
    # a finer grid that contains the k=10 grid (k=19) can only find more failures
    assert worst_of_k_accuracy(template_model, x, y, 30.0, k=19) <= worst + 1.0 / len(x)


class RotatedTemplateDetector(nn.Module):
    """Right (class 0) on every input except copies of its templates (class 1, wrong).

    The templates are the evaluated images pre-rotated by a known angle each, so
    the model fails at exactly that angle: a rotation 5° off is ~20x farther (mean
    squared) than the tolerance. Logits ``1000 · (d, tol)`` with ``d`` the distance
    to the nearest template: the closer a rotation comes to the failing angle, the
    larger its cross-entropy for label 0.
    """

    def __init__(self, templates, tol=1e-3):
        super().__init__()
        self.register_buffer("templates", templates)
        self.tol = tol

    def forward(self, x):
        d = ((x[:, None] - self.templates[None]) ** 2).flatten(2).mean(2).amin(1)
        return 1000 * torch.stack([d, torch.full_like(d, self.tol)], 1)


def test_rotation_grid_finds_the_one_failing_angle(mnist):
    from invrob.attacks import RotationGrid, robust_accuracy

    x = mnist[0][:16]
    y = torch.zeros(16, dtype=torch.long)
    worst = torch.where(torch.arange(16) % 2 == 0, 20.0, -10.0)      # the failing angle of each image
    model = RotatedTemplateDetector(rotate(x, worst))
    assert accuracy(model, x, y) == 1.0
    # Grid -30, -20, ..., 30 contains both failing angles: every image is broken, at its angle.
    attack = RotationGrid(model, 30.0, k=7)
    x_adv = attack(x, y)
    assert torch.allclose(x_adv, rotate(x, worst), atol=1e-6, rtol=0)
    assert accuracy(model, x_adv, y) == 0.0
    wrong = ~attack.correct_grid(x, y)                                # (k, N)
    assert (wrong.sum(0) == 1).all()                                  # exactly one failing angle each
    assert torch.equal(attack.angles[wrong.int().argmax(0)].float(), worst)
    assert worst_of_k_accuracy(model, x, y, 30.0, k=7) == 0.0
    # Grid -30, -15, 0, 15, 30 misses both: nobody is broken, and the attack returns the
    # largest-loss rotation, the grid angle nearest the failing one.
    miss = RotationGrid(model, 30.0, k=5)
    x_miss = miss(x, y)
    assert accuracy(model, x_miss, y) == 1.0 and worst_of_k_accuracy(model, x, y, 30.0, k=5) == 1.0
    assert torch.allclose(x_miss, rotate(x, torch.where(worst > 0, 15.0, -15.0)), atol=1e-6, rtol=0)
    # Over a φ grid: φ = 10 reaches only the −10° images.
    frame = robust_accuracy(model, x, y, [0.0, 10.0, 30.0], attack=RotationGrid(model, 0.0, k=7))
    assert frame["accuracy"].tolist() == [1.0, 0.5, 0.0]
    assert (frame["norm"] == "rotation").all() and (frame["steps"] == 7).all()


def test_robust_accuracy_with_the_grid_matches_worst_of_k(mnist, template_model):
    from invrob.attacks import RotationGrid, robust_accuracy

    x, y = mnist[0][:200], mnist[1][:200]
    phis = [0.0, 15.0, 45.0]
    frame = robust_accuracy(template_model, x, y, phis, attack=RotationGrid(template_model, 0.0, k=9),
                            batch_size=64)
    direct = [worst_of_k_accuracy(template_model, x, y, phi, k=9) for phi in phis]
    # cummax may only lower a φ whose grid missed a failure found at a smaller φ
    assert (frame["accuracy"] <= np.array(direct) + 1e-12).all()
    assert frame["accuracy"].iloc[0] == direct[0] and frame["accuracy"].iloc[1] == direct[1]
    assert abs(frame["accuracy"].iloc[2] - direct[2]) <= 0.03 and direct[2] < direct[0] - 0.1


@pytest.mark.parametrize("bad", ["nan", "inf", "label"])
def test_non_finite_images_and_bad_labels_raise(mnist, template_model, bad):
    x, y = mnist[0][:10].clone(), mnist[1][:10].clone()
    if bad == "label":
        y[3] = 10                                   # the template model has 10 classes: 0..9
        match = r"class labels in \[0, 10\)"
    else:
        x[2, 0, 5, 5] = float("nan") if bad == "nan" else float("-inf")
        match = "NaN or infinite"
    with pytest.raises(InvrobError, match=match):
        rotated_accuracy(template_model, x, y, [0.0, 30.0])
    with pytest.raises(InvrobError, match=match):
        worst_of_k_accuracy(template_model, x, y, 30.0, k=3)


# --------------------------------------------------------------------------- rotation tangent

def gaussian_blob(h, w, cy, cx, sigma=3.0, dtype=torch.float32):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)).to(dtype)[None, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotation_tangent_matches_finite_difference(dtype):
    """Analytic t(x) vs (rotate(x, +0.5°) − rotate(x, −0.5°)) / 1°, per sample, on smooth
    off-centre blobs (square and non-square images, several channels)."""
    for h, w in [(28, 28), (20, 32)]:
        x = torch.cat([torch.cat([gaussian_blob(h, w, 6, 9, dtype=dtype),
                                  gaussian_blob(h, w, h - 6, w - 8, 2.5, dtype=dtype)], 1),
                       torch.cat([gaussian_blob(h, w, h / 2 - 4, w - 9, dtype=dtype),
                                  0.5 * gaussian_blob(h, w, 7, w / 2, 4.0, dtype=dtype)], 1)])
        t = rotation_tangent(x)
        fd = (rotate(x, 0.5) - rotate(x, -0.5)) / 1.0
        assert t.shape == x.shape and t.dtype == dtype
        cos = torch.nn.functional.cosine_similarity(t.flatten(1), fd.flatten(1), dim=1)
        assert (cos > 0.99).all(), cos
        rel = (t - fd).flatten(1).norm(dim=1) / fd.flatten(1).norm(dim=1)
        assert (rel < 0.02).all(), rel                           # measured ≈ 0.002
        # The finite-difference option is that same quantity.
        assert torch.allclose(rotation_tangent(x, delta=0.5), fd)


def test_rotation_tangent_sign_convention():
    """A blob right of the centre turning counter-clockwise (on screen, rows down) moves up:
    the tangent is positive above the blob and negative below it."""
    x = gaussian_blob(28, 28, 13.5, 22)
    t = rotation_tangent(x)[0, 0]
    assert t[10, 22] > 0.01 and t[17, 22] < -0.01
    # The blob is symmetric about the centre row: the turn's tangent is antisymmetric about it.
    assert torch.allclose(t, -t.flip(0), atol=1e-6)


def test_rotation_tangent_of_a_radial_image_vanishes():
    x = gaussian_blob(28, 28, 13.5, 13.5)                          # centred: invariant to rotation
    off = gaussian_blob(28, 28, 8, 18)
    assert rotation_tangent(x).abs().max() < 0.02 * rotation_tangent(off).abs().max()
    # and a quarter-symmetric but not radial image is not tangent-free
    square = torch.zeros(1, 1, 28, 28)
    square[..., 8:20, 8:20] = 1.0
    assert rotation_tangent(square).abs().max() > 0.03               # 5.5 px × 0.5 × π/180 ≈ 0.048


@pytest.mark.parametrize("call", [
    lambda: rotation_tangent(torch.zeros(28, 28)),
    lambda: rotation_tangent(torch.zeros(1, 1, 8, 8), delta=0.0),
    lambda: rotation_tangent(torch.zeros(1, 1, 8, 8), delta="small"),
])
def test_rotation_tangent_bad_input(call):
    with pytest.raises(InvrobError):
        call()
