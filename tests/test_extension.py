"""Extending invrob the way CONTRIBUTING.md says: an attack, a model and a study, each added
as the files it lists, in a temporary copy of the package, then run through the smoke path.

The copy gets exactly what CONTRIBUTING's "add an attack / a model / a study" lists:

- an attack: ``invrob/attacks/<name>.py`` defining the class and ``ATTACKS = {name: cls}``;
- a model: ``invrob/models/<name>.py`` defining the builder and ``MODELS = {name: (datasets, builder)}``;
- a study: ``invrob/studies/<name>.py`` defining ``STUDY``, its notebook ``notebooks/NN_<name>.ipynb``,
  and its tables' lines in the reference folder's ``tolerances.yaml``.

Nothing else is edited. The study's notebook then runs with papermill at the smoke profile
(``invrob.tooling.runbook.run_all``, the smoke run's runner) in a kernel that imports the copy, and
its table passes the numeric regression check against a reference the study computes when
called directly (fresh models, no notebook): the notebook only calls the study.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

ATTACK = '''
"""Uniform noise in the ℓ∞ ball: an attack added as one file (tests/test_extension.py)."""
import torch

from .base import Attack


class UniformNoise(Attack):
    norm = "linf"

    def __init__(self, model, eps: float, seed: int = 0):
        super().__init__(model, eps)
        self.seed = seed

    def forward(self, x, y):
        generator = torch.Generator().manual_seed(self.seed)
        noise = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * self.eps
        return (x + noise.to(x.device)).clamp(0, 1)


ATTACKS = {"uniform-noise": UniformNoise}
'''

MODEL = '''
"""A linear classifier on the pixels: a model added as one file (tests/test_extension.py)."""
from torch import nn

from .normalize import Normalize, dataset_stats


def linear(dataset: str, width: int | None = None) -> nn.Module:
    return nn.Sequential(Normalize(*dataset_stats(dataset)), nn.Flatten(), nn.Linear(784, 10))


MODELS = {"linear": (("mnist",), linear)}
'''

STUDY = '''
"""Noise robustness of a linear model: a study added as one file (tests/test_extension.py)."""
from .base import PROFILES, Claim, Study, Table
from .rules import change_test, seed_arrays

NB = "98_noise"


def judge(tables):
    frame = tables["noise"]
    lo, hi = frame["eps"].min(), frame["eps"].max()
    return change_test(*seed_arrays(frame, "eps", lo, hi, "accuracy"), "decrease")


class NoiseStudy(Study):
    name = "noise"
    title = "Noise robustness"
    notebooks = (NB,)
    profile_settings = {p: dict(seeds=[0, 1], eps_grid=[0.0, 0.5], train_size=256, test_size=128)
                        for p in PROFILES}
    tables = (Table("noise", NB, ("model", "seed", "eps", "accuracy", "n")),)
    paper_claims = (Claim("uniform noise lowers accuracy", "(none: a test study)", "a paired change",
                          ("noise",), judge, key="noise lowers accuracy", kind="ours"),)

    def configs(self, settings, dataset="mnist"):
        from ..train import TrainConfig

        return [TrainConfig(model="linear", dataset=dataset, seed=s, epochs=1, batch_size=64, optimizer="adam",
                            lr=1e-2, lr_schedule="constant") for s in settings.seeds]

    def measure(self, settings, checkpoint_dir, data_root=None):
        import pandas as pd

        from .. import attacks, experiments as ex
        from ..metrics import accuracy

        x, y, xt, yt = ex.load_split("mnist", settings.train_size, settings.test_size, data_root)
        trained, _ = ex.train_all(self.configs(settings), x, y, checkpoint_dir, progress=False)
        rows = []
        for config, model in trained:
            for eps in settings.eps_grid:
                adv = attacks.build("uniform-noise", model, eps=eps)(xt, yt)
                rows.append(dict(model=config.model, seed=config.seed, eps=eps,
                                 accuracy=accuracy(model, adv, yt), n=len(yt)))
        return pd.DataFrame(rows)


STUDY = NoiseStudy()
'''

NOTEBOOK_CELLS = [
    ("markdown", [], "# Noise robustness (a study added by tests/test_extension.py)"),
    ("code", ["parameters"], 'profile = "smoke"\noutput_dir = None\ncheckpoint_dir = None\ndata_root = None'),
    ("code", [], textwrap.dedent('''\
        from invrob import experiments as ex, profiles, studies

        profiles.use_dtype(profile)
        S = profiles.settings("noise", profile)
        study = studies.get(S.study)
        out, ckpt = ex.study_dirs("98_noise", profile, output_dir, checkpoint_dir)
        noise = study.measure(S, ckpt, data_root)
        study.save("noise", noise, out)
        study.claims({"noise": noise})[["claim", "verdict"]]''')),
]

TOLERANCES = '''
accuracy: &accuracy
  points: 1
  reason: "an accuracy on n points moves in steps of 1/n"
tables:
  98_noise/noise:
    keys: [model, seed, eps]
    metrics: {accuracy: *accuracy}
ignored: {}
'''


def _notebook() -> dict:
    cells = [{"cell_type": kind, "id": f"cell-{i}", "metadata": {"tags": tags}, "source": source,
              **({"execution_count": None, "outputs": []} if kind == "code" else {})}
             for i, (kind, tags, source) in enumerate(NOTEBOOK_CELLS)]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A copy of the package with the three extensions, its study notebook run at smoke, and a
    reference table from the study called directly."""
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(REPO / "invrob", root / "invrob", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "invrob" / "attacks" / "uniform_noise.py").write_text(ATTACK)
    (root / "invrob" / "models" / "linear.py").write_text(MODEL)
    (root / "invrob" / "studies" / "noise.py").write_text(STUDY)
    (root / "notebooks").mkdir()
    (root / "notebooks" / "98_noise.ipynb").write_text(json.dumps(_notebook(), indent=1))
    reference = root / "tests" / "reference" / "smoke"
    reference.mkdir(parents=True)
    (reference / "tolerances.yaml").write_text(TOLERANCES)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "INVROB_DATA": os.environ.get("INVROB_DATA", str(REPO / "data"))}

    def python(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    python('''
        from pathlib import Path
        from invrob.tooling.runbook import run_all
        run_all("smoke", Path("executed"), Path("."), fresh=True, log=lambda line: None)
    ''')
    # the reference: the study's own computation, called directly (fresh models, no notebook); then,
    # in the same process (one import of the copy, not three), what the copy discovers and the
    # notebook's table checked against that reference
    facts = json.loads(python('''
        import json
        import pandas as pd
        import invrob
        from invrob import attacks, models, profiles, studies
        from invrob.tooling import regression
        from invrob.tooling.runbook import study_notebooks
        from invrob.utils import atomic_to_csv
        profiles.use_dtype("smoke")
        study = studies.get("noise")
        table = study.measure(profiles.settings("noise", "smoke"), "reference-checkpoints")
        atomic_to_csv(table, "tests/reference/smoke/98_noise/noise.csv")
        frame = studies.get("noise").check("noise", pd.read_csv("results/smoke/98_noise/noise.csv"))
        print(json.dumps(dict(
            file=invrob.__file__, attacks=attacks.attack_names(), models=models.model_names("mnist"),
            studies=list(studies.STUDIES), profiles=sorted(profiles.STUDIES),
            notebooks=[p.name for p in study_notebooks()],
            rows=len(frame), eps=sorted(set(frame["eps"])), acc=frame["accuracy"].tolist(),
            problems=regression.compare_results("results/smoke", "tests/reference/smoke"))))
    '''))
    return root, python, facts


def test_the_copy_imports_itself_not_the_checkout(extended):
    root, _, facts = extended
    assert facts["file"] == str(root / "invrob" / "__init__.py")


def test_added_attack_model_and_study_are_discovered(extended):
    _, _, found = extended
    assert "uniform-noise" in found["attacks"] and "pgd" in found["attacks"]
    assert "linear" in found["models"] and "wong" in found["models"]
    assert "noise" in found["studies"] and "invariance" in found["studies"] and "noise" in found["profiles"]
    assert found["notebooks"] == ["98_noise.ipynb"]


def test_added_study_runs_through_the_smoke_path(extended):
    root, python, report = extended
    executed = json.loads((root / "executed" / "98_noise.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "uniform noise lowers accuracy" in shown
    # the table the notebook saved passes its study's schema and the numeric regression check (the fixture ran it)
    assert report["rows"] == 4 and report["eps"] == [0.0, 0.5] and report["problems"] == []
    assert all(0.0 <= a <= 1.0 for a in report["acc"])
    # the check can fail: a moved number is reported against the reference folder given
    python('''
        import pandas as pd
        path = "results/smoke/98_noise/noise.csv"
        frame = pd.read_csv(path)
        frame.loc[0, "accuracy"] = frame.loc[0, "accuracy"] + 0.1
        frame.to_csv(path, index=False)
    ''')
    done = subprocess.run([sys.executable, "-m", "invrob.tooling.regression", "check", "results/smoke", "--reference",
                           "tests/reference/smoke"], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "98_noise/noise" in done.stdout and "accuracy" in done.stdout, done.stdout
