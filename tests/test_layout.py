"""The layout holds: no import cycle among bot/ and commands/ (function-local imports included),
and no module outside the sandbox grows past about 800 lines. `make lint` checks the direction of
imports between the packages (import-linter's layers contract in pyproject.toml); this checks
what import-linter does not: cycles inside a package, and imports made inside functions."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 800
# The one cycle allowed: the registry lists its verbs, and `help` reads the registry back.
ALLOWED_CYCLES = [{"commands", "commands.help"}]


def _modules() -> dict[str, Path]:
    found = {}
    for base in ("bot", "commands"):
        for path in ROOT.joinpath(base).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes |= {id(n) for n in ast.walk(node)}
    return nodes


def _imports_a_verb(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and ast.unparse(node.func).endswith("import_module")
        and bool(node.args)
        and "commands." in ast.unparse(node.args[0])
    )


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of bot/ and commands/ it imports, at the top or inside functions
    (imports made only for type checking excluded: they never run)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package
                    for _ in range(node.level - 1):
                        parent = parent.rpartition(".")[0]
                    base = f"{parent}.{base}" if base else parent
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif _imports_a_verb(node):
                # `importlib.import_module(f"commands.{verb}")`: the registry loading its verbs.
                targets = [m for m in modules if m.startswith("commands.")]
            for target in targets:
                resolved = resolve(target)
                if resolved is not None and resolved != module:
                    graph[module].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_scan_sees_imports_made_inside_functions():
    graph = import_graph()
    # bot/cli.py imports the app inside `serve` (start-up speed): the scan must see it.
    assert "bot.app.runtime" in graph["bot.cli"]
    assert "commands.declare" in graph["commands"]


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles_but_the_registry_and_its_help():
    found = cycles(import_graph())
    unexpected = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"


def test_no_module_outside_the_sandbox_is_over_800_lines():
    sandbox = ROOT / "bot" / "sandbox"
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if sandbox not in path.parents and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_bot_itself_holds_a_handful_of_modules_the_rest_in_packages():
    top = sorted(p.name for p in ROOT.joinpath("bot").glob("*.py"))
    assert top == ["__init__.py", "cli.py", "context.py", "permissions.py"], top
