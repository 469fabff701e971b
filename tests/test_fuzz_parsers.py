"""Fuzzing every adapter parser: no exception escapes but the adapter's own error types.

What is fed: raw bytes, any JSON (lone surrogates, huge numbers, deep nesting included), and
documents shaped like each platform's own with every field given a value of any type. What is
checked: the parser either returns (and every inquiry or event it returns can be published:
it encodes to JSON) or raises ``AdapterError`` / ``Malformed`` (``adapters.wire``). Nothing
else — no ``KeyError``, ``TypeError``, ``RecursionError``, ``UnicodeEncodeError`` — may escape.

The suite runs ``GOVBRIDGE_FUZZ_EXAMPLES`` inputs per parser (default 300, a few seconds).
The full run behind the figures in ``docs/reliability.md``::

    GOVBRIDGE_FUZZ_EXAMPLES=10000 .venv/bin/pytest -q -s -m fuzz tests/test_fuzz_parsers.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from govbridge_tools.simulators.rest import demo_ticketing_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from adapters.base import AdapterError
from adapters.mastodon import MastodonConfig, MastodonSource, html_to_text
from adapters.open311 import Open311Config, Open311TicketSystem, _Cursor, parse_body
from adapters.rest import RestConfig, RestTicketSystem
from adapters.webhook import WebhookConfig, WebhookSource
from adapters.weibo import StreamCursor, WeiboConfig, WeiboSource
from adapters.wire import PAGE_MAX_DEPTH, Malformed, parse_json
from schemas.config import DepartmentConfig, TicketingConfig

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("GOVBRIDGE_FUZZ_EXAMPLES", "300"))
ALLOWED = (AdapterError, Malformed)
FIGURES: dict[str, int] = {}

# ---------------------------------------------------------------------- strategies

any_char = st.characters(codec=None, blacklist_categories=())  # surrogates included
text = st.text(alphabet=any_char, max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.sampled_from(["", "0", "-1", "1e400", "Wed Jun 01 00:50:25 +0800 2011", "open", "x" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A document with the platform's keys, each present or not, each plausible or anything."""
    return st.fixed_dictionaries(
        {}, optional={k: st.one_of(v, json_values) for k, v in keys.items()}
    )


ids = st.one_of(st.integers(min_value=0, max_value=2**64), st.integers().map(str), text)
user = shaped({"id": ids, "idstr": ids, "screen_name": text, "name": text})
weibo_status = shaped(
    {
        "id": ids,
        "idstr": ids,
        "text": text,
        "user": user,
        "created_at": st.just("Wed Jun 01 00:50:25 +0800 2011"),
    }
)
weibo_comment = shaped(
    {
        "id": ids,
        "idstr": ids,
        "text": text,
        "user": user,
        "status": weibo_status,
        "reply_comment": shaped({"id": ids, "user": user}),
        "created_at": st.sampled_from(
            ["Wed Jun 01 00:50:25 +0800 2011", "Mon Foo 99 99:99:99 +9999 0"]
        ),
    }
)
weibo_pages = st.one_of(
    st.fixed_dictionaries({"comments": st.lists(weibo_comment, max_size=6)}),
    st.fixed_dictionaries({"comments": st.lists(json_values, max_size=4)}),
    json_values,
)
mastodon_account = shaped({"id": ids, "acct": text, "username": text, "display_name": text})
mastodon_status = shaped(
    {
        "id": ids,
        "content": st.one_of(text, st.just("<p>a<br>b <a href='x' class='mention'>@c</a></p>")),
        "visibility": st.sampled_from(["public", "direct", "unlisted", "private", ""]),
        "account": mastodon_account,
        "in_reply_to_id": ids,
        "created_at": st.sampled_from(["2024-05-01T08:00:00Z", "not a time", "9999-99-99"]),
        "spoiler_text": text,
        "url": text,
    }
)
mastodon_pages = st.one_of(
    st.lists(
        shaped(
            {
                "id": ids,
                "type": st.just("mention"),
                "status": mastodon_status,
                "account": mastodon_account,
            }
        ),
        max_size=5,
    ),
    json_values,
)
open311_record = shaped(
    {
        "service_request_id": ids,
        "status": st.sampled_from(["open", "closed", "FIXED", "weird", ""]),
        "updated_datetime": st.sampled_from(
            [
                "2026-11-30T01:25:57.886760+02:00",
                "2026-11-30T01:25:57Z",
                "nope",
                "9999-12-31T23:59:59-23:59",
            ]
        ),
        "requested_datetime": st.sampled_from(["2026-11-30T01:25:57Z", ""]),
        "status_notes": text,
        "attributes": st.dictionaries(text, text, max_size=3),
        "description": text,
    }
)
rest_item = shaped(
    {
        "id": ids,
        "ticket_id": ids,
        "status": st.sampled_from(["NEW", "DONE", "??"]),
        "time": st.one_of(
            st.integers(min_value=-(10**20), max_value=10**20), st.just("2024-05-01T08:00:00Z")
        ),
        "note": text,
        "external_ref": text,
    }
)
webhook_item = shaped(
    {
        "external_id": ids,
        "kind": st.sampled_from(["mention", "comment", "direct_message", "x"]),
        "author": shaped({"id": ids, "handle": text, "display_name": text}),
        "text": text,
        "created_at": st.one_of(
            st.integers(min_value=-(10**20), max_value=10**20),
            st.sampled_from(["2024-05-01T08:00:00+08:00", "Wed Jun 01 00:50:25 +0800 2011"]),
        ),
        "thread": shaped(
            {"root_id": ids, "parent_id": ids, "ancestors": st.lists(json_values, max_size=3)}
        ),
        "visibility": st.sampled_from(["public", "private", "secret"]),
    }
)
fan_service = shaped(
    {"type": text, "receiver_id": ids, "sender_id": ids, "created_at": text, "text": text}
)


def encoded(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Documents as the wire carries them, plus raw bytes and absurd nesting."""
    as_json = documents.map(lambda d: json.dumps(d, ensure_ascii=True).encode())
    nested = st.integers(min_value=50, max_value=5000).map(
        lambda n: json.dumps(deep(min(n, 900))).encode() if n < 1000 else b"[" * n + b"]" * n
    )
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=200), nested)


# ---------------------------------------------------------------------- harness


def run(name: str, strategy: st.SearchStrategy[Any], target: Callable[[Any], None]) -> None:
    """Feed ``EXAMPLES`` inputs; only the adapter's own errors may escape ``target``."""
    count = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def check(value: Any) -> None:
        nonlocal count
        count += 1
        with contextlib.suppress(*ALLOWED):  # the adapter's own errors; anything else fails
            target(value)

    with capture_logs():  # the adapters log every skipped item; keep the output readable
        check()
    FIGURES[name] = count
    print(f"\nfuzz {name}: {count} inputs, 0 escapes")
    assert count >= EXAMPLES * 0.9, f"only {count} inputs were generated"


def publishable(*objects: Any) -> None:
    for obj in objects:
        obj.model_dump_json()  # UnicodeEncodeError or ValueError here would block a stream


# ---------------------------------------------------------------------- parsers


def test_fuzz_weibo_json() -> None:
    source = WeiboSource(WeiboConfig(adapter="weibo", handle="gov", department="d", token="t"))

    def target(body: bytes) -> None:
        data = parse_json(body, exact=True, max_depth=PAGE_MAX_DEPTH)
        for cur in (StreamCursor(), StreamCursor(since=5, top=9, max=7)):
            _, items, rejected = source.read_page("comments_to_me", data, cur, "1900000001")
            publishable(*items)
            assert all(isinstance(r.raw, bytes) for r in rejected)

    run("weibo json", encoded(weibo_pages), target)


def test_fuzz_mastodon_json() -> None:
    cfg = MastodonConfig.model_validate(
        {
            "adapter": "mastodon",
            "handle": "gov",
            "department": "d",
            "base_url": "http://127.0.0.1:9",
            "token": "t",
            "resolve_thread_root": False,
        }
    )
    source = MastodonSource(cfg)
    me = {"id": "1", "username": "gov"}
    loop = asyncio.new_event_loop()

    def target(body: bytes) -> None:
        page = parse_json(body, max_depth=PAGE_MAX_DEPTH)
        result = loop.run_until_complete(source.read_page(page, None, None, me))
        publishable(*result.items)

    try:
        run("mastodon json", encoded(mastodon_pages), target)
    finally:
        loop.close()


def test_fuzz_mastodon_html() -> None:
    html = st.one_of(
        text,
        st.lists(
            st.sampled_from(
                [
                    "<p>",
                    "</p>",
                    "<br>",
                    "<a href='http://x'>",
                    "</a>",
                    "<span class='invisible'>",
                    "&amp;",
                    "&#x110000;",
                    "<!--",
                    "<![CDATA[",
                    "<?x",
                    "<!DOCTYPE",
                    "&",
                    "<",
                    ">",
                ]
            )
            | text,
            max_size=30,
        ).map("".join),
    )

    def target(value: str) -> None:
        assert isinstance(html_to_text(value), str)

    run("mastodon html", html, target)


def _open311() -> Open311TicketSystem:
    ticketing = {
        "adapter": "open311",
        "base_url": "http://127.0.0.1:9/",
        "api_key": "k",
        "service_codes": {"other": "X"},
        "lat": 1.0,
        "long": 2.0,
        "servicerequestupdates": False,
    }
    cfg = Open311Config.model_validate(ticketing)
    dept = DepartmentConfig(id="d", name="d", ticketing=TicketingConfig.model_validate(ticketing))
    system = Open311TicketSystem(cfg, dept)
    system.watch({"1001": "open", "7": "closed"})
    return system


def test_fuzz_open311_json() -> None:
    system = _open311()
    now = datetime.now(UTC)

    def target(body: bytes) -> None:
        records = parse_body(body, "json")
        events = system.events_from_records(
            _Cursor(None, {}), records, now - timedelta(hours=1), now
        )
        publishable(*events)
        publishable(*system.events_from_updates(_Cursor(None, {}), records, now))

    pages = st.one_of(st.lists(open311_record, max_size=6), json_values)
    run("open311 json", encoded(pages), target)


def test_fuzz_open311_xml() -> None:
    system = _open311()
    now = datetime.now(UTC)
    tags = st.sampled_from(
        [
            "service_requests",
            "request",
            "service_request_id",
            "status",
            "updated_datetime",
            "attributes",
            "x",
            "errors",
            "error",
        ]
    )
    leaf = st.tuples(
        tags, text.map(lambda t: t.encode("utf-8", "replace").decode("utf-8", "replace"))
    )

    def render(node: Any) -> str:
        if isinstance(node, tuple) and isinstance(node[1], str):
            from xml.sax.saxutils import escape

            clean = "".join(
                c for c in node[1] if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF
            )
            return f"<{node[0]}>{escape(clean)}</{node[0]}>"
        tag, children = node
        return f"<{tag}>{''.join(render(c) for c in children)}</{tag}>"

    trees = st.recursive(
        leaf, lambda inner: st.tuples(tags, st.lists(inner, max_size=4)), max_leaves=20
    )
    docs = st.one_of(
        trees.map(lambda t: render(t).encode()),
        st.binary(max_size=200),
        st.integers(min_value=60, max_value=3000).map(lambda n: b"<a>" * n + b"</a>" * n),
        st.just(b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>'),
        st.just(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'),
    )

    def target(body: bytes) -> None:
        records = parse_body(body, "xml")
        publishable(
            *system.events_from_records(_Cursor(None, {}), records, now - timedelta(hours=1), now)
        )

    run("open311 xml", docs, target)


def test_fuzz_rest_mappings() -> None:
    ticketing = demo_ticketing_config("http://127.0.0.1:9")
    cfg = RestConfig.model_validate(ticketing)
    system = RestTicketSystem(
        cfg, DepartmentConfig(id="d", name="d", ticketing=TicketingConfig.model_validate(ticketing))
    )
    docs = st.one_of(
        st.fixed_dictionaries(
            {"items": st.lists(rest_item, max_size=5)}, optional={"next_cursor": json_values}
        ),
        st.lists(rest_item, max_size=4),
        rest_item,
        json_values,
    )

    def target(body: bytes) -> None:
        publishable(*system.parse_callback({}, body))
        try:
            doc = parse_json(body, max_depth=PAGE_MAX_DEPTH)
        except Malformed:
            return
        result = system.changes_from(doc, "c0")
        publishable(*result.events)

    run("rest mappings", encoded(docs), target)


def test_fuzz_webhook_pushes() -> None:
    source = WebhookSource(
        WebhookConfig(
            adapter="webhook",
            handle="gov",
            department="d",
            secret="s",
            reply_url="http://127.0.0.1:9/r",
        )
    )
    docs = st.one_of(
        webhook_item,
        st.fixed_dictionaries({"items": st.lists(webhook_item, max_size=4)}),
        fan_service,
        json_values,
    )

    def target(body: bytes) -> None:
        publishable(*source.parse_push(body))

    run("webhook pushes", encoded(docs), target)
