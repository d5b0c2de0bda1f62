"""What is owed to Slack and others, sent: each delivery kind has a route (its sender and the
hooks around it) registered in one table, and the dispatcher sends a row through its route.

A delivery counts as sent only once Slack (or the status page) accepted it; until then it is
retried with backoff, across restarts, and never dropped. A post in doubt (a crash, a timeout)
is looked up in Slack by the key in its metadata before it is sent again. The features own the
senders (`bot.paging.pager` the pages, `bot.incident` the posts and the status page, ...); the
app assembles the table. Nothing here knows what any kind says.
"""
