"""invrob.studies.certified (notebook 07): settings, tables, the claims' rules on tables with known answers.

The rule tests build small synthetic tables (deterministic NumPy generators, 5 seeds so the
bootstrap runs) whose answer is known by construction: a clear effect in the claimed
direction agrees, the opposite disagrees, a tiny effect in seed noise, one seed or a failed
premise is inconclusive, and models the profile did not run make the row "not run".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from invrob import studies
from invrob.errors import InvrobError
from invrob.measures import HEURISTIC_NOTE
from invrob.studies import certified, tradeoff
from invrob.studies.base import NOT_RUN, PROFILES
from invrob.studies.rules import ALPHA
from invrob.studies.certified import CLAIM_RADIUS, MEASURES, TAGS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "07_how_invariant.ipynb"
STUDY = studies.get("certified")
SEEDS = (0, 1, 2, 3, 4)
SHRINKS, COSTS, ORDERS = (c.claim for c in STUDY.paper_claims)


# ---------------------------------------------------------------------- settings and the models reused
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_reuses_models_the_other_chapters_train(profile):
    S = STUDY.settings(profile)
    assert set(S.__dict__) - {"study", "profile"} == set(certified.SETTINGS["smoke"])
    grids = {c.slug() for name in certified.SOURCES
             for c in studies.get(name).configs(studies.get(name).settings(profile))}
    mine = STUDY.configs(S)
    assert mine and {c.slug() for c in mine} <= grids  # nothing new to train
    assert len({c.slug() for c in mine}) == len(mine)  # chapter 03's models, which are 05's too, once
    assert S.certify_size <= S.test_size and S.attack_size <= S.test_size
    # the claims' radius is within what a certificate with n draws can reach
    assert S.sigma * scipy_stats.norm.ppf(S.alpha ** (1 / S.n)) > CLAIM_RADIUS
    assert CLAIM_RADIUS in S.radii
    sources = certified.sources(S)
    assert set(sources.values()) <= {"invariance", "adversarial", "tradeoff", "adversarial+tradeoff"}


def test_cpu_reuses_the_issue_s_models():
    S = STUDY.settings("cpu")
    families = {(c.model, certified.recipe_of(c)) for c in STUDY.configs(S)}
    # rotation ranges stop at 90° at cpu, where the cpu recipes pass the rotation gate (issue 21)
    assert families == {("stdcnn", "natural"), ("stdcnn", "rotation 45°"), ("stdcnn", "rotation 90°"),
                        ("wong", "natural"), ("wong", "adversarial ε=0.1"), ("wong", "adversarial ε=0.2"),
                        ("wong", "adversarial ε=0.3"), ("wong", "rotation 30°"), ("wong", "rotation 90°"), ("wong", "worst-of-10 spatial")}
    assert len(STUDY.configs(S)) == 50


def test_recipe_names_are_chapter_05_s():
    S = tradeoff.STUDY.settings("paper")
    for c in tradeoff.configs(S):
        assert certified.recipe_of(c) == tradeoff.recipe_of(c)


def test_a_model_no_chapter_trains_is_refused_in_one_line():
    with pytest.raises(InvrobError, match=r"chapter 01 \(invariance study\) trains no \('stdcnn', 60.0\) at the "
                                          r"cpu profile") as error:
        STUDY.configs(STUDY.settings("cpu", invariance_models={"stdcnn": [60]}))
    assert "\n" not in str(error.value)
    with pytest.raises(InvrobError, match="trains no seeds"):
        STUDY.configs(STUDY.settings("cpu", seeds=[0, 9]))


# ---------------------------------------------------------------------- measuring one model
def _smooth_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.AvgPool2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 10)).double().eval()


def test_softmax_lie_derivative_is_the_jvp_of_the_softmax(mnist_test):
    from torch.func import jvp

    from invrob.rotations import rotation_tangent

    x = mnist_test[0][:8].double()
    model = _smooth_cnn()
    norm_logits, softmax = certified.lie_norms(model, x, batch_size=3)
    tangent = rotation_tangent(x)
    _, dz = jvp(lambda phi: model(x + phi.view(-1, 1, 1, 1) * tangent), (torch.zeros(8, dtype=x.dtype),),
                (torch.ones(8, dtype=x.dtype),))
    _, dp = jvp(lambda phi: torch.softmax(model(x + phi.view(-1, 1, 1, 1) * tangent), 1),
                (torch.zeros(8, dtype=x.dtype),), (torch.ones(8, dtype=x.dtype),))
    assert torch.allclose(norm_logits, dz.norm(dim=1), rtol=1e-10)
    assert torch.allclose(softmax, dp.abs().mean(1), rtol=1e-8)


def test_measure_model_sees_the_gcnn_s_exact_90_degree_invariance(mnist_test):
    from invrob.models import build_model

    x, y = mnist_test[0][:16], mnist_test[1][:16]
    torch.manual_seed(0)
    row, layers = certified.measure_model(build_model("gcnn_p4").eval(), x, y)
    assert set(row) == {*MEASURES, "n"} and row["n"] == 16
    assert row["invariance_90"] < 1e-4 < 1e-3 < row["invariance_15"]
    assert layers.sort_values("depth")["layer"].iloc[-1] == "logits"
    assert np.isnan(layers.loc[(layers["kind"] == "undefined"), "error"]).all()


# ---------------------------------------------------------------------- synthetic tables
def tags(model="wong", theta=0.0, eps=0.0, seed=0, recipe="natural", source="adversarial+tradeoff"):
    return dict(model=model, dataset="mnist", theta=float(theta), eps_train=float(eps), seed=seed, recipe=recipe,
                source=source)


def centred(gen, sd, n):
    z = gen.normal(0, sd, n) if sd else np.zeros(n)
    return z - z.mean()


def certificates(models, noise=0.02, seeds=SEEDS, n_points=60, rng=0):
    """A certificates table from ``{tags-kwargs tuple: scale}``: point i's certified radius is
    40° · u_i · scale · (1 + z), u_i ~ U(0, 1) shared by every model and seed (the same points),
    z a seed offset (sd ``noise``); every 10th point is misclassified, radii under 2° abstain.
    Certified accuracy at 15° ≈ 0.9 · (1 − 0.375 / scale)."""
    gen = np.random.default_rng(rng)
    u = gen.uniform(0, 1, n_points)
    frames = []
    for key, scale in models.items():
        for s, z in zip(seeds, centred(gen, noise, len(seeds))):
            radius = 40.0 * u * scale * (1 + z)
            abstain = radius < 2.0
            wrong = np.arange(n_points) % 10 == 0
            label = np.arange(n_points) % 10
            prediction = np.where(abstain, -1, np.where(wrong, (label + 1) % 10, label))
            frames.append(pd.DataFrame({**dict(key), "seed": s, "point": np.arange(n_points), "label": label,
                                        "prediction": prediction, "radius": np.where(abstain, np.nan, radius),
                                        "correct": (prediction == label), "abstain": abstain,
                                        "p_lower": np.where(abstain, 0.4, 0.9)}))
    return pd.concat(frames, ignore_index=True)


def robust_points(models, noise=0.02, seeds=SEEDS, n_points=60, eps=0.1, rng=1):
    """A robust_points table from ``{tags-kwargs tuple: scale}``: point i is robust at ``eps`` iff
    v_i · scale · (1 + z) > eps, v_i ~ U(0, 1) shared; AutoAttack accuracy ≈ 1 − eps / scale."""
    gen = np.random.default_rng(rng)
    v = gen.uniform(0, 1, n_points)
    frames = []
    for key, scale in models.items():
        for s, z in zip(seeds, centred(gen, noise, len(seeds))):
            frames.append(pd.DataFrame({**dict(key), "seed": s, "eps": eps, "point": np.arange(n_points),
                                        "robust": (v * scale * (1 + z) > eps).astype(int),
                                        "attack": "APGD-CE+APGD-T"}))
    return pd.concat(frames, ignore_index=True)


def measures(families, noise=0.002, seeds=SEEDS, rng=2):
    """A measures table from ``{(model, recipe): (lie_softmax, rotated_180)}`` (+ seed noise)."""
    gen = np.random.default_rng(rng)
    rows = []
    for (model, recipe), (lie, rot) in families.items():
        for s, a, b in zip(seeds, centred(gen, noise * lie, len(seeds)), centred(gen, noise, len(seeds))):
            rows.append({**tags(model=model, recipe=recipe, source="invariance", seed=s), "clean": 0.99,
                         "rotated_30": 0.95, "rotated_180": rot + b, "lie_logits": 10 * (lie + a),
                         "lie_softmax": lie + a, "invariance_90": 0.5, "invariance_15": 0.2, "n": 500})
    return pd.DataFrame(rows)


def adversarial(scales):
    """Chapter 03's nets (source adversarial+tradeoff) at ε → scale."""
    return {tuple(tags(eps=e, recipe="natural" if e == 0 else f"adversarial ε={e:g}").items()): s
            for e, s in scales.items()}


def rotation(scales):
    """Chapter 05's natural and rotation recipes (source tradeoff) at θ → scale."""
    return {tuple(tags(theta=t, recipe="natural" if t == 0 else f"rotation {t:g}°",
                       source="adversarial+tradeoff" if t == 0 else "tradeoff").items()): s
            for t, s in scales.items()}


def models_of(*frames, autoattack=0.9):
    """A models table for every model the frames tag, every gate passed."""
    tagged = pd.concat([f[list(TAGS)] for f in frames], ignore_index=True).drop_duplicates().reset_index(drop=True)
    return tagged.assign(clean=0.995, n_clean=10000, rotated=0.99, n_rotated=10000, autoattack=autoattack,
                         n_autoattack=100, spatial_drop=0.0, min_stage_epochs=3.0)


def verdict(claim, **tables):
    rows = STUDY.claims(tables).set_index("claim")
    return rows.loc[claim, "verdict"], rows.loc[claim, "measured"]


FAMILIES = [("stdcnn", "natural"), ("stdcnn", "rotation 90°"), ("stdcnn", "rotation 180°"),
            ("wong", "natural"), ("wong", "rotation 30°"), ("wong", "rotation 180°")]


# ---------------------------------------------------------------------- claim (a): certificates against ε
@pytest.mark.parametrize("scales, noise, expected", [
    ({0.0: 1.0, 0.1: 0.8, 0.2: 0.6}, 0.02, "agree"),            # certified accuracy falls at every step
    ({0.0: 0.6, 0.1: 0.8, 0.2: 1.0}, 0.02, "disagree"),         # ... rises
    ({0.0: 1.0, 0.1: 0.999, 0.2: 0.998}, 0.15, "inconclusive"),  # a tiny effect in seed noise
    ({0.0: 1.0, 0.1: 0.6, 0.2: 0.8}, 0.01, "inconclusive"),     # falls, then rises: not progressive
    ({0.0: 0.3, 0.1: 0.2, 0.2: 0.1}, 0.02, "inconclusive"),     # the natural model is at the floor
])
def test_adversarial_training_shrinks_certified_robustness(scales, noise, expected):
    found, measured = verdict(SHRINKS, certificates=certificates(adversarial(scales), noise=noise))
    assert found == expected, measured
    assert f"r = {CLAIM_RADIUS:g}°" in measured
    # the grid stops at ε = 0.2: the row names the paper's ε = 0.3 as not in the run
    assert measured.endswith("training ε above 0.2 (the paper's MNIST grid reaches 0.3): not in this run")


def test_claim_a_one_seed_is_inconclusive_and_no_adversarial_models_not_run():
    one = certificates(adversarial({0.0: 1.0, 0.1: 0.8, 0.2: 0.6}), seeds=(0,))
    assert verdict(SHRINKS, certificates=one)[0] == "inconclusive"
    natural_only = certificates(adversarial({0.0: 1.0}))
    found, measured = verdict(SHRINKS, certificates=natural_only)
    assert found == NOT_RUN and "no adversarially trained models" in measured
    chapter_01_only = certificates({tuple(tags(model="stdcnn", source="invariance").items()): 1.0})
    assert verdict(SHRINKS, certificates=chapter_01_only)[0] == NOT_RUN


# ---------------------------------------------------------------------- claim (b): ℓ∞ against certified rotations
@pytest.mark.parametrize("cert, aa, expected", [
    ({0: 0.6, 30: 0.8, 180: 1.0}, {0: 0.4, 30: 0.3, 180: 0.2}, "agree"),        # certified up, ℓ∞ down
    ({0: 0.6, 30: 0.8, 180: 1.0}, {0: 0.2, 30: 0.3, 180: 0.4}, "disagree"),     # certified up, ℓ∞ up
    ({0: 0.8, 30: 0.8, 180: 0.8}, {0: 0.4, 30: 0.3, 180: 0.2}, "inconclusive"),  # no certified gain: no premise
    ({0: 0.6, 30: 0.8, 180: 1.0}, {0: 0.1, 30: 0.09, 180: 0.08}, "inconclusive"),  # ℓ∞ at the floor
])
def test_rotation_augmentation_costs_linf_against_certified_rotation(cert, aa, expected):
    found, measured = verdict(COSTS, certificates=certificates(rotation(cert)),
                              robust_points=robust_points(rotation(aa)))
    assert found == expected, measured
    assert "AutoAttack-grade accuracy at ε = 0.1" in measured and "not in this run" not in measured


def test_claim_b_says_what_its_rotation_ranges_leave_out():
    """cpu's rotation recipes stop at 90° (where its recipe passes the rotation gate): the row says so."""
    found, measured = verdict(COSTS, certificates=certificates(rotation({0: 0.6, 30: 0.8, 90: 1.0})),
                              robust_points=robust_points(rotation({0: 0.4, 30: 0.3, 90: 0.2})))
    assert found == "agree" and "θ = 0° → 90°" in measured
    assert measured.endswith("rotation ranges beyond 90° (the paper's reach 180°): not in this run")


def test_claim_b_reads_only_chapter_05_s_natural_and_rotation_recipes():
    cert = certificates({**rotation({0: 0.6, 30: 0.8, 180: 1.0}), **adversarial({0.1: 3.0, 0.2: 3.0})})
    # chapter 03's adversarial nets attacked at their own ε too; chapter 01's StdCNNs not attacked
    points = pd.concat([robust_points(rotation({0: 0.4, 30: 0.3, 180: 0.2})),
                        robust_points(adversarial({0.1: 5.0, 0.2: 5.0})),
                        robust_points(adversarial({0.2: 5.0}), eps=0.2)], ignore_index=True)
    assert verdict(COSTS, certificates=cert, robust_points=points)[0] == "agree"
    found, measured = verdict(COSTS, certificates=certificates(rotation({0: 0.6})),
                              robust_points=robust_points(rotation({0: 0.4})))
    assert found == NOT_RUN and "no natural and rotation-augmented recipes" in measured


# ---------------------------------------------------------------------- claim (c): Lie derivative orders models
def test_spearman_and_its_exact_permutation_test():
    assert certified.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert certified.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    up, down = certified.permutation_p([1, 2, 3, 4], [1, 2, 3, 4])
    assert up == pytest.approx(1 / 24) and down == pytest.approx(1.0)
    x = np.arange(10.0)
    up, _ = certified.permutation_p(x, x, n_perm=2000)  # beyond 8 values: random orderings
    assert up == pytest.approx(1 / 2001)
    assert np.isnan(certified.spearman([1, 1, 1], [1, 2, 3]))


def test_rank_agreement_bootstrap_is_the_family_by_family_loop():
    """The Lie row's bootstrap draws every replicate at once: the same draws (family by family,
    replicate by replicate) and the same ρ as the plain loop, also with families of unequal seeds."""
    g = np.random.default_rng(0)
    rows = [dict(model="stdcnn", recipe=f"r{f}", seed=s, lie_softmax=float(g.integers(0, 3)) if f == 2 else g.random(),
                 rotated_180=g.random()) for f, n in enumerate([5, 3, 5, 4, 1]) for s in range(n)]
    frame = pd.DataFrame(rows)
    found = certified.rank_agreement(frame, n_boot=400, seed=2)
    groups = [grp for _, grp in frame.groupby(["model", "recipe"], sort=False)]
    rng, rhos = np.random.default_rng(2), []
    for _ in range(400):
        bx, by = [], []
        for grp in groups:
            pick = rng.integers(0, len(grp), len(grp))
            bx.append(-grp["lie_softmax"].to_numpy()[pick].mean())
            by.append(grp["rotated_180"].to_numpy()[pick].mean())
        rhos.append(scipy_stats.spearmanr(bx, by).statistic)
    rhos = np.asarray(rhos)
    lo, hi = np.quantile(rhos[np.isfinite(rhos)], [ALPHA, 1 - ALPHA])
    assert (found["lo"], found["hi"]) == pytest.approx((lo, hi), abs=1e-12)
    assert found["families"] == 5 and found["rho"] == pytest.approx(
        scipy_stats.spearmanr(-frame.groupby(["model", "recipe"], sort=False)["lie_softmax"].mean(),
                              frame.groupby(["model", "recipe"], sort=False)["rotated_180"].mean()).statistic)


@pytest.mark.parametrize("pairs, expected", [
    ([(0.001 * (k + 1), 0.9 - 0.1 * k) for k in range(6)], "agree"),      # smaller derivative, higher accuracy
    ([(0.001 * (k + 1), 0.4 + 0.1 * k) for k in range(6)], "disagree"),   # the opposite order
    ([(0.001 * (k + 1), 0.5 + 0.05 * (-1) ** k) for k in range(6)], "inconclusive"),  # zigzag: no order
    ([(0.001 * (k + 1), 0.9 - 0.1 * k) for k in range(3)], "inconclusive"),  # 3 families: too few
    ([(0.001, 0.9)], NOT_RUN),                                               # one family: nothing to order
])
def test_the_lie_derivative_orders_the_models(pairs, expected):
    frame = measures(dict(zip(FAMILIES, pairs)))
    found, measured = verdict(ORDERS, measures=frame)
    assert found == expected, measured
    if len(pairs) >= 4:  # beside the rule: the other local measures' ordering (here the logits' is the same)
        rho = certified.spearman([-p[0] for p in pairs], [p[1] for p in pairs])
        assert f"shown, not the rule: −(logit Lie derivative) vs rotated accuracy ρ = {rho:+.2f}" in measured
        assert "clean accuracy ρ" not in measured  # clean accuracy is the same for every family here: no ρ


def test_the_lie_row_shows_how_much_of_its_order_is_confidence():
    """The softmax's Lie derivative shrinks as a model grows confident: the row shows ρ against clean accuracy."""
    frame = measures(dict(zip(FAMILIES, [(0.001 * (k + 1), 0.9 - 0.1 * k) for k in range(6)])))
    frame["clean"] = 1.0 - frame["lie_softmax"]  # the more confident, the smaller the derivative
    assert "−(softmax Lie derivative) vs clean accuracy ρ = +1.00" in verdict(ORDERS, measures=frame)[1]


# ---------------------------------------------------------------------- all claims, gates, text
def _all_tables():
    # the natural net is chapter 03's and chapter 05's: one model, both claims read it
    cert = certificates({**adversarial({0.0: 1.0, 0.1: 0.8, 0.2: 0.6}), **rotation({30: 1.2, 180: 1.5})})
    points = pd.concat([robust_points(rotation({0: 0.4, 30: 0.3, 180: 0.2})),
                        robust_points(adversarial({0.1: 1.0, 0.2: 1.0}))], ignore_index=True)
    meas = measures(dict(zip(FAMILIES, [(0.001 * (k + 1), 0.9 - 0.1 * k) for k in range(6)])))
    return dict(certificates=cert, robust_points=points, measures=meas,
                models=models_of(cert, points, meas))


def test_every_claim_on_one_set_of_tables_and_the_gates():
    tables = _all_tables()
    rows = STUDY.claims(tables).set_index("claim")
    assert list(rows.index) == [SHRINKS, COSTS, ORDERS]
    assert dict(rows["verdict"]) == {SHRINKS: "agree", COSTS: "agree", ORDERS: "agree"}
    assert set(rows["gates"]) == {"pass"}
    assert dict(rows["kind"]) == {SHRINKS: "paper", COSTS: "paper", ORDERS: "ours"}
    assert rows.loc[SHRINKS, "key"] == "adversarial training lowers spatial robustness progressively"
    assert rows.loc[COSTS, "key"] == "rotation augmentation costs ℓ∞ robustness"
    assert rows.loc[SHRINKS, "versions"] == rows.loc[COSTS, "versions"] == "NeurIPS 2021"
    # a weak adversarial net makes the rows that read it inconclusive, and only those
    models = tables["models"].copy()
    models.loc[models["eps_train"] == 0.2, "autoattack"] = 0.5
    rows = STUDY.claims({**tables, "models": models}).set_index("claim")
    assert rows.loc[SHRINKS, "verdict"] == "inconclusive" and rows.loc[SHRINKS, "rule_alone"] == "agree"
    assert rows.loc[SHRINKS, "measured"].startswith("models below gate (Wong net, adversarial ε=0.2: AutoAttack")
    assert rows.loc[COSTS, "verdict"] == "agree" and rows.loc[COSTS, "gates"] == "pass"
    # a claim whose models did not run is "not run", gates or not
    only = {k: v for k, v in tables.items() if k != "robust_points"}
    only["certificates"] = tables["certificates"][tables["certificates"]["source"] == "tradeoff"]
    rows = STUDY.claims(only).set_index("claim")
    assert rows.loc[SHRINKS, "verdict"] == NOT_RUN and rows.loc[SHRINKS, "gates"] == "—"
    text = studies.findings(STUDY.claims(tables), "cpu")
    assert text.count("**agree**") == 3


def test_the_certificate_is_called_heuristic_where_it_is_used():
    S = STUDY.settings("cpu")
    assert HEURISTIC_NOTE in certified.certificate_note(S)
    assert "36.5°" in certified.certificate_note(S)  # σ Φ⁻¹(α^(1/n)) with σ = 20°, n = 200, α = 0.001
    for claim in (SHRINKS, COSTS):
        assert "heuristic" in next(c.rule for c in STUDY.paper_claims if c.claim == claim)


def test_tables_have_their_schemas():
    tables = _all_tables()
    for name in ("certificates", "robust_points", "measures", "models"):
        STUDY.check(name, tables[name])
    assert {t.name for t in STUDY.tables} == {"measures", "layers", "certificates", "certified", "robust_points",
                                              "models"}
    assert all(t.notebook == "07_how_invariant" for t in STUDY.tables)
    assert set(STUDY.claim_tables()) == {"measures", "certificates", "robust_points", "models"}
    with pytest.raises(InvrobError, match="lacks column"):
        STUDY.check("measures", tables["measures"].drop(columns="lie_softmax"))
    frame = certified.pareto_frame(tables["certificates"], tables["robust_points"])
    # every chapter-05 model: its natural and adversarial nets are chapter 03's too
    assert set(frame["recipe"]) == {"natural", "rotation 30°", "rotation 180°", "adversarial ε=0.1",
                                    "adversarial ε=0.2"}
    assert {"certified", "autoattack"} <= set(frame.columns) and len(frame) == 25


# ---------------------------------------------------------------------- the notebook
def _cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def test_the_notebook_only_calls_the_study_and_the_plots():
    cells = _cells()
    code = [c for c in cells if c["cell_type"] == "code"]
    for cell in code:
        source = "".join(cell["source"])
        for banned in ("def ", "for ", ".groupby(", ".merge(", "lambda", "import torch"):
            assert banned not in source, f"{banned!r} in cell {cell['id']}"
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert all(c.get("id") for c in cells) and len({c["id"] for c in cells}) == len(cells)
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and 'profile = "cpu"' in "".join(tagged[0]["source"])
    closing = "".join(code[-1]["source"])
    assert "study.claims(" in closing and "studies.findings(found, profile)" in closing
    assert "hide-input" in code[-1]["metadata"]["tags"]
    for name in STUDY.claim_tables():
        assert f'"{name}": {name}' in closing
    everything = "".join("".join(c["source"]) for c in code)
    for table in STUDY.tables:
        assert f'study.save("{table.name}"' in everything
    figures = [c for c in code if "plots.save(" in "".join(c["source"])]
    assert len(figures) == 4 and all("hide-input" in c["metadata"]["tags"] for c in figures)
    assert NOTEBOOK.read_text().endswith("}\n")


def test_the_toc_lists_the_chapter_before_the_verdict():
    toc = (REPO / "_toc.yml").read_text()
    assert toc.index("book/experiments/05_tradeoff") < toc.index("book/experiments/07_how_invariant") \
        < toc.index("book/experiments/06_verdict")
