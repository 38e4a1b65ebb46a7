"""The package's imports point one way: no cycle in `relay/` or `sync_publisher/`, counting
imports inside functions too (a function-level import that dodges a cycle is still a cycle);
imports under `if TYPE_CHECKING:` are annotations only and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "sync_publisher")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, module: str, known: set[str]) -> set[str]:
    package = module.rsplit(".", 1)[0] if "." in module else module
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != module}


def _graph() -> dict[str, set[str]]:
    # Subpackages too (relay.redaction, relay.usage): a cycle through one is still a cycle.
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {_module_name(p) for p in files}
    return {_module_name(p): _runtime_imports(ast.parse(p.read_text()), _module_name(p), known) for p in files}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    assert _find_cycle(_graph()) is None, " → ".join(_find_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_handlers_read_the_state_module_not_the_app() -> None:
    graph = _graph()
    for handler in ("relay.web.media_ws", "relay.web.http_api", "relay.web.console"):
        assert "relay.web.app" not in graph[handler] and "relay.web.state" in graph[handler], handler
    handlers = {"relay.web.media_ws", "relay.web.http_api", "relay.web.console", "relay.web.app"}
    assert not graph["relay.web.state"] & handlers


def test_pure_modules_do_no_io() -> None:
    graph = _graph()
    pure_modules = (
        "relay.twilio.media",
        "relay.audio.dsp",
        "relay.audio.buffer",
        "relay.model.events",
        "relay.model.link_policy",
        "relay.knowledge.base",
        "relay.wrapup.call_record",
        "relay.wrapup.insights",
        "relay.wrapup.schema",
        "relay.redaction.scan",
        "relay.redaction.redactor",
        "relay.usage.accumulator",
        "relay.usage.billing",
        "relay.usage.prices",
    )
    allowed = {"relay.errors", "relay.audio.dsp", "relay.model.events", "sync_publisher.backoff"}
    allowed |= {"relay.wrapup.call_record", "relay.wrapup.insights"}  # pure themselves
    # Pure packages may use their own pure modules.
    allowed |= {m for m in graph if m.startswith(("relay.redaction", "relay.usage")) and m != "relay.usage.price_file"}
    for pure in pure_modules:
        source = (ROOT / (pure.replace(".", "/") + ".py")).read_text()
        tree = ast.parse(source)
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"asyncio", "aiohttp", "socket", "websockets", "openai", "twilio"}, pure
        assert graph[pure] <= allowed, (
            pure,
            graph[pure],
        )
