"""Block Kit for the runbook's VERIFY step: one message, edited in place as samples arrive.

Pure builders. While watching: what is verified, the thresholds, a short series per signal
("5xx 45% → 0% → 0%") and the metrics source. Held: "Held for 5 min … ready to resolve" with
the Resolve button. Regressed: where and what, the watch over.
"""

from __future__ import annotations

from typing import Any

from bot.core.durations import humanize
from bot.core.mrkdwn import escape
from bot.domain.policy import VerifyRules
from bot.domain.verify import Verdict, Watch, WatchStatus, offset_text, percent, series_lines, sources_used
from bot.slack import ids
from bot.slack.blocks.incident import button, confirm_dialog, context, section

Block = dict[str, Any]


def thresholds_text(rules: VerifyRules, health_checked: bool) -> str:
    parts = [f"5xx under {percent(rules.error_rate)}", f"p95 under {rules.p95_ms:g} ms"]
    if health_checked:
        parts.append("health 200")
    if rules.smoke:
        parts.append(f"{len(rules.smoke)} smoke call{'s' if len(rules.smoke) != 1 else ''} as expected")
    return ", ".join(parts)


def watch_text(watch: Watch, incident_ref: str, verdict: Verdict) -> str:
    """The notification text of the message."""
    if verdict.status == WatchStatus.HELD:
        return f"{incident_ref}: the fix held for {humanize(watch.window)}; ready to resolve"
    if verdict.status == WatchStatus.REGRESSED:
        return f"{incident_ref}: regressed at {offset_text(verdict.at_offset_s)}: {', '.join(verdict.breaches)}"
    if verdict.status == WatchStatus.STOPPED:
        return f"{incident_ref}: verify stopped (resolved)"
    return f"{incident_ref}: verifying the fix for {humanize(watch.window)}"


# `watch.why` is mrkdwn the bot composed ("roll back to `x`", "asked by <@U1>"), escaped where it was made.


def watch_blocks(
    watch: Watch, incident_ref: str, rules: VerifyRules, verdict: Verdict, *, service: str, health_checked: bool
) -> list[Block]:
    window = humanize(watch.window)
    head = (
        f"*:mag: Verify* · {incident_ref} · {watch.why} · watching {escape(service)} for {window} "
        f"(every {humanize(watch.every)}): {thresholds_text(rules, health_checked)}"
    )
    series = series_lines(watch.samples, health_checked=health_checked)
    body = "\n".join(f"• {escape(line)}" for line in series) or "• waiting for the first sample"
    done = watch.samples[-1].offset_s if watch.samples else 0.0
    if verdict.status == WatchStatus.HELD:
        status = (
            f":white_check_mark: *Held for {window}* ({len(watch.samples)} samples, every one within the "
            "thresholds): ready to resolve."
        )
    elif verdict.status == WatchStatus.REGRESSED:
        status = (
            f":red_circle: *Regressed at {offset_text(verdict.at_offset_s)}*: {escape(', '.join(verdict.breaches))}. "
            "The watch ended there."
        )
    elif verdict.status == WatchStatus.STOPPED:
        why = verdict.breaches[0] if verdict.breaches else f"{incident_ref} was resolved"
        status = f":white_circle: *Stopped* at {offset_text(done)}: {why}."
    else:
        status = f":hourglass_flowing_sand: {offset_text(done)} of {window}: within the thresholds so far."
    blocks: list[Block] = [section(head), section(f"{status}\n{body}")]
    blocks.append(context(f"Requests from {escape(sources_used(watch.samples))}."))
    if verdict.status == WatchStatus.HELD:
        resolve = button(
            "Resolve",
            ids.RESOLVE,
            str(watch.incident),
            style="primary",
            confirm=confirm_dialog(
                f"Resolve {incident_ref}?",
                "This posts the all-clear, stops every reminder and escalation, and closes the pages.",
                "Resolve",
            ),
        )
        blocks.append({"type": "actions", "block_id": "verify_resolve", "elements": [resolve]})
    return blocks


def regression_text(watch: Watch, incident_ref: str, verdict: Verdict, commander: str | None) -> str:
    """The message that tells the commander (a new message, so the mention notifies)."""
    who = f"<@{commander}> " if commander else ""
    return (
        f"{who}:red_circle: {incident_ref}: the fix did not hold ({watch.why}): regressed at "
        f"{offset_text(verdict.at_offset_s)}: {escape(', '.join(verdict.breaches))}. "
        "Next: `/incident diagnose`, then roll back further or scale."
    )
