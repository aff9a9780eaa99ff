"""The package's shape: no import cycles between modules or between sub-packages, and every module says what it
is for in its first lines (a docstring). Imports are read from the source (``ast``), including the ones inside
functions; only ``if TYPE_CHECKING:`` blocks (annotations) are left out."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "headrecon"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """Modules of ``headrecon`` that ``path`` imports (resolved relative imports, TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text())
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    out = set()

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("headrecon"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            if base.startswith("headrecon"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _graph():
    mods = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return mods, {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def _cycle(graph):
    """One cycle of ``graph`` (a list of nodes) or None."""
    state, stack = {}, []

    def dfs(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = dfs(m)
                if found:
                    return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = dfs(n)
            if found:
                return found
    return None


def _parent_packages(graph):
    """Edges between modules and their own packages' __init__ are not cycles of the design: drop them."""
    return {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}


def test_no_module_import_cycle():
    _, graph = _graph()
    cyc = _cycle(_parent_packages(graph))
    assert cyc is None, "import cycle: " + " -> ".join(cyc)


def test_no_subpackage_import_cycle():
    """headrecon.X -> headrecon.Y over all modules: e.g. methods may use priors, priors may not use methods."""
    _, graph = _graph()
    top = lambda m: ".".join(m.split(".")[:2])
    pkgs = {}
    for m, deps in graph.items():
        for d in deps:
            if top(d) != top(m) and top(m) != "headrecon" and top(d) != "headrecon":
                pkgs.setdefault(top(m), set()).add(top(d))
    cyc = _cycle(pkgs)
    assert cyc is None, "sub-package cycle: " + " -> ".join(cyc)


def test_cycle_detector_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_is_for(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split()) >= 5, f"{path}: no module docstring"
