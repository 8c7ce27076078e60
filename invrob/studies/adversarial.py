"""Robustness → invariance (notebooks 03 and 04): PGD-adversarially trained LeNet / ResNet-18.

Models adversarially trained with growing ε are checked with AutoAttack, then measured
for rotated accuracy and its *invariance gap* (accuracy at φ = 0 minus accuracy at φ,
:func:`add_gap`), worst-of-k rotations (a grid attack on the angle), and the geometry of
their perturbations (PCA subspaces beside data-matched nulls; per point, the cosine with
the rotation tangent; the loss's directional derivative along it). The claims tested here:

(d) the invariance gap stays essentially unchanged as ε grows (ICLR 2020; an equivalence
test with a margin fixed in advance); (d') spatial robustness drops progressively as ε
grows (arXiv v1, NeurIPS 2021); (e) adversarial and small-rotation perturbations are
nearly orthogonal (per point, against a random ℓ∞ corner).

This module is the study's home: its settings at each profile, its training grid, its tables
and the :class:`AdversarialStudy` object. Its parts: the claims with their margins and judges in
:mod:`~invrob.studies.adversarial_claims`; notebooks 03's and 04's tables, figure frames and
closing texts, and the verdict page's per-φ and null tables, in
:mod:`~invrob.studies.adversarial_tables` (methods of the study, so that the notebooks only call
the study and display what it returns).
"""
from __future__ import annotations

from .. import gates
from . import adversarial_tables
from .adversarial_claims import (CLAIM_K, CLAIMS, COSINE_MARGIN, GAP_MARGIN, MIN_GAP_MARGIN, NULLS, SPATIAL_PHI, TAGS,
                                 add_gap, claim_k, null_table, per_phi_changes, relative_gap)
from .adversarial_tables import (accuracy_and_gap, closing, final_epochs, margin_band, per_phi_table,
                                 pgd_overstatement)
from .base import PHIS, Study, Table
from .rules import autoattack_of

__all__ = ["SETTINGS", "TABLES", "GATES", "STUDY", "TAGS", "configs", "capacity_configs", "CLAIMS", "CLAIM_K",
           "COSINE_MARGIN", "GAP_MARGIN", "MIN_GAP_MARGIN", "NULLS", "SPATIAL_PHI", "add_gap", "claim_k", "null_table",
           "per_phi_changes", "relative_gap", "accuracy_and_gap", "closing", "final_epochs", "margin_band",
           "per_phi_table", "pgd_overstatement"]

SETTINGS = {
    "smoke": dict(models=["wong"], eps_train=[0.0, 0.1], seeds=[0, 1],
                  capacity=dict(model="wong", eps=0.1, widths=[0.5, 1], seeds=[0]),
                  train_size=2048, epochs=2, batch_size=128, optimizer="adam", lr=1e-2,
                  weight_decay=5e-4, lr_schedule="onecycle", test_size=256, gate_size=512,
                  attack_steps=3, eps_warmup_epochs=0, phis=[0, 30, 90, 180], worst_k=5, spatial_size=64,
                  pgd_steps=5, attack_size=32, aa_attacks=["apgd-ce", "apgd-t"], aa_targets=3, aa_steps=25,
                  pca_size=64, pca_k=[1, 5, 10], eps_attack=0.1, data_pcs=5, tangent_size=32,
                  small_angles=[-5, -3, -1, 1, 3, 5], cifar=True,
                  cifar_train_size=256, cifar_epochs=1, cifar_lr=0.01, cifar_width=4, cifar_attack_steps=2,
                  cifar_eps_train=[0.0, 8 / 255]),
    # Models that pass their quality gates (invrob.gates; issue 21): the authors' 22k-parameter
    # LeNet reached 32% AutoAttack at ε = 0.3 here, so cpu trains Wong et al.'s fast-AT net on all
    # 60k images, Adam with a one-cycle rate peaking at 5e-3 (their MNIST recipe), PGD-5 with ε
    # ramped up over the first 2 of 6 epochs. Measured here (seed 0, AutoAttack's APGD-CE + APGD-T
    # on 500 test points): natural 99.2% clean; ε = 0.1: 99.2% clean / 96.8% AutoAttack; ε = 0.2:
    # 99.1 / 95.0. ε = 0.3: an earlier measurement (../shared/README.md: 72.8% after 10 epochs,
    # 85.8% after 20) kept it out; the same 6-epoch recipe measured on 2026-12-06 (seed 0) gives 98.9%
    # clean / 91.6% AutoAttack (APGD-CE + APGD-T, 1,000 points; the standard ensemble 91.0% on 200) in
    # 2.8 min, above its gate. Its 5 seeds (≈ 10–14 min) come from the minutes notebook 01 no longer
    # spends on a below-gate p4 GCNN, so the cpu grid ends at the paper's ε = 0.3.
    # Capacity point: robust accuracy against width at one ε (Madry et al.: capacity buys
    # robustness). Width 1 is the main grid's net (its checkpoints are reused); the narrower
    # nets cost less than it. One seed at cpu: the from-scratch book of 2026-12-06 took 91.5 min
    # with two, whose narrow nets trained for 5.1 min; the second seed's 2.7 min are the margin
    # under the 90-min goal. The gpu and paper profiles keep three seeds.
    "cpu": dict(models=["wong"], eps_train=[0.0, 0.1, 0.2, 0.3], seeds=[0, 1, 2, 3, 4],
                capacity=dict(model="wong", eps=0.2, widths=[0.25, 0.5, 1], seeds=[0]),
                train_size=None, epochs=6, batch_size=128, optimizer="adam", lr=5e-3,
                weight_decay=0.0, lr_schedule="onecycle", test_size=2000, gate_size=None, attack_steps=5, eps_warmup_epochs=2,
                phis=PHIS,
                worst_k=13, spatial_size=1000, pgd_steps=20, attack_size=100, aa_attacks=["apgd-ce", "apgd-t"],
                aa_targets=3, aa_steps=None, pca_size=500, pca_k=[1, 5, 10, 20, 50], eps_attack=0.1, data_pcs=10,
                tangent_size=300, small_angles=[-5, -4, -3, -2, -1, 1, 2, 3, 4, 5], cifar=False,
                cifar_train_size=None, cifar_epochs=120, cifar_lr=0.1, cifar_width=None, cifar_attack_steps=10,
                cifar_eps_train=[0.0, 2 / 255, 4 / 255, 8 / 255]),
    # gpu (one GPU, each chapter ≤ 1 h; invrob.tooling.budget): the cpu recipe run long enough for ε = 0.3 —
    # 20 epochs, ε ramped over the first 8 (40%): measured here 99.1% clean / 85.8% AutoAttack at
    # ε = 0.3 (../shared/README.md) — over the paper's ε grid, and a capacity point at ε = 0.3.
    "gpu": dict(models=["wong"], eps_train=[0.0, 0.05, 0.1, 0.2, 0.3], seeds=[0, 1, 2, 3, 4],
                capacity=dict(model="wong", eps=0.3, widths=[0.5, 1, 2], seeds=[0, 1, 2]),
                train_size=None, epochs=20, batch_size=128, optimizer="adam", lr=5e-3,
                weight_decay=0.0, lr_schedule="onecycle", test_size=None, gate_size=None, attack_steps=5,
                eps_warmup_epochs=8, phis=PHIS,
                worst_k=31, spatial_size=1000, pgd_steps=40, attack_size=1000, aa_attacks=["apgd-ce", "apgd-t"],
                aa_targets=3, aa_steps=None, pca_size=2000, pca_k=[1, 5, 10, 20, 50], eps_attack=0.1, data_pcs=10,
                tangent_size=1000, small_angles=[-5, -4, -3, -2, -1, 1, 2, 3, 4, 5], cifar=False,
                cifar_train_size=None, cifar_epochs=120, cifar_lr=0.1, cifar_width=None, cifar_attack_steps=10,
                cifar_eps_train=[0.0, 2 / 255, 4 / 255, 8 / 255]),
    "paper": dict(models=["lenet"], eps_train=[0.0, 0.05, 0.1, 0.2, 0.3], seeds=[0, 1, 2, 3, 4],
                  capacity=dict(model="wong", eps=0.3, widths=[0.5, 1, 2, 4], seeds=[0, 1, 2]),
                  train_size=None, epochs=30, batch_size=128, optimizer="adam", lr=1e-3,
                  weight_decay=0.0, lr_schedule="cosine", test_size=None, gate_size=None,
                  attack_steps=40, eps_warmup_epochs=5, phis=PHIS, worst_k=31, spatial_size=None,
                  pgd_steps=40, attack_size=1000, aa_attacks=None, aa_targets=None, aa_steps=None,
                  pca_size=5000, pca_k=[1, 5, 10, 20, 50], eps_attack=0.1, data_pcs=10, tangent_size=2000,
                  small_angles=[-5, -4, -3, -2, -1, 1, 2, 3, 4, 5], cifar=True,
                  cifar_train_size=None, cifar_epochs=120, cifar_lr=0.1, cifar_width=None, cifar_attack_steps=10,
                  cifar_eps_train=[0.0, 2 / 255, 4 / 255, 8 / 255]),
}

NB3, NB4 = "03_robustness_vs_invariance", "04_perturbation_geometry"
TABLES = (
    Table("history", NB3, ("model", "eps_train", "seed", "epoch", "train_acc")),
    Table("robust_points", NB3, (*TAGS, "eps", "point", "robust", "attack")),
    Table("robustness", NB3, (*TAGS, "eps", "attack", "accuracy", "n")),
    Table("pgd_robustness", NB3, (*TAGS, "eps", "accuracy", "n")),
    Table("invariance", NB3, (*TAGS, "phi", "accuracy", "n", "gap")),
    Table("worst_of_k", NB3, (*TAGS, "phi", "k", "accuracy")),
    Table("cifar10_invariance", NB3, (*TAGS, "phi", "accuracy", "n")),
    Table("capacity", NB3, ("model", "width", "eps_train", "seed", "clean", "n_clean", "autoattack", "n")),
    Table("subspace_cosines", NB4, (*TAGS, "comparison", "k", "mean_cosine", "max_cosine")),
    Table("tangent_cosines", NB4, (*TAGS, "point", "adversarial", "random_sign", "matched_support", "edge_sign",
                                   "gradient")),
    Table("directional", NB4, (*TAGS, "point", "along_tangent", "along_random", "gradient_norm")),
    Table("models", NB3, (*TAGS, "clean", "n_clean", "autoattack", "n_autoattack")),
)
GATES = (gates.natural_gate(), *gates.adversarial_gates(), gates.natural_gate("cifar10"),
         *gates.adversarial_gates("cifar10"))

# Margins, relative to the natural model / the null, fixed before this cpu run (stated on the verdict page):


def configs(settings, dataset: str = "mnist") -> list:
    """Every model × ε × seed: PGD adversarial training at ε (ε = 0: natural training).

    ``dataset="cifar10"``: ResNet-18 at the profile's ``cifar_eps_train``, PGD with
    ``cifar_attack_steps`` steps of 2/255 (10 at ``paper``, as the authors' code), of
    width ``cifar_width`` (``None``: the standard 64; the smoke profile's narrow one
    only exercises the code path).
    """
    from ..train import TrainConfig

    S = settings
    if dataset == "cifar10":
        width = {} if S.cifar_width is None else {"width": S.cifar_width}
        return [TrainConfig(model="resnet18", dataset=dataset, epochs=S.cifar_epochs, lr=S.cifar_lr,
                            eps=e, attack_steps=S.cifar_attack_steps, attack_alpha=2 / 255, seed=s,
                            model_kwargs=width)
                for e in S.cifar_eps_train for s in S.seeds]
    common = dict(dataset=dataset, epochs=S.epochs, batch_size=S.batch_size, optimizer=S.optimizer,
                  lr=S.lr, weight_decay=S.weight_decay, lr_schedule=S.lr_schedule)
    return [TrainConfig(model=m, eps=e, attack_steps=S.attack_steps,
                        eps_warmup_epochs=S.eps_warmup_epochs, seed=s, **common)
            for m in S.models for e in S.eps_train for s in S.seeds]


def capacity_configs(settings) -> list:
    """The capacity point's models: the profile's MNIST recipe at ``capacity["eps"]`` for each
    width × seed of ``capacity`` (``width`` 1 is passed as no keyword, so where the main grid
    has the same model, ε and seed its checkpoint is reused)."""
    from ..train import TrainConfig

    S, cap = settings, settings.capacity
    common = dict(dataset="mnist", epochs=S.epochs, batch_size=S.batch_size, optimizer=S.optimizer,
                  lr=S.lr, weight_decay=S.weight_decay, lr_schedule=S.lr_schedule)
    return [TrainConfig(model=cap["model"], eps=cap["eps"], attack_steps=S.attack_steps,
                        eps_warmup_epochs=S.eps_warmup_epochs, seed=s,
                        model_kwargs={} if w == 1 else {"width": w}, **common)
            for w in cap["widths"] for s in cap["seeds"]]


class AdversarialStudy(Study):
    name = "adversarial"
    title = "Robustness → invariance"
    notebooks = (NB3, NB4)
    profile_settings = SETTINGS
    tables = TABLES
    paper_claims = CLAIMS
    gates = GATES
    reuses = {NB4: "reused from 03"}

    configs = staticmethod(configs)  # the module's training grid
    attack = staticmethod(autoattack_of)
    capacity_configs = staticmethod(capacity_configs)

    def capacity(self, trained, x, y, x_att, y_att, settings):
        """The capacity point, one row per width × seed: clean accuracy on ``x, y`` and
        AutoAttack accuracy (the profile's attack) at the models' own ε on ``x_att, y_att``.
        Columns: model, width, eps_train, seed, clean, n_clean, autoattack, n."""
        import pandas as pd

        from .. import experiments as ex
        from ..metrics import accuracy

        rows = []
        for config, model in trained:
            points = ex.robust_points_table([(config, model)], x_att, y_att, [config.eps],
                                            attack=self.attack(settings))
            robust = points.loc[points["eps"] == config.eps, "robust"]
            rows.append(dict(model=config.model, width=float(config.model_kwargs.get("width", 1)),
                             eps_train=config.eps, seed=config.seed, clean=accuracy(model, x, y),
                             n_clean=len(y), autoattack=float(robust.mean()), n=len(robust)))
        return pd.DataFrame(rows)

    def add_gap(self, invariance):
        """The table with its invariance gap column: :func:`add_gap`."""
        return add_gap(invariance)

    def per_phi(self, tables):
        """The ICLR row's per-φ table (:func:`per_phi_changes`) from the study's tables."""
        return per_phi_changes(tables["invariance"])

    # the chapter's tables and closing text
    final_epochs = staticmethod(final_epochs)
    pgd_overstatement = staticmethod(pgd_overstatement)
    accuracy_and_gap = staticmethod(accuracy_and_gap)
    margin_band = staticmethod(margin_band)
    per_phi_table = staticmethod(per_phi_table)
    closing = staticmethod(closing)
    # notebook 04's tables, figure frames and closing text, the verdict page's (invrob.studies.adversarial_tables)
    cosine_summary = staticmethod(adversarial_tables.cosine_summary)
    shown_comparisons = staticmethod(adversarial_tables.shown_comparisons)
    cosines_at_ends = staticmethod(adversarial_tables.cosines_at_ends)
    cosines_at_k = staticmethod(adversarial_tables.cosines_at_k)
    principal_components = staticmethod(adversarial_tables.principal_components)
    null_means = staticmethod(adversarial_tables.null_means)
    directional_means = staticmethod(adversarial_tables.directional_means)
    geometry_closing = staticmethod(adversarial_tables.geometry_closing)
    per_phi_and_nulls = adversarial_tables.per_phi_and_nulls

    def show_published(self, models, robustness, settings) -> str:
        """:meth:`published` as the chapter shows it (Markdown: no cell is cut short)."""
        return self.published(models, robustness, settings).to_markdown()

    def published(self, models, robustness, settings):
        """Our models at ε = 0.3 beside the published MNIST rows (Madry et al., TRADES, fast
        adversarial training; :func:`invrob.gates.published_comparison`), with how ours were trained
        (``settings``) and attacked (the attack the ``robustness`` table names)."""
        from .. import gates as quality

        S = settings
        training = (f"PGD-{S.attack_steps} adversarial training, {S.epochs} epochs"
                    + (f", ε ramped over the first {S.eps_warmup_epochs}" if S.eps_warmup_epochs else ""))
        attack = str(self.check("robustness", robustness).loc[lambda r: r["eps"] > 0, "attack"].iloc[0])
        evaluation = attack if attack == "AutoAttack" else f"{attack}, not the standard ensemble"
        return quality.published_comparison(self.check("models", models), training, evaluation)

    def nulls(self, tables):
        """The orthogonality row's perturbations against the rotation tangent (:func:`null_table`)."""
        return null_table(tables["tangent_cosines"])


STUDY = AdversarialStudy()
