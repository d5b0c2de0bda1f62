"""PagerDuty's adapter: the Events API v2 client, v3 webhook signatures, the REST user read.

Uses only `bot.domain` (its config) and `bot.core`; the features that send events and take
acks in are `bot.paging.pagerduty` and `bot.paging.acks`.
"""
