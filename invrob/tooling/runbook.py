"""The one notebook runner, and the runbook that executes the studies in order.

:func:`run_notebook` executes one notebook with papermill; ``make notebooks``
(``python -m invrob.tooling.runbook`` / ``invrob run``), the sweeps (:func:`invrob.tooling.sweep.run_point`)
and the tests all go through it, so a notebook fails the same way everywhere: its
executed copy is kept as ``<stem>.failed.ipynb`` and a :class:`NotebookError` says, on
one line, ``<notebook> failed in cell N: Ename: message (executed copy: path)``.

``invrob run --profile cpu`` runs every ``notebooks/NN_*.ipynb`` at the given profile
into ``book/experiments/`` (what the book renders); ``--dest tests/notebooks --profile
smoke`` re-records the copies that nbval checks. Notebooks run in order, in one working
directory, because later studies reuse the models that earlier ones trained.

In a repository checkout the defaults are the checkout's ``notebooks/``, its root as the
working directory and ``book/experiments/``. An installed copy of the package has no
``notebooks/`` beside it: pass ``--notebooks DIR`` (the working directory and ``dest``
then default to the current directory and ``./book/experiments``). Paths given on the
command line are relative to the current directory.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import traceback as _traceback
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from ..errors import InvrobError, check_choice
from ..profiles import PROFILES

# The checkout this module sits in. An installed wheel has no notebooks/ here:
# ``study_notebooks`` and the CLI then need a folder (see ``is_checkout``).
REPO = Path(__file__).resolve().parent.parent.parent

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def is_checkout(root: Path | None = None) -> bool:
    """Does the package sit in a repository checkout (a ``notebooks/`` folder beside it)?"""
    return (Path(root or REPO) / "notebooks").is_dir()


def default_workdir() -> Path:
    """The notebooks' working directory: the checkout's root, else the current directory."""
    return REPO if is_checkout() else Path.cwd()


def study_notebooks(folder: Path | str | None = None) -> list[Path]:
    """The notebooks of the studies (``NN_*.ipynb`` in ``folder``), in the order they must run.

    By number, except that a ``*_verdict`` notebook runs last: it reads every study's
    tables, so a study added later (``06_…``) must have written its own first.
    ``folder`` defaults to the checkout's ``notebooks/``; outside a checkout (an installed
    package) it must be given.
    """
    if folder is None:
        if not is_checkout():
            raise InvrobError(f"no notebooks/ folder next to the invrob package ({REPO}): this is an "
                              f"installed copy, not a checkout; pass the notebooks folder "
                              f"(invrob run --notebooks DIR)")
        folder = REPO / "notebooks"
    folder = Path(folder)
    if not folder.is_dir():
        raise InvrobError(f"notebooks folder {folder} not found")
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"), key=lambda p: (p.stem.endswith("_verdict"), p.name))


class NotebookError(InvrobError):
    """A notebook raised (or its kernel died): one line, plus the details as attributes.

    ``notebook`` (the source path), ``cell`` (execution count, or None when the kernel
    itself failed), ``ename``, ``evalue``, ``executed`` (the kept ``.failed.ipynb``, or
    None when papermill wrote nothing) and ``traceback`` (text, ANSI colours removed).
    """

    def __init__(self, notebook: Path, cell: int | None, ename: str, evalue: str,
                 executed: Path | None, traceback: str = ""):
        self.notebook, self.cell, self.ename, self.evalue = Path(notebook), cell, ename, evalue
        self.executed, self.traceback = executed, traceback
        where = f" in cell {cell}" if cell is not None else ""
        copy = f" (executed copy: {executed})" if executed is not None else " (no executed copy)"
        evalue_line = " ".join(str(evalue).split())  # one line, whatever the exception said
        super().__init__(f"{self.notebook.name} failed{where}: {ename}: {evalue_line}{copy}")

    @property
    def short(self) -> str:
        """``Ename: message (cell [N])``: what a sweep's status line records."""
        where = f" (cell [{self.cell}])" if self.cell is not None else ""
        return f"{self.ename}: {' '.join(str(self.evalue).split())}{where}"


def failed_path(dest: Path) -> Path:
    """Where the executed copy of a failing run of ``dest`` is kept."""
    dest = Path(dest)
    return dest.with_name(f"{dest.stem}.failed.ipynb")


# A kernel can die before it answers when another kernel, started at the same moment (the
# sweep's workers, the test suite's background runs), binds one of its ports first: jupyter_client
# picks free ports, then the new kernel binds them. No cell has run then, so a fresh kernel with
# fresh ports is started; any other failure is final.
KERNEL_START_TRIES = 3


def _kernel_never_started(error: Exception) -> bool:
    """Did the kernel die before replying to its first message (nbclient's error)?"""
    return isinstance(error, RuntimeError) and "before replying to kernel_info" in str(error)


def run_notebook(source: Path | str, dest: Path | str, profile: str | None = None,
                 cwd: Path | str | None = None, *, parameters: dict | None = None,
                 log: str | os.PathLike | IO[str] | None = None, kernel_name: str | None = None,
                 **more) -> float:
    """Execute ``source`` with papermill into ``dest``; return the wall time in seconds.

    - Parameters: ``profile`` (when given), then ``parameters``, then keyword ``more``.
    - The kernel runs in ``cwd`` (default: the checkout's root, else the current
      directory) with the environment of this process (``INVROB_DATA``, thread
      counts, ``CUDA_VISIBLE_DEVICES``). Papermill's own ``cwd`` would ``chdir``
      this whole process, which is unsafe when threads run several notebooks (a Dask
      worker); the kernel's directory is passed through the notebook's
      ``resources.metadata.path`` instead, and this process stays where it is.
    - ``log``: a path or an open text file that receives the kernel's stdout and
      stderr, and the traceback when the notebook fails.
    - ``kernel_name``: default the notebook's own kernelspec.
    - ``dest`` appears atomically (papermill writes ``.<stem>.partial.ipynb`` beside
      it while cells run), with progress-bar streams tidied (:func:`tidy_streams`).
      A stale ``<stem>.failed.ipynb`` from an earlier run is removed.
    - A kernel that dies before it starts (a port taken by another kernel starting at the
      same moment) is replaced, up to :data:`KERNEL_START_TRIES` kernels in all.
    - A failure keeps the executed copy as ``<stem>.failed.ipynb`` (its outputs are the
      evidence) and raises one :class:`NotebookError` line. A KeyboardInterrupt
      propagates and leaves only the partial file: ``dest`` is never half-written.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, dest = Path(source), Path(dest)
    cwd = Path(cwd) if cwd is not None else default_workdir()
    if not source.is_file():
        raise InvrobError(f"notebook {source} not found")
    if not cwd.is_dir():
        raise InvrobError(f"working directory {cwd} not found")
    values = {**({"profile": profile} if profile is not None else {}), **(parameters or {}), **more}
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial, failed = dest.with_name(f".{dest.stem}.partial.ipynb"), failed_path(dest)
    failed.unlink(missing_ok=True)
    start = time.perf_counter()
    with ExitStack() as stack:
        if isinstance(log, (str, os.PathLike)):
            log = stack.enter_context(open(log, "a"))
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                papermill.execute_notebook(
                    str(source), str(partial), parameters=values, kernel_name=kernel_name,
                    language="python", progress_bar=False, stdout_file=log, stderr_file=log,
                    resources={"metadata": {"path": str(cwd.resolve())}})
                break
            except PapermillExecutionError as error:
                trace = _ANSI.sub("", "\n".join(error.traceback))
                raise _failure(source, partial, failed, log, "the notebook raised", trace,
                               error.exec_count, error.ename, error.evalue) from None
            except Exception as error:  # the kernel died or never started, a timeout, ...
                if attempt < KERNEL_START_TRIES and _kernel_never_started(error):
                    if log is not None:
                        log.write(f"\n# the kernel died before it started ({error}); starting another "
                                  f"(try {attempt + 1} of {KERNEL_START_TRIES})\n")
                    continue
                lines = str(error).strip().splitlines() or [""]
                raise _failure(source, partial, failed, log, "papermill failed", _traceback.format_exc(),
                               None, type(error).__name__, lines[0]) from None
    tidy_streams(partial)
    os.replace(partial, dest)
    return time.perf_counter() - start


def _failure(source: Path, partial: Path, failed: Path, log, what: str, trace: str,
             cell, ename: str, evalue: str) -> NotebookError:
    """Keep the executed copy as ``failed``, log the traceback; the error to raise."""
    executed = None
    if partial.exists():
        try:
            tidy_streams(partial)
        except Exception:  # an unreadable partial notebook is still the evidence
            pass
        os.replace(partial, failed)
        executed = failed
    if log is not None:
        log.write(f"\n# {what}:\n{trace.rstrip()}\n")
        log.flush()
    return NotebookError(source, cell, ename, evalue, executed, trace)


def _final_states(text: str) -> str:
    """What a terminal shows: on each line, only the text after its last carriage return."""
    lines = []
    for line in text.split("\n"):
        parts = [part for part in line.split("\r") if part]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


def tidy_streams(path: Path) -> None:
    """Merge each cell's consecutive stream chunks and keep only the final state of progress bars.

    A progress bar reaches the notebook as one chunk per refresh, each starting
    with ``\r``. Jupyter collapses them on screen, but the book's renderer joins
    chunks with newlines, which would print every refresh as a line of its own.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        merged = []
        for output in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (output.output_type == "stream" and last is not None
                    and last.output_type == "stream" and last.name == output.name):
                last.text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                output.text = _final_states(output.text)
        if "outputs" in cell:
            cell.outputs = merged
    nbformat.write(notebook, path)


SKIPPED = "CIFAR-10 skipped"  # how a notebook says a part did not run at this profile
QUIET = "INVROB_PROGRESS"    # "0": no progress bars or checkpoint logs (book runs)


def for_book(path: Path | str) -> None:
    """Make an executed notebook ready for the book, in place.

    - papermill's injected-parameters cell is merged into the ``parameters`` cell
      (each injected ``name = value`` replaces that name's line) and removed, so the
      page shows one parameters cell, and a reader who opens the copy in Colab and
      sets ``profile = "paper"`` there is not overridden by a later cell;
    - a code cell whose only output says a part was skipped at this profile
      (:data:`SKIPPED`) keeps its one-line message and loses its code on the page.
    """
    import re

    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    tags = lambda cell: cell.setdefault("metadata", {}).setdefault("tags", [])
    injected = [c for c in notebook.cells if "injected-parameters" in tags(c)]
    params = next((c for c in notebook.cells if "parameters" in tags(c)), None)
    for cell in injected:
        if params is not None:
            lines = params.source.split("\n")
            for assignment in cell.source.split("\n"):
                match = re.match(r"^(\w+)\s*=\s*(.+)$", assignment)
                if not match:
                    continue
                name, value = match.groups()
                for i, line in enumerate(lines):
                    old = re.match(rf"^{name}\s*=\s*(.*?)(\s*#.*)?$", line)
                    if old:
                        lines[i] = f"{name} = {value}{old.group(2) or ''}"
                        break
                else:
                    lines.append(f"{name} = {value}")
            params.source = "\n".join(lines)
        notebook.cells.remove(cell)
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        if (cell.cell_type == "code" and len(outputs) == 1 and outputs[0].get("output_type") == "stream"
                and outputs[0].get("text", "").startswith(SKIPPED) and "remove-input" not in tags(cell)):
            tags(cell).append("remove-input")
    nbformat.write(notebook, str(path))


def run_all(profile: str, dest: Path, workdir: Path | None = None, only: list[str] | None = None,
            fresh: bool = False, log=print, notebooks: Path | str | None = None,
            book: bool = False) -> dict[str, float]:
    """Run the study notebooks in order at ``profile``; return each one's wall time in seconds.

    ``notebooks``: the folder of ``NN_*.ipynb`` (default: the checkout's, see
    :func:`study_notebooks`). ``workdir`` (default: the checkout's root, else the current
    directory) is the kernels' working directory, where ``results/<profile>`` and
    ``checkpoints/<profile>`` land; ``fresh`` deletes both first (retrain everything).
    Each time is recorded in ``results/<profile>/notebook_times.csv`` for the book's
    cost table. The first failing notebook stops the run with its :class:`NotebookError`.
    ``book``: a run for the book: no progress bars or checkpoint logs in the outputs
    (:data:`QUIET`), and each executed copy prepared with :func:`for_book`.
    """
    check_choice(profile, PROFILES, "profile")
    workdir = Path(workdir) if workdir is not None else default_workdir()
    if not workdir.is_dir():
        raise InvrobError(f"working directory {workdir} not found")
    found = study_notebooks(notebooks)
    selected = [nb for nb in found if not only or nb.stem in only]
    if not selected:
        valid = ", ".join(nb.stem for nb in found) or "none"
        raise InvrobError(f"no notebooks matched {only}; valid: {valid}")
    if fresh:
        for folder in ("results", "checkpoints"):
            shutil.rmtree(workdir / folder / profile, ignore_errors=True)
    seconds = {}
    saved = os.environ.get(QUIET)
    if book:
        os.environ[QUIET] = "0"  # the kernels inherit it
    try:
        for notebook in selected:
            log(f"[{profile}] {notebook.name} ...")
            seconds[notebook.stem] = run_notebook(notebook, Path(dest) / notebook.name, profile, cwd=workdir)
            log(f"[{profile}] {notebook.name} done in {seconds[notebook.stem]:.0f} s")
            record_time(profile, notebook.stem, seconds[notebook.stem], workdir)
            if book:
                for_book(Path(dest) / notebook.name)
    finally:
        if book:
            os.environ.pop(QUIET) if saved is None else os.environ.__setitem__(QUIET, saved)
    return seconds


def record_time(profile: str, notebook: str, seconds: float, workdir: Path | None = None) -> Path:
    """Upsert the wall time of one notebook run into ``results/<profile>/notebook_times.csv``.

    A notebook that reloaded its models from checkpoints is fast; the table then
    shows that run's time, so it says what *this* book build cost.
    """
    import pandas as pd

    from ..utils import atomic_to_csv  # imports torch: only when a time is recorded

    path = Path(workdir or REPO) / "results" / profile / "notebook_times.csv"
    row = pd.DataFrame([{"notebook": notebook, "seconds": round(seconds, 1), "cpus": os.cpu_count(),
                         "finished": time.strftime("%Y-%m-%d %H:%M")}])
    if path.exists():
        earlier = pd.read_csv(path)
        row = pd.concat([earlier[earlier["notebook"] != notebook], row], ignore_index=True)
    return atomic_to_csv(row.sort_values("notebook"), path)


MODEL_KEYS = ["model", "dataset", "theta", "eps_train", "seed", "epoch", "seconds"]


def training_minutes(results: Path | str) -> dict[str, float]:
    """Minutes of training of each notebook's models, from its ``history.csv`` (``seconds`` per epoch).

    A model several notebooks use (chapter 05 reuses chapter 03's) is counted once, for
    the first notebook that lists it: its epochs carry the same recorded seconds in every
    history, whichever notebook loaded it from the checkpoint.
    """
    import pandas as pd

    seen, minutes = set(), {}
    for path in sorted(Path(results).glob("[0-9][0-9]_*/history.csv")):
        history = pd.read_csv(path)
        if "seconds" not in history:
            continue
        keys = [k for k in MODEL_KEYS if k in history]
        rows = list(history[keys].itertuples(index=False, name=None))
        fresh = [r not in seen for r in rows]
        seen.update(rows)
        minutes[path.parent.name] = float(history.loc[fresh, "seconds"].sum()) / 60
    return minutes


def cost_table(results: Path | str):
    """What a run cost, per study notebook: ``(summary, table)`` — the verdict page's last section.

    ``table`` (one row per notebook of ``notebook_times.csv`` but the verdict page's): its wall time
    in its latest run, which other notebooks' models it reuses (each study's ``reuses``), and the
    minutes of training of its models summed over the models (:func:`training_minutes`), whichever
    run trained them. The two do not say whether a run trained or reloaded its models: at ``cpu``
    the runs train side by side, so a notebook that trained all of them can take less wall time
    than their summed training. ``summary``: one Markdown sentence of totals. ``(None, None)``
    when the run left no timings.
    """
    import pandas as pd

    from .. import studies

    times = Path(results) / "notebook_times.csv"
    if not times.exists():
        return None, None
    run = pd.read_csv(times).set_index("notebook").drop("06_verdict", errors="ignore")
    training = training_minutes(results)  # a model two notebooks use counts once
    reuses = {nb: text for study in studies.all_studies() for nb, text in study.reuses.items()}
    rows = [{"notebook": name, "wall time, latest run (min)": seconds / 60,
             "models reused from other notebooks": reuses.get(name, ""),
             "training, summed over its models (min)": training.get(name)}
            for name, seconds in run["seconds"].items()]
    cost = pd.DataFrame(rows).set_index("notebook")
    total, trained = cost.iloc[:, 0].sum(), sum(training.values())
    cpus = ", ".join(str(c) for c in sorted(run["cpus"].unique()))
    summary = (f"The study notebooks' wall times in their latest runs add up to **{total:.1f} min** "
               f"on {cpus} CPU core(s), without installing and building the book. Training their MNIST "
               f"models took **{trained:.1f} min** summed over the models, in those runs or in earlier "
               "ones that left them in checkpoints/; where runs train side by side (the `cpu` profile, "
               "one per core) that sum exceeds the wall time they took.")
    return summary, cost.round(1).fillna("")


def main(argv: list[str] | None = None, prog: str = "python -m invrob.tooling.runbook") -> int:
    """``invrob run``: exit 0 when every notebook ran, 1 when one failed, 2 on bad options."""
    checkout = is_checkout()
    parser = argparse.ArgumentParser(
        prog=prog, description="Execute the study notebooks in order with papermill "
        "(what `make notebooks` runs). Paths are relative to the current directory.")
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | paper (default: cpu)")
    parser.add_argument("--dest", default=None,
                        help="folder for the executed notebooks (default: "
                        f"{REPO / 'book' / 'experiments' if checkout else './book/experiments'})")
    parser.add_argument("--only", nargs="*", default=None, metavar="STEM", help="notebook stems to run")
    parser.add_argument("--workdir", default=None,
                        help="working directory of the notebooks, where results/ and checkpoints/ go "
                             f"(default: {'the checkout, ' + str(REPO) if checkout else 'the current directory'})")
    parser.add_argument("--notebooks", default=None, metavar="DIR",
                        help="folder of the NN_*.ipynb study notebooks "
                             f"(default: {REPO / 'notebooks' if checkout else 'required: no checkout here'})")
    parser.add_argument("--fresh", action="store_true",
                        help="delete results/<profile> and checkpoints/<profile> first (retrain everything)")
    parser.add_argument("--book", action="store_true",
                        help="a run for the book: no progress bars or checkpoint logs in the outputs, "
                             "papermill's injected cell merged into the parameters cell")
    args = parser.parse_args(argv)
    try:
        check_choice(args.profile, PROFILES, "profile")
        workdir = Path(args.workdir).resolve() if args.workdir else default_workdir()
        # The book renders the checkout's book/experiments, wherever the notebooks ran.
        dest = Path(args.dest).resolve() if args.dest else default_workdir() / "book" / "experiments"
        notebooks = Path(args.notebooks).resolve() if args.notebooks else None
        run_all(args.profile, dest, workdir, args.only, args.fresh,
                log=lambda line: print(line, flush=True), notebooks=notebooks, book=args.book)
    except NotebookError as error:
        print(f"invrob: {error}", file=sys.stderr)
        return 1
    except InvrobError as error:
        print(f"invrob: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the notebooks that finished are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
