"""The ``invrob`` command: ``invrob <command> [options]``.

Each command is a module with a ``main(argv, prog) -> exit code``:

- ``invrob run`` is ``python -m invrob.tooling.runbook`` (what ``make notebooks`` runs): the study
  notebooks in order at a profile, e.g. ``invrob run --profile smoke --dest DIR --workdir DIR
  --only 01_invariance_vs_robustness``;
- ``invrob sweep FILE`` is ``python -m invrob.tooling.sweep FILE``: one notebook over a grid.

Both execute notebooks with :func:`invrob.tooling.runbook.run_notebook` and work from any
directory: paths on the command line are relative to the current directory.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("invrob.tooling.runbook", "execute the study notebooks in order at a profile (make notebooks)"),
    "sweep": ("invrob.tooling.sweep", "run a notebook over a grid of parameters (papermill; local or Dask)"),
}


def _usage() -> str:
    lines = ["usage: invrob <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`invrob <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"invrob: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest, prog=f"invrob {command}")


if __name__ == "__main__":
    sys.exit(main())
