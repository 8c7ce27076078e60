"""invrob.studies: one home per study — tables, schemas and the paper's claims, judged once.

The chapters' closing cells and the verdict page both call ``Study.claims``; the
first test runs the real cells of the notebooks on one set of synthetic tables and
checks that they print the same verdicts. The rule tests build small synthetic
tables whose answer is known (deterministic NumPy generators, ≥ 5 seeds so the
bootstrap runs): a clear effect in the claimed direction agrees, the opposite
disagrees, a tiny effect buried in seed noise and a single seed are inconclusive.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invrob import stats, studies
from invrob.errors import InvrobError
from invrob.experiments import summarize_points

TAGS = ("model", "dataset", "theta", "eps_train", "seed")
from invrob.studies import adversarial, adversarial_tables, invariance
from invrob.studies.adversarial import COSINE_MARGIN, GAP_MARGIN
from test_tradeoff import accuracy as tradeoff_accuracy  # the trade-off study's hand-made table
from invrob.studies.render import bottom_line, markdown_table
from invrob.studies.rules import both, bootstrap_change, change_test, combine, paired_points, seed_arrays

REPO = Path(__file__).resolve().parent.parent
INV, ADV, TRADE = studies.get("invariance"), studies.get("adversarial"), studies.get("tradeoff")
SEEDS = (0, 1, 2, 3, 4)
ONE_SEED = (0,)


def claim_named(study, table: str) -> str:
    """The claim text of the (first) claim of ``study`` that needs ``table``."""
    return next(c.claim for c in study.paper_claims if table in c.needs)


IMPROVES = claim_named(INV, "invariance")
DROPS = claim_named(INV, "robust_points")
SHRINKS = claim_named(INV, "distances")
UNCHANGED = claim_named(ADV, "invariance")
SPATIAL = claim_named(ADV, "worst_of_k")
ORTHOGONAL = claim_named(ADV, "tangent_cosines")


# ---------------------------------------------------------------------- hand-made tables
def centred(gen, sd, n):
    """``n`` draws of N(0, ``sd``) minus their mean: seed noise that leaves the designed mean effect exact
    (so "a tiny effect buried in seed noise" is tiny in the sample too, not only in expectation)."""
    z = gen.normal(0, sd, n) if sd else np.zeros(n)
    return z - z.mean()


def tags(model, theta=0, eps_train=0.0, seed=0):
    return dict(model=model, dataset="mnist", theta=theta, eps_train=eps_train, seed=seed)


def rotated(at_max, noise=0.0, seeds=SEEDS, level="theta", phis=(0, 90, 180), clean=0.98, rng=0):
    """A rotated-accuracy table from ``{model: {θ (or ε): accuracy at the largest φ}}``.

    Accuracy falls linearly in φ from ``clean`` at φ = 0 to the given value at the
    largest φ, plus a seed offset (:func:`centred`, sd ``noise``) per model and level, scaled with φ.
    """
    gen = np.random.default_rng(rng)
    top = max(phis)
    rows = []
    for m, curve in at_max.items():
        for v, acc in curve.items():
            for s, offset in zip(seeds, centred(gen, noise, len(seeds))):
                rows += [{**tags(m, **{level: v}, seed=s), "phi": phi,
                          "accuracy": clean - (clean - acc - offset) * phi / top, "n": 1000} for phi in phis]
    return pd.DataFrame(rows)


def gap_table(growth=0.0, noise=0.0, seeds=SEEDS, phis=(0, 30, 90, 180), eps=(0.0, 0.1, 0.3), clean_drop=0.1,
              rng=0, model="lenet"):
    """The adversarial study's rotated-accuracy table with its gap (through :func:`add_gap`).

    At φ > 0 the *relative* gap 1 − acc(φ)/acc(0) is 0.5·φ/180 plus a per-seed offset shared
    by every ε (so seeds pair), scaled by 1 + ``growth``·(ε − ε_min)/(ε_max − ε_min): at the
    largest ε it is (1 + growth) times the natural model's at every φ, so the mean over φ > 0
    moves by exactly ``growth`` × the natural model's mean. Every (ε, φ) gets independent seed
    noise (:func:`centred`, sd ``noise``) on top. The clean accuracy is 0.97 − ``clean_drop``·ε.
    """
    gen = np.random.default_rng(rng)
    e_lo, e_hi = min(eps), max(eps)
    shared = gen.normal(0, 0.02, len(seeds))
    noises = {(e, phi): centred(gen, noise, len(seeds)) for e in eps for phi in phis}
    rows = []
    for i, s in enumerate(seeds):
        for e in eps:
            clean = 0.97 - clean_drop * e
            for phi in phis:
                rel = 0.0 if phi == 0 else ((0.5 * phi / 180 + shared[i]) * (1 + growth * (e - e_lo) / (e_hi - e_lo))
                                            + noises[e, phi][i])
                rows.append({**tags(model, eps_train=e, seed=s), "phi": phi, "accuracy": clean * (1 - rel),
                             "n": 1000})
    return adversarial.add_gap(pd.DataFrame(rows))


def robust_points(scales, noise=0.0, seeds=SEEDS, eps_grid=(0.0, 0.05, 0.1, 0.3), n_points=80,
                  model="stdcnn", rng=0, attack="APGD-CE+APGD-T"):
    """A per-point ``robust_points`` table from ``{θ: scale}``.

    Point i of seed s at θ is robust at ε iff u_i · scale · (1 + z) > ε, u_i ~ U(0, 1)
    shared by every θ and seed (the same test points: they pair), z the seed noise
    (:func:`centred`, sd ``noise``) per θ; 5% of the points are misclassified (robust at no ε, not even 0).
    With scale 0.17 the accuracy is ≈ 67% at ε = 0.05, 39% at 0.1 and 0 at 0.3.
    """
    gen = np.random.default_rng(rng)
    u = gen.uniform(0, 1, n_points)
    u[:: 20] = -1.0  # misclassified
    rows = []
    for theta, scale in scales.items():
        for s, z in zip(seeds, centred(gen, noise, len(seeds))):
            reach = u * scale * (1 + z)
            for e in eps_grid:
                robust = (reach > e) & (u >= 0)
                rows.append(pd.DataFrame({**tags(model, theta=theta, seed=s), "eps": e,
                                          "point": np.arange(n_points), "robust": robust.astype(int),
                                          "attack": attack}))
    return pd.concat(rows, ignore_index=True)


def distances(means, noise=0.0, seeds=SEEDS, n_points=40, model="stdcnn", rng=0, unbroken=0):
    """A per-point ``distances`` table from ``{θ: mean ℓ∞ distance}`` (ℓ2 distances 15× larger).

    Point i's distance is mean · 2u_i · (1 + z), u_i ~ U(0, 1), z the seed noise
    (:func:`centred`, sd ``noise``) per θ and norm; ``unbroken`` extra points per model at infinite distance.
    """
    gen = np.random.default_rng(rng)
    u = gen.uniform(0, 1, n_points)
    rows = []
    for theta, mean in means.items():
        z = {norm: centred(gen, noise, len(seeds)) for norm in ("linf", "l2")}
        for i, s in enumerate(seeds):
            for norm, factor in (("linf", 1.0), ("l2", 15.0)):
                d = mean * factor * 2 * u * (1 + z[norm][i])
                d = np.concatenate([d, np.full(unbroken, np.inf)])
                rows.append(pd.DataFrame({**tags(model, theta=theta, seed=s), "norm": norm,
                                          "point": np.arange(len(d)), "distance": d}))
    return pd.concat(rows, ignore_index=True)


def worst_table(at30, noise=0.0, seeds=SEEDS, phis=(0, 30, 90), k=13, model="lenet", rng=0, clean=None):
    """A ``worst_of_k`` table from ``{ε: worst-of-k accuracy at φ = 30 among the correctly classified points}``
    (+ seed noise, :func:`centred`, per ε); ``clean``: ``{ε: accuracy at φ = 0}`` (default 0.98 at every ε).

    The table holds accuracies over all points: clean × the given share at φ = 30. At the other
    φ > 0 the trend in ε is the opposite one (the rule must read φ = 30, or the smallest φ > 0
    when 30 is absent: ``phis`` puts the given values there).
    """
    gen = np.random.default_rng(rng)
    eps = list(at30)
    clean = {e: 0.98 for e in eps} if clean is None else clean
    reading = 30 if 30 in phis else min(p for p in phis if p > 0)
    rows = []
    for i, e in enumerate(eps):
        for s, z in zip(seeds, centred(gen, noise, len(seeds))):
            for phi in phis:
                share = 1.0 if phi == 0 else at30[e] + z if phi == reading else at30[eps[-1 - i]] - 0.3
                rows.append({**tags(model, eps_train=e, seed=s), "phi": phi, "k": k, "accuracy": clean[e] * share})
    return pd.DataFrame(rows)


def tangents(excess, seed_noise=0.0, point_noise=0.005, seeds=SEEDS, eps_train=(0.0, 0.1, 0.3), n_points=50,
             model="lenet", rng=0):
    """A ``tangent_cosines`` table: |cos(random corner, t)| ≈ 0.15 per point, |cos(δ_adv, t)| that plus
    ``excess``, plus seed noise (:func:`centred`, sd ``seed_noise``) and N(0, ``point_noise``) per row."""
    gen = np.random.default_rng(rng)
    random_sign = np.abs(gen.normal(0.15, 0.02, n_points))
    rows = []
    for s, z in zip(seeds, centred(gen, seed_noise, len(seeds))):
        for e in eps_train:
            adv = random_sign + excess + z + gen.normal(0, point_noise, n_points)
            rows.append(pd.DataFrame({**tags(model, eps_train=e, seed=s), "point": np.arange(n_points),
                                      "adversarial": np.abs(adv), "random_sign": random_sign,
                                      "matched_support": random_sign, "edge_sign": random_sign,
                                      "gradient": np.abs(gen.normal(0.1, 0.02, n_points))}))
    return pd.concat(rows, ignore_index=True)


COMPARISONS = {"adversarial vs rotation": 0.30, "translation vs rotation": 0.45, "image PCA vs rotation": 0.50,
               "adversarial vs rotation (data PCs removed)": 0.12,
               "translation vs rotation (data PCs removed)": 0.20, "support-random vs rotation": 0.25,
               "random vs random": 0.10, "adversarial vs adversarial": 0.85}


def subspace_cosines(ks=(1, 5, 10), seeds=SEEDS, eps_train=(0.0, 0.1, 0.3), model="lenet"):
    """A ``subspace_cosines`` table: each comparison's mean cosine as :data:`COMPARISONS` (every k, ε, seed)."""
    return pd.DataFrame([{**tags(model, eps_train=e, seed=s), "comparison": c, "k": k, "mean_cosine": v,
                          "max_cosine": min(1.0, 2 * v)}
                         for e in eps_train for s in seeds for c, v in COMPARISONS.items() for k in ks])


def directional(seeds=SEEDS, eps_train=(0.0, 0.1, 0.3), n_points=10, model="lenet", rng=0):
    gen = np.random.default_rng(rng)
    return pd.DataFrame([{**tags(model, eps_train=e, seed=s), "point": i,
                          "along_tangent": abs(gen.normal(0.5 / (1 + 10 * e), 0.05)),
                          "along_random": abs(gen.normal(0.5, 0.05)), "gradient_norm": 1.0}
                         for e in eps_train for s in seeds for i in range(n_points)])


def synthetic():
    """One consistent set of every table the chapters' closing cells and the verdict read.

    Shaped like a run at the cpu profile (its models, per-model θ grids and ε budgets,
    5 seeds, the whole φ grid). By construction: invariance improves for both models
    (agree); StdCNN's robustness drops but GCNN's change is buried in seed noise
    (inconclusive); the boundary distance shrinks for both models and norms (agree);
    the relative invariance gap grows by 30% at every φ (disagree); worst-of-k
    accuracy among the correctly classified points drops (agree); adversarial cosines
    equal the random corner's at every training ε (agree).
    """
    S1 = INV.settings("cpu", models=["stdcnn", "gcnn_p4"])  # both families (cpu's default trains no GCNN)
    S3 = ADV.settings("cpu", models=["lenet"])  # the hand-made tables name LeNet
    th = {m: invariance.per_model(S1.thetas, m) for m in S1.models}
    eps_grid = {m: invariance.per_model(S1.eps_grid, m) for m in S1.models}
    assert th == {"stdcnn": [0, 45, 90], "gcnn_p4": [0, 45]} and list(S1.seeds) == list(SEEDS)
    inv = rotated({"stdcnn": dict(zip(th["stdcnn"], [0.30, 0.60, 0.90])),
                   "gcnn_p4": dict(zip(th["gcnn_p4"], [0.50, 0.95]))}, noise=0.01, phis=S1.phis)
    points = pd.concat([
        robust_points(dict(zip(th["stdcnn"], [0.17, 0.145, 0.12])), noise=0.02, eps_grid=eps_grid["stdcnn"]),
        robust_points(dict(zip(th["gcnn_p4"], [0.10, 0.0995])), noise=0.15,
                      eps_grid=eps_grid["gcnn_p4"], model="gcnn_p4", rng=1)], ignore_index=True)
    rob = summarize_points(points)
    pgd = summarize_points(points.assign(robust=np.maximum(points["robust"], points["point"] % 7 == 0),
                                         attack="PGD-20"))
    dist = pd.concat([distances(dict(zip(th["stdcnn"], [0.12, 0.10, 0.08])), noise=0.02, unbroken=2),
                      distances(dict(zip(th["gcnn_p4"], [0.12, 0.09])), noise=0.02, model="gcnn_p4",
                                rng=1)], ignore_index=True)

    e3 = list(S3.eps_train)
    inv3 = gap_table(0.30, noise=0.003, phis=S3.phis, eps=e3)
    worst = worst_table(dict(zip(e3, [0.80, 0.70, 0.60, 0.50])), noise=0.01, k=S3.worst_k)
    points3 = robust_points(dict(zip(e3, [0.12, 0.2, 0.3, 0.4])), eps_grid=sorted(set(e3)), model="lenet")
    points3 = points3.drop(columns="eps_train").rename(columns={"theta": "eps_train"}).assign(theta=0)
    rob3 = summarize_points(points3)
    pgd3 = summarize_points(points3.assign(robust=np.maximum(points3["robust"], points3["point"] % 5 == 0),
                                           attack="PGD-20"))
    # the trade-off study (notebook 05): adversarial accuracy drops with θ, the Engstrom grid starts at its
    # floor, the rotation grid drops with ε, the joint recipe dominates CuSP, worst-case spatial training
    # costs ℓ∞ robustness and keeps clean accuracy
    trade = tradeoff_accuracy({
        "natural": dict(adversarial=0.40, spatial_grid=0.02, rotation_30=0.50, clean=0.99),
        "rotation 30°": dict(adversarial=0.30, spatial_grid=0.10),
        "rotation 180°": dict(adversarial=0.20, spatial_grid=0.30),
        "adversarial ε=0.1": dict(adversarial=0.55, spatial_grid=0.015, rotation_30=0.45),
        "adversarial ε=0.2": dict(adversarial=0.65, spatial_grid=0.01, rotation_30=0.40),
        "adversarial ε=0.3": dict(adversarial=0.70, spatial_grid=0.005, rotation_30=0.35),
        "joint 180°, ε=0.3": dict(adversarial=0.50, spatial_grid=0.40),
        "worst-of-10 spatial": dict(adversarial=0.20, spatial_grid=0.60, clean=0.97),
        "worst-of-10 + regulariser": dict(adversarial=0.25, spatial_grid=0.65, clean=0.985),
        "CuSP": dict(adversarial=0.45, spatial_grid=0.35, rotation_grid=0.60)}, noise=0.002)
    return dict(S1=S1, S3=S3, inv=inv, points=points, rob=rob, pgd1=pgd, dist=dist,
                inv3=inv3, worst=worst, rob3=rob3, pgd3=pgd3, trade=trade,
                tangents=tangents(0.0, seed_noise=0.003, eps_train=e3),
                geo=subspace_cosines(S3.pca_k, eps_train=e3), directional=directional(eps_train=e3))


def models_of(*frames, clean=0.995, autoattack=0.90, rotated=0.99):
    """A ``models`` table for every model the frames tag, every gate passed unless told otherwise."""
    tagged = pd.concat([f[[c for c in (*TAGS, "recipe") if c in f]] for f in frames], ignore_index=True)
    models = tagged.drop_duplicates().reset_index(drop=True)
    return models.assign(clean=clean, n_clean=10000, rotated=rotated, n_rotated=2000, autoattack=autoattack,
                         n_autoattack=100, spatial_drop=0.0, min_stage_epochs=3.0)


@pytest.fixture(scope="module")
def tables():
    t = synthetic()
    t.update(models1=models_of(t["inv"], t["points"]), models3=models_of(t["inv3"]),
             models5=models_of(t["trade"]))
    return t


# ---------------------------------------------------------------------- chapters vs verdict page
def notebook_cells(notebook: str, tag: str = "hide-input") -> list[str]:
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    return ["".join(c["source"]) for c in cells if tag in c.get("metadata", {}).get("tags", [])]


def closing_cell(notebook: str) -> str:
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    last = [c for c in cells if c["cell_type"] == "code"][-1]
    assert "study.claims(" in "".join(last["source"]), f"{notebook}'s last code cell judges no claim"
    return "".join(last["source"])


def run_cell(source: str, namespace: dict) -> str:
    """Execute a notebook cell; return the Markdown it displayed."""
    shown = []
    namespace.update(display=lambda obj: shown.append(getattr(obj, "data", str(obj))),
                     Markdown=type("Markdown", (), {"__init__": lambda self, data: setattr(self, "data", data)}))
    exec(compile(source, "<cell>", "exec"), namespace)
    return "\n".join(shown)


def chapter_verdicts(text: str) -> dict[str, str]:
    """``{claim: verdict}`` from a chapter's findings ("**agree** — claim. Measured: ...")."""
    return {claim: verdict for verdict, claim in
            re.findall(r"\*\*(agree|disagree|inconclusive)\*\* — (.+?)\. Measured:", text)}


def verdict_page_verdicts(text: str) -> dict[str, str]:
    """``{claim: verdict}`` from the verdict page's claim tables (claim first, bold verdict last; a claim's rows
    in the table and in its rules' fold must agree)."""
    found = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # unescaped pipes only
        if len(cells) in (3, 4, 5) and cells[0] != "claim" and cells[-1].startswith("**"):
            assert found.get(cells[0], cells[-1].strip("*")) == cells[-1].strip("*"), cells[0]  # tables agree
            found[cells[0]] = cells[-1].strip("*")
    return found


CERT = studies.get("certified")


def certified_tables() -> dict:
    """Chapter 07's tables from its own test file's synthetic run (every claim agrees there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_certified_tables", REPO / "tests" / "test_certified_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._all_tables()


def trade_points(trade, n=400):
    """Chapter 05's ``robust_points`` for an accuracy table: per seed, ``round(adversarial · n)`` of n points robust."""
    rows = []
    for r in trade.to_dict("records"):
        k = int(round(r["adversarial"] * n))
        rows += [{**{c: r[c] for c in ("model", "dataset", "theta", "eps_train", "seed", "recipe")},
                  "eps": r.get("eps_attack", 0.1), "point": i, "robust": int(i < k), "attack": "AutoAttack"}
                 for i in range(n)]
    return pd.DataFrame(rows)


def test_chapters_and_verdict_page_give_the_same_verdicts(tables, tmp_path):
    from invrob import plots

    t = tables
    points5 = trade_points(t["trade"])
    common = dict(plots=plots, studies=studies, profile="cpu")
    chapters = {}
    chapters.update(chapter_verdicts(run_cell(closing_cell("01_invariance_vs_robustness"), dict(
        common, study=INV, S=t["S1"], invariance=t["inv"], robustness=t["rob"], robust_points=t["points"],
        pgd=t["pgd1"], models=t["models1"]))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("02_decision_boundary_distance"),
                                              dict(common, study=INV, distances=t["dist"]))))
    text3 = run_cell(closing_cell("03_robustness_vs_invariance"), dict(
        common, study=ADV, S=t["S3"], invariance=t["inv3"], worst=t["worst"], robustness=t["rob3"],
        pgd=t["pgd3"], models=t["models3"]))
    chapters.update(chapter_verdicts(text3))
    chapters.update(chapter_verdicts(run_cell(closing_cell("04_perturbation_geometry"), dict(
        common, study=ADV, S=t["S3"], geometry=t["geo"], tangents=t["tangents"], directional=t["directional"]))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("05_tradeoff"), dict(
        common, study=TRADE, accuracy=t["trade"], robust_points=points5, models=t["models5"]))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("07_how_invariant"), dict(
        common, study=CERT, **certified_tables()))))

    # the tables as the notebooks write them, read back by the verdict page's own cells
    for study, name, frame in [(INV, "invariance", t["inv"]), (INV, "robust_points", t["points"]),
                               (INV, "robustness", t["rob"]), (INV, "distances", t["dist"]),
                               (ADV, "invariance", t["inv3"]), (ADV, "worst_of_k", t["worst"]),
                               (ADV, "subspace_cosines", t["geo"]), (ADV, "tangent_cosines", t["tangents"]),
                               (TRADE, "accuracy", t["trade"]), (TRADE, "robust_points", points5),
                               (INV, "models", t["models1"]),
                               (ADV, "models", t["models3"]), (TRADE, "models", t["models5"]),
                               *((CERT, name, frame) for name, frame in certified_tables().items())]:
        (tmp_path / study.table(name).notebook).mkdir(exist_ok=True)
        study.save(name, frame, tmp_path / study.table(name).notebook)
    page = notebook_cells("06_verdict")
    assert len(page) == 7 and "read_all" in page[0] and "claim_sections" in page[1] and "gate_sections" in page[6]
    assert "rule_history" in page[2] and "across_runs" in page[3] and "per_phi" in page[4] and "power" in page[5]
    namespace = dict(profile="cpu", results_root=str(tmp_path))
    text = "\n".join(run_cell(cell, namespace) for cell in page)

    expected = {**{c.claim: "agree" for c in CERT.paper_claims},  # tests/test_certified_study.py's tables
                IMPROVES: "agree",
                DROPS: "inconclusive",  # StdCNN drops, GCNN's change is buried in seed noise
                SHRINKS: "agree",
                UNCHANGED: "disagree",  # the relative gap grows by 30%
                SPATIAL: "agree",
                ORTHOGONAL: "agree",
                **dict(zip((c.claim for c in TRADE.paper_claims),
                           ["agree", "inconclusive", "agree", "disagree", "agree", "agree", "agree"]))}
    assert chapters == expected
    assert verdict_page_verdicts(text) == expected
    assert ("11 of 15 claim rows agree, 2 disagree, 2 are inconclusive at the cpu profile (and 1 post-hoc row, "
            "exploratory, not counted)." in text)
    assert studies.STATS_RULE in text and studies.COMBINE_RULE in text and studies.GATE_RULE in text
    assert "**below gate**" not in text and text.count("**pass**") == sum(len(s.gate_table(m)) for s, m in (
        (INV, t["models1"]), (ADV, t["models3"]), (TRADE, t["models5"]), (CERT, certified_tables()["models"])))
    assert set(written_gates(tmp_path)) == {"pass"}
    assert "the gap grows: invariance drops (arXiv v1)" in text3
    written = pd.read_csv(tmp_path / "verdict.csv")
    assert list(written.columns) == list(studies.CLAIM_COLUMNS)
    assert dict(zip(written["claim"], written["verdict"])) == expected
    assert set(written["rule"]) == {c.rule for s in studies.all_studies() for c in s.paper_claims}


def written_gates(root):
    return pd.read_csv(root / "verdict.csv")["gates"].tolist()


def test_a_model_below_its_gate_makes_every_claim_reading_it_inconclusive(tables):
    t = tables
    models = t["models3"].copy()
    top = models["eps_train"].max()
    weak = models["eps_train"] == top
    models.loc[weak, "autoattack"] = 0.50  # the largest ε's models 50% under AutoAttack: below 78.5%
    rows = ADV.claims({"invariance": t["inv3"], "worst_of_k": t["worst"], "models": models}).set_index("claim")
    assert set(rows["verdict"]) == {"inconclusive"}
    for claim in (UNCHANGED, SPATIAL):
        assert rows.loc[claim, "measured"].startswith(f"models below gate (LeNet, ε = {top:g}: AutoAttack accuracy "
                                                      f"at its own training ε ≥ 78.5% (50.0%))")
        assert rows.loc[claim, "gates"].startswith(f"below gate: LeNet, ε = {top:g}")
    assert "the rule alone would say disagree" in rows.loc[UNCHANGED, "measured"]
    assert "the rule alone would say agree" in rows.loc[SPATIAL, "measured"]
    # the gate table says which family failed, and by how much over the seeds
    gate = ADV.gate_table(models).set_index(["eps_train", "gate"])
    assert not gate.loc[(top, "adversarial: AutoAttack"), "passed"] and gate.loc[(0.1, "adversarial: AutoAttack"), "passed"]
    assert gate.loc[(top, "adversarial: AutoAttack"), "value"] == pytest.approx(0.5)
    # without a models table the rule alone decides, and the row says the gates were not checked
    rows = ADV.claims({"invariance": t["inv3"], "worst_of_k": t["worst"]}).set_index("claim")
    assert rows.loc[UNCHANGED, "verdict"] == "disagree"
    assert rows.loc[UNCHANGED, "gates"] == "not checked (no models table)"


def test_a_claim_is_gated_only_by_the_models_it_reads(tables):
    models = tables["models5"].copy()
    models.loc[models["recipe"] == "CuSP", "min_stage_epochs"] = 1.0  # a one-epoch curriculum stage
    rows = TRADE.claims({"accuracy": tables["trade"], "models": models}).set_index("claim")
    cusp = [c.claim for c in TRADE.paper_claims if "CuSP" in c.claim]
    assert all(rows.loc[c, "verdict"] == "inconclusive" and "CuSP: epochs of its shortest curriculum stage ≥ 2 (1)"
               in rows.loc[c, "measured"] for c in cusp)
    others = rows.drop(index=cusp)
    assert set(others["gates"]) == {"pass"}  # the rotation, ε and worst-case rows read no CuSP model


def test_verdict_page_names_the_missing_table_and_its_notebook(tables, tmp_path):
    nb1, nb3 = tmp_path / "01_invariance_vs_robustness", tmp_path / "03_robustness_vs_invariance"
    nb1.mkdir(), nb3.mkdir()
    for name, frame in [("invariance", tables["inv"]), ("robust_points", tables["points"]),
                        ("robustness", tables["rob"]), ("models", tables["models1"])]:
        INV.save(name, frame, nb1)
    with pytest.raises(InvrobError, match=r"distances\.csv is missing: run "
                                          r"notebooks/02_decision_boundary_distance\.ipynb") as error:
        INV.read_tables(tmp_path)
    assert "\n" not in str(error.value)

    ADV.save("invariance", tables["inv3"], nb3)
    ADV.save("models", tables["models3"], nb3)
    (tmp_path / "04_perturbation_geometry").mkdir()
    ADV.save("tangent_cosines", tables["tangents"], tmp_path / "04_perturbation_geometry")
    with pytest.raises(InvrobError, match=r"worst_of_k\.csv is missing: run notebooks/03_robustness_vs_invariance"):
        ADV.read_tables(tmp_path)
    # subspace_cosines only strengthens a claim (Claim.uses): its absence is no error …
    ADV.save("worst_of_k", tables["worst"], nb3)
    read = ADV.read_tables(tmp_path)
    assert set(read) == {"invariance", "worst_of_k", "tangent_cosines", "models"}
    assert len(ADV.claims(read)) == 3
    # … unless it is asked for by name
    with pytest.raises(InvrobError, match=r"subspace_cosines\.csv is missing: run notebooks/04_perturbation"):
        ADV.read_tables(tmp_path, ["subspace_cosines"])


def test_verdict_page_states_the_statistics_and_the_bottom_line():
    """The verdict page's scorecard cell renders STATS_RULE, COMBINE_RULE and the bottom line under the tables."""
    rows = pd.DataFrame([dict(study=s.name, claim=c.claim, paper=c.paper, measured="m", rule=c.rule,
                              verdict=v) for s in studies.all_studies()
                         for c, v in zip(s.paper_claims, ["agree", "disagree", "inconclusive"])])
    text = run_cell(notebook_cells("06_verdict")[1], dict(verdict=rows, profile="paper", studies=studies,
                                                          scorecard=studies.scorecard))
    assert f"{studies.STATS_RULE} {studies.COMBINE_RULE}" in text
    assert "**Claim rows.** 4 of 12 claim rows agree, 4 disagree, 4 are inconclusive at the paper profile." in text
    assert verdict_page_verdicts(text) == dict(zip(rows["claim"], rows["verdict"]))
    assert "### Invariance → robustness (notebooks 01, 02)" in text


# ---------------------------------------------------------------------- each rule, known answers
def one(study, **tables):
    rows = study.claims(tables)
    assert len(rows) == 1
    return rows.iloc[0]


def one_under(study, options, **tables):
    """The one claim ``tables`` allow, judged by its rule alone under ``options`` (a history rule's)."""
    claim = next(c for c in study.paper_claims if all(n in tables for n in c.needs))
    measured, verdict = claim.judge_with(tables, {**claim.options, **options})
    return {"measured": measured, "verdict": verdict}


AVERAGED = {"per_phi": False}  # the ICLR row's 2026-11 rule: the relative gap averaged over φ


CURVES = {"clear": {0: 0.30, 90: 0.60, 180: 0.90}, "opposite": {0: 0.90, 90: 0.60, 180: 0.30},
          "tiny": {0: 0.500, 90: 0.501, 180: 0.502}}


@pytest.mark.parametrize("curve, noise, seeds, verdict", [
    ("clear", 0.01, SEEDS, "agree"),
    ("opposite", 0.01, SEEDS, "disagree"),
    ("tiny", 0.05, SEEDS, "inconclusive"),   # +0.2 points under seed noise of 5 points
    ("clear", 0.01, ONE_SEED, "inconclusive"),
])
def test_invariance_rule(curve, noise, seeds, verdict):
    row = one(INV, invariance=rotated({"stdcnn": CURVES[curve]}, noise=noise, seeds=seeds))
    assert row["verdict"] == verdict
    m = row["measured"]
    assert "StdCNN θ = 0° → 180°" in m and "φ = 180°" in m
    if len(seeds) > 1:
        assert "[90% CI" in m and "slope" in m and "5 seeds" in m
        if curve == "tiny":
            assert "50.0% → 50.2% (Δ +0.2% [90% CI" in m   # the effect is tiny in the sample too
    else:
        assert "1 seed: no interval" in m and "1 seed: no interval for the slope" in m


def test_claims_name_the_families_not_in_the_run():
    """The claims are about StdCNNs and GCNNs: a run without one (cpu trains no p4 GCNN) says so in
    each claim's text, and its verdict comes from the families it has."""
    from invrob.studies.invariance import not_in_run

    row = one(INV, invariance=rotated({"stdcnn": CURVES["clear"]}, noise=0.01))
    assert row["verdict"] == "agree" and row["measured"].endswith("GCNN (p4): not in this run")
    both_families = rotated({"stdcnn": CURVES["clear"], "gcnn_p4": CURVES["clear"]}, noise=0.01)
    assert not_in_run(both_families) == [] and "not in this run" not in one(INV, invariance=both_families)["measured"]
    # a grid that stops short of the paper's (cpu: θ ≤ 90°, where its recipe passes the rotation gate) says so too
    short = both_families[both_families["theta"] <= 90]
    assert not_in_run(short) == ["StdCNN θ > 90° (the paper's grid reaches 180°): not in this run"]
    assert one(INV, invariance=short)["measured"].endswith("not in this run")


def test_invariance_rule_needs_both_tests():
    """The ends rise (+2 points) but the curve between them falls: the paired change says "increase"
    (agree), the slope says "decrease" (disagree); the two tests contradict each other, and a
    claim needs both to agree — or both to disagree — so it is inconclusive."""
    rising_ends = {0: 0.60, 30: 0.95, 60: 0.90, 90: 0.80, 120: 0.70, 150: 0.60, 180: 0.62}
    row = one(INV, invariance=rotated({"stdcnn": rising_ends}, noise=0.005))
    assert row["verdict"] == "inconclusive"
    ends = re.search(r"60\.0% → 62\.0% \(Δ \+2\.0% \[90% CI \+(\d\.\d)%, \+\d\.\d%\], 5 seeds\); "
                     r"slope (-\d+\.\d)% per 45° \[90% CI -\d+\.\d%, (-\d+\.\d)%\]", row["measured"])
    assert ends, row["measured"]
    assert float(ends.group(1)) > 0 and float(ends.group(3)) < 0   # each test is significant, in opposite ways


def test_two_tests_combine_by_both():
    assert both("agree", "agree") == "agree"
    assert both("disagree", "disagree") == "disagree"
    for first, second in [("agree", "disagree"), ("disagree", "agree"), ("agree", "inconclusive"),
                          ("disagree", "inconclusive"), ("inconclusive", "inconclusive")]:
        assert both(first, second) == "inconclusive", (first, second)


SCALES = {"clear": {0: 0.17, 90: 0.145, 180: 0.12},     # robust accuracy drops as θ grows
          "opposite": {0: 0.12, 90: 0.145, 180: 0.17},
          "tiny": {0: 0.17, 90: 0.1695, 180: 0.169}}


def robustness_tables(points):
    return dict(robust_points=points, robustness=summarize_points(points))


@pytest.mark.parametrize("scales, noise, seeds, verdict", [
    ("clear", 0.02, SEEDS, "agree"),
    ("opposite", 0.02, SEEDS, "disagree"),
    ("tiny", 0.15, SEEDS, "inconclusive"),
    ("clear", 0.02, ONE_SEED, "inconclusive"),  # the paired test resamples points only; the slope has no interval
])
def test_robustness_rule(scales, noise, seeds, verdict):
    row = one(INV, **robustness_tables(robust_points(SCALES[scales], noise=noise, seeds=seeds)))
    assert row["verdict"] == verdict
    m = row["measured"]
    assert "StdCNN, APGD-CE+APGD-T at ε ∈ {0.05, 0.1}, θ = 0° → 180°" in m
    if len(seeds) > 1:
        assert "5 seeds × 80 points" in m
    else:
        assert "(points only: 1 seed)" in m and "1 seed: no interval for the slope" in m


@pytest.mark.parametrize("scales, extra, at_lo, at_hi, verdict", [
    # ε = 0.3 broken at θ = 0 (accuracy 0) but fully robust at θ = 180: read, it would turn the drop into a rise
    ("clear", 0.3, 0, 1, "agree"),
    # ε = 0.01 untouched at θ = 0 (accuracy 1) but broken at θ = 180: read, it would turn the rise into a drop
    ("opposite", 0.01, 1, 0, "disagree"),
])
def test_robustness_rule_reads_only_informative_budgets(scales, extra, at_lo, at_hi, verdict):
    base = robust_points(SCALES[scales], noise=0.02, eps_grid=(0.0, 0.05, 0.1))
    add = base[base["eps"] == 0.05].assign(eps=extra)
    add["robust"] = np.where(add["theta"] == 0, at_lo, np.where(add["theta"] == 180, at_hi, add["robust"]))
    points = pd.concat([base, add], ignore_index=True)
    assert invariance.informative_eps(summarize_points(points), "stdcnn") == [0.05, 0.1]

    without, with_extra = one(INV, **robustness_tables(base)), one(INV, **robustness_tables(points))
    assert without["verdict"] == with_extra["verdict"] == verdict
    assert "ε ∈ {0.05, 0.1}," in with_extra["measured"]
    # each informative budget's own ends stand beside the rule (seed means of the per-point accuracy)
    means = summarize_points(points).groupby(["eps", "theta"])["accuracy"].mean()
    shown = "; ".join(f"ε = {e:g} {means[(e, 0)]:.1%} → {means[(e, 180)]:.1%}" for e in (0.05, 0.1))
    assert f"(per ε, shown, not the rule: {shown})" in with_extra["measured"]
    assert f"ε = {extra:g} " not in with_extra["measured"]        # the uninformative budget is not shown either
    # the extra budget is strong enough to flip the paired test were it read with the others
    flipped = {"agree": "disagree", "disagree": "agree"}[verdict]
    assert change_test(*paired_points(points[points["eps"] > 0], "theta", 0, 180), "decrease")[1] == flipped


def test_robustness_rule_without_an_informative_budget_is_inconclusive():
    # θ = 0 accuracy ≈ 0.95 at ε = 0.001 (untouched) and 0 at ε = 0.3 (broken): nothing to read
    points = robust_points(SCALES["clear"], noise=0.02, eps_grid=(0.0, 0.001, 0.3))
    row = one(INV, **robustness_tables(points))
    assert row["verdict"] == "inconclusive" and "StdCNN: no informative ε" in row["measured"]


CHANGE = re.compile(r"\(Δ ([+-]\d+\.\d)% \[90% CI ([+-]\d+\.\d)%, ([+-]\d+\.\d)%\], 5 seeds × 80 points\)")


def test_robustness_rule_pairs_points():
    """The paired test reads robust_points point by point: relabelling the points of the θ = 180° models
    (the same permutation at every ε and seed) leaves every accuracy — the robustness table — as it
    was, and the estimate too, but breaks the pairing, and the interval widens."""
    points = robust_points(SCALES["clear"], noise=0.02)
    relabelled = points.copy()
    at_hi = relabelled["theta"] == 180
    relabelled.loc[at_hi, "point"] = np.random.default_rng(7).permutation(80)[relabelled.loc[at_hi, "point"]]
    summary = robustness_tables(points)["robustness"]
    pd.testing.assert_frame_equal(summary, robustness_tables(relabelled)["robustness"])

    paired, unpaired = (CHANGE.search(one(INV, **robustness_tables(p))["measured"]).groups()
                        for p in (points, relabelled))
    assert paired[0] == unpaired[0]   # the same Δ
    width = [float(hi) - float(lo) for _, lo, hi in (paired, unpaired)]
    assert width[1] > 1.5 * width[0]
    mean = summary[summary["eps"].isin([0.05, 0.1])].groupby("theta")["accuracy"].mean()
    assert f"{mean[0]:.1%} → {mean[180]:.1%}" in one(INV, **robustness_tables(points))["measured"]


DISTANCES = {"clear": {0: 0.12, 90: 0.10, 180: 0.08}, "opposite": {0: 0.08, 90: 0.10, 180: 0.12},
             "tiny": {0: 0.1000, 90: 0.0999, 180: 0.0998}}


@pytest.mark.parametrize("means, noise, seeds, verdict", [
    ("clear", 0.02, SEEDS, "agree"),
    ("opposite", 0.02, SEEDS, "disagree"),
    ("tiny", 0.15, SEEDS, "inconclusive"),
    ("clear", 0.02, ONE_SEED, "inconclusive"),
])
def test_distance_rule(means, noise, seeds, verdict):
    table = distances(DISTANCES[means], noise=noise, seeds=seeds)
    row = one(INV, distances=table)
    assert row["verdict"] == verdict
    m = row["measured"]
    for norm, name in (("linf", "ℓ∞"), ("l2", "ℓ2")):   # each seed's mean, then the mean over seeds
        at = table[table["norm"] == norm].groupby(["theta", "seed"])["distance"].mean().groupby("theta").mean()
        assert f"StdCNN {name}, θ = 0° → 180°: {at[0]:.3f} → {at[180]:.3f}" in m


def test_distance_rule_ignores_unbroken_points():
    finite = distances(DISTANCES["clear"], noise=0.02)
    row = one(INV, distances=finite)
    with_inf = one(INV, distances=distances(DISTANCES["clear"], noise=0.02, unbroken=5))
    assert with_inf["verdict"] == row["verdict"] == "agree"
    assert with_inf["measured"] == row["measured"]
    assert "inf" not in with_inf["measured"] and "nan" not in with_inf["measured"]


def test_distance_rule_judges_each_norm():
    """ℓ∞ shrinks, ℓ2 grows: one norm disagreeing makes the claim disagree."""
    linf = distances(DISTANCES["clear"], noise=0.02)
    l2 = distances(DISTANCES["opposite"], noise=0.02)
    table = pd.concat([linf[linf["norm"] == "linf"], l2[l2["norm"] == "l2"]], ignore_index=True)
    assert one(INV, distances=table)["verdict"] == "disagree"
    assert one(INV, distances=linf[linf["norm"] == "linf"])["verdict"] == "agree"


def natural_value(table) -> float:
    """The natural model's (smallest ε) mean relative gap over seeds, computed here from the table itself."""
    at = table[(table["phi"] > 0) & (table["eps_train"] == table["eps_train"].min())]
    return float((1 - at["accuracy"] / (at["accuracy"] + at["gap"])).mean())


GAP = re.compile(r"LeNet, ε = 0 → 0\.3: (\d\.\d{3}) → (\d\.\d{3}), Δ ([+-]\d\.\d{3}) \[90% CI ([+-]\d\.\d{3}), "
                 r"([+-]\d\.\d{3})\], margin ±(\d\.\d{3}), 5 seeds — ([^;]+); slope")


@pytest.mark.parametrize("growth, noise, seeds, verdict, reading", [
    (0.30, 0.003, SEEDS, "disagree", "the gap grows: invariance drops (arXiv v1)"),      # 30% more at every φ
    (-0.30, 0.003, SEEDS, "disagree", "the gap shrinks: more invariant (neither version)"),
    (0.03, 0.003, SEEDS, "agree", "unchanged (ICLR 2020)"),                          # well inside ±10%
    (-0.03, 0.003, SEEDS, "agree", "unchanged (ICLR 2020)"),
    (GAP_MARGIN, 0.003, SEEDS, "inconclusive", "the interval straddles the margin"),  # exactly at the margin
    (0.0, 0.04, SEEDS, "inconclusive", "the interval straddles the margin"),          # no change, noise of 4 points
    (0.0, 0.003, ONE_SEED, "inconclusive", None),
])
def test_gap_rule(growth, noise, seeds, verdict, reading):
    """The averaged form of the ICLR rule (now a history rule, shown beside the per-φ one)."""
    table = gap_table(growth, noise=noise, seeds=seeds)
    row = one_under(ADV, AVERAGED, invariance=table)
    assert row["verdict"] == verdict
    m = row["measured"]
    assert m.startswith("relative invariance gap 1 − acc(φ)/acc(0), averaged over φ > 0")
    if len(seeds) == 1:
        assert "LeNet: fewer than 2 seeds, no interval" in m
        return
    found = GAP.search(m)
    assert found, m
    at_lo, at_hi, delta, low, high, margin = (float(v) for v in found.groups()[:6])
    natural = natural_value(table)
    assert abs(at_lo - natural) < 1e-3 and abs(margin - GAP_MARGIN * natural) < 1e-3   # relative margin
    assert abs(delta - growth * natural) < 1e-3                 # the designed change, exact in the sample
    assert low <= delta <= high and found.group(7) == reading
    assert {"agree": -margin < low and high < margin, "disagree": low > margin or high < -margin,
            "inconclusive": low <= margin <= high or low <= -margin <= high}[verdict]


def test_relative_gap_on_a_hand_made_table():
    """1 − acc(φ)/acc(0), averaged over φ > 0, per model, ε and seed."""
    values = {(0.0, 0, 0): 0.8, (0.0, 0, 90): 0.6, (0.0, 0, 180): 0.4,     # 0.25 and 0.5: 0.375
              (0.3, 0, 0): 0.5, (0.3, 0, 90): 0.4, (0.3, 0, 180): 0.25,    # 0.2 and 0.5: 0.35
              (0.3, 1, 0): 1.0, (0.3, 1, 90): 1.0, (0.3, 1, 180): 0.9}     # 0 and 0.1: 0.05
    table = adversarial.add_gap(pd.DataFrame([{**tags("lenet", eps_train=e, seed=s), "phi": phi, "accuracy": a,
                                               "n": 100} for (e, s, phi), a in values.items()]))
    rel = adversarial.relative_gap(table)
    assert list(rel.columns) == ["model", "dataset", "theta", "eps_train", "seed", "relative_gap"]
    assert rel["relative_gap"].round(9).tolist() == [0.375, 0.35, 0.05]


def test_gap_rule_does_not_count_lost_clean_accuracy_as_lost_invariance():
    """Clean accuracy falls from 97% to 76% as ε grows while each model keeps the same share of its
    correctly classified points under rotation: the absolute gap shrinks far beyond the margin (a rule
    on it would say "more invariant"), the relative gap — the one the rule reads — is unchanged."""
    table = gap_table(0.0, noise=0.003, clean_drop=0.7)
    row = one_under(ADV, AVERAGED, invariance=table)
    assert row["verdict"] == "agree" and "unchanged (ICLR 2020)" in row["measured"]
    assert one(ADV, invariance=table)["verdict"] == "agree"   # the per-φ rule too
    a, b = seed_arrays(table[table["phi"] > 0], "eps_train", 0.0, 0.3, "gap")
    low, high = bootstrap_change(a, b).ci
    assert high < -GAP_MARGIN * a.mean()          # the absolute gap: wholly below the margin
    assert abs(natural_value(table) - natural_value(gap_table(0.0, noise=0.003))) < 1e-9


AT30 = {"clear": {0.0: 0.80, 0.1: 0.70, 0.3: 0.50}, "opposite": {0.0: 0.50, 0.1: 0.70, 0.3: 0.80},
        "tiny": {0.0: 0.700, 0.1: 0.699, 0.3: 0.698}}


@pytest.mark.parametrize("values, noise, seeds, verdict", [
    ("clear", 0.01, SEEDS, "agree"),
    ("opposite", 0.01, SEEDS, "disagree"),
    ("tiny", 0.05, SEEDS, "inconclusive"),
    ("clear", 0.01, ONE_SEED, "inconclusive"),
])
def test_spatial_rule(values, noise, seeds, verdict):
    row = one(ADV, worst_of_k=worst_table(AT30[values], noise=noise, seeds=seeds))
    assert row["verdict"] == verdict      # φ = 90° has the opposite trend: only φ = 30° is read
    m = row["measured"]
    assert m.startswith("worst-of-13 rotation accuracy over [−30°, 30°]") and "LeNet, ε = 0 → 0.3" in m
    if values == "clear":
        assert "80.0% → 50.0% " + ("(Δ -30.0% [90% CI" if len(seeds) > 1 else "(1 seed: no interval)") in m


def test_spatial_rule_falls_back_to_the_smallest_phi():
    row = one(ADV, worst_of_k=worst_table(AT30["clear"], noise=0.01, phis=(0, 15, 90)))
    assert row["verdict"] == "agree" and "[−15°, 15°]" in row["measured"]


CLEAN = {0.0: 0.98, 0.1: 0.88, 0.3: 0.68}   # adversarial training costs 30 points of clean accuracy


@pytest.mark.parametrize("among_correct, verdict, shown", [
    # the same share of the correctly classified points survives: worst-of-k accuracy falls 78.4% → 54.4%
    # only because clean accuracy does; no drop in spatial robustness
    ({0.0: 0.80, 0.1: 0.80, 0.3: 0.80}, "inconclusive", "80.0% → 80.0%"),
    # a larger share survives (both tests show an increase) while worst-of-k accuracy still falls 58.8% → 51.0%
    ({0.0: 0.60, 0.1: 0.65, 0.3: 0.75}, "disagree", "60.0% → 75.0%"),
])
def test_spatial_rule_reads_the_correctly_classified_points(among_correct, verdict, shown):
    table = worst_table(among_correct, noise=0.01, clean=CLEAN)
    row = one(ADV, worst_of_k=table)
    assert row["verdict"] == verdict and f"LeNet, ε = 0 → 0.3: {shown} (Δ" in row["measured"]
    # a rule on the raw worst-of-k accuracy would have seen a drop
    raw = table[table["phi"] == 30]
    assert change_test(*seed_arrays(raw, "eps_train", 0.0, 0.3, "accuracy"), "decrease")[1] == "agree"


def test_spatial_rule_needs_both_tests():
    """The ends rise (+2 points) but the curve between them falls: one test says "increase", the
    other "decrease": neither both-decrease (agree) nor both-increase (disagree), so inconclusive."""
    curve = {0.0: 0.60, 0.1: 0.95, 0.2: 0.75, 0.3: 0.62}
    row = one(ADV, worst_of_k=worst_table(curve, noise=0.005))
    assert row["verdict"] == "inconclusive"
    found = re.search(r"60\.0% → 62\.0% \(Δ \+2\.0% \[90% CI \+\d\.\d%, \+\d\.\d%\], 5 seeds\); "
                      r"slope -\d+\.\d% per 0\.1 of ε \[90% CI -\d+\.\d%, -\d+\.\d%\]", row["measured"])
    assert found, row["measured"]


COSINES = re.compile(r"LeNet trained at ε = ([\d.]+): (\d\.\d{3}) vs (\d\.\d{3}) \(excess ([+-]\d\.\d{3}) "
                     r"\[90% CI ([+-]\d\.\d{3}), ([+-]\d\.\d{3})\], margin (\d\.\d{3})\) — (\w+)")


def per_eps(measured: str) -> dict[float, tuple]:
    """``{training ε: (adversarial, null, excess, low, high, margin, verdict)}`` from the orthogonality text."""
    return {float(g[0]): (*(float(v) for v in g[1:7]), g[7]) for g in COSINES.findall(measured)}


@pytest.mark.parametrize("excess, seed_noise, seeds, verdict", [
    (0.0, 0.005, SEEDS, "agree"),        # as orthogonal to the tangent as a random corner
    (0.2, 0.005, SEEDS, "disagree"),     # far more aligned with the tangent
    (-0.2, 0.005, SEEDS, "agree"),       # less aligned than the null: the test is one-sided
    (0.0, 0.1, SEEDS, "inconclusive"),   # no excess, but seed noise (sd 0.1) wider than the margin
    (0.0, 0.005, ONE_SEED, "inconclusive"),
])
def test_orthogonality_rule(excess, seed_noise, seeds, verdict):
    table = tangents(excess, seed_noise=seed_noise, seeds=seeds)
    row = one(ADV, tangent_cosines=table)
    assert row["verdict"] == verdict
    m = row["measured"]
    if len(seeds) == 1:
        assert "LeNet: 1 seed, no interval" in m and not per_eps(m)
        return
    found = per_eps(m)
    assert sorted(found) == [0.0, 0.1, 0.3]            # judged at every training ε
    for eps, (adv, null, estimate, low, high, margin, each) in found.items():
        rows = table[table["eps_train"] == eps]
        assert abs(adv - rows["adversarial"].mean()) < 1e-3 and abs(null - rows["random_sign"].mean()) < 1e-3
        assert abs(margin - COSINE_MARGIN * null) < 1e-3   # relative to the null's mean
        assert low <= estimate <= high and abs(estimate - (adv - null)) < 2e-3
        assert each == verdict                         # the same design at every ε
    if excess == -0.2:
        assert all(v[2] < -0.05 for v in found.values())


@pytest.mark.parametrize("at_03, noise_03, verdict", [
    (0.2, 0.005, "disagree"),     # one ε clearly more aligned than the null: the claim disagrees
    (0.0, 0.1, "inconclusive"),   # one ε undecided, the others agree
])
def test_orthogonality_rule_needs_every_training_eps(at_03, noise_03, verdict):
    table = pd.concat([tangents(0.0, seed_noise=0.005, eps_train=(0.0, 0.1)),
                       tangents(at_03, seed_noise=noise_03, eps_train=(0.3,), rng=1)], ignore_index=True)
    row = one(ADV, tangent_cosines=table)
    assert row["verdict"] == verdict
    assert [v[-1] for v in per_eps(row["measured"]).values()] == ["agree", "agree", verdict]


def test_orthogonality_rule_pairs_points_and_drops_missing_ones():
    """Per point, paired: relabelling the adversarial cosines' points (the same permutation for every
    seed) keeps both means, but breaks the pairing with the null and widens the interval; a point
    whose adversarial cosine is missing for one seed is left out for every seed."""
    table = tangents(0.0, seed_noise=0.0, eps_train=(0.0,))
    relabelled = table.copy()
    relabelled["adversarial"] = relabelled.groupby("seed")["adversarial"].transform(
        lambda v: v.to_numpy()[np.random.default_rng(7).permutation(len(v))])
    (paired,), (unpaired,) = (per_eps(one(ADV, tangent_cosines=t)["measured"]).values()
                              for t in (table, relabelled))
    assert paired[:3] == unpaired[:3]                                       # the same means and excess
    assert unpaired[4] - unpaired[3] > 3 * (paired[4] - paired[3])          # a much wider interval

    aligned = table.copy()
    aligned.loc[aligned["point"] == 3, "adversarial"] = 0.9         # point 3: far more aligned, at every seed …
    failed = aligned.copy()
    failed.loc[(failed["point"] == 3) & (failed["seed"] == 2), "adversarial"] = np.nan  # … but PGD failed at seed 2
    without = table[table["point"] != 3]
    measured = one(ADV, tangent_cosines=failed)["measured"]
    assert measured == one(ADV, tangent_cosines=without)["measured"]
    assert per_eps(one(ADV, tangent_cosines=aligned)["measured"])[0.0][0] > per_eps(measured)[0.0][0] + 0.01


@pytest.mark.parametrize("ks, shown", [((1, 5, 10, 20), 10), ((1, 5), 5)])
def test_orthogonality_rule_shows_the_subspaces_without_changing_the_verdict(ks, shown):
    cos = tangents(0.2, seed_noise=0.005)
    alone = one(ADV, tangent_cosines=cos)
    with_pca = one(ADV, tangent_cosines=cos, subspace_cosines=subspace_cosines(ks))
    assert alone["verdict"] == with_pca["verdict"] == "disagree"
    assert with_pca["measured"].startswith(alone["measured"])
    # the paper's PCA statistic, on a scale from unstructured to the same family; no rule reads it
    shown_text = with_pca["measured"][len(alone["measured"]):]
    assert shown_text.startswith(f"; for comparison, the paper's own statistic, which has no matched null (no rule "
                                 f"reads it): mean principal cosine of the top-{shown} PCA subspaces")
    values = {name: f"{name} {value:.3f}" for name, value in COMPARISONS.items()}
    order = [values[n] for n in ("adversarial vs rotation", "random vs random", "translation vs rotation",
                                 "adversarial vs adversarial") if n in COMPARISONS]
    assert all(text in shown_text for text in values.values())
    assert [shown_text.index(text) for text in order] == sorted(shown_text.index(text) for text in order)


@pytest.mark.parametrize("profile, words", [
    ("cpu", "AutoAttack's APGD-CE and APGD-T on the 3 most likely target classes, 100 iterations each, in every study"),
    ("smoke", "25 iterations each"),
    ("paper", "AutoAttack's standard ensemble (APGD-CE, APGD-T with 9 target classes, FAB-T, Square), in every study"),
])
def test_the_verdict_page_says_which_attack_every_robust_accuracy_comes_from(profile, words):
    from invrob.studies import scorecard

    rule = scorecard.attack_rule(profile)
    assert words in rule and f"at the {profile} profile" in rule
    built = {s.name: s.settings(profile) for s in studies.all_studies() if hasattr(s.settings(profile), "aa_attacks")}
    assert built and all(scorecard.attack_name(S) in rule for S in built.values())


def test_rules_state_their_margins_and_tests():
    rules = {c.claim: c.rule for s in studies.all_studies() for c in s.paper_claims}
    # the margins are relative: to the natural model's value and to the null's mean
    assert f"±{GAP_MARGIN:g} × the natural model's value" in rules[UNCHANGED] and GAP_MARGIN == 0.10
    assert f"{COSINE_MARGIN:g} × the null's mean" in rules[ORTHOGONAL] and COSINE_MARGIN == 0.25
    assert "1 − acc(φ)/acc(0)" in rules[UNCHANGED] and "among the correctly classified points" in rules[SPATIAL]
    assert "at every training ε" in rules[ORTHOGONAL] and "at some ε" in rules[ORTHOGONAL]
    low, high = invariance.INFORMATIVE
    assert f"[{low:g}, {high:g}]" in rules[DROPS]
    for rule in rules.values():
        assert "level 0.05" in rule
    for claim in (IMPROVES, DROPS, SHRINKS, SPATIAL):
        assert "slope" in rules[claim] and "paired change" in rules[claim] and "both" in rules[claim]
    for claim in (IMPROVES, DROPS, SHRINKS):
        assert "disagree if both show the opposite" in rules[claim]
    assert "Agree if all show a decrease, disagree if the endpoint change and the slope both show an increase" \
        in rules[SPATIAL] and "Jonckheere–Terpstra" in rules[SPATIAL]
    assert studies.rules.ALPHA == 0.05
    for words in ("90%", "t-interval", "one set of test points shared by them"):
        assert words in studies.STATS_RULE


def test_studies_measure_robustness_with_their_profiles_autoattack():
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    for study in (INV, ADV):
        assert study.attack is studies.rules.autoattack_of
        cheap, standard = (study.attack(study.settings(p))(model) for p in ("cpu", "paper"))
        assert (cheap.version, list(cheap.attacks), cheap.targets) == ("custom", ["apgd-ce", "apgd-t"], 3)
        assert (standard.version, standard.targets) == ("standard", None) and len(standard.attacks) == 4


def test_crossed_bootstrap_covers_where_nested_does_not():
    """Every seed measured on the same points, point effects dominating (sd 1 against 0.05 for seeds and
    0.1 for the rest): the mean's variance is ≈ σ²_point/N. The nested bootstrap (points drawn per seed)
    sees σ²_point/(S·N), S = 5 times too little; the crossed one draws one set of points for all seeds."""
    S, N, sims, true_mean = 5, 40, 200, 0.3
    gen = np.random.default_rng(11)
    covered = {False: 0, True: 0}
    widths = {False: [], True: []}
    for r in range(sims):
        a = gen.normal(0, 1, (1, N)) + gen.normal(0, 0.05, (S, 1)) + gen.normal(0, 0.1, (S, N))  # condition A
        d = true_mean + gen.normal(0, 0.05, (S, 1)) + gen.normal(0, 1, (1, N)) + gen.normal(0, 0.1, (S, N))
        for crossed in (False, True):
            low, high = stats.paired_bootstrap(a, a + d, n_boot=500, seed=r, alpha=0.1, crossed=crossed).ci
            covered[crossed] += low <= true_mean <= high
            widths[crossed].append(high - low)
    coverage = {k: v / sims for k, v in covered.items()}
    assert np.mean(widths[True]) > 1.8 * np.mean(widths[False])
    assert 0.80 <= coverage[True] <= 0.97      # nominal 90% (0.86–0.93 over other generator seeds)
    assert coverage[False] < 0.70              # ≈ P(|Z| < 1.645/√5) ≈ 54% (0.48–0.57 measured)
    # the studies' intervals are the crossed ones (widened for few seeds)
    expected = stats.few_seeds(stats.paired_bootstrap(a, a + d, seed=0, alpha=0.1, crossed=True))
    assert bootstrap_change(a, a + d).ci == expected.ci


def test_several_models_combine_one_way():
    assert combine(["agree", "agree"]) == "agree"
    assert combine(["agree", "inconclusive"]) == "inconclusive"
    assert combine(["agree", "disagree", "inconclusive"]) == "disagree"
    assert combine([]) == "inconclusive"
    clear = rotated({"stdcnn": CURVES["clear"]}, noise=0.01)
    for other, verdict in [("clear", "agree"), ("tiny", "inconclusive"), ("opposite", "disagree")]:
        second = rotated({"gcnn_p4": CURVES[other]}, noise=0.05 if other == "tiny" else 0.01, rng=1)
        row = one(INV, invariance=pd.concat([clear, second], ignore_index=True))
        assert row["verdict"] == verdict
        assert row["measured"].index("StdCNN") < row["measured"].index("GCNN (p4)")


# ---------------------------------------------------------------------- tables and schemas
def test_add_gap_on_a_hand_made_table():
    values = {("lenet", 0.0, 0, 0): 0.9, ("lenet", 0.0, 0, 90): 0.6, ("lenet", 0.0, 0, 180): 0.5,
              ("lenet", 0.1, 0, 0): 0.8, ("lenet", 0.1, 0, 90): 0.7, ("lenet", 0.1, 1, 0): 0.7,
              ("lenet", 0.1, 1, 90): 0.2}
    table = pd.DataFrame([{**tags(m, eps_train=e, seed=s), "phi": phi, "accuracy": a, "n": 100}
                          for (m, e, s, phi), a in values.items()])
    out = adversarial.add_gap(table)
    assert "gap" not in table and list(out.columns) == [*table.columns, "gap"]
    assert out["gap"].round(9).tolist() == [0.0, 0.3, 0.4, 0.0, 0.1, 0.0, 0.5]


def test_add_gap_needs_the_unrotated_reference():
    table = pd.DataFrame([{**tags("lenet"), "phi": 90, "accuracy": 0.6, "n": 100}])
    with pytest.raises(InvrobError, match="φ = 0"):
        adversarial.add_gap(table)
    with pytest.raises(InvrobError, match="missing phi"):
        adversarial.add_gap(table.drop(columns="phi"))


def test_schema_refuses_a_table_without_a_required_column(tables):
    table = tables["inv3"].drop(columns="gap")
    with pytest.raises(InvrobError, match="03_robustness_vs_invariance/invariance.csv .* lacks column"
                                          r"\(s\) gap") as error:
        ADV.claims({"invariance": table})
    assert "\n" not in str(error.value)
    with pytest.raises(InvrobError, match=r"robustness.csv of the invariance study lacks column\(s\) conditional"):
        INV.claims({"robustness": tables["rob"].drop(columns="conditional"), "robust_points": tables["points"]})
    with pytest.raises(InvrobError, match="is empty"):
        INV.check("robust_points", tables["points"].iloc[:0])


def test_claims_need_at_least_one_judgeable_table(tables):
    with pytest.raises(InvrobError, match="no claim of the invariance study can be judged"):
        INV.claims({"cifar10_invariance": tables["inv"]})
    # the robustness claim needs the per-point rows as well as the summary
    with pytest.raises(InvrobError, match="no claim of the invariance study can be judged from tables robustness"):
        INV.claims({"robustness": tables["rob"]})
    # an optional table (Claim.uses) alone judges nothing
    with pytest.raises(InvrobError, match="no claim of the adversarial study can be judged"):
        ADV.claims({"subspace_cosines": tables["geo"]})


def test_every_study_names_real_notebooks_and_unique_tables():
    import importlib
    import pkgutil

    # every module of invrob.studies that defines STUDY is found, in notebook order
    defined = [m.STUDY.name for m in (importlib.import_module(f"invrob.studies.{i.name}")
                                      for i in pkgutil.iter_modules(studies.__path__)) if hasattr(m, "STUDY")]
    assert sorted(studies.STUDIES) == sorted(defined)
    assert {"invariance", "adversarial", "tradeoff", "certified"} <= set(studies.STUDIES)
    firsts = [s.notebooks[0] for s in studies.all_studies()]
    assert firsts == sorted(firsts)
    for study in studies.all_studies():
        for notebook in study.notebooks:
            assert (REPO / "notebooks" / f"{notebook}.ipynb").exists(), notebook
        assert {t.notebook for t in study.tables} <= set(study.notebooks)
        assert study.claim_tables() and len(study.paper_claims) >= 2
    assert INV.claim_tables() == ["invariance", "robust_points", "robustness", "models", "distances"]
    assert ADV.claim_tables() == ["invariance", "worst_of_k", "subspace_cosines", "tangent_cosines", "models"]
    assert TRADE.claim_tables() == ["accuracy", "robust_points", "models"]
    with pytest.raises(InvrobError, match="unknown study 'trade-off'"):
        studies.get("trade-off")


def test_bottom_line_names_post_hoc_rows_without_counting_them():
    rows = pd.DataFrame([dict(claim="a", verdict="agree"), dict(claim="b (post hoc)", verdict="agree"),
                         dict(claim="c", verdict="disagree")])
    assert bottom_line(rows, "cpu") == ("1 of 2 claim rows agrees, 1 disagrees, 0 are inconclusive at the cpu profile "
                                        "(and 1 post-hoc row, exploratory, not counted).")


def test_markdown_table_and_bottom_line():
    rows = pd.DataFrame([dict(claim="a | b", paper="p", measured="m", rule="r", verdict="agree"),
                         dict(claim="c", paper="p", measured="m", rule="r", verdict="inconclusive")])
    text = markdown_table(rows)
    assert "a \\| b" in text and "**inconclusive**" in text and text.count("\n") == 3
    assert verdict_page_verdicts(text) == {"a \\| b": "agree", "c": "inconclusive"}
    assert bottom_line(rows, "cpu") == "1 of 2 claim rows agrees, 0 disagree, 1 is inconclusive at the cpu profile."


def test_robustness_rule_refuses_tables_from_different_runs():
    summary_and_points = robustness_tables(robust_points(SCALES["clear"], seeds=SEEDS))
    points = summary_and_points["robust_points"]
    with pytest.raises(InvrobError, match="per-point table has no rows at theta = 180"):
        INV.claims({"robustness": summary_and_points["robustness"], "robust_points": points[points["theta"] != 180]})


def test_relative_gap_averages_only_the_phi_every_model_has():
    """A test range missing for one model must not bias the comparison (it used to: Δ −0.11 from nothing)."""
    g = gap_table(0.0, noise=0.003)
    g = g[~((g["phi"] == 180) & (g["eps_train"] == 0.3))]
    row = one(ADV, invariance=g)
    assert row["verdict"] == "agree", row["measured"]


def test_spatial_rule_needs_the_clean_rows():
    worst = worst_table({0.0: 0.8, 0.1: 0.7, 0.3: 0.5})
    with pytest.raises(InvrobError, match="φ = 0"):
        ADV.claims({"worst_of_k": worst[worst["phi"] != 0]})


def test_orthogonality_rule_names_every_model_it_cannot_judge():
    both_models = pd.concat([tangents(0.0, seed_noise=0.005), tangents(0.0, seeds=(0,), model="resnet18")])
    row = one(ADV, tangent_cosines=both_models)
    assert "ResNet-18: 1 seed, no interval" in row["measured"] and row["verdict"] == "inconclusive"


# ---------------------------------------------------------------------- rules that match the words (issue 22)
V_SHAPE = {0.0: 0.505, 0.1: 0.524, 0.2: 0.510, 0.3: 0.427}   # the cpu run's rotation-grid curve: the drop sits at 0.3


def test_progressive_rule_rejects_a_v_shaped_curve_that_endpoint_and_slope_accept():
    table = worst_table(V_SHAPE, noise=0.003)
    endpoints = one_under(ADV, {"progressive": False}, worst_of_k=table)
    row = one(ADV, worst_of_k=table)
    assert endpoints["verdict"] == "agree"                  # the rule of the first runs: a drop
    assert row["verdict"] == "inconclusive" and "not progressive" in row["measured"]
    assert "0→0.1" in row["measured"] and "(against)" in row["measured"]
    steady = one(ADV, worst_of_k=worst_table({0.0: 0.60, 0.1: 0.55, 0.2: 0.50, 0.3: 0.45}, noise=0.003))
    assert steady["verdict"] == "agree"


def opposite_phi_table():
    """A gap table whose relative gap, at the largest ε, moves by +0.06 at φ = 180 and by −0.06 at φ = 30
    (accuracy = clean · (1 − relative gap)): its average over φ stays put."""
    table = gap_table(0.0, noise=0.002)
    hi = table["eps_train"] == table["eps_train"].max()
    clean = table.loc[hi & (table["phi"] == 0), ["seed", "accuracy"]].set_index("seed")["accuracy"]
    for phi, move in ((180, 0.06), (30, -0.06)):
        at = hi & (table["phi"] == phi)
        table.loc[at, "accuracy"] -= move * clean.reindex(table.loc[at, "seed"]).to_numpy()
    return adversarial.add_gap(table.drop(columns="gap"))


def test_per_phi_rule_fails_when_one_phi_leaves_the_margin_that_the_average_hides():
    """The gap grows at φ = 180 and shrinks as much at φ = 30: the average over φ stays put (the averaged
    rule agrees), the intersection–union test over φ does not."""
    table = opposite_phi_table()
    assert one_under(ADV, AVERAGED, invariance=table)["verdict"] == "agree"
    row = one(ADV, invariance=table)
    assert row["verdict"] == "disagree" and "outside the margin at φ = 30°, 180°" in row["measured"]
    per_phi = ADV.per_phi({"invariance": table}).set_index("phi")
    assert not per_phi.loc[180, "equivalent"] and not per_phi.loc[30, "equivalent"] and per_phi.loc[90, "equivalent"]
    assert per_phi.loc[180, "lo"] > 0.05 and per_phi.loc[30, "hi"] < -0.05


def test_rule_history_renders_every_rule_with_its_own_verdict():
    table = opposite_phi_table()
    history = ADV.rule_history({"invariance": table})
    # both post hoc: the averaged rule came after the per-φ rule had been inconclusive at 2 seeds, and the per-φ
    # rule was reinstated (as an intersection–union test) after the 5-seed cpu data had been seen
    assert list(history["current"]) == [True, False] and list(history["post_hoc"]) == [True, True]
    assert list(history["rule_alone"]) == ["disagree", "agree"]
    shown = studies.scorecard.markdown(studies.scorecard.history_table(history), index=False)
    assert "**current** (the rule in the claim's row)" in shown and "averaged over φ" in shown and "*(post hoc)*" in shown
    assert "The 0 claim rows that have had one rule" in studies.scorecard.history_markdown(history)
    assert shown.count("disagree") >= 2 and "| agree | agree |" in shown


def test_margin_sensitivity_and_power_tables():
    table = gap_table(0.03, noise=0.003)
    sens = ADV.sensitivity({"invariance": table}).set_index("factor")["verdict"]
    assert list(sens.index) == [0.5, 1.0, 2.0] and sens[1.0] == "agree" and sens[2.0] == "agree"
    power = ADV.power({"invariance": table, "worst_of_k": worst_table(AT30["clear"], noise=0.01)})
    assert set(power["claim"]) == {UNCHANGED, SPATIAL}
    spatial = power[power["claim"] == SPATIAL].iloc[0]
    assert spatial["seeds"] == 5 and spatial["se"] > 0 and np.isnan(spatial["margin"])
    assert spatial["mde"] == pytest.approx((1.6449 + 0.8416) * spatial["se"], rel=1e-3)
    assert 1 <= spatial["seeds_needed"] <= 5          # a clear drop: decidable at the run's seeds


def test_adversarial_rows_name_the_papers_nets_a_run_leaves_out():
    from invrob.studies.adversarial_claims import nets_left_out
    wong = pd.DataFrame({"model": ["wong"], "dataset": ["mnist"]})
    assert nets_left_out(wong) == ["the paper's LeNet on MNIST: not in this run (Wong et al.'s net in its place)",
                                   "the paper's ResNet on CIFAR-10: not in this run"]
    both_nets = pd.DataFrame({"model": ["lenet", "resnet18"], "dataset": ["mnist", "cifar10"]})
    assert nets_left_out(both_nets) == []
    assert nets_left_out(pd.DataFrame({"model": ["lenet"]})) == ["the paper's ResNet on CIFAR-10: not in this run"]
    # the rows carry it, so the scorecard counts their claims as resting on part of the paper's setting
    row = one(ADV, tangent_cosines=tangents(0.0, point_noise=0.005))
    assert "not in this run" not in row["measured"]           # a mechanism row: measured on what ran
    spatial = one(ADV, worst_of_k=worst_table(AT30["clear"], noise=0.01))
    assert spatial["measured"].endswith("the paper's ResNet on CIFAR-10: not in this run")


def test_orthogonality_reads_the_matched_null_and_keeps_the_old_one_in_its_history():
    table = tangents(0.0, point_noise=0.005)
    # the adversarial cosine equals the whole-ball corner's, but the matched null (same support) is far below
    table["matched_support"] = table["random_sign"] * 0.5
    row = one(ADV, tangent_cosines=table)
    assert row["verdict"] == "disagree" and "same support" in row["measured"]
    history = ADV.rule_history({"tangent_cosines": table}).set_index("rule")
    assert history.filter(like="random ℓ∞ corner", axis=0)["rule_alone"].item() == "agree"


def test_scorecard_counts_distinct_claims_once_and_not_run_apart():
    rows = pd.DataFrame([
        dict(claim="A", key="a", kind="paper", versions="ICLR 2020", verdict="agree"),
        dict(claim="A again", key="a", kind="paper", versions="NeurIPS 2021", verdict="agree"),
        dict(claim="B", key="b", kind="paper", versions="NeurIPS 2021", verdict="agree"),
        dict(claim="B twice", key="b", kind="paper", versions="NeurIPS 2021", verdict="disagree"),
        dict(claim="C", key="c", kind="paper", versions="NeurIPS 2021", verdict="not run"),
        dict(claim="C (post hoc)", key="c", kind="paper", versions="NeurIPS 2021", verdict="agree"),
        dict(claim="M", key="m", kind="mechanism", versions="ICLR 2020", verdict="inconclusive")])
    distinct = studies.scorecard.distinct(rows).set_index("key")
    assert distinct["verdict"].to_dict() == {"a": "agree", "b": "disagree", "c": "not run", "m": "inconclusive"}
    assert distinct.loc["a", "versions"] == "ICLR 2020; NeurIPS 2021" and distinct.loc["a", "rows"] == 2
    counts = studies.scorecard.counts(rows)
    assert counts.loc["ICLR 2020: the paper's claims"].to_dict() == dict(
        agree=1, disagree=0, inconclusive=0, **{"not run": 0}, claims=1)
    assert counts.loc["NeurIPS 2021: the paper's claims"].to_dict() == dict(
        agree=1, disagree=1, inconclusive=0, **{"not run": 1}, claims=3)
    assert counts.loc["Mechanisms the paper offers", "inconclusive"] == 1
    assert "3 distinct claims" in studies.scorecard.sentence(rows, "cpu")
    assert "leaves out" not in studies.scorecard.sentence(rows, "cpu")
    # a row that names what its run leaves out (cpu: no GCNN, θ ≤ 90°) scopes its distinct claim, once
    scoped = rows.assign(measured=["x; GCNN (p4): not in this run", "y", "z", "w", "v", "u", "t"])
    assert (" 1 of the paper's claims that ran rests on part of what the paper speaks about: its rows name the "
            "families or ranges this run leaves out.") in studies.scorecard.sentence(scoped, "cpu")
    # a distinct claim whose rows differ says so, with the rule that combines them
    assert studies.scorecard.sentence(rows, "cpu").endswith(
        " 1 distinct claim has rows whose verdicts differ (b: agree, disagree): a distinct claim agrees only if "
        "every row of it that ran agrees, and disagrees if any row disagrees (no correction for the number of rows).")
    # a rule chosen after the data is flagged on its distinct claim, unless that row's verdict is not counted
    late = rows.assign(rule_set=["before", "before", "later (post hoc)", "", "", "later (post hoc)", "later (post hoc)"])
    flagged = studies.scorecard.distinct(late).set_index("key")["rule after data"].to_dict()
    assert flagged == {"a": "", "b": "yes", "c": "", "m": "yes"}   # c: its post hoc row is not counted
    assert " 2 of the distinct claims with a verdict (b, m) are judged by a rule chosen after the data" in \
        studies.scorecard.sentence(late, "cpu")
    assert "rule chosen after" not in studies.scorecard.sentence(rows, "cpu")


# ---------------------------------------------------------------------- the chapters' tables and closing text
def summary_rows(accuracies, attack, level="theta", model="stdcnn"):
    """A :func:`~invrob.experiments.summarize_points`-like table from ``{(level value, seed, ε): accuracy}``."""
    return pd.DataFrame([{**tags(model, **{level: v}, seed=s), "eps": e, "attack": attack, "accuracy": a, "n": 100}
                         for (v, s, e), a in accuracies.items()])


def test_pgd_overstatement_is_pgd_minus_autoattack_at_positive_eps():
    from invrob.experiments import pgd_overstatement

    aa = summary_rows({(0, 0, 0.0): 0.9, (0, 0, 0.1): 0.5, (180, 0, 0.1): 0.25}, "APGD-CE+APGD-T")
    pgd = summary_rows({(0, 0, 0.0): 0.9, (0, 0, 0.1): 0.625, (180, 0, 0.1): 0.5}, "PGD-20")
    rows = pgd_overstatement(aa, pgd)
    assert list(rows["theta"]) == [0, 180] and (rows["eps"] > 0).all()  # ε = 0 is the clean accuracy: left out
    assert list(rows["overstated"]) == [0.125, 0.25]
    assert (rows["overstated"] == rows["accuracy_pgd"] - rows["accuracy"]).all()
    assert list(rows["attack_pgd"]) == ["PGD-20"] * 2  # PGD's columns carry the suffix
    # rows pair on every tag: another training ε is another model, not a match
    other = pgd.assign(eps_train=0.3)
    assert pgd_overstatement(aa, other).empty


def test_invariance_pgd_table_gives_the_mean_and_the_largest_gap_per_family_and_eps():
    aa = summary_rows({(0, 0, 0.1): 0.5, (180, 0, 0.1): 0.25, (0, 0, 0.05): 0.75}, "AA")
    pgd = summary_rows({(0, 0, 0.1): 0.625, (180, 0, 0.1): 0.5, (0, 0, 0.05): 0.75}, "PGD")
    table = INV.pgd_overstatement(aa, pgd)
    assert table.index.names == ["model", "ε"] and list(table.columns) == ["PGD − AutoAttack, mean", "largest"]
    assert table.loc[("StdCNN", "0.1")].tolist() == [0.188, 0.25]  # mean of 0.125 and 0.25, rounded
    assert table.loc[("StdCNN", "0.05")].tolist() == [0.0, 0.0]


def test_adversarial_pgd_table_is_training_eps_by_attack_eps():
    aa = summary_rows({(0.0, 0, 0.1): 0.0, (0.1, 0, 0.1): 0.75, (0.1, 1, 0.1): 0.5}, "AA", "eps_train", "wong")
    pgd = summary_rows({(0.0, 0, 0.1): 0.125, (0.1, 0, 0.1): 0.75, (0.1, 1, 0.1): 0.75}, "PGD", "eps_train", "wong")
    table = ADV.pgd_overstatement(aa, pgd)
    assert table.index.name == "training ε" and table.columns.name == "attack ε"
    assert table.to_dict() == {"0.1": {"0": 0.125, "0.1": 0.125}}  # ε = 0.1: mean of 0 and 0.25 over seeds


def history_rows(finals, level="theta"):
    """Two epochs per run, the last at the given accuracy: ``{(model, level value, seed): final accuracy}``."""
    return pd.DataFrame([{"epoch": epoch, "train_acc": acc if epoch else 0.1, **tags(m, **{level: v}, seed=s)}
                         for (m, v, s), acc in finals.items() for epoch in (0, 1)])


def test_final_epochs_read_each_runs_last_epoch_mean_over_seeds():
    history = history_rows({("stdcnn", 0, 0): 0.9, ("stdcnn", 0, 1): 0.8, ("stdcnn", 180, 0): 0.5,
                            ("gcnn_p4", 0, 0): 0.7})
    table = INV.final_epochs(history)
    assert table.index.name == "θ (°)" and list(table.index) == ["0", "180"]
    assert table.loc["0"].to_dict() == {"GCNN (p4)": 0.7, "StdCNN": 0.85}
    assert table.loc["180", "GCNN (p4)"] == "—" and table.loc["180", "StdCNN"] == 0.5  # no GCNN at 180°
    adv = ADV.final_epochs(history_rows({("wong", 0.0, 0): 0.99, ("wong", 0.1, 0): 0.9, ("wong", 0.1, 1): 0.8},
                                        "eps_train"))
    assert adv.index.name == "training ε" and adv.to_dict() == {"Wong net": {"0": 0.99, "0.1": 0.85}}


def test_grid_table_states_each_familys_width_parameters_epochs_and_grid():
    from types import SimpleNamespace

    from invrob.models import build_model, count_parameters

    S = SimpleNamespace(models=["stdcnn", "gcnn_p4"], widths={"stdcnn": 8}, epochs={"stdcnn": 3, "gcnn_p4": 1},
                        thetas={"stdcnn": [0, 90, 180], "gcnn_p4": [0, 22.5]})
    table = INV.grid_table(S)
    assert list(table.index) == ["StdCNN", "GCNN (p4)"]
    assert table.loc["StdCNN"].tolist() == [8, count_parameters(build_model("stdcnn", "mnist", width=8)), 3,
                                            "0, 90, 180"]
    assert table.loc["GCNN (p4)", "width"] == "default" and table.loc["GCNN (p4)", "θ grid (°)"] == "0, 22.5"
    assert table.loc["GCNN (p4)", "parameters"] == count_parameters(build_model("gcnn_p4", "mnist"))


def test_invariance_closing_lists_conditional_accuracy_and_pgds_overstatement():
    from types import SimpleNamespace

    found = pd.DataFrame([dict(claim="A claim", paper="p", measured="m", rule="r", verdict="agree")])
    aa = summary_rows({(0, 0, 0.0): 0.8, (0, 0, 0.1): 0.4, (0, 1, 0.1): 0.6, (180, 0, 0.1): 0.2}, "AA")
    aa["conditional"] = aa["accuracy"] / 0.8
    pgd = summary_rows({(0, 0, 0.0): 0.8, (0, 0, 0.1): 0.5, (0, 1, 0.1): 0.6, (180, 0, 0.1): 0.5}, "PGD")
    text = INV.closing(found, aa, pgd, SimpleNamespace(models=["stdcnn"], pgd_steps=20), "smoke")
    assert text.startswith(studies.findings(found, "smoke"))
    assert ("Robust accuracy among the correctly classified points (mean over seeds):\n\n"
            "- **StdCNN** at ε = 0.1: θ = 0° 62.5%, θ = 180° 25.0%\n\n") in text
    assert text.endswith("PGD-20 overstates robust accuracy by up to 30.0% against AutoAttack on the same points; "
                         "every number above is AutoAttack's.")


def distance_summary():
    stats = dict(mean=0.05, mean_low=0.04, mean_high=0.06, median=0.045, median_low=0.04, median_high=0.05)
    rows = [dict(model="stdcnn", dataset="mnist", theta=t, eps_train=0.0, norm="linf", n=60, n_unbroken=1, **stats)
            for t in (0, 180)]
    rows.append(dict(model="stdcnn", dataset="mnist", theta=0, eps_train=0.0, norm="l2", n=61, n_unbroken=0,
                     **{k: v * 24 for k, v in stats.items()}))
    return pd.DataFrame(rows)


def test_distance_tables_one_per_norm_with_intervals_at_the_norms_decimals():
    linf, l2 = INV.distance_tables(distance_summary())
    assert linf.startswith("**ℓ∞ distance to the decision boundary** (pixel scale)\n\n| model ")
    assert "| StdCNN  | 180° | 60         | 1              | 0.050 [0.040, 0.060] | 0.045 [0.040, 0.050] |" in linf
    assert l2.startswith("**ℓ2 distance") and "1.20 [0.96, 1.44]" in l2 and "1.08 [0.96, 1.20]" in l2
    assert invariance.with_ci(distance_summary(), "mean", 1)[0] == "0.1 [0.0, 0.1]"


def test_norm_panels_and_grid_ends():
    assert list(INV.norm_panels(distance_summary())["norm"]) == ["ℓ∞ distance", "ℓ∞ distance", "ℓ2 distance"]
    distances = pd.DataFrame([{**tags(m, theta=t), "norm": n, "point": 0, "distance": 0.1}
                              for m, grid in (("stdcnn", (0, 90, 180)), ("gcnn_p4", (0, 15, 45)))
                              for t in grid for n in ("linf", "l2")])
    ends = INV.grid_ends(distances)
    assert set(ends["norm"]) == {"linf"}
    assert list(zip(ends["model"], ends["theta"])) == [("stdcnn", 0), ("stdcnn", 180), ("gcnn_p4", 0),
                                                       ("gcnn_p4", 45)]
    assert list(INV.grid_ends(distances, "l2")["theta"]) == [0, 180, 0, 45]


def test_accuracy_and_gap_stacks_the_two_panels():
    table = gap_table(seeds=ONE_SEED, phis=(0, 90), eps=(0.0, 0.1), model="wong")
    both = ADV.accuracy_and_gap(table)
    n = len(table)
    assert len(both) == 2 * n
    assert both["value"].tolist() == table["accuracy"].tolist() + table["gap"].tolist()
    assert set(both["panel"][:n]) == {"Wong net: rotated accuracy"}
    assert set(both["panel"][n:]) == {"Wong net: gap acc(0) − acc(φ)"}


def test_margin_band_is_the_margin_about_the_natural_models_mean():
    from types import SimpleNamespace

    rel = pd.DataFrame({"eps_train": [0.0, 0.0, 0.1], "relative_gap": [0.2, 0.3, 0.9]})
    low, high, text = ADV.margin_band(rel, SimpleNamespace(eps_train=[0.1, 0.0]))
    assert (low, high) == pytest.approx((0.25 * (1 - GAP_MARGIN), 0.25 * (1 + GAP_MARGIN)))
    assert text == f"±{GAP_MARGIN:.0%} of the natural model's: margin"


def test_per_phi_table_is_the_per_phi_rule_as_shown():
    tables = {"invariance": gap_table(growth=0.5, model="wong")}
    raw = ADV.per_phi(tables)
    shown = ADV.per_phi_table(tables)
    assert list(shown.columns) == [{"phi": "φ (°)", "estimate": "Δ relative gap", "lo": "90% CI low",
                                    "hi": "90% CI high", "equivalent": "inside ±margin"}.get(c, c)
                                   for c in raw.columns if c != "se"]
    assert set(shown["model"]) == {"Wong net"}
    assert shown["Δ relative gap"].tolist() == raw["estimate"].round(4).tolist()


def test_adversarial_closing_gives_the_gap_at_both_ends_of_the_eps_grid():
    from types import SimpleNamespace

    found = pd.DataFrame([dict(claim="A claim", paper="p", measured="m", rule="r", verdict="agree")])
    inv = gap_table(seeds=ONE_SEED, phis=(0, 30, 90, 180), eps=(0.0, 0.1), clean_drop=0.0, model="wong")
    gap = inv.set_index(["eps_train", "phi"])["gap"]
    aa = summary_rows({(0.1, 0, 0.1): 0.5}, "AA", "eps_train", "wong")
    pgd = summary_rows({(0.1, 0, 0.1): 0.55}, "PGD", "eps_train", "wong")
    S = SimpleNamespace(models=["wong"], phis=[0, 30, 90, 180], eps_train=[0.0, 0.1], pgd_steps=5)
    text = ADV.closing(found, inv, aa, pgd, S, "smoke")
    assert text.startswith(studies.findings(found, "smoke") + "\n\nPer model, mean over seeds:\n\n")
    for phi in (30, 180):  # the φ nearest 45°, and the largest
        a, b = gap[0.0, phi], gap[0.1, phi]
        assert (f"- **Wong net**, φ = {phi}°: invariance gap {a:.1%} at ε = 0 vs {b:.1%} at ε = 0.1 "
                f"(change {b - a:+.1%}).") in text
    assert text.endswith("\n\nPGD-5 overstates robust accuracy by up to 5.0% against AutoAttack on these models.")


# ---------------------------------------------------------------------- chapter 04's tables (adversarial_tables)
def test_cosine_summary_lists_every_comparison_in_order_with_its_kind_and_mean_per_k():
    geo = pd.concat([subspace_cosines(ks=(1, 5), seeds=(0,), eps_train=(0.0,)),
                     subspace_cosines(ks=(1, 5), seeds=(1,), eps_train=(0.1,)).assign(mean_cosine=0.5)],
                    ignore_index=True)
    geo = geo[geo["comparison"] != "random vs random"]  # a comparison a run lacks: a row of blanks
    means = adversarial_tables.cosine_means(geo)
    assert list(means.index) == list(adversarial_tables.COMPARISON_KINDS) and list(means.columns) == [1, 5]
    assert means.loc["adversarial vs rotation"].tolist() == pytest.approx([0.40, 0.40])  # (0.30 + 0.50) / 2
    assert means.loc["adversarial vs adversarial", 5] == pytest.approx(0.675)
    assert means.loc["random vs random"].isna().all()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in ADV.cosine_summary(geo).splitlines()]
    assert cells[0] == ["subspaces", "kind", "k = 1", "k = 5"] and len(cells) == 2 + 8
    assert cells[2] == ["adversarial vs rotation", "the paper's statistic", "0.400", "0.400"]
    assert cells[4] == ["translation vs rotation", "data-matched null", "0.475", "0.475"]  # (0.45 + 0.50) / 2
    assert cells[8] == ["random vs random", "weak baseline", "nan", "nan"]
    assert cells[9] == ["adversarial vs adversarial", "positive control", "0.675", "0.675"]


def test_shown_comparisons_at_the_ends_and_at_one_k():
    from types import SimpleNamespace

    geo = subspace_cosines(ks=(1, 5, 10), seeds=(0,), eps_train=(0.0, 0.1, 0.3), model="wong")
    shown = ADV.shown_comparisons(geo)
    assert list(dict.fromkeys(shown["comparison"])) == [
        "adversarial vs rotation (the claim)", "translations vs rotation (null)", "image PCA vs rotation (null)",
        "random on digit pixels vs rotation", "random vs random (ℝ⁷⁸⁴)", "adversarial vs adversarial (control)"]
    assert len(shown) == 6 * 3 * 3 and set(shown["mean_cosine"]) == {COMPARISONS[c] for c in COMPARISONS
                                                                     if "removed" not in c}
    S = SimpleNamespace(models=["wong"], eps_train=[0.3, 0.0, 0.1], pca_k=[1, 5, 10])
    ends, titles = ADV.cosines_at_ends(shown, S)
    assert list(dict.fromkeys(ends["eps_train"])) == [0.0, 0.3] and len(ends) == 6 * 3 * 2
    assert titles == ["Wong net, training ε = 0", "Wong net, training ε = 0.3"]
    _, titles = ADV.cosines_at_ends(shown.iloc[::-1], S)  # in the rows' order, as line_panels orders panels
    assert titles == ["Wong net, training ε = 0.3", "Wong net, training ε = 0"]
    rows, k = ADV.cosines_at_k(shown, S)
    assert k == 10 and set(rows["k"]) == {10} and len(rows) == 6 * 3
    rows, k = ADV.cosines_at_k(shown, SimpleNamespace(pca_k=[1, 5]))
    assert k == 5 and set(rows["k"]) == {5}


def test_principal_components_rows_are_rotations_then_each_end_of_the_eps_grid():
    from types import SimpleNamespace

    import torch

    from invrob import experiments as ex
    from invrob.metrics import top_components

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 8, 8, generator=gen), torch.arange(12) % 10

    def net(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    trained = [(SimpleNamespace(seed=s, eps=e), net(10 * s + i)) for s in (0, 1)
               for i, e in enumerate((0.0, 0.05, 0.1))]
    S = SimpleNamespace(seeds=[0, 1], eps_train=[0.0, 0.05, 0.1], eps_attack=0.1, pgd_steps=2, small_angles=[-3, 3])
    images, titles, rows = ADV.principal_components(trained, x, y, S)
    assert rows == ["small\nrotations", "adversarial,\ntraining\nε = 0", "adversarial,\ntraining\nε = 0.1"]
    assert titles == [f"PC{i}" for i in range(1, 9)]
    assert images.shape == (3 * 8, 1, 8, 8)
    _, rot = ex.perturbations(trained[0][1], x, y, eps=0.1, steps=2, small_angles=[-3, 3])
    assert np.allclose(images[:8].flatten(1).numpy(), top_components(rot.numpy(), 8)[0])
    adv, _ = ex.perturbations(trained[2][1], x, y, eps=0.1, steps=2, small_angles=[1])  # seed 0, ε = 0.1
    assert np.allclose(images[16:].flatten(1).numpy(), top_components(adv.numpy(), 8)[0])


def test_null_means_average_models_per_training_eps_adversarial_first():
    nulls = pd.DataFrame([dict(model=m, eps_train=e, perturbation=p, mean=v + (0.1 if m == "b" else 0.0), n=10)
                          for m in ("a", "b") for e in (0.0, 0.1)
                          for p, v in (("adversarial", 0.3), ("matched_support", 0.2), ("random_sign", 0.1))])
    table = ADV.null_means(nulls)
    assert table.index.name == "training ε" and table.columns.name == "mean |cos(·, t)|"
    assert list(table.index) == ["0", "0.1"] and list(table.columns) == ["δ_adv", "matched null", "whole-ball corner"]
    assert table.loc["0.1"].tolist() == pytest.approx([0.35, 0.25, 0.15])


def test_directional_means_and_the_closing_ratio():
    frame = pd.DataFrame([{**tags("wong", eps_train=e, seed=s), "point": i, "along_tangent": t * (i + 1),
                           "along_random": 2.0 * (i + 1), "gradient_norm": 1.0}
                          for e, t in ((0.0, 1.0), (0.1, 0.5)) for s in (0, 1) for i in range(2)])
    means = ADV.directional_means(frame)
    assert list(means.columns) == ["model", "eps_train", "seed", "direction", "derivative"]
    assert len(means) == 2 * 2 * 2 and set(means["direction"]) == {"rotation tangent t̂(x)", "random direction"}
    at = means.set_index(["eps_train", "seed", "direction"])["derivative"]
    assert at[0.1, 1, "rotation tangent t̂(x)"] == pytest.approx(0.75) and at[0.0, 0, "random direction"] == 3.0
    found = pd.DataFrame([dict(claim="A claim", paper="p", measured="m", rule="r", verdict="agree")])
    text = ADV.geometry_closing(found, frame, "smoke")
    assert text == (studies.findings(found, "smoke") + "\n\nThe loss's derivative along the rotation tangent, "
                    "relative to a random direction on the same pixels: 0.50× at training ε = 0, "
                    "0.25× at training ε = 0.1.")


def test_per_phi_and_nulls_are_the_verdict_pages_two_tables(tables):
    t = {"invariance": gap_table(growth=0.5, model="wong"), "tangent_cosines": tables["tangents"]}
    text = ADV.per_phi_and_nulls(t)
    per_phi, nulls = text.split("\n\n**Nulls for orthogonality.**\n\n")
    assert per_phi == "**Per φ, the ICLR row.**\n\n" + studies.scorecard.markdown(ADV.per_phi(t).round(4), index=False)
    assert nulls == studies.scorecard.markdown(ADV.nulls(t).round(4), index=False)
    assert nulls.splitlines()[0] == "| model | eps_train | perturbation | mean | n |"
    n_eps = tables["tangents"]["eps_train"].nunique()  # the cpu profile's training ε (the synthetic tables')
    assert n_eps == len(ADV.settings("cpu").eps_train)
    assert len(nulls.splitlines()) == 2 + n_eps * 4  # each training ε × the adversarial one and three nulls


# ---------------------------------------------------------------------- the verdict page (scorecard)
class FakeStudy:
    """A study with hand-made rows: what the page's functions ask of a study, and no more."""

    def __init__(self, name, heading, verdicts):
        self.name, self.heading, self.verdicts = name, heading, verdicts

    def read_tables(self, root):
        return {"root": str(root), "models": pd.DataFrame({"family": [self.name]})}

    def settings(self, profile):
        from types import SimpleNamespace

        return SimpleNamespace(profile=profile)  # no AutoAttack settings: it names no attack

    def _rows(self, tables, **columns):
        assert tables["root"] == "results/x"  # each study gets its own tables
        return pd.DataFrame([dict(study=self.name, claim=f"{self.name} {i}", **columns, verdict=v)
                             for i, v in enumerate(self.verdicts)])

    def claims(self, tables):
        return self._rows(tables, paper="p", measured="m", rule="r")

    def rule_history(self, tables):
        return self._rows(tables, rule="r")

    def sensitivity(self, tables):
        return pd.concat([self._rows(tables, factor=f) for f in (0.5, 1.0, 2.0)], ignore_index=True)

    def power(self, tables):
        return self._rows(tables, estimate=0.1, se=0.05, mde=0.2, seeds_needed=12.0, margin=0.05)

    def show_gates(self, models):
        return f"gates of {models['family'].iloc[0]}"


@pytest.fixture
def fake_studies(monkeypatch):
    fakes = [FakeStudy("a", "A (notebook 01)", ["agree", "disagree"]), FakeStudy("b", "B (notebook 02)", ["agree"])]
    monkeypatch.setattr(studies, "all_studies", lambda: fakes)
    return fakes


def test_scorecard_gathers_every_studys_rows_on_its_own_tables(fake_studies):
    sc = studies.scorecard
    tables = sc.read_all("results/x")
    assert list(tables) == ["a", "b"] and tables["b"]["root"] == "results/x"
    rows = sc.claims(tables)
    assert rows["claim"].tolist() == ["a 0", "a 1", "b 0"] and list(rows.index) == [0, 1, 2]
    assert rows["verdict"].tolist() == ["agree", "disagree", "agree"]
    assert sc.rule_history(tables)["study"].tolist() == ["a", "a", "b"]
    assert len(sc.sensitivity(tables)) == 9 and list(sc.sensitivity(tables).index) == list(range(9))
    assert sc.power(tables)["claim"].tolist() == ["a 0", "a 1", "b 0"]


def test_scorecard_sections_per_study(fake_studies):
    sc = studies.scorecard
    rows = sc.claims(sc.read_all("results/x")).assign(key=["k1", "k1", "k2"], kind="paper", versions="ICLR 2020")
    summary = sc.summary(rows, "smoke")
    assert summary.startswith("## Scorecard: distinct claims\n\n" + sc.markdown(sc.counts(rows)) + "\n\n")
    assert ("Of the paper's 2 distinct claims tested at the smoke profile: 1 agree, 1 disagree." in summary)
    assert summary.endswith(sc.fold("Which rows test which distinct claim",
                                    sc.markdown(sc.distinct(rows), index=False)))
    sections = sc.claim_sections(rows, "smoke")
    assert len(sections) == 4 and sections[0] == "## Every claim row"
    assert sections[1].startswith("### A (notebook 01)\n\n| claim | paper | measured | verdict |\n|---|---|---|---|\n"
                                  "| a 0 | p | m | **agree** |\n| a 1 | p | m | **disagree** |\n\n<details>")
    assert "| b 0 | p | m | **agree** |" in sections[2] and "a 0" not in sections[2]
    assert "| claim | rule | verdict |" in sections[2]
    assert studies.STATS_RULE in sections[3] and studies.GATE_RULE in sections[3]
    assert sections[3].endswith("**Claim rows.** 2 of 3 claim rows agree, 1 disagrees, 0 are inconclusive at the "
                                "smoke profile.")
    assert sc.gate_sections(sc.read_all("results/x")) == ["### A (notebook 01)\n\ngates of a",
                                                          "### B (notebook 02)\n\ngates of b"]
    without = sc.read_all("results/x")
    del without["b"]["models"]  # a study with no models table (no quality gates) gets no section
    assert sc.gate_sections(without) == ["### A (notebook 01)\n\ngates of a"]


def test_scorecard_margins_and_power(fake_studies):
    sc = studies.scorecard
    sensitivity = pd.DataFrame([dict(claim=c, factor=f, verdict=v) for c, vs in
                                (("second", ("agree", "agree", "inconclusive")), ("first", ("disagree",) * 3))
                                for f, v in zip((0.5, 1.0, 2.0), vs)])
    table = sc.by_margin(sensitivity)
    assert list(table.index) == ["second", "first"] and list(table.columns) == ["0.5×", "1×", "2×"]
    assert table.loc["second"].tolist() == ["agree", "agree", "inconclusive"]
    power = sc.power(sc.read_all("results/x")).assign(estimate=0.123456)
    text = sc.margins_and_power(sensitivity, power)
    assert text.startswith("**Verdict by margin (× the rule's margin).**\n\n"
                           "| claim | 0.5× | 1× | 2× |\n|---|---|---|---|\n"
                           "| second | agree | agree | inconclusive |\n| first | disagree | disagree | disagree |\n\n")
    assert "<summary>Power of every comparison the rules make</summary>" in text
    assert "| a 0 | 0.1235 | 0.05 | 0.2 | 12 | 0.05 | agree |" in text
