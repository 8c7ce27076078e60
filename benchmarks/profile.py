"""Where the time goes: ``python -m benchmarks.profile [pgd|rotation|grid] [--model lenet]``.

Profile first, then optimise. Runs each side of a benchmark once under
``torch.profiler`` (CPU, plus CUDA when the device is CUDA) and prints the ops
that cost the most self time, and for ``grid`` the number of model passes each
side needs (a forward hook). Uses the cached benchmark models (train them with
``python -m benchmarks`` first, or this trains them).
"""
from __future__ import annotations

import argparse

import torch
import torchattacks
from torch.profiler import ProfilerActivity, profile

from invrob.attacks import PGD, pgd, robust_accuracy
from invrob.data import load_mnist
from invrob.rotations import rotated_accuracy
from invrob.utils import default_device

from . import models, rotation
from .__main__ import DEFAULT_CPU_THREADS, FULL
from .grid import _PassCounter

ROTATION_OPS = ("grid_sampler", "affine_grid", "rot90")


def _profile(name: str, fn, device: torch.device, rows: int) -> None:
    fn()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rot = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in ROTATION_OPS))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"===== {name}: self CPU {total / 1e6:.3f} s"
          + (f" (rotation kernels {100 * rot / total:.1f}%)" if rot else ""))
    print(events.table(sort_by=sort, row_limit=rows))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("what", choices=("pgd", "rotation", "grid"))
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--device", default=str(default_device()))
    parser.add_argument("--threads", type=int, default=DEFAULT_CPU_THREADS)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x_train, y_train = load_mnist(train=True)
    model = models.trained_mnist_model(args.model, x_train, y_train, FULL.train_batches, device)
    x, y = load_mnist(train=False)

    if args.what == "pgd":
        xb, yb = x[:FULL.pgd_batch].to(device), y[:FULL.pgd_batch].to(device)
        k, eps = 10, args.eps
        ours = PGD(model, eps, alpha=2.5 * eps / k, steps=k, early_stop=False)
        ta = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / k, steps=k)
        _profile(f"invrob PGD, early stop off, k={k}", lambda: ours(xb, yb), device, args.rows)
        _profile(f"torchattacks PGD, k={k}", lambda: ta(xb, yb), device, args.rows)
    elif args.what == "rotation":
        xb, yb = x[:1000], y[:1000]
        thetas = list(FULL.rot_thetas)
        u = rotation._draws(len(xb), seed=0)
        _profile("ours: rotated_accuracy, 1,000 images × 13 θ",
                 lambda: rotated_accuracy(model, xb, yb, thetas, batch_size=1000), device, args.rows)
        _profile("reference: per-image TF.rotate, 1,000 images × 13 θ",
                 lambda: rotation._reference_correct(model, xb, yb, thetas, u, 1000), device, args.rows)
    else:
        xb, yb = x[:FULL.grid_points].to(device), y[:FULL.grid_points].to(device)
        grid, k = list(FULL.eps_grid), FULL.grid_steps
        counter = _PassCounter(model)
        try:
            robust_accuracy(model, xb, yb, grid, steps=k)
            print(f"grid call: {counter.counts}")
            for e in grid[1:]:
                counter.reset()
                pgd(model, xb, yb, e, steps=k)
                print(f"separate invrob pgd at ε={e:g}: {counter.counts}")
        finally:
            counter.handle.remove()


if __name__ == "__main__":
    main()
