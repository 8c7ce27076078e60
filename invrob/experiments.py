"""The studies' building blocks: train a grid of models, then measure them into tidy tables.

Notebooks call these and stay readable: a training grid is a list of
:class:`~invrob.train.TrainConfig` (each study builds its own:
:meth:`invrob.studies.base.Study.configs`); every measurement returns a
:class:`pandas.DataFrame` with one row per model / seed / θ / ε (/ φ, norm...),
tagged with the configuration of the model it measured, so tables from
different notebooks join on ``model, seed, theta, eps``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm  # text bars: render in executed notebooks and the book alike

from .attacks import PGD, minimal_perturbation, robust_accuracy, worst_of_k_accuracy
from .data import load_dataset
from .metrics import bootstrap_ci, model_device, predict
from .rotations import rotated_accuracy
from .train import TrainConfig, train
from .train.parallel import train_side_by_side

Trained = list[tuple[TrainConfig, nn.Module]]


def subset(x: torch.Tensor, y: torch.Tensor, size: int | None, seed: int = 0):
    """A fixed random subset of ``size`` points (all of them for ``None``), the same for a given seed."""
    if size is None or size >= len(x):
        return x, y
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]
    return x[index], y[index]


def load_split(dataset: str, train_size: int | None, test_size: int | None, data_root=None):
    """Training and test subsets of ``dataset`` (fixed subsets, so every model sees the same points).

    Images come in torch's default dtype (float32 unless a profile chose float64:
    :func:`invrob.profiles.use_dtype`), so that data and models agree.
    """
    dtype = torch.get_default_dtype()
    x_train, y_train = subset(*load_dataset(dataset, data_root, train=True), train_size)
    x_test, y_test = subset(*load_dataset(dataset, data_root, train=False), test_size)
    return x_train.to(dtype), y_train, x_test.to(dtype), y_test


def test_split(dataset: str, data_root=None):
    """The whole test split of ``dataset`` in torch's default dtype (what quality gates read)."""
    x, y = load_dataset(dataset, data_root, train=False)
    return x.to(torch.get_default_dtype()), y


def study_dirs(notebook: str, profile: str, output_dir=None, checkpoint_dir=None) -> tuple[Path, Path]:
    """``results/<profile>/<notebook>`` and ``checkpoints/<profile>`` unless given."""
    output = Path(output_dir or Path("results") / profile / notebook)
    checkpoints = Path(checkpoint_dir or Path("checkpoints") / profile)
    output.mkdir(parents=True, exist_ok=True)
    return output, checkpoints


def tags(config: TrainConfig) -> dict:
    """The columns that identify a trained model in every table."""
    return {"model": config.model, "dataset": config.dataset, "theta": config.theta,
            "eps_train": config.eps, "seed": config.seed}


def train_all(configs: Sequence[TrainConfig], x: torch.Tensor, y: torch.Tensor,
              checkpoint_dir, progress: bool = True, stack: bool = False,
              columns: Callable[[TrainConfig], dict] | None = None,
              workers: int | None = None) -> tuple[Trained, pd.DataFrame]:
    """Train (or load, when a finished checkpoint exists) every config.

    Returns the ``(config, model)`` pairs and the concatenated training history, each
    run's rows tagged with its config (:func:`tags`) and, given ``columns``, with the
    columns ``columns(config)`` names (e.g. the recipe a config was built from).
    ``workers``: on a CPU, train that many runs side by side in worker processes, one thread
    each (:mod:`invrob.train.parallel`; default: :func:`~invrob.train.parallel.default_workers`,
    which ``invrob.profiles.use`` sets per profile), then load them here.
    ``stack=True``: the seeds of each recipe that can stack train together as one
    batched model (:func:`_train_all_stacked`); same results up to float rounding.
    """
    if stack:
        return _train_all_stacked(configs, x, y, checkpoint_dir, progress, columns)
    side_by_side = set()
    if checkpoint_dir is not None:
        side_by_side = {c.slug() for c in train_side_by_side(configs, x, y, checkpoint_dir, workers, progress)}
    trained, histories = [], []
    for i, config in enumerate(configs, 1):
        # No enclosing bar: nested text bars garble a notebook's output; each run's bar says i/N.
        model, history = train(config, x, y, checkpoint_dir=checkpoint_dir,
                               progress=progress and config.slug() not in side_by_side,
                               desc=f"[{i}/{len(configs)}] {config.slug()}")
        trained.append((config, model))
        histories.append(_tagged_history(history, config, columns))
    return trained, pd.concat(histories, ignore_index=True)


def _tagged_history(history: pd.DataFrame, config: TrainConfig, columns=None) -> pd.DataFrame:
    """One run's history with its config's tags (and ``columns(config)``, if given) as columns."""
    return history.assign(**tags(config), **(columns(config) if columns else {}))


def _train_all_stacked(configs: Sequence[TrainConfig], x: torch.Tensor, y: torch.Tensor,
                       checkpoint_dir, progress: bool, columns=None) -> tuple[Trained, pd.DataFrame]:
    """:func:`train_all` with the configs that differ only in (distinct) seeds grouped: each
    group of two or more stackable ones is trained by :func:`invrob.stacked.train_stacked`,
    every other config by ``train``; results in the order of ``configs``."""
    from .stacked import stack_key, train_stacked, unstackable_reason

    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(stack_key(config), []).append(i)
    results: dict[int, tuple[nn.Module, pd.DataFrame]] = {}
    for members in groups.values():
        recipe = [configs[i] for i in members]
        if len({c.seed for c in recipe}) == len(recipe) > 1 and unstackable_reason(recipe[0]) is None:
            results.update(zip(members, train_stacked(recipe, x, y, checkpoint_dir, progress=progress)))
            continue
        for i in members:
            results[i] = train(configs[i], x, y, checkpoint_dir=checkpoint_dir, progress=progress,
                               desc=f"[{i + 1}/{len(configs)}] {configs[i].slug()}")
    trained = [(config, results[i][0]) for i, config in enumerate(configs)]
    histories = [_tagged_history(results[i][1], config, columns) for i, config in enumerate(configs)]
    return trained, pd.concat(histories, ignore_index=True)


def _tagged(trained: Trained, measure, progress: bool, desc: str) -> pd.DataFrame:
    frames = [measure(model).assign(**tags(config))
              for config, model in tqdm(trained, desc=desc, disable=not progress)]
    return pd.concat(frames, ignore_index=True)


def invariance_table(trained: Trained, x, y, phis: Iterable[float], seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """Accuracy on test data rotated at random up to φ, for every model and φ.

    Columns: model, dataset, theta (training range), eps_train, seed, phi, accuracy, n.
    """
    phis = list(phis)
    return _tagged(trained, lambda m: rotated_accuracy(m, x, y, phis, seed=seed)
                   .rename(columns={"theta": "phi"}), progress, "rotated accuracy")


def worst_of_k_table(trained: Trained, x, y, phis: Iterable[float], k: int,
                     progress: bool = False) -> pd.DataFrame:
    """Engstrom-style grid attack: correct at all k angles in [-φ, φ]; columns as above + k."""
    phis = list(phis)

    def measure(model):
        return pd.DataFrame({"phi": phis, "k": k,
                             "accuracy": [worst_of_k_accuracy(model, x, y, phi, k) for phi in phis]})
    return _tagged(trained, measure, progress, "worst-of-k")


def autoattack(attacks: Sequence[str] | None = None, targets: int | None = None, seed: int = 0,
               batch_size: int = 500, steps: int | None = None):
    """An attack factory ``model -> AutoAttack`` for :func:`robust_points_table`.

    ``attacks=None``: the standard ensemble (APGD-CE, APGD-T, FAB-T, Square); else
    that subset of its components with the standard settings, APGD-T and FAB-T
    trying ``targets`` target classes (``None``: the standard 9), APGD running ``steps``
    iterations (``None``: the standard 100). Which cheap
    version is close enough to the standard one is checked in the test suite
    (``tests/test_autoattack.py``) and stated in the book.
    """
    from . import attacks as registry

    version = "standard" if attacks is None else "custom"

    def build(model):
        return registry.build("autoattack", model, eps=0.0, version=version,
                              attacks=None if attacks is None else list(attacks), targets=targets, seed=seed,
                              batch_size=batch_size, steps=steps)
    return build


def robust_points_table(trained: Trained, x, y, eps_grid, attack=None,
                        steps: int = 20, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Point by point: is each test point robust at each ε, for every model?

    ``eps_grid``: a list of budgets, or a ``{model name: list}`` map (each model
    family at its own budgets). ``attack``: a factory ``model -> Attack`` (e.g.
    :func:`autoattack`); ``None``: PGD with ``steps`` steps seeded by ``seed``.
    Budgets run in increasing order and a point fooled at ε counts as fooled at
    every larger ε (:func:`invrob.attacks.robust_points`). Columns: the tags, eps,
    point, robust (0/1), attack (the attack's name). :func:`summarize_points`
    gives accuracies; the per-point rows feed paired statistics (:mod:`invrob.stats`).
    """
    from .attacks import robust_points

    frames = []
    for config, model in tqdm(trained, desc="robust accuracy", disable=not progress):
        grid = list(eps_grid.get(config.model, ()) if isinstance(eps_grid, dict) else eps_grid)
        if not grid:
            continue
        if attack is None:
            rows = robust_points(model, x, y, grid, steps=steps, seed=seed).assign(attack=f"PGD-{steps}")
        else:
            chosen = attack(model)
            rows = robust_points(model, x, y, grid, attack=chosen,
                                 batch_size=max(1, len(x))).assign(attack=chosen.name)
        frames.append(rows.assign(**tags(config)))
    columns = [*tags(trained[0][0]), "eps", "point", "robust", "attack"] if trained else []
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def summarize_points(points: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy per model and ε from :func:`robust_points_table`'s rows.

    Columns: model, dataset, theta, eps_train, seed (and recipe, when the rows have one), eps,
    attack, accuracy, n, and
    ``conditional``: the robust accuracy among the points the model classifies
    correctly (accuracy / clean accuracy; NaN without ε = 0 in the grid) — families
    with different clean accuracy compare on it.
    """
    keys = ["model", "dataset", "theta", "eps_train", "seed"] + (["recipe"] if "recipe" in points else [])
    table = (points.groupby([*keys, "eps", "attack"], sort=False)["robust"].agg(["mean", "size"])
             .rename(columns={"mean": "accuracy", "size": "n"}).reset_index())
    clean = table[table["eps"] == 0].set_index(keys)["accuracy"]
    reference = clean.reindex(table.set_index(keys).index).to_numpy()
    table["conditional"] = table["accuracy"] / reference
    return table


def pgd_overstatement(robustness: pd.DataFrame, pgd: pd.DataFrame) -> pd.DataFrame:
    """How much PGD overstates robust accuracy: PGD's accuracy minus AutoAttack's, on the same points.

    ``robustness`` and ``pgd``: :func:`summarize_points` tables of the same models and
    points (AutoAttack-grade, then PGD). Their rows are joined on the tags the two share
    (model, dataset, theta, eps_train, seed, recipe) and ε; PGD's other columns get the
    suffix ``_pgd``. Returns the joined rows at ε > 0 with ``overstated`` =
    ``accuracy_pgd − accuracy`` (≥ 0 when AutoAttack is the stronger attack).
    """
    keys = [k for k in ("model", "dataset", "theta", "eps_train", "seed", "recipe", "eps")
            if k in robustness and k in pgd]
    joined = robustness.merge(pgd, on=keys, suffixes=("", "_pgd"))
    joined = joined[joined["eps"] > 0]
    return joined.assign(overstated=joined["accuracy_pgd"] - joined["accuracy"])


def final_accuracy(history: pd.DataFrame, level: str) -> pd.DataFrame:
    """Each model's training accuracy in its final epoch, mean over seeds: ``level`` (rows) × model (columns).

    ``history``: :func:`train_all`'s rows; a run's final epoch is its last row.
    """
    final = history.groupby(["model", level, "seed"]).tail(1)
    return final.pivot_table(index=level, columns="model", values="train_acc")


def parameter_counts(grid: dict[str, Sequence[str]]) -> pd.DataFrame:
    """How many trainable parameters each model has: ``grid`` maps a dataset to model names.

    One row per dataset × model (in ``grid``'s order), indexed by ``(dataset, model)``, with
    the column ``parameters`` (:func:`invrob.models.count_parameters` of the model as built
    for that dataset, default width).
    """
    from .models import build_model, count_parameters

    rows = [{"dataset": dataset, "model": name, "parameters": count_parameters(build_model(name, dataset))}
            for dataset, names in grid.items() for name in names]
    return pd.DataFrame(rows, columns=["dataset", "model", "parameters"]).set_index(["dataset", "model"])


def accuracy_per_phi(rotated: pd.DataFrame) -> pd.DataFrame:
    """:func:`invrob.rotations.rotated_accuracy`'s rows as one row: ``accuracy`` (index) against the
    test rotation range φ (columns, named ``φ (°)``, as ``{:g}`` text), to 3 decimals."""
    table = rotated.assign(phi=[f"{p:g}" for p in rotated["theta"]]).set_index("phi")
    return table[["accuracy"]].T.rename_axis(columns="φ (°)").round(3)


SEARCH_RANGE = {"linf": 0.5, "l2": 10.0}  # bisection brackets; farther points count as unbroken


def boundary_distances(trained: Trained, x, y, norms: Sequence[str] = ("linf", "l2"),
                       steps: int = 20, bisection_steps: int = 8, seed: int = 0,
                       progress: bool = False) -> pd.DataFrame:
    """Per-point distance to the decision boundary (minimal PGD perturbation, margin loss).

    Only points the model classifies correctly are kept (the distance of a
    misclassified point is 0 by definition and says nothing about the margin).
    The bisection searches [0, 0.5] in ℓ∞ and [0, 10] in ℓ2 (:data:`SEARCH_RANGE`;
    MNIST models are fooled well inside both), so the resolution is
    ``range / 2^bisection_steps``. Columns: model, dataset, theta, eps_train,
    seed, norm, point, distance.
    """
    def measure(model):
        correct = (predict(model, x) == y).nonzero().squeeze(1)
        rows = []
        for norm in norms:
            d = minimal_perturbation(model, x[correct], y[correct], norm=norm, steps=steps,
                                     max_eps=SEARCH_RANGE[norm], bisection_steps=bisection_steps,
                                     seed=seed)
            rows.append(pd.DataFrame({"norm": norm, "point": correct.numpy(), "distance": d.cpu().numpy()}))
        return pd.concat(rows, ignore_index=True)
    return _tagged(trained, measure, progress, "boundary distance")


def summarize_distances(distances: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean and median distance per model / θ / norm with 95% two-level bootstrap CIs.

    The intervals resample seeds, then points within each seed
    (:func:`invrob.metrics.bootstrap_ci` with ``groups``), so they include training
    variance. Points never fooled within the search range (distance ``inf``) are
    counted (column ``n_unbroken``) and left out of the statistics.
    """
    rows = []
    keys = ["model", "dataset", "theta", "eps_train", "norm"]
    for key, group in distances.groupby(keys, sort=False):
        keep = np.isfinite(group["distance"].to_numpy())
        finite, seeds = group["distance"].to_numpy()[keep], group["seed"].to_numpy()[keep]
        mean, mean_lo, mean_hi = bootstrap_ci(finite, np.mean, seed=seed, groups=seeds)
        median, med_lo, med_hi = bootstrap_ci(finite, np.median, seed=seed, groups=seeds)
        rows.append(dict(zip(keys, key), n=len(finite), n_unbroken=len(group) - len(finite),
                         n_seeds=group["seed"].nunique(), mean=mean, mean_low=mean_lo,
                         mean_high=mean_hi, median=median, median_low=med_lo, median_high=med_hi))
    return pd.DataFrame(rows)


def perturbations(model: nn.Module, x, y, eps: float, steps: int, small_angles: Sequence[float],
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial perturbations ``x_adv − x`` (ℓ∞ PGD at ε) and small-rotation
    perturbations ``R_φ x − x`` for every φ in ``small_angles``, flattened.

    Returns ``(adversarial (N, D), rotational (N·len(small_angles), D))``.
    """
    from .rotations import rotate

    attack = PGD(model, eps=eps, steps=steps, early_stop=False,
                 generator=torch.Generator().manual_seed(seed))
    device = model_device(model)
    adversarial = (attack(x.to(device), y.to(device)).cpu() - x).flatten(1)
    angles = torch.tensor(list(small_angles), dtype=x.dtype)
    stacked = x.repeat(len(angles), 1, 1, 1)
    rotational = (rotate(stacked, angles.repeat_interleave(len(x))) - stacked).flatten(1)
    return adversarial, rotational


def subspace_table(trained: Trained, x, y, eps: float, steps: int, small_angles: Sequence[float],
                   ks: Sequence[int], remove: int = 10, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Principal cosines between top-k PCA subspaces of perturbations, per model and k.

    Comparisons (column ``comparison``, :func:`invrob.geometry.subspace_comparisons`):

    - ``adversarial vs rotation``: PGD perturbations vs small-rotation perturbations
      of the same points — the paper's claim is that these are nearly orthogonal;
    - ``adversarial vs adversarial``: PGD perturbations of two disjoint halves of
      the points — a positive control;
    - ``random vs random`` and ``support-random vs rotation`` (Gaussian noise on
      the pixels the images use): model-free baselines;
    - ``image PCA vs rotation`` and ``translation vs rotation`` (±1, ±2 px shifts):
      data-matched nulls — image-like families with no model involved;
    - ``… (data PCs removed)``: adversarial (and translation) vs rotation after
      projecting the top ``remove`` principal directions of the images out of both.

    Columns: the model tags, comparison, k, mean_cosine, max_cosine.
    """
    from .geometry import subspace_comparisons, translation_perturbations

    translational = translation_perturbations(x).numpy()
    images = x.flatten(1).numpy()

    def measure(model):
        adversarial, rotational = perturbations(model, x, y, eps, steps, small_angles, seed)
        return subspace_comparisons(adversarial.numpy(), rotational.numpy(), images, translational, ks,
                                    remove=remove, seed=seed)
    return _tagged(trained, measure, progress, "subspaces")


def tangent_table(trained: Trained, x, y, eps: float, steps: int, seed: int = 0,
                  progress: bool = False) -> pd.DataFrame:
    """Per point and model: the absolute cosine of the rotation tangent t(x) with the PGD perturbation at ε,
    with a random ℓ∞ corner on the image's support (the null) and with the loss gradient
    (:func:`invrob.geometry.tangent_cosines`). Columns: the tags, point, adversarial,
    random_sign, gradient."""
    from .geometry import tangent_cosines

    return _tagged(trained, lambda m: tangent_cosines(m, x, y, eps, steps, seed=seed), progress, "tangents")


def directional_table(trained: Trained, x, y, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Per point and model: the loss's directional derivative along the unit rotation tangent,
    along a random unit direction on the same support, and the gradient norm
    (:func:`invrob.geometry.directional_derivatives`)."""
    from .geometry import directional_derivatives

    return _tagged(trained, lambda m: directional_derivatives(m, x, y, seed=seed), progress, "directions")


def attack_accuracy_table(trained: Trained, x, y, attacks: dict, progress: bool = False) -> pd.DataFrame:
    """Accuracy of every model under each attack of ``attacks`` (name → factory ``model -> Attack``).

    For attacks without an ε grid — spatial grids, worst-of-k, the joint attack: a point
    counts as correct when the model classifies the attack's worst input correctly
    (a point the attack leaves unchanged is judged on the clean image). Spatial searches
    (grids, worst-of-k) give the same answer through ``survives``, which stops
    transforming a point once it is fooled. Columns: the tags, attack (the name given),
    accuracy, n.
    """
    from .metrics import accuracy

    def measure(model):
        rows = []
        for name, build in attacks.items():
            attack = build(model)
            if hasattr(attack, "survives"):
                value = attack.survives(x, y).double().mean().item()
            else:
                value = accuracy(model, attack(x, y), y)
            rows.append({"attack": name, "accuracy": value, "n": len(x)})
        return pd.DataFrame(rows)
    return _tagged(trained, measure, progress, "attacks")


def models_table(trained: Trained, x, y, robust_points: pd.DataFrame | None = None,
                 spatial_points: int | None = None, history: pd.DataFrame | None = None,
                 recipes: dict | None = None) -> pd.DataFrame:
    """One row per trained model: what its quality gates (:mod:`invrob.gates`) read.

    - ``clean``: accuracy on ``(x, y)`` — give the whole test set (eval mode);
    - ``rotated``: accuracy on ``(x, y)`` each rotated by an angle drawn uniformly from
      [−θ, θ] (:func:`invrob.rotations.rotated_accuracy`, seed 0; θ > 0 only);
    - ``autoattack``: robust accuracy at the model's own training ε from ``robust_points``
      (ε > 0 only), over ``n_autoattack`` points;
    - ``spatial_drop``: with ``spatial_points``, clean accuracy minus accuracy under one random
      rotation in ±30° and shift in ±3 px (Engstrom et al.'s ranges) on the first
      ``spatial_points`` test points;
    - ``min_stage_epochs``: from ``history``'s ``stage_theta``/``stage_eps`` columns, the length of the
      shortest curriculum stage (schedules only).

    ``recipes``: ``{id(config): recipe name}`` adds a ``recipe`` column (trade-off study).
    Columns: the tags (+ recipe), clean, n_clean, rotated, n_rotated, autoattack,
    n_autoattack, spatial_drop, min_stage_epochs.
    """
    from .attacks import WorstOfK
    from .metrics import accuracy

    rows = []
    for config, model in trained:
        row = {**tags(config), "clean": accuracy(model, x, y), "n_clean": len(x)}
        if config.theta > 0:
            row["rotated"] = float(rotated_accuracy(model, x, y, [config.theta], seed=0)["accuracy"].iloc[0])
            row["n_rotated"] = len(x)
        if recipes is not None:
            row["recipe"] = recipes[id(config)]
        if spatial_points:
            xs, ys = x[:spatial_points], y[:spatial_points]
            moved = WorstOfK(model, k=1, seed=config.seed).survives(xs, ys).double().mean().item()
            row["spatial_drop"] = accuracy(model, xs, ys) - moved
        rows.append(row)
    table = pd.DataFrame(rows)
    keys = [c for c in ("model", "dataset", "theta", "eps_train", "seed", "recipe") if c in table]
    if robust_points is not None:
        own = robust_points[(robust_points["eps"] == robust_points["eps_train"]) & (robust_points["eps"] > 0)]
        own = own.groupby([k for k in keys if k in own], sort=False)["robust"].agg(["mean", "size"])
        table = table.merge(own.rename(columns={"mean": "autoattack", "size": "n_autoattack"}).reset_index(),
                            how="left")
    if history is not None and "stage_theta" in history:
        staged = history.dropna(subset=["stage_theta"])
        by = [k for k in keys if k in staged and k != "dataset"]
        lengths = (staged.groupby([*by, "stage_theta", "stage_eps"], sort=False).size()
                   .groupby(level=list(range(len(by)))).min().rename("min_stage_epochs").reset_index())
        table = table.merge(lengths, how="left")
    for column in ("rotated", "n_rotated", "autoattack", "n_autoattack", "spatial_drop", "min_stage_epochs"):
        if column not in table:
            table[column] = float("nan")
    return table


def show_progress(profile: str) -> bool:
    """Whether a notebook shows progress bars and checkpoint logs.

    Yes in interactive runs; no at the ``smoke`` profile (the regression checks compare
    outputs) and no in runs for the book (``INVROB_PROGRESS=0``, which
    ``invrob run --book`` sets): a reader of the book sees results, not a run log.
    """
    import os

    return profile != "smoke" and os.environ.get("INVROB_PROGRESS", "1") != "0"
