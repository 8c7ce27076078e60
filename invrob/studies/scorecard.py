"""The verdict page's scorecard: distinct claims, by version of the paper, and the tables beside it.

The claim rows of the studies (:meth:`~invrob.studies.base.Study.claims`) are measurements;
several of them can test one claim (the NeurIPS version's trade-off re-measured in chapter 05,
the spatial claim measured with three attacks), and not all of them are the paper's claims
(the mechanisms the paper offers, our own additions, another paper's result). The scorecard
counts each distinct claim once, from its rows:

- a distinct claim's verdict is :func:`~invrob.studies.rules.combine` over its rows that ran and
  whose claim is not marked post hoc (agree only if every one agrees, disagree if any
  disagrees); **not run** where none of its rows ran at this profile (a fourth outcome, not
  "inconclusive": nothing was measured);
- paper claims are counted once per version of the paper that makes them (ICLR 2020, arXiv v1,
  NeurIPS 2021); mechanisms, our own claims and external results are counted apart.

This module only reads claim rows (``verdict.csv``'s columns); it computes no verdict.
"""
from __future__ import annotations

from .base import KINDS, NOT_RUN, OUTCOMES, POST_HOC
from .rules import combine

VERSIONS = ("ICLR 2020", "arXiv v1", "NeurIPS 2021")
KIND_TITLES = {"mechanism": "mechanisms the paper offers", "ours": "our own claims",
               "external": "another paper's result"}


def distinct(rows) -> "pandas.DataFrame":
    """One row per distinct claim (``key``), in page order: key, kind, versions, rows (how many
    claim rows test it), verdict, verdicts (each row's, in order)."""
    import pandas as pd

    out = []
    for key, group in rows.groupby("key", sort=False):
        counted = group[~group["claim"].str.contains(POST_HOC, regex=False)]
        ran = counted[counted["verdict"] != NOT_RUN]
        verdict = NOT_RUN if ran.empty else combine(ran["verdict"])
        versions = sorted({v.strip() for vs in group["versions"].fillna("") for v in str(vs).split(";") if v.strip()},
                          key=lambda v: VERSIONS.index(v) if v in VERSIONS else len(VERSIONS))
        out.append(dict(key=key, kind=group["kind"].iloc[0], versions="; ".join(versions), rows=len(group),
                        verdict=verdict, verdicts=", ".join(group["verdict"])))
    return pd.DataFrame(out, columns=["key", "kind", "versions", "rows", "verdict", "verdicts"])


def counts(rows) -> "pandas.DataFrame":
    """The scorecard: per version of the paper (its distinct claims) and per other kind, how many
    distinct claims agree, disagree, are inconclusive and were not run. Rows: 'ICLR 2020', 'arXiv v1',
    'NeurIPS 2021', then the other kinds present; columns: :data:`OUTCOMES` and 'claims'."""
    import pandas as pd

    table = distinct(rows)
    lines = {}
    paper = table[table["kind"] == "paper"]
    for version in VERSIONS:
        mine = paper[paper["versions"].str.split("; ").apply(lambda vs, v=version: v in vs)]
        if len(mine):
            lines[f"{version}: the paper's claims"] = mine["verdict"].value_counts()
    for kind, title in KIND_TITLES.items():
        mine = table[table["kind"] == kind]
        if len(mine):
            lines[title[0].upper() + title[1:]] = mine["verdict"].value_counts()
    frame = pd.DataFrame(lines).T.reindex(columns=list(OUTCOMES)).fillna(0).astype(int)
    frame["claims"] = frame.sum(axis=1)
    return frame.rename_axis("distinct claims")


def sentence(rows, profile: str) -> str:
    """"Of the paper's 5 distinct claims, ..." — the scorecard in one sentence."""
    table = distinct(rows)
    paper = table[table["kind"] == "paper"]["verdict"].value_counts()
    n = int(paper.sum())
    parts = [f"{int(paper.get(v, 0))} {w}" for v, w in (("agree", "agree"), ("disagree", "disagree"),
                                                        ("inconclusive", "inconclusive"), (NOT_RUN, "not run"))
             if paper.get(v, 0)]
    return (f"Of the paper's {n} distinct claim{'s' if n != 1 else ''} tested at the {profile} profile: "
            + ", ".join(parts) + ". Mechanisms, our own claims and other papers' results are counted apart.")


def markdown(frame, index: bool = True) -> str:
    """A small DataFrame as a Markdown table (pipes escaped)."""
    cols = list(frame.columns)
    head = ([frame.index.name or ""] if index else []) + [str(c) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in frame.iterrows():
        cells = ([str(idx)] if index else []) + [_cell(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        text = "—" if value != value else f"{value:.4g}"
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def fold(summary: str, body: str) -> str:
    """A collapsed section (HTML ``<details>``, which Jupyter Book renders as a fold)."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def history_table(history) -> "pandas.DataFrame":
    """:meth:`Study.rule_history` rows as the page shows them: one row per claim and rule (the current
    rule by name only: its full text is the claim row's)."""
    shown = history.assign(rule=[("**current** (the rule in the claim's row)" if c else r)
                                 + (" *(post hoc)*" if p else "")
                                 for r, c, p in zip(history["rule"], history["current"], history["post_hoc"])])
    return shown[["claim", "rule", "set", "why", "rule_alone", "verdict"]].rename(
        columns={"rule_alone": "by the rule alone", "verdict": "after the gates"})


GATE_RULE_SET = ("The gate rule (the `gates` column: a claim reading a model below its quality gate is inconclusive) "
                 "was added on 2026-12-05, after weak models had been seen; every row says what its rule alone "
                 "would have said.")


def history_markdown(history) -> str:
    """The verdict page's rule history: the claims that have had more than one rule (every rule, its
    verdict by the rule alone and after the gates), then, folded, when each other claim's one rule
    was set."""
    several = history.groupby("claim", sort=False)["rule"].transform("size") > 1
    single = history[~several]
    once = single[["claim", "set", "post_hoc", "verdict"]].assign(
        post_hoc=["yes" if p else "" for p in single["post_hoc"]]).rename(
        columns={"set": "rule set", "post_hoc": "post hoc", "verdict": "verdict"})
    return (markdown(history_table(history[several]), index=False) + "\n\n" + GATE_RULE_SET + "\n\n"
            + fold(f"The {len(once)} claim rows that have had one rule", markdown(once, index=False)))


def power_table(power, most: int = 999) -> "pandas.DataFrame":
    """:meth:`Study.power` rows as the page shows them: seeds needed above ``most`` as "> most",
    none (no change measured, or a change outside its margin) as "—"."""
    import math

    def needed(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"> {most}" if v > most else f"{int(v)}"
    shown = power.assign(seeds_needed=[needed(v) for v in power["seeds_needed"]],
                         margin=["—" if m is None or m != m else f"{m:.4g}" for m in power["margin"]])
    return shown.drop(columns="study").rename(columns={
        "estimate": "change measured", "se": "bootstrap SE", "mde": "detectable at these seeds",
        "seeds_needed": "seeds needed"})


__all__ = ["KINDS", "VERSIONS", "counts", "distinct", "fold", "history_markdown", "history_table", "markdown", "power_table",
           "sentence"]
