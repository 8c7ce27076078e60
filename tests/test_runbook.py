"""invrob.tooling.runbook: the one notebook runner (make notebooks, sweeps, tests) and `invrob run`.

The executing tests use tests/fixtures/toy_runbook.ipynb (standard library only: one kernel
start per run); the rest start no kernel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from invrob.tooling import runbook
from invrob.errors import InvrobError
from invrob.tooling.runbook import NotebookError, run_notebook

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "toy_runbook.ipynb"
REPO = Path(__file__).resolve().parent.parent


def outputs(path: Path) -> list[dict]:
    import nbformat  # joins multi-line text fields
    return [o for cell in nbformat.read(path, as_version=4).cells for o in cell.get("outputs", [])]


# --------------------------------------------------------------------------- run_notebook

@pytest.mark.slow
def test_success_runs_in_cwd_without_chdir_and_writes_a_tidy_copy(tmp_path):
    work, dest = tmp_path / "work", tmp_path / "out" / "toy.ipynb"
    work.mkdir()
    here = os.getcwd()
    (dest.parent).mkdir()
    failed = dest.with_name("toy.failed.ipynb")
    failed.write_text("{}")  # a stale failure from an earlier run
    seconds = run_notebook(FIXTURE, dest, "smoke", cwd=work, log=tmp_path / "log.txt")
    assert seconds > 0 and os.getcwd() == here  # the kernel moved, this process did not
    assert (work / "ran.txt").read_text().splitlines() == ["smoke", str(work.resolve())]
    assert dest.is_file() and not failed.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["toy.ipynb"]  # no partial file left
    streams = [o for o in outputs(dest) if o["output_type"] == "stream"]
    stdout = "".join(o["text"] for o in streams if o["name"] == "stdout")
    assert stdout.startswith("step 3/3\n") and "\r" not in stdout  # progress bar: final state only
    assert [o["text"] for o in streams if o["name"] == "stderr"] == ["a line on stderr\n"]
    log = (tmp_path / "log.txt").read_text()
    assert "profile smoke in" in log and "a line on stderr" in log


@pytest.mark.slow
def test_failure_is_one_line_and_keeps_the_executed_copy(tmp_path):
    dest = tmp_path / "out" / "toy.ipynb"
    log = tmp_path / "log.txt"
    with pytest.raises(NotebookError) as info:
        run_notebook(FIXTURE, dest, "cpu", cwd=tmp_path, log=log, fail=True)
    error = info.value
    failed = tmp_path / "out" / "toy.failed.ipynb"
    assert str(error) == (f"toy_runbook.ipynb failed in cell 4: ValueError: injected failure at profile cpu "
                          f"second line of the message (executed copy: {failed})")
    assert isinstance(error, InvrobError) and error.cell == 4 and error.executed == failed
    assert error.short == "ValueError: injected failure at profile cpu second line of the message (cell [4])"
    assert not dest.exists() and sorted(p.name for p in failed.parent.iterdir()) == ["toy.failed.ipynb"]
    errors = [o for o in outputs(failed) if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "ValueError"  # the evidence is in the kept copy
    assert (tmp_path / "ran.txt").is_file()               # cells before the failure ran
    text = log.read_text()
    assert "# the notebook raised:" in text and "injected failure" in text and "\x1b[" not in text


@pytest.mark.parametrize("deaths, error, calls, ok", [
    (2, "Kernel died before replying to kernel_info", 3, True),    # two kernels lost their ports: the third runs
    (3, "Kernel died before replying to kernel_info", 3, False),   # three: the failure is final
    (1, "Kernel didn't respond in 60 seconds", 1, False),          # anything else is final at once
])
def test_a_kernel_that_dies_before_it_starts_is_replaced(tmp_path, monkeypatch, deaths, error, calls, ok):
    import papermill

    made = []

    def execute(source, output, **kwargs):  # stands in for papermill: no kernel starts here
        made.append(output)
        if len(made) <= deaths:
            raise RuntimeError(error)
        shutil.copy(source, output)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    dest, log = tmp_path / "out" / "toy.ipynb", tmp_path / "log.txt"
    if ok:
        assert run_notebook(FIXTURE, dest, "smoke", cwd=tmp_path, log=log) >= 0 and dest.is_file()
    else:
        with pytest.raises(NotebookError, match=re.escape(error)):
            run_notebook(FIXTURE, dest, "smoke", cwd=tmp_path, log=log)
        assert not dest.exists()
    assert len(made) == calls <= runbook.KERNEL_START_TRIES
    assert log.read_text().count("# the kernel died before it started") == (calls - 1 if ok or calls > 1 else 0)


def test_missing_notebook_or_workdir_is_one_line(tmp_path):
    with pytest.raises(InvrobError, match=r"^notebook .*nope\.ipynb not found$"):
        run_notebook(tmp_path / "nope.ipynb", tmp_path / "x.ipynb", "smoke", cwd=tmp_path)
    with pytest.raises(InvrobError, match=r"^working directory .*gone not found$"):
        run_notebook(FIXTURE, tmp_path / "x.ipynb", "smoke", cwd=tmp_path / "gone")


def test_study_notebooks_outside_a_checkout_needs_a_folder(tmp_path, monkeypatch):
    assert [nb.stem for nb in runbook.study_notebooks()][:2] == ["00_setup", "01_invariance_vs_robustness"]
    monkeypatch.setattr(runbook, "REPO", tmp_path / "site-packages")  # an installed wheel: no notebooks/
    with pytest.raises(InvrobError, match="installed copy, not a checkout; pass the notebooks folder"):
        runbook.study_notebooks()
    folder = tmp_path / "nbs"
    folder.mkdir()
    for name in ("02_b.ipynb", "01_a.ipynb", "notes.ipynb"):
        (folder / name).write_text("{}")
    assert [nb.name for nb in runbook.study_notebooks(folder)] == ["01_a.ipynb", "02_b.ipynb"]
    assert runbook.default_workdir() == Path.cwd()


# --------------------------------------------------------------------------- invrob run

def invrob(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invrob.tooling.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_help_and_bad_options(tmp_path):
    proc = invrob("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--profile" in proc.stdout and "--notebooks" in proc.stdout
    proc = invrob("--help", cwd=tmp_path)
    assert proc.returncode == 0 and re.search(r"^  run ", proc.stdout, re.M)
    proc = invrob("run", "--profile", "huge", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["invrob: unknown profile 'huge'; valid: smoke, cpu, gpu, paper"]
    proc = invrob("run", "--profile", "smoke", "--only", "99_nope", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no notebooks matched ['99_nope']; valid: 00_setup, " in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_outside_a_checkout_asks_for_the_notebooks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runbook, "REPO", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert runbook.main(["--profile", "smoke"], prog="invrob run") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pass the notebooks folder (invrob run --notebooks DIR)" in lines[0]


@pytest.mark.slow
def test_cli_runs_from_another_directory_with_relative_paths(tmp_path):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    shutil.copy(FIXTURE, notebooks / "01_toy.ipynb")
    (tmp_path / "work").mkdir()
    proc = invrob("run", "--profile", "smoke", "--notebooks", "nbs", "--workdir", "work", "--dest", "out",
                  "--only", "01_toy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "[smoke] 01_toy.ipynb ..."
    assert (tmp_path / "out" / "01_toy.ipynb").is_file()
    assert (tmp_path / "work" / "ran.txt").read_text().splitlines() == ["smoke", str((tmp_path / "work").resolve())]
    assert (tmp_path / "work" / "results" / "smoke" / "notebook_times.csv").is_file()

    # a failing notebook: exit 1, one line, the executed copy kept
    shutil.copy(FIXTURE, notebooks / "02_bad.ipynb")
    source = json.loads((notebooks / "02_bad.ipynb").read_text())
    source["cells"][1]["source"] = ['profile = "cpu"\n', "fail = True\n", 'marker = "bad.txt"\n']
    (notebooks / "02_bad.ipynb").write_text(json.dumps(source))
    proc = invrob("run", "--profile", "smoke", "--notebooks", "nbs", "--workdir", "work", "--dest", "out",
                  "--only", "02_bad", cwd=tmp_path)
    assert proc.returncode == 1
    failed = (tmp_path / "out" / "02_bad.failed.ipynb").resolve()
    # (the kernel's own log lines, such as IPKernelApp warnings, may come first)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"invrob: 02_bad.ipynb failed in cell 4: ValueError: injected failure at profile smoke "
        f"second line of the message (executed copy: {failed})")
    assert "Traceback" not in proc.stderr
    assert failed.is_file() and not (tmp_path / "out" / "02_bad.ipynb").exists()


def test_for_book_merges_injected_parameters_and_hides_skipped_code(tmp_path):
    import nbformat

    from invrob.tooling.runbook import for_book

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "cpu"        # smoke | cpu | paper\nseeds = None  # None: all')
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "paper"\nseeds = [0, 1]\nextra = 3\n')
    injected.metadata["tags"] = ["injected-parameters"]
    skipped = nbformat.v4.new_code_cell("if not cifar:\n    print('CIFAR-10 skipped: ...')")
    skipped.outputs = [nbformat.v4.new_output("stream", name="stdout", text="CIFAR-10 skipped: no data\n")]
    ran = nbformat.v4.new_code_cell("print(1)")
    ran.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells = [params, injected, skipped, ran]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    for_book(path)
    cells = nbformat.read(str(path), as_version=4).cells
    assert len(cells) == 3 and "injected-parameters" not in str([c.metadata for c in cells])
    assert cells[0].source.splitlines() == ['profile = "paper"        # smoke | cpu | paper',
                                            "seeds = [0, 1]  # None: all", "extra = 3"]
    assert "remove-input" in cells[1].metadata["tags"] and "remove-input" not in cells[2].metadata.get("tags", [])


def test_the_verdict_notebook_runs_after_every_study(tmp_path):
    """A study added after the verdict page (06_…) must write its tables before the verdict reads them."""
    from invrob.tooling.runbook import study_notebooks

    for name in ("00_setup", "01_a", "05_verdict", "06_tradeoff", "notes"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert [p.stem for p in study_notebooks(tmp_path)] == ["00_setup", "01_a", "06_tradeoff", "05_verdict"]


def test_training_minutes_counts_a_shared_model_once(tmp_path):
    import pandas as pd

    from invrob.tooling.runbook import training_minutes

    def history(folder, models):
        (tmp_path / folder).mkdir()
        pd.DataFrame([dict(model="lenet", dataset="mnist", theta=t, eps_train=e, seed=0, epoch=k, seconds=30.0)
                      for t, e in models for k in (1, 2)]).to_csv(tmp_path / folder / "history.csv", index=False)

    history("03_robustness_vs_invariance", [(0, 0.0), (0, 0.3)])
    history("05_tradeoff", [(0, 0.3), (180, 0.3)])  # reuses 03's ε = 0.3 model, trains one more
    (tmp_path / "02_decision_boundary_distance").mkdir()  # no history: no entry
    assert training_minutes(tmp_path) == {"03_robustness_vs_invariance": 2.0, "05_tradeoff": 1.0}


def test_cost_table_gives_wall_time_summed_training_and_reuse(tmp_path):
    import pandas as pd

    from invrob.tooling.runbook import cost_table

    assert cost_table(tmp_path) == (None, None)
    pd.DataFrame([dict(model="lenet", dataset="mnist", theta=0, eps_train=e, seed=0, epoch=1, seconds=60.0)
                  for e in (0.0, 0.3)]).to_csv((tmp_path / "03_robustness_vs_invariance").mkdir() or
                                               tmp_path / "03_robustness_vs_invariance" / "history.csv", index=False)
    pd.DataFrame([dict(notebook=n, seconds=s, cpus=2) for n, s in
                  (("03_robustness_vs_invariance", 60.0), ("04_perturbation_geometry", 300.0),
                   ("06_verdict", 5.0))]).to_csv(tmp_path / "notebook_times.csv", index=False)
    summary, cost = cost_table(tmp_path)
    assert list(cost.index) == ["03_robustness_vs_invariance", "04_perturbation_geometry"]  # not the page itself
    # 1 min of wall time for 2 min of training: side by side or reloaded, the table does not guess
    assert cost.loc["03_robustness_vs_invariance", "training, summed over its models (min)"] == 2.0
    assert cost.loc["03_robustness_vs_invariance", "models reused from other notebooks"] == ""
    assert cost.loc["04_perturbation_geometry", "models reused from other notebooks"] == "reused from 03"  # the study's words
    assert cost.loc["04_perturbation_geometry", "training, summed over its models (min)"] == ""
    assert "**6.0 min**" in summary and "**2.0 min**" in summary and "summed over the models" in summary
