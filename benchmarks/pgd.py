"""Benchmarks 1 and 2: PGD ℓ∞ against torchattacks, and PGD's overhead over the model.

Per model, five things run interleaved on the same batch, ε, α = 2.5 ε / k and k:

- ``ours``        ``invrob.attacks.PGD`` as shipped (early stop on);
- ``ours-full``   the same with ``early_stop=False``: every sample takes all k steps;
- ``torchattacks`` ``torchattacks.PGD`` (last iterate, every sample all k steps);
- ``fb-input``    one forward + backward of the summed cross-entropy w.r.t. the
  input only, parameters frozen — exactly what one PGD step needs;
- ``fb-full``     one forward + backward with weight gradients too (``loss.backward()``).

The ``fb`` sides time a loop of ``r`` calls and report the time of one call.
Overhead = time(ours-full) / (k × time(fb-input)): 1.00 means the attack loop
(random start, sign step, projection, keeping the first fooling iterate, the
one extra forward for the last iterate) costs nothing beyond the model itself.
Agreement: robust accuracy of ours vs torchattacks within ``max(2 %, 4/B)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchattacks

from invrob.attacks import PGD
from invrob.metrics import accuracy

from .common import Row, agree_within, fmt_bytes, interleaved, paired_spread


@dataclass
class PGDCase:
    label: str               # "lenet (MNIST)"
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    eps: float
    steps: int
    reps: int = 3            # timed runs per side


def _fb_loop(model, x, y, reps: int, weights: bool):
    """``reps`` forward+backward passes; returns nothing (the time is what matters)."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(weights)
    try:
        for _ in range(reps):
            xa = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xa), y, reduction="sum")
            if weights:
                model.zero_grad(set_to_none=True)
                loss.backward()
            else:
                torch.autograd.grad(loss, xa)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.zero_grad(set_to_none=True)


def run_case(case: PGDCase, device: torch.device, fb_calls: int = 10) -> list[Row]:
    model, x, y, eps, k = case.model, case.x.to(device), case.y.to(device), case.eps, case.steps
    model.eval()
    alpha = 2.5 * eps / k
    fb_calls = min(fb_calls, k)
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=k, random_start=True)
    ours = PGD(model, eps, alpha=alpha, steps=k, generator=torch.Generator().manual_seed(0))
    ours_full = PGD(model, eps, alpha=alpha, steps=k, early_stop=False,
                    generator=torch.Generator().manual_seed(0))
    sides = {
        "ours": lambda: ours(x, y),
        "torchattacks": lambda: ta(x, y),
        "ours-full": lambda: ours_full(x, y),
        "fb-input": lambda: _fb_loop(model, x, y, fb_calls, weights=False),
        "fb-full": lambda: _fb_loop(model, x, y, fb_calls, weights=True),
    }
    # Warm-up (first-call allocations, e2cnn caches, thread pools) on a slice, untimed.
    PGD(model, eps, alpha=alpha, steps=2)(x[:8], y[:8])
    torchattacks.PGD(model, eps=eps, alpha=alpha, steps=2)(x[:8], y[:8])
    _fb_loop(model, x[:8], y[:8], 1, weights=True)
    torch.manual_seed(0)
    res = interleaved(sides, case.reps, device)

    clean = accuracy(model, x, y)
    acc = {name: accuracy(model, res[name].output, y) for name in ("ours", "ours-full", "torchattacks")}
    n = len(x)
    tol = max(0.02, 4.0 / n)
    t_fb, t_fbw = res["fb-input"].time / fb_calls, res["fb-full"].time / fb_calls
    setting = f"{case.label}, B={n}, k={k}, ε={eps:g}, α=2.5ε/k"
    mem = lambda a, b: f"{fmt_bytes(res[a].peak)} / {fmt_bytes(res[b].peak)}"
    nontrivial = acc["torchattacks"] < clean or clean == 0
    rows = []
    # The goal applies to PGD as shipped (early stop on). With early stop off both sides
    # do the same k fwd+bwd, so that row shows parity (± noise), the loop's own cost.
    for name, label, goal in (("ours", "early stop on (default)", True),
                              ("ours-full", "early stop off (same work as torchattacks)", False)):
        text, ok = agree_within(acc[name], acc["torchattacks"], tol, "robust acc")
        ratio = res["torchattacks"].time / res[name].time
        rows.append(Row(
            benchmark="1. PGD ℓ∞ vs torchattacks", setting=f"{setting}; ours: {label}",
            ours=res[name].time, reference=res["torchattacks"].time,
            ratio=ratio, ratio_name="speed-up",
            spread=paired_spread(res["torchattacks"].times, res[name].times),
            goal="≥ 1.00" if goal else "(report; ≈ 1)", met=(ratio >= 1.0) if goal else None,
            agreement=f"{text}; clean {100 * clean:.1f}%", agree_ok=ok and nontrivial,
            memory=mem(name, "torchattacks")))
    for ref, label, goal in (("fb-input", "k × fwd+bwd w.r.t. input (weights frozen)", True),
                             ("fb-full", "k × fwd+bwd incl. weight grads", False)):
        per_call = res[ref].time / fb_calls
        ratio = res["ours-full"].time / (k * per_call)
        rows.append(Row(
            benchmark="2. PGD overhead", setting=f"{setting}; ours: early stop off; ref: {label}",
            ours=res["ours-full"].time, reference=k * per_call, ratio=ratio, ratio_name="ours/ref",
            spread=paired_spread(res["ours-full"].times, res[ref].times, k / fb_calls),
            goal="≤ 1.10" if goal else "(report)", met=(ratio <= 1.10) if goal else None,
            agreement=(f"torchattacks/(k×fb-input) = "
                       f"{res['torchattacks'].time / (k * t_fb):.2f}" if goal else
                       f"fb-full/fb-input = {t_fbw / t_fb:.2f}"),
            agree_ok=None, memory=mem("ours-full", ref)))
    return rows
