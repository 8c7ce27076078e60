"""The scale of each study at each profile: ``smoke``, ``cpu`` (default), ``gpu``, ``paper``.

A notebook's ``parameters`` cell names a profile and may override any setting
(``thetas``, ``seeds``, ...); :func:`settings` merges the two. The settings
themselves live with their study (:mod:`invrob.studies`, one module per study);
this module is the facade the notebooks, the sweep and the book read them through,
so the book states its protocol from the same numbers the code runs with.

- ``smoke``: tiny subsets, seconds per notebook; what the tests and nbval run.
- ``cpu``: MNIST with fast recipes and quality gates; the whole book in 57.5 minutes on 2 cores,
  measured from scratch in one run on 2026-12-06, its runs trained side by side
  (:data:`TRAIN_WORKERS`; 91.5 min one run at a time; see the README and the reproduce page).
- ``gpu``: full MNIST, the paper's grids where they fit, gate-passing fast recipes (ε = 0.3
  included), each chapter within an hour on one GPU (estimated by :mod:`invrob.tooling.budget`).
- ``paper``: the paper's scale (full MNIST and CIFAR-10, 3 seeds) for one GPU.
"""
from __future__ import annotations

from types import SimpleNamespace

from . import studies
from .errors import check_choice
from .studies import PROFILES

# Floating-point precision of each profile. Smoke runs are the regression checks'
# subject: in float64 the rounding differences between CPU models' kernels (about
# 1e-7 in float32) stay near 1e-16 through training, so a smoke run gives the same
# tables on any machine, within tolerances that can still catch a real change.
DTYPES = {"smoke": "float64", "cpu": "float32", "gpu": "float32", "paper": "float32"}

# How many runs a notebook trains side by side on a CPU (invrob.train.parallel): one per core at
# cpu, where a small net leaves a core idle (1.4-1.5x the runs per minute on 2 cores); one at
# smoke (the test suite runs its smoke run beside its unit tests, one thread each) and on GPUs.
TRAIN_WORKERS = {"smoke": 1, "cpu": "cores", "gpu": 1, "paper": 1}

# study → profile → settings, read-only by convention (each study module owns its own).
STUDIES: dict[str, dict[str, dict]] = {name: study.profile_settings for name, study in studies.STUDIES.items()}

__all__ = ["DTYPES", "PROFILES", "STUDIES", "TRAIN_WORKERS", "settings", "table", "use", "use_dtype"]


def settings(study: str, profile: str, **overrides) -> SimpleNamespace:
    """The settings of ``study`` at ``profile``; non-``None`` overrides win.

    Unknown studies, profiles or setting names, θ outside [0, 180] and ε < 0
    are refused with one :class:`~invrob.errors.InvrobError` line.
    """
    return studies.get(study).settings(profile, **overrides)


def use_dtype(profile: str) -> "torch.dtype":
    """Make the profile's precision torch's default dtype (models and data follow it); return it.

    :func:`use` calls it (notebooks call that).
    """
    import torch

    check_choice(profile, PROFILES, "profile")
    dtype = getattr(torch, DTYPES[profile])
    torch.set_default_dtype(dtype)
    return dtype


def use(profile: str) -> "torch.dtype":
    """Set up this process for ``profile``: its precision (:func:`use_dtype`, returned) and how many
    runs ``invrob.experiments.train_all`` trains side by side on a CPU (:data:`TRAIN_WORKERS`).

    Notebooks call this once, before building models or loading data."""
    from .train.parallel import set_default_workers

    dtype = use_dtype(profile)
    set_default_workers(TRAIN_WORKERS[profile])
    return dtype


def table(study: str) -> "pandas.DataFrame":
    """Every setting of ``study`` (rows) at every profile (columns), as the notebooks run them."""
    return studies.get(study).settings_table()
