"""Regression checks that survive a different CPU: result tables with tolerances, outputs via nbval.

Numbers that come out of training differ in their last digits between CPU
models (MKL / oneDNN kernels round differently, and training amplifies it), so
a smoke run is checked in two parts, each comparing only what should be equal
on any machine:

- **Numeric tables** (:func:`compare_results`): every CSV the notebooks wrote is
  compared with a recorded reference table, row by row (rows matched on their
  key columns) and column by column, each metric within a tolerance stated in
  the tolerance file next to the references, with a one-line reason. A table
  the file does not mention fails the check, so nothing goes unchecked silently.
- **Notebook outputs** (:func:`compare_notebooks`): each executed notebook
  against its recorded copy, with nbval's own comparison and a sanitiser that
  replaces measured numbers by a placeholder: what is compared is that every
  cell ran, the text, the tables' shapes, columns and integer index values, and
  the set of figures.

Tolerance of a metric, per row: ``abs + points / n + rel · |reference|``, with
``n`` the row's ``n`` column (an accuracy on ``n`` points moves in steps of
``1 / n``) or the table's ``n`` setting when it has no such column.
"""
from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InvrobError
from .smoke import KERNELS_FILE, REFERENCE_KERNELS, build_book, prepare_data, smoke_run

TOLERANCE_FILE = "tolerances.yaml"


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move between machines, and why."""

    abs: float = 0.0
    points: float = 0.0
    rel: float = 0.0
    reason: str = ""

    def allowed(self, reference: float, n: float | None) -> float:
        per_point = self.points / n if self.points and n else 0.0
        return self.abs + per_point + self.rel * abs(reference)

    def describe(self) -> str:
        parts = [f"{self.abs:g}"] if self.abs else []
        parts += [f"{self.points:g}/n"] if self.points else []
        parts += [f"{self.rel:g}·|ref|"] if self.rel else []
        return " + ".join(parts) or "0"


@dataclass(frozen=True)
class TableSpec:
    """One result table: the columns that identify a row and the metrics compared."""

    name: str                       # "<notebook>/<table>", the CSV's path under the results root
    keys: tuple[str, ...]
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    n: float | None = None          # points per row when the table has no ``n`` column


@dataclass(frozen=True)
class Spec:
    tables: dict[str, TableSpec]
    ignored: dict[str, str]         # table name -> why it is not compared


def load_spec(path: str | Path) -> Spec:
    """Read a tolerance file; a malformed one is refused with ``file: reason``."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvrobError(f"{path}: tolerance file not found") from None
    except yaml.YAMLError as error:
        raise InvrobError(f"{path}: invalid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        raise InvrobError(f"{path}: expected a mapping with a 'tables' entry")
    tables = {}
    for name, entry in raw["tables"].items():
        try:
            metrics = {column: Tolerance(**tol) for column, tol in entry["metrics"].items()}
            missing = [c for c, t in metrics.items() if not t.reason]
            if missing:
                raise ValueError(f"no reason given for {missing}")
            tables[name] = TableSpec(name, tuple(entry["keys"]), metrics, entry.get("n"))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvrobError(f"{path}: table {name!r}: {error}") from None
    ignored = raw.get("ignored") or {}
    if not isinstance(ignored, dict) or not all(isinstance(v, str) and v for v in ignored.values()):
        raise InvrobError(f"{path}: 'ignored' must map table names to a reason")
    return Spec(tables, dict(ignored))


def _key_text(value) -> str:
    """Key cells as stable text: 0.05 and 0.05000000001 (a float read back) are the same key."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.9g}"
    return str(value)


def _row_label(keys: tuple[str, ...], values: tuple) -> str:
    return " ".join(f"{k}={v}" for k, v in zip(keys, values))


def _keyed(frame: pd.DataFrame, spec: TableSpec, what: str) -> tuple[dict, list[str]]:
    missing = [c for c in (*spec.keys, *spec.metrics) if c not in frame.columns]
    if missing:
        return {}, [f"{spec.name}.csv: the {what} table has no column(s) {missing}"]
    rows, problems = {}, []
    for record in frame.to_dict("records"):
        key = tuple(_key_text(record[k]) for k in spec.keys)
        if key in rows:
            problems.append(f"{spec.name}.csv: the {what} table has row {_row_label(spec.keys, key)} twice")
        rows[key] = record
    return rows, problems


def _close(value: float, reference: float, allowed: float) -> bool:
    if math.isnan(reference) or math.isnan(value):
        return math.isnan(reference) and math.isnan(value)
    if math.isinf(reference) or math.isinf(value):
        return value == reference
    return abs(value - reference) <= allowed + 1e-12


def compare_table(spec: TableSpec, reference: pd.DataFrame, result: pd.DataFrame) -> list[str]:
    """Every difference beyond tolerance, one line each naming the table, the row and both values."""
    ref_rows, problems = _keyed(reference, spec, "reference")
    new_rows, more = _keyed(result, spec, "result")
    problems += more
    if problems:
        return problems
    for key in ref_rows.keys() - new_rows.keys():
        problems.append(f"{spec.name}.csv: row {_row_label(spec.keys, key)} is in the reference but "
                        "missing from the result")
    for key in new_rows.keys() - ref_rows.keys():
        problems.append(f"{spec.name}.csv: row {_row_label(spec.keys, key)} is new (not in the reference)")
    for key in sorted(ref_rows.keys() & new_rows.keys()):
        ref, new = ref_rows[key], new_rows[key]
        n = ref.get("n", spec.n)
        for column, tolerance in spec.metrics.items():
            r, v = float(ref[column]), float(new[column])
            allowed = tolerance.allowed(r, n)
            if not _close(v, r, allowed):
                problems.append(
                    f"{spec.name}.csv, row {_row_label(spec.keys, key)}: {column} = {v:.6g}, reference "
                    f"{r:.6g} (|Δ| {abs(v - r):.3g} > {allowed:.3g} allowed = {tolerance.describe()}"
                    f"{f' with n = {n:g}' if tolerance.points and n else ''}: {tolerance.reason})")
    return problems


def result_tables(root: str | Path) -> list[str]:
    """The ``<notebook>/<table>`` names of every CSV under a results root."""
    root = Path(root)
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.csv"))


def compare_results(results_root: str | Path, reference_root: str | Path) -> list[str]:
    """Compare every table of a run with the references; ``[]`` when all agree.

    ``reference_root`` holds ``<notebook>/<table>.csv`` and :data:`TOLERANCE_FILE`.
    """
    results_root, reference_root = Path(results_root), Path(reference_root)
    spec = load_spec(reference_root / TOLERANCE_FILE)
    produced = set(result_tables(results_root))
    problems = [f"{name}.csv was written by the run but the tolerance file neither checks nor "
                f"ignores it" for name in sorted(produced - spec.tables.keys() - spec.ignored.keys())]
    for name, table in spec.tables.items():
        ref_path, new_path = reference_root / f"{name}.csv", results_root / f"{name}.csv"
        if not ref_path.exists():
            problems.append(f"{name}.csv: no reference table (record one: make nbval-update)")
        elif not new_path.exists():
            problems.append(f"{name}.csv: the run did not write this table")
        else:
            problems += compare_table(table, pd.read_csv(ref_path), pd.read_csv(new_path))
    return problems


def record_results(results_root: str | Path, reference_root: str | Path) -> list[str]:
    """Copy the checked tables of a run into the references, every digit, and delete reference tables
    the tolerance file no longer names; returns what moved beyond tolerance.

    The returned lines are the review: an intended change shows its numbers
    here (and in ``git diff``) before the new references are committed.
    """
    results_root, reference_root = Path(results_root), Path(reference_root)
    spec = load_spec(reference_root / TOLERANCE_FILE)
    changes = compare_results(results_root, reference_root)
    for name, table in spec.tables.items():
        source = results_root / f"{name}.csv"
        if source.exists():
            frame = pd.read_csv(source, float_precision="round_trip")  # every digit the run wrote
            kept = [*table.keys, *table.metrics]  # and n, which sets an accuracy's tolerance
            frame = frame[kept + (["n"] if "n" in frame.columns and "n" not in kept else [])]
            dest = reference_root / f"{name}.csv"
            dest.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(dest, index=False)  # full precision: the tolerances, not the file, round
    for stale in sorted(reference_root.glob("*/*.csv")):
        if str(stale.relative_to(reference_root).with_suffix("").as_posix()) not in spec.tables:
            stale.unlink()
    return changes


# --------------------------------------------------------------------------- notebooks

INJECTED = "injected-parameters"  # papermill's tag on the cell it adds


def code_sources(path: str | Path) -> list[str]:
    """The sources of a notebook's code and markdown cells, papermill's injected cell left out."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    return [cell.source for cell in notebook.cells
            if INJECTED not in cell.get("metadata", {}).get("tags", [])]


class _OutputComparer:
    """nbval's cell comparison, applied to outputs that were already computed.

    nbval compares a fresh execution with a notebook's stored outputs inside
    its own kernel run; here the execution is the test run's single papermill
    run, so nbval's comparison methods are borrowed as they are (same skipped
    keys, same sanitising, same stream handling).
    """

    def __init__(self, sanitize_file: str | Path | None):
        from nbval import plugin

        patterns = {}
        if sanitize_file is not None:  # an ordered {regex: replacement}, as nbval keeps it
            patterns = dict(plugin.get_sanitize_patterns(Path(sanitize_file).read_text()))
        skip = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")
        from types import SimpleNamespace
        self.parent = SimpleNamespace(skip_compare=skip, sanitize_patterns=patterns)
        self.colors = SimpleNamespace(**{c: "" for c in ("OKBLUE", "FAIL", "ENDC", "OKGREEN", "WARNING",
                                                          "HEADER", "BOLD", "UNDERLINE")})
        self.comparison_traceback = []
        self.compare = plugin.IPyNbCell.compare_outputs.__get__(self)
        self.sanitize = plugin.IPyNbCell.sanitize.__get__(self)

    def format_output_compare(self, key: str, left: str, right: str) -> None:
        """A unified diff of the sanitised reference and new output (nbval's own goes through pytest)."""
        import difflib

        diff = difflib.unified_diff(str(left).splitlines(), str(right).splitlines(), "recorded", "this run",
                                    lineterm="", n=1)
        self.comparison_traceback.append(f'output "{key}" differs:\n' + "\n".join(list(diff)[:40]))


def _tables_as_html(outputs: list) -> list:
    """A table is compared by its HTML (what the book shows), not by its text/plain twin.

    pandas pads and wraps the plain-text form to the width of the numbers in it,
    so the same table with other digits would differ in its layout, not only in
    the (sanitised) numbers.
    """
    import copy

    result = []
    for output in outputs:
        data = output.get("data", {})
        if "text/html" in data and "text/plain" in data:
            output = copy.deepcopy(output)
            del output["data"]["text/plain"]
        result.append(output)
    return result


def compare_notebooks(recorded: str | Path, executed: str | Path,
                      sanitize_file: str | Path | None = None) -> list[str]:
    """Compare an executed notebook with its recorded copy, cell by cell, as nbval does.

    Returns one entry per differing code cell (``[]`` when they agree); the
    sources must be the same (a stale copy is reported as such).
    """
    import nbformat

    ref = nbformat.read(str(recorded), as_version=4)
    new = nbformat.read(str(executed), as_version=4)
    if code_sources(recorded) != code_sources(executed):
        return [f"{Path(recorded).name}: the recorded copy's cells differ from the notebook's "
                "(re-record: make nbval-update)"]
    comparer = _OutputComparer(sanitize_file)
    problems = []
    for index, (r, n) in enumerate(zip(ref.cells, new.cells)):
        if r.cell_type != "code" or "nbval-ignore-output" in r.get("metadata", {}).get("tags", []):
            continue
        if "NBVAL_IGNORE_OUTPUT" in r.source:
            continue
        comparer.comparison_traceback = []
        if not comparer.compare(_tables_as_html(n.get("outputs", [])), _tables_as_html(r.get("outputs", []))):
            detail = "\n".join(str(line) for line in comparer.comparison_traceback)
            problems.append(f"{Path(recorded).name} cell {index}:\n{detail}")
    return problems


def copy_notebooks(executed: list[Path], dest: str | Path) -> None:
    """Replace the recorded copies in ``dest`` by freshly executed notebooks."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in executed:
        shutil.copy(path, dest / path.name)


# --------------------------------------------------------------------------- the references

REPO = Path(__file__).resolve().parent.parent.parent
REFERENCE = REPO / "tests" / "reference" / "smoke"     # recorded tables + tolerances
RECORDED = REPO / "tests" / "notebooks"                # recorded executed notebooks (nbval)
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"


def record(workdir: str | Path | None = None, reference: str | Path = REFERENCE,
           recorded: str | Path = RECORDED) -> list[str]:
    """Re-record the references from a fresh smoke run under :data:`REFERENCE_KERNELS`: tables into
    ``reference`` (default :data:`REFERENCE`, the checkout's; it must hold :data:`TOLERANCE_FILE`)
    with the run's ``kernels.json``, executed notebooks into ``recorded`` (default :data:`RECORDED`).
    Returns the numeric changes to review."""
    import tempfile

    reference = Path(reference)
    if not (reference / TOLERANCE_FILE).exists():
        raise InvrobError(f"{reference / TOLERANCE_FILE} not found: the reference folder needs its tolerance file")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="invrob-record-"))
    data = prepare_data(workdir / "data")
    smoke_run(workdir, data, log=lambda line: print(line, flush=True), kernels=REFERENCE_KERNELS)
    changes = record_results(workdir / "results" / "smoke", reference)
    shutil.copy(workdir / KERNELS_FILE, reference / KERNELS_FILE)
    copy_notebooks(sorted((workdir / "executed").glob("[0-9][0-9]_*.ipynb")), recorded)
    return changes


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m invrob.tooling.regression",
                                     description="smoke runs and the references they are checked against")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one smoke run into a working folder")
    run.add_argument("--workdir", required=True)
    run.add_argument("--data", default=None, help="a folder from prepare_data (default: make one)")
    run.add_argument("--book", default=None, help="then build the run's Jupyter Book in this new folder")
    rec = sub.add_parser("record", help="re-record tests/reference/smoke and tests/notebooks")
    rec.add_argument("--workdir", default=None)
    rec.add_argument("--reference", default=str(REFERENCE),
                     help="the reference folder: <notebook>/<table>.csv and tolerances.yaml (default: %(default)s)")
    rec.add_argument("--recorded", default=str(RECORDED),
                     help="where the executed notebooks go, for nbval (default: %(default)s)")
    chk = sub.add_parser("check", help="compare a run's tables with a reference folder")
    chk.add_argument("results", help="a results root, e.g. results/smoke")
    chk.add_argument("--reference", default=str(REFERENCE), help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            data = args.data or prepare_data(Path(args.workdir) / "data")
            smoke_run(args.workdir, data, log=lambda line: print(line, flush=True))
            if args.book:
                build_book(Path(args.workdir) / "executed", args.book)
            return 0
        if args.command == "check":
            problems = compare_results(args.results, args.reference)
            print("\n".join(problems) if problems else f"every table of {args.results} is within its tolerance "
                  f"of {args.reference}")
            return 1 if problems else 0
        changes = record(args.workdir, args.reference, args.recorded)
    except InvrobError as error:
        print(f"invrob: {error}", file=sys.stderr)
        return 2
    print(f"recorded {args.reference} and {args.recorded}")
    if changes:
        print(f"{len(changes)} value(s) moved beyond tolerance against the previous references "
              "(review them, and the git diff, before committing):")
        print("\n".join(f"  {line}" for line in changes))
    else:
        print("no value moved beyond tolerance against the previous references")
    return 0


if __name__ == "__main__":
    sys.exit(main())
