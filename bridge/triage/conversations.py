"""Conversations: one citizen, one matter, one ticket, one answer.

The rule (DESIGN.md, "Conversations") lives here and only here. A conversation is one
citizen's exchange with one official account about one matter. Many citizens writing under
one official post are many conversations. An inquiry is a *follow-up* only when the same
citizen writes again in the reply chain of their own earlier inquiry, including under the
bridge's answer to it. Everything else starts a new conversation: a mention, a first direct
message, or a reply under an announcement or under another citizen's post. Another citizen's
"me too" is their own conversation.

Adapters say what the platform shows of the chain (``ThreadRef.ancestors``, nearest first,
with authors). The store knows the rest: which posts are inquiries, and which are the bridge's
replies to which inquiry. Weibo shows one level of the chain, so the walk continues through
the recorded chain of every inquiry it passes.

Direct messages: a citizen's direct messages to one official account are one conversation
while its ticket is open, however the platform threads them (a Mastodon DM is a new status,
each its own thread; a Weibo private message names its sender; a webhook DM may carry no
thread at all). So a DM is keyed by the account and the citizen (``dm_claim_key``, claimed
atomically): the next DM joins the open conversation as a follow-up, and once its ticket is
final the next DM opens a new one. A DM that answers a post (a reply in a chain, e.g. under
the bridge's private note on a public inquiry) first goes by the chain like any reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store import Store, StoredInquiry
from schemas.messages import Inquiry, PostRef, ThreadRef
from schemas.vocab import FINAL_STATUSES, InquiryKind, InquiryState

# States of an inquiry whose conversation has (or is getting) a ticket to append to.
OPEN_STATES = frozenset(
    {
        InquiryState.TRIAGED,
        InquiryState.ROUTED,
        InquiryState.TICKETED,
        InquiryState.APPENDED,
        InquiryState.KEPT_ON_RECORD,
        InquiryState.FORWARDED,
        InquiryState.HELD_FOR_REVIEW,
    }
)
# States of an inquiry that will never get a ticket: a later message starts afresh.
CLOSED_STATES = frozenset({InquiryState.IGNORED})
MAX_CHAIN = 200  # posts walked at most (a chain is rarely a tenth of that)


@dataclass(frozen=True)
class Placement:
    """Where triage puts an inquiry.

    ``owner`` is the first inquiry of the conversation the inquiry continues (``None``: it
    starts its own). ``wait_for`` names a post of the same citizen in the chain that the
    bridge has not recorded yet (probably still in flight): triage retries shortly rather than
    opening a second ticket for the same matter.
    """

    owner: StoredInquiry | None
    wait_for: str | None = None


def dm_claim_key(inquiry: Inquiry) -> str:
    """One open DM conversation per citizen per official account, whatever the thread."""
    return f"{inquiry.platform}:{inquiry.account}:dm:{inquiry.author.id}"


def answers_a_post(inquiry: Inquiry) -> bool:
    """The inquiry is a reply in a chain (not a post of its own)."""
    parent = inquiry.thread.parent_id
    return bool(inquiry.thread.ancestors) or parent not in (None, inquiry.external_id)


def is_direct(inquiry: Inquiry) -> bool:
    return inquiry.kind is InquiryKind.DIRECT_MESSAGE


async def place(store: Store, inquiry: Inquiry, *, finished_too: bool = False) -> Placement:
    """Find the conversation a public inquiry continues, by walking its reply chain
    (``finished_too``: even one whose ticket is finished, as ``owner_of`` says)."""
    citizen = inquiry.author.id
    seen: set[str] = {inquiry.external_id}
    chain: list[PostRef] = list(inquiry.thread.ancestors)
    if not chain and inquiry.thread.parent_id not in (None, inquiry.external_id):
        chain = [PostRef(id=str(inquiry.thread.parent_id))]
    while chain and len(seen) < MAX_CHAIN:
        post = chain.pop(0)
        if post.id in seen:
            continue
        seen.add(post.id)
        row = await store.inquiry_by_post(inquiry.platform, inquiry.account, post.id)
        if row is None:
            row = await store.inquiry_answered_by_post(inquiry.platform, inquiry.account, post.id)
            if row is not None and row.author_id != citizen:
                # the bridge's answer to another citizen: that citizen's post is above it
                assert row.external_id is not None  # recorded with every inquiry
                chain = [PostRef(id=row.external_id, author_id=row.author_id), *chain]
                continue
        if row is not None:
            if row.author_id == citizen:
                return Placement(owner=await owner_of(store, row, finished_too=finished_too))
            chain = _recorded_chain(row) + chain  # go on above another citizen's inquiry
            continue
        if post.author_id is not None and post.author_id == citizen:
            return Placement(owner=None, wait_for=post.id)
    return Placement(owner=None)


def _recorded_chain(row: StoredInquiry) -> list[PostRef]:
    """The chain above a recorded inquiry, as its platform reported it."""
    if not row.thread_json:
        return []
    return list(ThreadRef.model_validate_json(row.thread_json).ancestors)


async def owner_of(
    store: Store, row: StoredInquiry, *, finished_too: bool = False
) -> StoredInquiry | None:
    """The first inquiry of the conversation ``row`` belongs to, if it can take a follow-up:
    not noise, and its ticket (if already made) not finished. Otherwise ``None``: the citizen's
    new message starts a new conversation. ``finished_too``: the conversation whatever its
    ticket's status (a 回访 answer comes after the final status)."""
    owner = row
    if row.conversation and row.conversation != row.inquiry_id:
        found = await store.get_inquiry(row.conversation)
        owner = found if found is not None else row
    if owner.state in CLOSED_STATES or owner.state not in OPEN_STATES | {
        InquiryState.NEEDS_RECONCILIATION
    }:
        return None
    if owner.ticket_id and owner.department:
        ticket = await store.get_ticket(owner.department, owner.ticket_id)
        if ticket is not None and ticket.status in FINAL_STATUSES and not finished_too:
            return None
    return owner


async def asked_conversation(store: Store, inquiry: Inquiry) -> StoredInquiry | None:
    """The citizen's own conversation a message continues, whether or not its ticket is
    finished, without claiming anything: where a 回访 question may wait for its answer."""
    if is_direct(inquiry) and not answers_a_post(inquiry):
        holder = await store.thread_owner(dm_claim_key(inquiry))
        row = await store.get_inquiry(holder) if holder else None
        return None if row is None else await owner_of(store, row, finished_too=True)
    return (await place(store, inquiry, finished_too=True)).owner
