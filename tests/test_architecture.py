"""The layout rules of dlf/ (README "Architecture"): no import circles, no module over 400 lines,
no module importing another's private names, a docstring on every module."""
import ast
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "dlf"
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) of every dlf import in a module, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlf"):
            for a in node.names:  # `from dlf import config` imports the module dlf.config
                sub = f"{node.module}.{a.name}"
                out.append((sub, []) if sub in MODULES else (node.module, [a.name]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("dlf")]
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {i for i, _ in _imports(m, p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path + [m, n]
            if n not in state and (c := visit(n, path + [m])):
                return c
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m, [])):
            return c
    return None


def test_no_import_circles():
    assert _cycle(_graph()) is None, f"import circle: {' -> '.join(_cycle(_graph()))}"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small_and_documented(module):
    path = MODULES[module]
    assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines"
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_no_module_imports_private_names():
    bad = [(m, i, n) for m, p in MODULES.items() for i, names in _imports(m, p) for n in names
           if n.startswith("_") and i != m]
    assert not bad, f"private names imported across modules: {bad}"
