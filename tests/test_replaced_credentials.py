"""Credentials replaced through the admin API persist, encrypted, and survive a restart (issue 19,
must-show 5): a Weibo token replaced by a signed-in operator is what the platform simulator sees
after ``govbridge run`` is stopped and started again with the old token still in its config;
the audit trail names who replaced it and records its use after the restart. Also: a ticket
system's key the same way; a later change of the config wins over an older replacement; what
is stored is sealed (not in the database file in clear, bound to its row, rotated to a new key);
the admin API's refusals.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from govbridge_tools.simulators.weibo import Limits, WeiboState, create_app
from govbridge_tools.testing import BusTap, free_port
from pydantic import SecretStr

from bridge.cli.credentials import run_credentials
from bridge.config import ConfigError, parse_config
from bridge.runtime.credentials import CredentialError, Credentials, Vault, stored_credentials
from bridge.store import SqlStore, audit, open_store
from bridge.web.operators import add_operator
from tests.conftest import bridge_config, config_toml, delete_topology, eventually, running_bridge
from tests.contract.harness_open311 import API_KEY, Open311Harness
from tests.test_ingest import DEPARTMENT, HANDLE, Backlog, serve, weibo_account
from tests.test_operators import Operator
from tests.test_refused_key import daemon_process, department, filed, ticketing

PASSWORD = "correct horse battery"
ADMIN = {"Authorization": "Bearer test-admin-token"}


def vault() -> dict[str, list[str]]:
    return {"keys": [Fernet.generate_key().decode()]}


@dataclass
class TokenWatchingWeibo(WeiboState):
    """The simulator, remembering every token it was shown (what the platform sees)."""

    seen: list[str] = field(default_factory=list)

    def authorise(self, token: str | None) -> int:
        self.seen.append(token or "")
        return super().authorise(token)


async def _true(value: bool) -> bool:
    return value


async def test_a_token_replaced_through_the_api_survives_a_restart(tmp_path: Path) -> None:
    weibo = TokenWatchingWeibo(official_name=HANDLE, limits=Limits(calls=100_000))
    backlog = Backlog(weibo)
    old_token = weibo.token
    port = free_port()
    async with serve(create_app(weibo)) as url:
        cfg = bridge_config(
            tmp_path,
            departments=[DEPARTMENT],
            accounts=[weibo_account(url, weibo)],
            http={"listen": f"127.0.0.1:{port}"},
            credentials=vault(),
        )
        assert cfg.accounts[0].token is not None
        assert cfg.accounts[0].token.get_secret_value() == old_token
        new_token = weibo.replace_token()  # re-authorised at Weibo: the configured one is dead
        path = tmp_path / "govbridge.toml"
        path.write_text(config_toml(cfg))
        setup = await open_store(cfg.store.url)
        await add_operator(setup, "ops-zhang", "admin", PASSWORD, actor="test")
        await setup.close()
        base = f"http://127.0.0.1:{port}"
        logs: list[str] = []
        try:
            async with BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap:
                # 1. The token in the config is refused; an operator replaces it.
                async with daemon_process(path, "ingest,http", port) as (_, log_lines):
                    async with aiohttp.ClientSession() as http:

                        async def refused() -> bool:
                            async with http.get(f"{base}/readyz", headers=ADMIN) as resp:
                                alerts = (await resp.json())["alerts"]
                            return [(a["kind"], a.get("operation")) for a in alerts] == [
                                ("account_auth", "poll")
                            ]

                        await eventually(refused, 30)
                    operator = Operator(base)
                    async with operator.http:
                        assert (await operator.sign_in("ops-zhang"))[0] == 200
                        status, body = await operator.call(
                            "PUT", f"/api/accounts/weibo/{HANDLE}/token", {"token": new_token}
                        )
                    assert status == 200, body
                    assert body["persisted"] is True and new_token not in str(body)
                    before = backlog.add(3, "重启前")
                    await eventually(lambda: _true(before[-1] in tap.values("external_id")), 30)
                    assert new_token in weibo.seen
                    logs += log_lines

                # 2. Restarted with the same file, the old token still in it.
                weibo.seen.clear()
                after = backlog.add(3, "重启后")
                async with daemon_process(path, "ingest,http", port) as (_, log_lines):
                    await eventually(
                        lambda: _true(set(after) <= set(tap.values("external_id"))), 30
                    )
                    async with (
                        aiohttp.ClientSession() as http,
                        http.get(f"{base}/readyz", headers=ADMIN) as resp,
                    ):
                        assert (await resp.json())["alerts"] == []
                    logs += log_lines
            # What the platform saw after the restart: the replaced token, never the old one.
            assert weibo.seen and set(weibo.seen) == {new_token}
            assert set(before + after) <= set(tap.values("external_id"))
        finally:
            await delete_topology(cfg.broker)

    check = await open_store(cfg.store.url)
    try:
        records = await audit.recent(check.db, 500)
        replaced = [r for r in records if r["action"] == "account.token_replaced"]
        assert [(r["actor"], r["subject"]) for r in replaced] == [
            ("ops-zhang", f"account:weibo:{HANDLE}")
        ]
        assert replaced[0]["detail"]["persisted"] is True
        used = [r for r in records if r["action"] == "credential.applied"]
        assert len(used) == 1 and used[0]["detail"]["replaced_by"] == "ops-zhang"
        assert used[0]["seq"] > replaced[0]["seq"]  # by the restarted process
        assert (await audit.verify(check.db)).ok
        [row] = await stored_credentials(check)
        assert (row.state, row.replaced_by, row.version) == ("active", "ops-zhang", 1)
    finally:
        await check.close()
    assert new_token.encode() not in _at_rest(tmp_path), "the token is in the database in clear"
    text = "".join(logs)
    assert old_token not in text and new_token not in text, "a token reached the log"


def _at_rest(tmp_path: Path) -> bytes:
    """The store's files as they lie on disk (the database and its write-ahead log)."""
    return b"".join(p.read_bytes() for p in tmp_path.glob("govbridge.db*") if p.is_file())


@pytest.fixture
async def refusing() -> AsyncIterator[Open311Harness]:
    h = Open311Harness(quirks=True)
    async with h.running():
        yield h


async def test_a_replaced_ticketing_key_survives_a_restart_until_the_config_changes(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    keys = vault()
    data = bridge_config(
        tmp_path,
        departments=[department(ticketing(refusing, "old-key-in-the-file"))],
        credentials=keys,
    ).model_dump(mode="python", serialize_as_any=True)

    def config(key: str | None = None) -> Any:
        """The config file as read at a (re)start, with the key the operator wrote in it."""
        if key is None:
            return parse_config(data, env={})
        return parse_config({**data, "departments": [department(ticketing(refusing, key))]}, env={})

    async with running_bridge(config(), ["http"]) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.http_port}/api/ticket-systems/transport/credentials"
        async with http.put(url, json={"api_key": API_KEY}, headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["persisted"] is True

    # Restarted, the file unchanged: the replacement is used from the first create.
    first = refusing.command(1)
    async with running_bridge(config(), ["ticketing"]) as daemon:
        assert daemon.ctx is not None
        await daemon.ctx.broker.publish("inquiry.routed.transport", first)
        await eventually(lambda: _true(filed(refusing, first) == 1))
        assert refusing.state.requests_by_route["POST /requests.{fmt}"] == 1
        assert not daemon.alerts.active

    # The department's IT issues another key and the operator writes it in the file: the
    # newer decision wins over the older replacement, which is marked superseded.
    refusing.state.api_key = "key-issued-in-december"
    second = refusing.command(2)
    async with running_bridge(config("key-issued-in-december"), ["ticketing"]) as daemon:
        assert daemon.ctx is not None
        await daemon.ctx.broker.publish("inquiry.routed.transport", second)
        await eventually(lambda: _true(filed(refusing, second) == 1))
        db = daemon.ctx.store.db
        [row] = await stored_credentials(daemon.ctx.store)
        assert row.state == "superseded"
        actions = [(r["action"], r["actor"]) for r in await audit.recent(db, 100)]
        assert ("credential.superseded", "config") in actions
        assert ("ticketing.credentials_replaced", "admin-token") in actions
        assert actions.count(("credential.applied", "bridge")) == 1  # the first restart only
    assert len(refusing.state.tickets) == 2


async def test_replacement_refusals_and_a_bridge_without_keys(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    """Unknown fields, unprintable values and unknown departments are refused with the reason;
    without ``credentials.keys`` a replacement works in this process and says it is not kept."""
    cfg = bridge_config(tmp_path, departments=[department(ticketing(refusing, "k-wrong"))])
    async with running_bridge(cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}/api/ticket-systems"
        for path, body, status, says in (
            ("/transport/credentials", {"password": "x"}, 400, "replaceable: api_key"),
            ("/transport/credentials", {"api_key": "密钥"}, 400, "printable ASCII"),
            ("/transport/credentials", {"api_key": ""}, 400, "printable ASCII"),
            ("/transport/credentials", ["api_key"], 400, '"api_key"'),
            ("/parks/credentials", {"api_key": "x"}, 404, "no department"),
        ):
            async with http.put(base + path, json=body, headers=ADMIN) as resp:
                assert resp.status == status, await resp.text()
                assert says in (await resp.json())["error"]
        async with http.put(
            base + "/transport/credentials", json={"api_key": API_KEY}, headers=ADMIN
        ) as resp:
            answer = await resp.json()
        assert answer["persisted"] is False and "credentials.keys" in answer["warning"]
        assert daemon.ctx is not None
        assert await stored_credentials(daemon.ctx.store) == []
        system = daemon.ctx.adapters.ticket_systems()["transport"]
        assert system.cfg.api_key.get_secret_value() == API_KEY  # type: ignore[attr-defined]


async def test_rest_bearer_is_replaced_by_its_dotted_path(tmp_path: Path) -> None:
    """A REST ticket system's credential is ``auth.bearer``; the adapter's own rules apply."""
    cfg = bridge_config(tmp_path, departments=[DEPARTMENT], credentials=vault())
    async with running_bridge(cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{daemon.http_port}/api/ticket-systems/transport/credentials"
        async with http.get(
            f"http://127.0.0.1:{daemon.http_port}/api/ticket-systems", headers=ADMIN
        ) as resp:
            [row] = (await resp.json())["ticket_systems"]
        assert row["credential_fields"] == ["auth.bearer"]
        async with http.put(url, json={"auth.bearer": "rotated-bearer-7f3a"}, headers=ADMIN) as r:
            assert r.status == 200, await r.text()
        assert daemon.ctx is not None
        system = daemon.ctx.adapters.ticket_systems()["transport"]
        assert system.cfg.auth.bearer.get_secret_value() == "rotated-bearer-7f3a"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- sealing


def test_a_sealed_credential_opens_only_for_its_row_and_its_keys() -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    a = Vault([SecretStr(key_a)])
    sealed = a.seal("ticketing:transport", "api_key", "real-key-1", "old-key-0")
    assert "real-key-1" not in sealed and "old-key-0" not in sealed
    opened = a.open("ticketing:transport", "api_key", sealed)
    assert (opened.value, opened.replaced) == ("real-key-1", "old-key-0")
    with pytest.raises(CredentialError, match="another credential"):
        a.open("ticketing:parks", "api_key", sealed)  # moved to another row
    with pytest.raises(CredentialError, match="cannot be decrypted"):
        Vault([SecretStr(key_b)]).open("ticketing:transport", "api_key", sealed)
    both = Vault([SecretStr(key_b), SecretStr(key_a)])  # a new key first, the old one after
    assert both.open("ticketing:transport", "api_key", sealed).value == "real-key-1"
    rotated = both.rotate(sealed)
    assert Vault([SecretStr(key_b)]).open("ticketing:transport", "api_key", rotated).value == (
        "real-key-1"
    )


async def test_rotate_re_seals_every_stored_credential_under_the_new_key(
    store: SqlStore, tmp_path: Path
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    data = {
        "departments": [department({"adapter": "rest", "base_url": "http://127.0.0.1:9",
                                    "auth": {"bearer": "b-in-the-file"}})],
        "credentials": {"keys": [old_key]},
    }  # fmt: skip
    cfg = parse_config(data, env={})
    creds = Credentials(cfg, store, None)
    done = await creds.replace("ticketing:transport", {"auth.bearer": "b-replaced"}, "ops-li")
    assert done.persisted and done.version == 1
    [before] = await stored_credentials(store)

    # The new key first, the old one after it; then `govbridge credentials rotate`.
    rotated = parse_config(
        {
            **data,
            "credentials": {"keys": [new_key, old_key]},
            "store": {"url": _url_of(store, tmp_path)},
        },
        env={},
    )
    path = tmp_path / "rotate.toml"
    path.write_text(config_toml(rotated))
    assert await run_credentials(argparse.Namespace(verb="rotate", config=str(path))) == 0
    [after] = await stored_credentials(store)
    assert after.secret != before.secret and after.version == before.version
    only_new = Credentials(parse_config({**data, "credentials": {"keys": [new_key]}}, env={}),
                           store, None, read_only=True)  # fmt: skip
    await only_new.refresh()
    assert only_new.cfg.department("transport").ticketing.auth.bearer.get_secret_value() == (  # type: ignore[attr-defined]
        "b-replaced"
    )
    actions = [r["action"] for r in await audit.recent(store.db, 10)]
    assert "credentials.rotated" in actions


def _url_of(store: SqlStore, tmp_path: Path) -> str:
    """The URL ``open_store`` needs to reach the same database as ``store``."""
    dsn = getattr(store.database, "dsn", None)
    return str(dsn) if dsn else f"sqlite:///{tmp_path}/store.db"


def test_a_bad_key_is_refused_naming_the_key_never_its_value() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"credentials": {"keys": ["not-a-fernet-key-but-a-secret"]}}, env={})
    text = str(err.value)
    assert "credentials.keys[0]" in text and "new-key" in text
    assert "not-a-fernet-key-but-a-secret" not in text
    key = Fernet.generate_key().decode()
    cfg = parse_config({}, env={"GOVBRIDGE_CREDENTIALS_KEY": f" {key} , {key}"})
    assert [k.get_secret_value() for k in cfg.credentials.keys] == [key, key]


async def test_a_reload_applies_changed_credentials_and_an_invalid_file_changes_nothing(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    """SIGHUP's work (``Daemon.reload``): a broken file is refused and nothing changes; a file
    with a new key applies it at once and supersedes the replacement made against the old one
    (audited as the reload's); settings other than credentials wait for a restart."""
    cfg = bridge_config(
        tmp_path, departments=[department(ticketing(refusing, "k-in-file-1"))], credentials=vault()
    )
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))
    data = cfg.model_dump(mode="python", serialize_as_any=True)
    async with running_bridge(cfg, ["http"], config_path=path) as daemon:
        assert daemon.ctx is not None
        ctx = daemon.ctx
        await ctx.credentials.replace("ticketing:transport", {"api_key": "k-replaced"}, "ops-li")

        def key() -> str:
            system = ctx.adapters.ticket_systems()["transport"]
            return str(system.cfg.api_key.get_secret_value())  # type: ignore[attr-defined]

        assert key() == "k-replaced"
        path.write_text(path.read_text().replace("[broker]", "[broker]\nprefech = 3", 1))
        assert await daemon.reload() == set()  # refused: "did you mean 'prefetch'?" logged
        assert key() == "k-replaced"

        edited = parse_config(
            {**data, "departments": [department(ticketing(refusing, "k-in-file-2", poll="5s"))]},
            env={},
        )
        path.write_text(config_toml(edited))
        assert await daemon.reload() == {"ticketing:transport"}
        assert key() == "k-in-file-2"
        assert ctx.cfg.department("transport").ticketing.poll.total_seconds() == 0.2  # restart
        [row] = await stored_credentials(ctx.store)
        assert row.state == "superseded"
        actions = [(r["action"], r["actor"]) for r in await audit.recent(ctx.store.db, 20)]
        assert ("credential.superseded", "config-reload") in actions
        assert ("credential.reloaded", "config-reload") in actions
        assert await daemon.reload() == set()  # nothing changed since
