"""The layout's rules, checked on the source: which folder may import which, no cycles, modules that read in
one sitting, and tests that use only public names.

The table below is the architecture: a folder may import only the folders it lists. `proctor` is the
composition root (the command line and the wiring), so it may import everything and nothing imports it;
that also means no stage imports another stage's command line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, frozenset[str]] = {
    "models": frozenset(),
    "storage": frozenset(),
    "detectors": frozenset({"models"}),
    "core": frozenset({"storage"}),
    "ingest": frozenset({"core", "storage"}),
    "pipelines": frozenset({"core", "storage", "detectors", "models"}),
    "review_ui": frozenset({"core", "storage"}),
    "api": frozenset({"core", "storage", "ingest", "review_ui"}),
    "recorder": frozenset(),
    "openedx": frozenset({"core", "storage", "ingest", "review_ui"}),
    "proctor": frozenset(
        {"core", "storage", "ingest", "detectors", "pipelines", "review_ui", "api", "models", "openedx", "recorder"}
    ),
}
MAX_MODULE_LINES = 520  # "about 500": a module should read in one sitting


def modules(folder: str) -> Iterator[Path]:
    yield from sorted((ROOT / folder).rglob("*.py"))


def imported_folders(path: Path) -> set[str]:
    """The top-level folders of ours that a module imports, anywhere in it (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports stay inside their own package
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in ALLOWED)
    return found


def folder_graph() -> dict[str, set[str]]:
    return {
        folder: {other for path in modules(folder) for other in imported_folders(path)} - {folder} for folder in ALLOWED
    }


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_folder_imports_only_what_the_table_allows(folder: str) -> None:
    forbidden = [
        f"{path.relative_to(ROOT)} imports {other}"
        for path in modules(folder)
        for other in sorted(imported_folders(path) - ALLOWED[folder] - {folder})
    ]
    assert not forbidden, f"{folder} may import only {sorted(ALLOWED[folder])}: " + "; ".join(forbidden)


def test_no_folder_is_imported_by_the_folders_it_imports() -> None:
    graph = folder_graph()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles between folders: " + "; ".join(sorted(set(cycles)))


def test_nothing_imports_the_composition_root() -> None:
    importers = [folder for folder, deps in folder_graph().items() if "proctor" in deps]
    assert importers == [], f"only the `proctor` program may use its command line and wiring, not {importers}"


def test_the_table_rejects_a_forbidden_arrow(tmp_path: Path) -> None:
    """The checker itself: a module of `pipelines` that imports `review_ui` is reported."""
    module = tmp_path / "bad.py"
    module.write_text("from review_ui.results import review_result\n\ndef f():\n    import api.app\n")
    assert imported_folders(module) == {"review_ui", "api"}
    assert imported_folders(module) - ALLOWED["pipelines"] == {"review_ui", "api"}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_modules_read_in_one_sitting(folder: str) -> None:
    long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in modules(folder)
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_tests_use_only_public_names() -> None:
    """A test that imports `_private` from another module pins an implementation detail; test the public API."""
    private = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                private += [
                    f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not private, f"tests import private names: {private}"
