"""The store: the truth about incidents. All SQL lives in this package, behind domain verbs.

`Store` is one class to its callers, assembled here from one part per capability over the core
they all stand on (base.py: connections, write transactions, fencing, the write gate):
incidents.py (incidents, timeline, audit), deliveries.py (firings, deliveries, attempts),
oncall.py (overrides, handoffs), proposals.py, reviews.py (pins, follow-ups, resolutions, drafts,
stats), alerts.py, watches.py (verify watches), briefings.py (war-room greetings, the catch-up's
and App Home's reads), readiness.py (the daily on-call check) and lease.py (the timers' lease, work notices). Two backends behind it: SQLite
(a file, the embedded default) and PostgreSQL (a `postgresql://` URL, for several instances;
postgres.py), with the SQL written once in the dialect both accept (`?` placeholders,
`ON CONFLICT`, `RETURNING`); the schema is schema.py and the numbered migrations.py.
"""

from __future__ import annotations

from bot.store.alerts import AlertsPart, AlertTaken
from bot.store.base import LEASE, LeaseLost, StoreBase
from bot.store.briefings import BriefingsPart
from bot.store.deliveries import DeliveriesPart
from bot.store.incidents import IncidentsPart
from bot.store.lease import LeasePart
from bot.store.oncall import OnCallPart
from bot.store.proposals import ProposalsPart
from bot.store.readiness import ReadinessPart
from bot.store.reviews import ReviewsPart
from bot.store.watches import WatchesPart

__all__ = ["LEASE", "AlertTaken", "LeaseLost", "Store", "open_store"]


class Store(
    BriefingsPart,
    ReadinessPart,
    WatchesPart,
    ReviewsPart,
    IncidentsPart,
    DeliveriesPart,
    AlertsPart,
    OnCallPart,
    ProposalsPart,
    LeasePart,
    StoreBase,
):
    """The store: every part's verbs on one connection handling (`StoreBase`)."""


def open_store(url: str, busy_timeout_s: float = 30.0) -> Store:
    """A SQLite file (a path, or :memory:) or a PostgreSQL database (a postgresql:// URL)."""
    return Store(url, busy_timeout_s)
