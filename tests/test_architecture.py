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


def test_the_core_imports_no_policy():
    """dlf.core computes: it imports nothing of data, models, drive or any other dlf package (at
    module or function level); the builder (dlf.drive.build) decides what runs."""
    bad = [(m, i) for m, p in MODULES.items() if m.startswith("dlf.core")
           for i, _ in _imports(m, p) if not i.startswith(("dlf.core", "dlf.errors"))]
    assert not bad, f"dlf.core imports outside the core: {bad}"


def test_the_drivers_share_one_core_and_do_not_import_each_other():
    graph = _graph()
    assert "dlf.drive.run" not in graph["dlf.drive.grid"] and "dlf.drive.grid" not in graph["dlf.drive.run"]
    assert "dlf.drive.session" in graph["dlf.drive.grid"] and "dlf.drive.session" in graph["dlf.drive.run"]
    # phase.csv and runs.csv are written in one place (dlf.drive.phase_dir), for grids, shards and sweeps
    callers = {m for m, p in MODULES.items() for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                   "write_runs_csv", "results.write_runs_csv", "phase_table.write_csv", "write_csv")
               and "phase" in ast.unparse(node) + "runs.csv"}
    assert callers == {"dlf.drive.phase_dir"}, callers
    users = sorted(m for m in graph if "dlf.drive.phase_dir" in graph[m])
    assert users == ["dlf.cli.aggregate", "dlf.cli.diagram", "dlf.drive.aggregate", "dlf.drive.grid"], users


NAMEDTUPLE_API = ("_replace", "_asdict", "_fields", "_make", "_exit")  # public despite the underscore (os._exit too)


def test_no_private_attribute_of_another_module_or_library():
    """`x._name` where x is not self/cls: reaching into another object's privates (model._mode,
    hydra._internal, ...)."""
    bad = []
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in NAMEDTUPLE_API):
                base = node.value.id if isinstance(node.value, ast.Name) else None
                if base not in ("self", "cls"):
                    bad.append((m, ast.unparse(node)))
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                bad += [(m, n) for n in names if ("._" in n or n.startswith("_")) and n != "__future__"]
    assert not bad, bad
