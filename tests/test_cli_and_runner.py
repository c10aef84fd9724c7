"""The `asc` entry point, the environment check and the notebook runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from asc_utils import check, runner
from asc_utils.cli import build_parser
from asc_utils.errors import UserError


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in actions[0].choices:
        result = subprocess.run([sys.executable, "-m", "asc_utils.cli", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_check_reports_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert check.check_audio()
    assert not check.check_data_dir(tmp_path / "nowhere")
    out = capsys.readouterr().out
    assert "[OK] audio back end" in out and "[FAIL] data directory" in out and "make data" in out


def test_parse_params() -> None:
    assert runner.parse_params(["EPOCHS=3", "SMOKE=True", "NAME=abc"]) == {"EPOCHS": 3, "SMOKE": True, "NAME": "abc"}
    with pytest.raises(UserError, match="NAME=VALUE"):
        runner.parse_params(["EPOCHS"])


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("SMOKE = False\nX = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_run_notebook_applies_parameters_and_writes_html(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "00_probe.ipynb", "assert SMOKE is True and X == 5\nprint('value', X)")
    result = runner.run_notebook(src, tmp_path / "out", {"SMOKE": True, "X": 5})
    assert result.ok, result.error
    executed = json.loads(result.output.read_text())
    assert "value 5" in json.dumps(executed)
    assert result.output.with_suffix(".html").exists()


def test_run_notebook_reports_a_failing_cell(tmp_path: Path) -> None:
    src = _notebook(tmp_path / "00_broken.ipynb", "raise ValueError('broken on purpose')")
    result = runner.run_notebook(src, tmp_path / "out", html=False)
    assert not result.ok and "broken on purpose" in result.error
    table = runner.summary_table([result])
    assert "FAILED" in table and "00_broken.ipynb" in table
