"""Running a sweep's points: one point in a worker, the local and Dask backends, :func:`run_sweep`.

:func:`run_point` executes one point with :func:`invrob.tooling.runbook.run_notebook` and records
its status; :func:`run_sweep` runs every point not done yet on local worker processes
(one per visible GPU, each pinned with ``CUDA_VISIBLE_DEVICES``) or on a Dask scheduler,
prints a status line per point, then merges the tables (:mod:`invrob.tooling.sweep.merge`). A
worker that dies is recorded as a failed point; the sweep goes on.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import InvrobError, check_positive_int
from .merge import _describe, _shown, _summary, merge_results, write_points_table
from .spec import Sweep, canonical_json, load_sweep
from .status import _now, _write_json, read_status

# invrob.train.parallel.WORKERS_ENV, spelt out: that module imports torch, which the sweep spares
TRAIN_WORKERS_ENV = "INVROB_TRAIN_WORKERS"


# --------------------------------------------------------------------------- one point

def run_point(task: dict) -> dict:
    """Execute one point (``Sweep.task``) with :func:`invrob.tooling.runbook.run_notebook`; return its status.

    Runs in a worker: a local process, or a Dask worker on another machine. Never raises
    for a failing notebook (its status says ``failed``, with the error line; the executed
    copy is kept as ``executed.failed.ipynb``, as the runner keeps every failing notebook);
    a KeyboardInterrupt leaves status ``running`` so that the point is rerun on resume.
    """
    from ..runbook import NotebookError, failed_path, run_notebook

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
    """Pool initializer: take one GPU id off the queue (kernels inherit the environment); on the
    CPU, the notebooks running side by side train one run at a time each."""
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    else:
        os.environ[TRAIN_WORKERS_ENV] = "1"


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
