"""Rule options and the evidence a rule's judge collects.

A claim's judge reads the options of the rule being applied through :func:`option`
(e.g. ``option("per_phi", True)``); :meth:`Claim.judge_with` sets them with :func:`using`,
so every rule in a claim's history is judged by the same code. :func:`collecting` gathers
every paired comparison a judge makes (:func:`record_evidence`, :func:`note_margin`) for the
power table (:meth:`Study.power`).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Mapping

_OPTIONS: ContextVar[Mapping] = ContextVar("invrob_rule_options", default={})
_EVIDENCE: ContextVar[list | None] = ContextVar("invrob_rule_evidence", default=None)


@contextmanager
def using(options: Mapping):
    """Apply a rule's ``options`` to the judges called inside the block (:func:`option`)."""
    token = _OPTIONS.set(dict(options))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def option(name: str, default=None):
    """A rule option of the claim being judged (:class:`Rule`): e.g. ``option("margin_factor", 1.0)``."""
    return _OPTIONS.get().get(name, default)


@contextmanager
def collecting():
    """Collect every paired bootstrap the judges run inside the block (:func:`bootstrap_change`): the
    list of dicts (estimate, se, seeds, points, margin) the power table reads."""
    found: list = []
    token = _EVIDENCE.set(found)
    try:
        yield found
    finally:
        _EVIDENCE.reset(token)


def record_evidence(estimate: float, se: float, seeds: int, points: int = 1, margin: float | None = None) -> None:
    """Add one paired comparison a judge made without :func:`bootstrap_change` to the power table."""
    found = _EVIDENCE.get()
    if found is not None:
        found.append(dict(estimate=float(estimate), se=float(se), seeds=int(seeds), points=int(points),
                          margin=None if margin is None else float(margin)))


def note_margin(margin: float) -> None:
    """Attach an equivalence margin to the last collected bootstrap (its power is then the seeds
    needed to show equivalence, not a change)."""
    found = _EVIDENCE.get()
    if found:
        found[-1]["margin"] = float(margin)
