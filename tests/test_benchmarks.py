"""The benchmark runs end to end (reduced sizes, tiny data set), so it cannot rot: `python -m benchmarks.run --reduced`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_reduced_benchmark_writes_json_and_markdown(tiny_data, tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--reduced", "--quiet", "--threads", "1",
                           "--data-dir", str(tiny_data), "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "reduced"
    assert {"cpu", "cores", "torch", "device", "date"} <= set(results["machine"])
    rows = {(r["task"], r["device"]): r for r in results["rows"]}
    assert {("inference", "cpu"), ("training", "cpu")} <= set(rows)
    for row in rows.values():
        assert row["reference_clips_per_s"] > 0 and row["fast_clips_per_s"] > 0
        assert abs(row["speedup"] - row["fast_clips_per_s"] / row["reference_clips_per_s"]) < 1e-9
    inference = rows[("inference", "cpu")]
    assert inference["same_prediction"] == 1.0 and inference["max_abs_logit_diff_same_input"] < 1e-3
    table = (out / "results.md").read_text()
    assert "| inference | cpu |" in table and "| training | cpu |" in table and table in done.stdout


def test_full_run_without_data_says_how_to_get_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--data-dir", str(tmp_path / "missing"), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "asc data synth --preset tau25" in done.stderr
