"""The layout holds: no import cycle between modules (imports inside functions count), nothing
but `tfrf.cli` and `tfrf.commands` imports `tfrf.commands`, no source module over 400 lines."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Import name -> folder (setup.py's package_dir).
PACKAGES = {"tfrf": "tfrf", "tfrf.datasets": "datasets", "tfrf.serving": "serving", "tfrf.export": "export"}
MAX_LINES = 400


def source_modules():
    """{module name: path} of every Python module of the installed packages."""
    modules = {}
    for prefix, folder in PACKAGES.items():
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            if "__pycache__" in directory or "dummy_data" in directory:
                continue
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    parts = os.path.relpath(path, os.path.join(ROOT, folder))[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    modules[".".join([prefix, *parts])] = path
    return modules


def imported_modules(name, path, modules):
    """The project modules `name` imports anywhere in its file (a name imported from a package
    counts as that submodule when it is one, else as the package)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]

    def known(dotted):
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            found |= {known(alias.name) for alias in node.names if alias.name.startswith("tfrf")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("tfrf"):
                found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else known(base)
                          for alias in node.names}
    found.discard(name)
    found.discard("")
    # Importing a module runs its parent packages first: those arrows are not dependencies.
    return {module for module in found if not name.startswith(module + ".")}


@pytest.fixture(scope="module")
def graph():
    modules = source_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_only_the_command_line_imports_the_commands(graph):
    upward = sorted((name, target) for name, targets in graph.items() for target in targets
                    if target.startswith("tfrf.commands") and not name.startswith(("tfrf.commands", "tfrf.cli")))
    assert upward == []


def test_no_module_over_400_lines():
    lengths = {name: sum(1 for _ in open(path, encoding="utf-8")) for name, path in source_modules().items()}
    assert len(lengths) > 100
    assert {name: count for name, count in lengths.items() if count > MAX_LINES} == {}
