"""How many new conversations one citizen may start per hour.

One handle sending 250 inquiries in a minute made 250 tickets in the department's system and
250 public replies from its account: a flood that buries the real work and makes the account
look like a spam bot. So triage asks ``FloodGate.admit`` before it files a new conversation (a
follow-up in an existing one is never counted or held): within the limit it goes on as usual;
beyond it, it is held in the triage review queue with reason ``flood`` for an official's check,
never dropped and never filed on a timeout (``bridge/triage/review.py``).

Counted per platform and author id over the last hour, in the store (``conversation_starts``),
so every triage process of a cluster counts the same starts; the count and the new start are
one transaction under a lock per author, so parallel deliveries cannot slip past the limit. A
redelivered inquiry that was admitted once is admitted again (its row is its id).

Limits: ``[triage] max_new_conversations_per_hour`` counts every department; a department's
own ``max_new_conversations_per_hour`` counts that department's starts. 0 means no limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bridge.store.flood import ConversationStart
from schemas.config import ClassifierConfig, DepartmentConfig
from schemas.messages import Inquiry
from schemas.states import ReviewReason

if TYPE_CHECKING:
    from bridge.store import Store

WINDOW = timedelta(hours=1)
FLOOD = ReviewReason.FLOOD


class FloodGate:
    """The per-author limit on new conversations (see the module docstring)."""

    def __init__(self, store: Store, triage: ClassifierConfig) -> None:
        self.store = store
        self.overall = triage.max_new_conversations_per_hour

    async def admit(
        self, inquiry: Inquiry, dept: DepartmentConfig, now: datetime | None = None
    ) -> bool:
        """Count ``inquiry`` as a new conversation of its author and say True, or say False
        when the author has started as many as a limit allows within the hour."""
        own = dept.max_new_conversations_per_hour or 0
        if not self.overall and not own:
            return True
        now = now or datetime.now(UTC)
        return await self.store.admit_start(
            ConversationStart(inquiry.inquiry_id, inquiry.platform, inquiry.author.id, dept.id),
            now=now,
            window_start=now - WINDOW,
            overall=self.overall,
            own=own,
        )
