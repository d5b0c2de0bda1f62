"""The command grammar: `/incident <subcommand> [INC-n] [args]`, parsed without side effects."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.errors import UsageError
from bot.core.text import length
from bot.domain.incidents import parse_ref

PUBLIC_FLAG = "--public"
MAX_COMMAND_TEXT = 4000  # Slack caps slash-command text well below this; anything longer is not a person typing


@dataclass(frozen=True)
class ParsedCommand:
    verb: str
    ref: int | None
    args: str


def parse(text: str) -> ParsedCommand:
    """Split the slash command's text; an empty text means `help`.

    The incident reference is recognised right after the verb (`/incident ack INC-7`) and, for
    the commands that take no other argument first, anywhere as the first argument.
    """
    verb, rest = _split((text or "").strip())
    verb = verb.lower()
    first, remainder = _split(rest)
    ref = parse_ref(first) if first else None
    if ref is not None:
        rest = remainder
    return ParsedCommand(verb=verb or "help", ref=ref, args=rest)


def public_flag(verb: str, args: str) -> tuple[bool, str]:
    """Whether `--public` was asked for, and the arguments without it.

    The flag comes first, or on `declare` right after the severity. The permission check and
    the commands both read it here, so what is checked is exactly what is done.
    """
    first, rest = _split(args)
    if first.lower() == PUBLIC_FLAG:
        return True, rest
    if verb == "declare":
        second, tail = _split(rest)
        if second.lower() == PUBLIC_FLAG:
            return True, f"{first} {tail}".strip()
    return False, args


def within_limit(text: str, limit: int, noun: str, usage: str) -> str:
    """`text` when what the person typed fits `limit` characters (a mention counts as its name,
    `&` as one character); otherwise a usage reply that says by how much."""
    typed = length(text)
    if typed > limit:
        raise UsageError(f"{noun} are limited to {limit:,} characters; yours has {typed:,}.", usage)
    return text


def _split(text: str) -> tuple[str, str]:
    """First word and the rest; any whitespace separates (a pasted newline or tab included)."""
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""
