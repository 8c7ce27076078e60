"""Invariance → robustness (notebooks 01 and 02): rotation-augmented StdCNN / GCNN.

Models trained with random rotations in [−θ, θ] are measured for invariance
(accuracy on test data rotated up to φ), ℓ∞ PGD robustness, and the distance from
test points to their decision boundary. The paper's claims tested here:

(a) rotation augmentation improves invariance; (b) … but not ℓ∞ robustness, which
drops on MNIST; (c) the distance to the decision boundary shrinks as θ grows.
"""
from __future__ import annotations

from .base import PHIS, Claim, Study, Table, beyond, combine, label, models_in, paired_change, spread_text

ALL_THETAS = [0, 30, 60, 90, 120, 150, 180]

SETTINGS = {
    "smoke": dict(models=["stdcnn", "gcnn_p4"], thetas=[0, 180], seeds=[0],
                  train_size=2048, epochs=2, batch_size=128, optimizer="adam", lr=1e-2,
                  weight_decay=5e-4, test_size=256,
                  phis=[0, 90, 180], eps_grid=[0.0, 0.05, 0.1, 0.3],
                  pgd_steps=5, attack_size=64, restarts=1,
                  distance_size=64, distance_steps=5, bisection_steps=6,
                  check_size=32, check_steps=10, check_restarts=2, cifar=True,
                  cifar_train_size=256, cifar_epochs=1, cifar_lr=0.01, cifar_width=4,
                  cifar_eps_grid=[0.0, 2 / 255, 8 / 255],
                  aa_size=16, aa_attacks=["apgd-ce", "apgd-t"]),
    "cpu": dict(models=["stdcnn", "gcnn_p4"], thetas=ALL_THETAS, seeds=[0, 1],
                train_size=20000, epochs=5, batch_size=128, optimizer="sgd", lr=0.05,
                weight_decay=5e-4, test_size=2000, phis=PHIS,
                eps_grid=[0.0, 0.02, 0.05, 0.1, 0.2, 0.3],
                pgd_steps=20, attack_size=500, restarts=1,
                distance_size=200, distance_steps=20, bisection_steps=8,
                check_size=200, check_steps=50, check_restarts=3, cifar=False,
                cifar_train_size=None, cifar_epochs=120, cifar_lr=0.1, cifar_width=None,
                cifar_eps_grid=[0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
                aa_size=200, aa_attacks=["apgd-ce", "apgd-t"]),
    "paper": dict(models=["stdcnn", "gcnn_p4"], thetas=ALL_THETAS, seeds=[0, 1, 2],
                  train_size=None, epochs=30, batch_size=128, optimizer="sgd", lr=0.05,
                  weight_decay=5e-4, test_size=None,
                  phis=PHIS, eps_grid=[0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
                  pgd_steps=40, attack_size=2000, restarts=1,
                  distance_size=1000, distance_steps=40, bisection_steps=10,
                  check_size=1000, check_steps=200, check_restarts=10, cifar=True,
                  cifar_train_size=None, cifar_epochs=120, cifar_lr=0.1, cifar_width=None,
                  cifar_eps_grid=[0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
                  aa_size=1000, aa_attacks=None),
}

NB1, NB2 = "01_invariance_vs_robustness", "02_decision_boundary_distance"
TAGS = ("model", "dataset", "theta", "eps_train", "seed")
TABLES = (
    Table("history", NB1, ("model", "theta", "seed", "epoch", "train_acc")),
    Table("invariance", NB1, (*TAGS, "phi", "accuracy", "n")),
    Table("robustness", NB1, (*TAGS, "eps", "accuracy", "n")),
    # empty when no budget is informative (every model broken, or none, at every ε > 0)
    Table("autoattack", NB1, (*TAGS, "eps", "attack", "components", "accuracy", "n"), may_be_empty=True),
    Table("cifar10_invariance", NB1, (*TAGS, "phi", "accuracy", "n")),
    Table("cifar10_robustness", NB1, (*TAGS, "eps", "accuracy", "n")),
    Table("distances", NB2, (*TAGS, "norm", "point", "distance")),
    Table("distance_summary", NB2, ("model", "dataset", "theta", "norm", "n", "n_unbroken",
                                    "mean", "mean_low", "mean_high")),
)

ACCURACY_TOLERANCE = 0.02  # a change of accuracy of at most 2 points counts as none
INFORMATIVE = (0.1, 0.9)   # a budget says something where the θ-min models are neither broken nor untouched
NORMS = {"linf": "ℓ∞", "l2": "ℓ2"}


def configs(settings, dataset: str = "mnist") -> list:
    """Every model × θ × seed: natural training with rotation augmentation in [−θ, θ].

    ``dataset="cifar10"`` uses the profile's ``cifar_*`` settings (``cifar_width``:
    ``None`` for the standard width; the smoke profile's narrow models only exercise
    the code path).
    """
    from ..train import TrainConfig

    S = settings
    if dataset == "cifar10":
        width = {} if S.cifar_width is None else {"width": S.cifar_width}
        return [TrainConfig(model=m, dataset=dataset, epochs=S.cifar_epochs, lr=S.cifar_lr, theta=t, seed=s,
                            model_kwargs=width)
                for m in S.models for t in S.thetas for s in S.seeds]
    common = dict(dataset=dataset, epochs=S.epochs, batch_size=S.batch_size, optimizer=S.optimizer,
                  lr=S.lr, weight_decay=S.weight_decay)
    return [TrainConfig(model=m, theta=t, seed=s, **common)
            for m in S.models for t in S.thetas for s in S.seeds]


def informative_eps(robustness, model: str) -> list[float]:
    """The budgets ε > 0 at which ``model``'s smallest-θ accuracy (mean over seeds) lies in [0.1, 0.9].

    Elsewhere the θ-min model is already broken (all zeros, e.g. ε = 0.3) or
    untouched, and a change with θ is no evidence either way.
    """
    rows = robustness[(robustness["model"] == model) & (robustness["eps"] > 0)]
    at_lo = rows[rows["theta"] == rows["theta"].min()].groupby("eps")["accuracy"].mean()
    low, high = INFORMATIVE
    return [float(e) for e, a in at_lo.items() if low <= a <= high]


def _invariance_improves(tables) -> tuple[str, str]:
    inv = tables["invariance"]
    lo, hi, phi = inv["theta"].min(), inv["theta"].max(), inv["phi"].max()
    at = inv[inv["phi"] == phi]
    parts, verdicts = [], []
    for m in models_in(at):
        a, b, change, spread, n = paired_change(at[at["model"] == m], "theta", lo, hi, "accuracy")
        verdicts.append(beyond(change, max(ACCURACY_TOLERANCE, spread), "agree", "disagree"))
        parts.append(f"{label(m)} {a:.1%} → {b:.1%} ({change:+.1%}; {spread_text(spread, n)})")
    return (f"accuracy on test data rotated up to φ = {phi:g}°, θ = {lo:g}° → {hi:g}°: " + "; ".join(parts),
            combine(verdicts))


def _attack_rows(tables, model: str, budgets: list[float], lo, hi):
    """The rows claim (b) reads for ``model``: AutoAttack's where the chapter measured it at every
    informative ε for both ends of the θ grid, else PGD's. Returns ``(rows, attack name)``."""
    rob, auto = tables["robustness"], tables.get("autoattack")
    if auto is not None:
        rows = auto[(auto["model"] == model) & (auto["attack"] == "AutoAttack") & auto["eps"].isin(budgets)]
        have = {(t, float(e)) for t, e in zip(rows["theta"], rows["eps"])}
        if all((t, float(e)) in have for t in (lo, hi) for e in budgets):
            return rows, "AutoAttack"
    return rob[(rob["model"] == model) & rob["eps"].isin(budgets)], "PGD"


def _robustness_does_not_improve(tables) -> tuple[str, str]:
    rob = tables["robustness"]
    lo, hi = rob["theta"].min(), rob["theta"].max()
    parts, verdicts = [], []
    for m in models_in(rob):
        budgets = informative_eps(rob, m)
        if not budgets:
            verdicts.append("inconclusive")
            parts.append(f"{label(m)}: no informative ε (θ = {lo:g}° accuracy outside "
                         f"[{INFORMATIVE[0]:g}, {INFORMATIVE[1]:g}] at every ε > 0)")
            continue
        rows, attack = _attack_rows(tables, m, budgets, lo, hi)
        a, b, change, spread, n = paired_change(rows, "theta", lo, hi, "accuracy")
        verdicts.append(beyond(change, max(ACCURACY_TOLERANCE, spread), "disagree", "agree"))
        parts.append(f"{label(m)}, {attack} at ε ∈ {{{', '.join(f'{e:g}' for e in budgets)}}}: "
                     f"{a:.1%} → {b:.1%} ({change:+.1%}; {spread_text(spread, n)})")
    return (f"robust accuracy, mean over the informative ε, θ = {lo:g}° → {hi:g}°: " + "; ".join(parts),
            combine(verdicts))


def _distance_shrinks(tables) -> tuple[str, str]:
    summary = tables["distance_summary"]
    lo, hi = summary["theta"].min(), summary["theta"].max()
    s = summary.groupby(["model", "theta", "norm"])[["mean", "mean_low", "mean_high"]].first()
    parts, verdicts = [], []
    for m in models_in(summary):
        for norm in dict.fromkeys(summary["norm"]):
            if (m, lo, norm) not in s.index or (m, hi, norm) not in s.index:
                continue
            a, b = s.loc[(m, lo, norm)], s.loc[(m, hi, norm)]
            verdicts.append("agree" if b["mean_high"] < a["mean_low"] else
                            "disagree" if b["mean_low"] > a["mean_high"] else "inconclusive")
            parts.append(f"{label(m)} {NORMS.get(norm, norm)}: {a['mean']:.3f} [{a['mean_low']:.3f}, "
                         f"{a['mean_high']:.3f}] → {b['mean']:.3f} [{b['mean_low']:.3f}, {b['mean_high']:.3f}]")
    return (f"mean distance to the boundary [95% bootstrap CI], θ = {lo:g}° → {hi:g}°: " + "; ".join(parts),
            combine(verdicts))


CLAIMS = (
    Claim("Rotation augmentation improves invariance",
          "training with random rotations in [−θ, θ] makes StdCNNs and GCNNs more rotation invariant "
          "as θ grows",
          f"per model, the mean over seeds of the accuracy at the largest φ, from the smallest to the "
          f"largest θ: agree if it rises by more than the margin, disagree if it falls by more, else "
          f"inconclusive; margin = max({ACCURACY_TOLERANCE:g}, seed spread of the change)",
          ("invariance",), _invariance_improves),
    Claim("… but not ℓ∞ robustness: it drops on MNIST",
          "ℓ∞ adversarial robustness does not improve as θ grows; on MNIST it drops",
          f"per model, robust accuracy averaged over the informative ε (those where the smallest-θ model's "
          f"PGD accuracy is in [{INFORMATIVE[0]:g}, {INFORMATIVE[1]:g}]), from the smallest to the largest θ, "
          f"under AutoAttack where the chapter ran it (else PGD, an upper bound): agree if it falls by more "
          f"than the margin, disagree if it rises by more, else inconclusive (also when no ε is "
          f"informative); margin = max({ACCURACY_TOLERANCE:g}, seed spread of the change)",
          ("robustness",), _robustness_does_not_improve, uses=("autoattack",)),
    Claim("Boundary distance shrinks as θ grows",
          "the mean distance from test points to the decision boundary decreases as θ grows",
          "per model and norm, the mean distance at the smallest vs the largest θ: agree if the 95% "
          "bootstrap CIs do not overlap and it decreases, disagree if they do not overlap and it increases, "
          "inconclusive if they overlap",
          ("distance_summary",), _distance_shrinks),
)


class InvarianceStudy(Study):
    name = "invariance"
    title = "Invariance → robustness"
    notebooks = (NB1, NB2)
    profile_settings = SETTINGS
    tables = TABLES
    paper_claims = CLAIMS

    configs = staticmethod(configs)  # the module's training grid

    informative_eps = staticmethod(informative_eps)


STUDY = InvarianceStudy()
