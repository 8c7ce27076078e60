"""Randomised smoothing over rotation angles: a classifier with a (heuristic) certified angle radius.

Given a base classifier ``f`` (a model returning logits), the smoothed classifier is

    g(x) = argmax_c  P_φ( f(R_φ x) = c ),    φ ~ N(0, σ²)  (default)  or  φ ~ U[−σ, σ],

with ``R_φ`` = :func:`invrob.rotations.rotate` (degrees, counter-clockwise).
``σ`` is in degrees: the standard deviation of the Gaussian, or the half-width
of the uniform range (Li et al., 2021 also smooth uniformly).

Certificate. The angle enters additively — for continuous images
``R_ψ R_φ = R_{φ+ψ}`` — so ``g(R_ψ x)`` is the one-dimensional smoothing of
``h(φ) = f(R_φ x)`` shifted by ψ, and Cohen et al.'s (2019) bound on the
shifted measure applies to the parameter (Fischer et al., 2020):
if ``P(f(R_φ x) = A) ≥ p_A > 1/2`` then ``g(R_ψ x) = A`` for every

- ``|ψ| < σ · Φ⁻¹(p_A)``  (Gaussian; Cohen's radius with ``p_B = 1 − p_A``),
- ``|ψ| < 2σ · (p_A − 1/2)``  (uniform: a shift by ψ moves at most ``|ψ| / 2σ`` of the mass).

**The certificate is heuristic with respect to interpolation.** On a pixel
grid ``R_ψ(R_φ x) ≠ R_{φ+ψ} x``: every :func:`~invrob.rotations.rotate`
resamples the image bilinearly, so the smoothed classifier evaluated at a
rotated *image* ``R_ψ x`` averages ``f`` over twice-interpolated images, not
over the orbit of ``x``. We do **not** bound that interpolation error (Fischer
et al. do, with an error bound E = 0.45 per pixel and a vignette that keeps
the disk inside the image); the radius is exact only for the idealised
continuous rotation. Every frame that :meth:`RotationSmoothing.certify`
returns says so in ``attrs["certificate"]``.

Procedure (Cohen et al., CERTIFY): ``n0`` draws pick the candidate class
``A`` (the most frequent prediction), ``n`` fresh draws count how often ``f``
says ``A``; ``p_A`` is bounded below by the one-sided Clopper–Pearson bound at
level ``alpha`` (:func:`clopper_pearson_lower`, from ``scipy.stats.beta``), and
the classifier abstains (prediction ``-1``) when that bound is ``≤ 1/2``.
With probability at least ``1 − alpha`` over the draws, a non-abstaining
answer is the smoothed classifier's answer and its radius is valid (for the
continuous rotation). :meth:`RotationSmoothing.predict` runs the same
procedure and returns only the class.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats
from torch import nn

from ..errors import InvrobError, check_choice, check_positive_int, check_theta
from ..metrics import check_model_inputs, eval_mode, model_device
from ..rotations import rotate

__all__ = ["RotationSmoothing", "clopper_pearson_lower", "certified_accuracy", "DISTRIBUTIONS",
           "HEURISTIC_NOTE"]

DISTRIBUTIONS = ("gaussian", "uniform")

#: The caveat every certificate frame carries in ``attrs["certificate"]``.
HEURISTIC_NOTE = ("heuristic: the radius assumes rotations compose exactly (R_a R_b = R_{a+b}); on a pixel "
                  "grid each rotation interpolates and that error is not bounded (unlike Fischer et al. 2020)")


def _check_alpha(alpha) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise InvrobError(f"alpha must be a probability in (0, 1), got {alpha!r}") from None
    if not 0.0 < value < 1.0:
        raise InvrobError(f"alpha must be in (0, 1), got {alpha!r}")
    return value


def clopper_pearson_lower(successes, trials: int, alpha: float):
    """One-sided ``1 − alpha`` Clopper–Pearson lower bound on a binomial proportion.

    ``beta.ppf(alpha, k, n − k + 1)`` (0 when ``k = 0``): the lower end of the
    two-sided exact interval at confidence ``1 − 2·alpha`` (Cohen et al.'s
    ``proportion_confint(k, n, alpha=2*alpha, method="beta")[0]``). Works on
    numbers and arrays of counts.
    """
    alpha = _check_alpha(alpha)
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise InvrobError(f"trials must be a positive integer, got {trials!r}")
    k = np.asarray(successes, dtype=np.float64)
    if not np.all(np.isfinite(k)) or np.any(k < 0) or np.any(k > trials):
        raise InvrobError(f"successes must lie in [0, trials={trials}], got {successes!r}")
    low = np.zeros_like(k)
    hit = k > 0
    low[hit] = scipy_stats.beta.ppf(alpha, k[hit], trials - k[hit] + 1)
    return float(low) if low.ndim == 0 else low


class RotationSmoothing:
    """The rotation-smoothed classifier ``g`` of a base model (see the module docstring).

    Args:
        model: base classifier: images in [0, 1] -> logits (run in eval mode, no grad).
        sigma: degrees in [0, 180]: the Gaussian's standard deviation, or the
            uniform range's half-width (``sigma = 0``: no smoothing, radius 0).
        n0: draws that pick the candidate class.
        n: draws that bound its probability.
        alpha: failure probability of each certificate, in (0, 1).
        batch_size: rotated images per forward pass.
        generator: an int seed (default 0: every call starts a fresh generator
            from it, so the same inputs always get the same answer — a fixed
            Monte-Carlo classifier), a ``torch.Generator`` (its state advances
            from call to call) or None (torch's global RNG). Angles are drawn on
            the CPU in float64.
        distribution: ``"gaussian"`` (default; Fischer et al.) or ``"uniform"``.
    """

    def __init__(self, model: nn.Module, sigma: float, n0: int = 100, n: int = 1000, alpha: float = 0.001,
                 batch_size: int = 1000, generator: int | torch.Generator | None = 0, *,
                 distribution: str = "gaussian"):
        self.model = model
        self.sigma = check_theta(sigma, "sigma")
        self.distribution = check_choice(distribution, DISTRIBUTIONS, "distribution")
        self.n0 = check_positive_int(n0, "n0")
        self.n = check_positive_int(n, "n")
        self.alpha = _check_alpha(alpha)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if not (generator is None or isinstance(generator, torch.Generator)
                or (isinstance(generator, (int, np.integer)) and not isinstance(generator, bool))):
            raise InvrobError(f"generator must be an int seed, a torch.Generator or None, got {generator!r}")
        self.generator = generator

    # ------------------------------------------------------------------ sampling
    def _generator(self) -> torch.Generator | None:
        if isinstance(self.generator, (int, np.integer)):
            return torch.Generator().manual_seed(int(self.generator))
        return self.generator

    def sample_angles(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` angles (degrees, float64, CPU) from the smoothing distribution."""
        if self.distribution == "gaussian":
            return torch.randn(count, generator=generator, dtype=torch.float64) * self.sigma
        return (2.0 * torch.rand(count, generator=generator, dtype=torch.float64) - 1.0) * self.sigma

    @torch.no_grad()
    def counts(self, x: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(N, C)`` counts of the base model's predictions on ``num`` random rotations of each image."""
        check_positive_int(num, "num")
        device = model_device(self.model)
        point = torch.arange(len(x)).repeat_interleave(num)
        angles = self.sample_angles(len(point), generator)
        preds, classes = [], None
        with eval_mode(self.model):
            for i in range(0, len(point), self.batch_size):
                idx = point[i:i + self.batch_size]
                images = rotate(x[idx.to(x.device)].to(device), angles[i:i + self.batch_size].to(device))
                logits = self.model(images)
                classes = logits.shape[1]
                preds.append(logits.argmax(1).cpu())
        flat = point * classes + torch.cat(preds)
        return torch.bincount(flat, minlength=len(x) * classes).view(len(x), classes)

    # ------------------------------------------------------------------ certify / predict
    def radius(self, p_lower):
        """The certified angle radius (degrees) for a lower bound ``p_lower`` > 1/2 on ``p_A``."""
        p = np.asarray(p_lower, dtype=np.float64)
        if self.distribution == "gaussian":
            r = self.sigma * scipy_stats.norm.ppf(p)
        else:
            r = 2.0 * self.sigma * (p - 0.5)
        r = np.where(p > 0.5, r, np.nan)
        return float(r) if r.ndim == 0 else r

    def _check(self, x, y=None) -> None:
        check_model_inputs(self.model, x, y, ndim=4, empty_ok=False)

    def _run(self, x: torch.Tensor):
        generator = self._generator()
        candidate = self.counts(x, self.n0, generator).argmax(1)
        counts = self.counts(x, self.n, generator)
        hits = counts.gather(1, candidate[:, None]).squeeze(1).numpy()
        p_lower = np.atleast_1d(clopper_pearson_lower(hits, self.n, self.alpha))
        abstain = p_lower <= 0.5
        prediction = np.where(abstain, -1, candidate.numpy())
        return prediction, p_lower, hits, abstain

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Smoothed predictions for images ``x`` (N, C, H, W) in [0, 1]: class, or ``-1`` (abstain).

        Cohen et al.'s two-sample procedure (``n0`` draws to pick, ``n`` draws
        to bound ``p_A`` at level ``alpha``; abstain when the bound is ≤ 1/2),
        i.e. :meth:`certify` without the radius. (Cohen et al.'s own PREDICT
        instead tests the top two counts of one sample against each other; the
        rule here abstains more often and agrees with :meth:`certify`.)
        Returned on ``x``'s device.
        """
        self._check(x)
        prediction = self._run(x)[0]
        return torch.as_tensor(prediction, dtype=torch.long, device=x.device)

    def certify(self, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
        """Prediction and certified angle radius (degrees) for each image.

        Returns a tidy frame: ``point`` (index in ``x``), ``label``, ``prediction``
        (``-1`` = abstain), ``radius`` (degrees; NaN when abstaining), ``abstain``,
        ``correct`` (prediction == label, False when abstaining), ``p_lower``
        (Clopper–Pearson lower bound on ``p_A``) and ``count`` (draws of the
        ``n`` that gave the candidate class). ``attrs`` holds ``sigma``,
        ``distribution``, ``n0``, ``n``, ``alpha`` and ``certificate`` — the
        statement that the radius is **heuristic** with respect to interpolation
        (:data:`HEURISTIC_NOTE`).
        """
        self._check(x, y)
        prediction, p_lower, hits, abstain = self._run(x)
        labels = y.detach().cpu().numpy().astype(np.int64)
        frame = pd.DataFrame({
            "point": np.arange(len(x)), "label": labels, "prediction": prediction.astype(np.int64),
            "radius": np.atleast_1d(self.radius(p_lower)), "abstain": abstain,
            "correct": (prediction == labels) & ~abstain, "p_lower": p_lower, "count": hits.astype(np.int64),
        })
        frame.attrs.update(sigma=self.sigma, distribution=self.distribution, n0=self.n0, n=self.n,
                           alpha=self.alpha, certificate=HEURISTIC_NOTE, units="degrees")
        return frame


def certified_accuracy(frame: pd.DataFrame, radii) -> pd.DataFrame:
    """Fraction of all points certified correct at each radius: correct, not abstained, radius ≥ r.

    ``frame``: :meth:`RotationSmoothing.certify`'s output; ``radii``: a number
    or a list of degrees ≥ 0. Returns a frame with columns ``radius`` and
    ``certified_accuracy`` (and the frame's ``attrs``, with its heuristic caveat).
    """
    missing = {"radius", "correct", "abstain"} - set(getattr(frame, "columns", ()))
    if missing:
        raise InvrobError(f"frame must be RotationSmoothing.certify's output; missing columns: "
                          f"{', '.join(sorted(missing))}")
    try:
        values = np.asarray(radii, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvrobError(f"radii must be numbers of degrees >= 0, got {radii!r}") from None
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvrobError(f"radii must be finite numbers of degrees >= 0, got {radii!r}")
    ok = frame["correct"].to_numpy(bool) & ~frame["abstain"].to_numpy(bool)
    radius = frame["radius"].to_numpy(np.float64)
    total = max(len(frame), 1)
    acc = [float((ok & (radius >= r)).sum()) / total for r in values]
    out = pd.DataFrame({"radius": values, "certified_accuracy": acc})
    out.attrs.update(frame.attrs)
    return out
