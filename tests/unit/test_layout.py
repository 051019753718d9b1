"""The package's layout: no import circles among streams' modules, and imports inside functions only
where start-up time needs them (the command line), each with its reason."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "streams"
#: Modules outside streams/cli/ allowed an import inside a function, and why.
LAZY_ELSEWHERE = {
    # confluent-kafka's admin client takes ~0.15 s to import; every `bank` command loads this module.
    "streams.dev.local_broker",
    # The codec's upcasters, resolved when a Codec is built (left as it was: the Schema Registry work
    # changes this module's codec functions at the same time).
    "streams.contract.avro",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "bench" in parts:  # benchmark code, kept as it is
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if node.level == 0:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path, known: dict[str, Path], *, top_level: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = []
    if top_level:
        stack = list(tree.body)
        while stack:  # module level, including under `if` and `try`
            node = stack.pop()
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", [])
                             + [h for handler in getattr(node, "handlers", []) for h in handler.body])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
    else:
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nodes += [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
            continue
        module = _resolve(name, path, node)
        for alias in node.names:
            submodule = f"{module}.{alias.name}"
            if submodule in known:
                found.add(submodule)
            elif module in known:
                found.add(module)
    return found


def test_given_the_package_then_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imports(name, path, known, top_level=True) - {name} for name, path in known.items()}
    circles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert circles == []


def test_given_the_package_then_imports_inside_functions_are_only_for_start_up_and_say_so():
    known = modules()
    for name, path in known.items():
        lazy = imports(name, path, known, top_level=False) | {
            n.module for f in ast.walk(ast.parse(path.read_text()))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        if not lazy:
            continue
        assert name.startswith("streams.cli") or name in LAZY_ELSEWHERE, f"{name} imports inside a function: {lazy}"
    for name in ("streams.cli.main", "streams.cli.progress", "streams.dev.local_broker"):
        text = known[name].read_text().splitlines()
        tree = ast.parse("\n".join(text))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        here = " ".join(text[max(0, node.lineno - 4):node.end_lineno])  # on it or just above
                        assert "#" in here, f"{name}:{node.lineno} imports inside a function without a reason"
