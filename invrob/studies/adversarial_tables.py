"""The perturbation-geometry chapter's tables, figure frames and closing text (notebook 04),
and the verdict page's ICLR-row tables: methods of
:class:`~invrob.studies.adversarial.AdversarialStudy`.

The subspace comparisons (:func:`invrob.experiments.subspace_table`) summarised and framed
for the chapter's figures (:func:`cosine_summary`, :func:`shown_comparisons`,
:func:`cosines_at_ends`, :func:`cosines_at_k`), the top principal components of the
perturbations as an image grid (:func:`principal_components`), the tangent nulls
(:func:`null_means`), the loss's directional derivatives (:func:`directional_means`,
:func:`tangent_ratio`) and the chapter's closing Markdown (:func:`geometry_closing`).
The functions taking ``study`` first are bound as methods; none of this module imports
:mod:`~invrob.studies.adversarial` (which imports it).
"""
from __future__ import annotations

from .adversarial_claims import GAP_MARGIN, per_phi_changes
from .render import findings
from .rules import label

# The subspace comparisons in the order the summary lists them, and what each one is for.
COMPARISON_KINDS = {"adversarial vs rotation": "the paper's statistic",
                    "image PCA vs rotation": "data-matched null",
                    "translation vs rotation": "data-matched null",
                    "adversarial vs rotation (data PCs removed)": "shared data subspace removed",
                    "translation vs rotation (data PCs removed)": "shared data subspace removed",
                    "support-random vs rotation": "weak baseline",
                    "random vs random": "weak baseline",
                    "adversarial vs adversarial": "positive control"}

# The comparisons the figures draw, under the names their legends give them.
SHOWN_COMPARISONS = {"adversarial vs rotation": "adversarial vs rotation (the claim)",
                     "adversarial vs adversarial": "adversarial vs adversarial (control)",
                     "random vs random": "random vs random (ℝ⁷⁸⁴)",
                     "support-random vs rotation": "random on digit pixels vs rotation",
                     "image PCA vs rotation": "image PCA vs rotation (null)",
                     "translation vs rotation": "translations vs rotation (null)"}

NULL_HEADERS = {"adversarial": "δ_adv", "matched_support": "matched null", "edge_sign": "edge pixels",
                "random_sign": "whole-ball corner"}
DIRECTIONS = {"along_tangent": "rotation tangent t̂(x)", "along_random": "random direction"}
COMPONENTS = 8  # principal components shown per kind of perturbation


def cosine_means(geometry):
    """Mean principal cosine over models, training ε and seeds: one row per comparison (in the
    order of :data:`COMPARISON_KINDS`), one column per subspace dimension k."""
    return (geometry.groupby(["comparison", "k"])["mean_cosine"].mean().unstack("k")
            .reindex(list(COMPARISON_KINDS)))


def cosine_summary(geometry) -> str:
    """The chapter's summary of the subspace comparisons as a Markdown table: each comparison
    (``subspaces``), what it is for (``kind``) and its mean principal cosine at every k
    (:func:`cosine_means`), to 3 decimals."""
    table = cosine_means(geometry).rename(columns="k = {}".format)
    table.insert(0, "kind", [COMPARISON_KINDS[c] for c in table.index])
    return table.rename_axis("subspaces").reset_index().to_markdown(index=False, floatfmt=".3f")


def shown_comparisons(geometry):
    """The rows of the comparisons the figures draw (:data:`SHOWN_COMPARISONS`), ``comparison``
    renamed to the figures' legend names."""
    shown = geometry[geometry["comparison"].isin(SHOWN_COMPARISONS)]
    return shown.assign(comparison=shown["comparison"].map(SHOWN_COMPARISONS))


def cosines_at_ends(shown, settings):
    """``(rows, titles)``: ``shown``'s rows at the smallest and the largest training ε, and a title
    for each of their training ε (in the order the rows have them, as the figure's panels): the
    (first) model family of ``settings`` and the training ε."""
    ends = shown[shown["eps_train"].isin([min(settings.eps_train), max(settings.eps_train)])]
    family = label(settings.models[0])
    return ends, [f"{family}, training ε = {e:g}" for e in dict.fromkeys(ends["eps_train"])]


def cosines_at_k(shown, settings):
    """``(rows, k)``: ``shown``'s rows at one subspace dimension k — 10 if the profile
    measures it, else its largest."""
    k = 10 if 10 in settings.pca_k else max(settings.pca_k)
    return shown[shown["k"] == k], k


def principal_components(trained, x, y, settings):
    """The top :data:`COMPONENTS` principal directions of the perturbations, as an image grid:
    ``(images, titles, row_labels)``. First row: small rotations of ``x`` (the first model's
    grid, :func:`invrob.experiments.perturbations`); then one row per model of the first seed
    at the smallest and the largest training ε: its PGD perturbations at ``eps_attack``.
    ``titles`` name the first row's components (PC1 …); ``images``: one per component, shaped
    like ``x``'s images."""
    import torch

    from .. import experiments as ex
    from ..metrics import top_components

    S = settings
    show = [(c, m) for c, m in trained if c.seed == S.seeds[0] and c.eps in (min(S.eps_train), max(S.eps_train))]
    _, rot = ex.perturbations(show[0][1], x, y, eps=S.eps_attack, steps=S.pgd_steps, small_angles=S.small_angles)
    panels = [("small\nrotations", top_components(rot.numpy(), COMPONENTS)[0])]
    for config, model in show:
        adv, _ = ex.perturbations(model, x, y, eps=S.eps_attack, steps=S.pgd_steps, small_angles=[1])
        panels.append((f"adversarial,\ntraining\nε = {config.eps:g}", top_components(adv.numpy(), COMPONENTS)[0]))
    images = torch.cat([torch.as_tensor(c).reshape(-1, *x.shape[1:]) for _, c in panels])
    return images, [f"PC{i + 1}" for i in range(COMPONENTS)], [name for name, _ in panels]


def null_means(nulls):
    """:meth:`~invrob.studies.adversarial.AdversarialStudy.nulls` as the chapter shows them: the mean
    |cos| with the rotation tangent per training ε (rows) and perturbation (columns, the adversarial one
    first, headed by :data:`NULL_HEADERS`), mean over models, to 3 decimals."""
    return (nulls.pivot_table(index="eps_train", columns="perturbation", values="mean", sort=False)
            .rename(index="{:g}".format).rename(columns=NULL_HEADERS)
            .rename_axis(index="training ε", columns="mean |cos(·, t)|").round(3))


def directional_means(directional):
    """The loss's directional derivatives (:func:`invrob.experiments.directional_table`) for the
    figure: per model, training ε, seed and direction (named by :data:`DIRECTIONS`), the mean over
    points, in the column ``derivative``."""
    long = directional.melt(id_vars=["model", "eps_train", "seed", "point"], value_vars=list(DIRECTIONS),
                            var_name="direction", value_name="derivative")
    means = long.groupby(["model", "eps_train", "seed", "direction"], as_index=False)["derivative"].mean()
    return means.assign(direction=means["direction"].map(DIRECTIONS))


def tangent_ratio(directional):
    """Per training ε, the mean derivative along the rotation tangent over the mean along a random
    direction (mean over models, seeds and points)."""
    means = directional.groupby("eps_train")[list(DIRECTIONS)].mean()
    return means["along_tangent"] / means["along_random"]


def geometry_closing(found, directional, profile: str) -> str:
    """Notebook 04's closing Markdown: the claim rows ``found`` (:func:`~invrob.studies.render.findings`),
    then the loss's derivative along the rotation tangent relative to a random direction at every
    training ε (:func:`tangent_ratio`)."""
    ratios = ", ".join(f"{r:.2f}× at training ε = {e:g}" for e, r in tangent_ratio(directional).items())
    return (findings(found, profile)
            + "\n\nThe loss's derivative along the rotation tangent, relative to a random direction "
            + "on the same pixels: " + ratios + ".")


def per_phi_and_nulls(study, tables) -> str:
    """The verdict page's tables of the adversarial study's rows that test the paper's words, as
    Markdown: the ICLR row per φ (``study.per_phi``) and the orthogonality row's nulls
    (``study.nulls``), to 4 decimals."""
    from .scorecard import markdown

    return ("**Per φ, the ICLR row.**\n\n" + markdown(study.per_phi(tables).round(4), index=False)
            + "\n\n**Nulls for orthogonality.**\n\n" + markdown(study.nulls(tables).round(4), index=False))


# ------------------------------------------------------------ notebook 03's tables and closing text
def final_epochs(history):
    """Notebook 03's training table: each model's training accuracy in its final epoch, mean over
    seeds, per training ε (rows) and model family (columns), to 3 decimals
    (:func:`invrob.experiments.final_accuracy`)."""
    from ..experiments import final_accuracy

    table = final_accuracy(history, "eps_train").rename(index="{:g}".format, columns=label)
    return table.rename_axis(index="training ε", columns=None).round(3)


def pgd_overstatement(robustness, pgd):
    """How much PGD overstates robust accuracy: PGD's accuracy minus AutoAttack's on the same points
    (:func:`invrob.experiments.pgd_overstatement`), mean over models and seeds, per training ε (rows)
    and attack ε > 0 (columns), to 3 decimals."""
    from ..experiments import pgd_overstatement as overstated

    return (overstated(robustness, pgd).pivot_table(index="eps_train", columns="eps", values="overstated")
            .rename(index="{:g}".format, columns="{:g}".format)
            .rename_axis(index="training ε", columns="attack ε").round(3))


def accuracy_and_gap(invariance):
    """The figure of rotated accuracy and invariance gap side by side: the ``invariance`` rows twice,
    with ``value`` the accuracy, then the gap, and ``panel`` naming the model and which of the two."""
    import pandas as pd

    return pd.concat([
        invariance.assign(value=invariance["accuracy"],
                          panel=[f"{label(m)}: rotated accuracy" for m in invariance["model"]]),
        invariance.assign(value=invariance["gap"],
                          panel=[f"{label(m)}: gap acc(0) − acc(φ)" for m in invariance["model"]])])


def margin_band(relative, settings) -> tuple[float, float, str]:
    """The equivalence margin drawn in the relative-gap figure: ``(low, high, label)``, ±``GAP_MARGIN``
    of the mean relative gap (:func:`relative_gap`'s rows) of the models at the smallest training ε."""
    natural = relative[relative["eps_train"] == min(settings.eps_train)]["relative_gap"].mean()
    return (natural * (1 - GAP_MARGIN), natural * (1 + GAP_MARGIN),
            f"±{GAP_MARGIN:.0%} of the natural model's: margin")


def per_phi_table(tables):
    """The ICLR row's per-φ changes (:func:`per_phi_changes`) as the chapter shows them: display
    names, readable column names, no standard error, to 4 decimals."""
    return (per_phi_changes(tables["invariance"])
            .assign(model=lambda t: t["model"].map(label))
            .rename(columns={"phi": "φ (°)", "estimate": "Δ relative gap", "lo": "90% CI low",
                             "hi": "90% CI high", "equivalent": "inside ±margin"})
            .drop(columns="se").round(4))


def closing(found, invariance, robustness, pgd, settings, profile: str) -> str:
    """Notebook 03's closing Markdown: the claim rows ``found`` (:func:`~invrob.studies.render.findings`),
    then per model the invariance gap (mean over seeds) at the smallest and the largest training ε and
    its change, at the φ nearest 45° and at the largest φ, then the largest amount by which PGD
    overstates robust accuracy against AutoAttack (:func:`invrob.experiments.pgd_overstatement`)."""
    from ..experiments import pgd_overstatement as overstated

    S = settings
    gap = invariance.groupby(["model", "eps_train", "phi"])["gap"].mean()
    phi_max, phi_mid = max(S.phis), min(S.phis, key=lambda p: abs(p - 45))
    e0, e1 = min(S.eps_train), max(S.eps_train)
    lines = [f"- **{label(m)}**, φ = {phi:g}°: invariance gap "
             f"{gap[m, e0, phi]:.1%} at ε = {e0:g} vs {gap[m, e1, phi]:.1%} at ε = {e1:g} "
             f"(change {gap[m, e1, phi] - gap[m, e0, phi]:+.1%})."
             for m in S.models for phi in (phi_mid, phi_max)]
    worst = overstated(robustness, pgd)["overstated"].max()
    return (findings(found, profile) + "\n\nPer model, mean over seeds:\n\n"
            + "\n".join(lines)
            + f"\n\nPGD-{S.pgd_steps} overstates robust accuracy by up to "
            f"{worst:.1%} against AutoAttack on these models.")
