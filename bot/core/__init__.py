"""The ground floor: text decoding and mrkdwn escaping, durations, user errors, logging with
secret redaction, the process-wide counters, and running independent steps. Imports nothing of
`bot`; everything else may import it.
"""
