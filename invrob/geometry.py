"""The geometry of perturbations: are adversarial directions orthogonal to rotations?

Kamath et al. claim that ℓ∞ PGD perturbations and small-rotation perturbations
are "nearly orthogonal". Each measurement below comes with the null it must be
read against; a number without its null says nothing.

Subspaces (:func:`subspace_comparisons`). Principal cosines
(:func:`invrob.metrics.principal_cosines`) between the top-k PCA subspaces of
two families of flattened perturbations (rows of ``(n, D)`` arrays). The
legacy comparisons (those of ``experiments.subspace_table``, reproduced
exactly) are *adversarial vs rotation*, the positive control *adversarial vs
adversarial* (two disjoint halves), *random vs random* (uniform subspaces of
R^D) and *support-random vs rotation* (Gaussian noise on the pixels that vary).
These nulls are too weak: any image-like family shares the images' own
dominant directions, so it overlaps the rotation subspace whether or not a
model is involved. The data-matched nulls are therefore

- *image PCA vs rotation*: the principal directions of the images themselves;
- *translation vs rotation*: ±1–2 px shifts ``T_s x − x``
  (:func:`translation_perturbations`), another model-free nuisance family;

and the same comparisons after projecting the top ``remove`` principal
directions of the images (:func:`data_components`) out of every family
(:func:`project_out`): what adversarial and rotation perturbations share
*beyond* the data subspace, against what translations share beyond it.

Per point (:func:`tangent_cosines`). The rotation tangent ``t(x) = d/dφ R_φ x``
at φ = 0 (:func:`invrob.rotations.rotation_tangent`) is the direction a small
rotation moves ``x``. For each test point: ``|cos(δ_adv, t)|`` for the PGD
perturbation δ_adv (built as ``experiments.perturbations`` builds it),
``|cos(∇_x L, t)|`` for the loss gradient at the clean point, and the null
``|cos(u, t)|`` for a random ℓ∞ corner ``u ∈ {±1}`` on the pixels where ``x``
or ``t`` is nonzero — an ℓ∞ attack's perturbation is close to a corner of the
box, so a random corner on the same support is its fair chance level
(≈ √(2/π)/√m for m support pixels, not 0).

Directional derivatives (:func:`directional_derivatives`). ``|∇_x L · t̂|``
(t̂ = t/‖t‖₂): how fast the loss changes along the rotation orbit, per unit
ℓ2 distance, against ``|∇_x L · r̂|`` along a random unit direction on the same
support, and ‖∇_x L‖₂. A model whose loss is insensitive to small rotations
has ``along_tangent`` small compared with ``along_random``.

Conventions: perturbation statistics are NumPy float64 (as in
:mod:`invrob.metrics`); everything that runs the model works in the input's
dtype (which must match the model's), in batches, with the model in eval mode
and its parameters untouched (:func:`invrob.attacks.attack_mode`). Random draws
come from a CPU generator seeded with ``seed``: the same numbers on any device.
Points whose rotation tangent is all zero (a blank image: a rotation does not
move it) have no direction to compare with; they are dropped, and the frame's
``attrs["n_dropped"]`` says how many.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .attacks import PGD, attack_mode
from .attacks.pgd import _input_grad
from .errors import InvrobError, check_eps, check_positive_int
from .metrics import _as_matrix, check_model_inputs, model_device, principal_cosines, \
    random_subspace_cosines, top_components
from .rotations import rotation_tangent
from .transforms import translate

__all__ = ["translation_perturbations", "data_components", "project_out", "subspace_comparisons",
           "tangent_cosines", "directional_derivatives", "COMPARISONS"]

# The comparisons of subspace_comparisons, in the order of its rows (for each k).
COMPARISONS = ("adversarial vs rotation", "adversarial vs adversarial", "random vs random",
               "support-random vs rotation", "image PCA vs rotation", "translation vs rotation",
               "adversarial vs rotation (data PCs removed)",
               "translation vs rotation (data PCs removed)")

_BATCH = 1000  # images per forward/backward pass of the gradient computations


# ------------------------------------------------------------ perturbation families

def translation_perturbations(x: torch.Tensor, shifts: Sequence[int] = (-2, -1, 1, 2)) -> torch.Tensor:
    """Whole-pixel translation perturbations ``T_s x − x``, flattened.

    ``x``: images (N, C, H, W). Every image is shifted horizontally by each
    ``s`` in ``shifts`` (``(s, 0)``: ``s`` > 0 moves the content right) and
    vertically by each ``s`` (``(0, s)``: down), with zero padding
    (:func:`invrob.transforms.translate`, exact for whole pixels). Returns a
    tensor of shape ``(2 · len(shifts) · N, C·H·W)`` in ``x``'s dtype and on its
    device, in blocks of N rows: the horizontal shifts in the order given, then
    the vertical ones (row ``j·N + n`` is image ``n`` under the j-th shift).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise InvrobError(f"translation_perturbations expects float images of shape (N, C, H, W), got "
                          f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    try:
        values = list(shifts)
    except TypeError:
        raise InvrobError(f"shifts must be a list of nonzero whole numbers of pixels, got {shifts!r}") from None
    if not values or not all(isinstance(s, Real) and not isinstance(s, bool) and float(s).is_integer()
                             and s != 0 for s in values):
        raise InvrobError(f"shifts must be a non-empty list of nonzero whole numbers of pixels, "
                          f"got {shifts!r}")
    pairs = [(float(s), 0.0) for s in values] + [(0.0, float(s)) for s in values]
    n = len(x)
    stacked = x.repeat(len(pairs), 1, 1, 1)
    moves = torch.tensor(pairs, dtype=torch.float64, device=x.device).repeat_interleave(n, 0)
    return (translate(stacked, moves) - stacked).flatten(1)


def data_components(x, k: int) -> np.ndarray:
    """The top-k principal directions of the images ``x`` (centred), shape (k, D), orthonormal rows.

    ``x``: (N, C, H, W) or (N, D), tensor or array; PCA by
    :func:`invrob.metrics.top_components` (needs k ≤ min(N − 1, D)).
    """
    return top_components(x, k, center=True)[0]


def project_out(a, basis):
    """``a − (a Bᵀ) B``: the rows of ``a`` (n, D) with the span of ``basis`` (p, D) removed.

    ``basis`` must have orthonormal rows (e.g. :func:`data_components`); p = 0
    returns a copy. Works on NumPy arrays or tensors and returns the kind and
    floating dtype of ``a`` (NumPy integers become float64); the result is
    orthogonal to every row of ``basis``, and projecting twice equals once.
    """
    is_tensor = isinstance(a, torch.Tensor)
    arr = a.detach().cpu().numpy() if is_tensor else np.asarray(a)
    b = np.asarray(basis.detach().cpu() if isinstance(basis, torch.Tensor) else basis)
    if arr.ndim != 2 or b.ndim != 2:
        raise InvrobError(f"project_out needs a of shape (n, D) and basis of shape (p, D), "
                          f"got {arr.shape} and {b.shape}")
    if arr.shape[1] != b.shape[1]:
        raise InvrobError(f"a and basis must have the same dimension D, got {arr.shape[1]} and {b.shape[1]}")
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    arr, b = arr.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if not (np.isfinite(arr).all() and np.isfinite(b).all()):
        raise InvrobError("project_out: a and basis must be finite numbers")
    tol = 1e-4 if dtype == np.float32 else 1e-8
    gram_error = np.abs(b @ b.T - np.eye(len(b), dtype=dtype)).max(initial=0.0)
    if gram_error > tol:
        raise InvrobError(f"basis must have orthonormal rows (|B Bᵀ − I| is {gram_error:.3g}); "
                          "use data_components or a QR factor")
    out = arr - (arr @ b.T) @ b
    return torch.from_numpy(out).to(a.device) if is_tensor else out


# ------------------------------------------------------------ subspace comparisons

def _check_k(k: int, n: int, dim: int, name: str) -> None:
    """k principal components of n centred samples of dimension dim exist."""
    if k > min(n - 1, dim):
        raise InvrobError(f"k={k} is too large for {name}: {n} samples of dimension {dim} give at most "
                          f"{max(min(n - 1, dim), 0)} principal components")


def subspace_comparisons(adversarial, rotational, images, translational, ks: Sequence[int],
                         remove: int = 10, seed: int = 0) -> pd.DataFrame:
    """Principal cosines between top-k PCA subspaces of perturbation families and their nulls.

    ``adversarial`` (n, D): PGD perturbations, one per image, in the order of
    ``images`` (its two halves are the positive control); ``rotational`` and
    ``translational`` (·, D): small-rotation and translation perturbations;
    ``images`` (N, D) (or (N, C, H, W)): the clean points. Arrays or tensors.
    For every k in ``ks`` one row per comparison of :data:`COMPARISONS`:

    - ``adversarial vs rotation``, ``adversarial vs adversarial``, ``random vs
      random``, ``support-random vs rotation``: exactly as
      ``experiments.subspace_table`` computes them (same noise for the same seed);
    - ``image PCA vs rotation``, ``translation vs rotation``: the data-matched nulls;
    - ``... (data PCs removed)``: adversarial (resp. translation) vs rotation
      after :func:`project_out` of the top ``remove`` principal directions of
      ``images`` from both families (``remove = 0``: nothing removed).

    Columns: comparison, k, mean_cosine, max_cosine.
    """
    adv = _as_matrix(adversarial, "adversarial")
    rot = _as_matrix(rotational, "rotational")
    img = _as_matrix(images, "images")
    trans = _as_matrix(translational, "translational")
    dim = adv.shape[1]
    for name, m in (("rotational", rot), ("images", img), ("translational", trans)):
        if m.shape[1] != dim:
            raise InvrobError(f"{name} has dimension {m.shape[1]} but adversarial has {dim}: "
                              "all families must be flattened images of the same size")
    try:
        ks = list(ks)
    except TypeError:
        raise InvrobError(f"ks must be a list of positive integers, got {ks!r}") from None
    if not ks:
        raise InvrobError("ks is empty: give at least one subspace dimension k")
    for k in ks:
        check_positive_int(k, "k")
    if isinstance(remove, bool) or not isinstance(remove, Integral) or remove < 0:
        raise InvrobError(f"remove must be an integer >= 0 (data principal directions to remove), "
                          f"got {remove!r}")
    half = len(adv) // 2
    k_max = max(ks)
    for name, n in (("adversarial (each half)", min(half, len(adv) - half)), ("rotational", len(rot)),
                    ("images", len(img)), ("translational", len(trans))):
        _check_k(k_max, n, dim, name)
    if remove:
        if remove > min(len(img) - 1, dim):
            raise InvrobError(f"remove={remove} is too large: {len(img)} images of dimension {dim} give at "
                              f"most {min(len(img) - 1, dim)} principal directions")
        basis = data_components(img, int(remove))
        adv_r, rot_r, trans_r = project_out(adv, basis), project_out(rot, basis), project_out(trans, basis)
    else:
        adv_r, rot_r, trans_r = adv, rot, trans

    support = img.max(0) > img.min(0)  # pixels that vary over the points (subspace_table's)
    noise = np.random.default_rng(seed).standard_normal(img.shape) * support
    rows = []
    for k in ks:
        pairs = {"adversarial vs rotation": principal_cosines(adv, rot, k),
                 "adversarial vs adversarial": principal_cosines(adv[:half], adv[half:], k),
                 "random vs random": random_subspace_cosines(dim, k, seed=seed),
                 "support-random vs rotation": principal_cosines(noise, rot, k),
                 "image PCA vs rotation": principal_cosines(img, rot, k),
                 "translation vs rotation": principal_cosines(trans, rot, k),
                 "adversarial vs rotation (data PCs removed)": principal_cosines(adv_r, rot_r, k),
                 "translation vs rotation (data PCs removed)": principal_cosines(trans_r, rot_r, k)}
        rows += [{"comparison": name, "k": k, "mean_cosine": float(np.mean(c)),
                  "max_cosine": float(np.max(c))} for name, c in pairs.items()]
    return pd.DataFrame(rows, columns=["comparison", "k", "mean_cosine", "max_cosine"])


# ------------------------------------------------------------ per-point directions

def _check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """A model, finite images (N, C, H, W) in [0, 1] of the model's dtype, labels in range."""
    if not isinstance(model, nn.Module):
        raise InvrobError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        if param is not None and param.dtype != x.dtype:
            raise InvrobError(f"x is {x.dtype} but the model's parameters are {param.dtype}: "
                              "convert one of them (x.to(dtype) or model.to(dtype))")
    check_model_inputs(model, x, y, ndim=4, empty_ok=False)


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_x of each point's cross-entropy at ``x`` (shape of ``x``, on ``x``'s device), in batches.

    The gradient of the summed loss is the per-point gradient because points do
    not interact in eval mode. Eval mode and frozen parameters (attack_mode):
    no weight gradient is computed and no ``.grad`` is touched.
    """
    device = model_device(model)
    grads = []
    with attack_mode(model):
        for i in range(0, len(x), _BATCH):
            _, g = _input_grad(model, x[i:i + _BATCH].to(device), y[i:i + _BATCH].to(device), "ce")
            grads.append(g.to(x.device))
    return torch.cat(grads)


def _support(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per point, the pixels where the image or its rotation tangent is nonzero (bool, like x)."""
    return (x != 0) | (t != 0)


def _edges(x: torch.Tensor) -> torch.Tensor:
    """The image's edge pixels (bool, like ``x``): a nonzero central difference along the rows or
    the columns (zero padding outside the image)."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    rows = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
    cols = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    return (rows != 0) | (cols != 0)


def _abs_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Absolute cosine between the flattened rows of ``a`` and ``b``; NaN where either is zero."""
    a, b = a.flatten(1), b.flatten(1)
    denom = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(1).abs() / denom
    return torch.where(denom > 0, cos, torch.full_like(cos, float("nan")))


def _frame(columns: dict, keep: torch.Tensor) -> pd.DataFrame:
    """One row per point with a nonzero tangent; ``attrs["n_dropped"]`` counts the others."""
    index = keep.nonzero().squeeze(1)
    frame = pd.DataFrame({"point": index.numpy(),
                          **{name: v[index].double().numpy() for name, v in columns.items()}})
    frame.attrs["n_dropped"] = int((~keep).sum())
    return frame


def tangent_cosines(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    seed: int = 0) -> pd.DataFrame:
    """Per point, the absolute cosine of the rotation tangent with the adversarial perturbation, a random ℓ∞
    corner, and the loss gradient.

    - ``adversarial``: ``|cos(δ_adv, t)|``, δ_adv = ℓ∞ PGD at ``eps`` with
      ``steps`` steps minus ``x`` (``PGD(..., early_stop=False)`` with a CPU
      generator seeded by ``seed``, one batch: ``experiments.perturbations``'s
      attack); NaN where δ_adv = 0 (e.g. ε = 0);
    - ``random_sign``: ``|cos(u, t)|`` for the ℓ∞ attack that knows nothing:
      ``u = clip(x + ε·s, 0, 1) − x`` with ``s`` uniform ±1 on every pixel (seeded),
      i.e. a random corner of the same ε-ball, clipped to the image box as PGD's
      perturbation is — so the null pays, as δ_adv does, for mass on background
      pixels where ``t`` is 0 (a corner confined to the digit's pixels would not, and
      would make the adversarial cosine look small by comparison);
    - ``matched_support``: the matched null: the same random signs (the same draw as
      ``random_sign``), ±ε only on the pixels δ_adv touches (``δ_adv ≠ 0``), clipped to the box:
      a perturbation with the adversarial one's support and budget that knows nothing else.
      Where δ_adv touches every pixel it *is* ``random_sign``;
    - ``edge_sign``: the same signs, ±ε only on the image's edge pixels (those where the
      image's horizontal or vertical central difference is nonzero: the stroke edges, where
      the rotation tangent lives), clipped to the box — a null as edge-localised as ``t``;
    - ``gradient``: ``|cos(∇_x CE(f(x), y), t)|`` at the clean point.

    ``t = rotation_tangent(x)`` (cosines do not depend on its unit). Points
    whose tangent is all zero are dropped (``attrs["n_dropped"]``).
    Columns: point (index into ``x``), adversarial, random_sign, matched_support, edge_sign, gradient.
    """
    _check_inputs(model, x, y)
    eps = check_eps(eps)
    check_positive_int(steps, "steps")
    x = x.detach()
    t = rotation_tangent(x)
    keep = t.flatten(1).abs().amax(1).cpu() > 0
    attack = PGD(model, eps=eps, steps=steps, early_stop=False,
                 generator=torch.Generator().manual_seed(seed))
    device = model_device(model)
    delta = attack(x.to(device), y.to(device)).to(x.device) - x
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
    step = eps * (2 * signs - 1)
    u = (x + step).clamp(0.0, 1.0) - x
    matched = (x + torch.where(delta != 0, step, torch.zeros_like(step))).clamp(0.0, 1.0) - x
    edges = _edges(x)
    edge = (x + torch.where(edges, step, torch.zeros_like(step))).clamp(0.0, 1.0) - x
    grad = _loss_gradients(model, x, y)
    columns = {"adversarial": _abs_cos(delta, t), "random_sign": _abs_cos(u, t),
               "matched_support": _abs_cos(matched, t), "edge_sign": _abs_cos(edge, t),
               "gradient": _abs_cos(grad, t)}
    return _frame({name: v.cpu() for name, v in columns.items()}, keep)


def directional_derivatives(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            seed: int = 0) -> pd.DataFrame:
    """Per point, the loss's directional derivative along the rotation tangent and a random direction.

    With ``g = ∇_x CE(f(x), y)`` at the clean point and ``t̂ = t/‖t‖₂`` the unit
    rotation tangent: ``along_tangent = |g · t̂|`` (the rate of change of the loss
    per unit ℓ2 step along the rotation orbit), ``along_random = |g · r̂|`` for a
    unit direction ``r̂`` drawn uniformly (Gaussian, seeded) on the pixels where
    ``x`` or ``t`` is nonzero, and ``gradient_norm = ‖g‖₂`` (the largest possible
    rate, along ``g`` itself). Points whose tangent is all zero are dropped
    (``attrs["n_dropped"]``). Columns: point, along_tangent, along_random, gradient_norm.
    """
    _check_inputs(model, x, y)
    x = x.detach()
    t = rotation_tangent(x).flatten(1)
    t_norm = t.norm(dim=1)
    keep = (t_norm > 0).cpu()
    t_hat = t / torch.where(t_norm > 0, t_norm, torch.ones_like(t_norm))[:, None]
    r = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype).to(x.device)
    r = (r * _support(x, t.view_as(x))).flatten(1)
    r_hat = r / r.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)[:, None]
    g = _loss_gradients(model, x, y).flatten(1)
    columns = {"along_tangent": (g * t_hat).sum(1).abs(), "along_random": (g * r_hat).sum(1).abs(),
               "gradient_norm": g.norm(dim=1)}
    return _frame({name: v.cpu() for name, v in columns.items()}, keep)
