"""The import graph of udrfs/, computed with `ast`, holds to docs/architecture.md, "Layers".

Every `import` counts wherever it stands: at the top of a module, inside a function (a lazy
import) or under `if TYPE_CHECKING:`. Three rules:

1. No upward import: a module imports only from its own layer or the layers below it; and
   fs/ imports neither query/ nor repo.py, though they sit below it (the mount needs no DuckDB).
2. Above the catalog (query/, repo.py, fs/, cli/) the store is reached through the catalog:
   no runtime import of `udrfs.store` or `udrfs._native`. Naming a store type in an
   annotation, under `TYPE_CHECKING`, is allowed.
3. No import cycle between modules, lazy ones included. Cycles closed only by
   `TYPE_CHECKING` imports are checked separately: they cannot fail at import time, but they
   show a helper depending on the whole of a module that depends on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "udrfs"

# Lowest first. A package name covers its modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("udrfs.errors", "udrfs._native", "udrfs.lru", "udrfs.sizes"),
    ("udrfs.store",),
    ("udrfs.parquet",),
    ("udrfs.catalog",),
    ("udrfs.query",),
    ("udrfs.repo",),  # the Python API: the catalog plus query/ (imported lazily)
    ("udrfs.fs",),
    ("udrfs.cli",),
    ("udrfs",),  # the package's own __init__: the public names
)
ABOVE_THE_CATALOG = ("udrfs.query", "udrfs.repo", "udrfs.fs", "udrfs.cli")
STORE_LEVEL = ("udrfs.store", "udrfs._native")
# Layers that are below another in LAYERS yet are not its to import.
NOT_IMPORTED_BY = {"udrfs.fs": ("udrfs.query", "udrfs.repo")}

Kind = Literal["top", "lazy", "type-checking"]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a package's __init__ is the package name)
    kind: Kind
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target} ({self.kind})"


def modules(package: Path) -> dict[str, Path]:
    """Module name -> source file; compiled modules count where a `.pyi` stub names them."""
    out: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if path.suffix == ".py" or name not in out:
            out[name] = path
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module an imported name lives in (`udrfs.catalog.Catalog` -> `udrfs.catalog`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(package: Path) -> list[Import]:
    """Every import of a module of the package by a module of the package."""
    known = modules(package)
    found: list[Import] = []
    for source, path in known.items():
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        checking = _type_checking_lines(tree)
        top = {id(node) for node in tree.body}
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".") if is_package else source.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from udrfs.x import y` imports the module udrfs.x.y if there is one.
                names = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            kind: Kind = (
                "type-checking" if node.lineno in checking else "top" if id(node) in top else "lazy"
            )
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            for target in sorted({_owner(n, known) for n in names} - {None, source}):
                assert target is not None
                found.append(Import(source, target, kind, where))
    return found


def layer(module: str) -> int:
    """Index in LAYERS of the most specific entry covering `module`."""
    best = max(
        (
            (len(prefix), i)
            for i, group in enumerate(LAYERS)
            for prefix in group
            if _within(module, prefix)
        ),
        default=None,
    )
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[1]


def upward_imports(found: list[Import]) -> list[Import]:
    return [
        i
        for i in found
        if layer(i.target) > layer(i.source)
        or any(
            _within(i.source, source) and any(_within(i.target, t) for t in targets)
            for source, targets in NOT_IMPORTED_BY.items()
        )
    ]


def store_reached_around_the_catalog(found: list[Import]) -> list[Import]:
    return [
        i
        for i in found
        if i.kind != "type-checking"
        and any(_within(i.source, p) for p in ABOVE_THE_CATALOG)
        and any(_within(i.target, p) for p in STORE_LEVEL)
    ]


def cycles(found: list[Import]) -> list[list[Import]]:
    """The import cycles: within each strongly connected group of modules (Tarjan), the
    shortest cycle through each import between two of its modules, each cycle once."""
    edges: dict[str, dict[str, Import]] = {}
    for i in found:
        edges.setdefault(i.source, {}).setdefault(i.target, i)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    out: list[list[Import]] = []
    seen: set[frozenset[Import]] = set()
    for group in sorted(groups, key=sorted):
        for source in sorted(group):
            for target, imp in sorted(edges[source].items()):
                if target in group:
                    cycle = [imp, *_shortest_path(edges, group, target, source)]
                    if frozenset(cycle) not in seen:
                        seen.add(frozenset(cycle))
                        out.append(cycle)
    return out


def _shortest_path(
    edges: dict[str, dict[str, Import]], group: set[str], start: str, end: str
) -> list[Import]:
    paths: dict[str, list[Import]] = {start: []}
    todo = [start]
    while end not in paths:  # breadth first, inside the group (strongly connected)
        todo = [w for v in todo for w in _step(edges, group, paths, v)]
    return paths[end]


def _step(
    edges: dict[str, dict[str, Import]], group: set[str], paths: dict[str, list[Import]], v: str
) -> list[str]:
    reached = []
    for w, imp in sorted(edges.get(v, {}).items()):
        if w in group and w not in paths:
            paths[w] = [*paths[v], imp]
            reached.append(w)
    return reached


def _report(title: str, lines: Iterator[str] | list[str]) -> str:
    return "\n".join([title, *(f"  {line}" for line in lines)])


# ---- the package ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return imports(PACKAGE)


def test_every_module_sits_in_a_layer(graph: list[Import]) -> None:
    for module in modules(PACKAGE):
        layer(module)


def test_no_module_imports_from_a_layer_above_its_own(graph: list[Import]) -> None:
    bad = upward_imports(graph)
    assert not bad, _report("upward imports (docs/architecture.md, Layers):", map(str, bad))


def test_above_the_catalog_the_store_is_reached_through_the_catalog(graph: list[Import]) -> None:
    bad = store_reached_around_the_catalog(graph)
    assert not bad, _report("store-level imports above the catalog:", map(str, bad))


def test_no_import_cycle_at_run_time(graph: list[Import]) -> None:
    found = cycles([i for i in graph if i.kind != "type-checking"])
    assert not found, _report(
        "import cycles:", (" -> ".join(str(i) for i in cycle) for cycle in found)
    )


def test_no_import_cycle_even_through_annotations(graph: list[Import]) -> None:
    found = cycles(graph)
    assert not found, _report(
        "import cycles (counting TYPE_CHECKING imports):",
        ("\n    -> ".join(str(i) for i in cycle) for cycle in found),
    )


# ---- the check itself -------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "udrfs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "udrfs"


def test_the_check_finds_upward_lazy_and_annotation_imports(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "store/__init__.py": "",
            "store/objects.py": "def f():\n    from udrfs.catalog import model\n",
            "catalog/__init__.py": "",
            "catalog/model.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from udrfs.query.engine import QueryEngine\n"
            ),
            "query/__init__.py": "",
            "query/engine.py": "from udrfs.store.objects import f\nfrom ..catalog import model\n",
            "fs/__init__.py": "",
            "fs/reader.py": "import udrfs.query.engine\n",
        },
    )
    found = imports(package)
    assert {(i.source, i.target, i.kind) for i in upward_imports(found)} == {
        ("udrfs.store.objects", "udrfs.catalog.model", "lazy"),
        ("udrfs.catalog.model", "udrfs.query.engine", "type-checking"),
        ("udrfs.fs.reader", "udrfs.query.engine", "top"),
    }
    assert [(i.source, i.target) for i in store_reached_around_the_catalog(found)] == [
        ("udrfs.query.engine", "udrfs.store.objects")
    ]
    assert [[(i.source, i.target) for i in cycle] for cycle in cycles(found)] == [
        [
            ("udrfs.catalog.model", "udrfs.query.engine"),
            ("udrfs.query.engine", "udrfs.catalog.model"),
        ],
        [
            ("udrfs.query.engine", "udrfs.store.objects"),
            ("udrfs.store.objects", "udrfs.catalog.model"),
            ("udrfs.catalog.model", "udrfs.query.engine"),
        ],
    ]
    assert cycles([i for i in found if i.kind != "type-checking"]) == []
