"""The sweep's command line, ``python -m invrob.tooling.sweep FILE`` / ``invrob sweep FILE``: :func:`main`.

Validates the sweep file, lists its points with ``--dry-run``, or runs them
(:func:`invrob.tooling.sweep.execute.run_sweep`). Exits 0 when every point is done, 1 when some
failed, 2 on a bad sweep file (one ``FILE:LINE: reason`` line on stderr), 130 when
interrupted.
"""
from __future__ import annotations

import argparse
import sys

from ...errors import InvrobError
from .execute import run_sweep
from .merge import _shown
from .spec import canonical_json, load_sweep


def main(argv: list[str] | None = None, prog: str = "python -m invrob.tooling.sweep") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a notebook over a grid of parameters with papermill: "
        "resumable, failures isolated, local workers or a Dask cluster. "
        "The sweep file format is described in `pydoc invrob.tooling.sweep`.")
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
