"""invrob.tooling.sweep: validation of sweep files, resume, failure isolation, local and Dask backends.

The executing tests use tests/fixtures/toy_sweep.ipynb (standard library only: one kernel
start per point) and are marked slow; the validation tests run no kernel.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from invrob.errors import InvrobError
from invrob.tooling.sweep import load_sweep, notebook_parameters, point_digest, read_status, run_sweep

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "toy_sweep.ipynb"
REPO = Path(__file__).resolve().parent.parent
STUDY_01 = REPO / "notebooks" / "01_invariance_vs_robustness.ipynb"


def write_sweep(folder: Path, body: str, name: str = "sweep.yaml", notebook: Path = FIXTURE) -> Path:
    """A sweep file for the toy notebook (or ``notebook``); ``body`` follows the header (lines 1-2)."""
    path = folder / name
    path.write_text(f"name: toy\nnotebook: {notebook}\n" + textwrap.dedent(body))
    return path


# --------------------------------------------------------------------------- validation

BAD = {
    # case: (body after the 2-line header, line of the culprit, words the message must hold)
    "unknown key": ("grids:\n  seed: [0]\n", 3, ["unknown key 'grids'", "did you mean 'grid'"]),
    "unknown parameter": ("grid:\n  sead: [0, 1]\n", 4, ["unknown parameter 'sead'", "did you mean 'seed'"]),
    "output_dir is the sweep's": ("parameters:\n  output_dir: x\n", 4, ["'output_dir' is set by the sweep"]),
    "str for int": ("parameters:\n  profile: smoke\n  seed: zero\n", 5, ["seed must be an integer", "'zero'"]),
    "bool for int": ("grid:\n  seed: [0, true]\n", 4, ["seed must be an integer", "True"]),
    "str for float": ("parameters:\n  eps: big\n", 4, ["eps must be a number", "'big'"]),
    "float for bool": ("parameters:\n  fail: 1.0\n", 4, ["fail must be true or false"]),
    "list element type": ("parameters:\n  models: [std, 3]\n", 4, ["models: element 3 is an integer", "a string"]),
    "scalar for list": ("parameters:\n  thetas: 45\n", 4, ["thetas must be a list", "45"]),
    "flat grid of a list parameter": ("grid:\n  thetas: [0, 90]\n", 4, ["thetas must be a list", "list of lists"]),
    "theta above 180": ("grid:\n  thetas:\n    - [0, 90]\n    - [0, 200]\n", 6, ["thetas", "[0, 180]", "200"]),
    "scalar theta below 0": ("parameters:\n  theta: -5\n", 4, ["theta", "[0, 180]", "-5"]),
    "negative eps in a list": ("parameters:\n  eps_grid:\n    - 0.0\n    - -0.1\n", 6, ["eps_grid", ">= 0", "-0.1"]),
    "negative eps in a grid": ("grid:\n  eps: [0.1, -1.0e-3]\n", 4, ["eps", ">= 0", "-0.001"]),
    "unknown profile": ("parameters:\n  profile: huge\n", 4, ["unknown profile 'huge'", "smoke, cpu, gpu, paper"]),
    "grid entry not a list": ("grid:\n  seed: 3\n", 4, ["grid: seed must be a non-empty list"]),
    "duplicate grid value": ("grid:\n  seed:\n    - 1\n    - 2\n    - 1\n", 7, ["lists 1 twice", "line 5"]),
    "both fixed and grid": ("parameters:\n  seed: 0\ngrid:\n  seed: [1, 2]\n", 6, ["both in parameters and in grid"]),
    "duplicate key": ("parameters:\n  seed: 0\n  seed: 1\n", 5, ["'seed' is given twice"]),
    "invalid YAML": ("parameters:\n  seed: [0, 1\n", 5, ["invalid YAML"]),
    "bad sweep name": ("", 1, ["sweep name 'a b'"]),
    # Against a real study notebook: its profiles.settings("invariance", ...) call validates.
    "study: seed not an int": ("parameters:\n  profile: smoke\ngrid:\n  seeds: [[\"zero\"]]\n", 6,
                               ["seeds: element 'zero' is a string, expected an integer",
                                "the invariance study has seeds = [0, 1] at the smoke profile"], STUDY_01),
    "study: unknown model": ("parameters:\n  profile: smoke\ngrid:\n  models: [[\"StdCNN\"]]\n", 6,
                             ["models: unknown model 'StdCNN'", "did you mean 'stdcnn'", "gcnn_p4"], STUDY_01),
    "study: unknown model in points": ("parameters:\n  profile: smoke\npoints:\n  - {models: [stdcnn]}\n"
                                       "  - {models: [stdcnn, gcnn]}\n", 7,
                                       ["models: unknown model 'gcnn'", "valid: stdcnn"], STUDY_01),
    "study: theta above 180": ("parameters:\n  profile: smoke\ngrid:\n  thetas: [[0, 190]]\n", 6,
                               ["thetas must be in [0, 180] degrees, got 190"], STUDY_01),
    "study: negative eps": ("parameters:\n  profile: smoke\n  eps_grid: [0.0, -0.1]\n", 5,
                            ["eps_grid must be a finite number >= 0, got -0.1"], STUDY_01),
    "study: flat seeds in a grid": ("parameters:\n  profile: smoke\ngrid:\n  seeds: [0, 1]\n", 6,
                                    ["seeds must be a list", "list of lists"], STUDY_01),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_file_is_refused_with_line_and_reason(tmp_path, case):
    body, line, words, *notebook = BAD[case]
    path = write_sweep(tmp_path, body, notebook=notebook[0] if notebook else FIXTURE)
    if case == "bad sweep name":
        path.write_text(path.read_text().replace("name: toy", "name: a b"))
    with pytest.raises(InvrobError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_unknown_or_unusable_notebook_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: toy\nparameters:\n  seed: 0\nnotebook: notebooks/nope.ipynb\n")
    with pytest.raises(InvrobError, match=r":4: notebook 'notebooks/nope.ipynb' not found"):
        load_sweep(path)
    path.write_text("name: toy\n")
    with pytest.raises(InvrobError, match=r":1: missing required key 'notebook'"):
        load_sweep(path)
    bare = json.loads(FIXTURE.read_text())
    for cell in bare["cells"]:
        cell.get("metadata", {}).pop("tags", None)
    (tmp_path / "bare.ipynb").write_text(json.dumps(bare))
    path.write_text("notebook: bare.ipynb\n")  # relative to the sweep file's folder (no pyproject here)
    with pytest.raises(InvrobError, match=r":1: notebook bare.ipynb has no cell tagged 'parameters'"):
        load_sweep(path)
    with pytest.raises(InvrobError, match="no such sweep file"):
        load_sweep(tmp_path / "missing.yaml")


def test_valid_file_expands_grid_with_lenient_types(tmp_path):
    path = write_sweep(tmp_path, """\
        parameters:
          profile: smoke
          eps: 1e-3          # YAML 1.1 would read a string; we read a float
          eps_grid: [0, 0.1] # ints are fine where the default holds floats
          data_root: /data   # a None default accepts anything
        grid:
          seed: [0, 1]
          thetas: [[0, 90], [0, 180]]
        """)
    sweep = load_sweep(path)
    assert sweep.name == "toy" and sweep.root == tmp_path.resolve()
    assert sweep.runs_dir == (tmp_path / "runs").resolve()
    assert [(p.params["seed"], p.params["thetas"]) for p in sweep.points] == [
        (0, [0, 90]), (0, [0, 180]), (1, [0, 90]), (1, [0, 180])]
    assert all(p.params["eps"] == 0.001 and p.params["data_root"] == "/data" for p in sweep.points)
    assert sweep.varying == ("seed", "thetas")
    assert len({p.id for p in sweep.points}) == 4
    assert all(len(p.id) == 12 and p.digest.startswith(p.id) for p in sweep.points)


def test_points_cross_the_grid_and_may_override_parameters(tmp_path):
    path = write_sweep(tmp_path, """\
        parameters: {profile: smoke}
        grid: {seed: [0, 1]}
        points:
          - {models: [std]}
          - {models: [gcnn], profile: cpu}
        """)
    params = [p.params for p in load_sweep(path).points]
    assert params == [
        {"profile": "smoke", "models": ["std"], "seed": 0}, {"profile": "smoke", "models": ["std"], "seed": 1},
        {"profile": "cpu", "models": ["gcnn"], "seed": 0}, {"profile": "cpu", "models": ["gcnn"], "seed": 1}]


def test_point_identity_follows_notebook_and_parameters():
    nb = FIXTURE.read_bytes()
    a = point_digest(nb, {"seed": 0, "thetas": [0, 90]})
    assert a == point_digest(nb, {"thetas": [0, 90], "seed": 0})      # key order is irrelevant
    assert a != point_digest(nb, {"seed": 1, "thetas": [0, 90]})
    assert a != point_digest(nb, {"seed": 0, "thetas": [0, 180]})
    assert a != point_digest(nb + b" ", {"seed": 0, "thetas": [0, 90]})  # an edited notebook reruns


def test_state_needs_done_and_the_same_digest(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, "grid:\n  seed: [0]\n"))
    point = sweep.points[0]
    folder = sweep.point_dir(point)
    folder.mkdir(parents=True)
    assert sweep.state(point) == "pending"
    (folder / "status.json").write_text('{"state": "do')          # a torn file counts as absent
    assert sweep.state(point) == "pending"
    (folder / "status.json").write_text(json.dumps({"state": "done", "digest": "0" * 64}))
    assert sweep.state(point) == "pending"
    (folder / "status.json").write_text(json.dumps({"state": "done", "digest": point.digest}))
    assert sweep.state(point) == "done"


def test_notebook_parameters_reads_the_parameters_cell():
    params = notebook_parameters(FIXTURE)
    assert params["profile"] == "cpu" and params["seed"] == 0 and params["data_root"] is None
    assert params["thetas"] == [0, 90] and params["fail"] is False


@pytest.mark.parametrize("command", [["-m", "invrob.tooling.sweep"], ["-m", "invrob.tooling.cli", "sweep"]])
def test_cli_bad_file_prints_one_line_and_exits_2(tmp_path, command):
    path = write_sweep(tmp_path, "parameters:\n  theta: 200\n")
    proc = subprocess.run([sys.executable, *command, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"{path}:4: theta must be in [0, 180] degrees, got 200"]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("grid, message", [
    ('seeds: [["zero"]]', "seeds: element 'zero' is a string, expected an integer"),
    ('models: [["StdCNN"]]', "models: unknown model 'StdCNN'"),
])
def test_cli_dry_run_refuses_a_wrongly_typed_study_setting(tmp_path, grid, message):
    """The issue's 'done when': a relative sweep file, from another directory, at --dry-run."""
    (tmp_path / "s.yaml").write_text(f"notebook: {STUDY_01}\nparameters:\n  profile: smoke\ngrid:\n  {grid}\n")
    proc = subprocess.run([sys.executable, "-m", "invrob.tooling.cli", "sweep", "s.yaml", "--dry-run"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"s.yaml:5: {message}"), lines


def test_study_is_read_from_the_notebook_source():
    from invrob.tooling.sweep import notebook_study
    study, forwards = notebook_study(STUDY_01)
    assert study == "invariance"
    assert forwards == {"seeds": "seeds", "thetas": "thetas", "eps_grid": "eps_grid", "models": "models"}
    assert notebook_study(FIXTURE) is None  # no settings call: the parameters cell's types only


def test_docstring_example_is_a_valid_sweep(tmp_path):
    import invrob.tooling.sweep
    doc = invrob.tooling.sweep.__doc__
    block = doc.split("Sweep file (YAML)::\n", 1)[1].split("\n\n", 1)[0]  # the indented example
    path = tmp_path / "example.yaml"
    path.write_text(textwrap.dedent(block).replace("notebooks/01_invariance_vs_robustness.ipynb", str(STUDY_01)))
    sweep = load_sweep(path)
    assert len(sweep.points) == 2 * 2 * 2
    assert {p.params["models"][0] for p in sweep.points} == {"stdcnn", "gcnn_p4"}


def test_example_sweeps_are_valid():
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert files, "sweeps/ holds the example sweep files"
    checked = 0
    for path in files:
        text = path.read_text()
        notebook = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                         if line.startswith("notebook:")), None)
        if notebook and (REPO / notebook).is_file():
            assert load_sweep(path).points
            checked += 1
    if not checked:
        pytest.skip("the example sweeps' notebooks are not written yet")


# --------------------------------------------------------------------------- execution

def merged(sweep_dir: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "merged" / f"{table}.csv")


@pytest.mark.slow
def test_dask_local_cluster_runs_and_merges_four_points(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = write_sweep(tmp_path, """\
        parameters: {profile: smoke}
        grid:
          seed: [0, 1]
          theta: [0.0, 45]
        """)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = run_sweep(path, client=client, progress=False)
    sweep = result.sweep
    assert result.ok and len(result.done) == 4 and sorted(result.ran) == sorted(p.id for p in sweep.points)
    acc = merged(sweep.dir, "accuracy")
    assert sorted(acc.point_id.unique()) == sorted(p.id for p in sweep.points)
    assert len(acc) == 4 * 2 * 2  # points x thetas x eps_grid rows, each point's own table
    assert set(acc.columns) >= {"point_id", "profile", "seed", "theta", "eps", "metric", "value"}
    # lists become JSON cells; the table's own seed column is kept and equals the point's seed
    for point in sweep.points:
        rows = acc[acc.point_id == point.id]
        assert (rows.seed == point.params["seed"]).all()
        status = read_status(sweep.point_dir(point))
        assert status["state"] == "done" and status["digest"] == point.digest
        assert (sweep.point_dir(point) / "executed.ipynb").is_file()
        assert (sweep.point_dir(point) / "log.txt").is_file()
    info = merged(sweep.dir, "runinfo")
    assert set(info.cwd) == {str(tmp_path.resolve())}  # kernels run in the project root
    assert not list(sweep.dir.rglob("*.partial*")) and not list(sweep.dir.rglob("*.tmp"))


@pytest.mark.slow
def test_failing_point_is_isolated_and_resume_reruns_only_unfinished(tmp_path, monkeypatch, capsys):
    import invrob.tooling.sweep.execute as sweep_execute
    # Pretend two GPUs: each local worker is pinned to one, and kernels inherit it.
    # Patched where _run_local looks it up (invrob.tooling.sweep only re-exports it).
    monkeypatch.setattr(sweep_execute, "visible_gpus", lambda: ["7", "8"])
    path = write_sweep(tmp_path, """\
        parameters: {profile: smoke}
        points:
          - {seed: 0}
          - {seed: 1}
          - {seed: 2, fail: true}
        """)
    first = run_sweep(path, progress=False)  # workers: one per (pretend) GPU = 2
    sweep = first.sweep
    ok0, ok1, bad = sweep.points
    assert first.failed == [bad.id] and sorted(first.done) == sorted([ok0.id, ok1.id])
    error = first.outcomes[bad.id]["error"]
    assert error.startswith("RuntimeError: injected failure for seed 2")
    # the one runner's failure behaviour: the executed copy is kept as <stem>.failed.ipynb
    executed = sweep.point_dir(bad) / "executed.failed.ipynb"
    assert first.outcomes[bad.id]["executed"] == str(executed)
    assert not (sweep.point_dir(bad) / "executed.ipynb").exists()
    assert "injected failure" in executed.read_text()       # the traceback is in the notebook
    assert "injected failure" in (sweep.point_dir(bad) / "log.txt").read_text()
    out = capsys.readouterr().out
    assert "failed points" in out and bad.id in out and "RuntimeError: injected failure" in out
    assert f"{bad.id}{os.sep}executed.failed.ipynb" in out  # the summary says where to look
    assert sorted(merged(sweep.dir, "accuracy").point_id.unique()) == sorted([ok0.id, ok1.id])
    assert set(merged(sweep.dir, "runinfo").cuda_visible_devices.astype(str)) <= {"7", "8"}
    table = pd.read_csv(sweep.dir / "points.csv").set_index("point_id")
    assert table.loc[bad.id, "state"] == "failed" and table.loc[ok0.id, "state"] == "done"

    # An interrupted point has no 'done' status: simulate one, then resume.
    (sweep.point_dir(ok1) / "status.json").unlink()
    kept = read_status(sweep.point_dir(ok0))
    second = run_sweep(path, workers=2, progress=False)
    assert sorted(second.ran) == sorted([ok1.id, bad.id])   # the unfinished and the failed point
    assert second.cached == [ok0.id]
    assert read_status(sweep.point_dir(ok0)) == kept         # untouched
    assert read_status(sweep.point_dir(ok1))["state"] == "done"
    assert second.failed == [bad.id]
    assert sorted(merged(sweep.dir, "accuracy").point_id.unique()) == sorted([ok0.id, ok1.id])


@pytest.mark.slow
def test_killed_sweep_resumes_with_only_the_missing_points(tmp_path):
    path = write_sweep(tmp_path, """\
        parameters: {profile: smoke, delay: 1.0}
        grid:
          seed: [0, 1, 2]
        """)
    sweep = load_sweep(path)
    first, second, third = sweep.points
    proc = subprocess.Popen([sys.executable, "-m", "invrob.tooling.sweep", str(path), "--workers", "1", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (sweep.state(first) == "done" and sweep.state(second) == "running"):
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep should still be running"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-point
        proc.wait()
    assert sweep.state(third) == "pending"
    assert not (sweep.point_dir(second) / "executed.ipynb").exists()  # only a partial file, if any
    kept = read_status(sweep.point_dir(first))

    result = run_sweep(path, workers=2, progress=False)
    assert result.cached == [first.id] and sorted(result.ran) == sorted([second.id, third.id])
    assert result.ok and read_status(sweep.point_dir(first)) == kept
    acc = merged(sweep.dir, "accuracy")
    assert sorted(acc.point_id.unique()) == sorted(p.id for p in sweep.points)
    assert not list(sweep.dir.rglob("*.partial*"))


@pytest.mark.slow
def test_real_study_notebook_sweeps_and_merges(tmp_path, monkeypatch):
    """The shipped notebook 01 through the sweep, as cheap as it gets: smoke profile, one
    model, one θ, two ε; two seeds on two local workers."""
    monkeypatch.setenv("INVROB_DATA", str(REPO / "data"))  # the kernels inherit it, as in conftest
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: study
        notebook: {STUDY_01}
        parameters:
          profile: smoke
          models: [stdcnn]
          thetas: [0]
          eps_grid: [0.0, 0.1]
          checkpoint_dir: {tmp_path / "checkpoints"}
        grid:
          seeds: [[0], [1]]
        """))
    result = run_sweep(path, workers=2, runs_dir=tmp_path / "runs", progress=False)
    assert result.ok and len(result.done) == 2, result.outcomes
    for table in ("history", "invariance", "robustness"):
        frame = merged(result.sweep.dir, table)
        assert set(frame["seed"]) == {0, 1} and set(frame["theta"]) == {0}
        assert frame["point_id"].nunique() == 2
    robustness = merged(result.sweep.dir, "robustness")
    assert set(robustness["eps"]) == {0.0, 0.1}   # the sweep's grid, not the profile's
    assert robustness["accuracy"].between(0, 1).all()
    for point in result.sweep.points:
        assert (result.sweep.point_dir(point) / "executed.ipynb").is_file()
