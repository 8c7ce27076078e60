"""Verdicts across full runs of the book: which claim rows kept their verdict when everything was
trained again.

A row's 90% interval covers the seeds and test points of *one* training run. Training the same
recipes again (same code, seeds and data) on another machine does not give the same weights:
float32 training is not bit-reproducible across CPU models (a new VM can have another), nor
across thread counts. A verdict that moves between such runs sits at the edge of its rule, and
the page should say so. The record is a tracked file, :data:`RECORD` (``book/verdict_runs.csv``):
one row per earlier full run and claim row (run, profile, what the run was, claim, verdict,
measured), added with ``python -m invrob.tooling.verdict_runs add``, from the run's
``results/<profile>/verdict.csv`` or from the verdict page of an executed book copy (for runs
made before the record existed). The verdict page shows every recorded run of its profile beside
its own (:func:`across_runs`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvrobError

RECORD = Path("book") / "verdict_runs.csv"  # relative to the working directory the notebooks run in
COLUMNS = ("run", "profile", "how", "claim", "verdict", "measured")
VERDICT_WORDS = ("agree", "disagree", "inconclusive", "not run")


def rows_from_notebook(path: str | Path):
    """The claim rows (claim, verdict, measured) of an executed verdict page (``06_verdict.ipynb``),
    read from its "Every claim row" tables: ``| claim | paper | measured | **verdict** |``."""
    import pandas as pd

    try:
        cells = json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError) as error:
        raise InvrobError(f"{path}: not an executed notebook ({error})") from None
    rows = []
    for cell in cells:
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/markdown", []))
            for line in text.splitlines():
                cells_ = [c.strip() for c in line.strip().strip("|").split(" | ")]
                if len(cells_) == 4 and cells_[3].strip("*") in VERDICT_WORDS and cells_[0] != "claim":
                    rows.append(dict(claim=cells_[0].replace("\\|", "|"), verdict=cells_[3].strip("*"),
                                     measured=cells_[2].replace("\\|", "|")))
    if not rows:
        raise InvrobError(f"{path}: no claim rows found (is it an executed verdict page?)")
    return pd.DataFrame(rows).drop_duplicates("claim")


def read(path: str | Path = RECORD):
    """The record (:data:`COLUMNS`), or ``None`` when there is none."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype=str).fillna("")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InvrobError(f"{path}: not a verdict record (missing column(s) {', '.join(missing)})")
    return frame


def add(rows, run: str, profile: str, how: str, path: str | Path = RECORD):
    """Append one run's claim rows (``claim``, ``verdict``, ``measured``) to the record; a run label
    already in it for that profile is one :class:`InvrobError` line (labels name runs once)."""
    import pandas as pd

    from ..utils import atomic_to_csv

    earlier = read(path)
    if earlier is not None and ((earlier["run"] == run) & (earlier["profile"] == profile)).any():
        raise InvrobError(f"{path} already holds a run '{run}' at the {profile} profile")
    new = rows[["claim", "verdict", "measured"]].assign(run=run, profile=profile, how=how)[list(COLUMNS)]
    frame = new if earlier is None else pd.concat([earlier, new], ignore_index=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_to_csv(frame, path)


def _table(verdict, profile: str, path):
    """``(runs, labels, table, moved, this)``: the record's rows at ``profile``, their run labels (oldest
    first), one row per claim with its verdict in each run and in this one, the claims whose verdict moved,
    and ``this``: the recorded run that is this run, word for word (its label and how it was made), or None."""
    record = read(path)
    runs = record[record["profile"] == profile] if record is not None else None
    this = None
    if runs is not None:  # a recorded run whose rows are this run's, word for word, is this run
        mine = {tuple(r) for r in verdict[["claim", "verdict", "measured"]].astype(str).itertuples(index=False)}
        same = [label for label, rows in runs.groupby("run", sort=False)
                if {tuple(r) for r in rows[["claim", "verdict", "measured"]].itertuples(index=False)} == mine]
        if same:
            this = (same[-1], runs.loc[runs["run"] == same[-1], "how"].iloc[0])
        runs = runs[~runs["run"].isin(same)]
    if runs is None or runs.empty:
        return None, [], None, [], this
    labels = list(dict.fromkeys(runs["run"]))
    table = runs.pivot_table(index="claim", columns="run", values="verdict", aggfunc="first")
    order = list(dict.fromkeys([*verdict["claim"], *runs["claim"]]))  # this run's rows first, in page order
    table = table.reindex(index=order, columns=labels)
    table["this run"] = verdict.set_index("claim")["verdict"].reindex(order)
    table = table.fillna("—")
    moved = [claim for claim, row in table.iterrows() if len({v for v in row if v != "—"}) > 1]
    return runs, labels, table, moved, this


def moved_sentence(verdict, profile: str, path: str | Path = RECORD) -> str:
    """One sentence for under the scorecard: which claim rows changed verdict across the recorded full
    runs of ``profile`` and this one ("" when none is recorded)."""
    runs, labels, table, moved, _ = _table(verdict, profile, path)
    if runs is None:
        return ""
    if not moved:
        return (f"Every claim row kept its verdict across {len(labels) + 1} full runs at the {profile} profile "
                f"({len(labels)} recorded and this one; *Verdicts across runs*).")
    each = "; ".join(f"*{claim}*: " + " → ".join(table.loc[claim]) for claim in moved)
    return (f"**{len(moved)} claim row{'s' if len(moved) != 1 else ''} changed verdict across {len(labels) + 1} "
            f"full runs at the {profile} profile** ({len(labels)} recorded and this one, oldest first; every model "
            f"trained again, the same seeds): {each}. Their verdicts sit at the edge of their rules: see *Verdicts "
            f"across runs*.")


def across_runs(verdict, profile: str, path: str | Path = RECORD) -> str:
    """The verdict page's section: every claim row's verdict in each recorded run of ``profile`` and
    in this one (``verdict``: this run's claim rows), the rows whose verdict moved, and, folded,
    what each run was and the moved rows' measurements run by run (Markdown)."""
    from ..studies.scorecard import fold, markdown

    runs, labels, table, moved, this = _table(verdict, profile, path)
    if runs is None:
        return (f"No earlier full run at the {profile} profile is recorded in `{path}`: this run's verdicts "
                "cannot be set beside another's.")
    table["verdict moved"] = ["yes" if claim in moved else "" for claim in table.index]
    n_runs = len(labels) + 1
    text = (f"**{len(moved)} of {len(table)} claim rows changed verdict across {n_runs} full runs** at the "
            f"{profile} profile (the same recipes, seeds and data, every model trained again; columns: the recorded "
            f"runs, oldest first, then this one). A row's interval covers the seeds and test points of one "
            f"training run, not another training of the same seeds: float32 training is not reproducible bit for "
            f"bit across CPU models or thread counts. A verdict that moved sits at the edge of its rule; read it "
            f"as unsettled at this profile, whatever the latest run says.")
    hows = "\n".join(f"- **{label}**: {runs.loc[runs['run'] == label, 'how'].iloc[0]}" for label in labels)
    if this is not None:
        hows += f"\n- **this run**, recorded as **{this[0]}**: {this[1]}"
    detail = []
    for claim in moved:
        lines = [f"- **{label}** ({table.loc[claim, label]}): "
                 + runs.loc[(runs["run"] == label) & (runs["claim"] == claim), "measured"].squeeze()
                 for label in labels if ((runs["run"] == label) & (runs["claim"] == claim)).any()]
        mine = verdict.loc[verdict["claim"] == claim]
        if len(mine):
            lines.append(f"- **this run** ({mine['verdict'].iloc[0]}): {mine['measured'].iloc[0]}")
        detail.append(f"*{claim}*\n\n" + "\n".join(lines))
    return (text + "\n\n" + markdown(table.rename_axis("claim"), index=True) + "\n\n"
            + fold("The recorded runs, and the moved rows' measurements run by run",
                   hows + ("\n\n" + "\n\n".join(detail) if detail else "")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invrob.tooling.verdict_runs",
                                     description="record a full run's verdicts in book/verdict_runs.csv")
    sub = parser.add_subparsers(dest="command", required=True)
    add_ = sub.add_parser("add", help="append one run's claim rows")
    source = add_.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="the run's results/<profile> folder (its verdict.csv)")
    source.add_argument("--notebook", help="an executed verdict page (06_verdict.ipynb) of the run")
    add_.add_argument("--run", required=True, help="a label naming the run, e.g. its date and commit")
    add_.add_argument("--profile", default="cpu")
    add_.add_argument("--how", required=True, help="what the run was, in a sentence")
    add_.add_argument("--file", default=str(RECORD))
    args = parser.parse_args(argv)
    try:
        if args.results:
            import pandas as pd

            path = Path(args.results) / "verdict.csv"
            if not path.exists():
                raise InvrobError(f"{path} not found: run the verdict page at that profile first")
            rows = pd.read_csv(path)
        else:
            rows = rows_from_notebook(args.notebook)
        add(rows, args.run, args.profile, args.how, args.file)
    except InvrobError as error:
        print(f"invrob: {error}", file=sys.stderr)
        return 2
    print(f"{len(rows)} claim rows of run '{args.run}' added to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
