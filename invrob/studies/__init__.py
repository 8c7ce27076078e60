"""The studies of the book, one module each: settings, training grid, tables and claims in one home.

Every module of this package that defines ``STUDY`` (a :class:`~invrob.studies.base.Study`)
is a study; they are found here, so adding a study is one module, one notebook and
one ``_toc.yml`` line. Studies are listed in the order of their first notebook.

- :mod:`invrob.studies.invariance` — notebooks 01, 02: does rotation invariance cost ℓ∞ robustness?
- :mod:`invrob.studies.adversarial` — notebooks 03, 04: does ℓ∞ robustness change rotation invariance?
- :mod:`invrob.studies.tradeoff` — notebook 05: the spatial–adversarial trade-off, its Pareto front, CuSP.
- :mod:`invrob.studies.certified` — notebook 07: Lie derivatives, equivariance error and certified
  rotation robustness of the models of 01, 03 and 05.

:mod:`invrob.studies.scorecard` counts the claim rows of every study as distinct claims (the verdict page).

A study that outgrows one file keeps its module as the home (settings, tables, the Study object)
and puts its parts beside it: ``<study>_recipes`` / ``<study>_sources`` (which models),
``<study>_measures`` (what computes its tables), ``<study>_claims`` (its claims and their rules),
``<study>_tables`` (summaries the notebooks show). The shared pieces: :mod:`~invrob.studies.base`
(the contract: Study, Table, Rule, Claim), :mod:`~invrob.studies.options` (rule options and
evidence), :mod:`~invrob.studies.rules` (the statistical rule helpers), :mod:`~invrob.studies.render`.

Typical use::

    study = studies.get("adversarial")
    configs = study.configs(profiles.settings("adversarial", "cpu"))
    study.claims({"invariance": study.add_gap(table)})       # a chapter's closing cell
    scorecard.claims(scorecard.read_all(root))               # the verdict page: every study
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import check_choice
from . import scorecard
from .base import (CLAIM_COLUMNS, GATE_RULE, MODELS, NOT_RUN, OUTCOMES, PHIS, PROFILES, VERDICTS, Claim, Rule, Study,
                   Table)
from .rules import COMBINE_RULE, PROGRESSIVE_RULE, STATS_RULE
from .render import bottom_line, findings, markdown_table


def _discover() -> dict[str, Study]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "scorecard") or info.name.startswith("_"):
            continue
        study = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STUDY", None)
        if isinstance(study, Study):
            found.append(study)
    found.sort(key=lambda s: (s.notebooks[0] if s.notebooks else "", s.name))
    return {s.name: s for s in found}


STUDIES: dict[str, Study] = _discover()


def get(name: str) -> Study:
    """The study called ``name``; an unknown name is one :class:`~invrob.errors.InvrobError` line."""
    check_choice(name, STUDIES, "study")
    return STUDIES[name]


def all_studies() -> list[Study]:
    """Every study, in the order of their notebooks."""
    return list(STUDIES.values())


__all__ = ["CLAIM_COLUMNS", "COMBINE_RULE", "GATE_RULE", "MODELS", "NOT_RUN", "OUTCOMES", "PROGRESSIVE_RULE", "STATS_RULE",
           "PHIS", "PROFILES", "STUDIES", "VERDICTS", "Claim", "Rule", "Study", "Table", "all_studies", "bottom_line",
           "findings", "get", "markdown_table", "scorecard"]
