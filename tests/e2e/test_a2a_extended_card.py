"""The extended agent card (A2A 1.0 sections 3.1.11 and 13.3) through the real
Envoy, filter and service: an operator's card file for one agent, laid over
its public card and filtered by the verified caller, fetched with the
official SDK (a2a-sdk) over JSON-RPC 1.0, 0.3 and HTTP+JSON, and with raw
calls for the shapes; an agent without a file keeps refusing the method.

Cards are validated against schemas/a2a-1.0.json (lf.a2a.v1.AgentCard) and,
in their 0.3 shape, against the SDK's 0.3 model.
"""

import asyncio
import json
from pathlib import Path

import httpx
import jsonschema
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.compat.v0_3 import types as types_v03
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import TransportProtocol
from google.protobuf import json_format

from a2a_agents import SdkAgent, agent_base, only_version, resolve_card, sdk_client
from stack import launch_stack

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "a2a-1.0.json").read_text())
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# What the operator writes for the agent "upper": a longer description, a
# provider, two skills of its own, one of them for alice only.
EXTENDED = {
    "card": {
        "description": "Answers in upper case; signed-in callers see its internal skills",
        "documentationUrl": "https://docs.example/upper",
        "provider": {"organization": "Example", "url": "https://example.org"},
        "skills": [
            {
                "id": "shout",
                "name": "Shout",
                "description": "Upper-cases text and adds emphasis",
                "tags": ["text"],
                "examples": ["shout hello"],
            },
            {"id": "audit", "name": "Audit", "description": "Reads the audit log", "tags": ["ops"]},
        ],
    },
    "skill_users": {"audit": ["alice"]},
}
EVERYONE = ["upper", "shout"]  # the public skill, then the file's unrestricted one
ALICE = ["upper", "shout", "audit"]


def assert_valid(document, message="AgentCard"):
    """document is a valid lf.a2a.v1.<message> in ProtoJSON."""
    schema = {"$ref": f"#/$defs/lf.a2a.v1.{message}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    workdir = tmp_path_factory.mktemp("a2a-extended-card")
    card_file = workdir / "upper-extended-card.json"
    card_file.write_text(json.dumps(EXTENDED))
    with SdkAgent("upper") as upper:
        # The registry's file form, which the launcher reads too.
        registry = workdir / "a2a.json"
        registry.write_text(
            json.dumps(
                {
                    "agents": [
                        {"name": "upper", "url": upper.url, "extended_card": str(card_file)},
                        {"name": "plain", "url": upper.url},
                    ]
                }
            )
        )
        with launch_stack(workdir, a2a=True, env={"A2A_CONFIG": str(registry)}) as s:
            yield s


def run(coro):
    return asyncio.run(coro)


def bearer(s, sub):
    return {"Authorization": f"Bearer {s.token(sub=sub)}"}


def rpc(s, agent, method, version="1.0", sub="alice", headers=None):
    """A raw JSON-RPC call; the response."""
    all_headers = {**bearer(s, sub), **(headers or {})}
    if version:
        all_headers["A2A-Version"] = version
    return httpx.post(
        agent_base(s.gateway, agent),
        json={"jsonrpc": "2.0", "id": "x-1", "method": method, "params": {}},
        headers=all_headers,
        timeout=30,
    )


def extended_v1(s, sub, agent="upper"):
    r = rpc(s, agent, "GetExtendedAgentCard", sub=sub)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def public_card(s, agent, path="agent-card.json"):
    r = httpx.get(f"{agent_base(s.gateway, agent)}/.well-known/{path}", timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def skill_ids(card):
    return [skill["id"] for skill in card["skills"]]


def rest_client(card, token):
    """An SDK client that speaks the card's HTTP+JSON interface only."""
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    config = ClientConfig(
        streaming=False,
        httpx_client=http,
        supported_protocol_bindings=[TransportProtocol.HTTP_JSON],
    )
    return ClientFactory(config).create(card), http


# -- section 3.1.11: the public card declares it; the card is the public one and more --


def test_section_3_1_11_public_card_declares_the_extended_card(a2a):
    card = public_card(a2a, "upper")
    assert_valid(card)
    assert card["capabilities"]["extendedAgentCard"] is True, card
    assert skill_ids(card) == ["upper"], "the file's skills are not public"
    assert card["description"] == "Answers in upper case"
    assert "provider" not in card
    legacy = types_v03.AgentCard.model_validate(public_card(a2a, "upper", "agent.json"))
    assert legacy.supports_authenticated_extended_card is True


def test_section_3_1_11_extended_card_is_the_public_card_with_the_file_laid_over(a2a):
    public = public_card(a2a, "upper")
    card = extended_v1(a2a, "bob")
    assert_valid(card)
    assert card["description"] == EXTENDED["card"]["description"]
    assert card["documentationUrl"] == "https://docs.example/upper"
    assert card["provider"] == EXTENDED["card"]["provider"]
    assert skill_ids(card) == EVERYONE, card
    assert card["skills"][0] == public["skills"][0], "the public skill is kept"
    assert card["skills"][1] == EXTENDED["card"]["skills"][0]
    # How to reach the agent and sign in stays the gateway's.
    for key in (
        "name",
        "version",
        "supportedInterfaces",
        "capabilities",
        "securitySchemes",
        "securityRequirements",
        "defaultInputModes",
        "defaultOutputModes",
    ):
        assert card[key] == public[key], key


# -- section 3.1.11 over each binding, with the SDK ------------------------------


@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_section_3_1_11_sdk_json_rpc_client_gets_the_extended_card(a2a, version):
    async def go():
        public = await resolve_card(a2a.gateway, "upper")
        client, http = sdk_client(public, a2a.token(sub="alice"), version)
        async with http:
            card = await client.get_extended_agent_card(pb.GetExtendedAgentCardRequest())
        assert [s.id for s in card.skills] == ALICE, card
        assert card.description == EXTENDED["card"]["description"]
        assert card.provider.organization == "Example"
        assert card.capabilities.extended_agent_card
        # The SDK replaces its card with the extended one (section 3.1.11),
        # which still names the gateway's interfaces.
        assert {i.url for i in card.supported_interfaces} == {agent_base(a2a.gateway, "upper")}

    run(go())


def test_section_3_1_11_sdk_rest_client_gets_the_extended_card(a2a):
    async def go():
        public = await resolve_card(a2a.gateway, "upper")
        client, http = rest_client(public, a2a.token(sub="bob"))
        async with http:
            card = await client.get_extended_agent_card(pb.GetExtendedAgentCardRequest())
        assert [s.id for s in card.skills] == EVERYONE, card
        assert_valid(json_format.MessageToDict(card))

    run(go())


# -- section 3.1.11 over each binding, raw ---------------------------------------


def test_section_3_1_11_json_rpc_1_0_0_3_and_rest_serve_the_same_card(a2a):
    card = extended_v1(a2a, "alice")
    assert_valid(card)
    assert skill_ids(card) == ALICE
    # 0.3: agent/getAuthenticatedExtendedCard, the same card in the 0.3 shape.
    for version in ("0.3", None):
        r = rpc(a2a, "upper", "agent/getAuthenticatedExtendedCard", version=version)
        assert r.status_code == 200, r.text
        legacy_json = r.json()["result"]
        legacy = types_v03.AgentCard.model_validate(legacy_json)
        assert legacy.url == agent_base(a2a.gateway, "upper")
        assert legacy.protocol_version == "0.3.0"
        assert legacy.supports_authenticated_extended_card is True
        assert [s.id for s in legacy.skills] == ALICE
        assert legacy_json["description"] == card["description"]
        assert "supportedInterfaces" not in legacy_json
    # HTTP+JSON: GET …/extendedAgentCard, kept out of shared caches (section 13.3).
    r = httpx.get(
        f"{agent_base(a2a.gateway, 'upper')}/extendedAgentCard",
        headers={**bearer(a2a, "alice"), "A2A-Version": "1.0"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/a2a+json"), r.headers
    assert r.headers["cache-control"] == "private, max-age=300", r.headers
    assert "authorization" in r.headers["vary"].lower(), r.headers
    assert r.json() == card


# -- section 13.3: the card depends on the verified caller -----------------------


def test_section_13_3_two_users_see_different_skills(a2a):
    alice = extended_v1(a2a, "alice")
    bob = extended_v1(a2a, "bob")
    assert skill_ids(alice) == ALICE
    assert skill_ids(bob) == EVERYONE
    assert "audit" not in json.dumps(bob), "nothing tells bob the skill exists"
    # Apart from the skills alice may see (and so the gateway's signature
    # over each card), the two cards are the same.
    apart = ("skills", "signatures")
    assert {k: v for k, v in alice.items() if k not in apart} == {
        k: v for k, v in bob.items() if k not in apart
    }


def test_section_13_3_identity_comes_from_the_token_not_from_headers(a2a):
    # Bob naming alice in the identity headers still gets bob's card: the
    # filter drops every X-Attach-* header a caller sends.
    spoofed = {"X-Attach-User": "alice", "X-Attach-Session": "s", "X-Attach-Assertion": "v2.x"}
    r = rpc(a2a, "upper", "GetExtendedAgentCard", sub="bob", headers=spoofed)
    assert r.status_code == 200, r.text
    assert skill_ids(r.json()["result"]) == EVERYONE


def test_section_13_3_unauthenticated_calls_are_refused(a2a):
    base = agent_base(a2a.gateway, "upper")
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetExtendedAgentCard", "params": {}}
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"X-Attach-User": "alice"},
    ):
        headers = {**headers, "A2A-Version": "1.0"}
        r = httpx.post(base, json=body, headers=headers, timeout=20)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
        assert "audit" not in r.text and "shout" not in r.text
        legacy = {**body, "method": "agent/getAuthenticatedExtendedCard"}
        r = httpx.post(base, json=legacy, headers=headers, timeout=20)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        r = httpx.get(f"{base}/extendedAgentCard", headers=headers, timeout=20)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert "shout" not in r.text


# -- sections 3.3.4 and 13.3: an agent without an extended card -----------------


def test_section_3_3_4_agent_without_an_extended_card_refuses_the_method(a2a):
    card = public_card(a2a, "plain")
    assert_valid(card)
    assert card["capabilities"]["extendedAgentCard"] is False, card
    legacy = types_v03.AgentCard.model_validate(public_card(a2a, "plain", "agent.json"))
    assert legacy.supports_authenticated_extended_card is False
    for method, version in (
        ("GetExtendedAgentCard", "1.0"),
        ("agent/getAuthenticatedExtendedCard", "0.3"),
        ("agent/getAuthenticatedExtendedCard", None),
    ):
        r = rpc(a2a, "plain", method, version=version)
        assert r.status_code == 200, r.text
        error = r.json()["error"]
        assert error["code"] == -32004, (method, error)
        infos = [d for d in error["data"] if d["@type"] == ERROR_INFO]
        assert [i["reason"] for i in infos] == ["UNSUPPORTED_OPERATION"], error
    r = httpx.get(
        f"{agent_base(a2a.gateway, 'plain')}/extendedAgentCard",
        headers=bearer(a2a, "alice"),
        timeout=20,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION", error
    assert [d["reason"] for d in error["details"] if d["@type"] == ERROR_INFO] == [
        "UNSUPPORTED_OPERATION"
    ]

    # The SDK reads the public card's capability and answers with the card
    # it was given, without asking.
    async def go():
        public = await resolve_card(a2a.gateway, "plain")
        client, http = sdk_client(public, a2a.token(sub="alice"), "1.0")
        async with http:
            got = await client.get_extended_agent_card(pb.GetExtendedAgentCardRequest())
        assert got == only_version(public, "1.0")

    run(go())
