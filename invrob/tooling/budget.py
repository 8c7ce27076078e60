"""How long a chapter takes at a profile, estimated before it runs.

A chapter's cost is counted in **image-passes**: one forward and backward pass of one image
through the model (a forward pass alone counts 1/3). Training a config costs
``n_train × epochs × (1 + attack steps)`` of them (a worst-of-k spatial step adds ``k``
forward passes, Yang et al.'s regulariser one more pass); AutoAttack costs at most its
iterations per test point and ε (APGD-CE 100, APGD-T 100 per target class; the standard
ensemble's FAB-T and Square ≈ 900 and 5,000 / 3 more): an upper bound, since later attacks
only run on the points still robust. Models a chapter reloads from an earlier chapter's
checkpoints cost nothing (configs are matched by :meth:`~invrob.train.TrainConfig.slug`,
as ``train`` matches them).

Seconds = image-passes / throughput, per model family and device (:data:`THROUGHPUT`,
images per second, fwd + bwd; one run at a time; a profile that trains its runs side by side on
the CPU's cores gets its training minutes divided by :data:`SIDE_BY_SIDE`):

- ``cpu-2``: measured on this project's 2-core machine (``../shared/README.md``; the Wong
  net from the cpu book's chapter 03: 23.4M image-passes of its main grid in 17.9 min, its
  adversarial steps included). On the cpu book the model predicts the training time of
  chapters 01, 03 and 05 within 16% (:func:`compare` with the book's measured times:
  21.2 / 22.2 / 13.6 min against 18.4 / 22.6 / 13.0).
- ``h100``: calibrated on the one measurement at paper scale, chapter 03's MNIST part on an
  H100 (≈ 4.6 h): that chapter's image-passes / 4.6 h for the small MNIST nets, and the
  same relative costs between families as on the CPU (conservative for the larger nets:
  on a GPU small convolutions are launch-bound, so wider nets cost relatively less).
  An estimate until a GPU is lent: ``tools/batch_timing.py`` measures the per-batch
  times that replace it.

:func:`estimate` gives one row per chapter part; :func:`chapters` the minutes per notebook.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import studies
from ..profiles import TRAIN_WORKERS
from ..errors import check_choice

N_TRAIN = {"mnist": 60_000, "cifar10": 50_000}
N_TEST = {"mnist": 10_000, "cifar10": 10_000}
FORWARD = 1 / 3  # a forward pass costs about a third of a forward + backward pass

# AutoAttack iterations per point and ε (upper bounds; see the module docstring)
AA_CHEAP = 100 + 3 * 100                   # APGD-CE + APGD-T with 3 target classes (cpu, smoke)
AA_STANDARD = 100 + 9 * 100 + 900 + 5000 * FORWARD  # + FAB-T (9 targets) + Square (5,000 queries)

# images per second, forward + backward, batch 128 (see the module docstring)
THROUGHPUT = {
    "cpu-2": {"lenet": 11_000, "wong": 22_000, "madry": 1_500, "stdcnn": 7_000, "gcnn_p4": 2_000,
              "resnet18": 60, "vgg16": 80},
}
TRANSFORM = 0.3  # a rotation / translation of one image (grid_sample), in image-passes of the small nets
WIDTH_COST = {"stdcnn": 2.0, "gcnn_p4": 2.0}  # per doubling of width (convolutions: ×4 flops, measured ×2 here)
DEFAULT_WIDTH = {"stdcnn": 8, "gcnn_p4": 8}
# Work on the CPU that no model pass accounts for (bootstrap statistics, SVDs, principal angles):
# the cpu book's measured minutes beyond this model's estimate (chapter 03: 29.1 measured vs 24.1;
# chapter 04: 6.2 vs 0.3). A Colab GPU session runs it on its own 2 CPU cores too, so it is added as is.
CPU_SIDE_MINUTES = {"03_robustness_vs_invariance": 5.0, "04_perturbation_geometry": 5.9}
# Training side by side (invrob.train.parallel; a profile whose profiles.TRAIN_WORKERS is "cores"), per
# family: the cpu book's training minutes one at a time over side by side, both from scratch on the
# 2-core machine (2026-12-06: chapter 03's Wong grid 35.6 → 24.3 min, chapter 01's width-16 StdCNN
# grid 13.0 → 11.4; the second run with glibc keeping freed memory, see the Makefile). A small net
# leaves a core idle, a wider one less. Divides the training minutes of such a profile on that device.
SIDE_BY_SIDE = {"cpu-2": {"wong": 1.46, "stdcnn": 1.14}}
H100_CHAPTER03_HOURS = 4.6  # paper profile, chapter 03's MNIST part, measured on an H100 (issue 21)


@dataclass(frozen=True)
class Part:
    notebook: str
    part: str
    family: str
    passes: float  # image-passes


def _family_cost(config) -> tuple[str, float]:
    """``(family, relative cost per image)`` of a config's model (width-adjusted)."""
    family = config.model
    width = (config.model_kwargs or {}).get("width")
    factor = 1.0
    if width is not None and family in WIDTH_COST:
        factor = WIDTH_COST[family] ** math.log2(width / DEFAULT_WIDTH[family])
    elif width is not None and family == "wong":
        factor = 0.5 + 0.5 * width  # measured: width ¼ and ½ train at 0.7–0.8× the time of width 1
    return family, factor


def training_passes(config, n: int | None = None) -> float:
    """Image-passes to train ``config`` on ``n`` images (default: its dataset's training split)."""
    n = N_TRAIN[config.dataset] if n is None else n
    batches = math.ceil(n / config.batch_size)
    if config.max_batches_per_epoch:
        batches = min(batches, config.max_batches_per_epoch)
    per_image = 1.0 + (TRANSFORM if config.theta > 0 or config.schedule is not None else 0.0)
    adversarial = config.eps > 0 or config.schedule is not None
    if adversarial:
        per_image += config.attack_steps
    if config.spatial_attack:
        per_image += config.spatial_attack.get("k", 10) * (FORWARD + TRANSFORM)
        if config.spatial_attack.get("invariance"):
            per_image += 1.0
    return batches * config.batch_size * config.epochs * per_image


def _aa(settings) -> float:
    return AA_CHEAP if getattr(settings, "aa_attacks", None) else AA_STANDARD


def _size(value, dataset="mnist") -> int:
    return N_TEST[dataset] if value is None else int(value)


def _train_parts(notebook, configs, train_size, seen: set) -> list[Part]:
    parts = []
    for config in configs:
        if config.slug() in seen:
            continue  # reloaded from an earlier chapter's checkpoint
        seen.add(config.slug())
        family, factor = _family_cost(config)
        parts.append(Part(notebook, "training", family, training_passes(config, train_size) * factor))
    return parts


def _eval_parts(notebook, configs, per_model: float, what: str) -> list[Part]:
    out = []
    for config in configs:
        family, factor = _family_cost(config)
        out.append(Part(notebook, what, family, per_model * factor))
    return out


def _invariance(profile, seen):
    study = studies.get("invariance")
    S = study.settings(profile)
    configs = study.configs(S)
    nb1, nb2 = study.notebooks
    parts = _train_parts(nb1, configs, S.train_size, seen)
    for config in configs:
        eps = [e for e in study.per_model(S.eps_grid, config.model) if e > 0]
        family, factor = _family_cost(config)
        parts.append(Part(nb1, "AutoAttack", family, _size(S.attack_size) * len(eps) * _aa(S) * factor))
        parts.append(Part(nb1, "rotated accuracy", family,
                          _size(S.test_size) * len(S.phis) * FORWARD * factor))
        parts.append(Part(nb2, "boundary distances", family,
                          _size(S.distance_size) * 2 * S.bisection_steps * S.distance_steps * factor))
    return parts


def _adversarial(profile, seen):
    study = studies.get("adversarial")
    S = study.settings(profile)
    configs = study.configs(S)
    capacity = study.capacity_configs(S)
    nb3, nb4 = study.notebooks
    parts = _train_parts(nb3, configs, S.train_size, seen) + _train_parts(nb3, capacity, S.train_size, seen)
    for config in [*configs, *capacity]:
        family, factor = _family_cost(config)
        parts.append(Part(nb3, "AutoAttack", family, _size(S.attack_size) * 2 * _aa(S) * factor))
    for config in configs:
        family, factor = _family_cost(config)
        parts.append(Part(nb3, "rotations and worst-of-k", family,
                          _size(S.test_size) * len(S.phis) * FORWARD * factor
                          + _size(S.spatial_size) * len(S.phis) * S.worst_k * FORWARD * factor))
        parts.append(Part(nb4, "perturbation geometry", family,
                          (_size(S.pca_size) + _size(S.tangent_size)) * (S.pgd_steps + len(S.small_angles)) * factor))
    return parts


def _tradeoff(profile, seen):
    study = studies.get("tradeoff")
    S = study.settings(profile)
    configs = study.configs(S)
    nb = study.notebooks[0]
    parts = _train_parts(nb, configs, S.train_size, seen)
    grid = S.grid_angles * S.grid_shifts ** 2 + 30 + S.rotation_grid + S.grid_shifts ** 2
    for config in configs:
        family, factor = _family_cost(config)
        parts.append(Part(nb, "AutoAttack and joint attack", family,
                          _size(S.attack_size) * (_aa(S) + 100 + S.worst_k) * factor))
        parts.append(Part(nb, "spatial grids", family, _size(S.spatial_size) * grid * FORWARD * factor))
    return parts


def _certified(profile, seen):
    study = studies.get("certified")
    S = study.settings(profile)
    nb = study.notebooks[0]
    models = (sum(len(v) for v in S.invariance_models.values()) + len(S.eps_train) + len(S.recipes)) * len(S.seeds)
    per_model = (_size(S.certify_size) * (S.n0 + S.n) * FORWARD + _size(S.attack_size) * 2 * _aa(S)
                 + _size(S.test_size) * (4 + 2 * 3))  # Lie derivatives (JVPs) and equivariance errors
    return [Part(nb, "certificates, Lie derivatives, AutoAttack", "wong", models * per_model)]


BUILDERS = (_invariance, _adversarial, _tradeoff, _certified)  # in run order: reuse follows it


def estimate(profile: str, device: str = "cpu-2") -> "pandas.DataFrame":
    """One row per notebook, part and model family: image-passes and estimated minutes on ``device``."""
    import pandas as pd

    check_choice(profile, studies.PROFILES, "profile")
    check_choice(device, [*THROUGHPUT, "h100"], "device")
    seen: set = set()
    parts = [p for build in BUILDERS for p in build(profile, seen)]
    rates = throughput(device)
    frame = pd.DataFrame([dict(notebook=p.notebook, part=p.part, family=p.family, passes=p.passes)
                          for p in parts])
    frame["minutes"] = frame["passes"] / frame["family"].map(rates) / 60
    if TRAIN_WORKERS[profile] == "cores" and device in SIDE_BY_SIDE:
        training = frame["part"] == "training"
        gain = frame.loc[training, "family"].map(SIDE_BY_SIDE[device]).fillna(1.0)
        frame.loc[training, "minutes"] /= gain
    return frame.groupby(["notebook", "part", "family"], as_index=False, sort=False)[["passes", "minutes"]].sum()


def chapters(profile: str, device: str = "cpu-2") -> "pandas.Series":
    """Estimated minutes per notebook at ``profile`` on ``device`` (model passes, plus the
    CPU-side work measured at cpu: :data:`CPU_SIDE_MINUTES`)."""
    minutes = estimate(profile, device).groupby("notebook", sort=False)["minutes"].sum()
    return minutes + minutes.index.map(lambda nb: CPU_SIDE_MINUTES.get(nb, 0.0)).to_numpy()


def compare(profile: str, measured: dict, device: str = "cpu-2") -> "pandas.DataFrame":
    """Estimated against ``measured`` minutes per notebook (e.g. from ``notebook_times.csv``)."""
    import pandas as pd

    estimated = chapters(profile, device)
    frame = pd.DataFrame({"estimated (min)": estimated,
                          "measured (min)": pd.Series(measured, dtype=float).reindex(estimated.index)})
    frame["ratio"] = frame["estimated (min)"] / frame["measured (min)"]
    return frame


def throughput(device: str) -> dict[str, float]:
    """Images per second (fwd + bwd) per family on ``device``; ``h100``: calibrated (module docstring)."""
    check_choice(device, [*THROUGHPUT, "h100"], "device")
    if device != "h100":
        return THROUGHPUT[device]
    # chapter 03's MNIST part at paper: its image-passes in 4.6 h, in units of the CPU's LeNet
    cpu = THROUGHPUT["cpu-2"]
    frame = _chapter03_paper()
    lenet_equivalent = float((frame["passes"] * cpu["lenet"] / frame["family"].map(cpu)).sum())
    scale = lenet_equivalent / (H100_CHAPTER03_HOURS * 3600) / cpu["lenet"]
    return {family: rate * scale for family, rate in cpu.items()}


def _chapter03_paper():
    import pandas as pd

    parts = [p for p in _adversarial("paper", set()) if p.notebook.startswith("03")]
    return pd.DataFrame([dict(family=p.family, passes=p.passes) for p in parts])
