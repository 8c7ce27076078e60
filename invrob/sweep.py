"""Parameter sweeps: rerun a notebook over a grid with papermill, resumably, locally or on Dask.

Usage::

    python -m invrob.sweep sweeps/mnist-seeds.yaml                 # local; one worker per GPU, 1 on CPU
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

Each point runs through :func:`invrob.runbook.run_notebook`, the runner ``invrob run`` and
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
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import difflib
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from .errors import InvrobError, check_choice, check_eps, check_positive_int, check_theta
from .profiles import PROFILES  # the one list of profiles (imports no torch)

SWEEP_KEYS = ("name", "notebook", "kernel", "description", "parameters", "grid", "points")
RESERVED = ("output_dir",)  # the sweep sets it to the point's folder
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNKNOWN = object()  # default of a parameter whose value is not a Python literal


# --------------------------------------------------------------------------- the sweep file

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not as the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Point:
    """One run of the notebook: the parameters the sweep sets, and its identity."""
    id: str          # 12 hex digits: the folder name
    digest: str      # full sha256 of notebook bytes + canonical parameters
    params: dict


@dataclass
class Sweep:
    """A validated sweep file, expanded into points."""
    name: str
    path: Path                 # the sweep file
    notebook: Path             # absolute
    root: Path                 # project root: the notebooks' working directory
    runs_dir: Path
    kernel: str | None
    points: list[Point]
    defaults: dict = field(repr=False, default_factory=dict)   # the notebook's parameters cell
    varying: tuple = ()        # parameter names that differ between points (for status lines)

    @property
    def dir(self) -> Path:
        return self.runs_dir / self.name

    def point_dir(self, point: Point) -> Path:
        return self.dir / point.id

    def state(self, point: Point) -> str:
        """'done', 'failed', 'running' (or killed while running) or 'pending'."""
        status = read_status(self.point_dir(point))
        if status is None:
            return "pending"
        if status.get("digest") != point.digest:
            return "pending"
        return status.get("state", "pending")

    def task(self, point: Point, kernel_name: str | None = None) -> dict:
        """What a worker needs to run one point: plain data, so it pickles anywhere."""
        return {
            "sweep": self.name,
            "point_id": point.id,
            "digest": point.digest,
            "notebook": str(self.notebook),
            "point_dir": str(self.point_dir(point)),
            "parameters": dict(point.params),
            "kernel_name": kernel_name or self.kernel,
            "cwd": str(self.root),
        }


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def point_digest(notebook_bytes: bytes, params: dict) -> str:
    """sha256 over the notebook's bytes and the canonical JSON of the parameters."""
    h = hashlib.sha256(notebook_bytes)
    h.update(b"\0")
    h.update(canonical_json(params).encode())
    return h.hexdigest()


class _Doc:
    """A composed YAML document: values plus the line each came from."""

    def __init__(self, path: Path, display: str):
        self.display = display
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise InvrobError(f"{display}: cannot read sweep file ({err.__class__.__name__}: {err})") from None
        self.loader = _Loader(text)
        try:
            self.root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark else 1
            raise InvrobError(f"{display}:{line}: invalid YAML: {err.problem or err.context}") from None
        except yaml.YAMLError as err:
            raise InvrobError(f"{display}: invalid YAML: {err}") from None

    def error(self, node, message: str) -> InvrobError:
        line = node.start_mark.line + 1 if node is not None else 1
        return InvrobError(f"{self.display}:{line}: {message}")

    def value(self, node):
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as err:
            raise self.error(node, f"invalid value: {getattr(err, 'problem', err)}") from None

    def mapping(self, node, what: str) -> dict:
        """{key: (key_node, value_node)} of a mapping node; duplicate keys are refused."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping (name: value lines)")
        out = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, f"{what}: keys must be names, got {key!r}")
            if key in out:
                raise self.error(key_node, f"{what}: {key!r} is given twice (first on line "
                                           f"{out[key][0].start_mark.line + 1})")
            out[key] = (key_node, value_node)
        return out


def find_root(sweep_file: Path) -> Path:
    """The nearest folder above the sweep file with a pyproject.toml, else its own folder."""
    here = sweep_file.resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return here


def notebook_parameters(notebook: Path) -> dict:
    """{name: default} of the notebook's cell tagged ``parameters``.

    Defaults that are not Python literals (``thetas = list(range(0, 181, 15))``) map to an
    "unknown" marker and accept any value. Raises InvrobError without a line number; the
    caller adds it.
    """
    try:
        nb = json.loads(notebook.read_text())
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvrobError(f"is not a readable notebook ({err.__class__.__name__}: {err})") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            break
    else:
        raise InvrobError("has no cell tagged 'parameters'")
    # IPython magics and shell escapes are not Python; they define no parameters.
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise InvrobError(f"has a parameters cell that is not valid Python (line {err.lineno}: {err.msg})") from None
    params = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            default = _UNKNOWN
        for target in targets:
            if isinstance(target, ast.Name):
                params[target.id] = default
    return params


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
         list: "a list", tuple: "a list", dict: "a mapping"}


def _kind(value) -> str:
    for t in (bool, int, float, str, list, tuple, dict):
        if isinstance(value, t):
            return _KIND[t]
    return type(value).__name__


def _matches(value, default) -> bool:
    """Does ``value`` have the type of ``default``? (int for float ok; bool is not a number)."""
    if default is None or default is _UNKNOWN:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, list) and (
            not default or all(any(_matches(v, d) for d in default) for v in value))
    if isinstance(default, dict):  # a per-model map; one value for every model also fits
        if isinstance(value, dict):
            return True
        return any(_matches(value, d) for d in default.values())
    return True


def _scalar_nodes(node) -> Iterator:
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalar_nodes(item)
    elif isinstance(node, yaml.MappingNode):
        for _, item in node.value:
            yield from _scalar_nodes(item)


def _type_check(doc: _Doc, name: str, node, value, default, source: str, in_grid: bool = False) -> None:
    """Refuse ``value`` unless it has the type of ``default`` (``source``: where that default is from)."""
    if _matches(value, default):
        return
    culprit = node
    if isinstance(default, (list, tuple)) and isinstance(value, list):
        # point at the first element of the wrong type
        for item_node, item in zip(node.value, value):
            if not any(_matches(item, d) for d in default):
                culprit = item_node
                expected = " or ".join(sorted({_kind(d) for d in default}))
                raise doc.error(culprit, f"{name}: element {item!r} is {_kind(item)}, expected "
                                         f"{expected} ({source})")
    hint = ""
    if in_grid and isinstance(default, (list, tuple)):
        hint = f"; a grid entry lists candidate values, so a list parameter needs a list of lists: [{default!r}, ...]"
    raise doc.error(culprit, f"{name} must be {_kind(default)} ({source}), "
                             f"got {_kind(value)} {value!r}{hint}")


def _check_value(doc: _Doc, name: str, node, default, in_grid: bool = False, study: "StudyUse | None" = None):
    """Validate one value for parameter ``name``; return it. Errors point at the culprit's line."""
    value = doc.value(node)
    _type_check(doc, name, node, value, default, f"the notebook's default is {default!r}", in_grid)
    # Ranges: every number under a theta*/eps* name, wherever it sits in a list.
    if name.startswith(("theta", "eps")):
        for scalar in _scalar_nodes(node):
            number = doc.value(scalar)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            try:
                (check_theta if name.startswith("theta") else check_eps)(number, name)
            except InvrobError as err:
                raise doc.error(scalar, str(err)) from None
    if name == "profile" and isinstance(value, str):
        try:
            check_choice(value, PROFILES, "profile")
        except InvrobError as err:
            raise doc.error(node, str(err)) from None
    if study is not None and name in study.forwards:
        _check_setting(doc, name, node, value, study, in_grid)
    return value


# --------------------------------------------------------------------------- the study's settings

@dataclass(frozen=True)
class StudyUse:
    """How a notebook uses its study's settings: ``profiles.settings(study, profile, seeds=seeds, ...)``.

    ``forwards`` maps a notebook parameter to the setting it overrides; ``profile`` is the
    profile whose values give the expected types (the sweep's fixed profile, else the
    notebook's default).
    """
    study: str
    forwards: dict
    profile: str = "cpu"


def notebook_study(notebook: Path) -> tuple[str, dict] | None:
    """``(study, {parameter: setting})`` from the notebook's ``profiles.settings("study", ...)`` call.

    Read from the code cells' source, so a sweep validates a point with the very settings
    the notebook will build: the call whose first argument is a string literal; a keyword
    whose value is a bare parameter name (``seeds=seeds``) forwards that parameter. With
    several such calls, the one forwarding the most parameters. None when the notebook
    calls no ``settings`` (the sweep then checks only the parameters cell's types).
    """
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name != "settings" or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            forwards = {kw.value.id: kw.arg for kw in node.keywords
                        if kw.arg is not None and isinstance(kw.value, ast.Name)}
            found.append((first.value, forwards))
    if not found:
        return None
    return max(found, key=lambda item: len(item[1]))  # max keeps the first of equals


def _check_setting(doc: _Doc, name: str, node, value, study: StudyUse, in_grid: bool) -> None:
    """Check a value that the notebook forwards to ``profiles.settings``, as that call will."""
    from .profiles import STUDIES, settings

    if value is None:
        return  # None: the profile's value
    setting = study.forwards[name]
    expected = STUDIES[study.study][study.profile].get(setting)
    if expected is not None:
        _type_check(doc, name, node, value, expected,
                    f"the {study.study} study has {setting} = {expected!r} at the {study.profile} profile",
                    in_grid)
    try:
        settings(study.study, study.profile, **{setting: value})
    except InvrobError as err:
        raise doc.error(node, f"{name}: {err}") from None
    if setting == "models":
        from .models import model_names  # imports torch: only when a sweep names models

        valid = model_names()
        items = zip(node.value, value) if isinstance(node, yaml.SequenceNode) and isinstance(value, list) \
            else [(node, value)]
        for item_node, item in items:
            if item not in valid:
                close = difflib.get_close_matches(str(item).lower(), valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise doc.error(item_node, f"{name}: unknown model {item!r}; {hint}valid: {', '.join(valid)}")


def _check_name(doc: _Doc, key_node, name: str, defaults: dict, notebook_shown: str):
    if name in RESERVED:
        raise doc.error(key_node, f"{name!r} is set by the sweep (each point writes into its own "
                                  f"runs/<sweep>/<point-id>/ folder); remove it")
    if name not in defaults:
        close = difflib.get_close_matches(name, list(defaults), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        valid = ", ".join(n for n in defaults if n not in RESERVED)
        raise doc.error(key_node, f"unknown parameter {name!r} for {notebook_shown}; {hint}valid: {valid}")


def load_sweep(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Sweep:
    """Read, validate and expand a sweep file. Raises InvrobError ``FILE:LINE: reason``."""
    display = str(path)
    path = Path(path)
    if not path.is_file():
        raise InvrobError(f"{display}: no such sweep file")
    doc = _Doc(path, display)
    try:
        return _build(doc, path, runs_dir)
    finally:
        doc.loader.dispose()


def _build(doc: _Doc, path: Path, runs_dir) -> Sweep:
    if doc.root is None:
        raise doc.error(None, "the sweep file is empty; it needs at least 'notebook:'")
    top = doc.mapping(doc.root, "a sweep file")
    for key, (key_node, _) in top.items():
        if key not in SWEEP_KEYS:
            close = difflib.get_close_matches(key, SWEEP_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise doc.error(key_node, f"unknown key {key!r}; {hint}valid: {', '.join(SWEEP_KEYS)}")

    def text(key: str, required: bool = False) -> tuple[str | None, Any]:
        if key not in top:
            if required:
                raise doc.error(doc.root, f"missing required key {key!r}")
            return None, None
        node = top[key][1]
        value = doc.value(node)
        if not isinstance(value, str) or not value.strip():
            raise doc.error(node, f"{key} must be a non-empty string, got {value!r}")
        return value, node

    name, name_node = text("name")
    if name is None:
        name = path.stem
    if not _NAME_RE.match(name):
        raise doc.error(name_node, f"sweep name {name!r} must be letters, digits, '.', '_' or '-' "
                                   f"(it becomes a folder name)")
    kernel, _ = text("kernel")
    text("description")

    nb_text, nb_node = text("notebook", required=True)
    root = find_root(path)
    notebook = Path(nb_text).expanduser()
    notebook = notebook if notebook.is_absolute() else root / notebook
    if notebook.suffix != ".ipynb":
        raise doc.error(nb_node, f"notebook {nb_text!r} is not a .ipynb file")
    if not notebook.is_file():
        raise doc.error(nb_node, f"notebook {nb_text!r} not found (looked for {notebook})")
    notebook = notebook.resolve()
    try:
        defaults = notebook_parameters(notebook)
    except InvrobError as err:
        raise doc.error(nb_node, f"notebook {nb_text} {err}") from None
    nb_bytes = notebook.read_bytes()
    study = _study_use(doc, top, nb_node, nb_text, notebook, defaults)

    # fixed parameters
    fixed: dict = {}
    if "parameters" in top and not _is_null(top["parameters"][1]):
        for pname, (key_node, value_node) in doc.mapping(top["parameters"][1], "parameters").items():
            _check_name(doc, key_node, pname, defaults, nb_text)
            fixed[pname] = _check_value(doc, pname, value_node, defaults[pname], study=study)

    # grid: name -> list of candidate values, in file order
    grid: dict = {}
    if "grid" in top and not _is_null(top["grid"][1]):
        for pname, (key_node, value_node) in doc.mapping(top["grid"][1], "grid").items():
            _check_name(doc, key_node, pname, defaults, nb_text)
            if pname in fixed:
                raise doc.error(key_node, f"{pname!r} is both in parameters and in grid; keep one")
            if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
                raise doc.error(value_node, f"grid: {pname} must be a non-empty list of candidate "
                                            f"values, e.g. {pname}: [a, b]")
            candidates, seen = [], {}
            for item_node in value_node.value:
                value = _check_value(doc, pname, item_node, defaults[pname], in_grid=True, study=study)
                key = canonical_json(value)
                if key in seen:
                    raise doc.error(item_node, f"grid: {pname} lists {value!r} twice "
                                               f"(first on line {seen[key]})")
                seen[key] = item_node.start_mark.line + 1
                candidates.append(value)
            grid[pname] = candidates

    # explicit points, each crossed with the grid
    entries: list = [({}, None)]
    if "points" in top and not _is_null(top["points"][1]):
        node = top["points"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise doc.error(node, "points must be a non-empty list of mappings, e.g. - {seed: 0}")
        entries = []
        for entry_node in node.value:
            entry = {}
            for pname, (key_node, value_node) in doc.mapping(entry_node, "a points entry").items():
                _check_name(doc, key_node, pname, defaults, nb_text)
                if pname in grid:
                    raise doc.error(key_node, f"{pname!r} is both in grid and in points; keep one")
                entry[pname] = _check_value(doc, pname, value_node, defaults[pname], study=study)
            entries.append((entry, entry_node))

    points, seen_points = [], {}
    names = list(grid)
    for entry, entry_node in entries:
        for combo in itertools.product(*(grid[n] for n in names)):
            params = {**fixed, **entry, **dict(zip(names, combo))}
            digest = point_digest(nb_bytes, params)
            if digest in seen_points:
                raise doc.error(entry_node, f"duplicate point: the same parameters as line {seen_points[digest]}")
            seen_points[digest] = entry_node.start_mark.line + 1 if entry_node is not None else 1
            if study is not None:
                _check_point(doc, entry_node or nb_node, params, defaults, study)
            points.append(Point(id=digest[:12], digest=digest, params=params))

    all_names = dict.fromkeys(n for p in points for n in p.params)
    varying = tuple(n for n in all_names
                    if len({canonical_json(p.params.get(n)) for p in points}) > 1)
    runs = Path(runs_dir) if runs_dir is not None else root / "runs"
    return Sweep(name=name, path=path, notebook=notebook, root=root, runs_dir=runs.resolve(),
                 kernel=kernel, points=points, defaults=defaults, varying=varying)


def _study_use(doc: _Doc, top: dict, nb_node, nb_text: str, notebook: Path, defaults: dict) -> StudyUse | None:
    """The notebook's study (:func:`notebook_study`), checked; the profile for type checks."""
    from .profiles import STUDIES

    found = notebook_study(notebook)
    if found is None:
        return None
    name, forwards = found
    if name not in STUDIES:
        raise doc.error(nb_node, f"notebook {nb_text} calls profiles.settings with unknown study {name!r}; "
                                 f"valid: {', '.join(STUDIES)}")
    profile = defaults.get("profile")
    if "parameters" in top and isinstance(top["parameters"][1], yaml.MappingNode):
        for key_node, value_node in top["parameters"][1].value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "profile":
                profile = doc.value(value_node)
    profile = profile if profile in PROFILES else "cpu"
    return StudyUse(study=name, forwards={p: s for p, s in forwards.items() if p in defaults}, profile=profile)


def _check_point(doc: _Doc, node, params: dict, defaults: dict, study: StudyUse) -> None:
    """One point's settings as its notebook will build them, at the point's own profile."""
    from .profiles import settings

    profile = params.get("profile", defaults.get("profile"))
    if profile not in PROFILES:
        return  # a notebook default that is not a literal profile: the notebook decides
    overrides = {setting: params[name] for name, setting in study.forwards.items() if name in params}
    try:
        settings(study.study, profile, **overrides)
    except InvrobError as err:
        raise doc.error(node, f"this point's settings at the {profile} profile: {err}") from None


def _is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


# --------------------------------------------------------------------------- one point

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _write_json(path: Path, data: dict) -> None:
    """Write JSON under a temporary name, then rename: never half a status file.

    The same scheme as ``invrob.utils.atomic_write``, which is not used here because
    ``invrob.utils`` imports torch: seconds per worker process, only to write a few bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(point_dir: str | os.PathLike) -> dict | None:
    """The point's status.json, or None when absent or unreadable (then it is rerun)."""
    try:
        data = json.loads((Path(point_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_point(task: dict) -> dict:
    """Execute one point (``Sweep.task``) with :func:`invrob.runbook.run_notebook`; return its status.

    Runs in a worker: a local process, or a Dask worker on another machine. Never raises
    for a failing notebook (its status says ``failed``, with the error line; the executed
    copy is kept as ``executed.failed.ipynb``, as the runner keeps every failing notebook);
    a KeyboardInterrupt leaves status ``running`` so that the point is rerun on resume.
    """
    from .runbook import NotebookError, failed_path, run_notebook

    pdir = Path(task["point_dir"])
    started, t0 = _now(), time.monotonic()
    status = {"sweep": task["sweep"], "point_id": task["point_id"], "digest": task["digest"],
              "host": socket.gethostname(), "pid": os.getpid(), "started": started,
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    executed, log_path = pdir / "executed.ipynb", pdir / "log.txt"
    if not Path(task["cwd"]).is_dir() or not Path(task["notebook"]).is_file():
        # A cluster worker without the shared file system: say so instead of a deep traceback.
        return {**status, "state": "failed", "finished": _now(), "seconds": 0.0, "executed": None,
                "error": f"project folder {task['cwd']} or notebook not found on {status['host']}; "
                         f"Dask workers need the project and runs folders at the same path (shared FS)"}
    pdir.mkdir(parents=True, exist_ok=True)
    # This attempt replaces whatever an earlier one left: stale tables must not be merged.
    for stale in [*pdir.glob("*.csv"), executed, failed_path(executed), log_path]:
        stale.unlink(missing_ok=True)
    _write_json(pdir / "point.json", {"sweep": task["sweep"], "point_id": task["point_id"],
                                      "digest": task["digest"], "notebook": task["notebook"],
                                      "parameters": task["parameters"]})
    _write_json(pdir / "status.json", {**status, "state": "running"})

    log_part = pdir / ".log.txt.partial"
    params = {**task["parameters"], "output_dir": str(pdir)}
    error, kept = None, executed
    with open(log_part, "w") as log:
        log.write(f"# point {task['point_id']} of sweep {task['sweep']} on {status['host']} "
                  f"(pid {status['pid']}), started {started}\n# notebook {task['notebook']}\n"
                  f"# parameters {canonical_json(params)}\n")
        log.flush()
        try:
            # The runner writes the traceback into the log and keeps a failing copy.
            run_notebook(task["notebook"], executed, cwd=task["cwd"], parameters=params, log=log,
                         kernel_name=task.get("kernel_name"))
        except NotebookError as err:
            error, kept = err.short, err.executed
        except InvrobError as err:  # the notebook or the working directory vanished meanwhile
            error, kept = str(err), None
        log.write(f"# finished {_now()}: {'done' if error is None else 'FAILED: ' + error}\n")
    os.replace(log_part, log_path)
    status.update(state="done" if error is None else "failed", error=error, finished=_now(),
                  seconds=round(time.monotonic() - t0, 3),
                  executed=str(kept) if kept is not None and kept.exists() else None,
                  tables=sorted(p.name for p in pdir.glob("*.csv")))
    _write_json(pdir / "status.json", status)  # last: only now is the point finished
    return status


# --------------------------------------------------------------------------- backends

def visible_gpus() -> list[str]:
    """CUDA device ids this process may use (respecting CUDA_VISIBLE_DEVICES); [] on CPU."""
    if not Path("/dev/nvidiactl").exists() and shutil.which("nvidia-smi") is None:
        return []  # no NVIDIA driver: spare the torch import
    try:
        import torch
        count = torch.cuda.device_count()
    except Exception:  # no torch, or a broken driver: run on CPU
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in env.split(",") if s.strip()] if env else [str(i) for i in range(count)]
    return ids[:count]


def _pin_worker(devices) -> None:
    """Pool initializer: take one GPU id off the queue (kernels inherit the environment)."""
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device


def _crashed(task: dict, err: BaseException) -> dict:
    first = (str(err).strip().splitlines() or [""])[0]
    return {"sweep": task["sweep"], "point_id": task["point_id"], "digest": task["digest"],
            "state": "failed", "error": f"worker lost: {type(err).__name__}: {first}",
            "host": None, "seconds": None, "executed": None, "finished": _now()}


def _run_local(tasks: list, workers: int | None, on_done: Callable[[dict], None]) -> None:
    gpus = visible_gpus()
    n = workers if workers is not None else max(1, len(gpus))
    n = min(check_positive_int(n, "workers"), len(tasks))
    if n == 1 and not gpus:
        # One worker, nothing to pin: run in this process (papermill's kernel is a
        # subprocess anyway), sparing a worker process start.
        for task in tasks:
            try:
                outcome = run_point(task)
            except Exception as err:
                outcome = _crashed(task, err)
            on_done(outcome)
        return
    # spawn, not fork: the driver may hold threads (tqdm, torch) that fork would copy mid-state.
    ctx = multiprocessing.get_context("spawn")
    devices = ctx.Queue()
    for i in range(n):
        devices.put(gpus[i % len(gpus)] if gpus else None)
    pool = cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_pin_worker, initargs=(devices,))
    futures = {pool.submit(run_point, task): task for task in tasks}
    try:
        for future in cf.as_completed(futures):
            try:
                outcome = future.result()
            except Exception as err:  # BrokenProcessPool: a worker was killed
                outcome = _crashed(futures[future], err)
            on_done(outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(tasks: list, client, on_done: Callable[[dict], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InvrobError("the Dask backend needs dask[distributed]: pip install 'dask[distributed]'") from None
    own = isinstance(client, str)
    if own:
        address = client
        try:
            client = Client(address)
        except (OSError, TimeoutError, ValueError) as err:
            raise InvrobError(f"cannot reach the Dask scheduler {address}: {err}") from None
    token = uuid.uuid4().hex[:8]  # a key per submission: a scheduler may remember older ones
    futures = {client.submit(run_point, task, key=f"invrob-{task['sweep']}-{task['point_id']}-{token}",
                             pure=False): task for task in tasks}
    try:
        for future in as_completed(list(futures)):
            try:
                outcome = future.result()
            except Exception as err:  # KilledWorker, a lost connection
                outcome = _crashed(futures[future], err)
            on_done(outcome)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------- the sweep

@dataclass
class SweepResult:
    sweep: Sweep
    outcomes: dict                 # point id -> status dict (this run's, or the stored one)
    ran: list                      # ids executed by this call
    cached: list                   # ids already done before it
    merged: dict                   # table name -> merged CSV path

    @property
    def done(self) -> list:
        return [i for i, o in self.outcomes.items() if o.get("state") == "done"]

    @property
    def failed(self) -> list:
        return [i for i, o in self.outcomes.items() if o.get("state") != "done"]

    @property
    def ok(self) -> bool:
        return not self.failed


def _describe(sweep: Sweep, point: Point) -> str:
    shown = sweep.varying or tuple(point.params)[:3]
    return " ".join(f"{n}={canonical_json(point.params.get(n))}" for n in shown)


def _shown(path) -> str:
    """A path relative to the current folder when it is below it (shorter status lines)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _check_kernel(name: str | None, notebook: Path) -> None:
    if name is None:
        name = json.loads(notebook.read_text()).get("metadata", {}).get("kernelspec", {}).get("name")
        if name is None:
            return  # papermill falls back to the default python kernel
    from jupyter_client.kernelspec import KernelSpecManager
    available = sorted(KernelSpecManager().find_kernel_specs())
    if name not in available:
        raise InvrobError(f"Jupyter kernel {name!r} is not installed here; available: "
                          f"{', '.join(available) or 'none'} (pass --kernel NAME, or install it: "
                          f"python -m ipykernel install --user --name {name})")


def run_sweep(spec, *, workers: int | None = None, client=None, scheduler: str | None = None,
              kernel_name: str | None = None, runs_dir=None, progress: bool = True,
              merge: bool = True, out=None) -> SweepResult:
    """Run every point of a sweep that is not done yet; merge the results.

    ``spec``: a sweep file path or a :class:`Sweep`. Backend: ``client`` (a
    ``distributed.Client``) or ``scheduler`` (its address) for Dask, else ``workers``
    local processes. Status lines go to ``out`` (stdout), the progress bar to stderr.
    """
    from tqdm.auto import tqdm

    out = out or sys.stdout
    sweep = spec if isinstance(spec, Sweep) else load_sweep(spec, runs_dir=runs_dir)
    if workers is not None:
        check_positive_int(workers, "workers")
    if client is not None and scheduler is not None:
        raise InvrobError("give a Dask client or a scheduler address, not both")
    dask = client if client is not None else scheduler
    kernel = kernel_name or sweep.kernel
    if dask is None:
        _check_kernel(kernel, sweep.notebook)  # a cluster's workers may have other kernels

    by_id = {p.id: p for p in sweep.points}
    states = {p.id: sweep.state(p) for p in sweep.points}
    cached = [i for i, s in states.items() if s == "done"]
    todo = [p for p in sweep.points if states[p.id] != "done"]
    interrupted = sum(states[p.id] == "running" for p in todo)
    failed_before = sum(states[p.id] == "failed" for p in todo)
    if dask is None:
        where = (f"{workers} local worker{'s' * (workers > 1)}" if workers
                 else "local workers (one per GPU, 1 on CPU)")
    else:
        where = f"Dask scheduler {dask}" if isinstance(dask, str) else "a Dask client"
    print(f"sweep {sweep.name}: {len(sweep.points)} points of {_shown(sweep.notebook)} -> {_shown(sweep.dir)}; "
          f"{len(cached)} done already, {len(todo)} to run"
          + (f" ({failed_before} failed before, {interrupted} interrupted)" if failed_before or interrupted else "")
          + (f" on {where}" if todo else ""), file=out, flush=True)

    outcomes: dict = {}
    bar = tqdm(total=len(sweep.points), initial=len(cached), unit="point", desc=sweep.name,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def on_done(outcome: dict) -> None:
        outcomes[outcome["point_id"]] = outcome
        bar.update(1)
        point = by_id[outcome["point_id"]]
        seconds = outcome.get("seconds")
        timing = f" ({seconds:.1f} s on {outcome.get('host')})" if seconds is not None else ""
        line = f"[{len(outcomes)}/{len(todo)}] {outcome['state']:<6} {point.id} {_describe(sweep, point)}{timing}"
        if outcome["state"] != "done":
            line += f"\n         {outcome.get('error')}"
        if progress:
            bar.write(line, file=out)
        else:
            print(line, file=out, flush=True)

    tasks = [sweep.task(p, kernel) for p in todo]
    try:
        if tasks:
            if dask is not None:
                _run_dask(tasks, dask, on_done)
            else:
                _run_local(tasks, workers, on_done)
    finally:
        bar.close()

    for pid in cached:
        outcomes[pid] = read_status(sweep.point_dir(by_id[pid])) or {"point_id": pid, "state": "done"}
    outcomes = {p.id: outcomes[p.id] for p in sweep.points if p.id in outcomes}
    merged = merge_results(sweep) if merge else {}
    write_points_table(sweep, outcomes)
    result = SweepResult(sweep=sweep, outcomes=outcomes, ran=[p.id for p in todo], cached=cached, merged=merged)
    _summary(result, out)
    return result


def _summary(result: SweepResult, out) -> None:
    sweep = result.sweep
    print(f"sweep {sweep.name}: {len(result.done)}/{len(sweep.points)} points done "
          f"({len(result.cached)} from earlier runs), {len(result.failed)} failed", file=out)
    for table, path in result.merged.items():
        print(f"  merged {table}: {_shown(path)}", file=out)
    if result.failed:
        print("failed points (rerun the same command to retry them):", file=out)
        for pid in result.failed:
            o = result.outcomes[pid]
            point = next(p for p in sweep.points if p.id == pid)
            print(f"  {pid} {_describe(sweep, point)}: {o.get('error')}\n"
                  f"    {_shown(o.get('executed') or sweep.point_dir(point) / 'log.txt')}", file=out)
    out.flush()


def _cell(value):
    """A parameter as a table cell: lists and mappings as JSON text."""
    return canonical_json(value) if isinstance(value, (list, tuple, dict)) else value


def merge_results(sweep: Sweep) -> dict:
    """Concatenate each table over the done points into runs/<sweep>/merged/<table>.csv.

    Columns ``point_id`` and the point's parameters come first; a parameter the table
    already has as a column (a notebook's own ``seed``) keeps the table's values.
    """
    import pandas as pd
    from .utils import atomic_to_csv

    frames: dict = {}
    for point in sweep.points:
        if sweep.state(point) != "done":
            continue
        for csv in sorted(sweep.point_dir(point).glob("*.csv")):
            try:
                frame = pd.read_csv(csv)
            except pd.errors.EmptyDataError:
                continue
            extra = {"point_id": point.id, **{k: _cell(v) for k, v in point.params.items()}}
            position = 0
            for column, value in extra.items():
                if column not in frame.columns:
                    frame.insert(position, column, value)
                    position += 1
            frames.setdefault(csv.stem, []).append(frame)
    merged = {}
    for table, parts in sorted(frames.items()):
        merged[table] = atomic_to_csv(pd.concat(parts, ignore_index=True),
                                      sweep.dir / "merged" / f"{table}.csv")
    return merged


def write_points_table(sweep: Sweep, outcomes: dict) -> Path:
    """runs/<sweep>/points.csv: one row per point with its state, timing, error and paths."""
    import pandas as pd
    from .utils import atomic_to_csv

    rows = []
    for point in sweep.points:
        o = outcomes.get(point.id) or read_status(sweep.point_dir(point)) or {}
        state = sweep.state(point)
        rows.append({"point_id": point.id, "state": state, "seconds": o.get("seconds"),
                     "host": o.get("host"), "finished": o.get("finished"),
                     "error": o.get("error") if state != "done" else None,
                     "executed": o.get("executed"),
                     **{k: _cell(v) for k, v in point.params.items()}})
    return atomic_to_csv(pd.DataFrame(rows), sweep.dir / "points.csv")


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None, prog: str = "python -m invrob.sweep") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a notebook over a grid of parameters with papermill: "
        "resumable, failures isolated, local workers or a Dask cluster. "
        "The sweep file format is described in `pydoc invrob.sweep`.")
    parser.add_argument("file", help="sweep file (YAML)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: one per visible GPU, 1 on CPU)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run on a Dask distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel (default: the notebook's own)")
    parser.add_argument("--runs-dir", default=None, help="where runs/<sweep>/ goes (default: <project>/runs)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the points; run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, status lines only")
    args = parser.parse_args(argv)
    try:
        if args.workers is not None and args.scheduler is not None:
            raise InvrobError("--workers is for local runs; a Dask cluster's size is set by its workers")
        sweep = load_sweep(args.file, runs_dir=args.runs_dir)
        if args.dry_run:
            print(f"sweep {sweep.name}: {len(sweep.points)} points of {_shown(sweep.notebook)} -> {_shown(sweep.dir)}")
            for point in sweep.points:
                print(f"  {point.id} {sweep.state(point):<7} {canonical_json(point.params)}")
            return 0
        result = run_sweep(sweep, workers=args.workers, scheduler=args.scheduler,
                           kernel_name=args.kernel, progress=not args.no_progress)
    except InvrobError as err:
        print(err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished points are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0 if result.ok else 1


if __name__ == "__main__":
    # Run the imported module's main, so pool and Dask workers pickle invrob.sweep.run_point
    # (not __main__.run_point).
    from invrob.sweep import main as _main
    sys.exit(_main())
