"""Parameter sweeps: rerun a notebook over a grid with papermill, resumably, locally or on Dask.

Usage::

    python -m invrob.tooling.sweep sweeps/mnist-seeds.yaml                 # local; one worker per GPU, 1 on CPU
    invrob sweep sweeps/mnist-seeds.yaml --workers 2               # local, 2 workers
    invrob sweep sweeps/mnist-seeds.yaml --scheduler tcp://host:8786   # a Dask cluster
    invrob sweep sweeps/mnist-seeds.yaml --dry-run                 # validate, list points and their state

Sweep file (YAML)::

    name: mnist-seeds                 # folder under runs/; default: the file's stem
    notebook: notebooks/01_invariance_vs_robustness.ipynb
    kernel: python3                   # optional; default: the notebook's own kernelspec
    parameters:                       # fixed for every point
      profile: smoke
    grid:                             # cartesian product, in this order; each entry lists candidates
      seeds: [[0], [1]]               # a list-valued parameter: a list of lists
      thetas: [[0, 90], [0, 180]]
    points:                           # optional explicit points, each crossed with the grid;
      - {models: [stdcnn]}            # an entry may override `parameters`
      - {models: [gcnn_p4], profile: cpu}

Relative paths in the file are relative to the project root: the nearest folder above the
sweep file holding a ``pyproject.toml`` (else the sweep file's own folder). The notebook runs
with the root as its working directory; results go to ``<root>/runs`` unless ``--runs-dir``
says otherwise. On the command line, the sweep file and ``--runs-dir`` are relative to the
current directory, so a sweep runs from anywhere.

Validation (before anything runs; each failure is one :class:`InvrobError` line
``FILE:LINE: reason``, and the CLI prints it and exits 2):
unknown keys, a missing notebook or one without a cell tagged ``parameters``, parameter names
that cell does not define (``output_dir`` is the sweep's to set), a value whose type differs from
the default's (an int is accepted for a float; lists are checked element-wise against the
default's elements; a ``None`` or non-literal default accepts anything), numbers under names
starting with ``theta`` outside [0, 180] degrees, under names starting with ``eps`` below 0,
``profile`` not one of smoke / cpu / paper, duplicate grid values or points.

The study's settings check the values too. Which study a notebook belongs to is read
from its source: the ``profiles.settings("invariance", profile, seeds=seeds, ...)`` call in
its cells (:func:`notebook_study`); a parameter the call forwards (``seeds=seeds``) is
validated as that setting: its type against the study's value at the sweep's profile (a
seed must be an integer, ``seeds: [["zero"]]`` is refused), then by
:func:`invrob.profiles.settings` itself (unknown settings, θ outside [0, 180], ε < 0),
and model names against :func:`invrob.models.model_names` (``models: [["StdCNN"]]`` is
refused: the names are ``stdcnn``, ``gcnn_p4``, ...). Each point is then built with
``settings(study, its profile, **its overrides)``, exactly as its notebook will.
YAML 1.1 reads ``1e-3`` as a string; this loader reads it as a float, as YAML 1.2 does.

Layout of a run::

    runs/<name>/<point-id>/point.json       parameters, notebook, full digest
                          /executed.ipynb   the executed notebook
                          /executed.failed.ipynb  instead, when it failed (with the traceback)
                          /log.txt          the notebook's stdout/stderr, and the traceback
                          /*.csv            the notebook's tables (``output_dir`` is this folder)
                          /status.json      done | failed (+ error, host, timings); written last
    runs/<name>/merged/<table>.csv           every done point's <table>.csv, with columns
                                             point_id + its parameters (a column the table
                                             already has is kept as is; lists as JSON)
    runs/<name>/points.csv                   one row per point: state, seconds, error, paths

Point id: the first 12 hex digits of sha256(notebook bytes, canonical JSON of the parameters).
A point is finished iff its status.json says ``done`` with the same full digest, so editing
the notebook or a parameter reruns exactly the points it touches. Failed points, and points
left ``running`` by a killed sweep, are rerun. Every file is written under a temporary name and
renamed, so nothing is ever half-written.

Each point runs through :func:`invrob.tooling.runbook.run_notebook`, the runner ``invrob run`` and
the tests use: in the project root without changing this process's directory (safe in Dask's
threads), stdout/stderr into log.txt, the executed copy written atomically with progress bars
tidied. A point whose notebook raises is recorded as failed (error line, the executed copy
kept as ``executed.failed.ipynb`` with the traceback) and the sweep goes on; the summary lists
the failures. The CLI exits 0 when every point is done, 1 when some failed, 2 on a bad sweep
file, 130 when interrupted.

Parallelism: ``--workers N`` local worker processes (default: one per visible CUDA GPU, each
pinned with ``CUDA_VISIBLE_DEVICES``; 1 without a GPU). ``--scheduler ADDRESS`` submits each
point as a task to a Dask distributed scheduler instead, with no change to the sweep file.
On a cluster the project folder and the runs folder must be at the same path on every machine
(a shared file system), and each Dask worker should own one GPU and one thread
(``CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --nthreads 1``, or dask-cuda's per-GPU workers).
In Python: ``run_sweep("sweeps/x.yaml", workers=2)`` or ``run_sweep(spec, client=client)``.

Modules: :mod:`~invrob.tooling.sweep.spec` reads and validates a sweep file into a :class:`Sweep`
of points (:class:`Point`), with :mod:`~invrob.tooling.sweep.notebook` (a notebook's parameters cell and
study) and :mod:`~invrob.tooling.sweep.checks` (each value against the notebook's defaults and the
study's settings); :mod:`~invrob.tooling.sweep.status` is a point's status file;
:mod:`~invrob.tooling.sweep.execute` runs the points locally or on Dask (:func:`run_sweep`);
:mod:`~invrob.tooling.sweep.merge` merges the tables and writes the summary; :mod:`~invrob.tooling.sweep.cli`
is the command line.
"""
from __future__ import annotations

from .checks import RESERVED, StudyUse
from .cli import main
from .execute import SweepResult, run_point, run_sweep, visible_gpus
from .merge import merge_results, write_points_table
from .notebook import notebook_parameters, notebook_study
from .spec import SWEEP_KEYS, Point, Sweep, canonical_json, find_root, load_sweep, point_digest
from .status import read_status

__all__ = [
    "SWEEP_KEYS", "RESERVED", "Point", "Sweep", "canonical_json", "point_digest", "find_root",
    "notebook_parameters", "notebook_study", "StudyUse", "load_sweep", "read_status", "run_point",
    "visible_gpus", "SweepResult", "run_sweep", "merge_results", "write_points_table", "main",
]
