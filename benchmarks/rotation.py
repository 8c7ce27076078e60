"""Benchmark 3: accuracy under random rotations over a θ grid, batched vs per-image.

Both sides answer the same question with the same angles: image n of the test
set is rotated by ``u_n · θ`` (``u_n ~ U[-1, 1]``, drawn exactly as
``invrob.rotations.rotated_accuracy`` draws it from its seed) for every θ of
the grid, and the model classifies it; the accuracy per θ is the result.

- **ours**: ``rotated_accuracy(model, x, y, thetas, batch_size=1000)`` — the
  (θ, image) pairs are stacked, rotated by one ``grid_sample`` per 1,000
  rotated images and classified 1,000 at a time.
- **reference** — what a researcher would write with torchvision: for each θ,
  for each batch of 1,000 images, rotate every image by its own angle with
  ``torchvision.transforms.functional.rotate(img, angle, BILINEAR)`` (it takes
  one angle per call, so one call per image), stack, classify the batch.
  Same interpolation (bilinear, zero fill), same forward batch size.

The test set is processed in chunks of 1,000 images; for each chunk the two
sides run back to back, in alternating order, and each side's time is the sum
over chunks (fine-grained interleaving: a load spike hits both sides).
A second, smaller comparison times the rotations alone (no model).
"""
from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from invrob.metrics import eval_mode, model_device
from invrob.rotations import rotate, rotated_accuracy

from .common import Row, Side, fmt_bytes, measure, paired_spread


def _draws(n: int, seed: int) -> torch.Tensor:
    """The ``u`` of ``rotated_accuracy`` for ``n`` images and ``seed`` (float64, in [-1, 1))."""
    generator = torch.Generator().manual_seed(int(seed))
    return 2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0


@torch.no_grad()
def _reference_correct(model, x, y, thetas, u, batch_size: int) -> torch.Tensor:
    """(T,) number of correctly classified images per θ, torchvision per-image rotations."""
    device = model_device(model)
    correct = torch.zeros(len(thetas), dtype=torch.long)
    with eval_mode(model):
        for t, theta in enumerate(thetas):
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size].to(device)
                angles = (u[start:start + batch_size] * theta).tolist()
                rotated = torch.stack([TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR)
                                       for img, angle in zip(xb, angles)])
                pred = model(rotated).argmax(1)
                correct[t] += int((pred == y[start:start + batch_size].to(device)).sum())
    return correct


def run(model, x, y, thetas, chunk: int, device: torch.device, rotation_only_images: int) -> list[Row]:
    model.eval()
    thetas = [float(t) for t in thetas]
    n = len(x)
    ours, ref = Side(), Side()
    ours_correct = torch.zeros(len(thetas), dtype=torch.float64)
    ref_correct = torch.zeros(len(thetas), dtype=torch.long)
    # Warm-up, untimed.
    rotated_accuracy(model, x[:16], y[:16], thetas, batch_size=1000)
    _reference_correct(model, x[:16], y[:16], thetas, _draws(16, 0), 1000)
    for c, start in enumerate(range(0, n, chunk)):
        xc, yc = x[start:start + chunk], y[start:start + chunk]
        u = _draws(len(xc), seed=c)
        run_ours = lambda: rotated_accuracy(model, xc, yc, thetas, batch_size=1000, seed=c)
        run_ref = lambda: _reference_correct(model, xc, yc, thetas, u, 1000)
        for name in (("ours", "ref") if c % 2 == 0 else ("ref", "ours")):
            if name == "ours":
                frame = measure(run_ours, device, ours)
                ours_correct += torch.tensor(frame["accuracy"].tolist(), dtype=torch.float64) * len(xc)
            else:
                ref_correct += measure(run_ref, device, ref)
    acc_ours = ours_correct / n
    acc_ref = ref_correct.double() / n
    worst = float((acc_ours - acc_ref).abs().max())
    t_ours, t_ref = sum(ours.times), sum(ref.times)
    grid = f"θ ∈ {{{', '.join(f'{t:g}' for t in thetas)}}}" if len(thetas) <= 4 else \
        f"{len(thetas)} θ from {thetas[0]:g}° to {thetas[-1]:g}°"
    rows = [Row(
        benchmark="3. rotated accuracy", setting=(f"{getattr(model, 'name', 'model')}, {n:,} MNIST test "
                                                 f"images × {grid}; per-image TF.rotate loop as ref"),
        ours=t_ours, reference=t_ref, ratio=t_ref / t_ours, ratio_name="speed-up", goal="≥ 5.00",
        spread=paired_spread(ref.times, ours.times),
        met=t_ref / t_ours >= 5.0,
        agreement=(f"max over θ |Δacc| = {100 * worst:.3f}% ≤ 0.1 "
                   f"(acc at θ={thetas[-1]:g}: {100 * acc_ours[-1]:.2f}% vs {100 * acc_ref[-1]:.2f}%)"),
        agree_ok=worst <= 0.001, memory=f"{fmt_bytes(ours.peak)} / {fmt_bytes(ref.peak)}")]
    rows.append(_rotation_only(x[:rotation_only_images], thetas, device))
    return rows


def _rotation_only(x, thetas, device) -> Row:
    """The rotations alone: one ``rotate`` per 1,000 stacked images vs one TF.rotate per image."""
    x = x.to(device)
    n, t_count = len(x), len(thetas)
    u = _draws(n, seed=0).to(device)
    angles = (torch.tensor(thetas, dtype=torch.float64, device=device)[:, None] * u[None]).reshape(-1)
    stack = x.repeat(t_count, 1, 1, 1)          # θ-major, like rotated_accuracy's stacks
    angle_list = angles.tolist()

    def ours():
        return torch.cat([rotate(stack[i:i + 1000], angles[i:i + 1000]) for i in range(0, len(stack), 1000)])

    def ref():
        return torch.stack([TF.rotate(img, a, interpolation=InterpolationMode.BILINEAR)
                            for img, a in zip(stack, angle_list)])

    rotate(stack[:8], angles[:8])  # warm-up, untimed
    TF.rotate(stack[0], 1.0, interpolation=InterpolationMode.BILINEAR)
    s_ours, s_ref = Side(), Side()
    for name in ("ours", "ref", "ref", "ours"):
        measure(ours if name == "ours" else ref, device, s_ours if name == "ours" else s_ref)
    diff = float((s_ours.output - s_ref.output).abs().max())
    ratio = s_ref.time / s_ours.time
    return Row(benchmark="3. rotated accuracy", setting=(f"rotations only (no model): {n:,} images × "
                                                         f"{t_count} θ = {n * t_count:,} rotations"),
               ours=s_ours.time, reference=s_ref.time, ratio=ratio, ratio_name="speed-up",
               spread=paired_spread(s_ref.times, s_ours.times),
               goal="(report)", met=None, agreement=f"max |Δpixel| = {diff:.1e} ≤ 1e-4",
               agree_ok=diff <= 1e-4, memory=f"{fmt_bytes(s_ours.peak)} / {fmt_bytes(s_ref.peak)}")
