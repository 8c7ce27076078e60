"""`python -m benchmarks --quick` runs end to end and every side-by-side check agrees.

Speed is never asserted here (it lives in benchmarks/results.md); what must hold
on any machine is that each benchmark's two sides compute the same thing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmarks_agree(tmp_path):
    out, js = tmp_path / "results.md", tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--device", "cpu",
                           "--out", str(out), "--json", str(js)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(js.read_text())
    rows = payload["rows"]
    benchmarks = {r["benchmark"].split(".")[0] for r in rows}
    assert benchmarks == {"1", "2", "3", "4", "5", "6"}
    checked = [r for r in rows if r["agree_ok"] is not None]
    assert len(checked) >= 9
    failed = [(r["benchmark"], r["setting"], r["agreement"]) for r in checked if not r["agree_ok"]]
    assert not failed
    for r in rows:                      # every timing and memory figure is present and sane
        assert r["ours"] > 0 and (r["reference"] is None or r["reference"] > 0)
        assert r["memory"]
    table = out.read_text()
    assert table.count("\n| ") == len(rows) + 1 and "FAIL" not in table
    assert payload["machine"]["torch_threads"] >= 1
