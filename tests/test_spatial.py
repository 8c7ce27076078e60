"""Spatial attacks: SpatialGrid, WorstOfK, JointAttack (invrob.attacks.spatial).

The grid attack is checked on a model built to fail at exactly one
(angle, shift) per image — a template matcher — where the right answer is
known; worst-of-k against the full grid of its own candidates; the joint
attack against its threat model; all three against the attack contract.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invrob.attacks import (PGD, Attack, JointAttack, RotationGrid, SpatialGrid, WorstOfK,
                            robust_accuracy)
from invrob.attacks.spatial import ENGSTROM_ROTATIONS, ENGSTROM_TRANSLATIONS
from invrob.data import load_mnist
from invrob.errors import InvrobError
from invrob.metrics import accuracy
from invrob.transforms import rotate_translate


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    x, y = load_mnist(train=False)
    return x[:300].clone(), y[:300].clone()


@pytest.fixture(scope="module")
def ncm(mnist):
    """Nearest-class-mean classifier on raw pixels: fixed, fast, differentiable, not invariant."""
    x, y = load_mnist(train=False)
    x, y = x[-2000:].flatten(1), y[-2000:]  # disjoint from the images attacked
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    linear = nn.Linear(784, 10)
    with torch.no_grad():
        linear.weight.copy_(means)
        linear.bias.copy_(-0.5 * (means ** 2).sum(1))
    return nn.Sequential(nn.Flatten(), linear)


class TemplateModel(nn.Module):
    """Two classes. Class 1 ("fooled") wins only within squared distance ``tau`` of one of
    the ``templates``; the logit of class 1 is ``(tau − d_min) / tau``, so for label 0 the
    cross-entropy grows as an input approaches the nearest template."""

    def __init__(self, templates: torch.Tensor, tau: float = 1e-3):
        super().__init__()
        self.templates = nn.Parameter(templates.clone())
        self.tau = tau

    def forward(self, z):
        d = (z[:, None] - self.templates[None]).flatten(2).pow(2).sum(2).min(1).values
        return torch.stack([torch.zeros_like(d), (self.tau - d) / self.tau], 1)


# Targets on Engstrom's default grid (angles: 2° steps in ±30°; shifts: −3, −1.5, 0, 1.5, 3).
TARGETS = [(12.0, (1.5, -3.0)), (-30.0, (0.0, 0.0)), (0.0, (3.0, 3.0)), (28.0, (-1.5, 1.5))]


@pytest.fixture(scope="module")
def trap(mnist):
    x = mnist[0][:len(TARGETS)]
    angles = torch.tensor([a for a, _ in TARGETS], dtype=torch.float64)
    shifts = torch.tensor([s for _, s in TARGETS], dtype=torch.float64)
    model = TemplateModel(rotate_translate(x, angles, shifts))
    return model, x, torch.zeros(len(x), dtype=torch.long), angles, shifts


# ------------------------------------------------------------------ the grid finds the known worst

def test_default_grid_is_engstroms():
    grid = SpatialGrid(nn.Linear(2, 2))
    table = grid.transforms
    assert table.shape == (775, 3) and grid.steps == 775 and grid.name == "SpatialGrid-775"
    assert sorted(set(table[:, 0].tolist())) == list(np.linspace(-30, 30, 31))
    assert sorted(set(table[:, 1].tolist())) == sorted(set(table[:, 2].tolist())) == [-3, -1.5, 0, 1.5, 3]
    assert (table == 0).all(1).sum() == 1       # the identity, once
    assert grid.eps == (30.0, 3.0) and grid.norm == "spatial"
    assert ENGSTROM_ROTATIONS == tuple(np.linspace(-30, 30, 31)) and len(ENGSTROM_TRANSLATIONS) == 5


def test_grid_finds_the_one_failing_transform(trap):
    model, x, y, angles, shifts = trap
    assert accuracy(model, x, y) == 1.0            # clean: all correct
    attack = SpatialGrid(model)
    found_angles, found_shifts, fooled = attack.worst_transforms(x, y)
    assert fooled.all()
    assert torch.equal(found_angles, angles) and torch.equal(found_shifts, shifts)
    x_adv = attack(x, y)
    assert (x_adv - model.templates.detach()).abs().max() < 1e-6
    assert accuracy(model, x_adv, y) == 0.0
    # Exactly one of the 775 transforms fails, per image.
    correct = attack.correct_grid(x, y)
    assert correct.shape == (775, len(x)) and ((~correct).sum(0) == 1).all()


def test_grid_that_misses_the_transform_returns_the_max_loss_one(trap):
    # A grid without the failing transforms: nothing is fooled, and each image's pick is
    # the grid's max-loss transform (checked one transform at a time, an independent loop).
    model, x, y, _, _ = trap
    attack = SpatialGrid(model, rotations=[-5.0, 5.0, 13.0], translations=[-1.0, 1.5])
    found_angles, found_shifts, fooled = attack.worst_transforms(x, y)
    assert not fooled.any()
    losses = torch.stack([F.cross_entropy(model(rotate_translate(x, float(a), (float(dx), float(dy)))), y,
                                          reduction="none").detach()
                          for a, dx, dy in attack.transforms])
    best = attack.transforms[losses.argmax(0)]
    assert torch.equal(found_angles, best[:, 0]) and torch.equal(found_shifts, best[:, 1:])


def test_rotation_only_grid_over_180_finds_the_failing_angle(mnist):
    x = mnist[0][:3]
    y = torch.zeros(3, dtype=torch.long)
    failing = torch.tensor([135.0, -90.0, 40.0], dtype=torch.float64)
    model = TemplateModel(rotate_translate(x, failing, (0.0, 0.0)))
    full_turn = np.linspace(-180, 180, 73)     # 5° steps
    grid = SpatialGrid(model, rotations=full_turn, translations=[0.0])
    angles, shifts, fooled = grid.worst_transforms(x, y)
    assert fooled.all() and torch.equal(angles, failing) and (shifts == 0).all()
    # The same set as RotationGrid: the same images, bit for bit.
    rotation = RotationGrid(model, 180.0, k=73)
    assert torch.equal(rotation(x, y), grid(x, y))


# ------------------------------------------------------------------ worst of k

def test_worst_of_k_never_beats_the_grid_of_its_candidates(ncm, mnist):
    x, y = mnist[0][:120], mnist[1][:120]
    k = 4
    angles, shifts = WorstOfK(ncm, k=k, seed=3).draw(len(x))           # the candidates it will try
    assert angles.shape == (k, len(x)) and shifts.shape == (k, len(x), 2)
    wok = WorstOfK(ncm, k=k, seed=3)
    chosen_a, chosen_s, wok_fooled = wok.worst_transforms(x, y)
    # Each pick is one of that sample's own candidates.
    match = (angles == chosen_a[None]) & (shifts == chosen_s[None]).all(2)
    assert match.any(0).all()
    table = torch.cat([angles.reshape(-1, 1), shifts.reshape(-1, 2)], 1)
    grid = SpatialGrid(ncm, transforms=table)                             # every candidate of every sample
    grid_a, grid_s, grid_fooled = grid.worst_transforms(x, y)
    assert (grid_fooled | ~wok_fooled).all()                              # fooled by wok ⇒ by the grid
    assert grid_fooled.sum() > wok_fooled.sum()                           # and strictly stronger here

    def loss(a, s):
        return F.cross_entropy(ncm(rotate_translate(x, a, s)), y, reduction="none").detach()

    survivors = ~grid_fooled
    assert (loss(grid_a, grid_s)[survivors] >= loss(chosen_a, chosen_s)[survivors] - 1e-5).all()
    assert accuracy(ncm, grid(x, y), y) <= accuracy(ncm, WorstOfK(ncm, k=k, seed=3)(x, y), y)


def test_worst_of_k_draws_fresh_reproducible_transforms(ncm, mnist):
    x, y = mnist[0][:50], mnist[1][:50]
    a = WorstOfK(ncm, k=5, max_angle=20.0, max_shift=2.0, seed=1)
    first, second = a(x, y), a(x, y)
    assert not torch.equal(first, second)                                 # fresh draws per call
    b = WorstOfK(ncm, k=5, max_angle=20.0, max_shift=2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(b(x, y), first) and torch.equal(b(x, y), second)   # same seed, same stream
    angles, shifts = WorstOfK(ncm, k=5, max_angle=20.0, max_shift=2.0, seed=1).draw(1000)
    assert angles.abs().max() <= 20 and shifts.abs().max() <= 2 and angles.abs().max() > 19
    assert a.eps == (20.0, 2.0) and a.name == "WorstOf5" and a.steps == 5
    # More tries are stronger (different draws, so compared over many images, not per image).
    xs, ys = mnist
    acc = [accuracy(ncm, WorstOfK(ncm, k=k, seed=0)(xs, ys), ys) for k in (1, 10)]
    assert acc[1] < acc[0]


def test_spatial_grid_with_eps_rescales_the_set(ncm, mnist):
    x, y = mnist[0][:20], mnist[1][:20]
    grid = SpatialGrid(ncm)
    half = grid.with_eps((15.0, 1.5))
    assert half is not grid and half.eps == (15.0, 1.5) and grid.eps == (30.0, 3.0)
    assert torch.allclose(half.transforms, grid.transforms / 2)
    zero = grid.with_eps((0.0, 0.0))
    assert torch.equal(zero(x, y), x)                                     # every transform is the identity
    rotation_only = SpatialGrid(ncm, rotations=[-10.0, 10.0], translations=[0.0])
    with pytest.raises(InvrobError, match="shifts are all 0"):
        rotation_only.with_eps((10.0, 2.0))
    assert rotation_only.with_eps((20.0, 0.0)).transforms[:, 0].tolist() == [-20.0, 20.0]
    # perturb with eps= is with_eps
    adv, fooled = grid.perturb(x, y, eps=(0.0, 0.0))
    assert torch.equal(adv, x) and not fooled[accuracy_mask(ncm, x, y)].any()


def accuracy_mask(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


# ------------------------------------------------------------------ joint attack

def test_joint_attack_threat_model(ncm, mnist):
    x, y = mnist[0][:100], mnist[1][:100]
    spatial = SpatialGrid(ncm, rotations=[-5.0, 0.0, 5.0], translations=[0.0])   # weak: leaves work for PGD
    pgd = PGD(ncm, 0.05, steps=10, generator=torch.Generator().manual_seed(0))
    joint = JointAttack(ncm, spatial, pgd)
    x_spatial, spatial_fooled = spatial.perturb(x, y)
    x_adv, fooled = joint.perturb(x, y)
    # The ε-ball is around the transformed image; samples the transform fools keep it.
    assert ((x_adv - x_spatial).flatten(1).abs().amax(1) <= 0.05 + 1e-6).all()
    assert torch.equal(x_adv[spatial_fooled], x_spatial[spatial_fooled])
    assert torch.equal(fooled, ncm(x_adv).argmax(1) != y)
    assert (fooled | ~spatial_fooled).all()
    assert accuracy(ncm, x_adv, y) < accuracy(ncm, x_spatial, y) - 0.1   # PGD adds real damage
    assert joint.eps == 0.05 and joint.norm == "spatial+linf" and joint.name == "SpatialGrid-3+PGD-10"
    assert joint.steps == 3 + 10
    # ε = 0: the spatial attack alone; with_eps changes only ε.
    assert torch.equal(joint.with_eps(0.0)(x, y), spatial(x, y))
    wider = joint.with_eps(0.1)
    assert wider.eps == 0.1 and wider.linf.eps == 0.1 and joint.linf.eps == 0.05 and wider.spatial is spatial
    # robust_accuracy sweeps ε at a fixed spatial set (its ε = 0 row is the clean accuracy).
    frame = robust_accuracy(ncm, x, y, [0.0, 0.05], attack=JointAttack(
        ncm, spatial, PGD(ncm, 0.05, steps=10, generator=torch.Generator().manual_seed(0))))
    assert frame["accuracy"].iloc[1] == pytest.approx(accuracy(ncm, x_adv, y), abs=1e-6)
    assert frame["norm"].iloc[0] == "spatial+linf"


# ------------------------------------------------------------------ the attack contract

def _attacks(model):
    return {
        "grid": SpatialGrid(model, rotations=[-20.0, 0.0, 20.0], translations=[-2.0, 2.0]),
        "worst-of-k": WorstOfK(model, k=6, seed=0),
        "joint": JointAttack(model, SpatialGrid(model, rotations=[-15.0, 15.0], translations=[0.0, 1.5]),
                             PGD(model, 0.05, steps=5, generator=torch.Generator().manual_seed(0))),
    }


@pytest.mark.parametrize("which", ["grid", "worst-of-k", "joint"])
def test_every_spatial_attack_follows_the_contract(ncm, mnist, which):
    x, y = mnist[0][:80], mnist[1][:80]
    attack = _attacks(ncm)[which]
    assert isinstance(attack, Attack) and attack.model is ncm
    ncm.train()
    x_adv = attack(x, y)
    assert ncm.training and all(p.requires_grad for p in ncm.parameters())    # state restored
    assert all(p.grad is None for p in ncm.parameters())
    ncm.eval()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(ncm, x_adv, y) < accuracy(ncm, x, y) - 0.1                # it really attacks
    adv, fooled = attack.perturb(x, y)
    with torch.no_grad():
        assert torch.equal(fooled, ncm(adv).argmax(1) != y)
    empty = attack(x[:0], y[:0])
    assert empty.shape == (0, *x.shape[1:])


@pytest.mark.parametrize("which", ["grid", "worst-of-k", "joint"])
def test_bad_batches_are_refused(which):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    attack = _attacks(model)[which]
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    bad = x.clone()
    bad[1, 0, 2, 3] = float("nan")
    with pytest.raises(InvrobError, match="NaN or infinite"):
        attack(bad, y)
    with pytest.raises(InvrobError, match=r"class labels in \[0, "):
        attack(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(InvrobError, match=r"\(N, C, H, W\)"):
        attack(x.flatten(1), y)
    with pytest.raises(InvrobError, match=r"\[0, 1\]"):
        attack(x * 3, y)


@pytest.mark.parametrize("make, message", [
    (lambda m: SpatialGrid(m, rotations=[200.0]), r"\[0, 180\]"),
    (lambda m: SpatialGrid(m, rotations=[]), "non-empty"),
    (lambda m: SpatialGrid(m, translations=[float("nan")]), "finite"),
    (lambda m: SpatialGrid(m, translations=np.zeros((3, 3))), r"\(M, 2\)"),
    (lambda m: SpatialGrid(m, transforms=np.zeros((3, 2))), r"\(T, 3\)"),
    (lambda m: SpatialGrid(m, rotations=[1.0], transforms=np.zeros((1, 3))), "not both"),
    (lambda m: SpatialGrid(m, batch_size=0), "batch_size"),
    (lambda m: SpatialGrid(m).with_eps(0.1), "pair"),
    (lambda m: WorstOfK(m, k=0), "k must be a positive integer"),
    (lambda m: WorstOfK(m, max_angle=181.0), r"\[0, 180\]"),
    (lambda m: WorstOfK(m, max_shift=-1.0), "max shift"),
    (lambda m: WorstOfK(m, seed=-1), "seed"),
    (lambda m: JointAttack(m, PGD(m, 0.1), PGD(m, 0.1)), "spatial must be a spatial attack"),
    (lambda m: JointAttack(m, WorstOfK(m), WorstOfK(m)), "linf must be"),
    (lambda m: JointAttack(m, WorstOfK(nn.Linear(2, 2)), PGD(m, 0.1)), "built on the model"),
])
def test_bad_settings_fail_first(make, message):
    with pytest.raises(InvrobError, match=message):
        make(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attacks_run_on_the_models_device(ncm, mnist):
    import copy
    x, y = mnist[0][:60], mnist[1][:60]
    gpu = copy.deepcopy(ncm).cuda()
    for which, attack in _attacks(gpu).items():
        x_adv = attack(x, y)
        assert x_adv.device == x.device, which          # back on the input's device
    cpu_grid = SpatialGrid(ncm, rotations=[-20.0, 0.0, 20.0], translations=[-2.0, 2.0])
    gpu_grid = SpatialGrid(gpu, rotations=[-20.0, 0.0, 20.0], translations=[-2.0, 2.0])
    assert (cpu_grid(x, y) - gpu_grid(x, y)).abs().max() < 1e-4
    # A CPU generator gives the same worst-of-k draws on any device.
    a = WorstOfK(ncm, k=3, seed=5).draw(10)
    b = WorstOfK(gpu, k=3, seed=5).draw(10, device="cuda")
    assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())


def test_spatial_attacks_run_with_float64_default_dtype():
    """The smoke profile computes in float64 (default dtype): the grid's loss table must not mix dtypes."""
    import torch
    from torch import nn

    from invrob.attacks import SpatialGrid, WorstOfK

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
        x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        for attack in (SpatialGrid(model, rotations=[-10.0, 0.0, 10.0], translations=[0.0, 1.0]),
                       WorstOfK(model, k=3, seed=0)):
            x_adv = attack(x, y)
            assert x_adv.dtype == torch.float64 and x_adv.shape == x.shape
    finally:
        torch.set_default_dtype(before)


# ------------------------------------------------------------------ survives: the accuracy without the full grid
class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, z):
        self.images += len(z)
        return self.model(z)


@pytest.mark.parametrize("make", [
    lambda m: SpatialGrid(m, batch_size=97),
    lambda m: SpatialGrid(m, rotations=np.linspace(-180, 180, 13), translations=[0.0], batch_size=50),
    lambda m: WorstOfK(m, k=6, seed=2, batch_size=64),
], ids=["engstrom", "rotations", "worst-of-k"])
def test_survives_is_the_accuracy_of_the_attack_at_a_fraction_of_the_cost(ncm, mnist, make):
    x, y = mnist[0][:60], mnist[1][:60]
    counted = Counting(ncm)
    full = make(counted)
    survivors = full.survives(x, y)
    cheap = counted.images
    counted.images = 0
    grid = make(counted)
    everything = grid.correct_grid(x, y).all(0) if hasattr(grid, "correct_grid") else None
    assert everything is None or torch.equal(survivors, everything)
    assert survivors.float().mean().item() == pytest.approx(accuracy(ncm, make(ncm)(x, y), y), abs=1e-12)
    if everything is not None:
        assert cheap < counted.images  # fooled points stopped being transformed
    assert survivors.dtype == torch.bool and survivors.shape == (60,)


def test_survives_checks_its_batch(ncm):
    with pytest.raises(InvrobError):
        SpatialGrid(ncm).survives(torch.full((2, 1, 28, 28), float("nan")), torch.zeros(2, dtype=torch.long))
