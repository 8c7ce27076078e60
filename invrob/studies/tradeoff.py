"""Spatial vs adversarial robustness (notebook 05): the NeurIPS 2021 trade-off, its Pareto front, CuSP.

Kamath, Deshpande, Subrahmanyam and Balasubramanian's final version (*Can we have it
all? On the Trade-off between Spatial and Adversarial Robustness of Neural Networks*,
NeurIPS 2021) claims a trade-off in both directions and proposes CuSP, a curriculum of
growing (rotation range, ε) stages, to move towards the Pareto front. Yang, Wang and
Heinze-Deml (NeurIPS 2019) report no trade-off for worst-case spatial training.

One model family is trained with several **recipes** (:data:`RECIPES` on MNIST,
:data:`CIFAR_RECIPES` on CIFAR-10, each a set of :class:`~invrob.train.TrainConfig`
fields — recipes are data, not code): natural;
rotation augmentation; PGD adversarial training; both at once (rotate, then attack);
Engstrom et al.'s worst-of-k spatial adversarial training, with and without Yang et al.'s
invariance regulariser; and CuSP. Each model is
measured for clean accuracy, **spatial robustness** (Engstrom et al.'s grid of 31
rotations in ±30° × 5 × 5 translations in ±3 px, a rotation-only grid over ±180°, a
translation-only grid, worst-of-k random, random rotations) and **adversarial
robustness** (AutoAttack-grade, as in the other studies), and the joint attack.
On MNIST the family is LeNet (and the p4 GCNN at ``paper``); on CIFAR-10 (``paper``) it
is the VGG16 of the authors' CuSP code with their training settings (:func:`part`
reads a profile's ``cifar_*`` settings). Both datasets' rows go into one table, and
every claim is judged per model.

Claims (each over seeds, with the studies' statistics, :mod:`invrob.studies.base`):
(a) rotation augmentation lowers adversarial robustness progressively; (b) adversarial
training lowers spatial robustness progressively — both measured with grid / AutoAttack
numbers; (c) CuSP lies on or beyond the front of the fixed recipes; (a) carried over to
worst-case spatial training; and Yang et al.'s worst-case spatial training at no cost in
clean accuracy.
"""
from __future__ import annotations

from .. import gates
from . import tradeoff_tables
from .base import NOT_RUN, POST_HOC, Claim, Rule, Study, Table
from .options import note_margin, option
from .rules import (ALPHA, PROGRESSIVE_RULE, autoattack_of, bootstrap_change, change_over_grid, change_test, combine,
                    label, seed_arrays)

CURRICULUM = "CuSP"
WORST_CASE = "worst-of-10 spatial"
REGULARISED = "worst-of-10 + regulariser"
_WORST = {"k": 10, "max_angle": 30.0, "max_shift": 3.0}  # Engstrom et al.'s worst of 10 in ±30°, ±3 px


def _recipes(levels, name) -> dict:
    """The recipes at one dataset's three ε levels (``name(ε)``: how the level is written).

    Each recipe: the TrainConfig fields that differ from the profile's common ones.
    CuSP's stages follow the authors' CIFAR-10 schedule (±120°, 2/255) → (±150°, 4/255)
    → (±180°, 8/255), i.e. ε at 1/4, 1/2 and 1 of the largest level, switching where
    the authors' learning rate drops (their epochs 75 and 90 of 1–120, i.e. after 74 and
    89 of 120 epochs): :func:`curriculum`.
    """
    final = levels[-1]
    return {
        "natural": dict(),
        "rotation 30°": dict(theta=30.0),
        "rotation 180°": dict(theta=180.0),
        **{f"adversarial ε={name(e)}": dict(eps=e, warmup=True) for e in levels},
        f"joint 180°, ε={name(final)}": dict(theta=180.0, eps=final, warmup=True),
        WORST_CASE: dict(spatial_attack=dict(_WORST)),
        # Yang et al.: the same worst case plus their invariance regulariser (λ = 1, not tuned)
        REGULARISED: dict(spatial_attack={**_WORST, "invariance": 1.0}),
        CURRICULUM: dict(curriculum=True),
    }


RECIPES = _recipes((0.1, 0.2, 0.3), lambda e: f"{e:g}")  # MNIST (LeNet, p4 GCNN)
CIFAR_RECIPES = _recipes((2 / 255, 4 / 255, 8 / 255), lambda e: f"{round(e * 255)}/255")  # CIFAR-10 (VGG16)
RECIPES_OF = {"mnist": RECIPES, "cifar10": CIFAR_RECIPES}
DATASET_LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}

# CIFAR-10 at paper: the authors' CuSP code (trades/cusp_cifar10.py): VGG16, SGD (lr 0.1, momentum
# 0.9, weight decay 5e-4) for 120 epochs, the learning rate ÷10 from their epochs 75, 90 and 100
# (counted from 1; train.CUSP_LR_MILESTONES counts from 0), PGD with
# 10 steps of 2/255 in training, no ε ramp. At smoke a width-2 VGG16 runs a few recipes on the
# 20-image stand-in (tests/test_notebooks.py), at cpu it is skipped (no CIFAR-10 offline).
_NO_CIFAR = dict(cifar=False, cifar_models=["vgg16"], cifar_recipes=list(CIFAR_RECIPES),
                 cifar_seeds=[0, 1, 2, 3, 4], cifar_width=None,
                 cifar_train_size=None, cifar_epochs=120, cifar_optimizer="sgd", cifar_lr=0.1,
                 cifar_weight_decay=5e-4, cifar_lr_schedule="step", cifar_lr_milestones=[74, 89, 99], cifar_attack_steps=10,
                 cifar_attack_alpha=2 / 255, cifar_eps_warmup_epochs=0, cifar_final_eps=8 / 255,
                 cifar_eps_attack=2 / 255)
_MNIST = dict(width=None, lr_milestones=None, attack_alpha=None)  # the MNIST part's defaults (see part())

CPU_LEFT_TO_PAPER = (REGULARISED, "adversarial ε=0.3", "joint 180°, ε=0.3", CURRICULUM)  # see the cpu settings
SETTINGS = {
    # smoke: one recipe per claim's arm but the regularised one (natural and adversarial ε=0.1 are
    # chapter 03's models)
    "smoke": dict(models=["wong"], seeds=[0, 1], final_eps=0.3,
                  recipes=["natural", "rotation 180°", "adversarial ε=0.1", WORST_CASE, CURRICULUM],
                  train_size=2048, epochs=2, batch_size=128, optimizer="adam", lr=1e-2, weight_decay=5e-4,
                  lr_schedule="onecycle", attack_steps=3, eps_warmup_epochs=0, test_size=256, gate_size=512, spatial_size=32, attack_size=32,
                  eps_attack=0.1, aa_attacks=["apgd-ce", "apgd-t"], aa_targets=3, aa_steps=25, worst_k=10, phi=180,
                  grid_angles=7, grid_shifts=3, rotation_grid=13, **_MNIST,
                  # CIFAR-10: the plumbing only (one seed: its claims read "1 seed", inconclusive)
                  **{**_NO_CIFAR, **dict(cifar=True, cifar_recipes=["natural", "rotation 180°", CURRICULUM],
                                         cifar_seeds=[0], cifar_width=2, cifar_train_size=256, cifar_epochs=2,
                                         cifar_lr=0.01, cifar_lr_schedule="cosine", cifar_lr_milestones=None,
                                         cifar_attack_steps=2)}),
    # The adversarial study's recipe (notebook 03: Wong et al.'s net, all 60k images, one-cycle Adam,
    # PGD-5, 6 epochs), so its natural and adversarial models are reused from checkpoints; 5 seeds.
    # Left to paper: the regularised worst case (optional in the issue that added it); adversarial
    # ε = 0.3, which needs ~20 epochs to pass its gate (notebook 03's settings); and the two recipes
    # that end at ε = 0.3 — joint training and CuSP, whose stages at 6 epochs would last 4, 1 and 1
    # epochs, below its gate (every stage ≥ 2 epochs needs ≥ 16). Trained here they cost ~15 of the
    # book's minutes for rows that are inconclusive by rule; their rows say they did not run.
    "cpu": dict(models=["wong"], seeds=[0, 1, 2, 3, 4],
                recipes=[r for r in RECIPES if r not in CPU_LEFT_TO_PAPER], final_eps=0.3,
                train_size=None, epochs=6, batch_size=128, optimizer="adam", lr=5e-3, weight_decay=0.0,
                lr_schedule="onecycle", attack_steps=5, eps_warmup_epochs=2, test_size=1000, gate_size=None, spatial_size=200, attack_size=100,
                eps_attack=0.1, aa_attacks=["apgd-ce", "apgd-t"], aa_targets=3, aa_steps=None, worst_k=10,
                phi=180,
                grid_angles=31, grid_shifts=5, rotation_grid=73, **_MNIST, **_NO_CIFAR),
    # gpu: chapter 03's gpu recipe (20 epochs, so its natural and adversarial models are reused), every
    # recipe: CuSP's stages at 20 epochs start at epochs 0, 12 and 15 (each ≥ 3 epochs), on the same
    # budget (epochs, PGD steps) as the fixed recipes.
    "gpu": dict(models=["wong"], seeds=[0, 1, 2, 3, 4], recipes=list(RECIPES), final_eps=0.3,
                train_size=None, epochs=20, batch_size=128, optimizer="adam", lr=5e-3, weight_decay=0.0,
                lr_schedule="onecycle", attack_steps=5, eps_warmup_epochs=8, test_size=None, gate_size=None,
                spatial_size=1000, attack_size=1000, eps_attack=0.1, aa_attacks=["apgd-ce", "apgd-t"], aa_targets=3,
                aa_steps=None, worst_k=10, phi=180, grid_angles=31, grid_shifts=5, rotation_grid=73, **_MNIST,
                **_NO_CIFAR),
    "paper": dict(models=["lenet", "gcnn_p4"], seeds=[0, 1, 2, 3, 4], recipes=list(RECIPES), final_eps=0.3,
                  train_size=None, epochs=30, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=0.0,
                  lr_schedule="cosine", attack_steps=40, eps_warmup_epochs=5, test_size=None, gate_size=None, spatial_size=1000, attack_size=1000,
                  eps_attack=0.1, aa_attacks=None, aa_targets=None, aa_steps=None, worst_k=10, phi=180,
                  grid_angles=31, grid_shifts=5, rotation_grid=73, **_MNIST, **{**_NO_CIFAR, "cifar": True}),
}

NB = "05_tradeoff"
TAGS = ("model", "dataset", "theta", "eps_train", "seed", "recipe")
MEASURES = {  # column of the accuracy table → what it measures
    "clean": "clean accuracy",
    "clean_spatial": "clean accuracy on the spatial attacks' points",
    "spatial_grid": "Engstrom grid (±30°, ±3 px)",
    "rotation_30": "rotation grid (±30°)",
    "rotation_grid": "rotation grid (±180°)",
    "translation_grid": "translation grid (±3 px)",
    "worst_of_k": "worst of k random rotations + translations",
    "random_rotation": "random rotation up to φ",
    "adversarial": "AutoAttack-grade ℓ∞ at ε",
    "joint": "joint: worst-of-k spatial, then APGD-CE at ε",
}
# Column headers of the chapter's table (recipes in rows); the long names above are the legend.
LABELS = {"clean": "clean", "spatial_grid": "Engstrom grid", "rotation_30": "rotations ±30°",
          "rotation_grid": "rotations ±180°", "translation_grid": "shifts ±3 px", "worst_of_k": "worst of k",
          "random_rotation": "random rotation", "adversarial": "AutoAttack", "joint": "joint"}
# Among the correctly classified points (each grid holds the identity, so a point it leaves correct is
# correct clean): the measure divided by the clean accuracy on the same points.
AMONG_CORRECT = {"spatial_grid": "clean_spatial", "rotation_30": "clean_spatial", "adversarial": "clean"}
TABLES = (
    Table("history", NB, ("model", "recipe", "seed", "epoch", "train_acc")),
    Table("accuracy", NB, (*TAGS, *MEASURES, "n_spatial", "n_attack")),
    Table("robust_points", NB, (*TAGS, "eps", "point", "robust", "attack")),
    Table("models", NB, (*TAGS, "clean", "rotated", "autoattack", "spatial_drop", "min_stage_epochs")),
)
SPATIAL, ADVERSARIAL = "spatial_grid", "adversarial"
FLOOR = 0.05  # a measurement whose starting mean is below 5% has no room to show a drop
NO_COST_MARGIN = 0.01  # Yang et al.: a clean-accuracy loss under 1 point counts as no cost


def part(settings, dataset: str = "mnist"):
    """One dataset's settings: MNIST's are the profile's own keys, CIFAR-10's its ``cifar_*`` keys
    (the rest — batch size, test points, attacks, grids — shared)."""
    from types import SimpleNamespace

    from ..errors import check_choice

    check_choice(dataset, RECIPES_OF, "dataset")
    values = {k: v for k, v in vars(settings).items() if not k.startswith("cifar_")}
    if dataset == "cifar10":
        values.update({k[len("cifar_"):]: v for k, v in vars(settings).items() if k.startswith("cifar_")})
    return SimpleNamespace(**values, dataset=dataset)


def configs(settings, dataset: str = "mnist") -> list:
    """Every model × recipe × seed of ``dataset`` (the profile's ``recipes`` or ``cifar_recipes``,
    names of :data:`RECIPES` or :data:`CIFAR_RECIPES`)."""
    from ..train import TrainConfig
    from ..errors import check_choice

    S = part(settings, dataset)
    recipes = RECIPES_OF[dataset]
    common = dict(dataset=dataset, epochs=S.epochs, batch_size=S.batch_size, optimizer=S.optimizer, lr=S.lr,
                  lr_schedule=S.lr_schedule,
                  weight_decay=S.weight_decay, attack_steps=S.attack_steps)
    if S.attack_alpha is not None:
        common["attack_alpha"] = S.attack_alpha
    if S.lr_milestones:  # the authors' step schedule; else the default cosine one
        common.update(lr_schedule="step", lr_milestones=tuple(S.lr_milestones))
    if S.width is not None:
        common["model_kwargs"] = {"width": S.width}
    out = []
    for m in S.models:
        for name in S.recipes:
            check_choice(name, recipes, f"{dataset} recipe")
            fields = dict(recipes[name])
            if fields.pop("curriculum", False):
                fields["schedule"] = curriculum(S)
            if fields.pop("warmup", False) and S.eps_warmup_epochs:
                fields["eps_warmup_epochs"] = S.eps_warmup_epochs
            out += [TrainConfig(model=m, seed=s, tag="", **common, **fields) for s in S.seeds]
    return out


def curriculum(settings) -> tuple:
    """CuSP's stages for ``settings.epochs`` epochs up to ``final_eps`` (:func:`_recipes`); at 120
    epochs up to 8/255 they are the authors' (:data:`invrob.train.CUSP_SCHEDULE`)."""
    e, final = settings.epochs, settings.final_eps
    first, second = (max(k, int(e * start / 120 + 0.5)) for k, start in ((1, 74), (2, 89)))
    if second <= first:
        second = first + 1
    stages = [(0, 120.0, final / 4), (first, 150.0, final / 2), (second, 180.0, final)]
    return tuple(s for s in stages if s[0] < e)


def recipe_of(config) -> str:
    """The name in :data:`RECIPES` (:data:`CIFAR_RECIPES`) a config was built from."""
    if config.schedule is not None:
        return CURRICULUM
    if config.spatial_attack is not None:
        return REGULARISED if config.spatial_attack.get("invariance") else WORST_CASE
    for name, fields in RECIPES_OF[config.dataset].items():
        want = (fields.get("theta", 0.0), fields.get("eps", 0.0))
        if not fields.get("curriculum") and "spatial_attack" not in fields and \
                (config.theta, config.eps) == want:
            return name
    return f"θ={config.theta:g}°, ε={config.eps:g}"


def per_recipe(trained, measure):
    """``measure(models)`` for each recipe's ``(config, model)`` pairs, with a ``recipe`` column.

    Recipes can share the tags of a table (CuSP ends at the joint recipe's θ and ε;
    worst-of-k training has θ = ε = 0 like natural training), so every table of the
    study is measured per recipe and labelled with its name.
    """
    import pandas as pd

    groups = {}
    for config, model in trained:
        groups.setdefault(recipe_of(config), []).append((config, model))
    return pd.concat([measure(pairs).assign(recipe=name) for name, pairs in groups.items()],
                     ignore_index=True)


def attack_specs(settings) -> dict:
    """The chapter's attacks as data: measurement name (:data:`MEASURES` keys) → ``{"name": registered
    attack, **options}`` (:func:`invrob.attacks.build`), so a sweep or a test can read and change them."""
    import numpy as np

    S = settings
    angles, shifts = np.linspace(-30, 30, S.grid_angles).tolist(), np.linspace(-3, 3, S.grid_shifts).tolist()
    worst = {"name": "worst-of-k", "k": S.worst_k, "max_angle": 30.0, "max_shift": 3.0, "seed": 0}
    return {
        "clean_spatial": {"name": "spatial-grid", "rotations": [0.0], "translations": [0.0]},
        "spatial_grid": {"name": "spatial-grid", "rotations": angles, "translations": shifts},
        "rotation_30": {"name": "spatial-grid", "rotations": angles, "translations": [0.0]},
        "rotation_grid": {"name": "spatial-grid", "rotations": np.linspace(-180, 180, S.rotation_grid).tolist(),
                          "translations": [0.0]},
        "translation_grid": {"name": "spatial-grid", "rotations": [0.0],
                             "translations": np.linspace(-3, 3, 7).tolist()},
        "worst_of_k": worst,
        "joint": {"name": "joint", "spatial": worst,
                  "linf": {"name": "apgd", "eps": S.eps_attack, "loss": "ce", "seed": 0}},
    }


def _factories(specs: dict) -> dict:
    """``{measurement: model -> Attack}`` from :func:`attack_specs`'s data."""
    from ..attacks import build

    return {key: (lambda m, spec=spec: build(spec["name"], m, **{k: v for k, v in spec.items() if k != "name"}))
            for key, spec in specs.items()}


def spatial_attacks(settings) -> dict:
    """The spatial measurements (names = :data:`MEASURES` keys) as factories ``model -> Attack``."""
    specs = attack_specs(settings)
    return _factories({k: v for k, v in specs.items() if k != "joint"})


def measure(trained, x_test, y_test, settings, dataset: str = "mnist") -> tuple:
    """Every measurement of :data:`MEASURES` for ``trained`` (``(config, model)`` pairs of one
    dataset), per recipe: ``(accuracy, robust_points)`` — the study's two tables.

    Spatial attacks and random rotations on the first ``spatial_size`` test points;
    AutoAttack-grade accuracy at the dataset's ``eps_attack`` (:func:`part`) and the
    joint attack on the first ``attack_size``.
    """
    from .. import experiments as ex

    S = part(settings, dataset)
    x_sp, y_sp = ex.subset(x_test, y_test, S.spatial_size)
    x_att, y_att = ex.subset(x_test, y_test, S.attack_size)
    spatial = per_recipe(trained, lambda pairs: ex.attack_accuracy_table(pairs, x_sp, y_sp, spatial_attacks(S)))
    rotated = per_recipe(trained, lambda pairs: ex.invariance_table(pairs, x_sp, y_sp, [S.phi]))
    # each recipe also at its own training ε (its quality gate reads that: invrob.gates)
    points = per_recipe(trained, lambda pairs: ex.robust_points_table(
        pairs, x_att, y_att, sorted({0.0, S.eps_attack, pairs[0][0].eps}), attack=autoattack_of(S)))
    joint = per_recipe(trained, lambda pairs: ex.attack_accuracy_table(pairs, x_att, y_att, joint_attack(S)))
    robustness = ex.summarize_points(points)  # per recipe: recipes can share tags
    return accuracy_table(spatial, rotated, robustness, joint, S.eps_attack), points


def joint_attack(settings) -> dict:
    """The joint attack (worst of k random rotations + translations, then APGD-CE at ``eps_attack``)."""
    return _factories({"joint": attack_specs(settings)["joint"]})


def accuracy_table(spatial, rotated, robustness, joint, eps_attack: float):
    """One row per model: every measurement of :data:`MEASURES` side by side (+ ``recipe``).

    ``spatial``/``joint``: :func:`invrob.experiments.attack_accuracy_table` rows;
    ``rotated``: random-rotation accuracy (one φ); ``robustness``: AutoAttack-grade
    summary with ε = 0 (clean) and ``eps_attack`` rows.
    """
    import pandas as pd

    keys = ["model", "dataset", "theta", "eps_train", "seed", "recipe"]
    wide = spatial.pivot_table(index=keys, columns="attack", values="accuracy").reset_index()
    wide = wide.merge(spatial.groupby(keys)["n"].first().rename("n_spatial").reset_index(), on=keys)
    wide = wide.merge(rotated[keys + ["accuracy"]].rename(columns={"accuracy": "random_rotation"}), on=keys)
    clean = robustness[robustness["eps"] == 0][keys + ["accuracy", "n"]].rename(
        columns={"accuracy": "clean", "n": "n_attack"})
    adv = robustness[robustness["eps"] == eps_attack][keys + ["accuracy"]].rename(
        columns={"accuracy": "adversarial"})
    jt = joint.pivot_table(index=keys, columns="attack", values="accuracy").reset_index()
    wide = wide.merge(clean, on=keys).merge(adv, on=keys).merge(jt, on=keys)
    wide["eps_attack"] = eps_attack
    return wide[[*keys, *MEASURES, "n_spatial", "n_attack", "eps_attack"]]


# ---------------------------------------------------------------------- claims

ROTATION_ONLY = ["natural", "rotation 30°", "rotation 180°"]
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


def _means_and_conditional(rows, level, value) -> str:
    """Per-level means of ``value`` and, where defined, the same among the correctly classified points."""
    means = rows.groupby(level)[value].mean()
    dataset = rows["dataset"].iloc[0]
    sym = "θ" if level == "theta" else "ε"
    text = "means by " + sym + ": " + ", ".join(f"{v:.1%} at {_level(k, level, dataset)}"
                                               for k, v in means.items())
    if value in AMONG_CORRECT and AMONG_CORRECT[value] in rows:
        ratio = (rows[value] / rows[AMONG_CORRECT[value]]).groupby(rows[level]).mean()
        text += "; among correctly classified points: " + ", ".join(f"{v:.1%}" for v in ratio)
    return text


def _progressive_drop(acc, names, level, value, what) -> tuple[str, str]:
    """The change of ``value`` over ``level`` among the ``names`` recipes, per model (floor rule).

    Slopes per 45° of θ, per 0.1 of ε on MNIST and per 1/255 on CIFAR-10.
    """
    parts, verdicts = [], []
    for name, _, model_rows in _per_model(acc):
        rows = _rows(model_rows, names)
        if rows[level].nunique() < 2:
            continue
        dataset = rows["dataset"].iloc[0]
        sym = "θ" if level == "theta" else "ε"
        start = rows[rows[level] == rows[level].min()][value].mean()
        if start < FLOOR:
            verdicts.append("inconclusive")
            parts.append(f"{name}: {start:.1%} at {sym} = {_level(rows[level].min(), level, dataset)}, "
                         f"below the {FLOOR:.0%} floor (no room to drop)")
            continue
        per, per_text = ((45, "45°") if level == "theta" else (1 / 255, "1/255 of ε") if dataset == "cifar10"
                         else (0.1, "0.1 of ε"))
        text, verdict, lo, hi = change_over_grid(rows, level, value, "decrease", per, "", per_text=per_text)
        verdicts.append(verdict)
        parts.append(f"{name} {sym} = {_level(lo, level, dataset)} → {_level(hi, level, dataset)}: {text} "
                     f"({_means_and_conditional(rows, level, value)})")
    if not parts:
        return f"no {what} in this run", NOT_RUN
    return "; ".join(parts), combine(verdicts)


def _adversarial_drops_with_rotation(tables) -> tuple[str, str]:
    acc = tables["accuracy"]
    text, verdict = _progressive_drop(acc, ROTATION_ONLY, "theta", ADVERSARIAL, "rotation-only recipes")
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
    """Per model (and dataset) with both arms: ``judge(name, arrays)`` → ``(text, verdict)``, where
    ``arrays(value)`` gives the natural and ``recipe`` seed means of ``value``, paired by seed."""
    parts, verdicts = [], []
    for name, _, model_rows in _per_model(acc):
        rows = _rows(model_rows, ["natural", recipe])
        if set(rows["recipe"]) != {"natural", recipe}:
            continue
        rows = rows.assign(arm=(rows["recipe"] == recipe).astype(int))
        text, verdict = judge(name, lambda value, rows=rows: seed_arrays(rows, "arm", 0, 1, value))
        parts.append(text)
        verdicts.append(verdict)
    if not parts:
        return missing, NOT_RUN
    return "; ".join(parts), combine(verdicts)


def _worst_case_costs_adversarial(tables) -> tuple[str, str]:
    def judge(name, arrays):
        text, verdict = change_test(*arrays(ADVERSARIAL), "decrease")
        return f"{name}, natural → worst-of-10 spatial training: AutoAttack-grade accuracy {text}", verdict
    return _against_natural(tables["accuracy"], WORST_CASE, judge, "no worst-case spatial recipe in this run")


def _worst_case_no_tradeoff(tables) -> tuple[str, str]:
    def judge(name, arrays):
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
        return (f"{name}, natural → worst-of-10 + regulariser: grid accuracy {s_text}; clean accuracy {c_text}",
                combine([s_v, cost_v]))
    return _against_natural(tables["accuracy"], REGULARISED, judge, "no regularised worst-case recipe in this run")


_ENDPOINTS = Rule("endpoint and slope", "the paired change between the ends of the grid and the slope, both "
                  "one-sided at 0.05", "before the first 5-seed cpu run",
                  "cannot see a non-monotone curve: a drop that sits in the last step passes", {"progressive": False})

_TESTS = ("both must agree, one-sided at level 0.05: the paired change between the ends of the grid "
          "(bootstrap over seeds) and the slope over the whole grid; agree if both show a decrease, "
          f"disagree if both show an increase, else inconclusive; inconclusive also when the natural "
          f"model's mean is below {FLOOR:.0%} (a floor leaves no room to drop); and " + PROGRESSIVE_RULE)

def _recipes_read(names):
    """A claim's ``reads``: the models of the ``names`` recipes (the front claims read every recipe)."""
    return lambda models: models["recipe"].isin(names)


GATES = (gates.natural_gate(), gates.rotation_gate(), *gates.adversarial_gates(), gates.spatial_gate("worst-of-10"),
         gates.curriculum_gate(CURRICULUM), gates.natural_gate("cifar10"), *gates.adversarial_gates("cifar10"))

CLAIMS = (
    Claim("Rotation augmentation lowers adversarial robustness progressively",
          "NeurIPS 2021 (a): as the range of rotation augmentation grows, adversarial robustness drops "
          "progressively",
          "per model, AutoAttack-grade robust accuracy at the chapter's ε of the natural and rotation-only "
          "recipes, against θ; " + _TESTS,
          ("accuracy",), _adversarial_drops_with_rotation, reads=_recipes_read(ROTATION_ONLY),
          key="rotation augmentation costs ℓ∞ robustness", versions=("NeurIPS 2021",), options={"progressive": True}, rule_set="2026-12-06, after a referee read of a non-monotone curve",
          post_hoc_rule=True, history=(_ENDPOINTS,)),
    Claim("Adversarial training lowers spatial robustness progressively: grid attack",
          "NeurIPS 2021 (b): as the ε of adversarial training grows, spatial robustness (rotations and "
          "translations) drops progressively",
          "per model, accuracy under Engstrom et al.'s grid attack (31 rotations in ±30° × 5 × 5 "
          "translations in ±3 px) of the natural and adversarial-only recipes, against ε; " + _TESTS,
          ("accuracy",), _spatial_drops_with_eps(SPATIAL, "Engstrom grid accuracy (±30°, ±3 px)"),
          reads=_recipes_read(ADVERSARIAL_ONLY), key="adversarial training lowers spatial robustness progressively",
          versions=("NeurIPS 2021",), options={"progressive": True}, rule_set="2026-12-06, after a referee read of a non-monotone curve",
          post_hoc_rule=True, history=(_ENDPOINTS,)),
    Claim("Adversarial training lowers spatial robustness progressively: rotation grid",
          "NeurIPS 2021 (b), rotations alone",
          "per model, accuracy under the worst of 31 rotations in ±30° of the natural and adversarial-only "
          "recipes, against ε; " + _TESTS,
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
          "per model, natural vs worst-of-10 spatial training, paired by seed: the change in AutoAttack-grade "
          "accuracy, one-sided at level 0.05 (agree if shown to fall, disagree if shown to rise, else "
          "inconclusive)",
          ("accuracy",), _worst_case_costs_adversarial, reads=_recipes_read(["natural", WORST_CASE]),
          key="worst-case spatial training costs ℓ∞ robustness", kind="ours"),
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


class TradeoffStudy(Study):
    name = "tradeoff"
    title = "Spatial vs adversarial robustness: the trade-off and CuSP"
    notebooks = (NB,)
    profile_settings = SETTINGS
    tables = TABLES
    paper_claims = CLAIMS
    gates = GATES
    reuses = {NB: "natural and adversarial recipes from 03"}

    def models_table(self, trained, size=None, data_root=None, spatial_points=None, **measured):
        """:meth:`Study.models_table` with each model's recipe, and the random-spatial check of the
        worst-of-k recipes on ``spatial_points`` test points."""
        return super().models_table(trained, size, data_root, recipes={id(c): recipe_of(c) for c, _ in trained},
                                    spatial_points=spatial_points, **measured)

    configs = staticmethod(configs)
    part = staticmethod(part)
    measure = staticmethod(measure)
    attack = staticmethod(autoattack_of)
    recipe_of = staticmethod(recipe_of)
    curriculum = staticmethod(curriculum)
    spatial_attacks = staticmethod(spatial_attacks)
    joint_attack = staticmethod(joint_attack)
    accuracy_table = staticmethod(accuracy_table)
    per_recipe = staticmethod(per_recipe)
    # the chapter's pipeline steps and tables (invrob.studies.tradeoff_tables)
    train = tradeoff_tables.train
    run_part = tradeoff_tables.run_part
    join_parts = staticmethod(tradeoff_tables.join_parts)
    final_epochs = staticmethod(tradeoff_tables.final_epochs)
    toy_table = staticmethod(tradeoff_tables.toy_table)

    def recipe_means(self, accuracy):
        """Per recipe, the mean over seeds of every measurement, headed by :data:`LABELS`."""
        return tradeoff_tables.recipe_means(accuracy, LABELS)

    def fixed_recipes(self, settings, dataset: str = "mnist") -> list[str]:
        """The recipes of ``dataset``'s part but CuSP: the fixed ones whose front CuSP is compared with."""
        return [r for r in part(settings, dataset).recipes if r != CURRICULUM]


STUDY = TradeoffStudy()
