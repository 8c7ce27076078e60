"""One training loop for natural, rotation-augmented and adversarial training.

Every step minimises the cross-entropy of a mini-batch that may first be
transformed (:mod:`invrob.train.recipe` has the details and the order):

- **rotation augmentation** (θ > 0): each image is rotated by its own angle
  drawn uniformly from ``[-θ, θ]`` degrees — the "augmented" models of the
  paper, trained to be (approximately) rotation invariant;
- **adversarial training** (ε > 0, Madry et al. 2018): the batch is replaced by
  ℓ∞ PGD adversarial examples, i.e. the step minimises
  ``E max_{‖δ‖∞ ≤ ε} L(f(x + δ), y)`` with the inner max approximated by
  ``attack_steps`` sign-gradient steps of size ``α = 2.5 ε / steps`` from a
  random start, keeping the last iterate (:func:`invrob.attacks.pgd_training_examples`).
  ε may be ramped up linearly over the first ``eps_warmup_epochs`` epochs
  (per batch), which helps small networks get off the ground.

- **worst-of-k spatial adversarial training** (``spatial_attack``, Engstrom et
  al. 2019): each image is replaced by the worst of k random rotations +
  translations (:class:`invrob.attacks.WorstOfK`, misclassified if any, else
  the largest cross-entropy), with k and the ranges in the config. With
  ``"invariance": λ > 0`` the loss gains Yang, Wang and Heinze-Deml's (NeurIPS
  2019) invariance-inducing regulariser, ``λ · ‖f(x) − f(x')‖²₂ / C`` between the
  logits of the untransformed image and of its worst-of-k transform ``x'``.

They compose: rotation, then the worst-of-k transformation, then PGD at ε on the
transformed batch (the joint threat model of :class:`invrob.attacks.JointAttack`).

Recipes are data, not code. ``schedule`` makes θ and ε piecewise constant in
the epoch: a tuple of stages ``(start_epoch, θ, ε)``, each in force from its
start epoch until the next one starts (:func:`stage_at`, a pure function of
the epoch, like the learning rate, so resuming needs no extra state). CuSP
(Kamath et al., NeurIPS 2021; the authors' ``cusp_cifar10.py``) is
``schedule=((0, 120, 2/255), (74, 150, 4/255), (89, 180, 8/255))`` with
``lr_schedule="step", lr_milestones=(74, 89, 99)`` over 120 epochs: epochs here
count from 0, theirs from 1 (their ``epoch >= 75`` is our ``epoch >= 74``), so
their stages last 74, 15 and 31 epochs and so do ours. With a
schedule the history also records each epoch's stage, ``stage_theta`` and ``stage_eps``
(apart from the ``theta`` and ``eps_train`` columns that name the model in the tables: the
config's final stage).

Reproducibility. Everything random in the loop — the shuffling, the rotation
angles, the worst-of-k transformations, the PGD random starts — is drawn from one
dedicated CPU ``torch.Generator`` seeded from ``config.seed`` (numbers are drawn on
the CPU and moved to the device, so the stream does not depend on the device).
Weight initialisation and dropout use torch's global RNG, seeded from the same
seed. Checkpoints (:mod:`invrob.train.checkpoint`) hold every RNG state, so an
interrupted run — at the end of an epoch, or mid-epoch with ``checkpoint_every`` —
resumes where it stopped and, on the CPU, ends bit-for-bit equal to an
uninterrupted run; a finished run is loaded, not retrained, by the next ``train``
call with the same config: later notebooks reuse the models that earlier ones trained.

The package, one concept a module:

- :mod:`invrob.train.config` — :class:`TrainConfig` (its checks, its identity and slug)
  and the pure functions of a config: :func:`lr_at`, :func:`stage_at`, the ε warm-up;
- :mod:`invrob.train.checkpoint` — checkpoint files, their checks, and resume state;
- :mod:`invrob.train.recipe` — one batch's loss under the recipe (attacks by registry name);
- :mod:`invrob.train.loop` — :func:`train`;
- :mod:`invrob.train.parallel` — a grid's runs trained side by side, one worker process per CPU core.
"""
# The former single module's public names, and the private ones invrob.stacked imports (it
# shares the loop's pieces): ``from invrob.train import X`` keeps working for all of them.
from ..data import DATASETS
from .checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, _data_generator, checkpoint_path,
                         data_fingerprint, load_checkpoint)
from .config import (ATTACK_FIELDS, CUSP_LR_MILESTONES, CUSP_SCHEDULE, ONECYCLE_PEAK, OPTIMIZERS,
                     OPTIONAL_FIELDS, RUNTIME_FIELDS, SCHEDULES, SPATIAL_ATTACK_DEFAULTS, TrainConfig,
                     _build_model, _eps_at, _resolve_device, lr_at, stage_at)
from .loop import _batches_per_epoch, _check_data, _fits_on_gpu, _make_optimizer, _progress, train
from .recipe import invariance_penalty

__all__ = ["TrainConfig", "train", "load_checkpoint", "checkpoint_path",
           "lr_at", "stage_at", "CUSP_SCHEDULE", "CUSP_LR_MILESTONES", "CHECKPOINT_VERSION"]
