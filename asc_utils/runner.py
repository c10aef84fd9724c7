"""Execute the tutorial notebooks headless (papermill), with parameter overrides, and summarise the run."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asc_utils.errors import UserError
from asc_utils.paths import repo_root


@dataclass
class NotebookResult:
    """Outcome of executing one notebook."""

    name: str
    ok: bool
    seconds: float
    output: Path
    error: str = ""


def notebook_paths(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The numbered notebooks (NN_topic.ipynb) in execution order."""
    folder = Path(notebooks_dir) if notebooks_dir else repo_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: str | Path, out_dir: str | Path, parameters: dict | None = None, html: bool = True, timeout: int = 1800) -> NotebookResult:
    """Execute one notebook with papermill (cwd = its folder); write the executed copy (and HTML) into out_dir."""
    import papermill as pm

    path = Path(path).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    error = ""
    try:
        pm.execute_notebook(
            str(path),
            str(output),
            parameters=parameters or {},
            cwd=str(path.parent),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        error = f"{type(exc).__name__}: {error}"
    seconds = time.perf_counter() - start
    if html and output.exists():
        _write_html(output)
    return NotebookResult(path.name, not error, seconds, output, error)


def _write_html(executed: Path) -> None:
    """Write an HTML copy next to an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    executed.with_suffix(".html").write_text(body, encoding="utf-8")


def run_all(out_dir: str | Path, parameters: dict | None = None, only: list[str] | None = None, html: bool = True,
            report: Callable[[str], None] | None = None) -> list[NotebookResult]:
    """Execute every numbered notebook in order; `report(line)` (e.g. print) gets a progress line before and after each."""
    results = []
    paths = [p for p in notebook_paths() if not only or any(s in p.name for s in only)]
    for i, path in enumerate(paths, 1):
        if report:
            report(f"[{i}/{len(paths)}] {path.name} ...")
        result = run_notebook(path, out_dir, parameters, html=html)
        if report:
            report(f"    {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s" + (f" - {result.error}" if result.error else ""))
        results.append(result)
    return results


def summary_table(results: list[NotebookResult]) -> str:
    """A plain-text table: notebook, status, wall time."""
    width = max([len(r.name) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  status  wall time", f"{'-' * width}  ------  ---------"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {r.seconds:7.1f} s")
    lines.append(f"{'total':<{width}}  {sum(r.ok for r in results)}/{len(results)} ok  {sum(r.seconds for r in results):6.1f} s")
    return "\n".join(lines)


def parse_params(items: list[str]) -> dict:
    """Parse NAME=VALUE pairs; VALUE is a Python literal, or a plain string if it is not one."""
    params = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"notebook parameter '{item}' must look like NAME=VALUE, e.g. EPOCHS=3")
        name, value = item.split("=", 1)
        try:
            params[name.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name.strip()] = value
    return params
