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
# started in the background once the tests are selected: with one thread each they run beside
# the rest of the suite, and the tests that read them run last.
SMOKE_RUNS = pytest.StashKey[dict]()


def _needs(item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())  # the whole closure, fixtures of fixtures too


def pytest_collection_modifyitems(items):
    """Run the tests that read the smoke runs last, those of the second-kernel run at the very end."""
    items.sort(key=lambda item: (_needs(item, "smoke"), _needs(item, "alt_run")))


def pytest_collection_finish(session):
    """Start both smoke runs if a test that survived every selection (-m, -k, --lf) reads them."""
    config = session.config
    if config.option.collectonly or not any(_needs(item, "smoke") for item in session.items):
        return
    import shutil
    import tempfile

    from invrob.tooling import regression

    root = Path(tempfile.mkdtemp(prefix="invrob-smoke-"))
    runs = {"root": root, "data": None}
    config.stash[SMOKE_RUNS] = runs  # before anything can fail, so that unconfigure cleans up
    try:
        runs["data"] = regression.prepare_data(root / "data")
        runs["main"] = regression.start_smoke_run(root / "main", runs["data"], {}, book=root / "book")
        runs["alt"] = regression.start_smoke_run(root / "alt", runs["data"], regression.ALT_KERNELS)
    except BaseException:
        for name in ("main", "alt"):
            if name in runs:
                regression.stop_smoke_run(runs[name])
        shutil.rmtree(root, ignore_errors=True)
        del config.stash[SMOKE_RUNS]
        raise


@pytest.fixture(scope="session")
def smoke_runs(request) -> dict:
    """The background smoke runs: ``root``, ``data`` and the ``main`` and ``alt`` processes."""
    return request.config.stash[SMOKE_RUNS]


def pytest_sessionfinish(session, exitstatus):
    """Stop runs still going (-x, Ctrl-C); keep the folder of a failed session for its logs."""
    runs = session.config.stash.get(SMOKE_RUNS, None)
    if runs is None:
        return
    import shutil

    from invrob.tooling import regression

    for name in ("main", "alt"):
        regression.stop_smoke_run(runs[name])
    if exitstatus == 0:
        shutil.rmtree(runs["root"], ignore_errors=True)
    else:
        print(f"\nsmoke runs kept for their logs: {runs['root']}")
