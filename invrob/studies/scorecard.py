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

This module only reads claim rows (``verdict.csv``'s columns); it computes no verdict. The
page's other functions gather every study's tables and rows (:func:`read_all`, :func:`claims`,
:func:`rule_history`, :func:`sensitivity`, :func:`power`: each study's own, in the order of
:func:`~invrob.studies.all_studies`) and lay out its sections (:func:`summary`,
:func:`claim_sections`, :func:`margins_and_power`, :func:`gate_sections`).
"""
from __future__ import annotations

from .base import GATE_RULE, KINDS, MODELS, NOT_RUN, OUTCOMES, POST_HOC
from .render import bottom_line, markdown_table
from .rules import COMBINE_RULE, PROGRESSIVE_RULE, STATS_RULE, combine

VERSIONS = ("ICLR 2020", "arXiv v1", "NeurIPS 2021")
KIND_TITLES = {"mechanism": "mechanisms the paper offers", "ours": "our own claims",
               "external": "another paper's result"}


def distinct(rows) -> "pandas.DataFrame":
    """One row per distinct claim (``key``), in page order: key, kind, versions, rows (how many
    claim rows test it), verdict, verdicts (each row's, in order), and ``rule after data``: "yes"
    where a row its verdict counts is judged by a rule chosen after the data had been seen (its
    ``rule_set`` marked post hoc; the page's rule history gives its verdict under every rule)."""
    import pandas as pd

    out = []
    for key, group in rows.groupby("key", sort=False):
        counted = group[~group["claim"].str.contains(POST_HOC, regex=False)]
        ran = counted[counted["verdict"] != NOT_RUN]
        verdict = NOT_RUN if ran.empty else combine(ran["verdict"])
        versions = sorted({v.strip() for vs in group["versions"].fillna("") for v in str(vs).split(";") if v.strip()},
                          key=lambda v: VERSIONS.index(v) if v in VERSIONS else len(VERSIONS))
        after = "rule_set" in ran and ran["rule_set"].fillna("").str.contains(POST_HOC, regex=False).any()
        out.append(dict(key=key, kind=group["kind"].iloc[0], versions="; ".join(versions), rows=len(group),
                        verdict=verdict, verdicts=", ".join(group["verdict"]),
                        **{"rule after data": "yes" if after else ""}))
    return pd.DataFrame(out, columns=["key", "kind", "versions", "rows", "verdict", "verdicts", "rule after data"])


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
    text = (f"Of the paper's {n} distinct claim{'s' if n != 1 else ''} tested at the {profile} profile: "
            + ", ".join(parts) + ". Mechanisms, our own claims and other papers' results are counted apart.")
    measured = rows["measured"] if "measured" in rows else [""] * len(rows)
    scoped = {key for key, m in zip(rows["key"], measured) if "not in this run" in str(m)}
    ran = table[(table["kind"] == "paper") & (table["verdict"] != NOT_RUN)]
    k = int(ran["key"].isin(scoped).sum())
    if k:  # e.g. cpu: no p4 GCNN, rotation ranges up to 90°, the Wong net in LeNet's place
        text += (f" {k} of the paper's claims that ran {'rests' if k == 1 else 'rest'} on part of what the paper "
                 f"speaks about: {'its rows name' if k == 1 else 'their rows name'} the families or ranges this run "
                 "leaves out.")
    late = table[(table["verdict"] != NOT_RUN) & (table["rule after data"] == "yes")]
    if len(late):
        text += (f" {len(late)} of the distinct claims with a verdict ({', '.join(late['key'])}) "
                 f"{'is' if len(late) == 1 else 'are'} judged by a rule chosen after the data had been seen "
                 "(*rule after data* below; *Rules, and how they changed* gives the verdict under every rule).")
    mixed = table[(table["verdict"] != NOT_RUN)
                  & table["verdicts"].apply(lambda v: len(set(v.split(", ")) - {NOT_RUN}) > 1)]
    if len(mixed):  # the rows of one distinct claim combine as a claim about several models does
        text += (f" {len(mixed)} distinct claim{' has' if len(mixed) == 1 else 's have'} rows whose verdicts differ ("
                 + "; ".join(f"{k}: {v}" for k, v in zip(mixed["key"], mixed["verdicts"])) + "): a distinct claim "
                 "agrees only if every row of it that ran agrees, and disagrees if any row disagrees (no correction "
                 "for the number of rows).")
    return text


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
        "seeds_needed": "seeds for 80% power"})


# ------------------------------------------------------------ the verdict page: every study

def _studies():
    from . import all_studies  # here, not at the top: the package's __init__ imports this module

    return all_studies()


def read_all(root) -> dict:
    """Every study's tables under ``root`` (``results/<profile>``), by study name
    (:meth:`Study.read_tables`: a missing table is named with the notebook that writes it)."""
    return {study.name: study.read_tables(root) for study in _studies()}


def _each(tables: dict, method: str) -> "pandas.DataFrame":
    """``method``'s rows of every study, each on its own tables (:func:`read_all`), one below another."""
    import pandas as pd

    return pd.concat([getattr(study, method)(tables[study.name]) for study in _studies()], ignore_index=True)


def claims(tables: dict) -> "pandas.DataFrame":
    """Every study's claim rows (:meth:`Study.claims`), judged on its own tables: the page's verdict."""
    return _each(tables, "claims")


def rule_history(tables: dict) -> "pandas.DataFrame":
    """Every study's rule history (:meth:`Study.rule_history`)."""
    return _each(tables, "rule_history")


def sensitivity(tables: dict) -> "pandas.DataFrame":
    """Every study's verdicts at other margins (:meth:`Study.sensitivity`)."""
    return _each(tables, "sensitivity")


def power(tables: dict) -> "pandas.DataFrame":
    """The power of every comparison every study's rules make (:meth:`Study.power`)."""
    return _each(tables, "power")


def summary(rows, profile: str) -> str:
    """The page's scorecard section: its heading, :func:`counts` as a table, :func:`sentence`, and,
    folded, which rows test which distinct claim (:func:`distinct`)."""
    return ("## Scorecard: distinct claims\n\n" + markdown(counts(rows)) + "\n\n" + sentence(rows, profile)
            + "\n\n" + fold("Which rows test which distinct claim", markdown(distinct(rows), index=False)))


def claim_sections(rows, profile: str) -> list[str]:
    """The page's claim rows, one Markdown section each: the heading, then per study its heading, its
    rows (claim, paper, measured, verdict) and, folded, their rules; last, folded, how the intervals are
    computed and rules combine, and the bottom line (:func:`~invrob.studies.render.bottom_line`)."""
    sections = ["## Every claim row"]
    for study in _studies():
        mine = rows[rows["study"] == study.name]
        sections.append(f"### {study.heading}\n\n" + markdown_table(mine, ("claim", "paper", "measured", "verdict"))
                        + "\n\n" + fold("The rules of these rows", markdown_table(mine, ("claim", "rule", "verdict"))))
    sections.append(fold("How every interval is computed, and how rules combine",
                         f"{STATS_RULE} {COMBINE_RULE} {GATE_RULE} {PROGRESSIVE_RULE} {attack_rule(profile)}")
                    + f"\n\n**Claim rows.** {bottom_line(rows, profile)}")
    return sections


def attack_name(settings) -> str:
    """The ℓ∞ attack behind a study's robust accuracies (:func:`~invrob.studies.rules.autoattack_of`), in words."""
    if not hasattr(settings, "aa_attacks"):  # a study that measures no robust accuracy
        return ""
    if settings.aa_attacks is None:
        return "AutoAttack's standard ensemble (APGD-CE, APGD-T with 9 target classes, FAB-T, Square)"
    parts = [name.upper() + (f" on the {settings.aa_targets} most likely target classes"
                             if name.endswith("-t") and settings.aa_targets else "") for name in settings.aa_attacks]
    steps = settings.aa_steps or 100
    return f"AutoAttack's {' and '.join(parts)}, {steps} iterations each"


def attack_rule(profile: str) -> str:
    """What every row's “AutoAttack-grade” robust accuracy is at ``profile``, study by study."""
    names: dict[str, list[str]] = {}
    for study in _studies():
        name = attack_name(study.settings(profile))
        if name:
            names.setdefault(name, []).append(study.heading)
    if not names:
        return ""
    which = "; ".join(f"{name} ({', '.join(headings)})" for name, headings in names.items()) if len(names) > 1 \
        else f"{next(iter(names))}, in every study"
    return (f"Every robust accuracy a row reads (“AutoAttack-grade”, or the attack's own name) is ℓ∞ at the "
            f"{profile} profile: {which}; the cheap versions are checked against the standard ensemble in "
            f"tests/test_autoattack.py and tools/attack_agreement.py (benchmarks/attack_agreement_*.csv).")


def by_margin(verdicts) -> "pandas.DataFrame":
    """:func:`sensitivity`'s rows as a table: one row per claim (in page order), its verdict at each
    margin factor (columns ``0.5×``, ``1×``, ``2×``)."""
    table = verdicts.pivot_table(index="claim", columns="factor", values="verdict", aggfunc="first", sort=False)
    return table.rename(columns="{:g}×".format)


def margins_and_power(verdicts, powers) -> str:
    """The page's margins section: every row's verdict by margin (``verdicts``: :func:`sensitivity`'s
    rows, :func:`by_margin`), then, folded, the power of every comparison (``powers``: :func:`power`'s
    rows, :func:`power_table`, to 4 decimals)."""
    return ("**Verdict by margin (× the rule's margin).**\n\n" + markdown(by_margin(verdicts)) + "\n\n"
            + fold("Power of every comparison the rules make", markdown(power_table(powers.round(4)), index=False)))


def gate_sections(tables: dict) -> list[str]:
    """The page's models, one Markdown section per study: its heading and its gate table
    (:meth:`Study.show_gates` of its ``models`` table). A study without a ``models`` table (one
    added without quality gates, say) has no section."""
    return [f"### {study.heading}\n\n" + study.show_gates(tables[study.name][MODELS]) for study in _studies()
            if tables[study.name].get(MODELS) is not None]


__all__ = ["KINDS", "VERSIONS", "by_margin", "claim_sections", "claims", "counts", "distinct", "fold", "gate_sections",
           "history_markdown", "history_table", "margins_and_power", "markdown", "power", "power_table", "read_all",
           "rule_history", "sensitivity", "sentence", "summary"]
