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


def pytest_collection_modifyitems(items):
    """Run the tests that wait for the second-kernel smoke run (tests/test_notebooks.py, fixture
    ``alt_run``) last: that run works in the background on the other core meanwhile, instead of
    the suite idling while it finishes."""
    items.sort(key=lambda item: "alt_run" in getattr(item, "fixturenames", ()))
