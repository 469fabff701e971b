"""The personal-data gate in front of every public thread (``bridge.privacy.pii`` does the finding).

Every path a text takes to a public thread passes it:

- a citizen's text is masked by triage before it is stored for display (``public_text``) or
  sent to a ticket system (unless the department keeps personal data for its case workers);
- a rendered template and an official's note from the ticket system are masked when the
  reply is composed (``bridge/reply/role.py``, ``bridge/sla/role.py``);
- an approver's text is not masked behind the approver's back: the approvals API refuses an
  approval whose text the gate would change (422, with the masked text to confirm), so what
  is approved is already clean and is posted byte for byte;
- the outbox passes every public reply through ``last_gate``, the last gate. It finds
  nothing in a reply that came the ways above; if it ever does (a draft composed by an older
  version, a row written by hand), it masks, says so in the log (kinds and count, never the
  data) and in the audit trail (``reply.masked`` on the reply), and posts the masked text.

Private replies (direct messages to the citizen) are not masked: they tell the citizen about
their own case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bridge.privacy import pii
from bridge.store import StoredReply, text_sha256
from schemas.messages import ReplyRequest
from schemas.vocab import Visibility

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.public_text")


def gate(text: str, *, ticket_id: str | None) -> tuple[str, Sequence[pii.Finding]]:
    """``text`` as it may be published, and what had to be masked. The ticket id the reply
    names and the bridge's references are never masked."""
    return pii.redact(text, keep=[ticket_id])


@dataclass(frozen=True)
class Gated:
    """A reply's text as it may be posted, and what the last gate had to mask in it."""

    text: str
    findings: Sequence[pii.Finding] = ()


def last_gate(reply: StoredReply, request: ReplyRequest) -> Gated:
    """The text to post for ``reply``: its own, through the last gate when it is public."""
    if request.visibility != Visibility.PUBLIC:
        return Gated(reply.text)
    masked, findings = gate(reply.text, ticket_id=request.ticket_id)
    return Gated(masked, findings)


async def report_masked(ctx: BridgeContext, reply: StoredReply, gated: Gated) -> None:
    """Say in the log (kinds and count, never the data) and in the audit trail that the last
    gate had to mask something in ``reply``, before it is posted; nothing when it had not."""
    if not gated.findings:
        return
    kinds = sorted({f.kind for f in gated.findings})
    log.warning(
        "personal data masked at the last gate before posting",
        reply_id=reply.reply_id,
        kinds=kinds,
        count=len(gated.findings),
    )
    await ctx.store.record_audit(
        "reply.masked",
        inquiry_id=reply.inquiry_id,
        subject=reply.reply_id,
        kinds=kinds,
        count=len(gated.findings),
        text_sha256=text_sha256(gated.text),
    )
