"""The conversation rule on its own (``bridge/triage/conversations.py``), against a real store
(SQLite): who continues whose conversation, walking chains the platform shows only in part."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.store import NewInquiry, SqlStore
from bridge.triage import conversations
from schemas.messages import Inquiry, PostRef
from schemas.vocab import InquiryKind


def inquiry(
    external_id: str, author: str, chain: list[tuple[str, str | None]], **kw: Any
) -> Inquiry:
    return Inquiry.create(
        platform="weibo",
        account="acc",
        kind=kw.pop("kind", InquiryKind.COMMENT),
        external_id=external_id,
        author={"id": author, "handle": f"u{author}"},
        text="路灯坏了",
        created_at=datetime.now(UTC),
        thread={
            "root_id": kw.pop("root", "post"),
            "conversation_id": kw.pop("conversation_id", None),
            "ancestors": [PostRef(id=i, author_id=a) for i, a in chain],
        },
        **kw,
    )


async def record(
    sqlite_store: SqlStore,
    inq: Inquiry,
    state: str = "ticketed",
    owner: str | None = None,
    **kw: Any,
) -> None:
    await sqlite_store.record_inquiry(
        NewInquiry(
            inquiry_id=inq.inquiry_id,
            platform=inq.platform,
            account=inq.account,
            kind=inq.kind.value,
            thread_key=inq.thread_key,
            state=state,
            department="d",
            category="complaint",
            citizen_handle=inq.author.handle,
            visibility="public",
            thread_json=inq.thread.model_dump_json(),
            external_id=inq.external_id,
            author_id=inq.author.id,
            conversation=owner or inq.inquiry_id,
            **kw,
        )
    )


async def test_citizens_under_one_official_post_are_separate(sqlite_store: SqlStore) -> None:
    a = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, a)
    b = inquiry("c2", "B", [("post", "OFFICIAL")])
    assert (await conversations.place(sqlite_store, b)).owner is None
    # A again, but as a new top-level comment: not in the chain of A's inquiry
    again = inquiry("c3", "A", [("post", "OFFICIAL")])
    assert (await conversations.place(sqlite_store, again)).owner is None


async def test_me_too_under_another_citizens_inquiry_is_its_own(sqlite_store: SqlStore) -> None:
    a = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, a)
    b = inquiry("c2", "B", [("c1", "A"), ("post", "OFFICIAL")])
    placed = await conversations.place(sqlite_store, b)
    assert placed.owner is None and placed.wait_for is None


async def test_answering_your_own_inquiry_two_levels_up_is_a_follow_up(
    sqlite_store: SqlStore,
) -> None:
    """Weibo shows one level: A -> B's "me too" -> A answers B. The walk continues through
    B's recorded chain and finds A's inquiry."""
    a = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, a)
    b = inquiry("c2", "B", [("c1", "A"), ("post", "OFFICIAL")])
    await record(sqlite_store, b)
    a2 = inquiry("c3", "A", [("c2", "B"), ("post", "OFFICIAL")])
    placed = await conversations.place(sqlite_store, a2)
    assert placed.owner is not None and placed.owner.inquiry_id == a.inquiry_id


async def test_under_the_bridges_answer_to_you_or_to_someone_else(sqlite_store: SqlStore) -> None:
    a = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, a)
    await sqlite_store.db.execute(
        "INSERT INTO reply_posts (platform, account, external_id, reply_id, inquiry_id)"
        " VALUES ('weibo', 'acc', 'r1', 'rep1', ?)",
        (a.inquiry_id,),
    )
    mine = inquiry("c2", "A", [("r1", "OFFICIAL"), ("post", "OFFICIAL")])
    theirs = inquiry("c3", "C", [("r1", "OFFICIAL"), ("post", "OFFICIAL")])
    placed = await conversations.place(sqlite_store, mine)
    assert placed.owner is not None and placed.owner.inquiry_id == a.inquiry_id
    assert (await conversations.place(sqlite_store, theirs)).owner is None


async def test_follow_up_of_a_follow_up_belongs_to_the_first(sqlite_store: SqlStore) -> None:
    a = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, a)
    a2 = inquiry("c2", "A", [("c1", "A"), ("post", "OFFICIAL")])
    await record(sqlite_store, a2, state="appended", owner=a.inquiry_id)
    a3 = inquiry("c3", "A", [("c2", "A"), ("post", "OFFICIAL")])
    placed = await conversations.place(sqlite_store, a3)
    assert placed.owner is not None and placed.owner.inquiry_id == a.inquiry_id


async def test_noise_or_a_finished_ticket_starts_afresh(sqlite_store: SqlStore) -> None:
    thanks = inquiry("c1", "A", [("post", "OFFICIAL")])
    await record(sqlite_store, thanks, state="ignored")
    after = inquiry("c2", "A", [("c1", "A"), ("post", "OFFICIAL")])
    assert (await conversations.place(sqlite_store, after)).owner is None

    done = inquiry("c3", "B", [("post", "OFFICIAL")])
    await record(sqlite_store, done, ticket_id="T9")
    await sqlite_store.record_ticket(
        department="d",
        ticket_id="T9",
        reference="GB-9",
        inquiry_id=done.inquiry_id,
        thread_key="k",
        status="resolved",
        status_rank=40,
        native_status="closed",
        status_at=datetime.now(UTC).isoformat(),
    )
    later = inquiry("c4", "B", [("c3", "B"), ("post", "OFFICIAL")])
    assert (await conversations.place(sqlite_store, later)).owner is None


async def test_own_post_not_recorded_yet_asks_to_wait(sqlite_store: SqlStore) -> None:
    """The citizen's earlier comment is probably still in flight: wait rather than open a
    second ticket for one matter."""
    a2 = inquiry("c2", "A", [("c1", "A"), ("post", "OFFICIAL")])
    placed = await conversations.place(sqlite_store, a2)
    assert placed.owner is None and placed.wait_for == "c1"


async def test_direct_messages_of_one_citizen_share_one_open_conversation(
    sqlite_store: SqlStore,
) -> None:
    first = inquiry("m1", "A", [], kind=InquiryKind.DIRECT_MESSAGE, conversation_id="dmA")
    second = inquiry("m2", "A", [], kind=InquiryKind.DIRECT_MESSAGE, conversation_id="dmA")
    other = inquiry("m3", "B", [], kind=InquiryKind.DIRECT_MESSAGE, conversation_id="dmB")
    key = conversations.dm_claim_key
    assert await sqlite_store.claim_thread(key(first), first.inquiry_id, "GB-1") == "GB-1"
    assert await sqlite_store.claim_thread(key(second), second.inquiry_id, "GB-2") == "GB-1"
    assert await sqlite_store.thread_owner(key(second)) == first.inquiry_id
    assert await sqlite_store.claim_thread(key(other), other.inquiry_id, "GB-3") == "GB-3"


async def test_a_new_direct_message_is_keyed_by_the_citizen_not_its_thread(
    sqlite_store: SqlStore,
) -> None:
    """A Mastodon DM that is a new status is a thread of its own; a webhook DM may carry no
    thread at all: the citizen's DMs to one account still share one key, another citizen's
    or another account's do not."""
    first = inquiry("s1", "A", [], kind=InquiryKind.DIRECT_MESSAGE, root="s1")
    second = inquiry("s2", "A", [], kind=InquiryKind.DIRECT_MESSAGE, root="s2")
    other = inquiry("s3", "B", [], kind=InquiryKind.DIRECT_MESSAGE, root="s3")
    elsewhere = first.model_copy(update={"account": "other_account"})
    key = conversations.dm_claim_key
    assert first.thread_key != second.thread_key
    assert key(first) == key(second)
    assert len({key(first), key(other), key(elsewhere)}) == 3
    assert not conversations.answers_a_post(first)
    reply = inquiry("s4", "A", [("s1", "A")], kind=InquiryKind.DIRECT_MESSAGE, root="s1")
    assert conversations.answers_a_post(reply)
