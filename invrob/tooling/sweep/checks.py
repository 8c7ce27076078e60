"""The checks on each value of a sweep file: its name, its type and range, its study's settings.

A value must name a parameter of the notebook's ``parameters`` cell (not ``output_dir``,
the sweep's to set) and have its default's type; numbers under ``theta*`` / ``eps*`` names
and ``profile`` are range-checked; a parameter the notebook forwards to
``profiles.settings`` is checked as that setting (:class:`StudyUse`), and each expanded
point is built with its own profile's settings. Every failure is an
:class:`~invrob.errors.InvrobError` at the culprit's line of the sweep file.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import yaml

from ...errors import InvrobError, check_choice, check_eps, check_theta
from ...profiles import PROFILES  # the one list of profiles (imports no torch)
from .notebook import _UNKNOWN, notebook_study

if TYPE_CHECKING:
    from .spec import _Doc

RESERVED = ("output_dir",)  # the sweep sets it to the point's folder


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
         list: "a list", tuple: "a list", dict: "a mapping"}


def _kind(value) -> str:
    for t in (bool, int, float, str, list, tuple, dict):
        if isinstance(value, t):
            return _KIND[t]
    return type(value).__name__


def _matches(value, default) -> bool:
    """Does ``value`` have the type of ``default``? (int for float ok; bool is not a number)."""
    if default is None or default is _UNKNOWN:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, list) and (
            not default or all(any(_matches(v, d) for d in default) for v in value))
    if isinstance(default, dict):  # a per-model map; one value for every model also fits
        if isinstance(value, dict):
            return True
        return any(_matches(value, d) for d in default.values())
    return True


def _scalar_nodes(node) -> Iterator:
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalar_nodes(item)
    elif isinstance(node, yaml.MappingNode):
        for _, item in node.value:
            yield from _scalar_nodes(item)


def _type_check(doc: _Doc, name: str, node, value, default, source: str, in_grid: bool = False) -> None:
    """Refuse ``value`` unless it has the type of ``default`` (``source``: where that default is from)."""
    if _matches(value, default):
        return
    culprit = node
    if isinstance(default, (list, tuple)) and isinstance(value, list):
        # point at the first element of the wrong type
        for item_node, item in zip(node.value, value):
            if not any(_matches(item, d) for d in default):
                culprit = item_node
                expected = " or ".join(sorted({_kind(d) for d in default}))
                raise doc.error(culprit, f"{name}: element {item!r} is {_kind(item)}, expected "
                                         f"{expected} ({source})")
    hint = ""
    if in_grid and isinstance(default, (list, tuple)):
        hint = f"; a grid entry lists candidate values, so a list parameter needs a list of lists: [{default!r}, ...]"
    raise doc.error(culprit, f"{name} must be {_kind(default)} ({source}), "
                             f"got {_kind(value)} {value!r}{hint}")


def _check_value(doc: _Doc, name: str, node, default, in_grid: bool = False, study: "StudyUse | None" = None):
    """Validate one value for parameter ``name``; return it. Errors point at the culprit's line."""
    value = doc.value(node)
    _type_check(doc, name, node, value, default, f"the notebook's default is {default!r}", in_grid)
    # Ranges: every number under a theta*/eps* name, wherever it sits in a list.
    if name.startswith(("theta", "eps")):
        for scalar in _scalar_nodes(node):
            number = doc.value(scalar)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            try:
                (check_theta if name.startswith("theta") else check_eps)(number, name)
            except InvrobError as err:
                raise doc.error(scalar, str(err)) from None
    if name == "profile" and isinstance(value, str):
        try:
            check_choice(value, PROFILES, "profile")
        except InvrobError as err:
            raise doc.error(node, str(err)) from None
    if study is not None and name in study.forwards:
        _check_setting(doc, name, node, value, study, in_grid)
    return value


# --------------------------------------------------------------------------- the study's settings

@dataclass(frozen=True)
class StudyUse:
    """How a notebook uses its study's settings: ``profiles.settings(study, profile, seeds=seeds, ...)``.

    ``forwards`` maps a notebook parameter to the setting it overrides; ``profile`` is the
    profile whose values give the expected types (the sweep's fixed profile, else the
    notebook's default).
    """
    study: str
    forwards: dict
    profile: str = "cpu"


def _check_setting(doc: _Doc, name: str, node, value, study: StudyUse, in_grid: bool) -> None:
    """Check a value that the notebook forwards to ``profiles.settings``, as that call will."""
    from ...profiles import STUDIES, settings

    if value is None:
        return  # None: the profile's value
    setting = study.forwards[name]
    expected = STUDIES[study.study][study.profile].get(setting)
    if expected is not None:
        _type_check(doc, name, node, value, expected,
                    f"the {study.study} study has {setting} = {expected!r} at the {study.profile} profile",
                    in_grid)
    try:
        settings(study.study, study.profile, **{setting: value})
    except InvrobError as err:
        raise doc.error(node, f"{name}: {err}") from None
    if setting == "models":
        from ...models import model_names  # imports torch: only when a sweep names models

        valid = model_names()
        items = zip(node.value, value) if isinstance(node, yaml.SequenceNode) and isinstance(value, list) \
            else [(node, value)]
        for item_node, item in items:
            if item not in valid:
                close = difflib.get_close_matches(str(item).lower(), valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise doc.error(item_node, f"{name}: unknown model {item!r}; {hint}valid: {', '.join(valid)}")


def _check_name(doc: _Doc, key_node, name: str, defaults: dict, notebook_shown: str):
    if name in RESERVED:
        raise doc.error(key_node, f"{name!r} is set by the sweep (each point writes into its own "
                                  f"runs/<sweep>/<point-id>/ folder); remove it")
    if name not in defaults:
        close = difflib.get_close_matches(name, list(defaults), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        valid = ", ".join(n for n in defaults if n not in RESERVED)
        raise doc.error(key_node, f"unknown parameter {name!r} for {notebook_shown}; {hint}valid: {valid}")


def _study_use(doc: _Doc, top: dict, nb_node, nb_text: str, notebook: Path, defaults: dict) -> StudyUse | None:
    """The notebook's study (:func:`notebook_study`), checked; the profile for type checks."""
    from ...profiles import STUDIES

    found = notebook_study(notebook)
    if found is None:
        return None
    name, forwards = found
    if name not in STUDIES:
        raise doc.error(nb_node, f"notebook {nb_text} calls profiles.settings with unknown study {name!r}; "
                                 f"valid: {', '.join(STUDIES)}")
    profile = defaults.get("profile")
    if "parameters" in top and isinstance(top["parameters"][1], yaml.MappingNode):
        for key_node, value_node in top["parameters"][1].value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "profile":
                profile = doc.value(value_node)
    profile = profile if profile in PROFILES else "cpu"
    return StudyUse(study=name, forwards={p: s for p, s in forwards.items() if p in defaults}, profile=profile)


def _check_point(doc: _Doc, node, params: dict, defaults: dict, study: StudyUse) -> None:
    """One point's settings as its notebook will build them, at the point's own profile."""
    from ...profiles import settings

    profile = params.get("profile", defaults.get("profile"))
    if profile not in PROFILES:
        return  # a notebook default that is not a literal profile: the notebook decides
    overrides = {setting: params[name] for name, setting in study.forwards.items() if name in params}
    try:
        settings(study.study, profile, **overrides)
    except InvrobError as err:
        raise doc.error(node, f"this point's settings at the {profile} profile: {err}") from None
