"""Timing, peak memory, side-by-side runs and the result row.

Every comparison runs its two (or more) sides **interleaved** in the same
process, on the same model, batch and budget: rep 0 runs A then B, rep 1 runs
B then A, and so on (ABBA...), so a burst of load from another process hits
both sides alike. The reported time of a side is the median over its reps.

Peak memory, per side, is the maximum over its reps of:

- CUDA: ``torch.cuda.max_memory_allocated() − memory_allocated()`` at the start
  (peak stats reset before the call): tensors the call itself allocated.
- CPU: growth of the process's resident set during the call. The kernel's
  high-water mark ``VmHWM`` is reset to the current RSS by writing ``5`` to
  ``/proc/self/clear_refs`` (Linux ≥ 4.0) and read back afterwards; glibc is
  asked to hand free heap pages back first (``malloc_trim``), so a side does not
  look small merely because it reuses pages the other side freed. Where
  ``clear_refs`` is not writable a 2 ms psutil sampling thread estimates it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

MiB = 1024 * 1024


# --------------------------------------------------------------------------- memory

def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


CPU_MEMORY_METHOD = ("peak RSS growth during the call (VmHWM reset via /proc/self/clear_refs, "
                     "after malloc_trim)")


class PeakMemory:
    """Context manager: ``.peak`` = bytes the block needed at its peak (see module doc)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak = 0
        self._sampler = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
            _LIBC.malloc_trim(0)
        self._base = _proc_status("VmRSS") or 0
        if not _reset_hwm():
            self._start_sampler()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak = self._max - self._base
        else:
            self.peak = (_proc_status("VmHWM") or 0) - self._base
        self.peak = max(0, self.peak)
        return False

    def _start_sampler(self):
        import psutil

        proc = psutil.Process()
        self._max = self._base
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.002):
                self._max = max(self._max, proc.memory_info().rss)
        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()


def memory_method(device: torch.device) -> str:
    if torch.device(device).type == "cuda":
        return "torch.cuda.max_memory_allocated − allocated at start (peak stats reset per call)"
    return CPU_MEMORY_METHOD


# --------------------------------------------------------------------------- timing

def sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Side:
    """Measurements of one side of a comparison: seconds and peak bytes per rep, last output."""

    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    output: Any = None

    @property
    def time(self) -> float:
        return statistics.median(self.times)

    @property
    def peak(self) -> int:
        return max(self.peaks) if self.peaks else 0


def measure(fn: Callable[[], Any], device: torch.device, side: Side) -> Any:
    """Run ``fn()`` once, timed (device synchronised) and with its peak memory; record into ``side``."""
    sync(device)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        out = fn()
        sync(device)
        elapsed = time.perf_counter() - start
    side.times.append(elapsed)
    side.peaks.append(mem.peak)
    side.output = out
    return out


def interleaved(sides: dict[str, Callable[[], Any]], reps: int, device: torch.device) -> dict[str, Side]:
    """Run every side ``reps`` times, alternating the order each rep (ABBA...)."""
    names = list(sides)
    result = {name: Side() for name in names}
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            measure(sides[name], device, result[name])
    return result


# --------------------------------------------------------------------------- rows

@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    setting: str
    ours: float | None            # seconds (or a count, see ``unit``)
    reference: float | None
    goal: str                     # e.g. "ratio ≥ 1" ; "" when only reported
    met: bool | None              # None: no goal
    agreement: str                # what was compared, and the values
    agree_ok: bool | None         # None: nothing to compare
    memory: str                   # "ours / reference" peak memory
    ratio: float | None = None    # default: reference / ours (a speed-up)
    ratio_name: str = "ref/ours"
    unit: str = "s"
    spread: tuple | None = None   # (min, max) of the ratio over paired reps: the noise

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired_spread(num: list[float], den: list[float], scale: float = 1.0) -> tuple[float, float]:
    """(min, max) over reps r of ``num[r] / (scale · den[r])`` — sides of one rep ran back to back."""
    ratios = [a / (scale * b) for a, b in zip(num, den) if b > 0]
    return (min(ratios), max(ratios)) if ratios else (float("nan"), float("nan"))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 0.1 * MiB:
        return f"{n / 1024:.0f} KiB"
    return f"{n / MiB:.1f} MiB" if n < 1024 * MiB else f"{n / MiB / 1024:.2f} GiB"


def fmt_seconds(t: float | None, unit: str = "s") -> str:
    if t is None:
        return "—"
    if unit != "s":
        return f"{t:,.0f} {unit}"
    return f"{t:.3f}" if t < 10 else f"{t:.1f}"


def agree_within(ours: float, ref: float, tol: float, what: str = "acc") -> tuple[str, bool]:
    """``(text, ok)`` for |ours − ref| ≤ tol (fractions printed as percentages)."""
    diff = abs(ours - ref)
    ok = diff <= tol + 1e-12
    return (f"{what} {100 * ours:.2f}% vs {100 * ref:.2f}% (|Δ|={100 * diff:.2f} ≤ {100 * tol:.2f})",
            ok)
