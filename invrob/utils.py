"""Small shared helpers: device choice, atomic file writes.

(Seeding lives with its only user, :func:`invrob.train.train`, which also saves
and restores every RNG state for a bit-for-bit resume.)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch


def default_device() -> torch.device:
    """CUDA when present (Colab), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path``.

    The rename is atomic on POSIX, so a reader (or a resumed run) sees either
    the old file or the complete new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file behind."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_to_csv(frame, path: str | os.PathLike) -> Path:
    """``DataFrame.to_csv`` that never leaves a half-written file behind."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
