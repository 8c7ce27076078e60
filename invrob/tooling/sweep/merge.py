"""A sweep's results: the merged tables, the ``points.csv`` table, and the summary lines.

:func:`merge_results` concatenates each table over the done points into
``runs/<sweep>/merged/<table>.csv`` with ``point_id`` and the point's parameters as
leading columns; :func:`write_points_table` writes one row per point (state, timing,
error, paths); ``_summary`` prints what was done and where the failures are.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import Point, Sweep, canonical_json
from .status import read_status

if TYPE_CHECKING:
    from .execute import SweepResult


def _describe(sweep: Sweep, point: Point) -> str:
    shown = sweep.varying or tuple(point.params)[:3]
    return " ".join(f"{n}={canonical_json(point.params.get(n))}" for n in shown)


def _shown(path) -> str:
    """A path relative to the current folder when it is below it (shorter status lines)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
    from ...utils import atomic_to_csv

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
    from ...utils import atomic_to_csv

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
