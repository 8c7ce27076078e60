"""Every study notebook runs at the smoke profile, and the book built from them is sound.

One session-scoped run executes the notebooks with papermill (as `make notebooks` does)
into a scratch copy of the book, then builds it with Jupyter Book, warnings as errors.
The tests below check what a reader would trip over: a failing cell, a missing table
or figure, a chapter page that is not there.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from invrob.runbook import run_notebook, study_notebooks

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = study_notebooks()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """Execute every notebook at the smoke profile into a scratch book; build it."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("experiments"))
    for stale in ("results/smoke", "checkpoints/smoke"):  # a smoke run starts from nothing
        shutil.rmtree(REPO / stale, ignore_errors=True)
    seconds = {nb.stem: run_notebook(nb, root / "book" / "experiments" / nb.name, "smoke")
               for nb in NOTEBOOKS}
    jupyter_book = Path(sys.executable).with_name("jupyter-book")  # the venv's, as `make book` uses
    build = subprocess.run([str(jupyter_book), "build", str(root), "--path-output",
                            str(root), "--warningiserror", "--keep-going"],
                           capture_output=True, text=True, cwd=REPO)
    return root, seconds, build


def test_every_study_has_a_notebook():
    stems = [nb.stem for nb in NOTEBOOKS]
    assert stems == ["00_setup", "01_invariance_vs_robustness", "02_decision_boundary_distance",
                     "03_robustness_vs_invariance", "04_perturbation_geometry", "05_verdict"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebook_has_a_parameters_cell_with_a_profile(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and 'profile = "cpu"' in "".join(tagged[0]["source"])
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit notebooks without outputs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebook_runs_at_smoke_profile(smoke_book, notebook):
    # Timing is reported (pytest -s), not asserted: speed targets live in benchmarks/.
    root, seconds, _ = smoke_book
    print(f"{notebook.stem}: {seconds[notebook.stem]:.0f} s at the smoke profile")
    executed = json.loads((root / "book" / "experiments" / notebook.name).read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


TABLES = {
    "01_invariance_vs_robustness": {"invariance": ["model", "theta", "seed", "phi", "accuracy"],
                                    "robustness": ["model", "theta", "seed", "eps", "accuracy"],
                                    "masking_check": ["model", "theta", "attack", "accuracy"]},
    "02_decision_boundary_distance": {"distances": ["model", "theta", "norm", "distance"],
                                      "distance_summary": ["model", "theta", "norm", "mean", "mean_low"]},
    "03_robustness_vs_invariance": {"invariance": ["model", "eps_train", "seed", "phi", "accuracy", "gap"],
                                    "worst_of_k": ["model", "eps_train", "phi", "k", "accuracy"],
                                    "masking_check": ["model", "eps_train", "attack", "accuracy"]},
    "04_perturbation_geometry": {"subspace_cosines": ["model", "eps_train", "comparison", "k", "mean_cosine"]},
}


@pytest.mark.parametrize("notebook", sorted(TABLES))
def test_results_are_tidy_tables(smoke_book, notebook):
    for table, columns in TABLES[notebook].items():
        frame = pd.read_csv(REPO / "results" / "smoke" / notebook / f"{table}.csv")
        assert set(columns) <= set(frame.columns) and len(frame) > 0
        keys = [c for c in frame.columns if c not in ("accuracy", "gap", "distance", "mean_cosine",
                                                       "max_cosine", "n") and not c.startswith(("mean", "median"))]
        assert not frame.duplicated(subset=keys).any(), f"{table}: one row per key"
        if "accuracy" in frame:
            assert frame["accuracy"].between(0, 1).all()


def test_smoke_measurements_are_sane(smoke_book):
    results = REPO / "results" / "smoke"
    robustness = pd.read_csv(results / "01_invariance_vs_robustness" / "robustness.csv")
    for _, group in robustness.groupby(["model", "theta", "seed"]):
        accuracy = group.sort_values("eps")["accuracy"].to_numpy()
        assert (accuracy[1:] <= accuracy[:-1] + 1e-9).all(), "robust accuracy must not rise with ε"
    cosines = pd.read_csv(results / "04_perturbation_geometry" / "subspace_cosines.csv")
    assert cosines["mean_cosine"].between(0, 1 + 1e-9).all()


def test_book_builds_without_warnings(smoke_book):
    _, _, build = smoke_book
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]


def test_book_pages_and_figures_exist_and_show_no_errors(smoke_book):
    from bs4 import BeautifulSoup

    root, _, build = smoke_book
    html = root / "_build" / "html"
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
