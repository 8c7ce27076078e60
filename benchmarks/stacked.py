"""Benchmark 7: M seeds of one recipe trained as one stack vs one at a time.

Per model (``wong``, ``stdcnn``) and recipe (natural; PGD-k adversarial training at ε = 0.1,
α = 2.5 ε / k), both sides train the same M configs (seeds 0…M−1) from scratch, for the
same ``batches`` Adam steps of 128 MNIST images each, with no checkpoints:
``invrob.stacked.train_stacked(configs)`` against ``[invrob.train.train(c) for c in configs]``.
Throughput = M × images per step × steps / seconds (model-images per second); the speed-up is
their ratio. Both sides warm up untimed on one batch first (vmap's first call).

Agreement: the same M configs, cut to ``check_batches`` steps, trained both ways in float64;
every weight and buffer of every member must agree within 1e-9 (the stack differs only in
the order grouped convolutions sum: observed ~1e-14).
"""
from __future__ import annotations

import torch

from invrob.stacked import train_stacked
from invrob.train import TrainConfig, train

from .common import Row, fmt_bytes, interleaved, paired_spread

BATCH = 128
EPS = 0.1
TOLERANCE = 1e-9   # float64, max |Δ| over every weight and buffer of every member


def recipes(steps: int) -> dict[str, dict]:
    return {"natural": {}, f"PGD-{steps} ε={EPS:g}": {"eps": EPS, "attack_steps": steps}}


def _configs(model: str, members: int, batches: int, **recipe) -> list[TrainConfig]:
    return [TrainConfig(model=model, epochs=1, batch_size=BATCH, optimizer="adam", lr=1e-3,
                        lr_schedule="constant", max_batches_per_epoch=batches, seed=seed, **recipe)
            for seed in range(members)]


def _max_difference(configs: list[TrainConfig], x, y, device) -> float:
    """Float64 training of ``configs`` both ways: max |stacked − sequential| over all weights."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x = x.double()
        together = train_stacked(configs, x, y, device=device, progress=False)
        alone = [train(c, x, y, device=device, progress=False) for c in configs]
    finally:
        torch.set_default_dtype(previous)
    return max((a.state_dict()[k].double() - b.state_dict()[k].double()).abs().max().item()
               for (a, _), (b, _) in zip(together, alone) for k in a.state_dict())


def run(x_train, y_train, models, members: int, batches: int, check_batches: int, steps: int,
        reps: int, device) -> list[Row]:
    x, y = x_train[:BATCH * batches], y_train[:BATCH * batches]
    rows = []
    for model in models:
        for name, recipe in recipes(steps).items():
            configs = _configs(model, members, batches, **recipe)
            warm = _configs(model, members, 1, **recipe)
            train_stacked(warm, x, y, device=device, progress=False)
            train(warm[0], x, y, device=device, progress=False)
            res = interleaved({"stacked": lambda: train_stacked(configs, x, y, device=device, progress=False),
                               "one at a time": lambda: [train(c, x, y, device=device, progress=False)
                                                         for c in configs]}, reps, device)
            diff = _max_difference(_configs(model, members, check_batches, **recipe), x, y, device)
            images = members * BATCH * batches
            ours, ref = res["stacked"], res["one at a time"]
            ratio = ref.time / ours.time
            rows.append(Row(
                benchmark="7. stacked training",
                setting=(f"{members} × {model}, {name}, {batches} Adam steps of {BATCH}: "
                         f"{images / ours.time:,.0f} vs {images / ref.time:,.0f} model-images/s; "
                         f"ours: train_stacked; ref: train, one config at a time"),
                ours=ours.time, reference=ref.time, ratio=ratio, ratio_name="speed-up",
                spread=paired_spread(ref.times, ours.times), goal="speed-up ≥ 2", met=ratio >= 2,
                agreement=(f"float64, {check_batches} steps: max |Δweight| = {diff:.1e} "
                           f"≤ {TOLERANCE:.0e}"),
                agree_ok=diff <= TOLERANCE, memory=f"{fmt_bytes(ours.peak)} / {fmt_bytes(ref.peak)}"))
    return rows
