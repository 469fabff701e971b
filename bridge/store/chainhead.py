"""The audit trail's writers (``bridge.store.audit``): one hash chain per writer, kept by the
driver (``bridge.store.drivers``) so the transactions on one database share them.

A writer is used by one transaction at a time (taken when the transaction appends, given back
when it commits or rolls back), so its chain needs no lock and no read of its head: the head is
here. Transactions that run one after another reuse the same writer (the free ones are a
stack), so a process whose transactions do not overlap writes one chain; a PostgreSQL pool
whose transactions overlap writes at most one chain per connection."""

from __future__ import annotations

import uuid

GENESIS = "0" * 64
# a writer begins a new chain (anchored to the trail's latest record) after this many records
CHAIN_RECORDS = 10_000


class ChainHead:
    """One writer's chain: its id, the number and hash of its last committed record (``seq``
    None: no record yet; the first links to the trail's latest record, its anchor), and what
    the open transaction appended (``pending``), kept only if it commits."""

    def __init__(self) -> None:
        self.chain = uuid.uuid4().hex[:16]
        self.seq: int | None = None
        self.hash = GENESIS
        self.pending: tuple[int, str] | None = None

    def settle(self, committed: bool) -> None:
        if committed and self.pending is not None:
            self.seq, self.hash = self.pending
        self.pending = None


class ChainWriters:
    """The free writers of one database (``dialect``: how its sequence numbers are given)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._free: list[ChainHead] = []
        self.started = 0  # chains begun by this process

    def take(self) -> ChainHead:
        if self._free:
            return self._free.pop()
        self.started += 1
        return ChainHead()

    def give(self, head: ChainHead, committed: bool) -> None:
        head.settle(committed)
        if head.seq is not None and head.seq >= CHAIN_RECORDS:
            head = ChainHead()  # anchored anew, to whatever another writer wrote last
            self.started += 1
        self._free.append(head)
