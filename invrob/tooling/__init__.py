"""The machinery around the science: what runs, checks and sizes the studies, not what they measure.

- :mod:`~invrob.tooling.runbook` — the one notebook runner (``make notebooks``, ``invrob run``,
  the sweeps and the tests all execute notebooks through it) and the book's cost table;
- :mod:`~invrob.tooling.sweep` — one notebook over a grid of parameters, locally or on Dask
  (``invrob sweep FILE``);
- :mod:`~invrob.tooling.smoke` — the smoke run: every notebook once at the smoke profile, its
  CPU kernels recorded, and its book;
- :mod:`~invrob.tooling.regression` — the smoke run's portable checks: nbval-style output
  comparison and every result table within stated tolerances, against references recorded under
  other CPU kernels (``make nbval-update``);
- :mod:`~invrob.tooling.budget` — a profile's minutes per chapter, estimated before it runs;
- :mod:`~invrob.tooling.cli` — the ``invrob`` command (``python -m invrob`` too).

Nothing in :mod:`invrob`'s science layers imports this package (``tests/test_layering.py``).
"""
