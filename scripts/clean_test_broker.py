"""Delete what killed test runs left on the local broker (CI only: it runs alone on its machine).

A test run deletes its own exchanges and queues, but a run that is killed (a timeout, a stopped
session) leaves them: quorum queues keep files open, and enough of them exhaust the broker's
open-file limit, after which it accepts TCP and never answers the AMQP handshake. Only names the
tests and the benchmark create are touched: ``gbtest-*``, ``gbbench-*`` and the permission test's
``gbperm-*`` vhosts and ``gbb-*``/``gbr-*`` users.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aio_pika

URL = os.environ.get("GOVBRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PREFIXES = ("gbtest-", "gbbench-")


def rabbitmqctl(*args: str) -> list[str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return [line.split("\t")[0] for line in out.stdout.splitlines() if line.strip()]


async def main() -> int:
    queues = [q for q in rabbitmqctl("list_queues", "name") if q.startswith(PREFIXES)]
    exchanges = [e for e in rabbitmqctl("list_exchanges", "name") if e.startswith(PREFIXES)]
    conn = await aio_pika.connect(URL, timeout=30)
    async with conn:
        for name in queues:
            ch = await conn.channel()
            await ch.queue_delete(name)
            await ch.close()
        for name in exchanges:
            ch = await conn.channel()
            await ch.exchange_delete(name)
            await ch.close()
    vhosts = [v for v in rabbitmqctl("list_vhosts", "name") if v.startswith("gbperm-")]
    users = [u for u in rabbitmqctl("list_users") if u.startswith(("gbb-", "gbr-"))]
    for vhost in vhosts:
        rabbitmqctl("delete_vhost", vhost)
    for user in users:
        rabbitmqctl("delete_user", user)
    print(
        f"left by earlier test runs and deleted: {len(queues)} queues, {len(exchanges)} exchanges,"
        f" {len(vhosts)} vhosts, {len(users)} users"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
