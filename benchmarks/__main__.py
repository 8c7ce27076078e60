"""``python -m benchmarks [--quick] [--device cpu|cuda] [--threads N] [--reps R] [--out PATH]``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .common import Row, fmt_seconds, memory_method

HERE = Path(__file__).resolve().parent
SECTIONS = ("pgd", "rotation", "grid", "spatial", "stacked", "fastat", "parallel")
# Benchmark 7 (stacked training) trains 4 × 2M small models per rep, and benchmark 8 (fast
# adversarial training) four Wong nets for 6 epochs on all of MNIST: minutes on a CPU each, so
# both are opt-in, with --only stacked fastat (make bench runs them); so is benchmark 9 (training
# side by side, minutes of training too).
DEFAULT_SECTIONS = ("pgd", "rotation", "grid", "spatial")
# One intra-op thread on CPU by default. What is measured are ratios of two sides run
# on the same thread count, and on a machine whose cores are shared (CI runners, a
# laptop doing other work) an OpenMP team of several threads stalls at every barrier
# whenever one of its threads is descheduled: a 2-thread GCNN fwd+bwd measured here
# swung between 0.14 s and 0.79 s from one call to the next, a 1-thread one stayed
# within 0.16–0.22 s. Pass --threads N on a dedicated machine.
DEFAULT_CPU_THREADS = 1


@dataclass(frozen=True)
class Sizes:
    """Everything that sets the cost of a run."""

    train_batches: int = 200
    pgd_batch: int = 128
    pgd_steps: int = 40
    pgd_models: tuple = (("lenet", 0.1), ("stdcnn", 0.03), ("gcnn_p4", 0.03))   # (model, ε)
    resnet_width: int = 16
    resnet_batch: int = 32
    resnet_steps: int = 10
    # The untrained ResNet's logits are nearly constant (one class everywhere):
    # 8/255 flips none of them, 0.1 about four in five — an attack with work to do.
    resnet_eps: float = 0.1
    rot_images: int = 10_000
    rot_chunk: int = 1_000
    rot_thetas: tuple = tuple(float(t) for t in range(0, 181, 15))               # 13 angles
    rot_only_images: int = 1_000
    grid_points: int = 100
    spatial_points: int = 200   # as the trade-off chapter's cpu profile
    grid_steps: int = 40
    eps_grid: tuple = (0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3)               # 8 values
    stack_models: tuple = ("wong", "stdcnn")
    stack_members: int = 5
    stack_batches: int = 24     # timed Adam steps of 128 images per member
    stack_check_batches: int = 3  # float64 steps of the agreement check
    stack_pgd_steps: int = 5
    fastat_eps: tuple = (0.1, 0.3)
    fastat_train: int | None = None   # None: all 60k training images
    fastat_epochs: int = 6            # the book's cpu recipe
    fastat_points: int = 200
    # (model, recipe of benchmarks.parallel.recipes, Adam steps per run): the book's two workhorses
    parallel_cases: tuple = (("wong", "PGD-5 ε=0.1", 100), ("stdcnn", "natural", 400))
    parallel_runs: int = 4
    reps: int = 5           # timed runs per side (median) for the PGD comparisons
    heavy_reps: int = 3     # ... for the costly ones (GCNN, ε grid, minimal perturbation)


FULL = Sizes()
QUICK = Sizes(train_batches=30, pgd_batch=32, pgd_steps=5,
              pgd_models=(("lenet", 0.1), ("gcnn_p4", 0.03)), resnet_width=16, resnet_batch=8, resnet_eps=0.2,
              resnet_steps=3, rot_images=400, rot_chunk=200, rot_only_images=20, grid_points=32, spatial_points=32,
              grid_steps=5, stack_members=2, stack_batches=2, stack_check_batches=2, stack_pgd_steps=2,
              fastat_eps=(0.1,), fastat_train=1024, fastat_epochs=1, fastat_points=16,
              parallel_cases=(("wong", "natural", 2),), parallel_runs=2,
              reps=1, heavy_reps=1)


def parse_args(argv=None):
    from invrob.utils import default_device

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--device", default=str(default_device()),
                        help="torch device (default: invrob.utils.default_device())")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads; default 1 on CPU (see DEFAULT_CPU_THREADS), "
                             "torch's default on an accelerator")
    parser.add_argument("--reps", type=int, default=None, help="timed reps per side (median)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS))
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown output (default: benchmarks/results.md; "
                             "--quick: benchmarks/.cache/results-quick.md)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return parser.parse_args(argv)


def machine_info(device: torch.device) -> dict:
    import torchattacks
    import torchvision

    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torchattacks": torchattacks.__version__, "python": platform.python_version(),
            "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_avg_at_start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    return info


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], info: dict, sizes: Sizes, device, total: float, quick: bool) -> str:
    head = ["benchmark", "setting", "ours (s)", "reference (s)", "ratio", "goal", "met?",
            "agreement", "peak memory (ours / ref)"]
    lines = [f"# invrob benchmarks{' (--quick)' if quick else ''}", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f} ({r.ratio_name})"
        if r.ratio is not None and r.spread is not None and len(set(r.spread)) > 1:
            ratio += f" [{r.spread[0]:.2f}–{r.spread[1]:.2f}]"
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        agree = r.agreement if r.agree_ok is None else ("OK: " if r.agree_ok else "**FAIL**: ") + r.agreement
        lines.append("| " + " | ".join(_cell(c) for c in (
            r.benchmark, r.setting, fmt_seconds(r.ours), fmt_seconds(r.reference), ratio, r.goal,
            met, agree, r.memory)) + " |")
    lines += ["", "Notes:",
              f"- Timing: wall clock (device synchronised), each side the median of {sizes.reps} "
              f"timed runs ({sizes.heavy_reps} for the GCNN, ε-grid and minimal-perturbation rows); "
              "the sides of a comparison run interleaved in one process, the order "
              "alternating every rep (ABBA…), after an untimed warm-up. Ratios compare sides "
              "measured in the same run; absolute times vary with the machine's load.",
              "- ratio: `speed-up` = reference time ÷ ours (> 1: ours faster); "
              "`ours/ref` = ours ÷ reference (overheads: 1.00 = nothing beyond the model). "
              "[a–b]: the range of the ratio over paired reps (the two sides of one rep ran "
              "back to back) — the measurement noise; in rotated accuracy, over chunks.",
              f"- Threads: torch.set_num_threads({info['torch_threads']}) for every side "
              "(CPU default 1: see DEFAULT_CPU_THREADS in benchmarks/__main__.py).",
              f"- Peak memory: {memory_method(torch.device(device))}; max over a side's runs.",
              "- 1/2: torchattacks.PGD and invrob PGD share ε, α = 2.5ε/k, k and the batch; "
              "torchattacks keeps the last iterate, invrob the first fooling one (so its robust "
              "accuracy is ≤). CIFAR-size: untrained ResNet-18 on uniform random 3×32×32 "
              "inputs, labels = its own clean predictions.",
              "- 3: reference = for each θ and each batch of 1,000 images, one "
              "`torchvision.transforms.functional.rotate(img, u·θ, BILINEAR)` call per image "
              "(it takes one angle per call), stack, one forward of the batch; ours = "
              "`invrob.rotations.rotated_accuracy(batch_size=1000)`. Same angles u·θ on both "
              "sides. Times are summed over chunks of the test set, the two sides alternating "
              "per chunk.",
              "- 4: reference = one PGD run per ε (ε = 0: plain accuracy); ours = one "
              "`robust_accuracy` call for the whole grid.",
              "- 5: passes counted with a forward hook; the reference is the model's own cost "
              "for those passes (per-image fwd+bwd and fwd times measured at the same batch).",
              "- 6: the same grid on both sides; the speed-up grows with the share of points the "
              "grid fools (a point stops at its first fooling transformation), and is ~1 on a "
              "model that withstands the whole grid.",
              "- 7: both sides train the same M seeds of one recipe from scratch (Adam, batch 128, "
              "no checkpoints): `invrob.stacked.train_stacked` (one vmap-ed stack) vs `invrob.train.train` "
              "per seed; model-images/s = M × 128 × steps / s. Agreement: the same seeds trained both "
              "ways for a few steps in float64, max |Δ| over every weight and buffer.",
              "- 8: Wong et al.'s net trained with the book's cpu recipe, FGSM with a random start "
              "(α = 1.25ε) vs PGD-5; seconds per epoch from each run's history (median over epochs; "
              "the runs are minutes long and run one after the other); robust accuracy by AutoAttack's "
              "APGD-CE + APGD-T; the goal counts only at equal robust accuracy (within 2 points).",
              "- 9: both sides train the same runs (seeds 0…R−1, Adam, batch 128) from scratch into a fresh "
              "checkpoint folder through `invrob.experiments.train_all`: ours with one worker process per core "
              "(one thread each, their start included: what the cpu book does), the reference one run at a "
              "time with as many threads as cores (the exception to the one-thread rule above: it is what "
              "side by side replaces). Agreement: bit for bit the runs of one at a time with one thread.",
              f"- Total wall time of this run: {total:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from invrob.data import load_mnist
    from invrob.utils import atomic_write

    from . import fastat, grid, models, parallel, pgd, rotation, spatial, stacked

    started = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    if args.reps is not None:
        sizes = dataclasses.replace(sizes, reps=args.reps, heavy_reps=args.reps)
    device = torch.device(args.device)
    if args.threads is None:
        args.threads = DEFAULT_CPU_THREADS if device.type == "cpu" else torch.get_num_threads()
    torch.set_num_threads(args.threads)
    info = machine_info(device)
    log = lambda msg: print(f"[bench {time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr,
                            flush=True)

    x_test, y_test = load_mnist(train=False)
    need = ({name for name, _ in sizes.pgd_models} if "pgd" in args.only else set()) | \
        ({"lenet"} if set(args.only) & {"rotation", "grid", "spatial"} else set())
    trained = {}
    if need:
        x_train, y_train = load_mnist(train=True)
        for name in sorted(need):
            log(f"model {name} ({sizes.train_batches} training batches, cached)")
            trained[name] = models.trained_mnist_model(name, x_train, y_train, sizes.train_batches,
                                                       device)
        del x_train, y_train
    rows: list[Row] = []
    if "pgd" in args.only:
        cases = [pgd.PGDCase(f"{name} (MNIST)", trained[name], x_test[:sizes.pgd_batch],
                             y_test[:sizes.pgd_batch], eps, sizes.pgd_steps,
                             sizes.heavy_reps if name.startswith("gcnn") else sizes.reps)
                 for name, eps in sizes.pgd_models]
        resnet = models.cifar_resnet(sizes.resnet_width, device)
        x_r = torch.rand(sizes.resnet_batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y_r = resnet(x_r.to(device)).argmax(1).cpu()
        cases.append(pgd.PGDCase(f"resnet18 w{sizes.resnet_width} (CIFAR-size, random)", resnet, x_r,
                                 y_r, sizes.resnet_eps, sizes.resnet_steps, sizes.reps))
        for case in cases:
            log(f"PGD: {case.label}")
            rows += pgd.run_case(case, device)
    if "rotation" in args.only:
        log(f"rotated accuracy: {sizes.rot_images} images × {len(sizes.rot_thetas)} θ")
        rows += rotation.run(trained["lenet"], x_test[:sizes.rot_images], y_test[:sizes.rot_images],
                             sizes.rot_thetas, sizes.rot_chunk, device, sizes.rot_only_images)
    if "grid" in args.only:
        xg, yg = x_test[:sizes.grid_points], y_test[:sizes.grid_points]
        log(f"robust accuracy over {len(sizes.eps_grid)} ε, N={len(xg)}")
        grid_rows, grid_acc = grid.run_grid(trained["lenet"], xg, yg, list(sizes.eps_grid),
                                            sizes.grid_steps, sizes.heavy_reps, device)
        rows += grid_rows
        log("minimal perturbation")
        rows += grid.run_minimal(trained["lenet"], xg, yg, list(sizes.eps_grid), grid_acc,
                                 sizes.heavy_reps, device, quick=args.quick)
    if "spatial" in args.only:
        log(f"spatial grid accuracy, N={sizes.spatial_points}")
        rows += spatial.run(trained["lenet"], x_test[:sizes.spatial_points], y_test[:sizes.spatial_points],
                            sizes.heavy_reps, device)

    if "stacked" in args.only:
        log(f"stacked training: {sizes.stack_members} × {', '.join(sizes.stack_models)}, "
            f"{sizes.stack_batches} steps")
        x_train, y_train = load_mnist(train=True)
        rows += stacked.run(x_train, y_train, sizes.stack_models, sizes.stack_members, sizes.stack_batches,
                            sizes.stack_check_batches, sizes.stack_pgd_steps, sizes.heavy_reps, device)

    if "fastat" in args.only:
        log(f"fast adversarial training: ε {', '.join(map(str, sizes.fastat_eps))}, "
            f"{sizes.fastat_epochs} epochs per side")
        x_train, y_train = load_mnist(train=True)
        n = sizes.fastat_train or len(x_train)
        rows += fastat.run(x_train[:n], y_train[:n], x_test, y_test, sizes.fastat_eps, sizes.fastat_epochs,
                           sizes.fastat_points, device)

    if "parallel" in args.only:
        log(f"side-by-side training: {sizes.parallel_runs} runs of each of {len(sizes.parallel_cases)} cases")
        x_train, y_train = load_mnist(train=True)
        for model, recipe, batches in sizes.parallel_cases:
            rows += parallel.run(x_train, y_train, [(model, recipe)], sizes.parallel_runs, batches, 5,
                                 sizes.heavy_reps)

    total = time.perf_counter() - started
    text = render(rows, info, sizes, device, total, args.quick)
    print(text)
    out = args.out or (models.CACHE / "results-quick.md" if args.quick else HERE / "results.md")
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if args.json is not None:
        payload = {"machine": info, "total_seconds": total, "quick": args.quick,
                   "rows": [r.as_dict() for r in rows]}
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=1),
                                                           encoding="utf-8"))
    log(f"done in {total:.0f} s; table written to {out}")
    failed = [r for r in rows if r.agree_ok is False]
    if failed:
        print(f"benchmarks: {len(failed)} agreement check(s) failed: "
              + "; ".join(f"{r.benchmark} [{r.setting}]" for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
