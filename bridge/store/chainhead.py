"""The audit chain's head as this process last wrote it (``bridge.store.audit``), kept by the
driver (``bridge.store.drivers``) so every transaction on one database shares it."""

from __future__ import annotations

GENESIS = "0" * 64


class ChainHead:
    """The chain's head as this process last wrote it (one per database): the next append
    links to it without reading it back, and its INSERT is guarded by it (written only while
    the table still ends there), so a head another process moved since costs one read and a
    second try, never a wrong link."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.hash = GENESIS

    def forget(self) -> None:
        self.seq = None
