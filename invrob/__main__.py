"""``python -m invrob <command>``: the ``invrob`` command (:mod:`invrob.tooling.cli`)."""
import sys

from .tooling.cli import main

if __name__ == "__main__":
    sys.exit(main())
