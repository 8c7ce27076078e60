"""The trade-off chapter's claims (notebook 05), for :mod:`~invrob.studies.tradeoff`: each
:class:`~invrob.studies.base.Claim` with the function that judges it on the accuracy table,
its rule text, and the rule it replaced (:class:`~invrob.studies.base.Rule`).

(a) rotation augmentation lowers adversarial robustness progressively; (b) adversarial training
lowers spatial robustness progressively, on Engstrom's grid and on rotations alone; (c) CuSP
lies on or beyond the front of the fixed recipes (:func:`dominated_share`), on both spatial
axes; (a) carried over to worst-case spatial training; and Yang et al.'s worst-case spatial
training with a regulariser at no cost in clean accuracy. Each is judged per model and
dataset, never pooled.
"""
from __future__ import annotations

from .base import NOT_RUN, POST_HOC, Claim, Rule
from .options import note_margin, option
from .rules import (ALPHA, PROGRESSIVE_RULE, bootstrap_change, change_over_grid, change_test, combine, label,
                    paired_points,
                    ranges_left_out, seed_arrays)
from .tradeoff_recipes import CURRICULUM, DATASET_LABELS, RECIPES_OF, REGULARISED, WORST_CASE

# Among the correctly classified points (each grid holds the identity, so a point it leaves correct is
# correct clean): the measure divided by the clean accuracy on the same points.
AMONG_CORRECT = {"spatial_grid": "clean_spatial", "rotation_30": "clean_spatial", "adversarial": "clean"}
SPATIAL, ADVERSARIAL = "spatial_grid", "adversarial"
FLOOR = 0.05  # a measurement whose starting mean is below 5% has no room to show a drop
NO_COST_MARGIN = 0.01  # Yang et al.: a clean-accuracy loss under 1 point counts as no cost

# the recipes the progressive claims read, the natural one at the start of each grid
ROTATION_ONLY = ["natural", "rotation 30°", "rotation 90°", "rotation 180°"]  # those a profile trains
ROTATION_REACH = max(RECIPES_OF["mnist"][name].get("theta", 0.0) for name in ROTATION_ONLY)  # the paper's largest range
ADVERSARIAL_ONLY = ["natural", *(name for recipes in RECIPES_OF.values() for name, fields in recipes.items()
                                 if set(fields) == {"eps", "warmup"})]  # both datasets' ε levels


def _level(value, level: str, dataset: str) -> str:
    """A grid level as the chapter writes it: θ in degrees; ε in pixel units, CIFAR-10's in 255ths."""
    if level == "theta":
        return f"{value:g}°"
    return f"{value * 255:g}/255" if dataset == "cifar10" and value else f"{value:g}"


def _rows(acc, names):
    return acc[acc["recipe"].isin(names)]


def _per_model(acc):
    """``(name, model, rows)`` per model and dataset, in table order; a model trained on both
    datasets is two entries (named with the dataset), never pooled."""
    pairs = list(dict.fromkeys(zip(acc["model"], acc["dataset"])))
    twice = {m for m, _ in pairs if sum(other == m for other, _ in pairs) > 1}
    for m, d in pairs:
        yield (label(m) + (f" on {DATASET_LABELS[d]}" if m in twice else ""), m,
               acc[(acc["model"] == m) & (acc["dataset"] == d)])


# the column that counts the test points each seed's ``value`` is measured on (the rest: n_spatial)
N_POINTS = {"adversarial": "n_attack", "joint": "n_attack"}


def points_each(rows, value) -> str:
    """How many test points each seed's ``value`` is measured on (its interval resamples seeds only)."""
    column = N_POINTS.get(value, "n_spatial")
    if column not in rows or value == "clean":
        return ""
    n = sorted(set(rows[column].astype(int)))
    return f"each seed on {n[0]} test points" if len(n) == 1 else f"each seed on {n[0]}–{n[-1]} test points"


def _in_parentheses(text: str) -> str:
    return f" ({text})" if text else ""


def _means_and_conditional(rows, level, value, per_point: bool = False) -> str:
    """Per-level means of ``value`` and, where defined, the same among the correctly classified points."""
    means = rows.groupby(level)[value].mean()
    dataset = rows["dataset"].iloc[0]
    sym = "θ" if level == "theta" else "ε"
    text = "means by " + sym + ": " + ", ".join(f"{v:.1%} at {_level(k, level, dataset)}"
                                               for k, v in means.items())
    if value in AMONG_CORRECT and AMONG_CORRECT[value] in rows:
        ratio = (rows[value] / rows[AMONG_CORRECT[value]]).groupby(rows[level]).mean()
        text += "; among correctly classified points: " + ", ".join(f"{v:.1%}" for v in ratio)
    each = "" if per_point else points_each(rows, value)  # a per-point interval names its points itself
    return text + (f"; {each}" if each else "")


def attacked_points(points, acc, model: str, dataset: str, names):
    """The per-point AutoAttack rows (``robust_points``) of one model's ``names`` recipes at the chapter's
    ε, which the ``adversarial`` column averages; None when the rule reads seed means only (rule option
    ``points``: False, the rule before 2026-12-06) or the run has no such table."""
    if points is None or not option("points", True) or not len(points):
        return None
    mine = points[(points["model"] == model) & (points["dataset"] == dataset) & points["recipe"].isin(names)]
    eps = acc.loc[(acc["model"] == model) & (acc["dataset"] == dataset), "eps_attack"]
    if len(eps):
        mine = mine[(mine["eps"] - float(eps.iloc[0])).abs() < 1e-9]
    return mine if len(mine) else None


def _progressive_drop(acc, names, level, value, what, points=None) -> tuple[str, str]:
    """The change of ``value`` over ``level`` among the ``names`` recipes, per model (floor rule).

    Slopes per 45° of θ, per 0.1 of ε on MNIST and per 1/255 on CIFAR-10. ``points``: the per-point
    table of ``value`` (AutoAttack's ``robust_points``), whose endpoint change then resamples seeds
    and test points."""
    parts, verdicts = [], []
    for name, model, model_rows in _per_model(acc):
        rows = _rows(model_rows, names)
        if rows[level].nunique() < 2:
            continue
        dataset = rows["dataset"].iloc[0]
        mine = attacked_points(points, acc, model, dataset, names) if value == ADVERSARIAL else None
        sym = "θ" if level == "theta" else "ε"
        start = rows[rows[level] == rows[level].min()][value].mean()
        if start < FLOOR:
            verdicts.append("inconclusive")
            parts.append(f"{name}: {start:.1%} at {sym} = {_level(rows[level].min(), level, dataset)}, "
                         f"below the {FLOOR:.0%} floor (no room to drop)")
            continue
        per, per_text = ((45, "45°") if level == "theta" else (1 / 255, "1/255 of ε") if dataset == "cifar10"
                         else (0.1, "0.1 of ε"))
        text, verdict, lo, hi = change_over_grid(rows, level, value, "decrease", per, "", per_text=per_text,
                                                 points=mine)
        verdicts.append(verdict)
        parts.append(f"{name} {sym} = {_level(lo, level, dataset)} → {_level(hi, level, dataset)}: {text} "
                     f"({_means_and_conditional(rows, level, value, per_point=mine is not None)})")
    if not parts:
        return f"no {what} in this run", NOT_RUN
    return "; ".join(parts), combine(verdicts)


def _adversarial_drops_with_rotation(tables) -> tuple[str, str]:
    acc = tables["accuracy"]
    text, verdict = _progressive_drop(acc, ROTATION_ONLY, "theta", ADVERSARIAL, "rotation-only recipes",
                                      points=tables.get("robust_points"))
    if verdict != NOT_RUN:
        top = acc.loc[acc["recipe"].isin(ROTATION_ONLY), "theta"].max()
        text = "; ".join([text, *ranges_left_out(top, ROTATION_REACH)])
    at = ""
    if "eps_attack" in acc:
        budgets = acc[["dataset", "eps_attack"]].drop_duplicates()
        at = " at ε = " + ", ".join(_level(e, "eps", d) + (f" ({DATASET_LABELS[d]})" if len(budgets) > 1 else "")
                                    for d, e in budgets.itertuples(index=False))
    return f"AutoAttack-grade robust accuracy{at} of the natural and rotation-augmented recipes: {text}", verdict


def _spatial_drops_with_eps(value: str, what: str):
    def measure(tables) -> tuple[str, str]:
        text, verdict = _progressive_drop(tables["accuracy"], ADVERSARIAL_ONLY, "eps_train", value,
                                          "adversarial recipes")
        return f"{what} of the natural and adversarially trained recipes: {text}", verdict
    return measure


def dominated_share(acc, model: str, n_boot: int = 2000, seed: int = 0, spatial: str = SPATIAL
                    ) -> tuple[float, list[str]]:
    """How often (share of bootstrap replicates over seeds) a fixed recipe dominates CuSP.

    Each replicate draws every recipe's seeds with replacement and compares the recipes'
    mean (``spatial``, adversarial) accuracies; CuSP is dominated when some fixed recipe
    is at least as good in both and better in one (:func:`invrob.pareto.dominates`).
    Each recipe's replicates are stretched about its mean by
    :func:`invrob.stats.few_seeds_factor` (a bootstrap over 5 seeds is too narrow, as
    for every interval of the studies). Returns the share and the fixed recipes that
    dominate CuSP's seed means.
    """
    import numpy as np

    from ..pareto import dominates
    from ..stats import few_seeds_factor

    rows = acc[acc["model"] == model]
    per = {name: group[[spatial, ADVERSARIAL]].to_numpy(dtype=float)
           for name, group in rows.groupby("recipe", sort=False)}
    if CURRICULUM not in per:
        return float("nan"), []
    fixed = [n for n in per if n != CURRICULUM]
    means = {n: v.mean(0) for n, v in per.items()}
    over = [n for n in fixed if dominates(means[n], means[CURRICULUM])]
    rng = np.random.default_rng(seed)
    draws = {}
    for name, values in per.items():  # (n_boot, 2) replicate means per recipe
        boot = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
        stretch = few_seeds_factor(len(values)) if len(values) > 1 else 1.0
        draws[name] = means[name] + stretch * (boot - means[name])
    cusp = draws[CURRICULUM]
    dominated = np.zeros(n_boot, dtype=bool)
    for name in fixed:
        dominated |= (draws[name] >= cusp).all(1) & (draws[name] > cusp).any(1)
    return float(dominated.mean()), over


def _cusp_on_front(spatial: str, what: str):
    from ..pareto import mixture_pair

    def measure(tables) -> tuple[str, str]:
        acc = tables["accuracy"]
        parts, verdicts = [], []
        for name, m, rows in _per_model(acc):
            if CURRICULUM not in set(rows["recipe"]) or rows["seed"].nunique() < 2:
                parts.append(f"{name}: no CuSP models, or one seed")
                verdicts.append("inconclusive")
                continue
            share, over = dominated_share(rows, m, spatial=spatial)
            means = rows.groupby("recipe")[spatial].mean()
            floor = [r for r, v in means.items() if v < FLOOR]
            c = rows[rows["recipe"] == CURRICULUM][[spatial, ADVERSARIAL]].mean()
            fixed = rows[rows["recipe"] != CURRICULUM].groupby("recipe", sort=False)[[spatial, ADVERSARIAL]].mean()
            # Sensitivity: with no fixed recipe beating CuSP, does a mixture of two? (The pair named
            # is the segment of the mixtures' front that the figure draws.)
            pair = None if over or len(fixed) < 2 else mixture_pair(fixed.to_numpy(), c.to_numpy())
            mixed = pair and " and ".join(fixed.index[sorted(set(pair))])  # in the table's order
            verdicts.append("agree" if share <= ALPHA else "disagree" if share >= 1 - ALPHA else "inconclusive")
            parts.append(f"{name}: CuSP at {c[spatial]:.1%} ({what}), AutoAttack {c[ADVERSARIAL]:.1%}; "
                         f"dominated by {', '.join(over) if over else 'no fixed recipe'} on the seed means; "
                         f"dominated in {share:.0%} of bootstrap replicates over seeds"
                         + ("" if over or len(fixed) < 2 else
                            f"; dominated by a random mixture of the {mixed} models (sensitivity, not the rule)"
                            if mixed else "; not dominated by any random mixture of two fixed recipes' models "
                            "(sensitivity, not the rule)")
                         + (f"; {len(floor)} of {len(means)} recipes below {FLOOR:.0%} on this axis "
                            f"(for them the comparison rests on AutoAttack alone)" if floor else ""))
        if not (acc["recipe"] == CURRICULUM).any():
            return "no CuSP models in this run", NOT_RUN
        return f"CuSP against the fixed recipes ({what}, AutoAttack-grade accuracy): " + \
            "; ".join(parts), combine(verdicts)
    return measure


def _against_natural(acc, recipe: str, judge, missing: str) -> tuple[str, str]:
    """Per model (and dataset) with both arms: ``judge(name, arrays, rows)`` → ``(text, verdict)``, where
    ``arrays(value)`` gives the natural and ``recipe`` seed means of ``value``, paired by seed, and
    ``rows`` are the model's rows of both arms."""
    parts, verdicts = [], []
    for name, _, model_rows in _per_model(acc):
        rows = _rows(model_rows, ["natural", recipe])
        if set(rows["recipe"]) != {"natural", recipe}:
            continue
        rows = rows.assign(arm=(rows["recipe"] == recipe).astype(int))
        text, verdict = judge(name, lambda value, rows=rows: seed_arrays(rows, "arm", 0, 1, value), rows)
        parts.append(text)
        verdicts.append(verdict)
    if not parts:
        return missing, NOT_RUN
    return "; ".join(parts), combine(verdicts)


def _worst_case_costs_adversarial(tables) -> tuple[str, str]:
    acc = tables["accuracy"]

    def judge(name, arrays, rows):
        model, dataset = rows["model"].iloc[0], rows["dataset"].iloc[0]
        mine = attacked_points(tables.get("robust_points"), acc, model, dataset, ["natural", WORST_CASE])
        pairs = (paired_points(mine.assign(arm=(mine["recipe"] == WORST_CASE).astype(int)), "arm", 0, 1)
                 if mine is not None and set(mine["recipe"]) == {"natural", WORST_CASE} else arrays(ADVERSARIAL))
        text, verdict = change_test(*pairs, "decrease")
        each = "" if pairs[0].ndim == 2 else _in_parentheses(points_each(rows, ADVERSARIAL))
        return f"{name}, natural → worst-of-10 spatial training: AutoAttack-grade accuracy {text}{each}", verdict
    return _against_natural(acc, WORST_CASE, judge, "no worst-case spatial recipe in this run")


def _worst_case_no_tradeoff(tables) -> tuple[str, str]:
    def judge(name, arrays, rows):
        a, b = arrays("clean")
        if len(a) < 2:
            return f"{name}: 1 seed, no interval", "inconclusive"
        s_text, s_v = change_test(*arrays(SPATIAL), "increase")
        c_text, _ = change_test(a, b, "decrease")
        margin = option("margin_factor", 1.0) * NO_COST_MARGIN
        low, high = bootstrap_change(a, b).ci
        note_margin(margin)
        # no cost: the clean-accuracy change is shown to lie above −margin (non-inferiority)
        cost_v = "agree" if low > -margin else "disagree" if high < -margin else "inconclusive"
        grid = s_text + _in_parentheses(points_each(rows, SPATIAL))
        return (f"{name}, natural → worst-of-10 + regulariser: grid accuracy {grid}; clean accuracy {c_text}",
                combine([s_v, cost_v]))
    return _against_natural(tables["accuracy"], REGULARISED, judge, "no regularised worst-case recipe in this run")


_ENDPOINTS = Rule("endpoint and slope", "the paired change between the ends of the grid and the slope, both "
                  "one-sided at 0.05", "before the first 5-seed cpu run",
                  "cannot see a non-monotone curve: a drop that sits in the last step passes", {"progressive": False})

_TESTS = ("both must agree, one-sided at level 0.05: the paired change between the ends of the grid "
          "(bootstrap over seeds{points}) and the slope over the whole grid; agree if both show a decrease, "
          f"disagree if both show an increase, else inconclusive; inconclusive also when the natural "
          f"model's mean is below {FLOOR:.0%} (a floor leaves no room to drop); and " + PROGRESSIVE_RULE)

_POINTS = (" and test points: AutoAttack's per-point results, every seed measured on the same points; before "
           "2026-12-06, seed means")
_SEED_MEANS = Rule("seed means", "the same tests, the endpoint change bootstrapped over seeds only, each seed's "
                   "accuracy taken as exact", "before 2026-12-06",
                   "ignores the sampling of the test points (100 a seed at cpu): an interval about half as wide "
                   "as chapter 07's on the same comparison", {"progressive": True, "points": False})
_ENDPOINTS_SEED_MEANS = Rule(_ENDPOINTS.name, _ENDPOINTS.text + " (seed means)", _ENDPOINTS.set_when, _ENDPOINTS.why,
                             {"progressive": False, "points": False})


def _recipes_read(names):
    """A claim's ``reads``: the models of the ``names`` recipes (the front claims read every recipe)."""
    return lambda models: models["recipe"].isin(names)


CLAIMS = (
    Claim("Rotation augmentation lowers adversarial robustness progressively",
          "NeurIPS 2021 (a): as the range of rotation augmentation grows, adversarial robustness drops "
          "progressively",
          "per model, AutoAttack-grade robust accuracy at the chapter's ε of the natural and rotation-only "
          "recipes, against θ; " + _TESTS.replace("{points}", _POINTS),
          ("accuracy",), _adversarial_drops_with_rotation, uses=("robust_points",), reads=_recipes_read(ROTATION_ONLY),
          key="rotation augmentation costs ℓ∞ robustness", versions=("NeurIPS 2021",),
          options={"progressive": True, "points": True},
          rule_set="2026-12-06, after a referee read of a non-monotone curve; test points resampled since a "
                   "second read the same day", post_hoc_rule=True, history=(_SEED_MEANS, _ENDPOINTS_SEED_MEANS)),
    Claim("Adversarial training lowers spatial robustness progressively: grid attack",
          "NeurIPS 2021 (b): as the ε of adversarial training grows, spatial robustness (rotations and "
          "translations) drops progressively",
          "per model, accuracy under Engstrom et al.'s grid attack (31 rotations in ±30° × 5 × 5 "
          "translations in ±3 px) of the natural and adversarial-only recipes, against ε; "
          + _TESTS.replace("{points}", ""),
          ("accuracy",), _spatial_drops_with_eps(SPATIAL, "Engstrom grid accuracy (±30°, ±3 px)"),
          reads=_recipes_read(ADVERSARIAL_ONLY), key="adversarial training lowers spatial robustness progressively",
          versions=("NeurIPS 2021",), options={"progressive": True}, rule_set="2026-12-06, after a referee read of a non-monotone curve",
          post_hoc_rule=True, history=(_ENDPOINTS,)),
    Claim("Adversarial training lowers spatial robustness progressively: rotation grid",
          "NeurIPS 2021 (b), rotations alone",
          "per model, accuracy under the worst of 31 rotations in ±30° of the natural and adversarial-only "
          "recipes, against ε; " + _TESTS.replace("{points}", ""),
          ("accuracy",), _spatial_drops_with_eps("rotation_30", "rotation grid accuracy (±30°)"),
          reads=_recipes_read(ADVERSARIAL_ONLY), key="adversarial training lowers spatial robustness progressively",
          versions=("NeurIPS 2021",), options={"progressive": True}, rule_set="2026-12-06, after a referee read of a non-monotone curve",
          post_hoc_rule=True, history=(_ENDPOINTS,)),
    Claim("CuSP lies on or beyond the front of the fixed recipes",
          "NeurIPS 2021: the curriculum CuSP moves towards the Pareto front of spatial and adversarial "
          "robustness",
          f"per model, in (grid accuracy, AutoAttack-grade accuracy): the share of bootstrap replicates "
          f"(seeds resampled per recipe, widened for few seeds) in which some fixed recipe — same epochs, "
          f"data and PGD steps — "
          f"dominates CuSP's mean; agree if at most {ALPHA:g} (CuSP shown undominated at level {ALPHA:g}), "
          f"disagree if at least {1 - ALPHA:g} (shown dominated), else inconclusive",
          ("accuracy",), _cusp_on_front(SPATIAL, "Engstrom grid"), key="CuSP moves towards the Pareto front",
          versions=("NeurIPS 2021",)),
    Claim(f"CuSP lies on or beyond the front of the fixed recipes: rotation grid {POST_HOC}",
          "NeurIPS 2021, as the row above, on the spatial axis CuSP trains for; this row was added after the "
          "first cpu run, in which every recipe but worst-of-k training scored 0% on Engstrom's grid "
          "(CuSP never sees translations)",
          f"as the row above (share of bootstrap replicates in which a fixed recipe dominates CuSP's mean; "
          f"agree if at most {ALPHA:g}, i.e. undominated at level {ALPHA:g}; disagree if at least {1 - ALPHA:g}), "
          f"with the worst of 73 rotations in "
          f"±180° as the spatial axis; a post-hoc analysis: read it as exploratory",
          ("accuracy",), _cusp_on_front("rotation_grid", "rotation grid ±180°"), key="CuSP moves towards the Pareto front",
          versions=("NeurIPS 2021",), rule_set="after the first cpu run", post_hoc_rule=True),
    Claim("Worst-case spatial training costs ℓ∞ robustness",
          "NeurIPS 2021 (a), carried over by us from rotation augmentation to Engstrom et al.'s "
          "worst-of-10 spatial training",
          "per model, natural vs worst-of-10 spatial training, paired by seed and test point (bootstrap over "
          "seeds and AutoAttack's per-point results; before 2026-12-06, seed means): the change in "
          "AutoAttack-grade accuracy, one-sided at level 0.05 (agree if shown to fall, disagree if shown to rise, "
          "else inconclusive)",
          ("accuracy",), _worst_case_costs_adversarial, uses=("robust_points",),
          reads=_recipes_read(["natural", WORST_CASE]), key="worst-case spatial training costs ℓ∞ robustness",
          kind="ours", options={"points": True},
          rule_set="2026-12-06, after a referee read: test points resampled", post_hoc_rule=True,
          history=(Rule("seed means", "the same test, bootstrapped over seeds only, each seed's accuracy taken "
                        "as exact", "before 2026-12-06", "ignores the sampling of the test points",
                        {"points": False}),)),
    Claim("Worst-case spatial training with an invariance regulariser buys spatial robustness at no cost "
          "in clean accuracy",
          "Yang, Wang, Heinze-Deml (NeurIPS 2019): training on worst-case transformations with an "
          "invariance-inducing regulariser boosts spatial robustness with no trade-off against accuracy",
          f"per model, natural vs worst-of-10 + regulariser (λ = 1 times the mean squared difference "
          f"between the logits of an image and of its worst transform), paired by seed: agree if grid accuracy "
          f"rises (one-sided, level 0.05) and clean accuracy is shown to fall by less than "
          f"{NO_COST_MARGIN:.0%} (lower end of its 90% interval above −{NO_COST_MARGIN:g}); disagree if it "
          f"is shown to fall by more (upper end below −{NO_COST_MARGIN:g}) or grid accuracy is shown to "
          f"fall; else inconclusive",
          ("accuracy",), _worst_case_no_tradeoff, reads=_recipes_read(["natural", REGULARISED]),
          key="worst case + regulariser: no trade-off (Yang et al.)", kind="external", margins=True),
)
