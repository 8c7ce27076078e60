"""Verdicts across full runs (invrob.tooling.verdict_runs): the record, and the verdict page's table."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from invrob.errors import InvrobError
from invrob.tooling import verdict_runs as vr


def page(rows) -> dict:
    """An executed verdict page whose claim tables hold ``rows`` of (claim, measured, verdict)."""
    table = "| claim | paper | measured | verdict |\n|---|---|---|---|\n" + "\n".join(
        f"| {c} | the paper says | {m} | **{v}** |" for c, m, v in rows)
    rules = "| claim | rule | verdict |\n|---|---|---|\n" + "\n".join(f"| {c} | a rule | **{v}** |" for c, _, v in rows)
    return {"cells": [{"cell_type": "code", "outputs": [{"data": {"text/markdown": [table + "\n\n" + rules]}}]}]}


def verdicts(pairs) -> pd.DataFrame:
    return pd.DataFrame([dict(claim=c, verdict=v, measured=f"{c} measured {v}") for c, v in pairs])


def test_rows_come_back_from_an_executed_page(tmp_path):
    path = tmp_path / "06_verdict.ipynb"
    path.write_text(json.dumps(page([("A", "Δ +1% [0, 2]", "agree"), ("B", "x \\| y", "not run")])))
    rows = vr.rows_from_notebook(path)
    assert rows.to_dict("records") == [dict(claim="A", verdict="agree", measured="Δ +1% [0, 2]"),
                                       dict(claim="B", verdict="not run", measured="x | y")]
    (tmp_path / "other.ipynb").write_text(json.dumps({"cells": []}))
    with pytest.raises(InvrobError, match="no claim rows found"):
        vr.rows_from_notebook(tmp_path / "other.ipynb")
    (tmp_path / "broken.ipynb").write_text("{not json")
    with pytest.raises(InvrobError, match="not an executed notebook"):
        vr.rows_from_notebook(tmp_path / "broken.ipynb")


def test_record_adds_runs_once_and_the_page_shows_which_verdicts_moved(tmp_path):
    record = tmp_path / "runs.csv"
    assert vr.across_runs(verdicts([("A", "agree")]), "cpu", record).startswith("No earlier full run at the cpu")
    vr.add(verdicts([("A", "agree"), ("B", "agree"), ("C", "inconclusive")]), "first", "cpu", "from scratch", record)
    vr.add(verdicts([("A", "agree"), ("B", "inconclusive"), ("C", "inconclusive")]), "second", "cpu", "again", record)
    vr.add(verdicts([("A", "disagree")]), "first", "smoke", "a smoke run", record)  # another profile: not shown at cpu
    with pytest.raises(InvrobError, match="already holds a run 'second' at the cpu profile"):
        vr.add(verdicts([("A", "agree")]), "second", "cpu", "twice", record)
    now = verdicts([("A", "agree"), ("B", "inconclusive"), ("C", "disagree"), ("D", "not run")])
    text = vr.across_runs(now, "cpu", record)
    assert text.startswith("**2 of 4 claim rows changed verdict across 3 full runs** at the cpu profile")
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0] == "| claim | first | second | this run | verdict moved |"
    assert "| A | agree | agree | agree |  |" in lines
    assert "| B | agree | inconclusive | inconclusive | yes |" in lines
    assert "| C | inconclusive | inconclusive | disagree | yes |" in lines
    assert "| D | — | — | not run |  |" in lines                    # a row the earlier runs did not have
    assert "**first**: from scratch" in text and "- **this run** (disagree): C measured disagree" in text
    assert "a smoke run" not in text
    # once this run is recorded too, the page shows it once, as this run, and says which record it is
    vr.add(now, "third", "cpu", "this one", record)
    recorded = vr.across_runs(now, "cpu", record)
    assert recorded.replace("\n- **this run**, recorded as **third**: this one", "") == text
    assert "\n- **this run**, recorded as **third**: this one" in recorded
    assert vr.moved_sentence(now, "cpu", record) == (
        "**2 claim rows changed verdict across 3 full runs at the cpu profile** (2 recorded and this one, oldest "
        "first; every model trained again, the same seeds): *B*: agree → inconclusive → inconclusive; *C*: inconclusive → "
        "inconclusive → disagree. Their verdicts sit at the edge of their rules: see *Verdicts across runs*.")
    steady = verdicts([("A", "agree"), ("B", "inconclusive"), ("C", "inconclusive")])
    assert vr.moved_sentence(steady, "cpu", tmp_path / "absent.csv") == ""   # nothing recorded: no sentence
    assert "Every claim row kept its verdict" in vr.moved_sentence(
        verdicts([("A", "disagree")]).assign(measured="measured again"), "smoke", record)


def test_a_record_without_its_columns_is_one_line(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text("run,claim\nx,A\n")
    with pytest.raises(InvrobError, match="not a verdict record"):
        vr.across_runs(verdicts([("A", "agree")]), "cpu", bad)


def test_cli_adds_from_a_results_folder_and_says_what_is_missing(tmp_path, capsys):
    results = tmp_path / "results" / "cpu"
    assert vr.main(["add", "--results", str(results), "--run", "r", "--how", "h", "--file", str(tmp_path / "r.csv")]) == 2
    assert "verdict.csv not found" in capsys.readouterr().err
    results.mkdir(parents=True)
    verdicts([("A", "agree")]).assign(study="s").to_csv(results / "verdict.csv", index=False)
    assert vr.main(["add", "--results", str(results), "--run", "r", "--how", "h", "--file", str(tmp_path / "r.csv")]) == 0
    assert vr.read(tmp_path / "r.csv")[["run", "profile", "claim", "verdict"]].values.tolist() == [["r", "cpu", "A", "agree"]]


def test_the_books_record_is_a_valid_record():
    from pathlib import Path

    record = vr.read(Path(__file__).resolve().parent.parent / vr.RECORD)
    assert record is not None and set(record["verdict"]) <= set(vr.VERDICT_WORDS)
    assert record.groupby(["profile", "run"])["claim"].apply(lambda c: c.is_unique).all()
