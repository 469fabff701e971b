"""Exchanges, queues and bindings — declared idempotently at start and by ``govbridge topology``.

Routing keys on the topic exchange are a public contract (other systems bind their own queues):
``inquiry.received.<platform>``, ``inquiry.routed.<department>``, ``ticket.created.<department>``,
``ticket.updated.<department>``, ``reply.requested.<platform>``, ``reply.posted.<platform>``,
``sla.<event>.<department>``, ``incident.surge.<department>``.

Per stage: a quorum work queue (delivery limit, at-least-once dead-lettering with
reject-publish), one delay queue per retry tier (queue-level TTL, dead-lettering back to the work
queue through the default exchange) and a dead-letter queue. Tier queues are named by their
delay, so changing the delays declares new queues instead of clashing with old arguments.
Everything here works on RabbitMQ 3.10.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, ExchangeType

from schemas.config import BrokerConfig
from schemas.routing import SLA, Route
from schemas.stages import CONSUMING, STAGES

log = structlog.get_logger("govbridge.topology")

ROUTING_KEYS = {
    **{str(route): f"{route}.<{route.part}>" for route in Route},
    SLA: f"{SLA}.<event>.<department>",
}

# Which routing keys each consuming stage binds (from the declarations in schemas/stages.py).
# ``ingest``, ``sync`` and ``sla`` only publish.
STAGE_BINDINGS: dict[str, tuple[str, ...]] = {s.name: s.bindings for s in CONSUMING}

# Which stages publish each kind of routing key (also from the declarations).
ROUTE_PUBLISHERS: dict[str, tuple[str, ...]] = {
    kind: tuple(s.name for s in STAGES if kind in s.publishes) for kind in ROUTING_KEYS
}

# Routing keys no stage of the bridge consumes as a whole: other systems read them
# (``reply.posted.*``, ``sla.*``, ``account.flagged.*``; the reply role also answers
# ``sla.holding_reply.*``), and the
# read-only consumer user may bind them.
CONSUMER_KEYS: tuple[str, ...] = tuple(
    kind
    for kind in ROUTING_KEYS
    if not any(b == f"{kind}.*" for binds in STAGE_BINDINGS.values() for b in binds)
)

# What each public routing key carries (a model of ``schemas.messages``): ``govbridge asyncapi``
# documents the contract from this, ``ROUTE_PUBLISHERS`` and ``STAGE_BINDINGS``.
ROUTE_MESSAGES: dict[str, str] = {
    "inquiry.received": "Inquiry",
    "inquiry.routed": "TicketCommand",
    "ticket.created": "TicketEvent",
    "ticket.updated": "TicketEvent",
    "reply.requested": "ReplyRequest",
    "reply.posted": "ReplyPosted",
    "sla": "SlaEvent",
    "account.flagged": "AccountFlagged",
    "incident.surge": "IncidentSurge",
}


def _ms(delay: timedelta) -> int:
    return int(delay.total_seconds() * 1000)


def tier_label(delay: timedelta) -> str:
    ms = _ms(delay)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class StageQueues:
    stage: str
    work: str
    dead: str
    retry: tuple[tuple[timedelta, str], ...]  # (delay, queue name), increasing


@dataclass(frozen=True)
class Topology:
    """Names and arguments derived from the broker config."""

    cfg: BrokerConfig
    stages: tuple[str, ...] = tuple(STAGE_BINDINGS)

    @property
    def exchange(self) -> str:
        return self.cfg.exchange

    @property
    def alternate_exchange(self) -> str:
        return f"{self.cfg.exchange}.unroutable"

    @property
    def unroutable_queue(self) -> str:
        return f"{self.cfg.exchange}.unroutable"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.cfg.exchange}.dlx"

    def queues(self, stage: str) -> StageQueues:
        base = f"{self.cfg.exchange}.{stage}"
        return StageQueues(
            stage=stage,
            work=base,
            dead=f"{base}.dead",
            retry=tuple((d, f"{base}.retry.{tier_label(d)}") for d in self.cfg.retry_delays),
        )

    def work_queue_arguments(self, stage: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.cfg.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": stage,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def retry_queue_arguments(self, stage: str, delay: timedelta) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": _ms(delay),
            "x-dead-letter-exchange": "",  # default exchange: routes by queue name
            "x-dead-letter-routing-key": self.queues(stage).work,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    @staticmethod
    def holding_queue_arguments() -> dict[str, Any]:
        """Dead-letter and unroutable queues keep what they hold: reading them (``dlq list``)
        returns messages, which counts as a delivery, and RabbitMQ 4 gives quorum queues a
        default delivery limit of 20. An explicit, unreachable limit works on 3.10 and 4.x."""
        return {"x-queue-type": "quorum", "x-delivery-limit": 1_000_000_000}

    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        """Dead letters are kept for ``dead_letter_ttl`` (they hold citizens' raw text)."""
        return {**self.holding_queue_arguments(), "x-message-ttl": _ms(self.cfg.dead_letter_ttl)}

    def dead_letter_policy(self) -> str:
        """The ``rabbitmqctl`` command that bounds dead-letter queues declared without a TTL."""
        pattern = "^" + re.escape(self.exchange) + r"\..*\.dead$"
        definition = f'{{"message-ttl": {_ms(self.cfg.dead_letter_ttl)}}}'
        return (
            f"rabbitmqctl set_policy {self.exchange}-dead '{pattern}' '{definition}'"
            " --apply-to queues"
        )

    @property
    def ingest_dead(self) -> str:
        """Where items a source could not read are kept (see ``bridge.ingest.rejected``)."""
        return self.queues("ingest").dead

    def unroutable_queue_arguments(self) -> dict[str, Any]:
        """What no queue is bound for (``reply.posted.*``, ``sla.*`` when no other system
        listens) is kept for inspection, bounded: at most ``unroutable_max_length`` messages
        (the oldest dropped) for at most ``unroutable_ttl``. Nothing piles up unseen."""
        return {
            **self.holding_queue_arguments(),
            "x-max-length": self.cfg.unroutable_max_length,
            "x-overflow": "drop-head",
            "x-message-ttl": _ms(self.cfg.unroutable_ttl),
        }

    def unroutable_policy(self) -> str:
        """The ``rabbitmqctl`` command that bounds an unroutable queue declared unbounded."""
        definition = (
            f'{{"max-length": {self.cfg.unroutable_max_length}, "overflow": "drop-head",'
            f' "message-ttl": {_ms(self.cfg.unroutable_ttl)}}}'
        )
        pattern = "^" + self.unroutable_queue.replace(".", "\\.") + "$"
        return (
            f"rabbitmqctl set_policy {self.exchange}-unroutable '{pattern}' '{definition}'"
            " --apply-to queues"
        )

    def permissions(
        self,
        bridge_user: str = "govbridge",
        consumer_user: str = "govbridge-reader",
        vhost: str = "/",
    ) -> list[str]:
        """``rabbitmqctl`` commands for two least-privilege users of this topology, one a line
        (comments start with ``#``):

        - the bridge's user: configure, write and read only its own exchanges and queues (the
          exchange name and ``<exchange>.*``) and write to the default exchange (retry tiers,
          replays); on the topic exchange it may publish only the bridge's routing keys and
          bind only its stages' patterns;
        - a read-only consumer (another system): its own queues ``<user>.*``, bound to the keys
          only other systems consume; it cannot publish to the bridge's exchanges at all.
        """
        x = re.escape(self.exchange)
        own = x + r"(\..+)?"
        kinds = "|".join(re.escape(k) for k in ROUTING_KEYS if ROUTE_PUBLISHERS.get(k))
        patterns = dict.fromkeys(b for binds in STAGE_BINDINGS.values() for b in binds)
        bindings = "|".join(re.escape(b) for b in patterns)
        c = re.escape(consumer_user)
        readable = "|".join(re.escape(k) for k in CONSUMER_KEYS)
        v, b, r = shlex.quote(vhost), shlex.quote(bridge_user), shlex.quote(consumer_user)
        ex = shlex.quote(self.exchange)

        def perms(user: str, configure: str, write: str, read: str) -> str:
            quoted = " ".join(shlex.quote(p) for p in (configure, write, read))
            return f"rabbitmqctl set_permissions -p {v} {user} {quoted}"

        def topic(user: str, write: str, read: str) -> str:
            quoted = " ".join(shlex.quote(p) for p in (write, read))
            return f"rabbitmqctl set_topic_permissions -p {v} {user} {ex} {quoted}"

        consumer_keys = ", ".join(k + ".*" for k in CONSUMER_KEYS)
        return [
            f"# Least-privilege RabbitMQ users for the exchange {self.exchange} on vhost {vhost}.",
            f"# Create them first: rabbitmqctl add_user {b} '<password>'"
            f"; rabbitmqctl add_user {r} '<password>'",
            f"# {bridge_user}: its own exchanges and queues ({self.exchange},"
            f" {self.exchange}.*) and the default exchange (retry tiers, replays); publishes"
            " only the bridge's routing keys, binds only its stages' patterns",
            perms(b, f"^{own}$", f"^({own}|amq\\.default)$", f"^{own}$"),
            topic(b, f"^({kinds})\\..+$", f"^({bindings})$"),
            f"# {consumer_user}: read-only; its own queues ({consumer_user}.*) bound to"
            f" {consumer_keys}; publishes nothing",
            perms(r, f"^{c}\\..+$", f"^{c}\\..+$", f"^({c}\\..+|{x})$"),
            topic(r, "^$", f"^({readable})\\..+$"),
        ]

    def describe(self) -> list[str]:
        """Human-readable lines for ``govbridge topology``."""
        lines = [
            f"exchange {self.exchange} (topic, durable,"
            f" alternate-exchange={self.alternate_exchange})",
            f"exchange {self.alternate_exchange} (fanout)"
            f" -> queue {self.unroutable_queue} (quorum, at most"
            f" {self.cfg.unroutable_max_length} messages,"
            f" for {tier_label(self.cfg.unroutable_ttl)})",
            f"exchange {self.dead_letter_exchange} (direct): dead letters by stage, each kept"
            f" {tier_label(self.cfg.dead_letter_ttl)}",
            "routing keys (public contract): " + ", ".join(ROUTING_KEYS.values()),
        ]
        for stage in self.stages:
            q = self.queues(stage)
            binds = ", ".join(STAGE_BINDINGS[stage])
            lines.append(
                f"stage {stage}: queue {q.work} (quorum, delivery-limit {self.cfg.delivery_limit},"
                f" dlx at-least-once) <- {binds}"
            )
            for delay, name in q.retry:
                lines.append(f"  retry tier {name} (ttl {tier_label(delay)}) -> {q.work}")
            lines.append(f"  dead letters {q.dead} <- {self.dead_letter_exchange}[{stage}]")
        lines.append(
            f"ingest: unreadable source items {self.ingest_dead}"
            f" <- {self.dead_letter_exchange}[ingest]"
        )
        return lines

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare everything; idempotent (same names, same arguments)."""
        ae = await channel.declare_exchange(
            self.alternate_exchange, ExchangeType.FANOUT, durable=True
        )
        try:
            unroutable = await channel.declare_queue(
                self.unroutable_queue, durable=True, arguments=self.unroutable_queue_arguments()
            )
        except aiormq.exceptions.ChannelPreconditionFailed:
            # Declared unbounded by an earlier version: keep working (the robust channel
            # reopens) and say how to bound it.
            log.warning(
                "unroutable queue has other arguments (an earlier version's, unbounded);"
                " bound it with a policy or delete it once so it is declared again",
                queue=self.unroutable_queue,
                policy=self.unroutable_policy(),
            )
            if channel.is_closed:
                await channel.reopen()
            unroutable = await channel.declare_queue(self.unroutable_queue, passive=True)
        await unroutable.bind(ae, routing_key="")
        main = await channel.declare_exchange(
            self.exchange,
            ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": self.alternate_exchange},
        )
        dlx = await channel.declare_exchange(
            self.dead_letter_exchange, ExchangeType.DIRECT, durable=True
        )
        for stage in self.stages:
            q = self.queues(stage)
            work = await channel.declare_queue(
                q.work, durable=True, arguments=self.work_queue_arguments(stage)
            )
            for key in STAGE_BINDINGS[stage]:
                await work.bind(main, routing_key=key)
            for delay, name in q.retry:
                await channel.declare_queue(
                    name, durable=True, arguments=self.retry_queue_arguments(stage, delay)
                )
            dead = await self._declare_dead(channel, q.dead)
            await dead.bind(dlx, routing_key=stage)
        ingest_dead = await self._declare_dead(channel, self.ingest_dead)
        await ingest_dead.bind(dlx, routing_key="ingest")

    async def _declare_dead(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        try:
            return await channel.declare_queue(
                name, durable=True, arguments=self.dead_letter_queue_arguments()
            )
        except aiormq.exceptions.ChannelPreconditionFailed:
            # Declared without a TTL by an earlier version: keep working, say how to bound it.
            log.warning(
                "dead-letter queue has other arguments (an earlier version's, no TTL);"
                " bound it with a policy or delete it once it is empty",
                queue=name,
                policy=self.dead_letter_policy(),
            )
            if channel.is_closed:
                await channel.reopen()
            return await channel.declare_queue(name, passive=True)

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove everything (tests). Quorum queues need if_unused/if_empty False."""
        for stage in self.stages:
            q = self.queues(stage)
            for name in (q.work, q.dead, *(n for _, n in q.retry)):
                await channel.queue_delete(name, if_unused=False, if_empty=False)
        await channel.queue_delete(self.ingest_dead, if_unused=False, if_empty=False)
        await channel.queue_delete(self.unroutable_queue, if_unused=False, if_empty=False)
        for ex in (self.exchange, self.dead_letter_exchange, self.alternate_exchange):
            await channel.exchange_delete(ex)


async def declare_topology(url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await topology.declare(channel)
