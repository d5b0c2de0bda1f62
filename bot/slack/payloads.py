"""Reading Slack payloads that may not have the shape Slack documents.

A signed request is not a well-formed one: a buggy proxy, a replayed fixture or a hostile
holder of the signing secret can send `"user": []` or `"value": 7`. Every field the listeners
read goes through these getters, which answer "" or None for a missing step or a value of the
wrong type, so a malformed payload is refused as input, never crashes a listener.
"""

from __future__ import annotations

from typing import Any


def at(body: Any, *path: str | int) -> Any:
    """The value at `path` (keys of objects, indexes of arrays), or None when a step is missing."""
    node = body
    for step in path:
        if isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node):
            node = node[step]
        elif isinstance(step, str) and isinstance(node, dict):
            node = node.get(step)
        else:
            return None
    return node


def text_at(body: Any, *path: str | int) -> str:
    """The string at `path`, or "" when it is missing or not a string."""
    value = at(body, *path)
    return value if isinstance(value, str) else ""


def object_at(body: Any, *path: str | int) -> dict[str, Any]:
    """The object at `path`, or {} when it is missing or not an object."""
    value = at(body, *path)
    return value if isinstance(value, dict) else {}
