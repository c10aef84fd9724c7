"""Execute the tutorial notebooks headless (papermill), with parameter overrides, and summarise the run."""

from __future__ import annotations

import ast
import io
import json
import time
import tokenize
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from asc_utils.errors import UserError
from asc_utils.paths import repo_root


class NotebookParameterError(UserError, ValueError):
    """A notebook parameter override that no selected notebook defines, or whose value has the wrong type."""


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's `parameters` cell: its default value and whether None is a documented value."""

    name: str
    default: object
    none_allowed: bool  # the default is None, or the line's comment mentions None (e.g. "None: all of them")
    literal: bool = True  # False when the default is an expression: then any value is accepted


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


def select_notebooks(only: list[str] | None = None, notebooks_dir: str | Path | None = None) -> list[Path]:
    """The numbered notebooks whose file name contains one of the strings in `only` (all of them when `only` is empty)."""
    return [p for p in notebook_paths(notebooks_dir) if not only or any(s in p.name for s in only)]


def notebook_parameters(path: str | Path) -> dict[str, NotebookParameter]:
    """The names and default values assigned in a notebook's cell tagged `parameters` (read with ast; nothing is run)."""
    path = Path(path)
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotebookParameterError(f"Could not read the notebook '{path}': {exc}. Expected a Jupyter notebook (.ipynb, JSON) "
                                     "with a code cell tagged 'parameters'.") from exc
    source = next(("".join(c.get("source", "")) for c in cells
                   if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])), "")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookParameterError(f"The parameters cell of '{path.name}' is not valid Python ({exc.msg}, line {exc.lineno}); "
                                     "fix the cell in the notebook.") from exc
    comments = _line_comments(source)
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        try:
            default, literal = ast.literal_eval(value), True
        except (ValueError, TypeError, SyntaxError):  # an expression, e.g. Path(...): its type is unknown without running it
            default, literal = None, False
        documented_none = any("None" in comments.get(line, "") for line in range(node.lineno, (node.end_lineno or node.lineno) + 1))
        found[name] = NotebookParameter(name, default, default is None or documented_none, literal)
    return found


def _line_comments(source: str) -> dict[int, str]:
    """The comment of each line of a piece of Python source, by line number."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string
    except (tokenize.TokenError, SyntaxError):  # the source was parsed by ast already; comments are only a hint
        pass
    return comments


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _expected(parameter: NotebookParameter) -> str | None:
    """What a value of this parameter must be, in words; None when any value is accepted."""
    default = parameter.default
    if not parameter.literal or default is None:
        return None
    if isinstance(default, bool):
        kind = "a bool (True or False)"
    elif isinstance(default, int):
        kind = "an int"
    elif isinstance(default, float):
        kind = "a number (int or float)"
    elif isinstance(default, str):
        kind = "a str"
    elif isinstance(default, (tuple, list)):
        kind = "a tuple or list, e.g. " + repr(default)
    else:
        kind = f"a {type(default).__name__}"
    return kind + (" or None" if parameter.none_allowed else "")


def _accepts(parameter: NotebookParameter, value: object) -> bool:
    """The type rule: a value must have the type of the notebook's default (an int is also a valid float)."""
    default = parameter.default
    if not parameter.literal or default is None or (value is None and parameter.none_allowed):
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def check_parameters(parameters: Mapping[str, object], paths: Iterable[str | Path]) -> None:
    """Refuse overrides that no notebook in `paths` defines, and values whose type differs from a notebook's default."""
    defined = {Path(p).name: notebook_parameters(p) for p in paths}
    listing = "; ".join(f"{name}: {', '.join(params) or '(no parameters cell)'}" for name, params in defined.items())
    unknown = [name for name in parameters if not any(name in params for params in defined.values())]
    if unknown:
        raise NotebookParameterError(
            f"Unknown notebook parameter(s) {', '.join(unknown)}: no selected notebook defines them. The selected notebooks "
            f"take: {listing}. Check the spelling (names are case-sensitive), or select the notebook that uses it with --only.")
    problems = []
    for name, value in parameters.items():
        refusing: dict[tuple[str, str], list[str]] = {}  # (expected, default) -> the notebooks that refuse the value
        for notebook, params in defined.items():
            if name in params and not _accepts(params[name], value):
                refusing.setdefault((str(_expected(params[name])), repr(params[name].default)), []).append(notebook)
        for (expected, default), notebooks in refusing.items():
            article = "an" if _type_name(value)[0] in "aeiou" else "a"
            problems.append(f"{name}={value!r} is {article} {_type_name(value)}, but {', '.join(notebooks)} "
                            f"{'expects' if len(notebooks) == 1 else 'expect'} {expected} (default {default})")
    if problems:
        raise NotebookParameterError(
            "Notebook parameter(s) of the wrong type: " + "; ".join(problems) + ". Values are Python literals: numbers "
            "without quotes (-p EPOCHS=20), bools as True/False, tuples as ('a', 'b'), text as it is (-p DEVICE=cpu). "
            f"The selected notebooks take: {listing}.")


def parameters_for(path: str | Path, parameters: Mapping[str, object]) -> dict:
    """The overrides a notebook defines in its parameters cell (the others are not injected into it)."""
    defined = notebook_parameters(path)
    return {name: value for name, value in parameters.items() if name in defined}


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
            report: Callable[[str], None] | None = None, notebooks_dir: str | Path | None = None) -> list[NotebookResult]:
    """Execute every numbered notebook in order; `report(line)` (e.g. print) gets a progress line before and after each.

    The overrides are checked against the selected notebooks' parameters cells before anything runs
    (`check_parameters`); each notebook receives only the overrides it defines.
    """
    results = []
    paths = select_notebooks(only, notebooks_dir)
    if paths:
        check_parameters(parameters or {}, paths)
    for i, path in enumerate(paths, 1):
        if report:
            report(f"[{i}/{len(paths)}] {path.name} ...")
        result = run_notebook(path, out_dir, parameters_for(path, parameters or {}), html=html)
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
