"""Benchmarks 4 and 5: robust accuracy over an ε grid, and minimal perturbations.

4. ``robust_accuracy(model, x, y, grid, steps=k)`` — one call that stacks every
   (point, ε) pair into shared batches — against what one would otherwise
   write: one PGD run per ε of the grid (ε = 0 is a plain accuracy), with
   torchattacks and with ``invrob.attacks.pgd``. Same k, α = 2.5 ε / k.
   Agreement: the accuracy at every ε within ``max(2 %, 4/N)``.

5. ``minimal_perturbation(model, x, y, "linf")`` (bisection on ε, 10 bisection
   steps of 20-step PGD): time per 1,000 points and the number of model passes
   it needs, counted with a forward hook (a forward under autograd is one
   forward+backward pass; under ``no_grad`` a forward only). The reference is
   the model's own cost for that many passes (image passes × time per image of
   a fwd+bwd, resp. a forward, at the same batch), so the ratio is the
   bisection's overhead. Agreement: the share of points whose distance exceeds
   ε must match the robust accuracy of benchmark 4 at each ε (the same points,
   a different PGD budget) within ``max(6 %, 8/N)``.
"""
from __future__ import annotations

import torch
import torchattacks

from invrob.attacks import minimal_perturbation, pgd, robust_accuracy
from invrob.metrics import accuracy

from .common import Row, fmt_bytes, interleaved, paired_spread
from .pgd import _fb_loop


def run_grid(model, x, y, grid, steps: int, reps: int, device) -> tuple[list[Row], list[float]]:
    model.eval()
    x, y = x.to(device), y.to(device)
    n = len(x)

    def ours():
        return robust_accuracy(model, x, y, grid, steps=steps, seed=0)["accuracy"].tolist()

    def separate(attack):
        def go():
            out = []
            for e in grid:
                if e == 0:
                    out.append(accuracy(model, x, y))
                else:
                    out.append(accuracy(model, attack(e)(x, y), y))
            return out
        return go

    ta = separate(lambda e: torchattacks.PGD(model, eps=e, alpha=2.5 * e / steps, steps=steps))
    gen = torch.Generator()
    inv = separate(lambda e: (lambda xx, yy: pgd(model, xx, yy, e, steps=steps,
                                                   generator=gen.manual_seed(0))))
    robust_accuracy(model, x[:8], y[:8], grid[:2], steps=2)  # warm-up
    torch.manual_seed(0)
    res = interleaved({"ours": ours, "torchattacks": ta, "invrob": inv}, reps, device)
    acc_ours = res["ours"].output
    tol = max(0.02, 4.0 / n)
    rows = []
    for ref, label in (("torchattacks", f"{len(grid)} × torchattacks.PGD"),
                       ("invrob", f"{len(grid)} × invrob pgd")):
        diffs = [abs(a - b) for a, b in zip(acc_ours, res[ref].output)]
        worst = max(range(len(grid)), key=lambda i: diffs[i])
        ratio = res[ref].time / res["ours"].time
        rows.append(Row(
            benchmark="4. robust accuracy, ε grid",
            setting=(f"{getattr(model, 'name', 'model')}, N={n}, k={steps}, {len(grid)} ε in "
                     f"[{min(grid):g}, {max(grid):g}]; ours: one grid call; ref: {label}"),
            ours=res["ours"].time, reference=res[ref].time, ratio=ratio, ratio_name="speed-up",
            spread=paired_spread(res[ref].times, res["ours"].times), goal="(report)", met=None,
            agreement=(f"max over ε |Δacc| = {100 * diffs[worst]:.2f}% ≤ {100 * tol:.2f} "
                       f"(at ε={grid[worst]:g}: {100 * acc_ours[worst]:.1f}% vs "
                       f"{100 * res[ref].output[worst]:.1f}%)"),
            agree_ok=diffs[worst] <= tol + 1e-12,
            memory=f"{fmt_bytes(res['ours'].peak)} / {fmt_bytes(res[ref].peak)}"))
    return rows, acc_ours


class _PassCounter:
    """Forward hook counting model calls and images, split by whether autograd is on."""

    def __init__(self, model):
        self.counts = {"grad_calls": 0, "grad_images": 0, "fwd_calls": 0, "fwd_images": 0}
        self.handle = model.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        kind = "grad" if torch.is_grad_enabled() else "fwd"
        self.counts[f"{kind}_calls"] += 1
        self.counts[f"{kind}_images"] += len(inputs[0])

    def reset(self):
        for key in self.counts:
            self.counts[key] = 0


def run_minimal(model, x, y, grid, grid_acc, reps: int, device, quick: bool = False,
                fb_calls: int = 5) -> list[Row]:
    model.eval()
    x, y = x.to(device), y.to(device)
    n = len(x)
    minimal_perturbation(model, x[:8], y[:8], bisection_steps=1, steps=2)  # warm-up

    def fwd_loop():
        with torch.no_grad():
            for _ in range(fb_calls):
                model(x)

    # The library's defaults (10 bisection steps × 20-step PGD); --quick: a token budget.
    budget = dict(bisection_steps=6, steps=5) if quick else dict(bisection_steps=10, steps=20)
    counter = _PassCounter(model)
    try:
        counts = []

        def ours():
            counter.reset()
            out = minimal_perturbation(model, x, y, norm="linf", seed=0, **budget)
            counts.append(dict(counter.counts))
            return out

        res = interleaved({"ours": ours,
                           "fb": lambda: _fb_loop(model, x, y, fb_calls, weights=False),
                           "fwd": fwd_loop}, reps, device)
    finally:
        counter.handle.remove()
    c = counts[-1]
    per_fb = res["fb"].time / (fb_calls * n)     # seconds per image fwd+bwd at batch n
    per_fwd = res["fwd"].time / (fb_calls * n)
    model_cost = c["grad_images"] * per_fb + c["fwd_images"] * per_fwd
    scale = 1000.0 / n
    dist = res["ours"].output.cpu()
    share = [float((dist > e).double().mean()) for e in grid]
    diffs = [abs(a - b) for a, b in zip(share, grid_acc)]
    worst = max(range(len(grid)), key=lambda i: diffs[i])
    # Not the same attack (20-step PGD inside a bisection vs 40 steps at each ε), so
    # a looser bound: it catches a broken bisection (all 0, all inf, off by a grid step).
    tol = max(0.06, 8.0 / n)
    finite = dist[torch.isfinite(dist) & (dist > 0)]
    median = float(finite.median()) if len(finite) else float("nan")
    return [Row(
        benchmark="5. minimal perturbation",
        setting=(f"{getattr(model, 'name', 'model')}, ℓ∞, N={n} (times scaled to 1,000 points), "
                 f"{budget['bisection_steps']} bisection steps × {budget['steps']}-step PGD; "
                 f"per 1,000 points: "
                 f"{c['grad_images'] * scale:,.0f} fwd+bwd and {c['fwd_images'] * scale:,.0f} fwd "
                 f"image-passes in {c['grad_calls'] + c['fwd_calls']} batched calls; "
                 f"ref: model cost of those passes"),
        ours=res["ours"].time * scale, reference=model_cost * scale,
        ratio=res["ours"].time / model_cost, ratio_name="ours/ref", goal="(report)", met=None,
        agreement=(f"share(dist>ε) vs grid robust acc: max |Δ| = {100 * diffs[worst]:.1f}% ≤ "
                   f"{100 * tol:.1f} (ε={grid[worst]:g}); median dist {median:.3f}"),
        agree_ok=diffs[worst] <= tol + 1e-12,
        memory=f"{fmt_bytes(res['ours'].peak)} / —")]
