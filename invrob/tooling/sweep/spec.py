"""The sweep file: read a YAML document, validate it, and expand it into points.

:func:`load_sweep` reads the file with line numbers kept (:class:`_Doc`), checks its keys,
the notebook and every value (:mod:`invrob.tooling.sweep.checks`), and crosses the grid with the
explicit points into a :class:`Sweep` of points (:class:`Point`), each identified by
:func:`point_digest` (the notebook's bytes and the canonical JSON of its parameters).
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import InvrobError
from .checks import _check_name, _check_point, _check_value, _study_use
from .notebook import notebook_parameters
from .status import read_status

SWEEP_KEYS = ("name", "notebook", "kernel", "description", "parameters", "grid", "points")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def _is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
