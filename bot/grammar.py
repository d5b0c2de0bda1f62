"""The command grammar: `/incident <subcommand> [INC-n] [args]`, parsed without side effects."""

from __future__ import annotations

from dataclasses import dataclass

from bot.incidents import parse_ref

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


def _split(text: str) -> tuple[str, str]:
    """First word and the rest; any whitespace separates (a pasted newline or tab included)."""
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""
