"""A plain-text transcript of the sandbox: what each channel and DM shows, as people see it.

Used by `incident-bot demo` to print the story, and by failing tests to show the world. It is
deterministic (no timestamps) so it can be compared and read in a diff:

    #incident-response
      @primary ran /incident declare p1 Checkout returns 500
      incident-bot: 🔴 INC-7 · P1 · Checkout returns 500 (edited)
          Status: Investigating  |  Commander: @primary
          [Acknowledge] [Post update]
        ↳ incident-bot: Paged @primary
      (only visible to @primary) incident-bot: Declared INC-7.

    DM → @primary
      incident-bot: You are paged for INC-7
          [Acknowledge]
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.sandbox.slack.inspect import Inspection
    from bot.sandbox.slack.workspace import Conversation, Ephemeral, Interaction, Message

INDENT = "  "
CONTINUATION = "    "

_LINK = re.compile(r"<([^<>]+)>")


def render(sandbox: Inspection) -> str:
    """The whole workspace: channels (creation order), then DMs; empty conversations skipped."""
    sections = []
    conversations = sorted(sandbox.conversations(), key=lambda c: c.is_im or c.is_mpim)
    for conv in conversations:
        lines = render_conversation(sandbox, conv)
        if lines:
            sections.append("\n".join(lines))
    modals = _render_modals(sandbox)
    if modals:
        sections.append("\n".join(modals))
    return "\n\n".join(sections) if sections else "(nothing posted)"


def render_conversation(sandbox: Inspection, conv: Conversation) -> list[str]:
    """The title line and items of one conversation ([] when nothing is there)."""
    messages = sandbox.messages_in(conv.id)
    top_ts = {m.ts for m in messages if not m.is_reply}
    items: list[tuple[float, list[str]]] = []
    for msg in messages:
        if msg.is_reply and msg.thread_ts in top_ts:
            continue  # drawn under its parent
        lines = _message_lines(sandbox, msg, INDENT, reply=msg.is_reply)
        for reply in (m for m in messages if m.is_reply and m.thread_ts == msg.ts):
            lines += _message_lines(sandbox, reply, INDENT + "  ", reply=True)
        items.append((float(msg.ts), lines))
    for eph in sandbox.ephemerals():
        if eph.channel == conv.id:
            items.append((float(eph.ts), _ephemeral_lines(sandbox, eph)))
    for act in sandbox.interactions():
        if act.channel == conv.id:
            items.append((float(act.ts), [INDENT + _interaction_line(sandbox, act)]))
    if not items:
        return []
    items.sort(key=lambda item: item[0])
    return [_title(sandbox, conv)] + [line for _, lines in items for line in lines]


def _title(sandbox: Inspection, conv: Conversation) -> str:
    if conv.is_im:
        return f"DM → {_at(sandbox, conv.user or '')}"
    if conv.is_mpim:
        others = [_at(sandbox, u) for u in conv.members if u != "U0BOT"]
        return "Group DM → " + ", ".join(others)
    flags = [f for f, on in (("private", conv.is_private), ("archived", conv.is_archived)) if on]
    return f"#{conv.name}" + (f" ({', '.join(flags)})" if flags else "")


def _message_lines(sandbox: Inspection, msg: Message, indent: str, *, reply: bool) -> list[str]:
    body = _content_lines(sandbox, msg.text, msg.blocks, msg.attachments)
    body += [f"📎 {f.get('name')} ({f.get('title')}, {f.get('size')} bytes)" for f in msg.files]
    first = f"{_author(sandbox, msg.user)}: {body[0] if body else ''}".rstrip()
    if msg.edited:
        first += " (edited)"
    if reply:
        first = "↳ " + first
    rest = [indent + CONTINUATION + line for line in body[1:]]
    return [indent + first, *rest]


def _ephemeral_lines(sandbox: Inspection, eph: Ephemeral) -> list[str]:
    body = _content_lines(sandbox, eph.text, eph.blocks, [])
    first = f"(only visible to {_at(sandbox, eph.user)}) {_author(sandbox, eph.author)}: "
    first = (first + (body[0] if body else "")).rstrip()
    if eph.edited:
        first += " (edited)"
    return [INDENT + first, *(INDENT + CONTINUATION + line for line in body[1:])]


def _interaction_line(sandbox: Inspection, act: Interaction) -> str:
    verb = {"command": "ran", "click": "clicked", "submit": ""}.get(act.kind, act.kind)
    return " ".join(part for part in (_at(sandbox, act.user), verb, act.text) if part)


def _render_modals(sandbox: Inspection) -> list[str]:
    lines = []
    for view in sandbox.views():
        title = (view.get("title") or {}).get("text", "")
        state = "open" if sandbox.is_view_open(view["id"]) else "closed"
        who = _at(sandbox, sandbox.view_user(view["id"]) or "")
        lines.append(f'{INDENT}"{title}" shown to {who} ({state})')
    return ["Modals", *lines] if lines else []


def _content_lines(
    sandbox: Inspection,
    text: str,
    blocks: list[dict[str, Any]],
    attachments: list[dict[str, Any]],
) -> list[str]:
    """What a message shows: its blocks when it has them (the text is then only a fallback)."""
    lines: list[str] = []
    if blocks:
        for block in blocks:
            lines += _block_lines(sandbox, block)
    elif text:
        lines += mrkdwn_to_plain(sandbox, text).splitlines()
    for attachment in attachments:
        shown = attachment.get("text") or attachment.get("fallback") or ""
        lines += ["▌ " + line for line in mrkdwn_to_plain(sandbox, shown).splitlines()]
        if attachment.get("blocks"):
            for block in attachment["blocks"]:
                lines += ["▌ " + line for line in _block_lines(sandbox, block)]
    return lines or [""]


def _block_lines(sandbox: Inspection, block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [_text(sandbox, block.get("text"))]
    if kind == "section":
        lines = _text(sandbox, block.get("text")).splitlines() if block.get("text") else []
        fields = [_text(sandbox, f).replace("\n", " ") for f in block.get("fields") or []]
        lines += ["  |  ".join(fields[i : i + 2]) for i in range(0, len(fields), 2)]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") != "image":
            lines.append(_element(sandbox, accessory))
        return lines
    if kind == "context":
        return [" · ".join(_element(sandbox, e) for e in block.get("elements") or [])]
    if kind == "actions":
        return [" ".join(_element(sandbox, e) for e in block.get("elements") or [])]
    if kind == "divider":
        return ["───"]
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if kind == "rich_text":
        return "".join(_rich_text(block)).splitlines() or [""]
    if kind == "input":
        return [f"{_text(sandbox, block.get('label'))}: {_element(sandbox, block.get('element') or {})}"]
    return [f"[{kind}]"]


def _element(sandbox: Inspection, element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind in ("plain_text", "mrkdwn"):
        return _text(sandbox, element)
    if kind == "image":
        return f"[{element.get('alt_text', 'image')}]"
    if kind == "button":
        return f"[{_text(sandbox, element.get('text'))}]"
    label = element.get("placeholder") or element.get("text")
    return f"[{_text(sandbox, label) if label else kind} ▾]"


def _text(sandbox: Inspection, obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text") or "")
    return mrkdwn_to_plain(sandbox, text) if obj.get("type") == "mrkdwn" else text


def _rich_text(node: Any) -> list[str]:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return [str(node.get("text", ""))]
        if node.get("type") == "user":
            return [f"@{node.get('user_id', '')}"]
        if node.get("type") == "link":
            return [str(node.get("text") or node.get("url", ""))]
        parts = _rich_text(node.get("elements") or [])
        return parts + (["\n"] if node.get("type") in ("rich_text_section", "rich_text_preformatted") else [])
    if isinstance(node, list):
        return [part for item in node for part in _rich_text(item)]
    return []


def mrkdwn_to_plain(sandbox: Inspection, text: str) -> str:
    """How Slack displays mrkdwn: mentions and links resolved, entities unescaped."""

    def link(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return label and f"@{label}" or _at(sandbox, target[1:])
        if target.startswith("#"):
            conv = sandbox.conversation(target[1:])
            return f"#{label or (conv.name if conv else target[1:])}"
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            if special in ("channel", "here", "everyone"):
                return f"@{special}"
            return label or f"@{special}"
        return label or target

    plain = _LINK.sub(link, text)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _author(sandbox: Inspection, user_id: str) -> str:
    user = sandbox.user(user_id)
    if user is None:
        return user_id
    return user.name if user.is_bot else f"@{user.name}"


def _at(sandbox: Inspection, user_id: str) -> str:
    user = sandbox.user(user_id)
    return f"@{user.name}" if user else f"@{user_id}"
