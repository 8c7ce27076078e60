"""Briefly trained benchmark models, cached under ``benchmarks/.cache/``.

An untrained MNIST net is fooled by any ε, so PGD would stop at its random
start and the timings would say nothing. A few hundred Adam steps with
``invrob.train`` give nets with 85–95 % clean accuracy that PGD at ε = 0.1
fools only partly. Checkpoints live in ``benchmarks/.cache/`` (git-ignored);
a rerun loads them instead of training.
"""
from __future__ import annotations

from pathlib import Path

import torch

from invrob.models import build_model
from invrob.train import TrainConfig, train

CACHE = Path(__file__).resolve().parent / ".cache"


def trained_mnist_model(name: str, x_train: torch.Tensor, y_train: torch.Tensor, batches: int,
                        device: torch.device) -> torch.nn.Module:
    """``name`` trained for ``batches`` Adam steps of 64 MNIST images (cached), in eval mode."""
    config = TrainConfig(model=name, dataset="mnist", epochs=1, batch_size=64, optimizer="adam",
                         lr=3e-3, lr_schedule="constant", max_batches_per_epoch=batches, seed=0,
                         tag=f"bench{batches}")
    model, _ = train(config, x_train, y_train, checkpoint_dir=CACHE, device=device, progress=False)
    return model.eval()


def cifar_resnet(width: int, device: torch.device) -> torch.nn.Module:
    """An untrained CIFAR ResNet-18 of the given width (enough for timing)."""
    torch.manual_seed(0)
    return build_model("resnet18", "cifar10", width=width).to(device).eval()
