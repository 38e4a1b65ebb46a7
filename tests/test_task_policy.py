"""The assist policy: TaskRouter's expression syntax over task and worker attributes."""

from __future__ import annotations

from typing import Any

import pytest

from relay.errors import ConfigurationError
from relay.taskrouter.policy import compile_policy

CONTEXT: dict[str, Any] = {
    "task": {"type": "inbound", "language": "es", "skills": ["billing", "vip"], "from": "+15551234567", "age": 42},
    "worker": {"assist": True, "team": "Tier 1", "routing": {"level": 3}},
    "taskqueue": {"name": "Support", "sid": "WQ" + "1" * 32},
    "channel": "voice",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true", True),
        ("worker.assist == true", True),
        ("worker.assist != false", True),
        ("worker.missing != false", True),  # an attribute that is not there is null, not false
        ("worker.missing == null", True),
        ('taskqueue.name IN ["Support", "Billing"]', True),
        ("taskqueue.name NOT IN ['Support']", False),
        ('task.skills HAS "vip"', True),
        ('task.from CONTAINS "+1555"', True),
        ("worker.routing.level >= 3 AND task.age < 60", True),
        ("worker.routing.level > 3 OR task.language == 'es'", True),
        ("NOT (task.language == 'es')", False),
        ('!(worker.team == "Tier 2") && channel == "voice"', True),
        ("task.age == '42'", False),  # different types are never equal
        ("task.language > 3", False),  # nor ordered
        ("worker.assist > 0", False),  # a boolean is not a number here
        ("worker.team contains 'Tier' and taskqueue.name in ['Support']", True),  # keywords in any case
    ],
)
def test_expressions_evaluate_like_taskrouter_workflows(expression: str, expected: bool) -> None:
    assert compile_policy(expression).allows(CONTEXT) is expected


def test_the_default_policy_assists_unless_the_worker_opted_out() -> None:
    policy = compile_policy("worker.assist != false")
    assert policy.allows({"worker": {}})
    assert policy.allows({"worker": {"assist": True}})
    assert not policy.allows({"worker": {"assist": False}})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty expression"),
        ("worker.assist ==", "expected a value at 17"),
        ("(worker.assist == true", "expected \\) at"),
        ("worker.assist == true true", "unexpected text at 23"),
        ("task.x IN [1, worker.y]", "expected a literal in the list"),
        ("task.x == $", "unexpected character at 11"),
    ],
)
def test_a_bad_expression_is_a_configuration_error_naming_the_position(expression: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        compile_policy(expression)
