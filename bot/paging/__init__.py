"""Paging and timers: the pager (senders of pages, FYIs, reminders, SLA warnings), the timers (an
APScheduler cache of the store's due times, and the delivery loop), leadership (the lease
that decides which instance runs them), and PagerDuty: its events sent beside the pages
(`pagerduty`) and its acks taken in from signed webhooks (`acks`).
"""
