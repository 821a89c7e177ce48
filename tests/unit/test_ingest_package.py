"""The ingestion package's shape: family modules never import the package root, rag.library or
each other in a circle; and the HTML stack's dependencies are declared and importable.
"""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rag" / "ingest"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported_modules(name: str) -> set[str]:
    """Dotted names a module of the package imports, at any depth (TYPE_CHECKING blocks too)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"rag/ingest/{name}.py: use absolute imports"
            base = node.module or ""
            for alias in node.names:
                # `from rag.ingest import ocr` imports a sibling module, not the package root.
                if base == "rag.ingest" and alias.name in MODULES:
                    found.add(f"rag.ingest.{alias.name}")
                else:
                    found.add(base)
    return found


def sibling_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        inside = [m[len("rag.ingest.") :] for m in imported_modules(name) if m.startswith("rag.ingest.")]
        graph[name] = {m.split(".")[0] for m in inside}
    return graph


def test_package_has_the_family_modules() -> None:
    assert {"types", "text", "pdf", "images", "office", "html", "tabular"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_family_module_imports_neither_the_root_nor_the_library(name: str) -> None:
    imports = imported_modules(name)
    assert "rag.ingest" not in imports, f"rag/ingest/{name}.py imports the package root"
    assert not {m for m in imports if m == "rag.library" or m.startswith("rag.library.")}
    # The old modules are gone; nothing may reach for them.
    assert not imports & {"rag.extract", "rag.formats", "rag.ocr"}


def test_family_modules_import_each_other_without_a_cycle() -> None:
    graph = sibling_graph()
    assert all(targets <= set(MODULES) for targets in graph.values()), graph
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in MODULES:
        visit(name, [])
    assert graph["types"] == set()  # the leaf everything else builds on


def test_every_module_imports_on_its_own() -> None:
    for name in MODULES:
        importlib.import_module(f"rag.ingest.{name}")


# -- dependencies ---------------------------------------------------------------------------------


def test_lxml_html_clean_is_a_pinned_dependency() -> None:
    # lxml 5.2 moved lxml.html.clean out into lxml_html_clean; justext (under trafilatura) imports
    # it, and a fresh install that skipped the extra could not import trafilatura.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = [dep.split("==")[0] for dep in project["dependencies"] if "==" in dep]
    assert "lxml-html-clean" in {re.sub(r"[-_.]+", "-", name).lower() for name in pinned}


def test_html_stack_imports() -> None:
    lxml_html_clean = importlib.import_module("lxml_html_clean")
    clean = importlib.import_module("lxml.html.clean")
    assert clean.Cleaner is lxml_html_clean.Cleaner
    trafilatura = importlib.import_module("trafilatura")
    assert callable(trafilatura.extract)
