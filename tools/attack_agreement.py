"""Is the book's cheap AutoAttack as strong as the standard ensemble on the book's own models?

Trains (or reloads from ``checkpoints/<profile>``) the first seed of each model family at
the ends of its grid — StdCNN and the p4 GCNN at the smallest and largest θ of the
invariance study, LeNet at the smallest and largest adversarial-training ε — with the
recipes of ``--profile`` (default ``cpu``), then attacks ``--points`` test points at each
of the study's budgets ε > 0 with

- the cheap attack the profile reports (``study.attack(S)``: at ``cpu`` AutoAttack's
  APGD-CE and APGD-T with 3 target classes), and
- the standard AutoAttack ensemble (APGD-CE, APGD-T with 9 targets, FAB-T, Square),

and writes ``results/<profile>/attack_agreement.csv`` (one row per model and ε: both robust
accuracies, their difference, points, seconds) and prints it. Run it where there is time
(a GPU: ``--device cuda``); the test suite checks the same on small models
(``tests/test_autoattack.py::test_cheap_autoattack_matches_the_standard_ensemble``).

    python tools/attack_agreement.py --profile cpu --points 1000 --device cuda
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from invrob import experiments as ex, profiles, studies
from invrob.attacks import robust_accuracy


def ends(study, S, which=("min", "max")) -> list:
    """Seed-0 configs at the ends (``which``) of every family's grid; for the trade-off study,
    seed 0 of each recipe that only it trains (rotation, worst-of-k, joint, CuSP: chapter 03
    has the natural and adversarial ones)."""
    configs = [c for c in study.configs(S) if c.seed == S.seeds[0]]
    if study.name == "tradeoff":
        from invrob.studies.tradeoff import ADVERSARIAL_ONLY
        return [c for c in configs if study.recipe_of(c) not in ADVERSARIAL_ONLY]
    picked = []
    for model in dict.fromkeys(c.model for c in configs):
        mine = [c for c in configs if c.model == model]
        key = (lambda c: c.theta) if study.name == "invariance" else (lambda c: c.eps)
        picked += [pick(mine, key=key) for pick in (min, max) if pick.__name__ in which]
    return picked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--studies", nargs="+", default=["invariance", "adversarial"])
    parser.add_argument("--ends", nargs="+", default=["min", "max"], help="grid ends to check: min, max")
    parser.add_argument("--out", default=None, help="CSV path (default results/<profile>/attack_agreement.csv)")
    args = parser.parse_args(argv)
    out = Path(args.out or Path("results") / args.profile / "attack_agreement.csv")
    out.parent.mkdir(parents=True, exist_ok=True)

    rows = []
    for name in args.studies:
        study = studies.get(name)
        S = profiles.settings(name, args.profile)
        x_train, y_train, x_test, y_test = ex.load_split("mnist", S.train_size, None)
        x, y = ex.subset(x_test, y_test, args.points, seed=3)
        configs = ends(study, S, args.ends)
        for config in configs:
            config.device = args.device  # where to run is not part of a run's identity
        trained, _ = ex.train_all(configs, x_train, y_train, Path("checkpoints") / args.profile, progress=False)
        for config, model in trained:
            device = next(model.parameters()).device
            if name == "tradeoff":
                budgets = [S.eps_attack]
            elif name == "invariance":
                budgets = [e for e in study.per_model(S.eps_grid, config.model) if e > 0]
            else:
                budgets = [e for e in S.eps_train if e > 0]
            xd, yd = x.to(device), y.to(device)
            for eps in budgets:
                cheap = study.attack(S)(model)
                t = time.perf_counter()
                a = robust_accuracy(model, xd, yd, [eps], attack=cheap, batch_size=len(x))["accuracy"].item()
                t_cheap = time.perf_counter() - t
                full = ex.autoattack()(model)
                t = time.perf_counter()
                b = robust_accuracy(model, xd, yd, [eps], attack=full, batch_size=len(x))["accuracy"].item()
                t_full = time.perf_counter() - t
                rows.append({"model": config.model, "recipe": study.recipe_of(config) if name == "tradeoff" else "",
                             "theta": config.theta, "eps_train": config.eps, "eps": eps,
                             "cheap": a, "standard": b, "cheap_minus_standard": a - b, "n": len(x),
                             "cheap_attack": cheap.name, "seconds_cheap": round(t_cheap, 1),
                             "seconds_standard": round(t_full, 1)})
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(out, index=False)  # kept row by row: a cut run keeps its rows
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(f"largest gap: {table['cheap_minus_standard'].max():.4f} ({len(x)} points) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
