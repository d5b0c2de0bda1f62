"""Slack request signing (v0), as the Slack platform signs every request it sends to an app.

https://api.slack.com/authentication/verifying-requests-from-slack: the signature is
`v0=` + hex HMAC-SHA256, keyed by the app's signing secret, of `v0:{timestamp}:{raw body}`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"


def signature(secret: str, body: bytes | str, timestamp: int | str) -> str:
    """The `X-Slack-Signature` value for `body` sent at `timestamp` (seconds since the epoch)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = b"v0:" + str(timestamp).encode("ascii") + b":" + raw
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to a request: its timestamp (now, unless given) and signature."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, body, ts)}
