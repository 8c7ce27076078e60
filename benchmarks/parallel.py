"""Benchmark 9: runs trained side by side, one process per core, vs one at a time with every core.

What the ``cpu`` book does (``invrob.profiles.use("cpu")``: :mod:`invrob.train.parallel`, one
worker per core, one thread each) against what it did before: ``invrob.train.train`` per run in
one process with as many intra-op threads as cores. Both sides train the same runs from scratch
into a fresh checkpoint folder (Adam, batch 128, ``batches`` steps of MNIST each, seeds
0…runs−1) through ``invrob.experiments.train_all``; ours includes starting the worker processes.

Agreement: the runs trained side by side equal, bit for bit, the same runs trained one at a
time with one thread (what makes the book's tables independent of the core count).
"""
from __future__ import annotations

import tempfile

import torch

from invrob import experiments as ex
from invrob.train import TrainConfig
from invrob.train.parallel import cpu_cores

from .common import Row, interleaved, paired_spread

BATCH = 128
GOAL = 1.3  # the ratio that pays for starting the workers on the book's 2 cores
WIDTHS = {"stdcnn": 16}  # the cpu book's StdCNN (invrob.studies.invariance)


def recipes(steps: int) -> dict[str, dict]:
    return {"natural": {}, f"PGD-{steps} ε=0.1": {"eps": 0.1, "attack_steps": steps}}


def _configs(model: str, runs: int, batches: int, **recipe) -> list[TrainConfig]:
    kwargs = {"width": WIDTHS[model]} if model in WIDTHS else {}
    return [TrainConfig(model=model, epochs=1, batch_size=BATCH, optimizer="adam", lr=1e-3, weight_decay=0.0,
                        lr_schedule="constant", max_batches_per_epoch=batches, seed=seed, device="cpu",
                        model_kwargs=kwargs, **recipe)
            for seed in range(runs)]


def _train(configs, x, y, workers: int, threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as folder:
            return ex.train_all(configs, x, y, folder, progress=False, workers=workers)[0]
    finally:
        torch.set_num_threads(before)


def _width(model: str) -> str:
    return f" (width {WIDTHS[model]})" if model in WIDTHS else ""


def run(x_train, y_train, cases, runs: int, batches: int, steps: int, reps: int) -> list[Row]:
    cores = cpu_cores()
    x, y = x_train[:BATCH * batches], y_train[:BATCH * batches]
    rows = []
    for model, name in cases:
        recipe = recipes(steps)[name]
        configs = _configs(model, runs, batches, **recipe)
        _train(_configs(model, 1, 1, **recipe), x, y, 1, cores)  # warm-up
        res = interleaved({"side by side": lambda: _train(configs, x, y, cores, 1),
                           "one at a time": lambda: _train(configs, x, y, 1, cores)}, reps, torch.device("cpu"))
        alone = _train(configs, x, y, 1, 1)
        same = all(torch.equal(a.state_dict()[k], b.state_dict()[k])
                   for (_, a), (_, b) in zip(res["side by side"].output, alone) for k in a.state_dict())
        ours, ref = res["side by side"], res["one at a time"]
        ratio = ref.time / ours.time
        images = runs * BATCH * batches
        rows.append(Row(
            benchmark="9. side-by-side training",
            setting=(f"{runs} × {model}{_width(model)}, {name}, {batches} Adam steps of {BATCH}: {images / ours.time:,.0f} vs "
                     f"{images / ref.time:,.0f} model-images/s; ours: train_all with {cores} workers of 1 thread "
                     f"(worker start included); ref: one run at a time with {cores} threads"),
            ours=ours.time, reference=ref.time, ratio=ratio, ratio_name="speed-up",
            spread=paired_spread(ref.times, ours.times), goal=f"speed-up ≥ {GOAL:g}", met=ratio >= GOAL,
            agreement=("bit for bit the runs of one at a time with 1 thread" if same else
                       "**differs** from one at a time with 1 thread"),
            agree_ok=same, memory="— (worker processes)"))
    return rows
