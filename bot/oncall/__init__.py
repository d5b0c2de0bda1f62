"""Who is on call: the directory that resolves role names, user IDs, emails, schedules and user
groups to Slack users at an instant (`Context.directory`), handoff notices, and the roster text.
"""
