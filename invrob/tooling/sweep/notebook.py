"""What a sweep reads from its notebook: the ``parameters`` cell and the study it belongs to.

:func:`notebook_parameters` gives the defaults a sweep's values are type-checked against;
:func:`notebook_study` finds the notebook's ``profiles.settings("study", profile, ...)`` call
and the parameters it forwards, so the sweep validates a point with the very settings the
notebook will build. Both read the notebook's JSON and parse its cells with :mod:`ast`;
nothing is executed.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from ...errors import InvrobError

_UNKNOWN = object()  # default of a parameter whose value is not a Python literal


def notebook_parameters(notebook: Path) -> dict:
    """{name: default} of the notebook's cell tagged ``parameters``.

    Defaults that are not Python literals (``thetas = list(range(0, 181, 15))``) map to an
    "unknown" marker and accept any value. Raises InvrobError without a line number; the
    caller adds it.
    """
    try:
        nb = json.loads(notebook.read_text())
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvrobError(f"is not a readable notebook ({err.__class__.__name__}: {err})") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            break
    else:
        raise InvrobError("has no cell tagged 'parameters'")
    # IPython magics and shell escapes are not Python; they define no parameters.
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise InvrobError(f"has a parameters cell that is not valid Python (line {err.lineno}: {err.msg})") from None
    params = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            default = _UNKNOWN
        for target in targets:
            if isinstance(target, ast.Name):
                params[target.id] = default
    return params


def notebook_study(notebook: Path) -> tuple[str, dict] | None:
    """``(study, {parameter: setting})`` from the notebook's ``profiles.settings("study", ...)`` call.

    Read from the code cells' source, so a sweep validates a point with the very settings
    the notebook will build: the call whose first argument is a string literal; a keyword
    whose value is a bare parameter name (``seeds=seeds``) forwards that parameter. With
    several such calls, the one forwarding the most parameters. None when the notebook
    calls no ``settings`` (the sweep then checks only the parameters cell's types).
    """
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name != "settings" or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            forwards = {kw.value.id: kw.arg for kw in node.keywords
                        if kw.arg is not None and isinstance(kw.value, ast.Name)}
            found.append((first.value, forwards))
    if not found:
        return None
    return max(found, key=lambda item: len(item[1]))  # max keeps the first of equals
