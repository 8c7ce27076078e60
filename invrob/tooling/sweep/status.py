"""A point's files on disk: its ``status.json`` (and ``point.json``), written atomically.

A point is finished iff its ``status.json`` says ``done`` with the point's digest
(:meth:`invrob.tooling.sweep.spec.Sweep.state`); the worker (:func:`invrob.tooling.sweep.execute.run_point`)
writes it last, under a temporary name then renamed, and a torn or missing file reads as
None, so the point is rerun.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path


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
