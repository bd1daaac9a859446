"""The package's shape, checked with ``ast``: short functions and files, no private names across
modules, no task-name switches outside ``cnnlstm/tasks/``, no module-level import cycle.

Each check is a function over (path, source) pairs that returns ``file:line: message`` strings, so
``test_each_check_catches_a_violation`` can show it fails on a bad example.

Private modules: ``from . import _x`` (a private module of the importing module's own package) is
allowed; a private *name* (``from .m import _f``, or ``module._f`` on an imported module) from
another module is not. Imports inside functions are not part of the import graph (they run late,
which is how a lower layer reaches the task registry without a cycle); ``if TYPE_CHECKING:``
imports are not either.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cnnlstm.tasks import list_tasks

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cnnlstm"
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400

Source = tuple[str, str]  # (path relative to the repository, text)


def package_sources(root: Path = PACKAGE) -> list[Source]:
    return [(str(p.relative_to(root.parent)), p.read_text()) for p in sorted(root.rglob("*.py"))]


def module_name(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: str) -> bool:
    return Path(path).name == "__init__.py"


# --- sizes --------------------------------------------------------------------------------------

def long_functions(sources: list[Source], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path, text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                n = node.end_lineno - first + 1
                if n > limit:
                    out.append(f"{path}:{node.lineno}: function {node.name} has {n} lines (at most {limit})")
    return out


def long_files(sources: list[Source], limit: int = MAX_FILE_LINES) -> list[str]:
    out = []
    for path, text in sources:
        n = len(text.splitlines())
        if n > limit:
            out.append(f"{path}:{n}: {n} lines (at most {limit})")
    return out


# --- imports ------------------------------------------------------------------------------------

def resolve(path: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if not node.level:
        return node.module or ""
    base = module_name(path).split(".")
    if not is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(sources: list[Source]) -> list[str]:
    """``from other import _name`` and ``imported_module._name`` across modules."""
    modules = {module_name(p) for p, _ in sources}
    out = []
    for path, text in sources:
        tree = ast.parse(text)
        own_package = module_name(path) if is_package(path) else module_name(path).rpartition(".")[0]
        module_aliases = {}  # local name -> module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = resolve(path, node)
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:
                        module_aliases[alias.asname or alias.name] = full
                        if _private(alias.name) and source != own_package:
                            out.append(f"{path}:{node.lineno}: imports the private module {full} of another package")
                    elif _private(alias.name) and source in modules:
                        out.append(f"{path}:{node.lineno}: imports the private name {alias.name} from {source}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        module_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in module_aliases and _private(node.attr)):
                out.append(f"{path}:{node.lineno}: uses the private name {node.attr} of "
                           f"{module_aliases[node.value.id]}")
    return out


def _module_level_imports(tree: ast.Module):
    """Import nodes that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    def visit(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    yield from visit(node.body)
                yield from visit(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    yield from visit(part)
            elif isinstance(node, (ast.ClassDef, ast.With)):
                yield from visit(node.body)
    yield from visit(tree.body)


def import_graph(sources: list[Source]) -> dict[str, list[tuple[str, str]]]:
    """module -> [(imported module, "file:line")], module-level imports among the given modules."""
    modules = {module_name(p) for p, _ in sources}
    graph: dict[str, list[tuple[str, str]]] = {m: [] for m in modules}
    for path, text in sources:
        me = module_name(path)
        for node in _module_level_imports(ast.parse(text)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:  # a submodule imported by name, else the module the names come from
                source = resolve(path, node)
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                if target in modules and target != me:
                    graph[me].append((target, f"{path}:{node.lineno}"))
    return graph


def import_cycles(sources: list[Source]) -> list[str]:
    graph = import_graph(sources)
    out, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target, where in graph[module]:
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                out.append(f"{where}: module-level import cycle {' -> '.join(cycle)}")
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return out


# --- task names ---------------------------------------------------------------------------------

def task_name_switches(sources: list[Source], names: list[str]) -> list[str]:
    """Comparisons of a value with a task-name literal, and dict lookups keyed by task names."""
    names = set(names)

    def literal_names(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(literal_names(e) for e in node.elts)) if node.elts else set()
        return set()

    out = []
    for path, text in sources:
        for node in ast.walk(ast.parse(text)):
            found = set()
            if isinstance(node, ast.Compare):  # task == "x", "x" != task, task in ("x", ...)
                sides = [node.left, *node.comparators]
                for op, left, right in zip(node.ops, sides[:-1], sides[1:], strict=True):
                    if isinstance(op, (ast.In, ast.NotIn)):  # "caption" in row: a key, data-driven
                        found |= literal_names(right) if not isinstance(right, ast.Constant) else set()
                    else:
                        found |= literal_names(left) | literal_names(right)
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
                found = set().union(*(literal_names(k) for k in node.value.keys if k is not None))
            elif isinstance(node, ast.Dict):  # {"segment": ...}.get(task) and friends
                found = set().union(*(literal_names(k) for k in node.keys if k is not None))
                found = found if len(found) > 1 else set()
            elif isinstance(node, ast.MatchValue):
                found = literal_names(node.value)
            if found:
                out.append((path, node.lineno, f"{path}:{node.lineno}: compares with the task name(s) {sorted(found)}; "
                            "ask the run's task (cnnlstm.tasks) instead"))
    return [message for _, _, message in sorted(out)]


def task_name_switches_js(sources: list[Source], names: list[str]) -> list[str]:
    alternatives = "|".join(re.escape(n) for n in names)
    pattern = re.compile(rf"""[=!]==?\s*["']({alternatives})["']|["']({alternatives})["']\s*[=!]==?""")
    out = []
    for path, text in sources:
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                out.append(f"{path}:{number}: compares with a task name; branch on the data the server sends")
    return out


# --- the package --------------------------------------------------------------------------------

def outside_tasks(sources: list[Source]) -> list[Source]:
    return [(p, t) for p, t in sources if not Path(p).is_relative_to("cnnlstm/tasks")]


def test_no_function_over_80_lines():
    assert long_functions(package_sources()) == []


def test_no_file_over_400_lines():
    assert long_files(package_sources()) == []


def test_no_private_name_imported_across_modules():
    assert private_imports(package_sources()) == []


def test_no_module_level_import_cycle():
    assert import_cycles(package_sources()) == []


def test_no_task_name_switch_outside_tasks():
    assert task_name_switches(outside_tasks(package_sources()), list_tasks()) == []
    scripts = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(PACKAGE.rglob("*.js"))]
    assert scripts, "the web page's scripts should be found"
    assert task_name_switches_js(scripts, list_tasks()) == []


# --- each check can fail ------------------------------------------------------------------------

BAD = {
    "cnnlstm/pkg/__init__.py": "",
    "cnnlstm/pkg/a.py": "from .b import helper, _secret\nfrom . import _private_mod\n\n\ndef f():\n    return 1\n",
    "cnnlstm/pkg/b.py": "from . import a\nfrom ..other import _hidden_mod\n\n\ndef helper():\n    return a._x\n",
    "cnnlstm/pkg/_private_mod.py": "",
    "cnnlstm/other/__init__.py": "",
    "cnnlstm/other/_hidden_mod.py": "",
    "cnnlstm/other/c.py": ("def g(task):\n    if task == 'caption':\n"
                           "        return {'segment': 1, 'classify': 2}[task]\n    return task in ('a', 'segment')\n"),
}


def test_each_check_catches_a_violation():
    sources = list(BAD.items())
    long = [("cnnlstm/pkg/long.py", "def f():\n" + "    x = 1\n" * 85 + "\n" * 330)]
    assert long_functions(long) == ["cnnlstm/pkg/long.py:1: function f has 86 lines (at most 80)"]
    assert long_files(long) == ["cnnlstm/pkg/long.py:416: 416 lines (at most 400)"]
    private = private_imports(sources)
    assert "cnnlstm/pkg/a.py:1: imports the private name _secret from cnnlstm.pkg.b" in private
    assert "cnnlstm/pkg/b.py:2: imports the private module cnnlstm.other._hidden_mod of another package" in private
    assert "cnnlstm/pkg/b.py:6: uses the private name _x of cnnlstm.pkg.a" in private
    assert not any("_private_mod" in v for v in private), "a package's own private module is allowed"
    assert import_cycles(sources) == ["cnnlstm/pkg/b.py:1: module-level import cycle cnnlstm.pkg.a -> cnnlstm.pkg.b "
                                      "-> cnnlstm.pkg.a"]
    switches = task_name_switches(sources, ["classify", "segment", "caption"])
    assert [v.split(": ")[0] for v in switches] == ["cnnlstm/other/c.py:2", "cnnlstm/other/c.py:3",
                                                    "cnnlstm/other/c.py:3", "cnnlstm/other/c.py:4"]
    js = task_name_switches_js([("app.js", 'const x = 1;\nif (info.task === "caption") {}\n')], ["caption"])
    assert js == ["app.js:2: compares with a task name; branch on the data the server sends"]


@pytest.mark.parametrize("snippet", ["x = {'a': 1}['a']", "if kind == 'clip':\n    pass",
                                     "def f():\n    from .b import _ok_in_function\n"])
def test_checks_leave_good_code_alone(snippet):
    sources = [("cnnlstm/pkg/__init__.py", ""), ("cnnlstm/pkg/a.py", snippet)]
    assert task_name_switches(sources, ["caption"]) == [] and import_cycles(sources) == []
