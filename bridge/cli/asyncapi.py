"""The public message contract as an AsyncAPI 3 document (``govbridge asyncapi``).

Generated, never hand-written: channels from the topology's public routing keys
(``bridge.runtime.topology.ROUTING_KEYS``), who sends and who receives from ``ROUTE_PUBLISHERS`` and
``STAGE_BINDINGS``, payloads from the pydantic models of ``schemas/``. ``docs/asyncapi.json`` is
this document; a test regenerates it, compares, and validates it with the AsyncAPI parser, so
the file cannot drift from the code that really publishes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from bridge import __version__
from bridge.cli.load import load
from bridge.runtime.topology import (
    ROUTE_MESSAGES,
    ROUTE_PUBLISHERS,
    ROUTING_KEYS,
    STAGE_BINDINGS,
    Topology,
)
from bridge.security.bus import SIGNATURE_HEADER, SIGNED_FOR_HEADER
from schemas.config import BrokerConfig
from schemas.messages import MESSAGE_MODELS
from schemas.vocab import Platform

ASYNCAPI_VERSION = "3.1.0"
AMQP_BINDING_VERSION = "0.3.0"

_PARAMETERS: dict[str, dict[str, Any]] = {
    "platform": {
        "description": "Source platform of the citizen's account (built in: "
        + ", ".join(p.value for p in Platform)
        + "; plugins may add others).",
        "examples": [p.value for p in Platform],
    },
    "department": {
        "description": "A department id from the bridge's config ([[departments]] id).",
        "examples": ["transport"],
    },
    "event": {
        "description": "Which deadline event.",
        "enum": ["warning", "breached", "holding_reply"],
    },
}


# What every message the bridge publishes carries besides its body (bridge/security/bus.py). A
# reader needs neither; the bridge's own stages refuse a message without a valid signature.
HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        SIGNATURE_HEADER: {
            "type": "string",
            "pattern": "^v1:[0-9a-f]{8}:[0-9]+:[0-9a-f]{64}$",
            "description": "v1:<key id>:<signed at, unix ms>:<HMAC-SHA256, hex> over the routing"
            " key, message type, signing time and body, under the bridge's bus key. The"
            " bridge's stages refuse (dead-letter as unauthenticated) a message without a valid"
            " one; readers need not check it.",
        },
        SIGNED_FOR_HEADER: {
            "type": "string",
            "description": "The routing key the message was signed for (it must be the one it"
            " is routed with).",
        },
    },
    "required": [SIGNATURE_HEADER, SIGNED_FOR_HEADER],
}


def _camel(key: str) -> str:
    head, *rest = key.split(".")
    return head + "".join(part.capitalize() for part in rest)


def _consumers(prefix: str) -> list[str]:
    """Stages whose queue binds a pattern under this routing-key prefix."""
    return [
        stage
        for stage, patterns in STAGE_BINDINGS.items()
        if any(p == f"{prefix}.*" or p.startswith(f"{prefix}.") for p in patterns)
    ]


def build(broker: BrokerConfig | None = None) -> dict[str, Any]:
    """The AsyncAPI 3 document for the exchange named in ``broker`` (default config if None)."""
    topo = Topology(broker or BrokerConfig())
    exchange_binding = {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": topo.exchange,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }
    used = sorted(set(ROUTE_MESSAGES.values()))
    _, defs = models_json_schema(
        [(MESSAGE_MODELS[name], "serialization") for name in used],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(sorted(defs.get("$defs", {}).items()))
    messages: dict[str, Any] = {}
    for name in used:
        model = MESSAGE_MODELS[name]
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": HEADERS,
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for prefix, pattern in ROUTING_KEYS.items():
        if prefix not in ROUTE_MESSAGES:
            continue
        channel_id = _camel(prefix)
        address = pattern.replace("<", "{").replace(">", "}")
        params = [part[1:-1] for part in address.split(".") if part.startswith("{")]
        message = ROUTE_MESSAGES[prefix]
        channels[channel_id] = {
            "address": address,
            "title": pattern,
            "description": f"Routing key {pattern} on the {topo.exchange} topic exchange"
            f" (body: {message} JSON).",
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
            "parameters": {p: {"$ref": f"#/components/parameters/{p}"} for p in params},
            "bindings": exchange_binding,
        }
        msg_ref = [{"$ref": f"#/channels/{channel_id}/messages/{message}"}]
        publishers = ", ".join(ROUTE_PUBLISHERS.get(prefix, ()))
        operations[f"send{channel_id[0].upper()}{channel_id[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Published with confirms by the bridge's {publishers} stage(s).",
            "messages": msg_ref,
        }
        for stage in _consumers(prefix):
            queue = topo.queues(stage).work
            operations[f"{stage}Receives{channel_id[0].upper()}{channel_id[1:]}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"The bridge's {stage} stage consumes it from the quorum queue {queue}.",
                "messages": msg_ref,
                "bindings": {
                    "amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION},
                },
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "govbridge",
            "version": __version__,
            "description": "Public routing keys of the govbridge topic exchange and the JSON"
            " bodies they carry. Other systems bind their own queues to these keys. Every body"
            " carries schema_version; consumers ignore unknown fields. Every message is signed"
            " by the bridge (headers x-govbridge-signature, x-govbridge-signed-for); readers"
            " need no key. Generated by"
            " `govbridge asyncapi` from schemas/ and bridge/runtime/topology.py.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "Any RabbitMQ node (or cluster) the bridge's [broker] url names.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": _PARAMETERS,
        },
    }


def render(broker: BrokerConfig | None = None) -> str:
    """The document as written to docs/asyncapi.json (stable key order, trailing newline)."""
    return json.dumps(build(broker), ensure_ascii=False, indent=2) + "\n"


def register(sub: Any) -> None:
    asyncapi = sub.add_parser(
        "asyncapi", help="write the AsyncAPI 3 document of the public routing keys and messages"
    )
    asyncapi.add_argument(
        "-c", "--config", help="take the exchange name from this config (default: govbridge)"
    )
    asyncapi.add_argument("--out", default="docs/asyncapi.json", help="file, or - for stdout")
    asyncapi.add_argument(
        "--check", action="store_true", help="exit 1 when the file differs from the code"
    )
    asyncapi.set_defaults(func=cmd_asyncapi)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    text = render(load(args.config).broker if args.config else None)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"{out} is not current: run `govbridge asyncapi --out {out}`", file=sys.stderr)
            return 1
        print(f"{out} is current")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(out)
    return 0
