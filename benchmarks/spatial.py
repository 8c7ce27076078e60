"""Benchmark 6: accuracy under Engstrom et al.'s grid of rotations × translations.

``SpatialGrid(model).survives(x, y)`` — which stops transforming a point once one
transformation fools the model — against the full (T, N) table
``SpatialGrid(model).correct_grid(x, y).all(0)`` (every transformation of every point),
on the default grid (31 rotations in ±30° × 5 × 5 shifts in ±3 px) and on its 31 rotations
alone. The speed-up depends
on the model: on one that most transformations fool (here a naturally trained LeNet) most
points stop early; on one that withstands the whole grid both sides do the same work.
Agreement: exactly the same points survive.
"""
from __future__ import annotations

import torch

from invrob.attacks import SpatialGrid

from .common import Row, fmt_bytes, interleaved, paired_spread


GRIDS = {"Engstrom grid": {}, "rotations ±30° only": {"translations": [0.0]}}


def run(model, x, y, reps: int, device) -> list[Row]:
    model.eval()
    x, y = x.to(device), y.to(device)
    return [_case(model, x, y, name, SpatialGrid(model, **kw), reps, device) for name, kw in GRIDS.items()]


def _case(model, x, y, name, grid, reps, device) -> Row:
    sides = {"ours": lambda: grid.survives(x, y), "full": lambda: grid.correct_grid(x, y).all(0)}
    grid.survives(x[:4], y[:4])  # warm-up
    res = interleaved(sides, reps, device)
    ours, full = res["ours"].output.cpu(), res["full"].output.cpu()
    same = torch.equal(ours, full)
    return Row(
        benchmark="6. spatial grid accuracy",
        setting=(f"{getattr(model, 'name', 'model')}, N={len(x)}, {name} ({grid.steps} transforms); "
                 f"ours: survives (stops at a point's first fooling transform); ref: the full table"),
        ours=res["ours"].time, reference=res["full"].time, ratio=res["full"].time / res["ours"].time,
        ratio_name="speed-up", spread=paired_spread(res["full"].times, res["ours"].times), goal="(report)",
        met=None,
        agreement=(f"the same surviving points: {'yes' if same else 'NO'} (grid accuracy "
                   f"{100 * ours.float().mean().item():.1f}% vs {100 * full.float().mean().item():.1f}%)"),
        agree_ok=same, memory=f"{fmt_bytes(res['ours'].peak)} / {fmt_bytes(res['full'].peak)}")
