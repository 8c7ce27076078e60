"""invrob.studies: one home per study — tables, schemas and the paper's claims, judged once.

The chapters' closing cells and the verdict page both call ``Study.claims``; the
first test runs the real cells of the notebooks on one set of synthetic tables and
checks that they print the same verdicts.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from invrob import studies
from invrob.errors import InvrobError
from invrob.studies import adversarial, invariance
from invrob.studies.base import bottom_line, combine, markdown_table

REPO = Path(__file__).resolve().parent.parent
INV, ADV = studies.get("invariance"), studies.get("adversarial")


# ---------------------------------------------------------------------- hand-made tables
def tags(model, theta=0, eps_train=0.0, seed=0):
    return dict(model=model, dataset="mnist", theta=theta, eps_train=eps_train, seed=seed)


def rotated(values, level="theta", n=100):
    """A rotated-accuracy table from {(model, level value, seed, φ): accuracy}."""
    return pd.DataFrame([{**tags(m, **{level: v}, seed=s), "phi": phi, "accuracy": a, "n": n}
                         for (m, v, s, phi), a in values.items()])


def robustness(values, n=64):
    """{(model, θ, seed, ε): accuracy} → a robustness table."""
    return pd.DataFrame([{**tags(m, theta=t, seed=s), "eps": e, "accuracy": a, "n": n}
                         for (m, t, s, e), a in values.items()])


def distance_summary(values):
    """{(model, θ, norm): (mean, low, high)} → a distance summary."""
    return pd.DataFrame([{"model": m, "dataset": "mnist", "theta": t, "eps_train": 0.0, "norm": norm,
                          "n": 50, "n_unbroken": 0, "n_seeds": 1, "mean": mean, "mean_low": lo,
                          "mean_high": hi, "median": mean, "median_low": lo, "median_high": hi}
                         for (m, t, norm), (mean, lo, hi) in values.items()])


def cosines(excess_by_seed, k=10, eps_train=(0.0, 0.1)):
    """subspace_cosines where adversarial vs rotation lies ``excess`` above the support-random baseline."""
    rows = []
    for seed, excess in excess_by_seed.items():
        for e in eps_train:
            for comparison, value in [("adversarial vs rotation", 0.2 + excess),
                                      ("adversarial vs adversarial", 0.8), ("random vs random", 0.1),
                                      ("support-random vs rotation", 0.2)]:
                rows.append({**tags("lenet", eps_train=e, seed=seed), "comparison": comparison, "k": k,
                             "mean_cosine": value, "max_cosine": value})
    return pd.DataFrame(rows)


def gap_table(gaps, clean=0.95):
    """{(eps_train, seed, φ): gap} (φ > 0) → a rotated-accuracy table with its gap."""
    values = {}
    for (e, s, phi), g in gaps.items():
        values[("lenet", e, s, 0)] = clean
        values[("lenet", e, s, phi)] = clean - g
    return adversarial.add_gap(rotated(values, level="eps_train"))


def synthetic():
    """One consistent set of every table the chapters' closing cells and the verdict read."""
    models, seeds = ["stdcnn", "gcnn_p4"], [0, 1]
    inv = rotated({(m, t, s, phi): (0.98 if phi == 0 else (0.9 if t == 180 else 0.3) + 0.01 * s)
                   for m, t, s, phi in itertools.product(models, [0, 180], seeds, [0, 90, 180])})
    rob = robustness({(m, t, s, e): {0.0: 0.98, 0.05: 0.7, 0.1: 0.4, 0.3: 0.0}[e]
                      - (0.01 * s if m == "stdcnn" else 0.0)
                      - (0.25 if t == 180 and e > 0 and m == "stdcnn" else 0.0)  # StdCNN drops; GCNN flat
                      for m, t, s, e in itertools.product(models, [0, 180], seeds, [0.0, 0.05, 0.1, 0.3])})
    dist = distance_summary({("stdcnn", 0, "linf"): (0.10, 0.09, 0.11), ("stdcnn", 180, "linf"): (0.06, 0.05, 0.07),
                             ("stdcnn", 0, "l2"): (1.5, 1.4, 1.6), ("stdcnn", 180, "l2"): (1.1, 1.0, 1.2),
                             ("gcnn_p4", 0, "linf"): (0.10, 0.09, 0.11), ("gcnn_p4", 180, "linf"): (0.07, 0.06, 0.08),
                             ("gcnn_p4", 0, "l2"): (1.5, 1.4, 1.6), ("gcnn_p4", 180, "l2"): (1.2, 1.1, 1.3)})
    masking1 = pd.DataFrame([{**tags(m, theta=t), "eps": 0.1, "attack": a, "accuracy": 0.4 - 0.01 * i, "n": 32}
                             for m in models for t in (0, 180) for i, a in enumerate(["PGD-5", "PGD-10x2", "APGD"])])
    inv3 = gap_table({(e, s, phi): 0.02 * phi / 90 + (0.15 * phi / 180 if e == 0.3 else 0)
                      for e in (0.0, 0.3) for s in seeds for phi in (90, 180)})
    masking3 = pd.DataFrame([{**tags("lenet", eps_train=e), "eps": 0.3, "attack": a, "accuracy": 0.5, "n": 32}
                             for e in (0.0, 0.3) for a in ["PGD-5", "PGD-10x2", "APGD"]])
    geo = cosines({0: 0.01, 1: 0.02}, eps_train=(0.0, 0.3))
    aa1 = pd.DataFrame([{**row, "attack": attack, "components": "apgd-ce+apgd-t" if attack == "AutoAttack" else "",
                         "accuracy": row["accuracy"] - (0.05 if attack == "AutoAttack" else 0.0)}
                        for m in models for row in rob[(rob["model"] == m)
                                                       & rob["eps"].isin(INV.informative_eps(rob, m))]
                        .to_dict("records") for attack in ("PGD-5", "AutoAttack")])
    return dict(inv=inv, rob=rob, dist=dist, masking1=masking1, aa1=aa1, inv3=inv3, masking3=masking3, geo=geo)


# ---------------------------------------------------------------------- chapters vs verdict page
def closing_cell(notebook: str) -> str:
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    return "".join([c for c in cells if "hide-input" in c.get("metadata", {}).get("tags", [])][-1]["source"])


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
    """``{claim: verdict}`` from the verdict page's Markdown tables (claim first, verdict last)."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0] != "claim" and cells[4].startswith("**"):
            found[cells[0]] = cells[4].strip("*")
    return found


def test_chapters_and_verdict_page_give_the_same_verdicts(tmp_path):
    from types import SimpleNamespace

    from invrob import plots

    t = synthetic()
    common = dict(plots=plots, studies=studies, profile="smoke")
    s1 = SimpleNamespace(thetas=[0, 180], models=["stdcnn", "gcnn_p4"], seeds=[0, 1], phis=[0, 90, 180],
                         pgd_steps=5)
    s3 = SimpleNamespace(eps_train=[0.0, 0.3], models=["lenet"], seeds=[0, 1], phis=[0, 90, 180], pca_k=[1, 5, 10])
    chapters = {}
    chapters.update(chapter_verdicts(run_cell(closing_cell("01_invariance_vs_robustness"), dict(
        common, study=INV, S=s1, invariance=t["inv"], robustness=t["rob"], autoattack=t["aa1"],
        budgets={m: INV.informative_eps(t["rob"], m) for m in s1.models}))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("02_decision_boundary_distance"),
                                              dict(common, study=INV, summary=t["dist"]))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("03_robustness_vs_invariance"), dict(
        common, study=ADV, S=s3, invariance=t["inv3"], masking=t["masking3"], eps_check=0.3))))
    chapters.update(chapter_verdicts(run_cell(closing_cell("04_perturbation_geometry"),
                                              dict(common, study=ADV, S=s3, geometry=t["geo"]))))

    # the tables as the notebooks write them, read back by the verdict page's own cells
    for study, name, frame in [(INV, "invariance", t["inv"]), (INV, "robustness", t["rob"]), (INV, "autoattack", t["aa1"]),
                               (INV, "distance_summary", t["dist"]), (ADV, "invariance", t["inv3"]),
                               (ADV, "subspace_cosines", t["geo"])]:
        (tmp_path / study.table(name).notebook).mkdir(exist_ok=True)
        study.save(name, frame, tmp_path / study.table(name).notebook)
    cells = json.loads((REPO / "notebooks" / "05_verdict.ipynb").read_text())["cells"]
    page = [c for c in cells if "hide-input" in c.get("metadata", {}).get("tags", [])]
    namespace = dict(profile="smoke", results_root=str(tmp_path))
    text = "\n".join(run_cell("".join(c["source"]), namespace) for c in page)

    expected = {"Rotation augmentation improves invariance": "agree",
                "… but not ℓ∞ robustness: it drops on MNIST": "inconclusive",  # GCNN flat → inconclusive
                "Boundary distance shrinks as θ grows": "agree",
                "Adversarial training leaves rotation invariance unchanged": "disagree",
                "Adversarial and small-rotation perturbations are nearly orthogonal": "agree"}
    assert chapters == expected
    assert verdict_page_verdicts(text) == expected
    assert "1 disagrees, 1 is inconclusive at the smoke profile" in text
    assert (tmp_path / "verdict.csv").exists() and "rule" in pd.read_csv(tmp_path / "verdict.csv")


def test_verdict_page_names_the_missing_table_and_its_notebook(tmp_path):
    with pytest.raises(InvrobError, match=r"distance_summary\.csv is missing: run "
                                          r"notebooks/02_decision_boundary_distance\.ipynb") as error:
        (tmp_path / "01_invariance_vs_robustness").mkdir()
        INV.save("invariance", synthetic()["inv"], tmp_path / "01_invariance_vs_robustness")
        INV.save("robustness", synthetic()["rob"], tmp_path / "01_invariance_vs_robustness")
        INV.read_tables(tmp_path)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------- each rule, known answers
def one(study, **tables):
    rows = study.claims(tables)
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.parametrize("at_lo, at_hi, verdict", [
    ({0: 0.30}, {0: 0.90}, "agree"),
    ({0: 0.90}, {0: 0.30}, "disagree"),
    ({0: 0.50}, {0: 0.51}, "inconclusive"),                 # inside the 0.02 tolerance
    ({0: 0.30, 1: 0.30}, {0: 0.70, 1: 0.20}, "inconclusive"),  # +0.15 mean, seeds +0.4 / −0.1: spread 0.5
    ({0: 0.30, 1: 0.32}, {0: 0.70, 1: 0.71}, "agree"),          # +0.395 mean, spread 0.01
])
def test_invariance_rule(at_lo, at_hi, verdict):
    values = {("stdcnn", 0, s, 180): a for s, a in at_lo.items()}
    values |= {("stdcnn", 180, s, 180): a for s, a in at_hi.items()}
    values |= {("stdcnn", t, s, 0): 0.99 for t in (0, 180) for s in at_lo}
    row = one(INV, invariance=rotated(values))
    assert row["verdict"] == verdict
    assert ("1 seed: no spread" in row["measured"]) == (len(at_lo) == 1) and "StdCNN" in row["measured"]


@pytest.mark.parametrize("lo, hi, verdict", [
    ({0.05: 0.8, 0.1: 0.4, 0.3: 0.0}, {0.05: 0.6, 0.1: 0.2, 0.3: 0.0}, "agree"),
    ({0.05: 0.8, 0.1: 0.4, 0.3: 0.0}, {0.05: 0.9, 0.1: 0.6, 0.3: 0.0}, "disagree"),
    ({0.05: 0.8, 0.1: 0.4, 0.3: 0.0}, {0.05: 0.81, 0.1: 0.4, 0.3: 0.0}, "inconclusive"),
    # ε = 0.3 is broken at θ = 0 (accuracy 0): its rise is no evidence; ε = 0.1 decides
    ({0.05: 0.95, 0.1: 0.5, 0.3: 0.0}, {0.05: 0.95, 0.1: 0.3, 0.3: 0.6}, "agree"),
    ({0.05: 0.95, 0.1: 0.05, 0.3: 0.0}, {0.05: 0.95, 0.1: 0.5, 0.3: 0.5}, "inconclusive"),  # none informative
])
def test_robustness_rule_uses_only_informative_budgets(lo, hi, verdict):
    table = robustness({("gcnn_p4", t, 0, e): a for t, acc in [(0, lo), (180, hi)] for e, a in acc.items()})
    row = one(INV, robustness=table)
    assert row["verdict"] == verdict and "GCNN (p4)" in row["measured"]
    if verdict != "inconclusive" or lo[0.1] > 0.1:
        assert "0.3" not in row["measured"].split("ε ∈")[1].split("}")[0]


def test_robustness_rule_counts_the_seed_spread():
    # mean change −0.05 (beyond 0.02) but seeds −0.2 / +0.1: spread 0.3 → inconclusive
    table = robustness({("stdcnn", 0, 0, 0.1): 0.5, ("stdcnn", 0, 1, 0.1): 0.5,
                        ("stdcnn", 180, 0, 0.1): 0.3, ("stdcnn", 180, 1, 0.1): 0.6})
    row = one(INV, robustness=table)
    assert row["verdict"] == "inconclusive" and "seed spread 30.0%, 2 seeds" in row["measured"]


@pytest.mark.parametrize("lo, hi, verdict", [
    ((0.10, 0.09, 0.11), (0.06, 0.05, 0.07), "agree"),
    ((0.10, 0.09, 0.11), (0.14, 0.12, 0.16), "disagree"),
    ((0.10, 0.08, 0.12), (0.09, 0.07, 0.11), "inconclusive"),  # CIs overlap
])
def test_distance_rule_compares_bootstrap_intervals(lo, hi, verdict):
    row = one(INV, distance_summary=distance_summary({("stdcnn", 0, "linf"): lo, ("stdcnn", 180, "linf"): hi}))
    assert row["verdict"] == verdict and f"[{lo[1]:.3f}, {lo[2]:.3f}]" in row["measured"]


@pytest.mark.parametrize("gaps, verdict, says", [
    ({(0.0, 0, 180): 0.30, (0.3, 0, 180): 0.31}, "agree", "ICLR 2020"),
    ({(0.0, 0, 180): 0.30, (0.3, 0, 180): 0.50}, "disagree", "arXiv v1"),
    ({(0.0, 0, 180): 0.30, (0.3, 0, 180): 0.10}, "disagree", "neither"),
    # Δ = +0.03 ≤ 0.05, but the seeds' changes (+0.01, +0.05) spread 0.04: 2 × 0.04 > 0.05
    ({(0.0, 0, 180): 0.30, (0.3, 0, 180): 0.31, (0.0, 1, 180): 0.30, (0.3, 1, 180): 0.35},
     "inconclusive", "too wide"),
    # Δ = +0.08 > 0.05, but within 2 × spread (seeds +0.0, +0.16): not a clear change either way
    ({(0.0, 0, 180): 0.30, (0.3, 0, 180): 0.30, (0.0, 1, 180): 0.30, (0.3, 1, 180): 0.46},
     "inconclusive", "margin 32.0%"),
])
def test_gap_rule_states_which_version_the_data_supports(gaps, verdict, says):
    row = one(ADV, invariance=gap_table(gaps))
    assert row["verdict"] == verdict and says in row["measured"]


@pytest.mark.parametrize("excess, verdict", [
    ({0: 0.01}, "agree"), ({0: 0.2}, "disagree"),
    ({0: 0.0, 1: 0.1}, "inconclusive"),  # mean excess 0.05, seeds 0.0 and 0.1
    ({0: 0.0, 1: 0.02}, "agree"),
])
def test_orthogonality_rule_uses_the_support_random_baseline(excess, verdict):
    row = one(ADV, subspace_cosines=cosines(excess))
    assert row["verdict"] == verdict and "k = 10" in row["measured"]


def test_orthogonality_rule_falls_back_to_the_largest_k():
    row = one(ADV, subspace_cosines=cosines({0: 0.2}, k=5))
    assert "k = 5" in row["measured"] and row["verdict"] == "disagree"


def test_several_models_combine_one_way():
    assert combine(["agree", "agree"]) == "agree"
    assert combine(["agree", "inconclusive"]) == "inconclusive"
    assert combine(["agree", "disagree", "inconclusive"]) == "disagree"
    assert combine([]) == "inconclusive"


# ---------------------------------------------------------------------- tables and schemas
def test_add_gap_on_a_hand_made_table():
    table = rotated({("lenet", 0.0, 0, 0): 0.9, ("lenet", 0.0, 0, 90): 0.6, ("lenet", 0.0, 0, 180): 0.5,
                     ("lenet", 0.1, 0, 0): 0.8, ("lenet", 0.1, 0, 90): 0.7, ("lenet", 0.1, 1, 0): 0.7,
                     ("lenet", 0.1, 1, 90): 0.2}, level="eps_train")
    out = adversarial.add_gap(table)
    assert "gap" not in table and list(out.columns) == [*table.columns, "gap"]
    assert out["gap"].round(9).tolist() == [0.0, 0.3, 0.4, 0.0, 0.1, 0.0, 0.5]


def test_add_gap_needs_the_unrotated_reference():
    table = rotated({("lenet", 0.0, 0, 90): 0.6}, level="eps_train")
    with pytest.raises(InvrobError, match="φ = 0"):
        adversarial.add_gap(table)


def test_schema_refuses_a_table_without_a_required_column():
    table = synthetic()["inv3"].drop(columns="gap")
    with pytest.raises(InvrobError, match="03_robustness_vs_invariance/invariance.csv .* lacks column"
                                          r"\(s\) gap") as error:
        ADV.claims({"invariance": table})
    assert "\n" not in str(error.value)
    with pytest.raises(InvrobError, match="is empty"):
        INV.check("robustness", synthetic()["rob"].iloc[:0])


def test_claims_need_at_least_one_judgeable_table():
    with pytest.raises(InvrobError, match="no claim of the invariance study can be judged"):
        INV.claims({"cifar10_invariance": synthetic()["inv"]})


def test_every_study_names_real_notebooks_and_unique_tables():
    assert list(studies.STUDIES) == ["invariance", "adversarial"]
    for study in studies.all_studies():
        for notebook in study.notebooks:
            assert (REPO / "notebooks" / f"{notebook}.ipynb").exists(), notebook
        assert {t.notebook for t in study.tables} <= set(study.notebooks)
        assert study.claim_tables() and len(study.paper_claims) >= 2
    assert INV.claim_tables() == ["invariance", "robustness", "autoattack", "distance_summary"]
    with pytest.raises(InvrobError, match="unknown study 'tradeoff'"):
        studies.get("tradeoff")


def test_markdown_table_and_bottom_line():
    rows = pd.DataFrame([dict(claim="a | b", paper="p", measured="m", rule="r", verdict="agree"),
                         dict(claim="c", paper="p", measured="m", rule="r", verdict="inconclusive")])
    text = markdown_table(rows)
    assert "a \\| b" in text and "**inconclusive**" in text and text.count("\n") == 3
    assert bottom_line(rows, "cpu") == "1 of 2 claims agrees, 0 disagree, 1 is inconclusive at the cpu profile."


def test_robustness_rule_reads_autoattack_where_the_chapter_ran_it():
    """PGD overstates robustness: where AutoAttack numbers exist for both ends of the θ grid at every
    informative ε, claim (b) is judged on them; with an end missing it falls back to PGD."""
    pgd = robustness({("stdcnn", 0, 0, 0.1): 0.50, ("stdcnn", 180, 0, 0.1): 0.50})  # PGD: no change
    def autoattack(values):
        return pd.DataFrame([{**tags(m, theta=t, seed=s), "eps": e, "attack": attack, "components": "",
                              "accuracy": a, "n": 64} for (m, t, s, e, attack), a in values.items()])
    aa = autoattack({("stdcnn", 0, 0, 0.1, "AutoAttack"): 0.40, ("stdcnn", 180, 0, 0.1, "AutoAttack"): 0.20,
                     ("stdcnn", 0, 0, 0.1, "PGD-5"): 0.50, ("stdcnn", 180, 0, 0.1, "PGD-5"): 0.50})
    row = one(INV, robustness=pgd, autoattack=aa)
    assert row["verdict"] == "agree" and "AutoAttack at ε ∈ {0.1}: 40.0% → 20.0%" in row["measured"]
    partial = aa[aa["theta"] == 0]
    row = one(INV, robustness=pgd, autoattack=partial)
    assert row["verdict"] == "inconclusive" and "PGD at ε" in row["measured"]
