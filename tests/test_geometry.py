"""invrob.geometry: perturbation families, data-matched subspace nulls, tangent cosines and
directional derivatives — on tiny synthetic blob images and hand-made models (no training)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from invrob import geometry as geo
from invrob.errors import InvrobError
from invrob.metrics import principal_cosines, random_subspace_cosines
from invrob.rotations import rotate, rotation_tangent


def blobs(n: int = 16, seed: int = 0, offset: float = 0.0, dtype=None) -> torch.Tensor:
    """``n`` images 1×28×28: one or two Gaussian blobs each, values in [offset, offset + 0.8]."""
    dtype = dtype or torch.get_default_dtype()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 1, 28, 28))
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(7, 21, size=2)
            sy, sx = rng.uniform(1.5, 4, size=2)
            out[i, 0] += np.exp(-((yy - cy) ** 2 / (2 * sy ** 2) + (xx - cx) ** 2 / (2 * sx ** 2)))
    out = out / out.max(axis=(1, 2, 3), keepdims=True)
    out[out < 1e-3] = 0.0  # a real background, as MNIST's
    return torch.tensor(offset + 0.8 * out, dtype=dtype)


def linear_model(dtype=None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to(dtype or torch.get_default_dtype())


def smooth_model(dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 12 * 12, 10)).to(dtype)


def one_line(excinfo) -> None:
    message = str(excinfo.value)
    assert message and "\n" not in message


# ------------------------------------------------------------ project_out, data_components

def test_project_out_is_orthogonal_and_idempotent():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((50, 4)))[0].T          # (4, 50) orthonormal rows
    a = rng.standard_normal((7, 50))
    out = geo.project_out(a, basis)
    assert out.shape == a.shape
    assert np.abs(out @ basis.T).max() < 1e-12
    assert np.allclose(geo.project_out(out, basis), out, atol=1e-13)
    # the removed part lies in the span: a = out + (a Bᵀ) B
    assert np.allclose(a - out, (a @ basis.T) @ basis)
    # an empty basis removes nothing; a tensor stays a tensor of its dtype
    assert np.array_equal(geo.project_out(a, np.zeros((0, 50))), a)
    t = geo.project_out(torch.tensor(a, dtype=torch.float32), basis)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert torch.allclose(t, torch.tensor(out, dtype=torch.float32), atol=1e-5)


def test_data_components_are_the_images_principal_directions():
    x = blobs(16)
    comps = geo.data_components(x, 5)
    assert comps.shape == (5, 784)
    assert np.allclose(comps @ comps.T, np.eye(5), atol=1e-10)
    # they span the top of the centred images' right singular space
    flat = x.flatten(1).double().numpy()
    vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)[2][:5]
    assert np.allclose(np.abs(np.linalg.svd(comps @ vt.T, compute_uv=False)), 1.0, atol=1e-8)


# ------------------------------------------------------------ translation_perturbations

def test_translation_perturbations_shape_and_scipy_agreement():
    x = blobs(5)
    pert = geo.translation_perturbations(x)
    assert pert.shape == (2 * 4 * 5, 784) and pert.dtype == x.dtype
    # blocks: horizontal (-2, -1, 1, 2), then vertical: shift +1 right is block 2
    img = x[3, 0].double().numpy()
    right = ndimage.shift(img, (0, 1), order=0, mode="constant", cval=0.0) - img
    down = ndimage.shift(img, (1, 0), order=0, mode="constant", cval=0.0) - img
    assert np.allclose(pert[2 * 5 + 3].double().numpy().reshape(28, 28), right, atol=1e-12)
    assert np.allclose(pert[6 * 5 + 3].double().numpy().reshape(28, 28), down, atol=1e-12)
    assert np.abs(right).max() > 0.1  # the blob really moved
    one = geo.translation_perturbations(x, shifts=[1])
    assert one.shape == (2 * 5, 784) and torch.equal(one[3], pert[2 * 5 + 3])


# ------------------------------------------------------------ subspace_comparisons

def families(seed: int = 0):
    x = blobs(16, seed=seed)
    rng = np.random.default_rng(seed)
    adversarial = rng.choice([-0.1, 0.1], size=(16, 784)).astype(np.float32)
    angles = torch.tensor([-3.0, -1.0, 1.0, 3.0], dtype=torch.float64)
    stacked = x.repeat(4, 1, 1, 1)
    rotational = (rotate(stacked, angles.repeat_interleave(16)) - stacked).flatten(1).numpy()
    translational = geo.translation_perturbations(x).numpy()
    return adversarial, rotational, x.flatten(1).numpy(), translational


def test_subspace_comparisons_reproduce_the_legacy_four_and_are_deterministic():
    adv, rot, img, trans = families()
    table = geo.subspace_comparisons(adv, rot, img, trans, ks=[1, 3], remove=2, seed=4)
    assert list(table.columns) == ["comparison", "k", "mean_cosine", "max_cosine"]
    assert list(table["comparison"]) == list(geo.COMPARISONS) * 2
    assert table[["mean_cosine", "max_cosine"]].stack().between(0, 1 + 1e-9).all()
    flat = torch.as_tensor(img)
    support = (flat.amax(0) > flat.amin(0)).numpy()
    noise = np.random.default_rng(4).standard_normal(flat.shape) * support
    for k in (1, 3):
        row = table[table["k"] == k].set_index("comparison")
        expected = {"adversarial vs rotation": principal_cosines(adv, rot, k),
                    "adversarial vs adversarial": principal_cosines(adv[:8], adv[8:], k),
                    "random vs random": random_subspace_cosines(784, k, seed=4),
                    "support-random vs rotation": principal_cosines(noise, rot, k),
                    "image PCA vs rotation": principal_cosines(img, rot, k),
                    "translation vs rotation": principal_cosines(trans, rot, k)}
        for name, cos in expected.items():
            assert row.loc[name, "mean_cosine"] == float(np.mean(cos)), name
            assert row.loc[name, "max_cosine"] == float(np.max(cos)), name
    again = geo.subspace_comparisons(adv, rot, img, trans, ks=[1, 3], remove=2, seed=4)
    assert again.equals(table)


def test_subspace_comparisons_match_experiments_subspace_table():
    """subspace_table is subspace_comparisons on the model's perturbations (the four legacy rows were
    checked equal to the old subspace_table's before it delegated here)."""
    from invrob import experiments as ex
    from invrob.train import TrainConfig

    x = blobs(12)
    model = linear_model()
    y = model(x).argmax(1).detach()
    angles, ks = [-2, 2], [1, 2]
    old = ex.subspace_table([(TrainConfig(model="lenet"), model)], x, y, eps=0.05, steps=3,
                            small_angles=angles, ks=ks, remove=1, seed=1)
    adv, rot = ex.perturbations(model, x, y, 0.05, 3, angles, seed=1)
    new = geo.subspace_comparisons(adv.numpy(), rot.numpy(), x.flatten(1).numpy(),
                                   geo.translation_perturbations(x).numpy(), ks, remove=1, seed=1)
    merged = old.merge(new, on=["comparison", "k"], suffixes=("_old", "_new"))
    assert len(merged) == 8 * len(ks)
    assert (merged["mean_cosine_old"] == merged["mean_cosine_new"]).all()
    assert (merged["max_cosine_old"] == merged["max_cosine_new"]).all()


def test_identical_families_give_cosine_one_and_remove_zero_changes_nothing():
    adv, rot, img, trans = families()
    table = geo.subspace_comparisons(rot, rot, rot, rot, ks=[3], remove=0).set_index("comparison")
    for name in ("adversarial vs rotation", "image PCA vs rotation", "translation vs rotation",
                 "adversarial vs rotation (data PCs removed)", "translation vs rotation (data PCs removed)"):
        assert table.loc[name, "mean_cosine"] == pytest.approx(1.0, abs=1e-8), name
    plain = geo.subspace_comparisons(adv, rot, img, trans, ks=[2], remove=0).set_index("comparison")
    assert plain.loc["adversarial vs rotation (data PCs removed)", "mean_cosine"] == \
        plain.loc["adversarial vs rotation", "mean_cosine"]
    assert plain.loc["translation vs rotation (data PCs removed)", "mean_cosine"] == \
        plain.loc["translation vs rotation", "mean_cosine"]


def test_removing_the_data_subspace_reveals_what_is_shared_beyond_it():
    """Known answer: all families share a strong data subspace S; beyond it adversarial lives in P,
    rotation and translation in Q (S, P, Q mutually orthogonal). Overlap before removal is that of S
    (≈ 1, k = dim S), after removal adversarial vs rotation is P vs Q (0) and translation vs rotation
    Q vs Q (1)."""
    rng = np.random.default_rng(1)
    dim, s_dim, p_dim, n = 60, 3, 3, 40
    basis = np.linalg.qr(rng.standard_normal((dim, s_dim + 2 * p_dim)))[0].T
    s, p, q = basis[:s_dim], basis[s_dim:s_dim + p_dim], basis[s_dim + p_dim:]
    strong = lambda m: 10.0 * rng.standard_normal((n, m))          # noqa: E731
    images = 0.5 + strong(s_dim) @ s
    adversarial = strong(s_dim) @ s + rng.standard_normal((n, p_dim)) @ p
    rotational = strong(s_dim) @ s + rng.standard_normal((n, p_dim)) @ q
    translational = strong(s_dim) @ s + rng.standard_normal((n, p_dim)) @ q
    table = geo.subspace_comparisons(adversarial, rotational, images, translational, ks=[3],
                                     remove=s_dim).set_index("comparison")["mean_cosine"]
    assert table["adversarial vs rotation"] > 0.95
    assert table["image PCA vs rotation"] > 0.95
    assert table["adversarial vs rotation (data PCs removed)"] < 1e-8
    assert table["translation vs rotation (data PCs removed)"] == pytest.approx(1.0, abs=1e-8)


# ------------------------------------------------------------ tangent_cosines

def test_tangent_cosines_match_hand_computations_for_a_linear_model():
    dtype = torch.get_default_dtype()
    x = blobs(16, offset=0.1)                     # in [0.1, 0.9]: a tiny ε never meets the box
    x = torch.cat([x, torch.zeros(1, 1, 28, 28, dtype=dtype)])  # a blank image: no tangent
    model = linear_model()
    y = model(x).argmax(1).detach()               # correctly classified: PGD is never "fooled" early
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    eps = 1e-4
    table = geo.tangent_cosines(model, x, y, eps=eps, steps=5, seed=0)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert list(table.columns) == ["point", "adversarial", "random_sign", "matched_support", "edge_sign", "gradient"]
    assert list(table["point"]) == list(range(16)) and table.attrs["n_dropped"] == 1

    # the CE gradient of f(x) = Wx + b by hand: Wᵀ (softmax(f(x)) − e_y)
    w, b = model[1].weight.detach().double().numpy(), model[1].bias.detach().double().numpy()
    flat = x[:16].flatten(1).double().numpy()
    logits = flat @ w.T + b
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    prob[np.arange(16), y[:16].numpy()] -= 1.0
    grad = prob @ w
    t = rotation_tangent(x[:16]).flatten(1).double().numpy()

    def abs_cos(a, c):
        return np.abs((a * c).sum(1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1))

    tol = 1e-6 if dtype == torch.float32 else 1e-10
    assert np.allclose(table["gradient"], abs_cos(grad, t), atol=tol)
    # a tiny ε: PGD ends at ε·sign(∇) (steps cross the ball 2.5 times, the gradient barely moves)
    assert np.allclose(table["adversarial"], abs_cos(np.sign(grad), t), atol=1e-4)
    assert table["random_sign"].between(0, 1).all()
    assert table["random_sign"].mean() < 0.2
    assert np.isfinite(table[["adversarial", "random_sign", "gradient"]].to_numpy()).all()
    # deterministic for a seed, different draws for another
    assert geo.tangent_cosines(model, x, y, eps=eps, steps=5, seed=0).equals(table)
    other = geo.tangent_cosines(model, x, y, eps=eps, steps=5, seed=1)
    assert not np.array_equal(other["random_sign"], table["random_sign"])


def test_tangent_cosines_null_is_a_clipped_random_corner():
    """The null is the ℓ∞ attack that knows nothing: a random corner of the ε-ball around x, clipped
    to [0, 1] like PGD's perturbation — so on black background pixels it is +ε or 0, never −ε, and
    it spends norm off the digit as δ_adv does."""
    x = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    x[0, 0, 10:14, 12:15] = 0.7
    model = linear_model(torch.float64)
    y = model(x).argmax(1).detach()
    t = rotation_tangent(x)
    eps, seed = 0.1, 3
    value = geo.tangent_cosines(model, x, y, eps=eps, steps=1, seed=seed)["random_sign"].item()
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
    u = (x + eps * (2 * signs - 1)).clamp(0, 1) - x
    assert ((u[x == 0] == 0) | (u[x == 0] == eps)).all() and (u[x == 0] == eps).any()
    expected = (u.flatten() @ t.flatten()).abs() / (u.norm() * t.norm())
    assert value == pytest.approx(expected.item(), rel=1e-12)
    # chance level: |cos| of a near-uniform corner with a tangent on a few dozen pixels is small
    values = [geo.tangent_cosines(model, x, y, eps=eps, steps=1, seed=s)["random_sign"].item() for s in range(40)]
    assert 0.0 < np.mean(values) < 0.1


def test_matched_null_equals_the_whole_ball_corner_on_a_full_support_perturbation():
    """Inside (0, 1) a linear model's PGD step moves every pixel: the matched null (random signs on
    δ_adv's support) is then the whole-ball corner itself, draw for draw."""
    x = blobs(8, offset=0.1, dtype=torch.float64)
    model = linear_model(torch.float64)
    y = model(x).argmax(1).detach()
    table = geo.tangent_cosines(model, x, y, eps=1e-3, steps=3, seed=5)
    assert np.array_equal(table["matched_support"].to_numpy(), table["random_sign"].to_numpy())


def test_matched_and_edge_nulls_by_hand():
    """On a square on a black background: the matched null is ±ε where PGD's perturbation is nonzero
    (clipped to the box), the edge null ±ε on the pixels next to the square's border."""
    from invrob.attacks import PGD

    x = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    x[:, 0, 10:16, 11:17] = 0.6
    x[1, 0, 12:14, 13:15] = 1.0
    model = linear_model(torch.float64)
    y = model(x).argmax(1).detach()
    eps, seed = 0.2, 4
    table = geo.tangent_cosines(model, x, y, eps=eps, steps=2, seed=seed)
    delta = PGD(model, eps=eps, steps=2, early_stop=False, generator=torch.Generator().manual_seed(seed))(x, y) - x
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
    step = eps * (2 * signs - 1)
    t = rotation_tangent(x)
    edges = torch.zeros_like(x, dtype=torch.bool)
    arr = x.numpy()[:, 0]
    for i in range(2):
        padded = np.pad(arr[i], 1)
        gy = padded[2:, 1:-1] - padded[:-2, 1:-1]
        gx = padded[1:-1, 2:] - padded[1:-1, :-2]
        edges[i, 0] = torch.from_numpy((gy != 0) | (gx != 0))
    assert edges[0, 0, 10:16, 11:17].sum() < 36 and edges[0, 0, 12:14, 13:15].sum() == 0  # the interior is no edge
    for name, mask in (("matched_support", delta != 0), ("edge_sign", edges)):
        u = (x + torch.where(mask, step, torch.zeros_like(step))).clamp(0, 1) - x
        cos = (u.flatten(1) * t.flatten(1)).sum(1).abs() / (u.flatten(1).norm(dim=1) * t.flatten(1).norm(dim=1))
        assert np.allclose(table[name].to_numpy(), cos.numpy(), rtol=1e-12), name


# ------------------------------------------------------------ directional_derivatives

def test_directional_derivative_along_tangent_is_a_finite_difference():
    x = blobs(6, dtype=torch.float64)
    model = smooth_model()
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    table = geo.directional_derivatives(model, x, y, seed=0)
    assert list(table.columns) == ["point", "along_tangent", "along_random", "gradient_norm"]
    assert table.attrs["n_dropped"] == 0 and list(table["point"]) == list(range(6))
    t = rotation_tangent(x)
    t_hat = t / t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    h = 1e-4
    with torch.no_grad():
        loss = lambda z: nn.functional.cross_entropy(model(z), y, reduction="none")  # noqa: E731
        fd = ((loss(x + h * t_hat) - loss(x - h * t_hat)) / (2 * h)).abs().numpy()
    np.testing.assert_allclose(table["along_tangent"].to_numpy(), fd, rtol=1e-4)
    # |g · d| ≤ ‖g‖ for unit d (Cauchy–Schwarz), and the random direction differs from the tangent
    assert (table["along_tangent"] <= table["gradient_norm"] + 1e-12).all()
    assert (table["along_random"] <= table["gradient_norm"] + 1e-12).all()
    assert not np.allclose(table["along_random"], table["along_tangent"])
    assert geo.directional_derivatives(model, x, y, seed=0).equals(table)


def test_directional_derivatives_drop_blank_images_and_keep_the_model_untouched():
    x = torch.cat([blobs(3, dtype=torch.float32), torch.zeros(1, 1, 28, 28, dtype=torch.float32)])
    model = smooth_model(torch.float32)
    before = [p.clone() for p in model.parameters()]
    table = geo.directional_derivatives(model, x, torch.tensor([1, 2, 3, 4]))
    assert list(table["point"]) == [0, 1, 2] and table.attrs["n_dropped"] == 1
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))
    assert (table["gradient_norm"] > 0).all()


# ------------------------------------------------------------ bad input

@pytest.mark.parametrize("call", [
    lambda: geo.project_out(np.ones((3, 5)), np.ones((2, 4))),                 # dimensions differ
    lambda: geo.project_out(np.ones(5), np.eye(5)[:2]),                        # a is not a matrix
    lambda: geo.project_out(np.ones((3, 5)), 2 * np.eye(5)[:2]),               # not orthonormal
    lambda: geo.translation_perturbations(torch.zeros(2, 28, 28)),             # not (N, C, H, W)
    lambda: geo.translation_perturbations(torch.zeros(2, 1, 28, 28), shifts=[0, 1]),
    lambda: geo.translation_perturbations(torch.zeros(2, 1, 28, 28), shifts=[0.5]),
    lambda: geo.translation_perturbations(torch.zeros(2, 1, 28, 28), shifts=[]),
    lambda: geo.data_components(np.random.default_rng(0).random((4, 10)), 4),  # k > N − 1
])
def test_bad_arrays_raise_one_line(call):
    with pytest.raises(InvrobError) as excinfo:
        call()
    one_line(excinfo)


@pytest.mark.parametrize("change", [
    {"ks": [20]},                 # k too large for the adversarial halves (8 each)
    {"ks": []},
    {"ks": [0]},
    {"remove": -1},
    {"remove": 16},               # more data directions than 16 images have
    {"remove": 1.5},
    {"images": np.ones((16, 100))},  # wrong dimension
])
def test_bad_subspace_arguments_raise_one_line(change):
    adv, rot, img, trans = families()
    kwargs = dict(adversarial=adv, rotational=rot, images=img, translational=trans, ks=[2], remove=2)
    kwargs.update(change)
    with pytest.raises(InvrobError) as excinfo:
        geo.subspace_comparisons(**kwargs)
    one_line(excinfo)


@pytest.mark.parametrize("fn, case", [(fn, case) for fn in ("tangent", "directional")
                                      for case in ("shape", "labels", "dtype", "range", "model")]
                         + [("tangent", "eps"), ("tangent", "steps")])
def test_bad_model_inputs_raise_one_line(fn, case):
    x, y, model = blobs(4), torch.tensor([0, 1, 2, 3]), linear_model()
    eps, steps = 0.1, 3
    if case == "eps":
        eps = -0.1
    elif case == "steps":
        steps = 0
    elif case == "shape":
        x = x.flatten(1)
    elif case == "labels":
        y = torch.tensor([0, 1, 2, 10])
    elif case == "dtype":
        x = x.to(torch.float32 if x.dtype == torch.float64 else torch.float64)
    elif case == "range":
        x = x + 2.0
    elif case == "model":
        model = lambda z: z  # noqa: E731
    with pytest.raises(InvrobError) as excinfo:
        if fn == "tangent":
            geo.tangent_cosines(model, x, y, eps=eps, steps=steps)
        else:
            geo.directional_derivatives(model, x, y)
    one_line(excinfo)
