"""The package's layers (docs/architecture.md): no import cycles, a readable core free of the speed layer, a side-effect-free
`import asc_utils`, and the command line as the only layer that parses arguments."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asc_utils"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every asc_utils module imported anywhere in the file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` depends on the module, `from pkg import name` on pkg
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    # a module's own parent packages are always loaded before it: importing from them is no cycle
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in ancestors}


def import_graph() -> dict[str, set[str]]:
    """Module -> the asc_utils modules it imports."""
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and "asc_utils.train" in graph["asc_utils.finetune"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", ["asc_utils.models", "asc_utils.features"])
def test_readable_modules_do_not_use_the_speed_layer(module: str) -> None:
    graph = import_graph()
    reachable, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()] - reachable:
            reachable.add(nxt)
            todo.append(nxt)
    assert not {m for m in reachable if m.startswith("asc_utils.speed")}, f"{module} reaches the speed layer"


def test_only_the_command_line_parses_arguments() -> None:
    offenders = [name for name, path in _modules().items()
                 if not name.startswith("asc_utils.cli") and name != "asc_utils.navigation"
                 and "argparse" in {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}]
    assert offenders == []


def test_import_asc_utils_has_no_side_effects() -> None:
    probe = ("import sys, asc_utils; "
             "print(sorted(m for m in sys.modules if m.startswith('asc_utils.') or m in ('torch', 'torchaudio')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "import asc_utils loaded: " + done.stdout
