"""The package's layering: no import cycle, and no function-local import that hides a
dependency (the few deliberate ones are listed with their reason)."""

from __future__ import annotations

import ast
from pathlib import Path

import cirbench

PACKAGE = Path(cirbench.__file__).parent

#: Imports that must stay inside a function, and why.
DELIBERATE = {
    # torch must not load before exact mode has set its environment (cirbench.exact)
    ("cirbench.entry", "cirbench.cli"),
    ("cirbench.exact", "torch"),
    ("cirbench.exact", "cirbench.portable"),
    # optional dependencies: only the slurm launcher / the tensorboard logger need them
    ("cirbench.sweep", "submitit"),
    ("cirbench.epochlog", "torch.utils.tensorboard"),
    # optional dependency: only `cirbench tune` needs it
    ("cirbench.tune", "optuna"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, here: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert node.level == 0, f"{here}: relative import"
    base = node.module or ""
    # ``from cirbench.tasks import base`` imports the module cirbench.tasks.base
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def imports_in(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]


def is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module loads (``if TYPE_CHECKING:`` blocks excluded)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.If | ast.Try):
            out += [] if is_type_checking(node) else imports_in(node)
    return out


def type_only_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [n for node in tree.body if is_type_checking(node) for n in imports_in(node)]


FILES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = set(FILES)
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in FILES.items()}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, tree in TREES.items():
        targets = {t for node in top_level_imports(tree) for t in imported(node, name)}
        edges[name] = {t for t in targets if t in MODULES and t != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    # a package __init__ importing its own submodules is the usual re-export, not a cycle
    edges = {
        name: {t for t in targets if not (FILES[name].stem == "__init__" and t.startswith(name))}
        for name, targets in graph().items()
    }
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_local_imports_but_the_deliberate_ones() -> None:
    found = set()
    for name, tree in TREES.items():
        module_level = {id(n) for n in (*top_level_imports(tree), *type_only_imports(tree))}
        for node in imports_in(tree):
            if id(node) not in module_level:
                found.update((name, target) for target in imported(node, name))
    assert found == DELIBERATE, sorted(found ^ DELIBERATE)
