"""Rendering claim rows: Markdown tables, a chapter's closing sentences, the bottom line."""
from __future__ import annotations

from typing import Iterable

from .base import NOT_RUN, POST_HOC, VERDICTS


def markdown_table(rows, columns: Iterable[str] = ("claim", "paper", "measured", "rule", "verdict")) -> str:
    """The claim rows as a Markdown table (pipes escaped), verdicts in bold."""
    columns = list(columns)

    def cell(name, value):
        text = " ".join(str(value).split()).replace("|", "\\|")
        return f"**{text}**" if name == "verdict" else text
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for _, row in rows.iterrows()]
    return "\n".join(lines)


def bottom_line(rows, profile: str) -> str:
    """``"2 of 5 claim rows agree, 1 disagrees, 2 are inconclusive at the smoke profile."``

    Rows whose claim is marked :data:`POST_HOC` are exploratory: not counted, only named.
    """
    post_hoc = rows["claim"].str.contains(POST_HOC, regex=False)
    counts = rows.loc[~post_hoc, "verdict"].value_counts()
    agree, disagree, unsure = (int(counts.get(v, 0)) for v in VERDICTS)
    not_run = int(counts.get(NOT_RUN, 0))
    total = int((~post_hoc).sum())
    extra = int(post_hoc.sum())
    return (f"{agree} of {total} claim row{'s' if total != 1 else ''} "
            f"agree{'s' if agree == 1 else ''}, "
            f"{disagree} disagree{'s' if disagree == 1 else ''}, "
            f"{unsure} {'is' if unsure == 1 else 'are'} inconclusive"
            + (f", {not_run} {'was' if not_run == 1 else 'were'} not run" if not_run else "")
            + f" at the {profile} profile"
            + (f" (and {extra} post-hoc row{'s' if extra != 1 else ''}, exploratory, not counted)." if extra
               else "."))


def findings(rows, profile: str) -> str:
    """A chapter's closing sentence(s) from its claim rows: the verdict words, the rule, the measurement."""
    parts = [f"**{row['verdict']}** — {row['claim']}. Measured: {row['measured']}. Rule: {row['rule']}"
             for _, row in rows.iterrows()]
    return f"This run ({profile} profile), against the paper's claims (the same rules as the verdict page):\n\n" \
        + "\n".join(f"- {p}" for p in parts)


def shown(value) -> str:
    """Readable cell text: None means the whole split; lists as written; floats shortly."""
    if value is None:
        return "all"
    if isinstance(value, float):
        if 0 < value < 0.05 and abs(value * 255 - round(value * 255)) < 1e-6:
            return f"{round(value * 255)}/255"  # CIFAR-10 budgets are quoted in 1/255 steps
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {shown(v)}" for k, v in value.items()) or "defaults"
    return str(value)
