"""The Atlassian Statuspage REST client. What is published when is `bot.incident.publishing`'s."""
