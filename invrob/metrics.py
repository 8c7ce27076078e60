"""Accuracy and predictions, bootstrap intervals, and subspace angles.

Everything that runs a model does so in eval mode under ``torch.no_grad`` and
puts the model back into the mode it was in. The statistics (``bootstrap_ci``,
``principal_cosines``, ``random_subspace_cosines``, ``top_components``) work on
NumPy arrays or tensors and return NumPy values.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .errors import InvrobError, check_images, check_labels, check_positive_int


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """The model's number of outputs (classes): one forward pass of ``x[:1]`` in eval mode."""
    with eval_mode(model):
        return int(model(x[:1].to(model_device(model))).shape[1])


def check_dtype(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """One :class:`~invrob.errors.InvrobError` line when ``x``'s float dtype differs from the model's
    (float64 images would reach torch's raw "Input type (double) and bias type (float)" error, and
    float16 images would run silently against a float32 model)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        raise InvrobError(f"{name} is {str(x.dtype).removeprefix('torch.')} but the model's weights are "
                          f"{str(dtype).removeprefix('torch.')}: convert one to the other "
                          f"(e.g. x.to({str(dtype)}) or model.to({str(x.dtype)}))")


def check_model_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                       **rules) -> None:
    """:func:`~invrob.errors.check_images` with the label bound taken from the model.

    Labels must lie in ``[0, C)`` with ``C`` the model's output size, found by one
    forward pass of a single image (only when there are labels to check, and only
    after ``x`` itself passed, so a malformed batch never reaches the model).
    ``rules`` go to ``check_images`` (``ndim``, ``box``, ``empty_ok``).
    """
    check_images(x, y, **rules)
    check_dtype(model, x)
    if y is not None and len(y):
        check_labels(y, num_classes(model, x))


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int | None]:
    """Predicted labels on ``x``'s device, and the number of classes (None for empty ``x``)."""
    check_images(x, box=False)  # any finite features: predict serves non-image models too
    check_dtype(model, x)
    check_positive_int(batch_size, "batch_size")
    device = model_device(model)
    out, classes = [], None
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size].to(device))
            classes = logits.shape[1]
            out.append(logits.argmax(1).to(x.device))
    pred = torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=x.device)
    return pred, classes


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels for ``x`` (returned on ``x``'s device)."""
    return _predict(model, x, batch_size)[0]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` classified as ``y`` (labels must lie in [0, number of outputs))."""
    check_images(x, y, box=False)
    pred, classes = _predict(model, x, batch_size)
    check_labels(y, classes)
    return (pred == y.to(x.device)).float().mean().item()


# ------------------------------------------------------------ confidence intervals

def bootstrap_ci(values, statistic=np.mean, n_boot: int = 2000, ci: float = 0.95,
                 seed: int = 0, groups=None) -> tuple[float, float, float]:
    """Percentile bootstrap: ``(estimate, low, high)`` for ``statistic(values)``.

    ``groups`` (one label per value, e.g. the training seed): a two-level
    bootstrap — draw the groups with replacement, then each drawn group's values
    with replacement — so the interval includes the variation between groups
    (training variance), which a bootstrap over the pooled values ignores.

    ``values`` is 1-D (e.g. per-image 0/1 correctness, or per-seed accuracies).
    Draw ``n_boot`` resamples of size n with replacement, apply ``statistic``
    to each, and return the ``(1 - ci)/2`` and ``(1 + ci)/2`` quantiles of those
    replicates around the plain estimate ``statistic(values)``.

    Vectorised: the resample indices are one ``(chunk, n)`` integer array per
    chunk (chunks bound memory to ~4M entries) and ``statistic`` is called with
    ``axis=1`` (NumPy reductions such as ``np.mean`` / ``np.median`` accept it);
    a statistic without an ``axis`` argument falls back to a row-by-row apply.
    """
    values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values,
                        dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InvrobError(f"bootstrap_ci needs a non-empty 1-D array of values, got shape {values.shape}")
    check_positive_int(n_boot, "n_boot")
    if not 0.0 < float(ci) < 1.0:
        raise InvrobError(f"ci must be a confidence level strictly between 0 and 1, got {ci!r}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        labels = np.asarray(groups).reshape(-1)
        if labels.shape != values.shape:
            raise InvrobError(f"groups must have one label per value ({values.size}), got shape {labels.shape}")
        members = [values[labels == g] for g in dict.fromkeys(labels.tolist())]
        replicates = np.empty(n_boot)
        for r in range(n_boot):
            drawn = [members[i] for i in rng.integers(0, len(members), size=len(members))]
            replicates[r] = statistic(np.concatenate([m[rng.integers(0, len(m), size=len(m))] for m in drawn]))
        low, high = np.quantile(replicates, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
        return float(statistic(values)), float(low), float(high)
    n = values.size
    chunk = max(1, min(n_boot, (1 << 22) // n))
    replicates = []
    for start in range(0, n_boot, chunk):
        samples = values[rng.integers(0, n, size=(min(chunk, n_boot - start), n))]
        try:
            stats = np.asarray(statistic(samples, axis=1), dtype=np.float64)
        except TypeError:  # a statistic without an ``axis`` keyword
            stats = np.apply_along_axis(statistic, 1, samples).astype(np.float64)
        replicates.append(stats.reshape(-1))
    replicates = np.concatenate(replicates)
    low, high = np.quantile(replicates, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return float(statistic(values)), float(low), float(high)


# ------------------------------------------------------------ subspaces of perturbations

def _as_matrix(a, name: str) -> np.ndarray:
    """(n_samples, dim) float64 matrix; samples of any shape are flattened."""
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    if a.ndim < 2:
        raise InvrobError(f"{name} must be a matrix of shape (n_samples, dim), got shape {a.shape}")
    a = a.reshape(len(a), -1)
    if not np.isfinite(a).all():
        raise InvrobError(f"{name} contains NaN or infinite values")
    return a


def _pca(a: np.ndarray, k: int, center: bool, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-k principal directions (k, dim) and all squared singular values."""
    check_positive_int(k, "k")
    n, dim = a.shape
    limit = min(n - 1 if center else n, dim)
    if k > limit:
        raise InvrobError(f"k={k} principal components need at least {k + int(center)} samples "
                          f"and dimension >= {k}; {name} has {n} samples of dimension {dim}")
    if center:
        a = a - a.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    return vt[:k], s ** 2


def top_components(a, k: int, center: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of the rows of ``a`` and their explained variance ratios.

    ``a`` is (n_samples, dim) (or (n_samples, C, H, W): flattened). PCA by SVD
    of the centred matrix ``A - mean`` (``center=False``: of ``A`` itself, i.e.
    directions of largest second moment). Returns ``components`` (k, dim),
    orthonormal rows in decreasing order of variance (reshape a row to
    (H, W) to plot it as an image), and ``ratio`` (k,): the fraction of the
    total variance along each direction, ``s_i^2 / sum_j s_j^2``.
    """
    a = _as_matrix(a, "a")
    components, s2 = _pca(a, k, center, "a")
    total = s2.sum()
    ratio = s2[:k] / total if total > 0 else np.zeros(k)
    return components, ratio


def _subspace_cosines(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between span(rows of u) and span(rows of v).

    For orthonormal rows these are the singular values of ``u v^T`` (Björck &
    Golub), sorted descending and clipped to [0, 1] against rounding.
    """
    return np.clip(np.linalg.svd(u @ np.swapaxes(v, -1, -2), compute_uv=False), 0.0, 1.0)


def principal_cosines(a, b, k: int, center: bool = True) -> np.ndarray:
    """Cosines of the principal angles between the top-k PCA subspaces of ``a`` and ``b``.

    ``a`` (n_a, dim) and ``b`` (n_b, dim) hold perturbations as rows, e.g.
    ``x_adv - x`` and ``rotate(x, φ) - x`` flattened. Each matrix is centred
    (standard PCA; ``center=False`` keeps the mean perturbation in) and its top-k
    right singular vectors span a k-dim subspace ``U_a``, ``U_b``. The cosines of
    the principal angles between the subspaces are the singular values of
    ``U_a U_b^T``: descending, length k, in [0, 1]; all 1 means the same
    subspace, all 0 orthogonal ones. Invariant to any orthogonal change of
    basis of R^dim applied to both.
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InvrobError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    ua, _ = _pca(a, k, center, "a")
    ub, _ = _pca(b, k, center, "b")
    return _subspace_cosines(ua, ub)


def random_subspace_cosines(dim: int, k: int, n_trials: int = 20, seed: int = 0) -> np.ndarray:
    """Mean principal cosines (length k, descending) between two random k-dim subspaces of R^dim.

    The baseline for :func:`principal_cosines`: bases are the Q factors of
    Gaussian (dim, k) matrices, i.e. subspaces uniform on the Grassmannian.
    In high dimension random subspaces are nearly orthogonal: for k = 1 the
    mean cosine is ``Γ(dim/2) / (√π Γ((dim+1)/2)) ≈ √(2/(π dim))`` (0.028 for
    dim = 784), and ``E[Σ cos²] = k²/dim`` for every k.
    """
    check_positive_int(dim, "dim")
    check_positive_int(k, "k")
    check_positive_int(n_trials, "n_trials")
    if k > dim:
        raise InvrobError(f"k must be <= dim, got k={k} and dim={dim}")
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((n_trials, dim, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n_trials, dim, k)))
    cosines = _subspace_cosines(np.swapaxes(q1, 1, 2), np.swapaxes(q2, 1, 2))  # (n_trials, k)
    return cosines.mean(0)
