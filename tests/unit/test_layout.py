"""The import rules of DESIGN.md §2, checked on the source: who may import Streamlit, which way
imports flow between packages, and no import circle inside any package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rag", "providers", "storage", "ui", "app_pages")
UI_ONLY = ("streamlit_app", "app_pages", "ui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [ROOT / "streamlit_app.py", ROOT / "settings.py", ROOT / "language.py", ROOT / "sqlite_compat.py"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return {_module_name(p): p for p in files}


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of every module this one imports, at any depth of its code."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import module`` depends on that module, not on the package's own code.
            names = {f"{base}.{alias.name}" for alias in node.names}
            modules = names & MODULES
            out.update(modules or {base})
            if modules != names:
                out.add(base)
    return out


SOURCES = _sources()
MODULES = set(SOURCES)
GRAPH = {name: _imports(name, path) for name, path in SOURCES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_only_the_ui_imports_streamlit() -> None:
    offenders = {m for m, imps in GRAPH.items() if "streamlit" in {_top(i) for i in imps}}
    assert offenders, "the check must see the pages' imports"
    assert {m for m in offenders if _top(m) not in UI_ONLY} == set()


def test_imports_flow_one_way() -> None:
    allowed = {
        "language": set(),
        "settings": set(),
        "sqlite_compat": set(),
        # language: the stems of chat search (storage.chat_index), a leaf module like settings
        "storage": {"settings", "sqlite_compat", "language"},
        "providers": {"settings", "language"},
        "rag": {"providers", "storage", "settings", "language", "sqlite_compat"},
        "ui": {"rag", "providers", "storage", "settings", "language"},
        "app_pages": {"ui", "rag", "providers", "storage", "settings", "language"},
        "streamlit_app": {"ui"},
    }
    ours = set(allowed)
    for module, imports in GRAPH.items():
        used = {_top(i) for i in imports} & ours - {_top(module)}
        assert used <= allowed[_top(module)], (module, used - allowed[_top(module)])


def test_no_import_circle_inside_a_package() -> None:
    edges = {m: {i for i in imps if i in GRAPH and i != m} for m, imps in GRAPH.items()}
    # A package's __init__ re-exporting its modules is not a circle; a module importing its
    # own package's __init__ while that __init__ imports it back is.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])


# Inside rag/, subpackages build on one another in this order; none imports one above it.
RAG_LAYERS = {
    "rag.ingest": {"rag.ingest"},
    "rag.identity": {"rag.identity"},
    "rag.search": {"rag.search", "rag.identity", "rag.ingest"},
    "rag.library": {"rag.library", "rag.search", "rag.identity", "rag.ingest", "rag.chunking"},
    "rag.answer": {"rag.answer", "rag.search", "rag.identity"},
    "rag.jobs": {"rag.jobs", "rag.library", "rag.search", "rag.identity", "rag.ingest"},
}


def _layer(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_rag_subpackages_import_only_those_below() -> None:
    wrong = []
    for module, imports in GRAPH.items():
        allowed = RAG_LAYERS.get(_layer(module))
        if allowed is None:
            continue
        for imported in imports:
            if _top(imported) == "rag" and imported != "rag" and _layer(imported) not in allowed:
                wrong.append(f"{module} -> {imported}")
    assert not wrong, wrong
