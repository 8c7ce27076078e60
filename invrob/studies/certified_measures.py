"""Chapter 07's measurements of one model and of every model (notebook 07), for
:mod:`~invrob.studies.certified`.

:func:`measure_model`: clean and rotated accuracy, the rotation Lie derivative at φ = 0 of the
logits and of the softmax (:func:`lie_norms`), and the invariance and layer-wise equivariance
errors at :data:`ANGLES`; :func:`invariance_measures` runs it over the reused models into the
measures and layers tables. :func:`certify` certifies the rotation-smoothed classifier
(:func:`smoothing`) point by point and per radius; :func:`autoattack` attacks chapters 03 and
05's models point by point; :func:`certificate_note` says what the certificates rest on.
"""
from __future__ import annotations

from .certified_sources import TAGS, sources, tags_of
from .rules import autoattack_of

ROTATED = (30, 180)       # test rotation ranges φ of the rotated-accuracy columns (degrees)
ANGLES = (90, 15)         # angles of the invariance / equivariance errors (degrees)
MEASURES = {  # column of the measures table → what it measures
    "clean": "clean accuracy",
    "rotated_30": "accuracy, each image rotated at random in [−30°, 30°]",
    "rotated_180": "accuracy, each image rotated at random in [−180°, 180°]",
    "lie_logits": "mean ‖d logits/dφ‖ at φ = 0 (per degree)",
    "lie_softmax": "mean over classes of |d softmax/dφ| at φ = 0 (per degree; Gruver et al.'s metric)",
    "invariance_90": "relative change of the logits under a 90° turn",
    "invariance_15": "relative change of the logits under a 15° turn",
}


def lie_norms(model, x, batch_size: int = 256) -> tuple:
    """Per input: ‖d logits/dφ‖₂ and the mean over classes of |d softmax/dφ| at φ = 0 (per degree).

    The softmax's derivative from the logits' (chain rule): ``dp = p ⊙ (dz − ⟨p, dz⟩)``.
    Returns two 1-D CPU tensors (float64)."""
    import torch

    from ..measures import lie_derivative
    from ..metrics import eval_mode, model_device

    dz = lie_derivative(model, x, batch_size=batch_size).double().cpu()
    with torch.no_grad(), eval_mode(model):
        z = torch.cat([model(x[i:i + batch_size].to(model_device(model))).double().cpu()
                       for i in range(0, len(x), batch_size)])
    p = torch.softmax(z, dim=1)
    dp = p * (dz - (p * dz).sum(1, keepdim=True))
    return dz.norm(dim=1), dp.abs().mean(1)


def measure_model(model, x, y, seed: int = 0) -> tuple[dict, "pandas.DataFrame"]:
    """One model's row of the measures table (without tags) and its layer-wise equivariance errors."""
    from ..measures import equivariance_error
    from ..metrics import accuracy
    from ..rotations import rotated_accuracy

    rotated = rotated_accuracy(model, x, y, list(ROTATED), seed=seed).set_index("theta")["accuracy"]
    lie, lie_soft = lie_norms(model, x)
    layers = equivariance_error(model, x, list(ANGLES))
    order = {name: i + 1 for i, name in enumerate(dict.fromkeys(layers["layer"]))}
    layers.insert(1, "depth", layers["layer"].map(order))
    logits = layers[layers["layer"] == "logits"].set_index("angle")["error"]
    row = dict(clean=accuracy(model, x, y), **{f"rotated_{p}": float(rotated[float(p)]) for p in ROTATED},
               lie_logits=float(lie.mean()), lie_softmax=float(lie_soft.mean()),
               **{f"invariance_{a}": float(logits[float(a)]) for a in ANGLES}, n=len(x))
    return row, layers


def invariance_measures(trained, x, y, settings, progress: bool = False):
    """``(measures, layers)``: :func:`measure_model` for every model on the first ``test_size`` points."""
    import pandas as pd
    from tqdm import tqdm

    from .. import experiments as ex

    source_of = sources(settings)
    x, y = ex.subset(x, y, settings.test_size)
    rows, frames = [], []
    for config, model in tqdm(trained, desc="Lie derivative, equivariance", disable=not progress):
        row, layers = measure_model(model, x, y)
        tags = tags_of(config, source_of)
        rows.append({**tags, **row})
        frames.append(layers.drop(columns="error_max").assign(**tags))
    layers = pd.concat(frames, ignore_index=True)
    return pd.DataFrame(rows), layers[[*TAGS, "layer", "depth", "module", "kind", "angle", "error", "n"]]


def smoothing(model, settings):
    """The chapter's rotation-smoothed classifier of ``model`` (:class:`invrob.measures.RotationSmoothing`):
    Gaussian over the angle, σ, n0, n, alpha of ``settings``; generator seed 0 for every model (the
    same angle draws: common random numbers)."""
    from ..measures import RotationSmoothing

    S = settings
    return RotationSmoothing(model, S.sigma, n0=S.n0, n=S.n, alpha=S.alpha, batch_size=S.smoothing_batch,
                             generator=0)


def certify(trained, x, y, settings, progress: bool = False):
    """``(certificates, certified)``: per model and point the smoothed prediction and its
    certified radius (first ``certify_size`` test points), and per model and radius of
    ``radii`` the certified accuracy and the share of points abstained on."""
    import pandas as pd
    from tqdm import tqdm

    from .. import experiments as ex
    from ..measures import certified_accuracy

    S = settings
    source_of = sources(S)
    x, y = ex.subset(x, y, S.certify_size)
    points, curves = [], []
    for config, model in tqdm(trained, desc="certification", disable=not progress):
        tags = tags_of(config, source_of)
        frame = smoothing(model, S).certify(x, y)
        curve = certified_accuracy(frame, S.radii).assign(abstain=float(frame["abstain"].mean()), n=len(frame),
                                                          sigma=S.sigma)
        points.append(frame.drop(columns="count").assign(**tags))
        curves.append(curve.assign(**tags))
    certificates = pd.concat(points, ignore_index=True)
    certified = pd.concat(curves, ignore_index=True)
    return (certificates[[*TAGS, "point", "label", "prediction", "radius", "correct", "abstain", "p_lower"]],
            certified[[*TAGS, "radius", "certified_accuracy", "abstain", "n", "sigma"]])


def autoattack(trained, x, y, settings, progress: bool = False):
    """AutoAttack (the profile's, :func:`autoattack_of`) point by point on the first ``attack_size``
    test points: every model of chapters 03 and 05 at ``eps_attack`` and at its own training ε
    (what its quality gate reads). Columns: :data:`TAGS`, eps, point, robust, attack."""
    import pandas as pd
    from tqdm import tqdm

    from .. import experiments as ex

    S = settings
    source_of = sources(S)
    x, y = ex.subset(x, y, S.attack_size)
    frames = []
    for config, model in tqdm(trained, desc="AutoAttack", disable=not progress):
        tags = tags_of(config, source_of)
        if not set(tags["source"].split("+")) & {"adversarial", "tradeoff"}:
            continue
        grid = sorted({float(S.eps_attack), *([config.eps] if config.eps > 0 else [])})
        rows = ex.robust_points_table([(config, model)], x, y, grid, attack=autoattack_of(S))
        frames.append(rows.assign(recipe=tags["recipe"], source=tags["source"]))
    columns = [*TAGS, "eps", "point", "robust", "attack"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def certificate_note(settings) -> str:
    """The Monte-Carlo sizes and the caveat, in one sentence for the chapter."""
    from scipy import stats as scipy_stats

    from ..measures import HEURISTIC_NOTE

    S = settings
    top = S.sigma * scipy_stats.norm.ppf(S.alpha ** (1 / S.n))
    return (f"Smoothing: φ ~ N(0, ({S.sigma:g}°)²); {S.n0} draws pick the class, {S.n} more bound its probability "
            f"(one-sided Clopper–Pearson, α = {S.alpha:g}), on {S.certify_size or 'all'} test points; "
            f"the largest radius a certificate can reach with {S.n} draws is {top:.1f}°. The certificate is "
            f"{HEURISTIC_NOTE}.")
