"""Typed rows the store returns where a stage needs more than a dict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class AppliedEvent(NamedTuple):
    new: bool  # first time this event id was seen
    applied: bool  # it moved the ticket (now or when first seen)
    cycle: int  # the handling cycle it belongs to (0, then +1 per reopening)


@dataclass(frozen=True)
class StoredReply:
    reply_id: str
    inquiry_id: str
    platform: str
    account: str
    department: str
    status: str | None
    templated: bool
    state: str
    request_json: str
    final_text: str | None
    decided_by: str | None
    decided_at: str | None
    decision: str | None
    created_at: str
    posted_at: str | None
    external_ids: list[str]
    cycle: int = 0
    post_attempts: int = 0
    uncertain: bool = False
    failure: str | None = None
    merged_into: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class ReplyClaim:
    """What the outbox may do next for an account.

    ``reply`` is leased to the caller (post it, then ``finish_post`` or ``release_post``);
    ``call_id`` is its slot in the account's posting quota. Without a reply, ``wait_until``
    says when the quota frees a slot (``None``: nothing is waiting). ``superseded`` lists
    replies of the same inquiry that the claimed one overtook (they will not be posted).
    """

    reply: StoredReply | None
    call_id: str | None = None
    wait_until: datetime | None = None
    superseded: tuple[str, ...] = ()
