"""The Slack adapter: the `slack_sdk` gateway (the calls the bot makes, with bounded retries), action
and callback IDs, the command grammar, payload readers, forms, and the Block Kit builders
(`blocks/`, one module per surface). Builders are pure; nothing here decides anything.
"""
