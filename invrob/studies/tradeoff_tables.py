"""The trade-off chapter's pipeline steps and tables (notebook 05), methods of
:class:`~invrob.studies.tradeoff.TradeoffStudy`.

One dataset's part runs the same steps on MNIST (the chapter's cells, one step each) and
on CIFAR-10 (:func:`run_part`, all at once): :func:`train` — every training history row
labelled with the recipe of the run it came from —, the study's ``measure``, and its
quality-gate table. :func:`join_parts` appends one dataset's tables to another's; the
rest are the summaries the chapter shows. The functions taking ``study`` first are bound
as methods; none of this module imports :mod:`~invrob.studies.tradeoff` (which imports it).
"""
from __future__ import annotations


def train(study, settings, x, y, checkpoint_dir, dataset: str = "mnist", progress: bool = False):
    """Train (or load) every model × recipe × seed of ``dataset`` (``study.configs``).

    Returns ``(trained, history)``: the ``(config, model)`` pairs and the training history,
    whose ``recipe`` column is the recipe of each row's own run (``study.recipe_of`` of the
    config that run trained), not inferred from the rows' order.
    """
    from .. import experiments as ex

    trained, history = ex.train_all(study.configs(settings, dataset), x, y, checkpoint_dir, progress=progress,
                                    columns=lambda config: {"recipe": study.recipe_of(config)})
    return trained, history.assign(recipe=history.pop("recipe"))  # the last column, after any stage columns


def run_part(study, settings, dataset: str, checkpoint_dir, data_root=None, progress: bool = False) -> dict:
    """One dataset's whole part, in the steps the MNIST cells take one by one: its training and
    test split (the dataset's ``train_size``, the shared ``test_size``: ``study.part``),
    :func:`train`, ``study.measure`` and ``study.models_table`` (gates, with the spatial check
    on ``spatial_size`` points). Returns the tables by name — ``history``, ``accuracy``,
    ``robust_points``, ``models`` — and ``trained``, the ``(config, model)`` pairs."""
    from .. import experiments as ex

    S = study.part(settings, dataset)
    x_train, y_train, x_test, y_test = ex.load_split(dataset, S.train_size, S.test_size, data_root)
    trained, history = train(study, settings, x_train, y_train, checkpoint_dir, dataset, progress)
    accuracy, points = study.measure(trained, x_test, y_test, settings, dataset)
    models = study.models_table(trained, S.gate_size, data_root, history=history, robust_points=points,
                                spatial_points=S.spatial_size)
    return dict(history=history, accuracy=accuracy, robust_points=points, models=models, trained=trained)


def join_parts(tables: dict, part: dict) -> dict:
    """Every table of ``tables`` (name → frame) with the same-named table of ``part`` (another
    dataset's, :func:`run_part`) appended below it, index renumbered."""
    import pandas as pd

    return {name: pd.concat([frame, part[name]], ignore_index=True) for name, frame in tables.items()}


def final_epochs(history):
    """The chapter's training table, one row per recipe (in training order): its rotation range θ
    and ε (CuSP: its final stage's) and its training accuracy in the final epoch, mean over
    models and seeds, to 3 decimals."""
    final = history.groupby(["model", "recipe", "seed"], sort=False).tail(1)
    return (final.groupby(["recipe"], sort=False)
            .agg(theta=("theta", "first"), eps=("eps_train", "first"), train_acc=("train_acc", "mean"))
            .rename(columns={"theta": "θ (°)", "eps": "ε", "train_acc": "training accuracy"})
            .round(3))


def recipe_means(accuracy, labels: dict):
    """Per recipe (in table order), the mean over models and seeds of each measurement in ``labels``
    (column → header), to 3 decimals."""
    return accuracy.groupby("recipe", sort=False)[list(labels)].mean().rename(columns=labels).round(3)


def toy_table(curve, l2):
    """The toy model's table, per augmentation probability p: clean accuracy, accuracy on a random
    turn, and the ℓ∞ and ℓ2 distances of the class mean to the boundary, to 3 decimals.
    ``curve``, ``l2``: :func:`invrob.theory.tradeoff_curve` rows in ℓ∞ and in ℓ2."""
    l2 = l2.set_index("augment_prob")
    return (curve.groupby("augment_prob")[["clean_acc", "spatial_acc", "mean_margin"]].first()
            .assign(l2_margin=l2["mean_margin"])
            .rename(columns={"clean_acc": "clean accuracy", "spatial_acc": "accuracy, random turn",
                             "mean_margin": "ℓ∞ distance of the class mean to the boundary",
                             "l2_margin": "ℓ2 distance"}).round(3))
