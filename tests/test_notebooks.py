"""Every numbered notebook executes headless in smoke mode on the tiny embedded data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from asc_utils.runner import notebook_paths, run_notebook


@pytest.mark.notebook
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode(path: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = run_notebook(path, tmp_path, {"SMOKE": True, "DATA_DIR": str(tiny_data)}, html=False, timeout=600)
    assert result.ok, f"{path.name} failed in smoke mode: {result.error} (executed copy: {result.output})"
