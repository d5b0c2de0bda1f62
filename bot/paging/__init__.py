"""Paging and timers: the pager (senders of pages, FYIs, reminders, SLA warnings), the timers (an
APScheduler cache of the store's due times, and the delivery loop), and leadership (the lease
that decides which instance runs them).
"""
