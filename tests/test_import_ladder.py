"""The package is a ladder (ARCHITECTURE.md §1, docs/DEVELOPING.md): every import of citune, lazy ones
included, goes to the same floor or one below, replay/ and evaluation/ never import each other, and
the import graph has no cycle."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Floors, lowest first: a module may import its own floor and the floors below.
FLOORS = [
    {"citune", "citune.cache", "citune.config", "citune.errors", "citune.io", "citune.paths", "citune.progress", "citune.spans",
     "citune.seeds", "citune.terminal", "citune.types"},
    {"citune.data"},
    {"citune.models"},
    {"citune.replay", "citune.evaluation"},
    {"citune.engine"},
    {"citune.runs"},
    {"citune.report"},
    {"citune.cli", "citune.compare", "citune.launch", "citune.__main__"},
]
SIBLINGS = {"citune.replay", "citune.evaluation"}  # on one floor, and neither imports the other


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The citune modules `path` imports anywhere in its body (`from pkg import sub` counts `pkg.sub`), and
    the packages whose `__init__` runs first because of it (`packages_entered`)."""
    name, is_package = module_name(path, src), path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names}
            found |= subs & modules
            if not subs <= modules:  # names defined in `target` itself
                found.add(target)
    found = {m for m in found if m in modules}
    return {m for m in found | {p for m in found for p in packages_entered(name, m)} if m in modules and m != name}


def packages_entered(importer: str, module: str) -> list[str]:
    """The packages whose `__init__` importing `module` runs first: those above it that `importer` is
    not inside (its own packages are initialised already)."""
    parts = module.split(".")
    above = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in above if not (importer == p or importer.startswith(p + "."))]


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / "citune").rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def room(module: str) -> tuple[int, str]:
    """(floor, the entry of FLOORS that holds it): the longest entry that is the module or a package above it."""
    best = max((entry for floor in FLOORS for entry in floor if module == entry or module.startswith(entry + ".")),
               key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is on no floor of the ladder: add it to FLOORS")
    return next(i for i, floor in enumerate(FLOORS) if best in floor), best


def ladder_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        floor, entry = room(module)
        for target in sorted(targets):
            t_floor, t_entry = room(target)
            if t_floor > floor:
                out.append(f"{module} imports {target}, a floor above it")
            elif t_entry != entry and {entry, t_entry} <= SIBLINGS:
                out.append(f"{module} imports {target}, a sibling on its floor")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_goes_down_the_ladder():
    assert ladder_violations(import_graph()) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_catch_an_upward_import_a_sibling_import_and_a_cycle():
    graph = {"citune.replay.kpig": {"citune.engine.trainer", "citune.evaluation.vscore"},
             "citune.engine.trainer": set(), "citune.evaluation.vscore": {"citune.data.text"},
             "citune.data.text": {"citune.data.stream"}, "citune.data.stream": {"citune.data.text"}}
    assert ladder_violations(graph) == [
        "citune.replay.kpig imports citune.engine.trainer, a floor above it",
        "citune.replay.kpig imports citune.evaluation.vscore, a sibling on its floor"]
    assert cycles(graph) == [["citune.data.stream", "citune.data.text"]]


def test_a_lazy_import_inside_a_function_counts(tmp_path):
    path = tmp_path / "src" / "citune" / "replay" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text("def f():\n    from citune.engine import trainer\n    from ..evaluation.vscore import g\n")
    modules = {"citune.engine", "citune.engine.trainer", "citune.evaluation.vscore"}
    assert imports_of(path, modules, tmp_path / "src") == modules


def test_a_package_entered_from_outside_counts(tmp_path):
    """sampling -> inscl.insinfo runs inscl/__init__ first: had it imported inscl.strategy, which imports
    sampling, that was a cycle the interpreter refused (a partially initialised module)."""
    modules = {"citune", "citune.replay", "citune.replay.inscl", "citune.replay.inscl.insinfo",
               "citune.replay.sampling", "citune.replay.base"}
    path = tmp_path / "src" / "citune" / "replay" / "sampling.py"
    path.parent.mkdir(parents=True)
    path.write_text("from citune.replay.inscl.insinfo import rates\nfrom citune.replay.base import register\n")
    assert imports_of(path, modules, tmp_path / "src") == {"citune.replay.inscl", "citune.replay.inscl.insinfo",
                                                           "citune.replay.base"}


@pytest.mark.parametrize("module", ["citune.cli", "citune.replay.kpig", "citune.types"])
def test_every_module_has_a_floor(module):
    assert room(module)[0] >= 0
