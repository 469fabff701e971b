"""``govbridge asyncapi``: docs/asyncapi.json is current and valid AsyncAPI 3.

Validity is judged by the AsyncAPI initiative's own parser (@asyncapi/parser), which this test
installs from the npm registry into a cache directory on first use (``GOVBRIDGE_NODE_CACHE``,
default ``~/.cache/govbridge/node``). Without npm on the machine the validation tests skip and say
so; a failing install fails the test.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.cli.asyncapi import _camel, build, render
from bridge.cli.main import build_parser
from bridge.runtime.topology import ROUTE_MESSAGES, ROUTING_KEYS, STAGE_BINDINGS, Topology
from schemas.config import BrokerConfig
from schemas.messages import MESSAGE_MODELS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "asyncapi.json"
SCRIPT = Path(__file__).resolve().parent / "asyncapi" / "validate.cjs"
PARSER = "@asyncapi/parser@3.6.6"


def test_docs_asyncapi_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.json is stale: run `govbridge asyncapi`"
    )


def asyncapi(*argv: str) -> int:
    """The command without ``main``, which would point the global log configuration at
    pytest's captured stream."""
    args = build_parser().parse_args(["asyncapi", *argv])
    code: int = args.func(args)
    return code


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "api.json"
    assert asyncapi("--out", str(out), "--check") == 1  # missing is not current
    assert asyncapi("--out", str(out)) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == build()
    assert asyncapi("--out", str(out), "--check") == 0
    out.write_text(out.read_text(encoding="utf-8").replace("inquiry.", "enquiry."))
    assert asyncapi("--out", str(out), "--check") == 1
    assert "not current" in capsys.readouterr().err


def test_every_public_key_and_consumer_is_documented() -> None:
    doc = build()
    addresses = {c["address"]: c for c in doc["channels"].values()}
    for prefix, pattern in ROUTING_KEYS.items():
        channel = addresses[pattern.replace("<", "{").replace(">", "}")]
        assert list(channel["messages"]) == [ROUTE_MESSAGES[prefix]]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "govbridge"
    receivers = {
        (op["summary"].split("'s ")[1].split(" ")[0], op["channel"]["$ref"].rsplit("/", 1)[1])
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    ids = {prefix: _camel(prefix) for prefix in ROUTING_KEYS}

    def kind_of(pattern: str) -> str:
        """The kind of key a binding pattern reads (``sla.holding_reply.*`` reads ``sla``)."""
        return max((k for k in ROUTING_KEYS if pattern.startswith(f"{k}.")), key=len)

    expected = {
        (stage, ids[kind_of(pattern)])
        for stage, patterns in STAGE_BINDINGS.items()
        for pattern in patterns
    }
    assert receivers == expected
    # Payloads are the models' own schemas, every reference resolvable inside the document.
    for name in set(ROUTE_MESSAGES.values()):
        schema = doc["components"]["schemas"][name]
        assert set(schema["properties"]) == set(
            MESSAGE_MODELS[name].model_json_schema(mode="serialization")["properties"]
        )
    refs = _refs(doc)
    assert refs and all(_resolve(doc, r) is not None for r in refs)


def test_the_surge_event_is_in_the_contract() -> None:
    """``incident.surge.<department>`` (issue 24): sent by triage, read by nobody in the bridge
    (other systems bind it), its payload the ``IncidentSurge`` model."""
    doc = build()
    (channel,) = [c for c in doc["channels"].values() if c["address"].startswith("incident.")]
    assert channel["address"] == "incident.surge.{department}"
    assert list(channel["messages"]) == ["IncidentSurge"]
    ops = [
        op
        for op in doc["operations"].values()
        if op["channel"]["$ref"].endswith("/" + _camel("incident.surge"))
    ]
    assert [op["action"] for op in ops] == ["send"]
    assert "triage" in ops[0]["summary"]
    assert "public_answer_due" in doc["components"]["schemas"]["IncidentSurge"]["properties"]


def test_exchange_name_follows_config() -> None:
    doc = build(BrokerConfig(exchange="city"))
    assert {c["bindings"]["amqp"]["exchange"]["name"] for c in doc["channels"].values()} == {"city"}
    assert Topology(BrokerConfig(exchange="city")).queues("triage").work in json.dumps(doc)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, object], ref: str) -> object:
    node: object = doc
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# --- validation with the AsyncAPI parser from the npm registry --------------------------------


@pytest.fixture(scope="session")
def validator() -> Path:
    """node_modules holding @asyncapi/parser, installed once per machine (flock for parallel
    runs)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm/node not installed: cannot fetch @asyncapi/parser to validate")
    cache = Path(
        os.environ.get("GOVBRIDGE_NODE_CACHE", Path.home() / ".cache" / "govbridge" / "node")
    )
    target = cache / PARSER.replace("/", "_").replace("@", "")
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "node_modules" / "@asyncapi" / "parser" / "package.json").exists():
            done = subprocess.run(
                [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", PARSER],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"npm install {PARSER} failed:\n{done.stderr[-2000:]}"
    return target / "node_modules"


def _validate(node_modules: Path, path: Path) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        ["node", str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line]


def test_document_is_valid_asyncapi_3(validator: Path) -> None:
    code, lines = _validate(validator, DOC)
    errors = [d for d in lines if d.get("severity") == 0]
    assert code == 0 and not errors, errors
    summary = lines[-1]
    assert summary["result"] == "valid"
    assert str(summary["version"]).startswith("3.")
    assert summary["channels"] == len(ROUTING_KEYS)
    assert summary["messages"] == len(set(ROUTE_MESSAGES.values()))


def test_validator_rejects_a_broken_document(validator: Path, tmp_path: Path) -> None:
    """The check can fail: an operation without its channel and a dangling message reference."""
    doc = copy.deepcopy(build())
    del doc["operations"]["sendInquiryReceived"]["channel"]
    doc["channels"]["inquiryReceived"]["messages"]["Inquiry"]["$ref"] = "#/components/messages/X"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, lines = _validate(validator, bad)
    assert code == 1
    assert lines[-1] == {"result": "invalid", "errors": 3}
    assert {d["code"] for d in lines if d.get("severity") == 0} >= {"invalid-ref"}
