"""The Weibo fan-service platform push, in one place (../shared/reference/weibo.md, "Push
alternatives"): what a pushed private message looks like (JSON, or XML shaped like WeChat's),
how it becomes an inquiry, and how its ``signature`` query parameter is checked.

Both sources that take it use this module: the Weibo source in its ``fan_service`` push mode
(``adapters/weibo.py``) and the generic webhook source (``adapters/webhook.py``).

- Signature: SHA-1 of ``appsecret``, ``timestamp`` and ``nonce`` sorted lexicographically and
  concatenated, sent as query parameters with the URL verification GET (which also carries
  ``echostr``, answered as-is) and with every push.
- Weibo retries a push not answered within 5 s (three times): a retry maps to the same external
  id, made of ``sender_id`` + ``created_at`` (+ the message ``id`` when the push names one), so
  it is the same inquiry.
"""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from adapters.base import MalformedId, PermanentError
from adapters.text import clean
from adapters.wire import Malformed, parse_json
from schemas.messages import Inquiry, no_control_characters
from schemas.vocab import InquiryKind, Visibility

# the WeChat-shaped XML element -> the JSON field it carries
_XML_FIELDS = {
    "ToUserName": "receiver_id",
    "FromUserName": "sender_id",
    "CreateTime": "created_at",
    "MsgType": "type",
    "Content": "text",
    "MsgId": "id",
}
MAX_XML_FIELDS = 64


class FanServicePush(BaseModel):
    """A Weibo fan-service platform push (a private message to the account)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    # travels back as the reply's ``reply_to.type``: an id, held to the same rules
    type: Annotated[str, AfterValidator(no_control_characters)] = Field(min_length=1)
    receiver_id: Any
    sender_id: Any
    created_at: Any
    text: str = ""
    id: Any = None
    data: dict[str, Any] | str | None = None


def signature(appsecret: str, timestamp: str, nonce: str) -> str:
    """``hex(sha1(''.join(sorted([appsecret, timestamp, nonce]))))``."""
    joined = "".join(sorted([appsecret, timestamp, nonce]))
    return hashlib.sha1(joined.encode()).hexdigest()


def signature_ok(appsecret: str, query: Mapping[str, str]) -> bool:
    """The push's (or the verification GET's) ``signature`` matches; compared in constant time."""
    sig, ts, nonce = query.get("signature"), query.get("timestamp"), query.get("nonce")
    if not sig or not ts or not nonce:
        return False
    return hmac.compare_digest(signature(appsecret, ts, nonce), sig.strip().lower())


def is_fan_service(doc: object) -> bool:
    return isinstance(doc, dict) and "sender_id" in doc and "receiver_id" in doc


def decode_body(body: bytes) -> dict[str, Any]:
    """The push as a dict, from JSON (the default) or XML; ``PermanentError`` otherwise."""
    if body.lstrip()[:1] == b"<":
        return _decode_xml(body)
    try:
        doc = parse_json(body)
    except Malformed as e:
        raise PermanentError(f"invalid fan-service push: body: {e}") from None
    if not isinstance(doc, dict):
        raise PermanentError("invalid fan-service push: body: must be a JSON object")
    return doc


def _decode_xml(body: bytes) -> dict[str, Any]:
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:  # no entity expansion, ever
        raise PermanentError("invalid fan-service push: body: XML with a DOCTYPE is refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise PermanentError("invalid fan-service push: body: not well-formed XML") from None
    children = list(root)
    if len(children) > MAX_XML_FIELDS or any(len(c) for c in children):
        raise PermanentError("invalid fan-service push: body: XML must be one flat element")
    doc: dict[str, Any] = {}
    for child in children:
        name = _XML_FIELDS.get(child.tag, child.tag)
        doc[name] = child.text or ""
    if "created_at" in doc and str(doc["created_at"]).strip().isdigit():
        doc["created_at"] = int(str(doc["created_at"]).strip())
    return doc


def to_inquiries(
    raw: dict[str, Any],
    *,
    platform: str,
    account: str,
    account_id: str | None,
    validate_id: Callable[[object], str],
    parse_time: Callable[[object], datetime],
) -> list[Inquiry]:
    """One pushed message → at most one inquiry (events and the account's own echoes: none)."""
    try:
        msg = FanServicePush.model_validate(raw)
    except ValidationError as e:
        if any(err["type"] == "id_control_character" for err in e.errors()):
            raise MalformedId("invalid fan-service push: type: control character") from None
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        what = "required field is missing" if first["type"] == "missing" else first["msg"]
        raise PermanentError(f"invalid fan-service push: {where}: {what}") from None
    try:
        receiver = validate_id(msg.receiver_id)
        sender = validate_id(msg.sender_id)
        msg_id = None if msg.id in (None, "") else validate_id(msg.id)
    except PydanticCustomError as e:
        if e.type == "id_control_character":
            raise MalformedId("invalid fan-service push: id: control character") from None
        raise PermanentError(f"invalid fan-service push: id: {e}") from None
    except ValueError as e:
        raise PermanentError(f"invalid fan-service push: id: {e}") from None
    try:
        created = parse_time(msg.created_at)
    except ValueError as e:
        raise PermanentError(f"invalid fan-service push: created_at: {e}") from None
    if account_id is not None and receiver != account_id:
        raise PermanentError("invalid fan-service push: receiver_id: not this account's user id")
    if msg.type == "event":
        return []  # follow / unfollow / menu clicks: not an inquiry
    if account_id is not None and sender == account_id:
        return []
    text = clean(msg.text) or f"[{clean(msg.type)}]"
    stamp = int(created.timestamp())
    external_id = f"{sender}-{stamp}" + (f"-{msg_id}" if msg_id else "")
    return [
        Inquiry.create(
            platform=platform,
            account=account,
            kind=InquiryKind.DIRECT_MESSAGE,
            external_id=external_id,
            author={"id": sender, "handle": sender},
            text=text,
            created_at=created,
            thread={
                "root_id": f"dm-{sender}",
                "conversation_id": sender,
                "reply_to": {
                    "receiver_id": sender,
                    "sender_id": receiver,
                    "type": msg.type,
                    "sent_at": str(stamp),
                },
            },
            visibility=Visibility.PRIVATE,
        )
    ]
