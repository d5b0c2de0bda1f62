"""User text: decoded once where it enters, rendered for each place it leaves.

Slack sends slash-command text entity-encoded (`&amp;`, `&lt;`, `&gt;`) and, with the
manifest's `should_escape: true`, what Slack itself recognised as entities: `<@U123|carl>`,
`<#C123|general>`, `<https://x.io|x.io>`, `<!subteam^S123|@sre>`, `<!here>`. Modal inputs
arrive raw. Both become one canonical form, the only one the rest of the bot sees and stores:

- what the person typed is itself (`R&D <broken>` is stored as `R&D <broken>`), so a title
  typed in the command and in the form are stored identically;
- each entity Slack recognised is kept whole between two private-use characters
  (`ENTITY_OPEN @U123|carl ENTITY_CLOSE`). Nobody can type those: they are removed from
  everything that enters. So a real mention and the typed characters `<@U123>` never look alike,
  and only the first can ever become a live mention.

Where text leaves:

- `for_slack(text, limit)`: mrkdwn. User, channel and user-group mentions and links stay live;
  everything else is escaped exactly once. `<!here>`, `<!channel>` and `<!everyone>` are never
  live, however they got in.
- `plain(text)`: what a person reads (`@carl`, `#general`, a link's label or URL): the status
  page, channel names, topics. `length(text)` counts it, so limits count what was typed.
- `escape(text)`: mrkdwn with nothing live (code and log lines from outside, quoting input back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENTITY_OPEN = "\ue000"
ENTITY_CLOSE = "\ue001"
TRUNCATION_MARK = "… (truncated)"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_WIRE_ENTITY = re.compile(r"<([^<>]*)>")
_WIRE_ESCAPE = re.compile(r"&(amp|lt|gt);")
_CANONICAL_ENTITY = re.compile(f"{ENTITY_OPEN}([^{ENTITY_OPEN}{ENTITY_CLOSE}]*){ENTITY_CLOSE}")
_MARKERS = re.compile(f"[{ENTITY_OPEN}{ENTITY_CLOSE}]")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_LINK_TARGET = re.compile(r"(?:https?://|mailto:)[^\s<>|]+", re.IGNORECASE)
_BROADCASTS = ("here", "channel", "everyone")


# ---- entering -----------------------------------------------------------------------------


def decode_slash(wire: str) -> str:
    """Slash-command text as Slack sends it -> the canonical form. Apply exactly once."""
    wire = _MARKERS.sub("", wire)
    out: list[str] = []
    pos = 0
    for match in _WIRE_ENTITY.finditer(wire):
        out.append(_unescape(wire[pos : match.start()]))
        out.append(ENTITY_OPEN + _unescape(match.group(1)) + ENTITY_CLOSE)
        pos = match.end()
    out.append(_unescape(wire[pos:]))
    return "".join(out)


def from_form(value: str) -> str:
    """A modal input (raw, as typed) -> the canonical form: only the markers must go."""
    return _MARKERS.sub("", value)


def _unescape(text: str) -> str:
    return _WIRE_ESCAPE.sub(lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], text)


# ---- entities -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """One thing Slack recognised in slash text: `kind` is user, channel, usergroup, broadcast,
    link or other; `target` the ID, URL or special name; `label` what Slack showed for it."""

    kind: str
    target: str
    label: str

    @property
    def plain(self) -> str:
        if self.kind in ("user", "channel"):
            sigil = "@" if self.kind == "user" else "#"
            return sigil + (self.label.lstrip(sigil) or self.target)
        if self.kind in ("usergroup", "broadcast"):
            return "@" + (self.label.lstrip("@") or self.target)
        if self.kind == "link":
            return self.label or self.target.removeprefix("mailto:")
        return self.label or self.target

    @property
    def mrkdwn(self) -> str:
        if self.kind == "user":
            return f"<@{self.target}>"
        if self.kind == "channel":
            return f"<#{self.target}>"
        if self.kind == "usergroup":
            return f"<!subteam^{self.target}>"
        if self.kind == "link":
            label = f"|{_escape(self.label)}" if self.label else ""
            return f"<{_escape(self.target)}{label}>"
        return _escape(self.plain)  # broadcasts and anything unknown: never live


def parse_entity(inner: str) -> Entity:
    """What is between `<` and `>` (or the markers): `@U123|carl` -> Entity("user", "U123", "carl")."""
    target, _, label = inner.partition("|")
    if target.startswith("@") and _USER_ID.fullmatch(target[1:]):
        return Entity("user", target[1:], label)
    if target.startswith("#") and _CHANNEL_ID.fullmatch(target[1:]):
        return Entity("channel", target[1:], label)
    if target.startswith("!subteam^") and _USERGROUP_ID.fullmatch(target.removeprefix("!subteam^")):
        return Entity("usergroup", target.removeprefix("!subteam^"), label)
    if target.startswith("!"):
        name = target[1:].split("^", 1)[0]
        if name in _BROADCASTS:
            return Entity("broadcast", name, label)
        return Entity("other", name, label)  # `<!date^…|fallback>` and whatever Slack adds next
    if _LINK_TARGET.fullmatch(target):
        return Entity("link", target, label)
    return Entity("other", target, label)


def _pieces(text: str) -> list[str | Entity]:
    """The canonical text as typed runs and entities (a stray marker is dropped)."""
    pieces: list[str | Entity] = []
    pos = 0
    for match in _CANONICAL_ENTITY.finditer(text):
        if match.start() > pos:
            pieces.append(_MARKERS.sub("", text[pos : match.start()]))
        pieces.append(parse_entity(match.group(1)))
        pos = match.end()
    if pos < len(text):
        pieces.append(_MARKERS.sub("", text[pos:]))
    return pieces


def entities(text: str) -> list[Entity]:
    return [p for p in _pieces(text) if isinstance(p, Entity)]


def single_entity(token: str) -> Entity | None:
    """The entity a single argument is, when it is exactly one entity Slack recognised."""
    pieces = _pieces(token.strip())
    return pieces[0] if len(pieces) == 1 and isinstance(pieces[0], Entity) else None


def mentioned_user(token: str) -> str | None:
    """The user ID a single argument names: a mention Slack made, a typed `<@U123>`, or `U123`.

    Naming is not rendering: the ID typed by hand names the same person, and the bot then
    writes the mention itself.
    """
    token = token.strip()
    entity = single_entity(token)
    if entity is not None:
        return entity.target if entity.kind == "user" else None
    typed = re.fullmatch(r"<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>", token)
    if typed:
        return typed.group(1)
    return token if _USER_ID.fullmatch(token) else None


# ---- leaving ------------------------------------------------------------------------------


def for_slack(text: str, limit: int | None = None) -> str:
    """Canonical text as mrkdwn: mentions, channels and links live, the rest escaped once.

    Cut to `limit` characters of mrkdwn, visibly, never inside an escape or an entity.
    """
    units: list[str] = []
    for piece in _pieces(text):
        if isinstance(piece, Entity):
            units.append(piece.mrkdwn)
        else:
            units.extend(_ESCAPES.get(ch, ch) for ch in piece)
    return _fit(units, limit)


def plain(text: str) -> str:
    """Canonical text as a person reads it: `@carl`, `#general`, a link's label or its URL."""
    return "".join(p.plain if isinstance(p, Entity) else p for p in _pieces(text))


def length(text: str) -> int:
    """How many characters the person typed (as they saw them), for limits."""
    return len(plain(text))


def escape(text: str) -> str:
    """Text as mrkdwn with nothing live: `&`, `<`, `>` escaped, entities shown as plain text."""
    return _escape(plain(text))


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def truncate(text: str, limit: int) -> str:
    """Cut mrkdwn to at most `limit` characters, visibly, without splitting an escape like `&amp;`."""
    if len(text) <= limit:
        return text
    if limit < len(TRUNCATION_MARK):
        return text[:limit]
    cut = text[: max(0, limit - len(TRUNCATION_MARK))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + TRUNCATION_MARK


def _fit(units: list[str], limit: int | None) -> str:
    whole = "".join(units)
    if limit is None or len(whole) <= limit:
        return whole
    if limit < len(TRUNCATION_MARK):
        return ""
    room = limit - len(TRUNCATION_MARK)
    kept: list[str] = []
    used = 0
    for unit in units:
        if used + len(unit) > room:
            break
        kept.append(unit)
        used += len(unit)
    return "".join(kept).rstrip() + TRUNCATION_MARK
