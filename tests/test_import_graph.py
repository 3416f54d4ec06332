"""The package's layers import downwards only: no two subpackages (or top-level modules) of
``staffml_dagster`` import each other, directly or through others. Every import counts, the
ones inside functions too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "staffml_dagster"


def _unit(module: str) -> str | None:
    """The subpackage or top-level module a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] != "staffml_dagster" or len(parts) < 2:
        return None
    return parts[1]


def import_edges(package: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the modules whose imports make the edge."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        source = _unit(module)
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = module.split(".")[
                    : len(module.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)
                ]
                targets = [".".join([*base, node.module] if node.module else base)]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
                targets += [f"{node.module}.{a.name}" for a in node.names] if node.module == "staffml_dagster" else []
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                unit = _unit(target)
                if unit and unit != source and module not in edges[source][unit]:
                    edges[source][unit].append(module)
    return edges


def find_cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every strongly connected group of two or more units (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(set(edges) | {n for targets in edges.values() for n in targets}):
        if node not in index:
            visit(node)
    return groups


def test_find_cycles_finds_a_planted_cycle_and_accepts_layers():
    layered = {
        "stages": {"quality": ["x"], "generation": ["y"]},
        "generation": {"quality": ["z"]},
        "quality": {"core": ["w"]},
    }
    assert find_cycles(layered) == []
    planted = {**layered, "core": {"generation": ["v"]}}
    assert find_cycles(planted) == [["core", "generation", "quality"]]


def test_import_edges_sees_imports_inside_functions(tmp_path):
    pkg = tmp_path / "staffml_dagster"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "b" / "__init__.py").write_text("from staffml_dagster.a import thing\n")
    (pkg / "a" / "m.py").write_text("def f():\n    from staffml_dagster.b import other\n")
    edges = import_edges(pkg)
    assert dict(edges["a"]) == {"b": ["staffml_dagster.a.m"]}
    assert find_cycles(edges) == [["a", "b"]]


def test_no_import_cycle_between_subpackages():
    edges = import_edges()
    cycles = find_cycles(edges)
    described = []
    for group in cycles:
        members = set(group)
        links = [
            f"{src} -> {dst} ({', '.join(mods)})"
            for src in group
            for dst, mods in sorted(edges[src].items())
            if dst in members
        ]
        described.append("; ".join(links))
    assert not cycles, "import cycles between parts of staffml_dagster:\n" + "\n".join(described)


# The parts from the bottom up, as README's layout lists them: each imports only parts before it.
LAYERS = [
    "paths",
    "units",
    "progress",
    "specs",
    "partitions",
    "core",
    "storage",
    "embedding",
    "estimation",
    "quality",
    "generation",
    "interchange",
    "resources",
    "runs",
    "stages",
    "definitions",
    "cli",
]


def test_every_part_imports_only_the_layers_below_it():
    edges = import_edges()
    unknown = sorted((set(edges) | {t for targets in edges.values() for t in targets}) - set(LAYERS))
    assert not unknown, f"parts not placed in LAYERS (and in README's layout): {unknown}"
    upward = [
        f"{src} -> {dst} ({', '.join(mods)})"
        for src, targets in edges.items()
        for dst, mods in targets.items()
        if LAYERS.index(dst) > LAYERS.index(src)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_readme_layout_lists_the_parts_in_layer_order():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("staffml_dagster/    the code") : readme.index("\ndata/ ")]
    listed = [
        line.split()[0].removesuffix("/").removesuffix(".py")
        for line in block.splitlines()[1:]
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert listed == LAYERS
