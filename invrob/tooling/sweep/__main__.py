"""``python -m invrob.tooling.sweep FILE ...``: :func:`invrob.tooling.sweep.cli.main`.

Everything lives in importable modules, so pool and Dask workers pickle
:func:`invrob.tooling.sweep.execute.run_point` by that name, never as ``__main__.run_point``.
"""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
