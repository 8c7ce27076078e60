"""The trade-off chapter's measurements (notebook 05), for :mod:`~invrob.studies.tradeoff`.

Every model is measured for clean accuracy, spatial robustness (grids of rotations and
translations, worst-of-k random, random rotations), AutoAttack-grade ℓ∞ robustness and the
joint attack (:data:`MEASURES`). The attacks are data (:func:`attack_specs`, built through the
attack registry); :func:`measure` runs them recipe by recipe (:func:`per_recipe`: recipes can
share the tags of a table) into the study's two tables, the accuracy table
(:func:`accuracy_table`) and the robust points.
"""
from __future__ import annotations

from .rules import autoattack_of
from .tradeoff_recipes import part, recipe_of

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
