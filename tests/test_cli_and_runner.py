"""The `asc` entry point, the environment check and the notebook runner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from asc_utils import check, runner
from asc_utils.cli import build_parser, main
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


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["tutorial", "--out", str(out), "--no-html", "-p", "NOPE=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown notebook parameter(s) NOPE") and "Traceback" not in err
    assert "05_baseline_training.ipynb: SMOKE" in err and "EPOCHS" in err, "the error lists notebooks and parameters"
    assert not out.exists(), "nothing may run (or be written) before the parameters are checked"


@pytest.mark.parametrize("extra", [[], ["--smoke"]])
def test_wrongly_typed_parameter_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str]) -> None:
    out = tmp_path / "out"
    assert main(["tutorial", "--out", str(out), "--only", "05", *extra, "-p", "EPOCHS=abc"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"EPOCHS='abc' is a str, but 05_baseline_training.ipynb expects an int \(default \d+\)", err), err
    assert not out.exists()


def test_parameter_type_rules(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('I = 1\nF = 0.5\nN = None\nB = False\nS = "x"\nT = ("a",)\nL = [1, 2]\n'
                                     "K = 3  # clips per device (None: all of them)\nP = str(1)  # not a literal")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("EARLY = 1"), cell]
    path = tmp_path / "00_types.ipynb"
    nbformat.write(nb, str(path))
    assert set(runner.notebook_parameters(path)) == set("IFNBSTLKP")
    accepted = {"I": 2, "F": 1, "N": "anything", "B": True, "S": "y", "T": ["b"], "L": (1,), "K": None, "P": 3}
    runner.check_parameters(accepted, [path])
    runner.check_parameters({"F": 1.5, "N": 3, "K": 4}, [path])
    refused = {"I": 1.5, "F": True, "B": 1, "S": 3, "T": "a", "L": 1}
    for name, value in [*refused.items(), ("I", True), ("I", "2"), ("I", None), ("F", "x")]:
        with pytest.raises(runner.NotebookParameterError, match=f"{name}={value!r} is a"):
            runner.check_parameters({name: value}, [path])
    with pytest.raises(runner.NotebookParameterError, match="Unknown notebook parameter.*EARLY.*00_types.ipynb: I, F"):
        runner.check_parameters({"EARLY": 1}, [path])  # only the parameters cell counts


def test_run_all_gives_each_notebook_only_its_parameters(tmp_path: Path) -> None:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "01_uses_x.ipynb", "assert X == 5")
    nb = nbformat.read(str(_notebook(folder / "02_other.ipynb", "")), as_version=4)
    nb.cells[0].source = "SMOKE = False"  # no X here: papermill must not inject it
    nb.cells[1].source = "assert 'X' not in globals(), 'X was injected'"
    nbformat.write(nb, str(folder / "02_other.ipynb"))
    results = runner.run_all(tmp_path / "out", {"X": 5, "SMOKE": True}, html=False, notebooks_dir=folder)
    assert [(r.name, r.ok) for r in results] == [("01_uses_x.ipynb", True), ("02_other.ipynb", True)], [r.error for r in results]
    with pytest.raises(runner.NotebookParameterError, match="X=5.5 is a float, but 01_uses_x.ipynb expects an int"):
        runner.run_all(tmp_path / "out2", {"X": 5.5}, html=False, notebooks_dir=folder)
    assert not (tmp_path / "out2").exists()
