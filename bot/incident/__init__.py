"""An incident in Slack: opening it (the one way in, for commands, forms and alerts) and its
set-up (announcement, war room, briefing), updates, the status page kept in step, and the senders
of the posts and announcement edits a change owes.
"""
