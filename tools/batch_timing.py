"""Per-batch training time of each model family on this machine's device: the numbers
``invrob.tooling.budget.THROUGHPUT`` needs for a device it has not measured.

    python tools/batch_timing.py                 # cuda if available, else cpu
    python tools/batch_timing.py --device cuda --batches 50

For each family (at the widths the profiles train) it times a forward + backward pass and an
optimiser step of a batch of 128 MNIST-sized images, after warm-up batches, and prints images
per second as a ``THROUGHPUT`` entry. Run it on a lent GPU and replace the calibrated h100
estimate (``invrob.tooling.budget.throughput("h100")``) with the measurement.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from invrob.models import build_model

FAMILIES = {"lenet": {}, "wong": {}, "madry": {}, "stdcnn": {"width": 8}, "gcnn_p4": {"width": 8}}


def images_per_second(name: str, options: dict, device: torch.device, batches: int, batch: int = 128) -> float:
    torch.manual_seed(0)
    model = build_model(name, "mnist", **options).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(batches):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batches * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    rates = {name: round(images_per_second(name, options, device, args.batches))
             for name, options in FAMILIES.items()}
    print(json.dumps({str(device): rates}, indent=1))


if __name__ == "__main__":
    main()
