"""The package's shape: no import circle between modules or between subpackages (imports inside
functions count), and no private name of the libraries it builds on.

`python tests/test_architecture.py` prints what it finds (nothing when all is well) and exits non-zero
if it finds anything.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mnist_lab", "hydra_plugins")
LIBRARIES = ("lightning", "hydra", "submitit", "torch", "torchmetrics", "omegaconf")
# Keys of Lightning's own checkpoint layout that a module may not read or rewrite.
INTERNAL_KEYS = ("loops", "fit_loop", "optim_progress", "optim_step_progress")
PUBLIC = {"_exit"}  # os._exit: the standard library's documented way out of a process at once


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """The project's modules that `name` imports, anywhere in it (inside functions too), with the line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module: its nearest known module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def unit(name: str) -> str:
    """The subpackage a module belongs to (`mnist_lab.cli`), or the module itself where it sits at
    the top of its package (`mnist_lab.train`)."""
    parts = name.split(".")
    return ".".join(parts[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[tuple[str, str], str]]:
    """Module -> the modules it imports; subpackage -> the subpackages it imports; where each edge is."""
    found = modules()
    known = set(found)
    by_module: dict[str, set[str]] = {name: set() for name in found}
    by_unit: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for name, path in found.items():
        for target, line in imported(name, path, known):
            if target in (name.rpartition(".")[0], "mnist_lab", "hydra_plugins"):
                continue  # a package's own __init__ runs first anyway; they import nothing of the project
            by_module[name].add(target)
            where.setdefault((name, target), f"{path.relative_to(ROOT)}:{line}")
            if unit(name) != unit(target):
                by_unit.setdefault(unit(name), set()).add(unit(target))
                where.setdefault((unit(name), unit(target)), f"{path.relative_to(ROOT)}:{line}")
    return by_module, by_unit, where


def described(group: list[str], edges: dict[str, set[str]], where: dict[tuple[str, str], str]) -> str:
    """A cycle's members and the import lines that tie them."""
    ties = [f"{a} -> {b} ({where[a, b]})" for a in group for b in sorted(edges.get(a, ())) if b in group]
    return "; ".join(ties)


def import_cycles() -> list[str]:
    """Every import circle, between modules and between subpackages, as one line each."""
    by_module, by_unit, where = import_graph()
    return [f"modules: {described(g, by_module, where)}" for g in cycles(by_module)] + [
        f"subpackages: {described(g, by_unit, where)}" for g in cycles(by_unit)
    ]


def private_uses() -> list[str]:
    """Private names of the libraries (a leading underscore that the project does not define itself),
    and Lightning's internal checkpoint keys, as `file:line: name`."""
    found = modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in found.items()}
    own: set[str] = set()  # the project's own private names: functions, classes, attributes, variables
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)

    def private(word: str) -> bool:
        return word.startswith("_") and not word.endswith("_") and word not in own | PUBLIC

    problems = []
    for name, tree in trees.items():
        path = found[name].relative_to(ROOT)
        for node in ast.walk(tree):
            words: list[str] = []
            if isinstance(node, ast.Attribute):
                words = [node.attr]
            elif isinstance(node, ast.keyword) and node.arg:
                words = [node.arg]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                words = [part for part in node.module.split(".") if part.startswith("_")]
                words += [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                words = [part for alias in node.names for part in alias.name.split(".") if part.startswith("_")]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = [key for key in INTERNAL_KEYS if key in node.value.split(".")]
                problems += [f"{path}:{node.lineno}: checkpoint key {key!r}" for key in words]
                continue
            problems += [f"{path}:{getattr(node, 'lineno', '?')}: {word}" for word in words if private(word)]
    # A private method of a library's class, overridden: a method whose name the project never calls.
    called = {node.attr for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | {
        node.id for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.Name)
    }
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, ast.FunctionDef)
                        and item.name.startswith("_")
                        and not item.name.endswith("__")
                        and item.name not in called
                    ):
                        problems.append(f"{found[name].relative_to(ROOT)}:{item.lineno}: overrides {item.name}")
    return problems


def test_no_module_or_subpackage_imports_itself_round_a_circle() -> None:
    assert import_cycles() == []


def test_no_private_name_of_a_library_is_used() -> None:
    assert private_uses() == []


def test_a_circle_is_found_however_long_and_a_module_belongs_to_its_subpackage() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert unit("mnist_lab.cli.command") == "mnist_lab.cli" and unit("mnist_lab.train") == "mnist_lab.train"


if __name__ == "__main__":
    report = import_cycles() + private_uses()
    print("\n".join(report) or "no import circles, no private library names")
    sys.exit(1 if report else 0)
