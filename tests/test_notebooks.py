"""The study notebooks at the smoke profile: one execution feeds every check.

Every notebook runs once with papermill (``invrob.tooling.smoke.smoke_run``, started in a
subprocess by ``tests/conftest.py`` as soon as the tests are collected, so it runs beside
the rest of the suite) into a scratch folder, with a data folder whose CIFAR-10 is a stand-in built from the 20
real sample images (so the CIFAR-10 cells run too). That one run feeds

- nbval's comparison of each cell's outputs with the recorded copy in ``tests/notebooks``
  (numbers sanitised: what is compared is what any machine must reproduce);
- the numeric regression check of every result table against ``tests/reference/smoke``,
  within the tolerances stated in ``tests/reference/smoke/tolerances.yaml``;
- the book build, warnings as errors, and the checks of its pages.

The run uses this machine's default CPU kernels; the references were recorded under another
selection (``invrob.tooling.smoke.REFERENCE_KERNELS``: scalar code, named in the references'
``kernels.json``), so every check above compares numbers that different kernels computed: the
proof that the regression checks are portable. Re-record with ``make nbval-update``.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invrob.tooling import regression, smoke as smoke_tools
from invrob.tooling.regression import (RECORDED, REFERENCE, SANITIZE, TOLERANCE_FILE,
                               compare_notebooks, compare_results, compare_table, load_spec)
from invrob.tooling.runbook import study_notebooks

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = study_notebooks()
pytestmark = pytest.mark.slow


def _finished(process, root: Path, what: str) -> None:
    """Wait for one background smoke run (conftest.py started it); fail with its log's tail."""
    try:
        code = process.wait(timeout=900)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the {what} smoke run took more than 15 minutes")
    log = (root / "run.log").read_text()
    assert code == 0, f"the {what} smoke run failed:\n{log[-3000:]}"


@pytest.fixture(scope="session")
def smoke(smoke_process):
    """The one smoke execution and the book built from it (both in the background process,
    ``invrob.tooling.smoke.build_book``), started when the tests were collected (tests/conftest.py)."""
    run = smoke_process
    root = run["root"]
    _finished(run["process"], root / "main", "main")
    book = root / "book"
    build = json.loads((book / "build.json").read_text())
    times = pd.read_csv(root / "main" / "results" / "smoke" / "notebook_times.csv")  # invrob.tooling.runbook.record_time
    return {"root": root, "data": run["data"], "main": root / "main", "book": book, "build": build,
            "seconds": dict(zip(times["notebook"], times["seconds"])),
            "executed": root / "main" / "executed", "chapters": book / "book" / "experiments"}


# --------------------------------------------------------------------------- the notebooks themselves

def test_every_study_has_its_notebooks_and_every_notebook_a_study():
    from invrob import studies

    stems = [nb.stem for nb in NOTEBOOKS]
    owned = [name for study in studies.all_studies() for name in study.notebooks]
    assert set(owned) <= set(stems), f"a study names a notebook that does not exist: {set(owned) - set(stems)}"
    assert set(stems) - set(owned) == {"00_setup", "06_verdict"}, "a notebook belongs to no study"
    assert stems[0] == "00_setup" and stems[-1] == "06_verdict"  # setup first, the verdict last


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebook_has_a_parameters_cell_with_a_profile(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and 'profile = "cpu"' in "".join(tagged[0]["source"])
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit notebooks without outputs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_recorded_copy_has_the_notebooks_cells(notebook):
    """tests/notebooks cannot drift from notebooks/: same cells, papermill's injected one aside."""
    recorded = RECORDED / notebook.name
    assert recorded.exists(), f"no recorded copy of {notebook.name}: run make nbval-update"
    assert regression.code_sources(recorded) == regression.code_sources(notebook), (
        f"{recorded.relative_to(REPO)} is stale: its cells differ from {notebook.relative_to(REPO)}; "
        "re-record with make nbval-update and review the diff")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebook_runs_at_smoke_profile(smoke, notebook):
    # Timing is reported (pytest -s), not asserted: speed targets live in benchmarks/.
    print(f"{notebook.stem}: {smoke['seconds'][notebook.stem]:.0f} s at the smoke profile")
    executed = json.loads((smoke["main"] / "executed" / notebook.name).read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_cifar10_cells_ran_on_the_stand_in(smoke):
    """The branch a Colab user takes with CIFAR-10 present: settings, grids, tables, figures."""
    results = smoke["main"] / "results" / "smoke"
    for table in ("01_invariance_vs_robustness/cifar10_invariance", "01_invariance_vs_robustness/cifar10_robustness",
                  "03_robustness_vs_invariance/cifar10_invariance"):
        frame = pd.read_csv(results / f"{table}.csv")
        assert (frame["dataset"] == "cifar10").all() and frame["accuracy"].between(0, 1).all()
    robustness = pd.read_csv(results / "01_invariance_vs_robustness" / "cifar10_robustness.csv")
    assert set(robustness["n"]) == {20}  # the 20 sample images, all of the stand-in's test set
    assert (results / "03_robustness_vs_invariance" / "cifar10_rotated_accuracy.png").exists()
    from invrob import profiles

    trade = pd.read_csv(results / "05_tradeoff" / "accuracy.csv")  # VGG16 rows beside the MNIST net's, one table
    vgg = trade[trade["dataset"] == "cifar10"]
    mnist_models = set(profiles.settings("tradeoff", "smoke").models)
    assert set(vgg["model"]) == {"vgg16"} and set(trade[trade["dataset"] == "mnist"]["model"]) == mnist_models
    models = pd.read_csv(results / "05_tradeoff" / "models.csv")  # ... and their quality-gate rows too
    assert set(models.loc[models["dataset"] == "cifar10", "model"]) == {"vgg16"}
    assert set(vgg["n_spatial"]) == {20} and np.allclose(vgg["eps_attack"], 2 / 255)
    assert (results / "05_tradeoff" / "cifar10_pareto_rotation.png").exists()


# --------------------------------------------------------------------------- nbval: outputs

@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_outputs_match_the_recorded_copy(smoke, notebook):
    problems = compare_notebooks(RECORDED / notebook.name, smoke["main"] / "executed" / notebook.name, SANITIZE)
    assert not problems, "\n\n".join(problems)


def test_output_check_ignores_measured_numbers_but_not_words_or_figures(tmp_path):
    """Sanitising hides the digits of a measurement, nothing else the comparison should see."""
    import re

    recorded = RECORDED / "01_invariance_vs_robustness.ipynb"
    original = json.loads(recorded.read_text())

    def variant(edit):
        notebook = json.loads(json.dumps(original))
        edit(notebook["cells"])
        path = tmp_path / "variant.ipynb"
        path.write_text(json.dumps(notebook))
        return compare_notebooks(recorded, path, SANITIZE)

    def outputs(cells, kind):
        return [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == kind]

    def renumber(cells):
        for o in outputs(cells, "execute_result"):
            o["data"] = {k: re.sub(r"\d+\.\d+", "0.987", "".join(v)) if k.startswith("text/") else v
                         for k, v in o["data"].items()}

    def reword(cells):
        o = outputs(cells, "stream")[0]
        o["text"] = "".join(o["text"]).replace("models", "modals", 1) + "an extra line\n"

    def drop_figure(cells):
        for c in cells:
            figures = [o for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
            if figures:
                c["outputs"].remove(figures[0])
                return

    assert variant(renumber) == []
    assert variant(reword), "a changed line of text must fail the comparison"
    assert variant(drop_figure), "a missing figure must fail the comparison"


# --------------------------------------------------------------------------- numeric regression

def test_result_tables_match_the_references(smoke):
    problems = compare_results(smoke["main"] / "results" / "smoke", REFERENCE)
    assert not problems, "\n".join(problems)


# Wall times differ between any two runs, with the same kernels too (a training history's
# ``seconds``): a table that differs only there shows nothing about the arithmetic.
WALL_TIME = ("seconds",)


def differing_tables(results: Path, reference: Path) -> dict[str, list[str]]:
    """Per notebook, the checked tables (those of ``reference``'s tolerance file) whose numbers, wall
    times aside, are not all equal between a run's ``results`` folder and ``reference``."""
    out: dict[str, list[str]] = {}
    for name in load_spec(reference / TOLERANCE_FILE).tables:
        ref, run = (pd.read_csv(root / f"{name}.csv", float_precision="round_trip")  # every digit written and read
                    for root in (reference, results))
        numbers = [c for c in ref.select_dtypes("number").columns if c not in WALL_TIME]
        if ref.shape[0] != run.shape[0] or not set(ref.columns) <= set(run.columns) \
                or not ref[numbers].equals(run[numbers]):
            out.setdefault(name.split("/")[0], []).append(name.split("/")[1])
    return out


def test_a_table_that_differs_only_in_wall_time_has_not_changed(tmp_path):
    """Two runs with the same kernels differ in their histories' ``seconds`` only (measured: 01, 03 and
    05): that is no evidence that other kernels changed the arithmetic; a loss 1 ulp apart is. Columns
    the reference leaves out do not count."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / TOLERANCE_FILE).write_text(
        "tables:\n  01_x/history:\n    keys: [epoch]\n    metrics: {loss: {abs: 0.1, reason: r}}\n")
    history = pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.25], "seconds": [1.0, 2.0]})
    for run, frame in [("ref", history), ("a", history.assign(extra=[3, 4])), ("b", history.assign(seconds=[1.5, 2.5])),
                       ("c", history.assign(loss=[0.5, np.nextafter(0.25, 1)]))]:
        (tmp_path / run / "01_x").mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / run / "01_x" / "history.csv", index=False)
    assert differing_tables(tmp_path / "a", tmp_path / "ref") == {}
    assert differing_tables(tmp_path / "b", tmp_path / "ref") == {}
    assert differing_tables(tmp_path / "c", tmp_path / "ref") == {"01_x": ["history"]}


def test_recording_keeps_every_digit_and_drops_tables_no_longer_checked(tmp_path):
    """A recorded reference holds the run's numbers to the last bit (a 1-ulp change from other
    kernels must show against it), and a table the tolerance file stopped naming is deleted."""
    from invrob.tooling.regression import record_results

    (tmp_path / "ref" / "01_x").mkdir(parents=True)
    (tmp_path / "ref" / TOLERANCE_FILE).write_text(
        "tables:\n  01_x/history:\n    keys: [epoch]\n    metrics: {loss: {abs: 0.1, reason: r}}\n")
    (tmp_path / "ref" / "01_x" / "old.csv").write_text("a\n1\n")
    losses = np.nextafter(np.array([0.1 + 0.2, 1 / 3, 2.5e-7]), 1)
    (tmp_path / "run" / "01_x").mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2, 3], "loss": losses, "seconds": 1.0}).to_csv(tmp_path / "run" / "01_x" / "history.csv",
                                                                             index=False)
    record_results(tmp_path / "run", tmp_path / "ref")
    recorded = pd.read_csv(tmp_path / "ref" / "01_x" / "history.csv", float_precision="round_trip")
    assert recorded["loss"].tolist() == losses.tolist() and list(recorded.columns) == ["epoch", "loss"]
    assert not (tmp_path / "ref" / "01_x" / "old.csv").exists()


def test_the_references_come_from_other_cpu_kernels(smoke):
    """The run and the references it is checked against name different CPU kernels (ATen's
    capability, as torch reports it in each): every check of the run is a check across kernels."""
    run = json.loads((smoke["main"] / smoke_tools.KERNELS_FILE).read_text())
    reference = json.loads((REFERENCE / smoke_tools.KERNELS_FILE).read_text())
    assert reference == smoke_tools.kernel_selection(smoke_tools.REFERENCE_KERNELS), reference
    if run["aten"] == reference["aten"]:
        pytest.skip(f"this machine's default kernels are the references' ({run['aten']}): no check across kernels here")
    assert run != reference


def test_other_cpu_kernels_changed_the_numbers(smoke):
    """The check across kernels proves portability only if the kernels changed the arithmetic: in
    every chapter that trains or measures models (not 00's tour, not 06's verdict, which read tables)
    some checked table differs from the references, for the StdCNN and GCNN (01, 02) and the Wong
    net (03–07) alike."""
    changed = differing_tables(smoke["main"] / "results" / "smoke", REFERENCE)
    assert {"01_invariance_vs_robustness", "02_decision_boundary_distance", "03_robustness_vs_invariance",
            "04_perturbation_geometry", "05_tradeoff", "07_how_invariant"} <= set(changed), changed


def test_every_tolerance_states_a_reason():
    spec = load_spec(REFERENCE / TOLERANCE_FILE)
    assert spec.tables and all(t.reason for table in spec.tables.values() for t in table.metrics.values())
    assert all(reason for reason in spec.ignored.values())


@pytest.fixture
def smoke_models(smoke):
    """The invariance study's smoke models, reloaded from the run's checkpoints, in its dtype."""
    import torch

    from invrob import experiments as ex, profiles, studies

    before = torch.get_default_dtype()
    profiles.use_dtype("smoke")
    try:
        S = profiles.settings("invariance", "smoke")
        x_train, y_train, x_test, y_test = ex.load_split("mnist", S.train_size, S.test_size, smoke["data"])
        trained, _ = ex.train_all(studies.get("invariance").configs(S), x_train, y_train,
                                  smoke["main"] / "checkpoints" / "smoke", progress=False)
        x_att, y_att = ex.subset(x_test, y_test, S.attack_size)
        yield S, trained, (x_test, y_test), (x_att, y_att)
    finally:
        torch.set_default_dtype(before)


def test_regression_check_catches_a_weaker_attack(smoke_models, monkeypatch):
    """PGD's step factor 2.5 → 1.0 (a weaker attack) must fail the PGD table's check; the library
    call reproduces the notebook's AutoAttack and PGD tables."""
    import importlib

    from invrob import experiments as ex

    pgd = importlib.import_module("invrob.attacks.pgd")  # the module (the package exports a function `pgd`)
    from invrob import studies

    S, trained, _, (x_att, y_att) = smoke_models
    tables = load_spec(REFERENCE / TOLERANCE_FILE).tables
    study = studies.get("invariance")
    strong = ex.summarize_points(ex.robust_points_table(trained, x_att, y_att, S.eps_grid, attack=study.attack(S)))
    reference = pd.read_csv(REFERENCE / "01_invariance_vs_robustness" / "robustness.csv")
    assert compare_table(tables["01_invariance_vs_robustness/robustness"], reference, strong) == []
    spec = tables["01_invariance_vs_robustness/pgd_robustness"]
    reference = pd.read_csv(REFERENCE / "01_invariance_vs_robustness" / "pgd_robustness.csv")

    def pgd_table():
        return ex.summarize_points(ex.robust_points_table(trained, x_att, y_att, S.eps_grid, steps=S.pgd_steps))
    assert compare_table(spec, reference, pgd_table()) == []  # the library call reproduces the notebook's table
    monkeypatch.setattr(pgd, "ALPHA_FACTOR", 1.0)
    problems = compare_table(spec, reference, pgd_table())
    assert problems, "a weaker attack passed the regression check"
    assert all("pgd_robustness.csv, row model=" in p and "reference" in p for p in problems)


def test_regression_check_catches_a_shifted_theta_grid(smoke_models):
    from invrob import experiments as ex

    S, trained, (x_test, y_test), _ = smoke_models
    spec = load_spec(REFERENCE / TOLERANCE_FILE).tables["01_invariance_vs_robustness/invariance"]
    reference = pd.read_csv(REFERENCE / "01_invariance_vs_robustness" / "invariance.csv")
    assert compare_table(spec, reference, ex.invariance_table(trained, x_test, y_test, S.phis)) == []
    shifted = ex.invariance_table(trained, x_test, y_test, [p + 15 for p in S.phis[:-1]] + [S.phis[-1]])
    problems = compare_table(spec, reference, shifted)
    assert any("missing from the result" in p for p in problems)
    assert any("is new" in p for p in problems)


# --------------------------------------------------------------------------- tables and the book

TABLES = {
    "01_invariance_vs_robustness": {"invariance": ["model", "theta", "seed", "phi", "accuracy"],
                                    "robustness": ["model", "theta", "seed", "eps", "accuracy"],
                                    "robust_points": ["model", "theta", "seed", "eps", "point", "robust"],
                                    "pgd_robustness": ["model", "theta", "seed", "eps", "accuracy"],
                                    "models": ["model", "theta", "seed", "clean", "rotated"]},
    "02_decision_boundary_distance": {"distances": ["model", "theta", "norm", "distance"],
                                      "distance_summary": ["model", "theta", "norm", "mean", "mean_low"]},
    "03_robustness_vs_invariance": {"invariance": ["model", "eps_train", "seed", "phi", "accuracy", "gap"],
                                    "worst_of_k": ["model", "eps_train", "phi", "k", "accuracy"],
                                    "robustness": ["model", "eps_train", "seed", "eps", "attack", "accuracy"],
                                    "models": ["model", "eps_train", "seed", "clean", "autoattack"]},
    "04_perturbation_geometry": {"subspace_cosines": ["model", "eps_train", "comparison", "k", "mean_cosine"],
                                 "tangent_cosines": ["model", "eps_train", "seed", "point", "adversarial"],
                                 "directional": ["model", "eps_train", "seed", "point", "along_tangent"]},
    "05_tradeoff": {"accuracy": ["model", "recipe", "seed", "clean", "spatial_grid", "adversarial"],
                    "robust_points": ["model", "recipe", "seed", "eps", "point", "robust"],
                    "models": ["model", "recipe", "seed", "clean", "spatial_drop", "min_stage_epochs"]},
}
KEYS = {("05_tradeoff", "accuracy"): ["model", "recipe", "seed"],  # wide tables: one row per model
        ("01_invariance_vs_robustness", "models"): ["model", "theta", "seed"],
        ("03_robustness_vs_invariance", "models"): ["model", "eps_train", "seed"],
        ("05_tradeoff", "models"): ["model", "dataset", "recipe", "seed"]}


@pytest.mark.parametrize("notebook", sorted(TABLES))
def test_results_are_tidy_tables(smoke, notebook):
    for table, columns in TABLES[notebook].items():
        frame = pd.read_csv(smoke["main"] / "results" / "smoke" / notebook / f"{table}.csv")
        assert set(columns) <= set(frame.columns) and len(frame) > 0
        keys = KEYS.get((notebook, table)) or [c for c in frame.columns if c not in ("accuracy", "gap", "distance", "mean_cosine", "conditional",
                                                       "max_cosine", "n", "robust", "adversarial", "random_sign",
                                                       "gradient", "along_tangent", "along_random", "gradient_norm")
                and not c.startswith(("mean", "median"))]
        assert not frame.duplicated(subset=keys).any(), f"{table}: one row per key"
        if "accuracy" in frame:
            assert frame["accuracy"].between(0, 1).all()


def test_smoke_measurements_are_sane(smoke):
    results = smoke["main"] / "results" / "smoke"
    robustness = pd.read_csv(results / "01_invariance_vs_robustness" / "robustness.csv")
    for _, group in robustness.groupby(["model", "theta", "seed"]):
        accuracy = group.sort_values("eps")["accuracy"].to_numpy()
        assert (accuracy[1:] <= accuracy[:-1] + 1e-9).all(), "robust accuracy must not rise with ε"
    cosines = pd.read_csv(results / "04_perturbation_geometry" / "subspace_cosines.csv")
    assert cosines["mean_cosine"].between(0, 1 + 1e-9).all()
    # the trade-off study: every measurement an accuracy; a grid that contains a transformation never
    # scores above it (the identity is in every grid; the ±30° rotations are in Engstrom's grid)
    trade = pd.read_csv(results / "05_tradeoff" / "accuracy.csv")
    from invrob.studies.tradeoff import MEASURES
    assert trade[list(MEASURES)].stack().between(0, 1).all()
    assert (trade["spatial_grid"] <= trade["rotation_30"] + 1e-9).all()
    assert (trade["rotation_30"] <= trade["clean"] + 1e-9).all() and (trade["rotation_grid"] <= trade["clean"] + 1e-9).all()


def test_book_builds_without_warnings(smoke):
    build = smoke["build"]  # the background run built it (invrob.tooling.regression.build_book)
    assert build["returncode"] == 0, build["stdout"][-3000:] + build["stderr"][-3000:]


def test_book_pages_and_figures_exist_and_show_no_errors(smoke):
    from bs4 import BeautifulSoup

    html = smoke["book"] / "_build" / "html"
    pages = [html / "book" / "intro.html", html / "book" / "reproduce.html", html / "book" / "api.html"]
    pages += [html / "book" / "experiments" / f"{nb.stem}.html" for nb in NOTEBOOKS]
    for page in pages:
        assert page.exists(), f"missing page {page.relative_to(html)}"
        soup = BeautifulSoup(page.read_text(), "html.parser")
        assert not soup.select(".output.traceback, .output.error"), f"error rendered in {page.name}"
        assert "Traceback (most recent call last)" not in soup.get_text()
        for image in soup.find_all("img"):
            src = image.get("src", "")
            if not src.startswith(("http", "data:")):
                assert (page.parent / src).resolve().exists(), f"{page.name}: missing figure {src}"
    figures = BeautifulSoup((html / "book" / "experiments" / "01_invariance_vs_robustness.html").read_text(),
                            "html.parser").find_all("img")
    assert len([f for f in figures if not f.get("src", "").startswith("http")]) >= 3
    assert "autofunction" not in (html / "book" / "api.html").read_text()
    assert "rotated_accuracy" in (html / "book" / "api.html").read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_colab_launch_target_takes_the_parameters_cell_profile(smoke, notebook):
    """The rocket button opens book/experiments/NN.ipynb: `profile = "paper"` set in its
    parameters cell must take effect, so no later cell may assign the profile again."""
    import re

    cells = json.loads((smoke["chapters"] / notebook.name).read_text())["cells"]
    assigns = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
               and re.search(r"^profile\s*=", "".join(c["source"]), re.MULTILINE)]
    params = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    assert params and assigns == params, f"cells assigning profile: {assigns}, parameters cell: {params}"
    assert not [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    source = "".join(cells[params[0]]["source"])
    assert 'profile = "smoke"' in source, "the run's profile is shown where a reader would change it"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_chapter_page_shows_no_pipeline_noise(smoke, notebook):
    """No papermill cell, no nbval markers, no raw progress bars, no code of a part that did not run."""
    import re

    from bs4 import BeautifulSoup

    page = smoke["book"] / "_build" / "html" / "book" / "experiments" / f"{notebook.stem}.html"
    soup = BeautifulSoup(page.read_text(), "html.parser")
    text = soup.get_text()
    assert "# Parameters" not in text and "injected-parameters" not in page.read_text()
    assert "NBVAL" not in text
    assert not re.search(r"\d+%\|", text), "a progress bar reached the page"
    for block in soup.select("div.cell"):
        if any("CIFAR-10 skipped" in out.get_text() for out in block.select("div.cell_output")):
            assert not block.select("div.cell_input"), "the code of a part that did not run is shown"
