"""What a study is: settings per profile, a training grid, its tables, and the paper's claims it tests.

A *study* is a question of the paper answered by one or more notebooks. Everything
the notebooks, the verdict page and the tests must agree on lives on its
:class:`Study` object, written once:

- ``profile_settings``: its settings at each profile (:data:`PROFILES`);
- :meth:`Study.configs`: its training grid at a profile;
- ``tables``: the :class:`Table` s its notebooks write (file, notebook, required
  columns), checked when written (:meth:`Study.save`) and read (:meth:`Study.read_tables`);
- ``paper_claims``: the :class:`Claim` s of the paper it tests, each with its decision
  rule; :meth:`Study.claims` judges them on the tables and returns one row per claim.

A chapter's closing cell and the verdict page both call :meth:`Study.claims`, so they
cannot disagree. Verdicts are ``agree``, ``disagree`` or ``inconclusive``: a change
that lies inside the seed spread (or a confidence interval) of the quantity decides
nothing, and says so.

This module imports neither torch nor pandas at import time: :mod:`invrob.profiles`
(and through it the sweep's validation) reads the settings without paying for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Mapping

from ..errors import InvrobError, check_choice, check_eps, check_theta
from ..stats import VERDICTS
from .options import collecting, using
from .rules import ALPHA

PROFILES = ("smoke", "cpu", "gpu", "paper")
PHIS = list(range(0, 181, 15))  # test-time rotation ranges φ (degrees) of the cpu and paper profiles
NOT_RUN = "not run"  # a fourth outcome: the models a claim needs were not trained at this profile
OUTCOMES = (*VERDICTS, NOT_RUN)
KINDS = {"paper": "a claim of a version of the paper", "mechanism": "an explanation the paper offers",
         "ours": "our own addition", "external": "another paper's result the book tests beside it"}
CLAIM_COLUMNS = ("study", "claim", "paper", "measured", "rule", "verdict", "gates", "key", "kind", "versions",
                 "rule_alone", "rule_set")
POST_HOC = "(post hoc)"  # in a claim's name: a row added after seeing the data it judges
MODELS = "models"  # the table every study with quality gates writes: one row per trained model
GATE_RULE = ("Every model a claim reads must pass its quality gates (invrob.gates: each anchored on a published "
             "number, judged on the mean over seeds); a claim that reads a model × recipe below a gate is "
             "inconclusive (models below gate), whatever its own rule says, and the row names the gate and what "
             "the rule alone would say.")


@dataclass(frozen=True)
class Table:
    """A result table a study's notebook writes: ``results/<profile>/<notebook>/<name>.csv``.

    ``columns`` are the ones every reader may rely on (derived ones included, e.g.
    the invariance gap); a table may carry more.
    """
    name: str
    notebook: str
    columns: tuple[str, ...]
    may_be_empty: bool = False

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    def path(self, results_root) -> Path:
        return Path(results_root) / self.notebook / self.file

    def check(self, frame, study: str = ""):
        """Return ``frame`` if it has every required column and a row; else one InvrobError line."""
        where = f"{self.notebook}/{self.file}" + (f" of the {study} study" if study else "")
        missing = [c for c in self.columns if c not in getattr(frame, "columns", ())]
        if missing:
            raise InvrobError(f"table {where} lacks column(s) {', '.join(missing)}; "
                              f"it needs {', '.join(self.columns)}")
        if len(frame) == 0 and not self.may_be_empty:
            raise InvrobError(f"table {where} is empty")
        return frame


@dataclass(frozen=True)
class Rule:
    """A decision rule a claim has had (or is shown beside its current one), as data.

    ``options`` are what the claim's judge reads through :func:`option` while this rule
    is applied (e.g. ``{"per_phi": False}``: the averaged form of a per-φ rule); the same
    judge computes every rule's verdict, so a history row is measured, never typed.
    ``post_hoc``: the rule was chosen after the data it judges had been seen.
    """
    name: str
    text: str
    set_when: str
    why: str
    options: Mapping = field(default_factory=dict)
    post_hoc: bool = False


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how a study judges it.

    ``judge(tables)`` reads the tables named in ``needs`` (and those in ``uses``
    when they are given) and returns
    ``(measured, verdict)``: our measurement as text, with its seed spread or CI,
    and one of :data:`OUTCOMES` by the rule stated in ``rule``.

    What the scorecard of distinct claims needs: ``key`` names the claim a row tests
    (rows with one key — the same claim measured twice — count once), ``kind`` one of
    :data:`KINDS`, ``versions`` the versions of the paper that make it. The rule's own
    record: ``options`` (what the judge reads through :func:`option` under the current
    rule), ``rule_set`` (when and why it was fixed), ``post_hoc_rule`` (chosen after the
    data it judges was seen) and ``history``: the claim's other rules (:class:`Rule`),
    earlier or shown beside it, each judged on the same tables by :meth:`Study.rule_history`.
    ``margins``: the judge reads ``option("margin_factor")`` (:meth:`Study.sensitivity`).
    """
    claim: str
    paper: str
    rule: str
    needs: tuple[str, ...]
    judge: Callable[[Mapping], tuple[str, str]]
    uses: tuple[str, ...] = ()  # tables read when given (a stronger measurement), not required
    reads: Callable | None = None  # models-table rows (a mask) the claim reads; None: every model
    key: str = ""
    kind: str = "paper"
    versions: tuple[str, ...] = ()
    options: Mapping = field(default_factory=dict)
    rule_set: str = "before the first 5-seed cpu run"
    post_hoc_rule: bool = False
    history: tuple[Rule, ...] = ()
    margins: bool = False

    def models_read(self, models):
        """The rows of a study's ``models`` table this claim's verdict rests on."""
        return models if self.reads is None else models[self.reads(models).to_numpy(dtype=bool)]

    def current_rule(self) -> Rule:
        return Rule("current", self.rule, self.rule_set, "", self.options, self.post_hoc_rule)

    def judge_with(self, tables: Mapping, options: Mapping | None = None) -> tuple[str, str]:
        """``judge(tables)`` under ``options`` (default: the current rule's)."""
        with using(self.options if options is None else options):
            measured, verdict = self.judge(tables)
        check_choice(verdict, OUTCOMES, "verdict")
        return measured, verdict


class Study:
    """Base of every study; a study module defines a subclass and one instance, ``STUDY``.

    Subclasses set ``name``, ``title``, ``notebooks`` (in run order),
    ``profile_settings`` (profile → settings dict), ``tables`` (a tuple of
    :class:`Table`) and ``paper_claims`` (a tuple of :class:`Claim`), and
    implement :meth:`configs`.
    """
    name: str = ""
    title: str = ""
    notebooks: tuple[str, ...] = ()
    profile_settings: dict[str, dict] = {}
    tables: tuple[Table, ...] = ()
    paper_claims: tuple[Claim, ...] = ()
    gates: tuple = ()  # the quality gates (invrob.gates.Gate) of the models its claims read
    reuses: dict[str, str] = {}  # notebook → whose models it reuses (the verdict page's cost table)

    def __init__(self):
        missing = [p for p in PROFILES if p not in self.profile_settings]
        if missing:
            raise InvrobError(f"the {self.name} study defines no settings for profile(s) {', '.join(missing)}")
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise InvrobError(f"the {self.name} study names a table twice: {names}")
        for claim in self.paper_claims:
            unknown = [n for n in claim.needs if n not in names]
            if unknown:
                raise InvrobError(f"claim {claim.claim!r} of the {self.name} study needs unknown table(s) "
                                  f"{', '.join(unknown)}")

    def __repr__(self) -> str:
        return f"<study {self.name!r}: notebooks {', '.join(self.notebooks)}>"

    @property
    def heading(self) -> str:
        """How the verdict page names the study: its title and notebook numbers."""
        numbers = ", ".join(n[:2] for n in self.notebooks)
        return f"{self.title} (notebook{'s' if len(self.notebooks) > 1 else ''} {numbers})"

    # ------------------------------------------------------------------ settings and grid
    def settings(self, profile: str, **overrides) -> SimpleNamespace:
        """The settings at ``profile``; non-``None`` overrides win.

        Unknown profiles or setting names, θ outside [0, 180] and ε < 0 are
        refused with one :class:`InvrobError` line.
        """
        check_choice(profile, PROFILES, "profile")
        values = dict(self.profile_settings[profile])
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in values:
                raise InvrobError(f"unknown setting {name!r} for the {self.name} study; "
                                  f"valid: {', '.join(values)}")
            values[name] = value
        def every(name):  # a setting may be one list or a {model: list} map
            value = values.get(name, [])
            return [v for vs in value.values() for v in vs] if isinstance(value, dict) else list(value)
        for theta in [*every("thetas"), *every("phis")]:
            check_theta(theta)
        for eps in [*every("eps_grid"), *every("eps_train")]:
            check_eps(eps)
        return SimpleNamespace(study=self.name, profile=profile, **values)

    def configs(self, settings, dataset: str = "mnist") -> list:
        """The training grid (a list of :class:`~invrob.train.TrainConfig`) at ``settings``."""
        raise NotImplementedError

    def settings_table(self):
        """Every setting (rows) at every profile (columns), as the notebooks run them."""
        import pandas as pd

        from .render import shown

        columns = {profile: {name: shown(value) for name, value in self.profile_settings[profile].items()}
                   for profile in PROFILES}
        return pd.DataFrame(columns).fillna("—").rename_axis(f"{self.name} setting")

    # ------------------------------------------------------------------ tables
    def table(self, name: str) -> Table:
        check_choice(name, [t.name for t in self.tables], f"table of the {self.name} study")
        return next(t for t in self.tables if t.name == name)

    def check(self, name: str, frame):
        """``frame`` if it meets table ``name``'s schema; else one :class:`InvrobError` line."""
        return self.table(name).check(frame, self.name)

    def save(self, name: str, frame, output_dir) -> Path:
        """Check ``frame`` against table ``name`` and write it atomically to ``output_dir/<name>.csv``."""
        from ..utils import atomic_to_csv

        table = self.table(name)
        return atomic_to_csv(table.check(frame, self.name), Path(output_dir) / table.file)

    def claim_tables(self) -> list[str]:
        """The tables :meth:`claims` reads, in the order the notebooks write them."""
        needed = {n for claim in self.paper_claims for n in (*claim.needs, *claim.uses)}
        if self.gates:
            needed.add(MODELS)
        return [t.name for t in self.tables if t.name in needed]

    def read_tables(self, results_root, names: Iterable[str] | None = None) -> dict:
        """Read (and check) the tables :meth:`claims` needs from ``results_root`` (``results/<profile>``).

        A missing file is one :class:`InvrobError` line naming it and the notebook
        that writes it: the verdict only reads, it never computes a missing table.
        """
        import pandas as pd

        root = Path(results_root)
        required = {n for claim in self.paper_claims for n in claim.needs} | ({MODELS} if self.gates else set())
        tables = {}
        for name in (self.claim_tables() if names is None else list(names)):
            table = self.table(name)
            path = table.path(root)
            if not path.exists() and names is None and name not in required:
                continue  # an optional, stronger measurement (Claim.uses) this run did not make
            if not path.exists():
                raise InvrobError(f"{path} is missing: run notebooks/{table.notebook}.ipynb at the "
                                  f"{root.name} profile first (make notebooks PROFILE={root.name})")
            tables[name] = table.check(pd.read_csv(path), self.name)
        return tables

    # ------------------------------------------------------------------ quality gates
    def models_table(self, trained, size=None, data_root=None, **measured):
        """The study's ``models`` table (one row per trained model, what its gates read):
        :func:`invrob.experiments.models_table` on the **whole** test split of the models'
        dataset (``size``: a fixed subset of that many points, the ``gate_size`` setting — the
        smoke profile's only); ``measured``: what else it reads (``robust_points``, ``history``,
        ``spatial_points``, ``recipes``)."""
        from .. import experiments as ex

        x, y = ex.subset(*ex.test_split(trained[0][0].dataset, data_root), size)
        return ex.models_table(trained, x, y, **measured)

    def show_gates(self, models) -> str:
        """The chapter's "are the models good enough?" table (Markdown) and the gate rule."""
        from .. import gates as quality

        table = self.gate_table(models)
        failed = int((~table["passed"].astype(bool)).sum())
        summary = (f"All {len(table)} gates pass." if not failed else
                   f"**{failed} of {len(table)} gates fail**: every claim that reads those models is "
                   f"inconclusive (models below gate).")
        return quality.markdown(table) + "\n\n" + summary + " " + GATE_RULE

    def gate_table(self, models):
        """Every family × recipe of ``models`` (the study's ``models`` table) against each of its
        :attr:`gates`: :func:`invrob.gates.gate_table`."""
        from .. import gates as quality

        return quality.gate_table(self.check(MODELS, models), self.gates)

    # ------------------------------------------------------------------ claims
    def _gated(self, claim: Claim, verdict: str, measured: str, models, gate_rows) -> tuple[str, str, str]:
        """``(verdict, gates, measured)`` after the gate rule (:data:`GATE_RULE`)."""
        from .. import gates as quality

        gated = "no gates" if not self.gates else "not checked (no models table)"
        if verdict == NOT_RUN:
            return verdict, "—", measured
        if gate_rows is not None:
            failed = quality.failed_for(gate_rows, claim.models_read(models))
            gated = "pass" if not failed else "below gate: " + "; ".join(failed)
            if failed:
                measured = (f"models below gate ({'; '.join(failed)}); the rule alone would say "
                            f"{verdict}. {measured}")
                verdict = "inconclusive"
        return verdict, gated, measured

    def _judged(self, tables: Mapping):
        """The claims whose tables are given, with the models table and its gate rows."""
        for name, frame in tables.items():
            self.check(name, frame)
        models = tables.get(MODELS) if self.gates else None
        gate_rows = self.gate_table(models) if models is not None else None
        return [c for c in self.paper_claims if all(n in tables for n in c.needs)], models, gate_rows

    def rule_history(self, tables: Mapping) -> "pandas.DataFrame":
        """Every claim's verdict under each rule it has had (its current one first, then its
        :attr:`Claim.history`), each computed by the same judge on the same tables: by the rule
        alone and after the gate rule. Columns: study, claim, rule, set, why, post_hoc, rule_alone,
        verdict, current."""
        import pandas as pd

        claims, models, gate_rows = self._judged(tables)
        rows = []
        for claim in claims:
            for rule in (claim.current_rule(), *claim.history):
                measured, alone = claim.judge_with(tables, rule.options)
                verdict, _, _ = self._gated(claim, alone, measured, models, gate_rows)
                rows.append(dict(study=self.name, claim=claim.claim, rule=rule.text if rule.name == "current"
                                 else f"{rule.name}: {rule.text}", set=rule.set_when, why=rule.why,
                                 post_hoc=rule.post_hoc, rule_alone=alone, verdict=verdict,
                                 current=rule.name == "current"))
        return pd.DataFrame(rows, columns=["study", "claim", "rule", "set", "why", "post_hoc", "rule_alone",
                                           "verdict", "current"])

    def sensitivity(self, tables: Mapping, factors=(0.5, 1.0, 2.0)) -> "pandas.DataFrame":
        """Each margin-based claim's verdict (by its rule alone) with its margins scaled by each of
        ``factors``. Columns: study, claim, factor, verdict."""
        import pandas as pd

        claims, _, _ = self._judged(tables)
        rows = [dict(study=self.name, claim=claim.claim, factor=float(f),
                     verdict=claim.judge_with(tables, {**claim.options, "margin_factor": float(f)})[1])
                for claim in claims if claim.margins for f in factors]
        return pd.DataFrame(rows, columns=["study", "claim", "factor", "verdict"])

    def power(self, tables: Mapping, power: float = 0.8) -> "pandas.DataFrame":
        """For every paired comparison each claim's current rule makes (:func:`bootstrap_change`):
        the change measured, its bootstrap standard error, the minimal detectable effect at the
        run's seeds (one-sided level 0.05, the given power: :func:`invrob.trend.minimal_detectable_effect`)
        and how many seeds the rule would need to decide an effect of the size measured — to show
        it (a change) or to show it inside its margin (equivalence) — assuming the standard error
        falls as 1/√seeds (:func:`invrob.trend.needed_replicates`, :func:`invrob.trend.equivalence_needed`).
        Columns: study, claim, test, estimate, se, seeds, points, mde, margin, seeds_needed."""
        import pandas as pd

        from .. import trend

        claims, _, _ = self._judged(tables)
        rows = []
        for claim in claims:
            with collecting() as found:
                claim.judge_with(tables)
            for i, e in enumerate(found, 1):
                mde = trend.minimal_detectable_effect(e["se"], alpha=ALPHA, power=power) if e["se"] > 0 else 0.0
                if e.get("margin") is not None:
                    needed = (trend.equivalence_needed(e["estimate"], e["se"], e["margin"], e["seeds"], alpha=ALPHA,
                                                       power=power) if e["se"] > 0 else e["seeds"])
                else:
                    needed = (trend.needed_replicates(e["estimate"], e["se"], e["seeds"], alpha=ALPHA, power=power)
                              if e["se"] > 0 and e["estimate"] != 0 else None)
                rows.append(dict(study=self.name, claim=claim.claim, test=i, estimate=e["estimate"], se=e["se"],
                                 seeds=e["seeds"], points=e["points"], mde=mde, margin=e.get("margin"),
                                 seeds_needed=needed))
        return pd.DataFrame(rows, columns=["study", "claim", "test", "estimate", "se", "seeds", "points", "mde",
                                           "margin", "seeds_needed"])

    def claims(self, tables: Mapping) -> "pandas.DataFrame":
        """One row per claim whose tables are all given: ``study, claim, paper, measured, rule, verdict``.

        A chapter passes the tables it has just computed (and gets its own claims);
        the verdict page passes :meth:`read_tables` (and gets them all).
        """
        import pandas as pd

        _, models, gate_rows = self._judged(tables)
        rows = []
        for claim in self.paper_claims:
            if all(n in tables for n in claim.needs):
                measured, verdict = claim.judge_with(tables)
                alone = verdict
                verdict, gated, measured = self._gated(claim, verdict, measured, models, gate_rows)
                rows.append(dict(study=self.name, claim=claim.claim, paper=claim.paper,
                                 measured=measured, rule=claim.rule, verdict=verdict, gates=gated,
                                 key=claim.key or claim.claim, kind=claim.kind,
                                 versions="; ".join(claim.versions), rule_alone=alone,
                                 rule_set=claim.rule_set + (f" {POST_HOC}" if claim.post_hoc_rule else "")))
        if not rows:
            needs = sorted({n for claim in self.paper_claims for n in claim.needs})
            raise InvrobError(f"no claim of the {self.name} study can be judged from tables "
                              f"{', '.join(tables) or '(none)'}; the claims need {', '.join(needs)}")
        return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
