"""Repository-level checks: layout, environment.yml vs pyproject.toml, clean notebooks, CI script."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_fixed_top_level() -> None:
    for name in ("notebooks", "asc_utils", "data", "environment.yml", "README.md", "tests", "pyproject.toml", "Makefile", ".ci/run"):
        assert (REPO / name).exists(), f"{name} is missing from the repository root"


def test_environment_yml_installs_the_package_with_its_extras() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    env = (REPO / "environment.yml").read_text()
    assert re.search(r"^\s*- python=3\.11\s*$", env, re.M), "environment.yml must pin python 3.11"
    match = re.search(r'-e\s+"?\.\[([^\]]+)\]"?', env)
    assert match, "environment.yml must `pip install -e .[extras]` so it cannot drift from pyproject.toml"
    assert set(x.strip() for x in match.group(1).split(",")) == extras
    assert "-c constraints.txt" in env
    # no dependency may be listed twice: conda section holds only python and pip
    deps = re.findall(r"^  - (\S+)", env.split("dependencies:", 1)[1], re.M)
    assert deps == ["python=3.11", "pip", "pip:"], deps


def test_pyproject_uses_ranges_and_constraints_pin_every_dependency() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"] + sum(pyproject["project"]["optional-dependencies"].values(), [])
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    for dep in deps:
        assert "==" not in dep, f"exact pin in pyproject.toml: {dep} (use a range; exact versions live in constraints.txt)"
        name = re.split(r"[<>=!~\[ ]", dep)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in constraints.txt"
    assert "torch==2.9.1" in (REPO / "constraints.txt").read_text()
    assert "torchaudio==2.9.1" in (REPO / "constraints.txt").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs: strip them"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert "SMOKE" in "".join(tagged[0]["source"])
    text = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown").lower()
    assert "learning goals" in text and "summary" in text and "exercise" in text, f"{path.name} lacks goals/summary/exercises"


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, "no numbered notebooks found in notebooks/"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in ci and "ASC_REQUIRE_SHARED=1" in ci
    assert "make test" in readme and "make tutorial" in readme
