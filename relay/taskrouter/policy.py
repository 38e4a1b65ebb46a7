"""Pure: which TaskRouter tasks get assist — an expression over task and worker attributes.

The syntax is TaskRouter's own workflow-expression syntax, which Flex administrators already
write: `worker.assist != false AND taskqueue.name IN ["Support", "Billing"]`.

- Paths: `task.<attr>…` (task attributes), `worker.<attr>…` (worker attributes),
  `taskqueue.name`, `taskqueue.sid`, `channel` (the task channel's unique name). A missing
  attribute is `null`.
- Literals: "strings" or 'strings', numbers, `true`, `false`, `null`, lists `[…]`.
- Operators: `==`, `!=`, `>`, `>=`, `<`, `<=`, `IN`, `NOT IN`, `HAS` (list contains),
  `CONTAINS` (substring), `AND`/`&&`, `OR`/`||`, `NOT`/`!`, parentheses. Keywords are
  case-insensitive. Comparing values of different types is false, never an error.

`compile_policy()` parses once (a bad expression is a configuration error naming the
position); `Policy.allows(context)` evaluates it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from relay.errors import ConfigurationError

_TOKEN_RE: Final = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|>=|<=|&&|\|\||[><!()\[\],])
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = {"and", "or", "not", "in", "has", "contains", "true", "false", "null"}
Evaluator = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, op, word, keyword, end
    value: Any
    at: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ConfigurationError(f"policy: unexpected character at {bad + 1}: {text[bad : bad + 10]!r}")
        at = match.start(match.lastgroup or 0)
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "string":
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "number":
            value = float(raw) if "." in raw else int(raw)
        elif kind == "word" and raw.lower() in _KEYWORDS:
            kind, value = "keyword", raw.lower()
        else:
            value = raw
        tokens.append(_Token(kind, value, at))
        pos = match.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokens(text)
        self._i = 0

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _next(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _fail(self, what: str) -> ConfigurationError:
        token = self._peek()
        return ConfigurationError(f"policy: {what} at {token.at + 1} in {self._text!r}")

    def _accept(self, kind: str, *values: Any) -> bool:
        token = self._peek()
        if token.kind == kind and (not values or token.value in values):
            self._i += 1
            return True
        return False

    def parse(self) -> Evaluator:
        expression = self._or()
        if self._peek().kind != "end":
            raise self._fail("unexpected text")
        return expression

    def _or(self) -> Evaluator:
        parts = [self._and()]
        while self._accept("keyword", "or") or self._accept("op", "||"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda ctx: any(_truthy(p(ctx)) for p in parts)

    def _and(self) -> Evaluator:
        parts = [self._not()]
        while self._accept("keyword", "and") or self._accept("op", "&&"):
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        return lambda ctx: all(_truthy(p(ctx)) for p in parts)

    def _not(self) -> Evaluator:
        if self._accept("keyword", "not") or self._accept("op", "!"):
            inner = self._not()
            return lambda ctx: not _truthy(inner(ctx))
        return self._comparison()

    def _comparison(self) -> Evaluator:
        left = self._value()
        token = self._peek()
        op: str | None = None
        if (token.kind == "op" and token.value in ("==", "!=", ">", ">=", "<", "<=")) or (
            token.kind == "keyword" and token.value in ("in", "has", "contains")
        ):
            op = self._next().value
        elif token.kind == "keyword" and token.value == "not" and self._tokens[self._i + 1].value == "in":
            self._i += 2
            op = "not in"
        if op is None:
            return left
        right = self._value()
        compare = _OPERATORS[op]
        return lambda ctx: compare(left(ctx), right(ctx))

    def _value(self) -> Evaluator:
        token = self._next()
        if token.kind in ("string", "number"):
            return _const(token.value)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            return _const({"true": True, "false": False, "null": None}[token.value])
        if token.kind == "word":
            path = tuple(token.value.split("."))
            return lambda ctx: _lookup(ctx, path)
        if token.kind == "op" and token.value == "(":
            inner = self._or()
            if not self._accept("op", ")"):
                raise self._fail("expected )")
            return inner
        if token.kind == "op" and token.value == "[":
            items: list[Any] = []
            if not self._accept("op", "]"):
                while True:
                    item = self._next()
                    if item.kind in ("string", "number"):
                        items.append(item.value)
                    elif item.kind == "keyword" and item.value in ("true", "false", "null"):
                        items.append({"true": True, "false": False, "null": None}[item.value])
                    else:
                        self._i -= 1
                        raise self._fail("expected a literal in the list")
                    if self._accept("op", "]"):
                        break
                    if not self._accept("op", ","):
                        raise self._fail("expected , or ]")
            return _const(items)
        self._i -= 1
        raise self._fail("expected a value")


def _const(value: Any) -> Evaluator:
    return lambda ctx: value


def _lookup(ctx: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = ctx
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _truthy(value: Any) -> bool:
    return bool(value)


def _same_kind(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


def _order(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        return a is not None and b is not None and _same_kind(a, b) and not isinstance(a, bool) and test(a, b)

    return compare


def _in(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return a in b
    return isinstance(a, str) and isinstance(b, str) and a in b


_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": lambda a, b: a == b and _same_kind(a, b) if a is not None and b is not None else a is b,
    "!=": lambda a, b: not (a == b and _same_kind(a, b)) if a is not None and b is not None else a is not b,
    ">": _order(lambda a, b: a > b),
    ">=": _order(lambda a, b: a >= b),
    "<": _order(lambda a, b: a < b),
    "<=": _order(lambda a, b: a <= b),
    "in": _in,
    "not in": lambda a, b: not _in(a, b),
    "has": lambda a, b: isinstance(a, list) and b in a,
    "contains": lambda a, b: isinstance(a, str) and isinstance(b, str) and b in a,
}


@dataclass(frozen=True)
class Policy:
    source: str
    _evaluate: Evaluator

    def allows(self, context: Mapping[str, Any]) -> bool:
        return _truthy(self._evaluate(context))


def compile_policy(text: str) -> Policy:
    if not text.strip():
        raise ConfigurationError("policy: empty expression (use `true` to assist every task)")
    return Policy(text, _Parser(text).parse())
