"""Chapter 07's claims (notebook 07), for :mod:`~invrob.studies.certified`: each
:class:`~invrob.studies.base.Claim` with the function that judges it and its rule text.

(a) adversarial training lowers certified rotation robustness progressively (NeurIPS 2021 (b),
read on certificates at :data:`CLAIM_RADIUS`); (b) rotation augmentation costs ℓ∞ robustness
while it buys certified rotation robustness (NeurIPS 2021 (a)); (c, ours) the Lie derivative
orders the models as rotated accuracy does, by Spearman's ρ with a permutation test
(:func:`spearman`, :func:`permutation_p`, :func:`rank_agreement`). The per-model certified
accuracy the claims read (``_certified_per_seed``) also feeds the chapter's Pareto figure.
"""
from __future__ import annotations

from .base import NOT_RUN, Claim
from .certified_sources import TAGS
from .rules import ALPHA, PROGRESSIVE_RULE, change_over_grid, combine, label, models_in, ranges_left_out
from .tradeoff_claims import ROTATION_REACH

CLAIM_RADIUS = 15.0       # the certified radius the claims read (degrees), fixed before the first run
FLOOR = 0.05              # a measurement whose starting mean is below 5% has no room to drop
MIN_FAMILIES = 4          # an exact permutation test of a rank correlation needs 4! > 1/0.05 orderings


def _certified_points(certificates, radius: float = CLAIM_RADIUS):
    """The certificates with ``robust``: certified correct at ``radius`` (not abstained, radius ≥ r)."""
    import numpy as np

    frame = certificates.copy()
    ok = frame["correct"].astype(bool).to_numpy() & ~frame["abstain"].astype(bool).to_numpy()
    frame["robust"] = (ok & (np.nan_to_num(frame["radius"].to_numpy(float), nan=-1.0) >= radius)).astype(int)
    return frame


def _certified_per_seed(certificates, radius: float = CLAIM_RADIUS):
    """Per model: certified accuracy at ``radius`` (column ``certified``)."""
    points = _certified_points(certificates, radius)
    return points.groupby(list(TAGS), sort=False)["robust"].mean().rename("certified").reset_index()


def _attack_eps(robust_points) -> float:
    """The ε every chapter-05 model was attacked at: the one the natural recipe has (its own ε is 0)."""
    natural = robust_points[(robust_points["eps_train"] == 0) & robust_points["source"].str.contains("tradeoff")]
    eps = natural["eps"] if len(natural) else robust_points["eps"]
    return float(eps.min())


PAPER_EPS = 0.3  # the largest ℓ∞ training budget of the paper's MNIST experiments


def _floor_note(rows, level: str, value: str) -> str | None:
    start = rows[rows[level] == rows[level].min()][value].mean()
    return None if start >= FLOOR else f"starts at {start:.1%}, below the {FLOOR:.0%} floor: no room to drop"


def _adversarial_shrinks(tables) -> tuple[str, str]:
    cert = tables["certificates"]
    cert = cert[cert["source"].str.contains("adversarial")]
    points = _certified_points(cert)
    per_seed = _certified_per_seed(cert)
    parts, verdicts = [], []
    for m in models_in(per_seed):
        rows = per_seed[per_seed["model"] == m]
        if rows["eps_train"].nunique() < 2:
            continue
        text, verdict, lo, hi = change_over_grid(rows, "eps_train", "certified", "decrease", 0.1, " of ε",
                                                 points=points[points["model"] == m])
        floor = _floor_note(rows, "eps_train", "certified")
        if floor:
            text, verdict = f"{text}; the natural model {floor}", "inconclusive"
        verdicts.append(verdict)
        parts.append(f"{label(m)}, ε = {lo:g} → {hi:g}: {text}")
    if not parts:
        return "no adversarially trained models (two ε or more) in this run", NOT_RUN
    top = float(per_seed["eps_train"].max())
    if top < PAPER_EPS - 1e-9:  # the cpu profile certifies chapter 03's models up to ε = 0.2
        parts.append(f"training ε above {top:g} (the paper's MNIST grid reaches {PAPER_EPS:g}): not in this run")
    return (f"certified rotation accuracy at r = {CLAIM_RADIUS:g}° of the rotation-smoothed classifier, "
            f"paired by seed and test point: " + "; ".join(parts), combine(verdicts))


def _rotation_costs(tables) -> tuple[str, str]:
    def chosen(frame):
        recipe = frame["recipe"].astype(str)
        return frame[frame["source"].str.contains("tradeoff")
                     & ((recipe == "natural") | recipe.str.startswith("rotation"))]

    cert = chosen(tables["certificates"])
    attacked = chosen(tables["robust_points"])
    if len(attacked):
        attacked = attacked[attacked["eps"] == _attack_eps(tables["robust_points"])]
    parts, verdicts = [], []
    for m in models_in(cert):
        c_rows, a_rows = cert[cert["model"] == m], attacked[attacked["model"] == m] if len(attacked) else attacked
        if c_rows["theta"].nunique() < 2 or len(a_rows) == 0 or a_rows["theta"].nunique() < 2:
            continue
        eps = float(a_rows["eps"].iloc[0])
        c_seed = _certified_per_seed(c_rows)
        a_seed = a_rows.groupby(list(TAGS), sort=False)["robust"].mean().rename("autoattack").reset_index()
        a_text, a_verdict, lo, hi = change_over_grid(a_seed, "theta", "autoattack", "decrease", 45, "°",
                                                     points=a_rows)
        c_text, c_verdict, _, _ = change_over_grid(c_seed, "theta", "certified", "increase", 45, "°",
                                                   points=_certified_points(c_rows))
        floor = _floor_note(a_seed, "theta", "autoattack")
        if floor:
            verdict = "inconclusive"
            reading = f"the natural recipe's AutoAttack-grade accuracy {floor}"
        elif c_verdict != "agree":
            verdict = "inconclusive"
            reading = "rotation augmentation is not shown to raise certified rotation accuracy"
        else:
            verdict = {"agree": "agree", "disagree": "disagree"}.get(a_verdict, "inconclusive")
            reading = {"agree": "certified rotation accuracy rises and ℓ∞ robustness falls",
                       "disagree": "certified rotation accuracy rises and so does ℓ∞ robustness"}.get(
                a_verdict, "certified rotation accuracy rises; the ℓ∞ change is not shown")
        verdicts.append(verdict)
        parts.append(f"{label(m)}, θ = {lo:g}° → {hi:g}°: AutoAttack-grade accuracy at ε = {eps:g} {a_text}; certified "
                     f"rotation accuracy at r = {CLAIM_RADIUS:g}° {c_text} — {reading}")
    if not parts:
        return "no natural and rotation-augmented recipes of chapter 05 with AutoAttack rows in this run", NOT_RUN
    parts += ranges_left_out(cert["theta"].max(), ROTATION_REACH)
    return "chapter 05's natural and rotation-augmented recipes, paired by seed and test point, on this " \
        "chapter's test points (chapter 05's own row reads other points of the test set, so its AutoAttack " \
        "numbers differ): " + "; ".join(parts), combine(verdicts)


def _ranks(values):
    from scipy.stats import rankdata

    return rankdata(values, axis=-1)


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties; NaN when either side is constant)."""
    import numpy as np

    return float(_spearman_rows(np.asarray(x, float), np.asarray(y, float)))


def _spearman_rows(x, y):
    """:func:`spearman` of each row of ``x`` and ``y`` (``(..., k)`` arrays), as an array."""
    import numpy as np

    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    denom = np.sqrt((rx ** 2).sum(axis=-1) * (ry ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=-1) / denom, np.nan)


def permutation_p(x, y, n_perm: int = 20000, seed: int = 0) -> tuple[float, float]:
    """One-sided p-values ``(for ρ > 0, for ρ < 0)`` of Spearman's ρ of ``x`` and ``y``: every
    ordering of ``y`` when there are at most 8 values (exact), else ``n_perm`` random ones
    (``(1 + hits) / (1 + n_perm)``)."""
    import itertools

    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    if not np.isfinite(rho):
        return float("nan"), float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    if len(x) <= 8:
        perms = np.array(list(itertools.permutations(range(len(y)))))
        extra = 0
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((n_perm, len(y))), axis=1)
        extra = 1
    rhos = (ry[perms] * rx).sum(1) / scale
    tol = 1e-12
    total = len(perms) + extra
    up = (int((rhos >= rho - tol).sum()) + extra) / total
    down = (int((rhos <= rho + tol).sum()) + extra) / total
    return up, down


def _boot_rhos(groups, x: str, y: str, rng, n_boot: int):
    """Spearman's ρ of −``x`` and ``y`` over the families' means, for ``n_boot`` replicates that
    each resample every family's seeds with replacement. All replicates are drawn at once: the same
    stream from ``rng`` as drawing family by family, replicate by replicate."""
    import numpy as np

    sizes = [len(g) for g in groups]
    picks = rng.integers(0, np.tile(np.repeat(sizes, sizes), (n_boot, 1)))
    ends = np.cumsum(sizes)

    def means(column, sign):
        return np.stack([sign * g[column].to_numpy(float)[picks[:, end - n:end]].mean(axis=1)
                         for g, n, end in zip(groups, sizes, ends)], axis=1)

    return _spearman_rows(means(x, -1.0), means(y, 1.0))


def rank_agreement(measures, x: str = "lie_softmax", y: str = "rotated_180", n_boot: int = 2000, seed: int = 0):
    """Spearman's ρ between −``x`` and ``y`` over the families' seed means, its one-sided permutation
    p-values and a 90% bootstrap interval over seeds (each family's seeds resampled with
    replacement, independently: different families are different models). Returns a dict:
    families, rho, p_positive, p_negative, lo, hi."""
    import numpy as np

    groups = [g for _, g in measures.groupby(["model", "recipe"], sort=False)]
    means_x = np.array([-g[x].mean() for g in groups])
    means_y = np.array([g[y].mean() for g in groups])
    rho = spearman(means_x, means_y)
    up, down = permutation_p(means_x, means_y, seed=seed) if len(groups) >= 2 else (float("nan"),) * 2
    samples = _boot_rhos(groups, x, y, np.random.default_rng(seed), n_boot) if groups else np.empty(0)
    samples = samples[np.isfinite(samples)]
    lo, hi = (np.quantile(samples, [ALPHA, 1 - ALPHA]) if len(samples) else (float("nan"), float("nan")))
    return dict(families=len(groups), seeds=int(measures["seed"].nunique()), rho=rho, p_positive=up,
                p_negative=down, lo=float(lo), hi=float(hi))


def _lie_context(measures) -> str:
    """What else orders the families (shown beside the Lie row, not part of its rule): the softmax's
    Lie derivative is p·(∂z − E_p ∂z), so it also shrinks as a model grows confident — ρ against clean
    accuracy says how much of the ordering that is; the logits' Lie derivative and the 15° invariance
    error are the other local measures of the chapter."""
    import numpy as np

    means = measures.groupby(["model", "recipe"], sort=False)[
        [c for c in ("lie_softmax", "lie_logits", "invariance_15", "clean", "rotated_180") if c in measures]].mean()
    shown = [("−(softmax Lie derivative) vs clean accuracy", "lie_softmax", "clean"),
             ("−(logit Lie derivative) vs rotated accuracy", "lie_logits", "rotated_180"),
             ("−(15° invariance error) vs rotated accuracy", "invariance_15", "rotated_180")]
    rhos = [(what, spearman(-means[x].to_numpy(float), means[y].to_numpy(float)))
            for what, x, y in shown if x in means and y in means]
    parts = [f"{what} ρ = {rho:+.2f}" for what, rho in rhos if np.isfinite(rho)]  # a constant column: no ρ
    return f" (shown, not the rule: {'; '.join(parts)})" if parts else ""


def _lie_orders(tables) -> tuple[str, str]:
    measures = tables["measures"]
    found = rank_agreement(measures)
    k = found["families"]
    if k < 2:
        return f"{k} model famil{'y' if k == 1 else 'ies'} in this run: nothing to order", NOT_RUN
    text = (f"Spearman ρ between −(Lie derivative of the softmax) and accuracy on inputs rotated in ±180°, over "
            f"{k} families (model × recipe, means over {found['seeds']} seeds): ρ = {found['rho']:+.2f}, "
            f"permutation p = {found['p_positive']:.3f} (ρ > 0) / {found['p_negative']:.3f} (ρ < 0), 90% bootstrap "
            f"interval over seeds [{found['lo']:+.2f}, {found['hi']:+.2f}]")
    if k < MIN_FAMILIES:
        return text + f" — fewer than {MIN_FAMILIES} families: no permutation test at level {ALPHA:g}", "inconclusive"
    text += _lie_context(measures)
    if found["p_positive"] <= ALPHA and found["lo"] > 0:
        return text, "agree"
    if found["p_negative"] <= ALPHA and found["hi"] < 0:
        return text, "disagree"
    return text, "inconclusive"


def _read(source: str):
    return lambda models: models["source"].astype(str).str.contains(source)


def _rotation_read(models):
    recipe = models["recipe"].astype(str)
    return _read("tradeoff")(models) & ((recipe == "natural") | recipe.str.startswith("rotation"))


_HEURISTIC = ("The certificate is heuristic: it assumes rotations compose exactly, and on a pixel grid every "
              "rotation interpolates, an error it does not bound (invrob.measures.HEURISTIC_NOTE).")
_TESTS = ("the paired change between the ends of the grid (bootstrap over seeds and the shared test points) and "
          "the slope over the whole grid (bootstrap over seeds), each one-sided at level 0.05")

CLAIMS = (
    Claim("Adversarial training shrinks certified rotation robustness",
          "NeurIPS 2021 (b): as the ε of adversarial training grows, spatial robustness drops progressively — "
          "read here on the certified rotation robustness of a rotation-smoothed classifier instead of an attack",
          f"per model, the certified accuracy at angle radius r = {CLAIM_RADIUS:g}° of the Gaussian "
          f"rotation-smoothed classifier (σ = 20°; correct, not abstained and certified radius ≥ r) of chapter 03's "
          f"naturally and adversarially trained nets, against the training ε; {_TESTS}, must both show a decrease, "
          f"and so must the monotone-trend test: {PROGRESSIVE_RULE} Agree if all show a decrease, disagree if the "
          f"endpoint change and the slope both show an increase, else inconclusive; inconclusive also when the "
          f"natural model's mean is below {FLOOR:.0%} (no room to drop); not run without two ε. {_HEURISTIC}",
          ("certificates",), _adversarial_shrinks, reads=_read("adversarial"),
          key="adversarial training lowers spatial robustness progressively", kind="paper",
          versions=("NeurIPS 2021",), options={"progressive": True},
          rule_set="before the chapter's first cpu run (issue 24)"),
    Claim("Rotation augmentation costs ℓ∞ robustness, against certified rotation robustness",
          "NeurIPS 2021 (a): as rotation augmentation grows, adversarial robustness drops — tested where the "
          "augmentation is shown to buy certified rotation robustness",
          f"per model, chapter 05's natural and rotation-augmented recipes against θ: AutoAttack accuracy at the "
          f"chapter's ε and certified rotation accuracy at r = {CLAIM_RADIUS:g}° (σ = 20°), each by {_TESTS}. "
          f"Agree if AutoAttack accuracy is shown to fall (both tests) while certified accuracy is shown to rise "
          f"(both tests); disagree if AutoAttack accuracy is shown to rise (both tests) while certified accuracy "
          f"is shown to rise; else inconclusive, and also when the natural recipe's AutoAttack accuracy is below "
          f"{FLOOR:.0%}; not run without the natural and a rotation recipe. {_HEURISTIC}",
          ("certificates", "robust_points"), _rotation_costs, reads=_rotation_read,
          key="rotation augmentation costs ℓ∞ robustness", kind="paper", versions=("NeurIPS 2021",),
          rule_set="before the chapter's first cpu run (issue 24)"),
    Claim("The Lie derivative orders the models as rotated accuracy does",
          "ours: a model's rotation Lie derivative at φ = 0, a local measure, ranks models as their accuracy on "
          "inputs rotated in ±180° does (the smaller the derivative, the higher the accuracy)",
          f"over every family of the chapter (model × recipe, seed means): Spearman's ρ between minus the Lie "
          f"derivative of the softmax (Gruver et al.'s end-to-end metric, per degree) and accuracy on inputs "
          f"rotated at random in [−180°, 180°]. Agree if an exact permutation test over the families' orderings "
          f"(random orderings beyond 8 families) shows ρ > 0 at level {ALPHA:g} one-sided and the 90% bootstrap "
          f"interval over seeds (each family's seeds resampled; not widened) lies above 0; disagree if both show "
          f"ρ < 0 in the same way; else inconclusive, and with fewer than {MIN_FAMILIES} families",
          ("measures",), _lie_orders, key="the Lie derivative orders models as rotated accuracy does", kind="ours",
          rule_set="2026-12-06, before the chapter's first cpu run; two cpu StdCNNs (θ = 0, 90) were seen after the metric was chosen, in the opposite order, and the rule was left as it was"),
)
