"""Shared fixtures. Data lives in the repository's ./data (fetched by `make data`)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Kernels started by nbval/papermill inherit this, so every notebook finds the same data.
os.environ.setdefault("INVROB_DATA", str(REPO / "data"))
# One intra-op thread: CPU float reductions are only bit-reproducible for a fixed thread
# count (resume tests compare bit for bit), and the smoke runs share the cores.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def mnist_test():
    from invrob.data import load_mnist
    return load_mnist(train=False)


@pytest.fixture(scope="session")
def mnist_train():
    from invrob.data import load_mnist
    return load_mnist(train=True)


# The two smoke runs of tests/test_notebooks.py (this CPU kernel selection and a second one),
# started in the background as soon as the tests are collected: with one thread each they run
# beside the rest of the suite, and the tests that read them run last.
SMOKE_RUNS = pytest.StashKey[dict]()


def _needs(item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())  # the whole closure, fixtures of fixtures too


def pytest_collection_modifyitems(config, items):
    """Run the tests that read the smoke runs last (those of the second-kernel run at the very
    end), and start both runs now, if any selected test needs them."""
    items.sort(key=lambda item: (_needs(item, "smoke"), _needs(item, "alt_run")))
    if config.option.collectonly or not any(_needs(item, "smoke") for item in items):
        return
    import tempfile

    from invrob import regression

    root = Path(tempfile.mkdtemp(prefix="invrob-smoke-"))
    data = regression.prepare_data(root / "data")
    config.stash[SMOKE_RUNS] = {
        "root": root, "data": data,
        "main": regression.start_smoke_run(root / "main", data, {}),
        "alt": regression.start_smoke_run(root / "alt", data, regression.ALT_KERNELS)}


@pytest.fixture(scope="session")
def smoke_runs(request) -> dict:
    """The background smoke runs: ``root``, ``data`` and the ``main`` and ``alt`` processes."""
    return request.config.stash[SMOKE_RUNS]


def pytest_unconfigure(config):
    runs = config.stash.get(SMOKE_RUNS, None)
    if runs is None:
        return
    import shutil

    for name in ("main", "alt"):
        if runs[name].poll() is None:  # the session ended early (-x, Ctrl-C): stop the run
            runs[name].kill()
            runs[name].wait()
    shutil.rmtree(runs["root"], ignore_errors=True)
