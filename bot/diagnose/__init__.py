"""`/incident diagnose`: the sources read in parallel under their own timeouts (`fanout`), triaged
(`bot.domain.triage`), and the summary posted or returned (`run`).
"""
