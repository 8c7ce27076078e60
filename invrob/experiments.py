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
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm  # text bars: render in executed notebooks and the book alike

from .attacks import APGD, PGD, minimal_perturbation, robust_accuracy, worst_of_k_accuracy
from .data import load_dataset
from .metrics import bootstrap_ci, model_device, predict
from .rotations import rotated_accuracy
from .train import TrainConfig, train

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
              checkpoint_dir, progress: bool = True) -> tuple[Trained, pd.DataFrame]:
    """Train (or load, when a finished checkpoint exists) every config.

    Returns the ``(config, model)`` pairs and the concatenated training history.
    """
    trained, histories = [], []
    for i, config in enumerate(configs, 1):
        # No enclosing bar: nested text bars garble a notebook's output; each run's bar says i/N.
        model, history = train(config, x, y, checkpoint_dir=checkpoint_dir, progress=progress,
                               desc=f"[{i}/{len(configs)}] {config.slug()}")
        trained.append((config, model))
        histories.append(history.assign(**tags(config)))
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


def robustness_table(trained: Trained, x, y, eps_grid: Iterable[float], steps: int,
                     restarts: int = 1, norm: str = "linf", seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """PGD robust accuracy for every model and ε (ε = 0: clean accuracy).

    Columns: model, dataset, theta, eps_train, seed, eps, accuracy, n, norm, steps, restarts.
    """
    eps_grid = list(eps_grid)
    return _tagged(trained, lambda m: robust_accuracy(m, x, y, eps_grid, norm=norm, steps=steps,
                                                      restarts=restarts, seed=seed),
                   progress, "PGD")


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
    """Mean and median distance per model / θ / norm with 95% percentile-bootstrap CIs.

    Points never fooled within the search range (distance ``inf``) are counted
    (column ``n_unbroken``) and left out of the statistics.
    """
    rows = []
    keys = ["model", "dataset", "theta", "eps_train", "norm"]
    for key, group in distances.groupby(keys, sort=False):
        finite = group["distance"].to_numpy()
        finite = finite[np.isfinite(finite)]
        mean, mean_lo, mean_hi = bootstrap_ci(finite, np.mean, seed=seed)
        median, med_lo, med_hi = bootstrap_ci(finite, np.median, seed=seed)
        rows.append(dict(zip(keys, key), n=len(finite), n_unbroken=len(group) - len(finite),
                         n_seeds=group["seed"].nunique(), mean=mean, mean_low=mean_lo,
                         mean_high=mean_hi, median=median, median_low=med_lo, median_high=med_hi))
    return pd.DataFrame(rows)


def gradient_masking_check(trained: Trained, x, y, eps: float, steps: int, strong_steps: int,
                           restarts: int = 5, seed: int = 0) -> pd.DataFrame:
    """Robust accuracy at one ε under our PGD, a stronger PGD (more steps, restarts),
    and torchattacks' APGD (AutoAttack's attack, an independent implementation).

    A large gap between the attacks would mean gradient masking: PGD's numbers
    could not be trusted. Columns: the tags, eps, attack, accuracy, n.
    """
    labels = [f"PGD-{steps}", f"PGD-{strong_steps}x{restarts}", f"APGD-CE-{strong_steps}"]

    def measure(model):
        attacks = [PGD(model, eps, steps=steps, generator=torch.Generator().manual_seed(seed)),
                   PGD(model, eps, steps=strong_steps, restarts=restarts,
                       generator=torch.Generator().manual_seed(seed)),
                   APGD(model, eps, steps=strong_steps, seed=seed, loss="ce")]
        # One batch for APGD: it reseeds at every call, so chunks would change its draws.
        sizes = [500, 500, max(1, len(x))]
        accs = [robust_accuracy(model, x, y, [eps], attack=a, batch_size=b)["accuracy"].item()
                for a, b in zip(attacks, sizes)]
        return pd.DataFrame({"eps": eps, "attack": labels, "accuracy": accs, "n": len(x)})
    return _tagged(trained, measure, False, "masking check")


AUTOATTACK_LABEL = "AutoAttack"


def autoattack_table(trained: Trained, x, y, budgets, steps: int, attacks: Sequence[str] | None = None,
                     seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Robust accuracy under our PGD and under AutoAttack, per model, at the budgets that matter.

    ``budgets(config) -> list of ε`` picks each model's budgets (e.g. the informative
    ones of its study). AutoAttack is Croce & Hein's code (``pyautoattack``, through
    :class:`invrob.attacks.AutoAttack`): the standard ensemble when ``attacks`` is
    ``None``, else that subset of its components with the standard settings (e.g.
    ``("apgd-ce", "apgd-t")``, which matched the full ensemble on every MNIST model
    we tried, at a fraction of its cost: Square's 5,000 queries dominate on a CPU).
    PGD is the same attack as the robustness curves (``steps``, seeded). Rows are
    labelled ``PGD-<steps>`` and ``AutoAttack`` (with the components in ``components``).
    Columns: the tags, eps, attack, components, accuracy, n.
    """
    from .attacks import AutoAttack

    version = "standard" if attacks is None else "custom"
    components = "standard" if attacks is None else "+".join(attacks)
    rows = []
    for config, model in tqdm(trained, desc="AutoAttack", disable=not progress):
        for eps in budgets(config):
            pgd = robust_accuracy(model, x, y, [eps], steps=steps, seed=seed)["accuracy"].item()
            aa = AutoAttack(model, eps, version=version, attacks=None if attacks is None else list(attacks),
                            seed=seed, batch_size=max(1, len(x)))
            auto = robust_accuracy(model, x, y, [eps], attack=aa, batch_size=max(1, len(x)))["accuracy"].item()
            rows += [{**tags(config), "eps": eps, "attack": f"PGD-{steps}", "components": "", "accuracy": pgd,
                      "n": len(x)},
                     {**tags(config), "eps": eps, "attack": AUTOATTACK_LABEL, "components": components,
                      "accuracy": auto, "n": len(x)}]
    columns = [*tags(trained[0][0]), "eps", "attack", "components", "accuracy", "n"] if trained else []
    return pd.DataFrame(rows, columns=columns)


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
                   ks: Sequence[int], seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Principal cosines between top-k PCA subspaces of perturbations, per model and k.

    Comparisons (column ``comparison``):

    - ``adversarial vs rotation``: PGD perturbations vs small-rotation perturbations
      of the same points — the paper's claim is that these are nearly orthogonal;
    - ``adversarial vs adversarial``: PGD perturbations of two disjoint halves of
      the points — a positive control (the same kind of perturbation should share
      its directions);
    - ``random vs random``: uniformly random subspaces of the same dimension —
      the baseline (in high dimension random subspaces are nearly orthogonal too);
    - ``support-random vs rotation``: the top-k PCA subspace of Gaussian noise
      confined to the pixels the images use (MNIST's border is always 0) against
      the rotation subspace — a stricter baseline, because both perturbation
      families live on those pixels, which alone makes them overlap more than
      subspaces drawn from all of R^784.

    Columns: the model tags, comparison, k, mean_cosine, max_cosine.
    """
    from .metrics import principal_cosines, random_subspace_cosines

    half = len(x) // 2
    flat = x.flatten(1)
    support = (flat.amax(0) > flat.amin(0)).numpy()  # pixels that vary over the points
    noise = np.random.default_rng(seed).standard_normal(flat.shape) * support

    def measure(model):
        adversarial, rotational = perturbations(model, x, y, eps, steps, small_angles, seed)
        adversarial, rotational = adversarial.numpy(), rotational.numpy()
        rows = []
        for k in ks:
            pairs = {"adversarial vs rotation": principal_cosines(adversarial, rotational, k),
                     "adversarial vs adversarial": principal_cosines(adversarial[:half], adversarial[half:], k),
                     "random vs random": random_subspace_cosines(adversarial.shape[1], k, seed=seed),
                     "support-random vs rotation": principal_cosines(noise, rotational, k)}
            rows += [{"comparison": name, "k": k, "mean_cosine": float(np.mean(c)),
                      "max_cosine": float(np.max(c))} for name, c in pairs.items()]
        return pd.DataFrame(rows)
    return _tagged(trained, measure, progress, "subspaces")


def show_progress(profile: str) -> bool:
    """Whether a notebook shows progress bars and checkpoint logs.

    Yes in interactive runs; no at the ``smoke`` profile (the regression checks compare
    outputs) and no in runs for the book (``INVROB_PROGRESS=0``, which
    ``invrob run --book`` sets): a reader of the book sees results, not a run log.
    """
    import os

    return profile != "smoke" and os.environ.get("INVROB_PROGRESS", "1") != "0"
