"""fer_bench's import graph has no circles and no arrow up a layer: every ``import`` /
``from ... import`` of a fer_bench module, at module level or inside a function (a lazy
import is still an arrow), read from the source with ``ast``. A circle or an import of a
higher layer fails the test, naming the modules.

The layers, lowest first (ARCHITECTURE.md): a module imports from its own layer (without
circles) and the layers before it, never from a later one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fer_bench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the fer_bench modules it imports (a name resolved to its longest module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("fer_bench") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


#: Lowest first. A module's layer is the longest entry naming it or a package above it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("fer_bench", "fer_bench.errors", "fer_bench.fileio", "fer_bench.console", "fer_bench.lazy",
              "fer_bench.registry", "fer_bench.strenum")),
    ("data", ("fer_bench.data",)),
    ("identity", ("fer_bench.identity", "fer_bench.models")),
    ("training", ("fer_bench.training",)),
    ("planning", ("fer_bench.planning",)),
    ("results", ("fer_bench.results",)),
    ("leaderboard", ("fer_bench.leaderboard",)),
    ("pytest", ("fer_bench.pytest",)),
    ("launch", ("fer_bench.launch",)),
    ("cli", ("fer_bench.cli",)),
)
#: Layers whose modules are named exactly (the core modules); other names cover packages.
EXACT = {"core"}


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of ``module``'s layer, or None when no layer names it."""
    best: tuple[int, int] | None = None   # (length of the matching name, layer index)
    for index, (layer, names) in enumerate(LAYERS):
        for name in names:
            names_it = module == name or (layer not in EXACT and module.startswith(name + "."))
            if names_it and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def up_arrows(graph: dict[str, set[str]]) -> list[str]:
    """"a (layer) -> b (layer)" for every import of a later layer's module."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                found.append(f"{module} ({LAYERS[layer_of(module)][0]}) -> "
                             f"{target} ({LAYERS[layer_of(target)][0]})")
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "fer_bench.training.augment.base" in graph["fer_bench.training.augment.adaptive"]
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if layer_of(m) is None] == []


def test_no_import_up_a_layer():
    assert up_arrows(import_graph()) == []


def test_an_import_up_a_layer_is_caught():
    graph = {"fer_bench.data.clean": {"fer_bench.training.runner", "fer_bench.errors"},
             "fer_bench.training.runner": {"fer_bench.data.clean"},
             "fer_bench.errors": set()}
    assert up_arrows(graph) == ["fer_bench.data.clean (data) -> fer_bench.training.runner "
                                "(training)"]
    assert layer_of("fer_bench.errors") == 0 and layer_of("fer_bench.erroneous") is None
    assert layer_of("fer_bench.data.align.axis") == 1
