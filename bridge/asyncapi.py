"""The public message contract as an AsyncAPI 3 document (``govbridge asyncapi``).

Generated, never hand-written: channels from the topology's public routing keys
(``bridge.topology.ROUTING_KEYS``), who sends and who receives from ``ROUTE_PUBLISHERS`` and
``STAGE_BINDINGS``, payloads from the pydantic models of ``schemas/``. ``docs/asyncapi.json`` is
this document; a test regenerates it, compares, and validates it with the AsyncAPI parser, so
the file cannot drift from the code that really publishes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from bridge import __version__
from bridge.topology import (
    ROUTE_MESSAGES,
    ROUTE_PUBLISHERS,
    ROUTING_KEYS,
    STAGE_BINDINGS,
    Topology,
)
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


def _camel(key: str) -> str:
    head, *rest = key.split(".")
    return head + "".join(part.capitalize() for part in rest)


def _consumers(prefix: str) -> list[str]:
    """Stages whose queue binds a pattern under this routing-key prefix."""
    return [
        stage
        for stage, patterns in STAGE_BINDINGS.items()
        if any(p.rsplit(".", 1)[0] == prefix for p in patterns)
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
            " carries schema_version; consumers ignore unknown fields. Generated by"
            " `govbridge asyncapi` from schemas/ and bridge/topology.py.",
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
