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


# The smoke run of tests/test_notebooks.py, started in the background once the tests are selected:
# with one thread it runs beside the rest of the suite, and the tests that read it run last.
SMOKE_RUN = pytest.StashKey[dict]()


def _needs(item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())  # the whole closure, fixtures of fixtures too


def pytest_collection_modifyitems(items):
    """Run the tests that read the smoke run last."""
    items.sort(key=lambda item: _needs(item, "smoke"))


def pytest_collection_finish(session):
    """Start the smoke run if a test that survived every selection (-m, -k, --lf) reads it."""
    config = session.config
    if config.option.collectonly or not any(_needs(item, "smoke") for item in session.items):
        return
    import shutil
    import tempfile

    from invrob.tooling import smoke

    root = Path(tempfile.mkdtemp(prefix="invrob-smoke-"))
    run = {"root": root, "data": None}
    config.stash[SMOKE_RUN] = run  # before anything can fail, so that unconfigure cleans up
    try:
        run["data"] = smoke.prepare_data(root / "data")
        run["process"] = smoke.start_smoke_run(root / "main", run["data"], book=root / "book")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        del config.stash[SMOKE_RUN]
        raise


@pytest.fixture(scope="session")
def smoke_process(request) -> dict:
    """The background smoke run: ``root``, ``data`` and its ``process``."""
    return request.config.stash[SMOKE_RUN]


def pytest_sessionfinish(session, exitstatus):
    """Stop the run if still going (-x, Ctrl-C); keep the folder of a failed session for its logs."""
    run = session.config.stash.get(SMOKE_RUN, None)
    if run is None:
        return
    import shutil

    from invrob.tooling import smoke

    smoke.stop_smoke_run(run["process"])
    if exitstatus == 0:
        shutil.rmtree(run["root"], ignore_errors=True)
    else:
        print(f"\nsmoke run kept for its logs: {run['root']}")
