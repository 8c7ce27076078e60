"""Execute the study notebooks in order with papermill (``make notebooks``).

``python -m invrob.runbook --profile cpu`` runs every ``notebooks/NN_*.ipynb``
at the given profile into ``book/experiments/`` (what the book renders);
``--dest tests/notebooks --profile smoke`` re-records the copies that nbval
checks. Notebooks run with the repository root as working directory, in
order, because later studies reuse the models that earlier ones trained.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import InvrobError, check_choice
from .profiles import PROFILES
from .utils import atomic_to_csv

REPO = Path(__file__).resolve().parent.parent


def study_notebooks(folder: Path = REPO / "notebooks") -> list[Path]:
    """The notebooks of the studies, in the order they must run."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(source: Path, dest: Path, profile: str, cwd: Path | None = None, **parameters) -> float:
    """Run one notebook with papermill; the executed copy appears atomically. Returns seconds.

    The kernel runs in ``cwd`` (default: the repository), with the environment of
    this process (``INVROB_DATA``, thread counts, CPU kernel selection).

    A failing notebook is kept as ``<dest stem>.failed.ipynb`` (its outputs are
    the evidence) and reported as one :class:`InvrobError` line.
    """
    import papermill

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.tmp.ipynb")
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source), str(tmp), parameters={"profile": profile, **parameters},
            cwd=str(cwd or REPO), kernel_name="python3", progress_bar=False, language="python")
    except papermill.PapermillExecutionError as error:
        failed = dest.with_name(f"{dest.stem}.failed.ipynb")
        tmp.replace(failed)
        raise InvrobError(f"{source.name} failed in cell {error.exec_count}: {error.ename}: "
                          f"{error.evalue} (executed copy: {failed})") from None
    tidy_streams(tmp)
    tmp.replace(dest)
    return time.perf_counter() - start


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


def run_all(profile: str, dest: Path, workdir: Path | None = None, only: list[str] | None = None,
            fresh: bool = False, log=print) -> dict[str, float]:
    """Run the study notebooks in order at ``profile``; return each one's wall time in seconds.

    ``workdir`` (default: the repository) is the kernels' working directory, where
    ``results/<profile>`` and ``checkpoints/<profile>`` land; ``fresh`` deletes
    both first (retrain everything). Each time is recorded in
    ``results/<profile>/notebook_times.csv`` for the book's cost table.
    """
    check_choice(profile, PROFILES, "profile")
    workdir = Path(workdir or REPO)
    notebooks = [nb for nb in study_notebooks() if not only or nb.stem in only]
    if not notebooks:
        raise InvrobError(f"no notebooks matched {only}")
    if fresh:
        for folder in ("results", "checkpoints"):
            shutil.rmtree(workdir / folder / profile, ignore_errors=True)
    seconds = {}
    for notebook in notebooks:
        log(f"[{profile}] {notebook.name} ...")
        seconds[notebook.stem] = run_notebook(notebook, Path(dest) / notebook.name, profile, cwd=workdir)
        log(f"[{profile}] {notebook.name} done in {seconds[notebook.stem]:.0f} s")
        record_time(profile, notebook.stem, seconds[notebook.stem], workdir)
    return seconds


def record_time(profile: str, notebook: str, seconds: float, workdir: Path | None = None) -> Path:
    """Upsert the wall time of one notebook run into ``results/<profile>/notebook_times.csv``.

    A notebook that reloaded its models from checkpoints is fast; the table then
    shows that run's time, so it says what *this* book build cost.
    """
    import pandas as pd

    path = Path(workdir or REPO) / "results" / profile / "notebook_times.csv"
    row = pd.DataFrame([{"notebook": notebook, "seconds": round(seconds, 1), "cpus": os.cpu_count(),
                         "finished": time.strftime("%Y-%m-%d %H:%M")}])
    if path.exists():
        earlier = pd.read_csv(path)
        row = pd.concat([earlier[earlier["notebook"] != notebook], row], ignore_index=True)
    return atomic_to_csv(row.sort_values("notebook"), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | paper")
    parser.add_argument("--dest", default=str(REPO / "book" / "experiments"),
                        help="folder for the executed notebooks")
    parser.add_argument("--only", nargs="*", default=None, help="notebook stems to run")
    parser.add_argument("--workdir", default=str(REPO),
                        help="working directory of the notebooks (results/ and checkpoints/ go there)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete results/<profile> and checkpoints/<profile> first (retrain everything)")
    args = parser.parse_args(argv)
    try:
        run_all(args.profile, Path(args.dest), Path(args.workdir), args.only, args.fresh,
                log=lambda line: print(line, flush=True))
    except InvrobError as error:
        print(f"invrob: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
