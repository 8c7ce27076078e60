"""The adversarial study's claims and their rules (notebooks 03 and 04): the invariance gap stays
essentially unchanged as ε grows (ICLR 2020; an equivalence test at every φ), spatial robustness
drops progressively (arXiv v1, NeurIPS 2021), and adversarial and small-rotation perturbations are
nearly orthogonal (per point, against a matched null). The margins are fixed here, before the data
they judge. Bound by :class:`~invrob.studies.adversarial.AdversarialStudy`.
"""
from __future__ import annotations

from ..errors import InvrobError
from .base import Claim, Rule
from .options import note_margin, option, record_evidence
from .rules import (ALPHA, PROGRESSIVE_RULE, bootstrap_change, change_over_grid, combine, ends, label,
                    models_in, seed_arrays, trend)

TAGS = ("model", "dataset", "theta", "eps_train", "seed")  # the columns that name a model in every table
GAP_MARGIN = 0.10     # mean relative invariance gap within ±10% of the natural model's: "unchanged"
COSINE_MARGIN = 0.25  # adversarial–tangent |cos| at most 25% above the null's: "as orthogonal" (the factor fixed
# before the first 5-seed cpu run, against a random ℓ∞ corner; the matched null replaced that corner after it)
MIN_GAP_MARGIN = 0.01  # ... but at least 0.01 (a perfectly invariant natural model would allow no change)
SPATIAL_PHI = 30.0    # the NeurIPS spatial claim is read at Engstrom et al.'s ±30°
CLAIM_K = 10          # subspace dimension the PCA comparison is shown at (the largest k if absent)


def add_gap(invariance):
    """A copy of a rotated-accuracy table with the *invariance gap* column ``gap``.

    ``gap = accuracy(φ = 0) − accuracy(φ)`` of the same model (same model, dataset,
    θ, ε, seed): how much accuracy rotations up to φ cost. 0 at φ = 0; a model
    that is fully rotation invariant has gap 0 at every φ.
    """
    needed = ["model", "eps_train", "seed", "phi", "accuracy"]
    missing = [c for c in needed if c not in invariance.columns]
    if missing:
        raise InvrobError(f"add_gap needs a rotated-accuracy table with columns {', '.join(needed)}; "
                          f"missing {', '.join(missing)}")
    frame = invariance.copy()
    keys = [c for c in TAGS if c in frame.columns]
    clean = frame[frame["phi"] == 0].set_index(keys)["accuracy"]
    if clean.index.duplicated().any():
        raise InvrobError("add_gap: more than one φ = 0 row for a model; one row per model and φ expected")
    reference = clean.reindex(frame.set_index(keys).index).to_numpy()
    if (reference != reference).any():  # NaN: a model without a φ = 0 row
        raise InvrobError("add_gap: every model needs its accuracy at φ = 0 (the unrotated reference)")
    frame["gap"] = reference - frame["accuracy"]
    return frame


def relative_gap(invariance, per_phi: bool = False):
    """Per model (model, ε, seed): the mean over φ > 0 of the relative invariance gap
    ``1 − acc(φ)/acc(0)`` — the share of its correctly classified points a model loses to
    random rotations, averaged over the test ranges. Dividing by the clean accuracy keeps
    adversarial training's loss of clean accuracy out of it. Only the φ every model was
    measured at are averaged (so an incomplete grid cannot bias a comparison).
    Columns: the tags, relative_gap (``per_phi``: not averaged, one row per model and φ, with phi)."""
    keys = [c for c in TAGS if c in invariance.columns]
    rows = invariance[invariance["phi"] > 0]
    rows = rows.assign(relative_gap=rows["gap"] / (rows["gap"] + rows["accuracy"]))
    table = rows.pivot_table(index=keys, columns="phi", values="relative_gap")
    shared = table.columns[table.notna().all(axis=0)]
    if len(shared) == 0:
        raise InvrobError("relative_gap: no test range φ > 0 was measured for every model")
    if per_phi:  # one row per model and φ (the φ every model was measured at)
        return table[shared].stack().rename("relative_gap").reset_index()
    return table[shared].mean(axis=1).rename("relative_gap").reset_index()


def nets_left_out(frame) -> list[str]:
    """A claim text's parts for the paper's own nets a run did not measure (``frame``: a table with
    ``model`` and ``dataset``): LeNet on MNIST (the cpu and gpu profiles train Wong et al.'s net in its
    place, chapter 03 says why) and the ResNet on CIFAR-10 (the paper profile's, with the data)."""
    if "dataset" not in frame.columns:
        frame = frame.assign(dataset="mnist")
    mnist = set(frame.loc[frame["dataset"] == "mnist", "model"])
    parts = [] if "lenet" in mnist else [
        "the paper's LeNet on MNIST: not in this run" + (" (Wong et al.'s net in its place)" if mnist else "")]
    if not (frame["dataset"] == "cifar10").any():
        parts.append("the paper's ResNet on CIFAR-10: not in this run")
    return parts


def _gap_unchanged(tables) -> tuple[str, str]:
    """The ICLR claim. Rule options: ``per_phi`` (default True: an intersection–union equivalence
    test at every test range φ; False: the relative gap averaged over φ, the rule of 2026-11) and
    ``margin_factor`` (scales the margin)."""
    rel_all = relative_gap(tables["invariance"], per_phi=True)
    per_phi = option("per_phi", True)
    factor = option("margin_factor", 1.0)
    parts, verdicts = [], []
    for m in models_in(rel_all):
        rows_phi = rel_all[rel_all["model"] == m]
        rows = rows_phi.groupby(["model", "eps_train", "seed"], as_index=False)["relative_gap"].mean()
        lo, hi = ends(rows, "eps_train")
        a, b = seed_arrays(rows, "eps_train", lo, hi, "relative_gap")
        if len(a) < 2:
            verdicts.append("inconclusive")
            parts.append(f"{label(m)}: fewer than 2 seeds, no interval")
            continue
        margin = factor * max(GAP_MARGIN * float(a.mean()), MIN_GAP_MARGIN)
        if per_phi:
            text, verdict = _every_phi(rows_phi, lo, hi, margin)
            verdicts.append(verdict)
            parts.append(f"{label(m)}, ε = {lo:g} → {hi:g}, margin ±{margin:.3f} at every φ: {text}")
            continue
        boot = bootstrap_change(a, b)
        note_margin(margin)
        low, high = boot.ci
        verdict = "agree" if -margin < low and high < margin else \
            "disagree" if low > margin or high < -margin else "inconclusive"
        verdicts.append(verdict)
        slope_text, slope_v = trend(rows, "eps_train", "relative_gap", "increase", per=0.1, unit=" of ε",
                                    fmt="+.3f")
        reading = {"agree": "unchanged (ICLR 2020)",
                   "inconclusive": "the interval straddles the margin"}.get(
            verdict, "the gap grows: invariance drops (arXiv v1)" if boot.estimate > 0
            else "the gap shrinks: more invariant (neither version)")
        parts.append(f"{label(m)}, ε = {lo:g} → {hi:g}: {a.mean():.3f} → {b.mean():.3f}, Δ {boot.estimate:+.3f} "
                     f"[90% CI {low:+.3f}, {high:+.3f}], margin ±{margin:.3f}, {len(a)} seeds — {reading}; "
                     f"{slope_text}")
    what = "per φ" if per_phi else "averaged over φ > 0"
    parts += nets_left_out(rel_all)
    return (f"relative invariance gap 1 − acc(φ)/acc(0), {what}, per seed: " + "; ".join(parts),
            combine(verdicts))


def per_phi_changes(invariance):
    """Per model and test range φ > 0: the change of the relative invariance gap from the smallest
    to the largest training ε, paired by seed, with its 90% interval (the table behind the ICLR
    row's per-φ rule). Columns: model, phi, estimate, lo, hi, se, equivalent, margin."""
    import pandas as pd

    from .. import trend as trends

    rel = relative_gap(invariance, per_phi=True)
    frames = []
    for m in models_in(rel):
        rows = rel[rel["model"] == m]
        lo, hi = ends(rows, "eps_train")
        means = rows.groupby(["model", "eps_train", "seed"])["relative_gap"].mean().reset_index()
        a, _ = seed_arrays(means, "eps_train", lo, hi, "relative_gap")
        if len(a) < 2:
            continue
        margin = max(GAP_MARGIN * float(a.mean()), MIN_GAP_MARGIN)
        result = trends.every_equivalent(_phi_differences(rows, lo, hi), "phi", margin, alpha=ALPHA)
        frames.append(result.table.assign(model=m, margin=margin))
    if not frames:
        return pd.DataFrame(columns=["model", "phi", "estimate", "lo", "hi", "se", "equivalent", "margin"])
    return pd.concat(frames, ignore_index=True)[["model", "phi", "estimate", "lo", "hi", "se", "equivalent", "margin"]]


def _phi_differences(rows, lo, hi):
    """Per seed and φ: relative gap at ε = hi minus at ε = lo (seeds measured at both)."""
    table = rows.pivot_table(index=["seed", "phi"], columns="eps_train", values="relative_gap").dropna()
    return (table[hi] - table[lo]).rename("difference").reset_index()


def _every_phi(rows, lo, hi, margin) -> tuple[str, str]:
    """Intersection–union equivalence over φ: agree iff the gap's change is inside ±margin at every
    φ; disagree iff at some φ its interval, Bonferroni-widened over the K values of φ (level 0.05/K
    each), lies wholly outside; else inconclusive."""
    from .. import trend as trends

    diffs = _phi_differences(rows, lo, hi)
    result = trends.every_equivalent(diffs, "phi", margin, alpha=ALPHA)
    k = diffs["phi"].nunique()
    strict = trends.every_equivalent(diffs, "phi", margin, alpha=ALPHA / k).table
    outside = strict[(strict["lo"] > margin) | (strict["hi"] < -margin)]
    table = result.table
    seeds = int(diffs["seed"].nunique())
    for row in table.itertuples():
        record_evidence(row.estimate, row.se, seeds, margin=margin)
    worst = table.loc[(table["estimate"].abs()).idxmax()]
    text = (f"equivalent at {int(table['equivalent'].sum())} of {len(table)} φ; largest change at φ = "
            f"{worst['phi']:g}°: {worst['estimate']:+.3f} [90% CI {worst['lo']:+.3f}, {worst['hi']:+.3f}]; "
            f"the average over φ {result.average.estimate:+.3f} [{result.average.interval[0]:+.3f}, "
            f"{result.average.interval[1]:+.3f}] (shown, not the rule)")
    if result.declared:
        return text + " — unchanged at every φ (ICLR 2020)", "agree"
    if len(outside):
        grows = bool((outside["lo"] > margin).any())
        reading = ("the gap grows: invariance drops (arXiv v1)" if grows
                   else "the gap shrinks: more invariant (neither version)")
        return (text + f" — outside the margin at φ = {', '.join(f'{p:g}°' for p in outside['phi'])} "
                f"(Bonferroni over {k} φ): {reading}"), "disagree"
    return text + " — not shown equivalent at every φ", "inconclusive"


def _spatial_drops(tables) -> tuple[str, str]:
    worst = tables["worst_of_k"]
    phi = SPATIAL_PHI if (worst["phi"] == SPATIAL_PHI).any() else float(worst.loc[worst["phi"] > 0, "phi"].min())
    keys = ["model", "eps_train", "seed"]
    if not (worst["phi"] == 0).any():
        raise InvrobError("the worst-of-k table has no φ = 0 rows (the clean accuracy the claim divides by): "
                          "rerun notebook 03")
    clean = worst[worst["phi"] == 0].set_index(keys)["accuracy"]
    at = worst[worst["phi"] == phi].copy()
    # among the points the model classifies correctly: the cost of adversarial training in
    # clean accuracy is not counted as lost spatial robustness
    at["conditional"] = at["accuracy"].to_numpy() / clean.reindex(at.set_index(keys).index).to_numpy()
    parts, verdicts = [], []
    for m in models_in(at):
        text, verdict, lo, hi = change_over_grid(at[at["model"] == m], "eps_train", "conditional", "decrease",
                                                 0.1, " of ε")
        verdicts.append(verdict)
        parts.append(f"{label(m)}, ε = {lo:g} → {hi:g}: {text}")
    k = int(at["k"].iloc[0])
    parts += nets_left_out(at)
    return (f"worst-of-{k} rotation accuracy over [−{phi:g}°, {phi:g}°] (grid attack) among the correctly "
            f"classified points: " + "; ".join(parts), combine(verdicts))


def claim_k(ks) -> int:
    """The subspace dimension the PCA comparison is shown at: 10, else the largest k."""
    ks = set(int(k) for k in ks)
    return CLAIM_K if CLAIM_K in ks else max(ks)


NULLS = {"matched_support": "random signs on the pixels the adversarial perturbation touches (same support, "
                              "same ε)",
         "random_sign": "a random corner of the whole ε-ball", "edge_sign": "random signs on the image's edge pixels"}


# the PCA comparisons the orthogonality row shows, from unstructured to the same family, with what each is
PCA_SCALE = ((("adversarial vs rotation", "adversarial vs rotation (data PCs removed)"), "the paper's comparison"),
             (("random vs random", "support-random vs rotation"), "unstructured: random subspaces, noise on the "
                                                                   "pixels the digits use"),
             (("translation vs rotation", "image PCA vs rotation", "translation vs rotation (data PCs removed)"),
              "image-structured families"),
             (("adversarial vs adversarial",), "two halves of the adversarial set: the same family"))


def _nearly_orthogonal(tables) -> tuple[str, str]:
    """The orthogonality claim. Rule options: ``null`` (a column of the tangent-cosine table: default
    ``matched_support``; the rule of 2026-11 used ``random_sign``) and ``margin_factor``."""
    import numpy as np

    null = option("null", "matched_support")
    factor = option("margin_factor", 1.0)
    cos = tables["tangent_cosines"].dropna(subset=["adversarial", null])
    geo = tables.get("subspace_cosines")
    parts, verdicts = [], []
    for m in models_in(cos):
        found, shown = [], len(parts)
        budgets = sorted(cos.loc[cos["model"] == m, "eps_train"].unique())
        budgets = [e for e in budgets if cos.loc[(cos["model"] == m) & (cos["eps_train"] == e), "adversarial"].notna().any()]
        k = max(1, len(budgets))
        for eps in budgets:
            rows = cos[(cos["model"] == m) & (cos["eps_train"] == eps)]
            adv = rows.pivot_table(index="seed", columns="point", values="adversarial").dropna(axis=1)
            rnd = rows.pivot_table(index="seed", columns="point", values=null)[adv.columns]
            a, b = rnd.to_numpy(dtype=float), adv.to_numpy(dtype=float)
            if a.shape[0] < 2:
                found.append("inconclusive")
                continue
            margin = factor * COSINE_MARGIN * float(a.mean())
            boot = bootstrap_change(a, b)
            note_margin(margin)
            low, high = boot.ci
            # disagreement at any of the k budgets: Bonferroni, the lower end at level 0.05/k
            strict = float(np.quantile(boot.samples, ALPHA / k))
            # nearly orthogonal = no more aligned with t(x) than the null, up to the margin (less
            # aligned than the null also supports the claim): a one-sided non-inferiority test
            found.append("agree" if high < margin else "disagree" if strict > margin else "inconclusive")
            parts.append(f"{label(m)} trained at ε = {eps:g}: {b.mean():.3f} vs {a.mean():.3f} (excess "
                         f"{boot.estimate:+.3f} [90% CI {low:+.3f}, {high:+.3f}], margin {margin:.3f}) — "
                         f"{found[-1]}")
        if len(parts) == shown:
            parts.append(f"{label(m)}: 1 seed, no interval")
        verdicts.append(combine(found))
        if geo is not None:
            kk = claim_k(geo["k"])
            g = geo[(geo["model"] == m) & (geo["k"] == kk)].groupby("comparison")["mean_cosine"].mean()
            parts.append(f"for comparison, the paper's own statistic, which has no matched null (no rule reads "
                         f"it): mean principal cosine of the top-{kk} PCA subspaces, averaged over seeds and "
                         f"training ε: " + "; ".join(
                             ", ".join(f"{n} {g[n]:.3f}" for n in names if n in g) + f" ({what})"
                             for names, what in PCA_SCALE if any(n in g for n in names)))
    return ("per test point, |cos| between the adversarial perturbation (PGD at the chapter's ε) and the "
            f"rotation tangent t(x) = d/dφ R_φ x, against {NULLS.get(null, null)}, clipped to the "
            "image box: " + "; ".join(parts), combine(verdicts))


def null_table(tangent_cosines):
    """Mean |cos| with the rotation tangent per model, training ε and perturbation: the adversarial
    one and each null (the matched one first). Columns: model, eps_train, perturbation, mean, n."""
    cos = tangent_cosines.dropna(subset=["adversarial"])
    cols = ["adversarial", *[c for c in NULLS if c in cos.columns]]
    long = cos.melt(id_vars=["model", "eps_train", "seed", "point"], value_vars=cols, var_name="perturbation",
                    value_name="abs_cos")
    return (long.groupby(["model", "eps_train", "perturbation"], sort=False)["abs_cos"].agg(["mean", "size"])
            .rename(columns={"size": "n"}).reset_index())


CLAIMS = (
    Claim("Adversarial training leaves rotation invariance unchanged",
          "ICLR 2020: the invariance gap stays essentially unchanged for every φ as ε grows "
          "(arXiv v1 and NeurIPS 2021 say instead that invariance / spatial robustness drops "
          "progressively: next row)",
          f"per model and test range φ > 0, the relative invariance gap 1 − acc(φ)/acc(0) (relative, so the "
          f"clean accuracy adversarial training costs is not counted), its change Δ from the smallest to the "
          f"largest training ε, paired by seed, bootstrap over seeds; equivalence margin ±{GAP_MARGIN:g} × the "
          f"natural model's value averaged over φ (at least {MIN_GAP_MARGIN:g}), the same at every φ; an "
          f"intersection–union test, as the claim says “for every φ”: agree if the 90% interval lies inside the "
          f"margin at every φ (two one-sided tests at level 0.05 each; no multiplicity correction is needed "
          f"for an intersection–union test), disagree if at some φ it lies wholly outside the margin at level "
          f"0.05/K (Bonferroni over the K values of φ), else inconclusive",
          ("invariance",), _gap_unchanged, key="adversarial training leaves invariance unchanged",
          versions=("ICLR 2020",), options={"per_phi": True}, margins=True,
          rule_set="2026-12-06, after the averaged rule below (the per-φ rule of the first runs, reinstated as "
                   "an intersection–union test, after the 5-seed cpu data had been seen)", post_hoc_rule=True,
          history=(Rule("averaged over φ",
                        f"the relative gap averaged over every φ > 0, one equivalence test, margin as above",
                        "2026-11, after the per-φ rule had been inconclusive at 2 seeds",
                        "one summary avoids testing φ by φ, but lets opposite signs at different φ cancel while "
                        "the claim is “for every φ”",
                        {"per_phi": False}, post_hoc=True),)),
    Claim("Adversarial training lowers spatial robustness progressively",
          "arXiv v1 and NeurIPS 2021: as the adversarial-training ε grows, spatial robustness drops "
          "progressively",
          f"per model, worst-of-k rotation accuracy over [−{SPATIAL_PHI:g}°, {SPATIAL_PHI:g}°] (a grid attack "
          f"on the angle) among the correctly classified points; the paired change from the smallest to the "
          f"largest training ε and the slope over the whole ε grid (bootstrap over seeds), each one-sided at "
          f"level 0.05, must both show a decrease, and so must the monotone-trend test: {PROGRESSIVE_RULE} "
          f"Agree if all show a decrease, disagree if the endpoint change and the slope both show an "
          f"increase, else inconclusive",
          ("worst_of_k",), _spatial_drops, key="adversarial training lowers spatial robustness progressively",
          versions=("arXiv v1", "NeurIPS 2021"), options={"progressive": True},
          rule_set="2026-12-06, after a referee read of a non-monotone curve", post_hoc_rule=True,
          history=(Rule("endpoint and slope",
                        "the paired change between the ends of the ε grid and the slope, both one-sided at 0.05",
                        "before the first 5-seed cpu run",
                        "cannot see a non-monotone curve: a drop that sits in the last step passes",
                        {"progressive": False}),)),
    Claim("Adversarial and small-rotation perturbations are nearly orthogonal",
          "the principal components of adversarial and of small-rotation perturbations span nearly "
          "orthogonal subspaces",
          f"per model and training ε, per test point: |cos| between the adversarial perturbation and the "
          f"rotation tangent t(x), against the matched null: the same random signs ±ε on exactly the pixels "
          f"the adversarial perturbation touches, clipped to [0, 1] (same support, same budget; PCA subspaces "
          f"of image-like families overlap the rotation subspace whatever the model, see the chapter), paired "
          f"over seeds and points; margin {COSINE_MARGIN:g} × the null's mean (the factor fixed before the first 5-seed "
          f"run, the null chosen after it: see the rule history); agree if the "
          f"upper end of the 90% interval of the excess is below the margin at every training ε "
          f"(intersection–union), disagree if at some ε its lower end at level 0.05/K is above it (Bonferroni "
          f"over the K training budgets), else inconclusive",
          ("tangent_cosines",), _nearly_orthogonal, uses=("subspace_cosines",),
          key="adversarial and rotation perturbations are nearly orthogonal", kind="mechanism",
          versions=("ICLR 2020", "arXiv v1", "NeurIPS 2021"), options={"null": "matched_support"}, margins=True,
          rule_set="2026-12-06, after a referee read of the unmatched null", post_hoc_rule=True,
          history=(Rule("random ℓ∞ corner",
                        "the same test against a random corner of the whole ε-ball (no Bonferroni)",
                        "before the first 5-seed cpu run",
                        "unmatched: the tangent lives on stroke edges, the null on every pixel, so any "
                        "edge-localised perturbation beats it", {"null": "random_sign"}),
                   Rule("edge pixels", "the same test against random signs on the image's edge pixels",
                        "2026-12-06, shown beside the matched null", "a second matched null: as localised as t(x)",
                        {"null": "edge_sign"}, post_hoc=True))),
)
