"""/incident runbook — the runbook's scenarios, or one scenario's trigger, checks and fixes."""

from __future__ import annotations

from functools import lru_cache

from bot.context import CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.core.mrkdwn import escape, truncate
from bot.domain import scenarios
from bot.slack.blocks.incident import chunks

USAGE = "/incident runbook [scenario number or keyword]"
SUMMARY = "the runbook's scenarios, or one scenario's steps (e.g. `runbook 3`, `runbook latency`)"
SECTION_MAX = 2900


def handle(ctx: Context, req: CommandRequest) -> Reply:
    query = req.args.strip()
    if not query:
        lines = [f"*{s.number}.* {escape(s.title)} — _{escape(s.alert_trigger)}_" for s in scenarios.SCENARIOS]
        return Reply(
            "*Runbook scenarios*\n" + "\n".join(lines) + "\n`/incident runbook <n>` shows one.",
            blocks=_sections("*Runbook scenarios*\n" + "\n".join(lines) + "\n`/incident runbook <n>` shows one."),
        )
    scenario = scenarios.lookup(query)
    if scenario is None:
        shown = escape(query[:40].replace("`", "'"))
        raise UsageError(f"No runbook scenario matches `{shown}`. `/incident runbook` lists them.", USAGE)
    if ctx.config.runbook_path:
        section = _team_runbook(ctx.config.runbook_path).get(scenario.number)
        if section is not None:
            text = escape(section.text)
            return Reply(truncate(text, 300), blocks=_sections(text))
    text = _render(scenario)
    return Reply(truncate(text, 300), blocks=_sections(text))


def _render(scenario: scenarios.Scenario) -> str:
    checks = "\n".join(f"• {escape(c)}" for c in scenario.first_checks)
    fixes = "\n".join(f"• {escape(f)}" for f in scenario.fixes)
    return (
        f"*Scenario {scenario.number}: {escape(scenario.title)}*\n"
        f"*Alert trigger:* {escape(scenario.alert_trigger)}\n\n*First checks*\n{checks}\n\n*Fixes*\n{fixes}"
    )


def _sections(text: str) -> list[dict[str, object]]:
    """Split long text over sections (3,000 characters each), at most 45 of them."""
    lines = [truncate(line, SECTION_MAX) for line in text.split("\n")]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks(lines, SECTION_MAX)[:45]]


@lru_cache(maxsize=4)
def _team_runbook(path: str) -> dict[int, scenarios.RunbookSection]:
    return scenarios.load_runbook(path)
