"""Block Kit validation: one table of rules per block and element type, and the checks they name.

A rule is (path, check, argument). `path` walks the object: "text.text" is a nested key,
"fields[]" each item of a list, "" the object itself. Adding a limit is one line in a table.
Messages read like Slack's: "must be less than 3001 characters [json-pointer:/blocks/0/text/text]".
`validate_blocks` and `validate_view` list every reason Slack would refuse what they are given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One Block Kit constraint: `check` applied with `arg` to what `path` selects."""

    path: str
    check: str
    arg: Any = None


R = Rule
TEXT_TYPES = ("plain_text", "mrkdwn")
INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "static_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "overflow",
        "datepicker",
        "radio_buttons",
        "checkboxes",
        "multi_static_select",
        "multi_users_select",
    }
)
INPUT_ELEMENTS = frozenset(
    {
        "plain_text_input",
        "static_select",
        "radio_buttons",
        "checkboxes",
        "users_select",
        "multi_users_select",
        "multi_static_select",
        "conversations_select",
        "channels_select",
        "datepicker",
        "number_input",
    }
)
CONTEXT_ELEMENTS = frozenset({"plain_text", "mrkdwn", "image"})
ACCESSORY_ELEMENTS = INTERACTIVE_ELEMENTS | {"image"}

OPTION_RULES: tuple[Rule, ...] = (
    R("text", "required"),
    R("text", "text_object"),
    R("text.text", "max_chars", 75),
    R("value", "required"),
    R("value", "max_chars", 150),
)
# The "are you sure?" dialog a button may carry (composition objects: confirmation dialog).
CONFIRM_RULES: tuple[Rule, ...] = tuple(
    rule
    for field, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30))
    for rule in (R(field, "required"), R(field, "plain_text"), R(f"{field}.text", "max_chars", limit))
) + (R("style", "enum", ("primary", "danger")),)

BLOCK_RULES: dict[str, tuple[Rule, ...]] = {
    "section": (
        R("", "any_of", ("text", "fields")),
        R("text", "text_object"),
        R("text.text", "max_chars", 3000),
        R("fields", "max_items", 10),
        R("fields[]", "text_object"),
        R("fields[].text", "max_chars", 2000),
        R("accessory", "element", ACCESSORY_ELEMENTS),
    ),
    "header": (
        R("text", "required"),
        R("text", "plain_text"),
        R("text.text", "max_chars", 150),
    ),
    "context": (
        R("elements", "required"),
        R("elements", "max_items", 10),
        R("elements[]", "element", CONTEXT_ELEMENTS),
    ),
    "actions": (
        R("elements", "required"),
        R("elements", "max_items", 25),
        R("elements[]", "element", INTERACTIVE_ELEMENTS),
        R("elements", "unique", "action_id"),
    ),
    "divider": (),
    "image": (
        R("image_url", "required"),
        R("image_url", "max_chars", 3000),
        R("alt_text", "required"),
        R("alt_text", "max_chars", 2000),
        R("title", "plain_text"),
        R("title.text", "max_chars", 2000),
    ),
    "rich_text": (R("elements", "required"),),
    "input": (
        R("label", "required"),
        R("label", "plain_text"),
        R("label.text", "max_chars", 2000),
        R("element", "required"),
        R("element", "element", INPUT_ELEMENTS),
        R("hint", "plain_text"),
        R("hint.text", "max_chars", 2000),
    ),
}
COMMON_BLOCK_RULES: tuple[Rule, ...] = (R("block_id", "max_chars", 255),)

_PLACEHOLDER = (R("placeholder", "plain_text"), R("placeholder.text", "max_chars", 150))
ELEMENT_RULES: dict[str, tuple[Rule, ...]] = {
    "plain_text": (R("", "text_object"), R("text", "max_chars", 3000)),
    "mrkdwn": (R("", "text_object"), R("text", "max_chars", 3000)),
    "image": (R("image_url", "required"), R("alt_text", "required")),
    "button": (
        R("text", "required"),
        R("text", "plain_text"),
        R("text.text", "max_chars", 75),
        R("value", "max_chars", 2000),
        R("url", "max_chars", 3000),
        R("style", "enum", ("primary", "danger")),
        R("confirm", "object", CONFIRM_RULES),
    ),
    "plain_text_input": (
        *_PLACEHOLDER,
        R("initial_value", "max_chars", 3000),
        R("max_length", "max_number", 3000),
    ),
    "number_input": (R("is_decimal_allowed", "required"), *_PLACEHOLDER),
    "static_select": (
        *_PLACEHOLDER,
        R("options", "max_items", 100),
        R("options[]", "object", OPTION_RULES),
    ),
    "multi_static_select": (
        *_PLACEHOLDER,
        R("options", "max_items", 100),
        R("options[]", "object", OPTION_RULES),
    ),
    "overflow": (
        R("options", "required"),
        R("options", "max_items", 5),
        R("options[]", "object", OPTION_RULES),
    ),
    "radio_buttons": (
        R("options", "required"),
        R("options", "max_items", 10),
        R("options[]", "object", OPTION_RULES),
    ),
    "checkboxes": (
        R("options", "required"),
        R("options", "max_items", 10),
        R("options[]", "object", OPTION_RULES),
    ),
    "users_select": _PLACEHOLDER,
    "multi_users_select": _PLACEHOLDER,
    "conversations_select": _PLACEHOLDER,
    "channels_select": _PLACEHOLDER,
    "datepicker": _PLACEHOLDER,
}
COMMON_INTERACTIVE_RULES: tuple[Rule, ...] = (R("action_id", "max_chars", 255),)

VIEW_RULES: tuple[Rule, ...] = (
    R("type", "required"),
    R("type", "enum", ("modal", "home")),
    R("title", "plain_text"),
    R("title.text", "max_chars", 24),
    R("submit", "plain_text"),
    R("submit.text", "max_chars", 24),
    R("close", "plain_text"),
    R("close.text", "max_chars", 24),
    R("callback_id", "max_chars", 255),
    R("private_metadata", "max_chars", 3000),
    R("external_id", "max_chars", 255),
    R("blocks", "required"),
)
MODAL_RULES: tuple[Rule, ...] = (R("title", "required"),)


@dataclass(frozen=True)
class Surface:
    """Where blocks are shown: which block types are allowed and how many."""

    name: str
    max_blocks: int
    block_types: frozenset[str]


MESSAGE = Surface("message", 50, frozenset(BLOCK_RULES) - {"input"})
MODAL = Surface("modal", 100, frozenset(BLOCK_RULES))


def _resolve(obj: Any, pointer: str, path: str) -> list[tuple[Any, str]]:
    """The (value, json-pointer) pairs `path` selects in `obj`; missing keys select nothing."""
    nodes = [(obj, pointer)]
    if not path:
        return nodes
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        found: list[tuple[Any, str]] = []
        for node, ptr in nodes:
            if not isinstance(node, dict) or node.get(key) is None:
                continue
            value, here = node[key], f"{ptr}/{key}"
            if not many:
                found.append((value, here))
            elif isinstance(value, list):
                found.extend((item, f"{here}/{i}") for i, item in enumerate(value))
        nodes = found
    return nodes


def _err(message: str, pointer: str) -> str:
    return f"{message} [json-pointer:{pointer}]"


def _check_text_object(value: Any, ptr: str, types: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [_err("must provide an object", ptr)]
    if value.get("type") not in types:
        return [_err("must be a valid enum value", f"{ptr}/type")]
    text = value.get("text")
    if not isinstance(text, str):
        return [_err("missing required field: text", ptr)]
    if not text:
        return [_err("must be more than 0 characters", f"{ptr}/text")]
    return []


def _run_rules(obj: Any, pointer: str, rules: Iterable[Rule]) -> list[str]:
    errors: list[str] = []
    for rule in rules:
        if rule.check == "required":
            value = obj.get(rule.path) if isinstance(obj, dict) else None
            if value is None or value == "" or value == []:
                errors.append(_err(f"missing required field: {rule.path}", pointer))
            continue
        if rule.check == "any_of":
            if not any(isinstance(obj, dict) and obj.get(k) for k in rule.arg):
                errors.append(_err(f"missing required field: {' or '.join(rule.arg)}", pointer))
            continue
        for value, ptr in _resolve(obj, pointer, rule.path):
            errors.extend(CHECKS[rule.check](value, ptr, rule.arg))
    return errors


def _check_element(value: Any, ptr: str, allowed: frozenset[str]) -> list[str]:
    if not isinstance(value, dict):
        return [_err("must provide an object", ptr)]
    kind = value.get("type")
    if kind not in allowed or kind not in ELEMENT_RULES:
        return [_err("failed to match all allowed schemas", ptr)]
    rules = ELEMENT_RULES[kind]
    if kind in INTERACTIVE_ELEMENTS or kind in INPUT_ELEMENTS:
        rules = rules + COMMON_INTERACTIVE_RULES
    return _run_rules(value, ptr, rules)


def _check_unique(value: Any, ptr: str, key: str) -> list[str]:
    seen: set[str] = set()
    errors = []
    for i, item in enumerate(value if isinstance(value, list) else []):
        ident = item.get(key) if isinstance(item, dict) else None
        if ident is None:
            continue
        if ident in seen:
            errors.append(_err(f"{key} '{ident}' already exists", f"{ptr}/{i}/{key}"))
        seen.add(ident)
    return errors


CHECKS: dict[str, Callable[[Any, str, Any], list[str]]] = {
    "max_chars": lambda v, p, n: (
        [_err(f"must be less than {n + 1} characters", p)] if isinstance(v, str) and len(v) > n else []
    ),
    "max_items": lambda v, p, n: (
        [_err(f"no more than {n} items allowed", p)] if isinstance(v, list) and len(v) > n else []
    ),
    "max_number": lambda v, p, n: (
        [_err(f"must be less than or equal to {n}", p)] if isinstance(v, int) and v > n else []
    ),
    "enum": lambda v, p, allowed: [] if v in allowed else [_err("must be a valid enum value", p)],
    "text_object": lambda v, p, _: _check_text_object(v, p, TEXT_TYPES),
    "plain_text": lambda v, p, _: _check_text_object(v, p, ("plain_text",)),
    "element": _check_element,
    "object": lambda v, p, rules: (
        _run_rules(v, p, rules) if isinstance(v, dict) else [_err("must provide an object", p)]
    ),
    "unique": _check_unique,
}


def validate_blocks(blocks: Any, surface: Surface = MESSAGE, pointer: str = "/blocks") -> list[str]:
    """Every reason Slack would refuse `blocks` on `surface` (empty when they are fine)."""
    if not isinstance(blocks, list):
        return [_err("must provide an array", pointer)]
    errors: list[str] = []
    if len(blocks) > surface.max_blocks:
        errors.append(_err(f"no more than {surface.max_blocks} items allowed", pointer))
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        ptr = f"{pointer}/{i}"
        if not isinstance(block, dict):
            errors.append(_err("must provide an object", ptr))
            continue
        kind = block.get("type")
        if kind not in surface.block_types:
            errors.append(_err("failed to match all allowed schemas", ptr))
            continue
        errors.extend(_run_rules(block, ptr, BLOCK_RULES[kind] + COMMON_BLOCK_RULES))
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(_err(f"block_id '{block_id}' already exists", f"{ptr}/block_id"))
            block_ids.add(block_id)
    return errors


def validate_view(view: Any) -> list[str]:
    """Every reason Slack would refuse `view` in views.open/update/push."""
    if not isinstance(view, dict):
        return [_err("must provide an object", "/view")]
    errors = _run_rules(view, "/view", VIEW_RULES)
    if view.get("type") == "modal":
        errors += _run_rules(view, "/view", MODAL_RULES)
        blocks = view.get("blocks") or []
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not view.get("submit"):
            errors.append(_err("must provide submit when the view contains input blocks", "/view"))
    if "blocks" in view:
        errors += validate_blocks(view["blocks"], MODAL, "/view/blocks")
    return errors
