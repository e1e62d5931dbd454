"""The import graph follows docs/architecture.md: every import between parts of the library points down the
layers, the on-board parts never import the training parts, and no part or module imports its way back to
itself.

The graph is read from the source with ``ast`` (function-level imports included, so a circle cannot hide
inside a function). A part is a subpackage of ``edge_geoloc`` (``export/`` is installed as
``edge_geoloc.export``) or a top-level module, except the few modules in ``PART_OF_MODULE``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Low to high: a part may import the parts of lower layers only (see docs/architecture.md).
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(layer.split()) for layer in (
    "types config artifacts",
    "formats geo",
    "sensors fusion models",
    "runtime sim",
    "export",
    "interop data",
    "fieldlog evaluate",
    "train",
    "demo",
    "cli",
    "__main__",
))
ONBOARD = frozenset(["geo", "sensors", "fusion", "runtime", "interop", "fieldlog", "formats"])
TRAINING = frozenset(["models", "sim", "data", "evaluate", "train", "demo"])
# Modules that belong to another part than their folder says.
PART_OF_MODULE = {
    "edge_geoloc.export.sidecar": "formats",  # the exported files' self-description: written by export,
    "edge_geoloc.export.manifest": "formats",  # read by the runtime
    "edge_geoloc.runtime.backends.torch_backend": "export",  # wraps a torch model exactly as export does
}
# The one import that points up: load_backend(kind="torch") loads the PyTorch reference backend only when a
# checkpoint is run, so torch stays optional on board.
OPTIONAL_UPWARD = {("edge_geoloc.runtime.backends", "edge_geoloc.runtime.backends.torch_backend")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts = ["edge_geoloc", *parts] if parts[0] == "export" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    files = [*(REPO / "edge_geoloc").rglob("*.py"), *(REPO / "export").rglob("*.py")]
    return {module_name(path): path for path in files}


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Library modules ``name`` imports anywhere in its source (``from pkg import module`` counts the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {_nearest_known(m, known) for m in found if m.startswith("edge_geoloc")} - {name, None}


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def _nearest_known(module: str, known: dict[str, Path]) -> str | None:
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def part_of(module: str) -> str:
    for prefix, part in PART_OF_MODULE.items():
        if module == prefix or module.startswith(prefix + "."):
            return part
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edge_geoloc"


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def module_graph() -> dict[str, set[str]]:
    known = library_modules()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def part_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> the module imports that make the edge (optional upward one left out)."""
    edges = defaultdict(list)
    for name, targets in graph.items():
        for target in targets:
            if part_of(name) != part_of(target) and (name, target) not in OPTIONAL_UPWARD:
                edges[(part_of(name), part_of(target))].append(f"{name} -> {target}")
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_part_has_a_layer():
    parts = {part_of(name) for name in library_modules()} - {"edge_geoloc"}
    assert parts <= set().union(*LAYERS), f"parts without a layer in LAYERS: {parts - set().union(*LAYERS)}"


def test_imports_point_down_the_layers():
    upward = {edge: where for edge, where in part_edges(module_graph()).items()
              if layer_of(edge[1]) >= layer_of(edge[0])}
    assert upward == {}, f"imports that do not point down the layers: {upward}"


def test_onboard_parts_never_import_training_parts():
    crossing = {edge: where for edge, where in part_edges(module_graph()).items()
                if edge[0] in ONBOARD and edge[1] in TRAINING}
    assert crossing == {}


def test_no_import_cycles_between_parts():
    part_graph = defaultdict(set)
    for importer, imported in part_edges(module_graph()):
        part_graph[importer].add(imported)
    assert cycles(part_graph) == []


def test_no_module_imports_its_way_back_to_itself():
    """Function-level imports count, so a circle cannot be dodged by importing inside a function."""
    assert cycles(module_graph()) == []


def test_the_checks_see_a_planted_cycle_and_an_upward_import():
    graph = {"edge_geoloc.geo.a": {"edge_geoloc.train.b"}, "edge_geoloc.train.b": {"edge_geoloc.geo.a"}}
    assert cycles(graph) == [["edge_geoloc.geo.a", "edge_geoloc.train.b"]]
    assert layer_of("train") > layer_of("geo")
    assert ("geo", "train") in part_edges(graph)
