"""The command grammar: `/incident <subcommand> [INC-n] [args]`, parsed without side effects."""

from __future__ import annotations

from dataclasses import dataclass

from bot.incidents import parse_ref

MAX_COMMAND_TEXT = (
    4000  # Slack caps slash-command text well below this; anything longer is not a person typing
)


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
    verb, _, rest = (text or "").strip().partition(" ")
    verb = verb.lower()
    rest = rest.strip()
    first, _, remainder = rest.partition(" ")
    ref = parse_ref(first) if first else None
    if ref is not None:
        rest = remainder.strip()
    return ParsedCommand(verb=verb or "help", ref=ref, args=rest)
