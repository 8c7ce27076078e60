"""Shared fixtures. Data lives in the repository's ./data (fetched by `make data`)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Kernels started by nbval/papermill inherit this, so every notebook finds the same data.
os.environ.setdefault("INVROB_DATA", str(REPO / "data"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mnist_test():
    from invrob.data import load_mnist
    return load_mnist(train=False)


@pytest.fixture(scope="session")
def mnist_train():
    from invrob.data import load_mnist
    return load_mnist(train=True)
