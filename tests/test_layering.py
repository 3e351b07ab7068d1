"""Imports only point down the layers of DESIGN.md §2, and no modules import each other in a cycle.

Read from the source with ``ast`` (imports inside functions included: a lazy import is still a
dependency), so a new upward or circular import fails here before anyone has to notice it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "obliviate"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: top-level unit -> layer; a unit may import its own layer and any lower one. ``testing`` is the
#: methods' conformance suite: it drives ``unlearn`` and ``train``, so it sits with ``methods``
#: (nothing in the library below it may import it). The package itself (``obliviate/__init__.py``,
#: key ``""``) is the facade over the library up to ``evaluation`` (it loads ``bench``, ``report``
#: and ``lm`` lazily, by name), so application code may ``import obliviate as ob`` and nothing below may.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["data", "models", "objectives", "metrics", "io", "utils", "executor"], 0),  # foundation
    "train": 1,
    **dict.fromkeys(["methods", "exact", "testing"], 2),
    "evaluation": 3,
    "": 4,
    **dict.fromkeys(["bench", "report", "evidence", "lm", "diffusion"], 5),  # application code
    **dict.fromkeys(["cli", "__main__"], 6),
}


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``obliviate`` module ``name`` imports, anywhere in the file. ``from X import y``
    counts as importing ``X.y`` when that is a module, else ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def unit(module: str) -> str:
    """``obliviate.methods.scrub`` -> ``methods``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            if LAYERS[unit(dst)] > LAYERS[unit(src)]:
                bad.append(
                    f"{src} ({unit(src) or PACKAGE}, layer {LAYERS[unit(src)]}) imports {dst} "
                    f"({unit(dst) or PACKAGE}, layer {LAYERS[unit(dst)]})"
                )
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level units (``methods``, ``train``, ...), self-edges dropped."""
    out: dict[str, set[str]] = {}
    for src, targets in graph.items():
        out.setdefault(unit(src), set()).update(unit(t) for t in targets if unit(t) != unit(src))
    return out


def test_every_unit_has_a_layer():
    assert {unit(m) for m in _modules()} <= set(LAYERS), "give the new subpackage/module a layer in LAYERS"


def test_no_import_points_up():
    bad = upward_imports(import_graph())
    assert not bad, "imports pointing up the layers (DESIGN.md §2):\n  " + "\n  ".join(bad)


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_no_import_cycles_between_units():
    found = cycles(unit_graph(import_graph()))
    assert not found, "import cycles between subpackages:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_a_lazy_upward_import_and_a_cycle(tmp_path):
    """The parser sees relative imports inside functions, and the cycle search finds a 2-cycle."""
    method = tmp_path / "method.py"
    method.write_text("def run():\n    from ...bench import config\n")
    known = {"obliviate.bench.config", "obliviate.methods.x.method"}
    graph = {"obliviate.methods.x.method": imports_of("obliviate.methods.x.method", method, known)}
    assert graph["obliviate.methods.x.method"] == {"obliviate.bench.config"}
    assert upward_imports(graph)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
