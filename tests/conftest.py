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
