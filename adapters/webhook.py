"""Generic webhook source: any platform that *pushes* inquiries to the bridge and takes replies
by HTTP POST.

Inbound: the HTTP layer (``POST /hooks/sources/{account}``) verifies the HMAC signature with
``adapters.signing`` and hands the raw body to :meth:`WebhookSource.parse_push`. Two body formats
are accepted:

1. The govbridge push schema, one inquiry or ``{"items": [...]}``::

       {
         "external_id": "c-1001",                 # required, string or integer
         "kind": "mention" | "comment" | "direct_message",
         "author": {"id": "42", "handle": "citizen", "display_name": "…"},   # display_name optional
         "text": "…",
         "created_at": "2024-05-01T08:00:00+08:00",   # ISO 8601 or unix seconds
         "thread": {"root_id": "p-1", "parent_id": "c-999", "conversation_id": null,  # optional;
                    "parent_author_id": "7", "root_author_id": "1",   # optional: who wrote them
                    "ancestors": [{"id": "c-999", "author_id": "7"}, …]},  # optional: the chain
                                                       # above, nearest first
                                                       # thread defaults to root_id = external_id
         "visibility": "public" | "private",       # optional; direct messages are always private
         "url": "https://…"                        # optional
       }

2. The Weibo fan-service push (``type, receiver_id, sender_id, created_at, text, data``): a
   private message to the account. Weibo retries a push not answered within 5 s, so its external
   id is derived from ``sender_id`` + ``created_at``: a retried push maps to the same inquiry.

Outbound: :meth:`WebhookSource.post_reply` POSTs the reply as JSON to ``reply_url`` with
``Idempotency-Key: <reply_id>``, signed with ``reply_secret`` when one is configured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from adapters import fanservice, signing
from adapters.base import (
    AdapterError,
    FetchResult,
    MalformedId,
    PermanentError,
    PostedReply,
    SourceCapabilities,
    TargetGone,
)
from adapters.http import HttpClient
from adapters.text import clean
from adapters.wire import Malformed, parse_json
from schemas.config import AccountConfig, Duration
from schemas.messages import Inquiry, ReplyRequest, no_control_characters
from schemas.states import PostOutcome
from schemas.vocab import InquiryKind, Visibility

log = structlog.get_logger(__name__)

WEIBO_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"
MAX_ITEMS_PER_PUSH = 1000


class WebhookConfig(AccountConfig):
    """``[[accounts]]`` block of a webhook source."""

    model_config = ConfigDict(extra="forbid")

    adapter: Literal["webhook"] = "webhook"
    secret: SecretStr = Field(description="HMAC key the platform signs its pushes with.")
    reply_url: str = Field(pattern=r"^https?://", description="Where replies are POSTed.")
    reply_secret: SecretStr | None = Field(
        default=None, description="When set, replies are signed (adapters.signing) with this key."
    )
    platform: str = Field(
        default="webhook",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Platform label of the inquiries (routing key inquiry.received.<platform>).",
    )
    account_id: str | None = Field(
        default=None,
        description="The official account's user id on the platform (echo protection, "
        "fan-service receiver check).",
    )
    max_reply_chars: int = Field(default=500, ge=1)
    timeout: Duration = timedelta(seconds=10)


# --------------------------------------------------------------------------- push schema


def _id_string(value: object) -> object:
    """Ids may arrive as JSON integers (exact in Python); floats would have lost digits."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError("must be a string or an integer, not a float (large ids lose digits)")
    return value


def _parse_time(value: object) -> datetime:
    """ISO 8601, the Weibo ``created_at`` format, or unix seconds; naive times are UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("not a time: unix seconds out of range") from None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                dt = datetime.strptime(text, WEIBO_TIME_FORMAT)
            except ValueError:
                raise ValueError(
                    "not a time (use ISO 8601, unix seconds or 'Wed Jun 01 00:50:25 +0800 2011')"
                ) from None
    else:
        raise ValueError("not a time (use ISO 8601, unix seconds or the Weibo format)")
    if not dt.tzinfo:
        return dt.replace(tzinfo=UTC)
    try:  # every stage works in UTC; a time that has no UTC equivalent is no time
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError("not a time: out of range once converted to UTC") from None


def _checked_id(value: object) -> str:
    """An id of a fan-service push, held to the same rules as ``IdStr``."""
    out = _id_string(value)
    if not isinstance(out, str) or not out or len(out) > 256:
        raise ValueError("must be a non-empty string or integer")
    return no_control_characters(out)


IdStr = Annotated[
    str,
    BeforeValidator(_id_string),
    Field(min_length=1, max_length=256),
    AfterValidator(no_control_characters),
]
OptIdStr = Annotated[
    str | None,
    BeforeValidator(_id_string),
    AfterValidator(lambda v: v if v is None else no_control_characters(v)),
]
PushTime = Annotated[datetime, BeforeValidator(_parse_time)]


class _PushModel(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class PushAuthor(_PushModel):
    id: IdStr
    handle: Annotated[str, Field(min_length=1), AfterValidator(no_control_characters)]
    display_name: str | None = None


class PushPost(_PushModel):
    id: IdStr
    author_id: OptIdStr = None


class PushThread(_PushModel):
    root_id: IdStr
    parent_id: OptIdStr = None
    conversation_id: OptIdStr = None
    parent_author_id: OptIdStr = None
    root_author_id: OptIdStr = None
    ancestors: list[PushPost] | None = Field(default=None, max_length=200)

    def chain(self, own_id: str) -> list[dict[str, str | None]]:
        """The reply chain above the item, nearest first: the explicit ``ancestors`` when
        given, else the parent and the root (each with its author where the push says)."""
        if self.ancestors is not None:
            posts = [(p.id, p.author_id) for p in self.ancestors]
        else:
            posts = [(self.parent_id, self.parent_author_id)] if self.parent_id else []
        if self.root_id != own_id and all(pid != self.root_id for pid, _ in posts):
            posts.append((self.root_id, self.root_author_id))
        return [{"id": pid, "author_id": author} for pid, author in posts if pid != own_id]


class PushItem(_PushModel):
    """One inquiry in the govbridge push schema (see the module docstring)."""

    external_id: IdStr
    kind: InquiryKind
    author: PushAuthor
    text: str
    created_at: PushTime
    thread: PushThread | None = None
    visibility: Visibility | None = None
    url: str | None = None


def _invalid(what: str, err: ValidationError, where: str) -> PermanentError:
    """The error for a push that fails validation: ``MalformedId`` when an id holds control
    characters (a 400 at the edge), else ``PermanentError``."""
    reason = f"{what}: {_describe(err, where)}"
    if any(e["type"] == "id_control_character" for e in err.errors()):
        return MalformedId(reason)
    return PermanentError(reason)


def _describe(err: ValidationError, prefix: str) -> str:
    """The first few problems as ``field.path: what is wrong`` (safe to log: no values)."""
    parts = []
    for e in err.errors()[:3]:
        loc = prefix
        for p in e["loc"]:
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "required field is missing"
        parts.append(f"{loc or 'body'}: {msg}")
    more = len(err.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# --------------------------------------------------------------------------- adapter


class WebhookSource:
    """A source whose platform pushes inquiries; replies go back by signed HTTP POST."""

    name: ClassVar[str] = "webhook"
    Config: ClassVar[type[AccountConfig]] = WebhookConfig

    def __init__(self, cfg: AccountConfig) -> None:
        self.cfg: WebhookConfig = (
            cfg
            if isinstance(cfg, WebhookConfig)
            else WebhookConfig.model_validate(cfg.model_dump())
        )
        self.capabilities = SourceCapabilities(
            max_reply_chars=self.cfg.max_reply_chars,
            supports_direct_messages=True,
            supports_idempotency_key=True,
            pushes=True,
        )
        self.http = HttpClient(
            f"webhook {self.cfg.handle}",
            timeout=self.cfg.timeout,
            headers={"Accept": "application/json"},
            follow_redirects=self.cfg.follow_redirects,
        )

    # ------------------------------------------------------------------ inbound

    async def fetch(self, cursor: str | None) -> FetchResult:
        """Nothing to poll: items arrive through :meth:`parse_push`."""
        return FetchResult(items=[], cursor=cursor)

    @property
    def push_secret(self) -> SecretStr:
        return self.cfg.secret

    def parse_push(self, body: bytes) -> list[Inquiry]:
        """Validate a pushed body and normalise it; ``PermanentError`` names the bad field.

        Items written by the official account itself are dropped (echo protection), so the
        bridge never answers its own replies.
        """
        try:
            doc = parse_json(body)
        except Malformed as e:
            raise PermanentError(f"invalid push: body: {e}") from None
        if isinstance(doc, dict) and fanservice.is_fan_service(doc):
            return self._parse_fan_service(doc)
        if isinstance(doc, dict) and "items" in doc:
            raw_items = doc["items"]
            if not isinstance(raw_items, list):
                raise PermanentError("invalid push: items: must be a list of inquiries")
            if len(raw_items) > MAX_ITEMS_PER_PUSH:
                raise PermanentError(
                    f"invalid push: items: at most {MAX_ITEMS_PER_PUSH} inquiries per push"
                )
            entries = [(f"items[{i}]", item) for i, item in enumerate(raw_items)]
        elif isinstance(doc, dict):
            entries = [("", doc)]
        else:
            raise PermanentError(
                'invalid push: body: must be a JSON object (an inquiry or {"items": [...]})'
            )
        out: list[Inquiry] = []
        for where, raw in entries:
            inquiry = self._parse_item(where, raw)
            if inquiry is not None:
                out.append(inquiry)
        return out

    def _is_own(self, author_id: str, handle: str) -> bool:
        own = self.cfg.handle.lstrip("@").casefold()
        return handle.lstrip("@").casefold() == own or (
            self.cfg.account_id is not None and author_id == self.cfg.account_id
        )

    def _parse_item(self, where: str, raw: object) -> Inquiry | None:
        if not isinstance(raw, dict):
            raise PermanentError(f"invalid push: {where or 'body'}: must be a JSON object")
        try:
            item = PushItem.model_validate(raw)
        except ValidationError as e:
            raise _invalid("invalid push", e, where) from None
        prefix = f"{where}." if where else ""
        visibility = item.visibility
        if item.kind is InquiryKind.DIRECT_MESSAGE:
            if visibility is Visibility.PUBLIC:
                raise PermanentError(
                    f"invalid push: {prefix}visibility: a direct_message cannot be public"
                )
            visibility = Visibility.PRIVATE
        if self._is_own(item.author.id, item.author.handle):
            log.debug("webhook.echo_skipped", external_id=item.external_id)
            return None
        thread = item.thread or PushThread(root_id=item.external_id)
        return Inquiry.create(
            platform=self.cfg.platform,
            account=self.cfg.handle,
            kind=item.kind,
            external_id=item.external_id,
            author={
                "id": clean(item.author.id),
                "handle": clean(item.author.handle.lstrip("@")) or clean(item.author.id),
                "display_name": clean(item.author.display_name or "") or None,
            },
            text=clean(item.text),
            created_at=item.created_at,
            thread={
                "root_id": thread.root_id,
                "parent_id": thread.parent_id,
                "conversation_id": thread.conversation_id,
                "reply_to": {"external_id": item.external_id},
                "ancestors": thread.chain(item.external_id),
            },
            visibility=visibility or Visibility.PUBLIC,
            url=item.url,
        )

    def _parse_fan_service(self, raw: dict[str, Any]) -> list[Inquiry]:
        """A Weibo fan-service push (``adapters/fanservice.py``, shared with the Weibo source)."""
        return fanservice.to_inquiries(
            raw,
            platform=self.cfg.platform,
            account=self.cfg.handle,
            account_id=self.cfg.account_id,
            validate_id=_checked_id,
            parse_time=_parse_time,
        )

    # ------------------------------------------------------------------ outbound

    async def post_reply(self, reply: ReplyRequest) -> PostedReply:
        """POST the reply to ``reply_url``; the receiver dedupes on ``Idempotency-Key``."""
        if len(reply.text) > self.cfg.max_reply_chars:
            raise PermanentError(
                f"reply text has {len(reply.text)} characters; the limit is "
                f"{self.cfg.max_reply_chars}"
            )
        payload = {
            "reply_id": reply.reply_id,
            "inquiry_id": reply.inquiry_id,
            "platform": reply.platform,
            "account": reply.account,
            "thread": reply.thread.model_dump(mode="json"),
            "citizen_handle": reply.citizen_handle,
            "visibility": reply.visibility.value,
            "text": reply.text,
            "status": reply.status.value if reply.status else None,
            "ticket_id": reply.ticket_id,
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": reply.reply_id}
        if self.cfg.reply_secret is not None:
            headers.update(signing.sign(self.cfg.reply_secret.get_secret_value(), body))
        resp = await self.http.request(
            "POST",
            self.cfg.reply_url,
            what="webhook reply endpoint",
            data=body,
            headers=headers,
            accept=(409,),
            not_found=TargetGone,
        )
        try:
            doc = resp.json()
        except AdapterError:
            doc = None  # the reply was taken; its id is only a nicety
        duplicate = resp.status == 409 or (isinstance(doc, dict) and doc.get("duplicate") is True)
        return PostedReply(
            external_ids=_reply_ids(doc, reply.reply_id),
            outcome=PostOutcome.ALREADY_POSTED if duplicate else PostOutcome.POSTED,
        )

    async def check(self) -> None:
        """The reply endpoint answers HTTP at all (any status): a HEAD has no side effects."""
        await self.http.request(
            "HEAD", self.cfg.reply_url, what="webhook reply endpoint", raise_for_status=False
        )

    async def close(self) -> None:
        await self.http.close()


def _reply_ids(doc: Any, fallback: str) -> list[str]:
    if isinstance(doc, dict):
        ids = doc.get("ids")
        if isinstance(ids, list) and ids:
            return [str(i) for i in ids]
        if doc.get("id") is not None:
            return [str(doc["id"])]
    return [fallback]
